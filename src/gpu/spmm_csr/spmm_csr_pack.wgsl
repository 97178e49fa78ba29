// Packing for spmm_csr_rowwise (spmm_csr_rowwise.wgsl), run once when
// a product is prepared: wp[q] = (col_idx[q] * n4, bits of values[q]), the
// pre-scaled X offset of non-zero q next to its value, so the kernel fetches
// both with one 8-byte load (Sputnik's pre-scaled indices).

struct PackParams {
    nnz: u32,        // non-zeros
    n4: u32,         // vec4s per X row
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: PackParams;
@group(0) @binding(1) var<storage, read> col_idx: array<u32>;
@group(0) @binding(2) var<storage, read> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> wp: array<vec2<u32>>;

const PACK_WG: u32 = 256u;

@compute @workgroup_size(PACK_WG)
fn spmm_csr_pack(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let q = (wid.y * nwg.x + wid.x) * PACK_WG + lid;
    if (q >= p.nnz) {
        return;
    }
    wp[q] = vec2<u32>(col_idx[q] * p.n4, bitcast<u32>(values[q]));
}
