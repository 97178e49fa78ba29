// CSR SpMM: Y[M, N] = epilogue(W[M, K] * X[K, N]), W unstructured in CSR.
//
// Inputs: row_ptr (M + 1), col_idx and values (nnz; columns strictly
//   increasing within a row), as in src/sparse/csr.rs. x, y: row-major with
//   rows padded to n4 vec4s (GpuMatrix); X's padding columns are zero, so every
//   vec4 column is computed and Y's padding columns get finite values.
//
// Load balance (row swizzle, after Sputnik): row_order lists the rows by
//   decreasing non-zero count (ties: lower row first), computed once on upload
//   (spmm_csr::CsrWeights). Workgroups take consecutive slices of that order, so
//   the rows sharing a workgroup have about the same length, the heaviest
//   workgroups start first and empty rows end up together at the tail.
//
// Two entry points, the same bindings:
//
// spmm_csr_tiled (N >= ~32): a workgroup owns TM = RT * RM sorted rows by
//   TN = 4 * CT columns. Thread (ct, rt) owns the sorted rows rt, rt + RT, ...
//   (strided, so each thread gets heavy and light rows alike) and the vec4
//   column ct, with a cursor into each row. First the workgroup finds the
//   smallest and largest column of its rows and walks only that K range, in
//   chunks of KT rows of X staged in workgroup memory (coalesced vec4s, zero
//   past K and N). For every chunk each thread advances its cursors over the
//   non-zeros whose column falls in the chunk: value and column are read by
//   the CT lanes of a row at once (one broadcast), X comes from workgroup
//   memory, so each X element fetched from memory serves every row of the
//   tile that uses it.
//
// spmm_csr_rows (small N, e.g. the classifier's N = 1): R_RPW sorted rows per
//   workgroup; each row gets R_CT x R_KS threads: R_CT across vec4 columns,
//   R_KS taking every R_KS-th non-zero (neighbours read neighbouring values and
//   columns, coalesced), four loads in flight per thread. X rows are read as
//   vec4s straight from memory; the R_KS partial sums are added in workgroup
//   memory.
//
// Grids are 1-D over tiles (row tile fastest, so consecutive workgroups share
// a column slab of X), folded into 2-D past 65535; the flat index is checked.

