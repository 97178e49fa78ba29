// CSR SpMM, row-wise: Y[M, N] = epilogue(W[M, K] * X[K, N]), W unstructured.
//
// Inputs: row_ptr (M + 1) and row_order (rows by decreasing non-zero count,
//   spmm_csr::CsrWeights); wp[q] = (col_idx[q] * n4, bits of values[q]) for
//   non-zero q, packed once when the product is prepared (spmm_csr_pack below)
//   so that one 8-byte load brings a non-zero's pre-scaled X offset and value.
//   x, y: row-major with rows padded to n4 vec4s (GpuMatrix); X's padding
//   columns are zero.
//
// A workgroup owns TM = RT * RM sorted rows by XW = CT * TN4 vec4 columns.
// Thread (ct, ks, rt) owns the RM consecutive sorted rows rt * RM .. of the
// tile (about equally long, so they advance in lock step) and the vec4 columns
// ct, ct + CT, ...; the KS lanes of a row take every KS-th non-zero (neighbours
// read neighbouring packed entries) and their sums are added in workgroup
// memory at the end. X rows are read as vec4s straight from memory (L1/L2):
// the CT lanes of a row read CT consecutive vec4s of one X row. U steps are
// unrolled so that RM * U entries and RM * U * TN4 X vec4s are in flight per
// thread. With SYNC the workgroup meets at a barrier every U steps, so that
// its rows stay at about the same K (their non-zeros are spread alike) and
// could share the X rows they fetch while those are in L1 (measured: no gain).
//
// Grids are 1-D over tiles (row tile fastest, so consecutive workgroups share
// a column slab of X), folded into 2-D past 65535; the flat index is checked.
//
// Measured on an H100 through Vulkan (wgpu 30, driver 580.159.04, 2026-11-25,
// median of 20 GPU-timestamped runs, `wgsparse bench --variants`), 4096^3,
// dense WGSL GEMM 3.80 ms, cuSPARSE CSR 3.42 / 0.77 ms on the same GPU:
//
//   tiling (CT x TN4, KS, RT x RM, U)      90% sparse   98% sparse
//   c16x1 s2 r8x1 u16   (auto)             1.69 ms      0.43 ms
//   c16x1 s2 r8x1 u8                       1.81         0.44
//   c16x1 s2 r8x1 u4                       2.09         0.47
//   c8x1  s4 r8x2 u4                       1.74         0.61
//   c16x1 s2 r8x4 u4  (4 rows lock step)   2.05         0.54
//   c16x1 s2 r8x8 u2  (8 rows: spills)    21.9          4.47
//   c16x2 s2 r8x1 u4  (2 vec4s per lane)   2.42         0.54
//   c32x1 s1 r8x1 u4                       2.60         0.54
//   c8x1  s4 r8x2 u4 sync                  1.77         0.53
//   c8x1  s4 r32x1 u8 sync (1024 threads)  2.08         1.06
//   spmm_csr_rows c16 s2 r8 (unpacked)     2.13         0.46
//   staged X (old spmm_csr_tiled)          7.67         6.16
//   staged X, plan-located non-zeros       2.77         1.12
// More loads in flight (U) is what pays; rows in lock step, workgroup
// barriers and wider column slabs do not. Staging X in workgroup memory lost
// at both sparsities (1 LDS.128 per 4 FMAs and lanes idling on uneven rows).
// At 1.69 ms the 90% case moves 27.5 GB of X vec4s (16 TB/s from L1/L2).

struct RowwiseParams {
    m_rows: u32,     // M
    n4: u32,         // vec4 columns of X and Y (row stride / 4)
    row_tiles: u32,  // row tiles of TM rows
    tiles: u32,      // row_tiles * column tiles
}

@group(0) @binding(0) var<uniform> p: RowwiseParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> wp: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> row_order: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

// Fused epilogue (src/gpu/epilogue.rs): HAS_BIAS, ACT, epilogue().
// import epilogue

override CT: u32 = 16u;                      // lanes across vec4 columns
override TN4: u32 = 1u;                      // vec4 columns per lane
override KS: u32 = 2u;                       // lanes splitting a row's non-zeros
override RT: u32 = 8u;                       // row groups per workgroup
override RM: u32 = 1u;                       // rows per thread (RM * TN4 <= MAX_ACC, RM <= MAX_RM)
override U: u32 = 4u;                        // unrolled steps (U * RM <= MAX_E)
override SYNC: bool = false;                 // a barrier every U steps
override WG: u32 = CT * KS * RT;
override TM: u32 = RT * RM;
override XW: u32 = CT * TN4;
override RED_LEN: u32 = select(1u, WG, KS > 1u);

const MAX_RM: u32 = 8u;
const MAX_ACC: u32 = 16u;
const MAX_E: u32 = 16u;

var<workgroup> red: array<vec4<f32>, RED_LEN>;
var<workgroup> wg_max: atomic<u32>;
var<workgroup> wg_steps: u32;

