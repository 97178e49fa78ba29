// Plan for spmm_csr_panel (shaders/spmm_csr_panel.wgsl), run once when a
// product is prepared (it depends on W and the tiling, not on X):
//
// spmm_csr_plan_ptr: cp[s * (nch + 1) + c] = the first non-zero of the row at
//   sorted position s (row_order[s]) whose column is >= c * KT, for the nch
//   chunks of KT columns; cp[s * (nch + 1) + nch] = the row's end. One thread
//   per (s, c), a binary search over the row's columns.
// spmm_csr_plan_pack: wp[q] = ((col_idx[q] % KT) * XW, bits of values[q]): the
//   workgroup-memory offset of the X row the non-zero multiplies inside its
//   chunk (XW vec4s per staged row) next to its value, one 8-byte load.

struct PlanParams {
    m_rows: u32,     // M
    nnz: u32,        // non-zeros
    kt: u32,         // X rows per chunk
    nch: u32,        // chunks: ceil(K / kt)
    xw: u32,         // vec4s per staged X row
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: PlanParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> row_order: array<u32>;
@group(0) @binding(5) var<storage, read_write> cp: array<u32>;
@group(0) @binding(6) var<storage, read_write> wp: array<vec2<u32>>;

const PLAN_WG: u32 = 256u;

@compute @workgroup_size(PLAN_WG)
fn spmm_csr_plan_ptr(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = (wid.y * nwg.x + wid.x) * PLAN_WG + lid;
    let per = p.nch + 1u;
    if (t / per >= p.m_rows) {
        return;
    }
    let s = t / per;
    let c = t % per;
    let r = row_order[s];
    var lo = row_ptr[r];
    var hi = row_ptr[r + 1u];
    if (c < p.nch) {
        let k0 = c * p.kt;
        loop {
            if (lo >= hi) {
                break;
            }
            let mid = lo + (hi - lo) / 2u;
            if (col_idx[mid] < k0) {
                lo = mid + 1u;
            } else {
                hi = mid;
            }
        }
    }
    // c == nch: the row's end (hi untouched); else the lower bound (lo == hi).
    cp[t] = hi;
}

@compute @workgroup_size(PLAN_WG)
fn spmm_csr_plan_pack(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let q = (wid.y * nwg.x + wid.x) * PLAN_WG + lid;
    if (q >= p.nnz) {
        return;
    }
    wp[q] = vec2<u32>((col_idx[q] % p.kt) * p.xw, bitcast<u32>(values[q]));
}