struct CsrParams {
    m_rows: u32,     // M
    k: u32,          // K
    n4: u32,         // vec4 columns of X and Y (row stride / 4)
    row_tiles: u32,  // row tiles (TM rows, or R_RPW rows for spmm_csr_rows)
    tiles: u32,      // row_tiles * column tiles
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: CsrParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> row_order: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

// Fused epilogue (src/gpu/epilogue.rs).
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;

// spmm_csr_tiled tile.
override CT: u32 = 16u;                      // threads (vec4 columns) across the tile
override RT: u32 = 16u;                      // threads across rows
override RM: u32 = 8u;                       // rows per thread, <= MAX_RM
override KT: u32 = 32u;                      // X rows per chunk
override WG: u32 = CT * RT;
override TM: u32 = RT * RM;
override XS_LEN: u32 = KT * CT;

// spmm_csr_rows shape.
override R_CT: u32 = 1u;                     // threads across vec4 columns
override R_KS: u32 = 32u;                    // threads splitting a row's non-zeros
override R_RPW: u32 = 8u;                    // rows per workgroup
override R_WG: u32 = R_CT * R_KS * R_RPW;

const MAX_RM: u32 = 16u;
const NONE: u32 = 0xffffffffu;

var<workgroup> xs: array<vec4<f32>, XS_LEN>;
var<workgroup> k_lo: atomic<u32>;
var<workgroup> k_hi: atomic<u32>;
var<workgroup> k_range: vec2<u32>;
var<workgroup> red: array<vec4<f32>, R_WG>;

fn epilogue(acc: vec4<f32>, row: u32) -> vec4<f32> {
    var v = acc;
    if (HAS_BIAS) {
        v += vec4<f32>(bias[row]);
    }
    if (ACT == 1u) {
        v = max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        v = clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

@compute @workgroup_size(WG)
fn spmm_csr_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let s0 = (flat % p.row_tiles) * TM;      // first sorted position of the tile
    let c4_0 = (flat / p.row_tiles) * CT;
    let ct = lid % CT;
    let rt = lid / CT;

    if (lid == 0u) {
        atomicStore(&k_lo, NONE);
        atomicStore(&k_hi, 0u);
    }
    workgroupBarrier();

    // Cursors into the thread's rows, and the columns the tile touches.
    var cur: array<u32, MAX_RM>;
    var end: array<u32, MAX_RM>;
    var acc: array<vec4<f32>, MAX_RM>;
    var lo = NONE;
    var hi = 0u;
    for (var i = 0u; i < RM; i++) {
        let s = s0 + rt + i * RT;
        var a = 0u;
        var b = 0u;
        if (s < p.m_rows) {
            let r = row_order[s];
            a = row_ptr[r];
            b = row_ptr[r + 1u];
            if (a < b) {
                lo = min(lo, col_idx[a]);
                hi = max(hi, col_idx[b - 1u]);
            }
        }
        cur[i] = a;
        end[i] = b;
        acc[i] = vec4<f32>(0.0);
    }
    if (lo != NONE) {
        atomicMin(&k_lo, lo);
        atomicMax(&k_hi, hi);
    }
    workgroupBarrier();
    if (lid == 0u) {
        k_range = vec2<u32>(atomicLoad(&k_lo), atomicLoad(&k_hi));
    }
    let kr = workgroupUniformLoad(&k_range);
    var first = 0u;
    var last = 0u;                           // chunks first .. last (exclusive)
    if (kr.x <= kr.y) {
        first = kr.x / KT;
        last = kr.y / KT + 1u;
    }

    for (var chunk = first; chunk < last; chunk++) {
        let k0 = chunk * KT;
        for (var e = lid; e < XS_LEN; e += WG) {
            let k = k0 + e / CT;
            let c4 = c4_0 + e % CT;
            var v = vec4<f32>(0.0);
            if (k < p.k && c4 < p.n4) {
                v = x[k * p.n4 + c4];
            }
            xs[e] = v;
        }
        workgroupBarrier();

        let k1 = k0 + KT;
        for (var i = 0u; i < RM; i++) {
            var q = cur[i];
            let e = end[i];
            var a = acc[i];
            // Two non-zeros per trip while both fall in the chunk (columns
            // increase, so checking the second is enough).
            loop {
                if (q + 1u >= e) {
                    break;
                }
                let c1 = col_idx[q + 1u];
                if (c1 >= k1) {
                    break;
                }
                let c0 = col_idx[q];
                a = fma(vec4<f32>(values[q]), xs[(c0 - k0) * CT + ct], a);
                a = fma(vec4<f32>(values[q + 1u]), xs[(c1 - k0) * CT + ct], a);
                q += 2u;
            }
            if (q < e) {
                let c0 = col_idx[q];
                if (c0 < k1) {
                    a = fma(vec4<f32>(values[q]), xs[(c0 - k0) * CT + ct], a);
                    q += 1u;
                }
            }
            cur[i] = q;
            acc[i] = a;
        }
        workgroupBarrier();
    }

    let c4 = c4_0 + ct;
    if (c4 < p.n4) {
        for (var i = 0u; i < RM; i++) {
            let s = s0 + rt + i * RT;
            if (s < p.m_rows) {
                let r = row_order[s];
                y[r * p.n4 + c4] = epilogue(acc[i], r);
            }
        }
    }
}

@compute @workgroup_size(R_WG)
fn spmm_csr_rows(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let ct = lid % R_CT;
    let ks = (lid / R_CT) % R_KS;
    let s = (flat % p.row_tiles) * R_RPW + lid / (R_CT * R_KS);
    let c4 = (flat / p.row_tiles) * R_CT + ct;
    let live = s < p.m_rows && c4 < p.n4;

    var acc = vec4<f32>(0.0);
    var r = 0u;
    if (live) {
        r = row_order[s];
        let e = row_ptr[r + 1u];
        var q = row_ptr[r] + ks;
        // Four independent non-zeros per trip keep four X loads in flight.
        loop {
            if (q + 3u * R_KS >= e) {
                break;
            }
            let q1 = q + R_KS;
            let q2 = q1 + R_KS;
            let q3 = q2 + R_KS;
            let x0 = x[col_idx[q] * p.n4 + c4];
            let x1 = x[col_idx[q1] * p.n4 + c4];
            let x2 = x[col_idx[q2] * p.n4 + c4];
            let x3 = x[col_idx[q3] * p.n4 + c4];
            acc = fma(vec4<f32>(values[q]), x0, acc);
            acc = fma(vec4<f32>(values[q1]), x1, acc);
            acc = fma(vec4<f32>(values[q2]), x2, acc);
            acc = fma(vec4<f32>(values[q3]), x3, acc);
            q = q3 + R_KS;
        }
        for (; q < e; q += R_KS) {
            acc = fma(vec4<f32>(values[q]), x[col_idx[q] * p.n4 + c4], acc);
        }
    }
    if (R_KS > 1u) {
        red[lid] = acc;
        workgroupBarrier();
        if (ks == 0u) {
            for (var t = 1u; t < R_KS; t++) {
                acc += red[lid + t * R_CT];
            }
        }
    }
    if (live && ks == 0u) {
        y[r * p.n4 + c4] = epilogue(acc, r);
    }
}