@compute @workgroup_size(WG)
fn spmm_csr_rowwise(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let s0 = (flat % p.row_tiles) * TM;
    let c4_0 = (flat / p.row_tiles) * XW;
    let ct = lid % CT;
    let ks = (lid / CT) % KS;
    let rt = lid / (CT * KS);

    // Columns read (clamped into the row, so lanes past N read valid memory).
    var col: array<u32, 4>;
    for (var j = 0u; j < TN4; j++) {
        col[j] = min(c4_0 + ct + j * CT, p.n4 - 1u);
    }
    // [qa, qb): the lane's non-zeros of row i are qa, qa + KS, ... < qb.
    var qa: array<u32, MAX_RM>;
    var qb: array<u32, MAX_RM>;
    var full = 0xffffffffu;                  // steps every row has
    var steps = 0u;                          // steps some row has
    for (var i = 0u; i < RM; i++) {
        let s = s0 + rt * RM + i;
        var a = 0u;
        var b = 0u;
        if (s < p.m_rows) {
            let r = row_order[s];
            a = row_ptr[r] + ks;
            b = row_ptr[r + 1u];
        }
        qa[i] = a;
        qb[i] = b;
        var n = 0u;
        if (b > a) {
            n = (b - a + KS - 1u) / KS;
        }
        full = min(full, n);
        steps = max(steps, n);
    }
    var acc: array<vec4<f32>, MAX_ACC>;
    for (var t = 0u; t < RM * TN4; t++) {
        acc[t] = vec4<f32>(0.0);
    }

    var e: array<vec2<u32>, MAX_E>;
    if (SYNC) {
        if (lid == 0u) {
            atomicStore(&wg_max, 0u);
        }
        workgroupBarrier();
        atomicMax(&wg_max, steps);
        workgroupBarrier();
        if (lid == 0u) {
            wg_steps = atomicLoad(&wg_max);
        }
        let total = workgroupUniformLoad(&wg_steps);
        for (var st = 0u; st < total; st += U) {
            if (st + U <= full) {
                for (var u = 0u; u < U; u++) {
                    for (var i = 0u; i < RM; i++) {
                        e[u * RM + i] = wp[qa[i] + (st + u) * KS];
                    }
                }
                for (var u = 0u; u < U; u++) {
                    for (var i = 0u; i < RM; i++) {
                        let v = vec4<f32>(bitcast<f32>(e[u * RM + i].y));
                        let o = e[u * RM + i].x;
                        for (var j = 0u; j < TN4; j++) {
                            acc[i * TN4 + j] = fma(v, x[o + col[j]], acc[i * TN4 + j]);
                        }
                    }
                }
            } else {
                for (var u = 0u; u < U; u++) {
                    for (var i = 0u; i < RM; i++) {
                        let q = qa[i] + (st + u) * KS;
                        if (q < qb[i]) {
                            let w = wp[q];
                            let v = vec4<f32>(bitcast<f32>(w.y));
                            for (var j = 0u; j < TN4; j++) {
                                acc[i * TN4 + j] = fma(v, x[w.x + col[j]], acc[i * TN4 + j]);
                            }
                        }
                    }
                }
            }
            workgroupBarrier();
        }
    } else {
        var st = 0u;
        loop {
            if (st + U > full) {
                break;
            }
            for (var u = 0u; u < U; u++) {
                for (var i = 0u; i < RM; i++) {
                    e[u * RM + i] = wp[qa[i] + (st + u) * KS];
                }
            }
            for (var u = 0u; u < U; u++) {
                for (var i = 0u; i < RM; i++) {
                    let v = vec4<f32>(bitcast<f32>(e[u * RM + i].y));
                    let o = e[u * RM + i].x;
                    for (var j = 0u; j < TN4; j++) {
                        acc[i * TN4 + j] = fma(v, x[o + col[j]], acc[i * TN4 + j]);
                    }
                }
            }
            st += U;
        }
        for (; st < steps; st++) {
            for (var i = 0u; i < RM; i++) {
                let q = qa[i] + st * KS;
                if (q < qb[i]) {
                    let w = wp[q];
                    let v = vec4<f32>(bitcast<f32>(w.y));
                    for (var j = 0u; j < TN4; j++) {
                        acc[i * TN4 + j] = fma(v, x[w.x + col[j]], acc[i * TN4 + j]);
                    }
                }
            }
        }
    }

    // Add the KS partial sums (one accumulator at a time through `red`).
    if (KS > 1u) {
        for (var t = 0u; t < RM * TN4; t++) {
            red[lid] = acc[t];
            workgroupBarrier();
            if (ks == 0u) {
                var a = acc[t];
                for (var h = 1u; h < KS; h++) {
                    a += red[lid + h * CT];
                }
                acc[t] = a;
            }
            workgroupBarrier();
        }
    }
    if (ks == 0u) {
        for (var j = 0u; j < TN4; j++) {
            let c4 = c4_0 + ct + j * CT;
            if (c4 < p.n4) {
                for (var i = 0u; i < RM; i++) {
                    let s = s0 + rt * RM + i;
                    if (s < p.m_rows) {
                        let r = row_order[s];
                        y[r * p.n4 + c4] = epilogue(acc[i * TN4 + j], r);
                    }
                }
            }
        }
    }
}
