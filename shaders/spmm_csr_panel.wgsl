// CSR SpMM, panel kernel: Y[M, N] = epilogue(W[M, K] * X[K, N]), W
// unstructured, for N of a few dozen and up.
//
// Inputs come from the plan (shaders/spmm_csr_plan.wgsl, run once per
// prepared product): cp[s * (nch + 1) + c] is where the non-zeros of the row at
// sorted position s (row_order[s], rows by decreasing length) start in K chunk
// c, cp[s * (nch + 1) + nch] where they end; wp[q] = (workgroup-memory offset
// of X row col % KT inside its chunk, value bits) for non-zero q. x, y:
// row-major with rows padded to n4 vec4s (GpuMatrix); X's padding columns are
// zero.
//
// A workgroup owns TM = RT * RM sorted rows by XW = CT * TN4 vec4 columns and
// walks K in chunks of KT rows of X, staged in workgroup memory (coalesced
// vec4s, zeros past K and N; the next chunk is loaded into registers while the
// current one is multiplied). Thread (ct, rt) owns the sorted rows rt, rt + RT,
// ... (strided, so each thread gets long and short rows alike) and the vec4
// columns ct, ct + CT, ...; for each chunk it knows from cp, without
// searching, which non-zeros of each row fall in the chunk and multiplies
// them: one 8-byte load of (offset, value) per non-zero, shared by the CT
// lanes of the row, one vec4 from workgroup memory and one vec4 FMA per
// column. Each X element fetched from memory serves the TM * density rows
// of the tile that use it.
//
// Rows advance in lock step (ROW_LOOPS = false: step t handles the t-th
// non-zero of every row of the thread in this chunk, so the accumulators are
// indexed by unrolled loops only) or one after the other (ROW_LOOPS = true).
//
// Grids are 1-D over tiles (row tile fastest, so consecutive workgroups share
// a column slab of X), folded into 2-D past 65535; the flat index is checked.

struct PanelParams {
    m_rows: u32,     // M
    k: u32,          // K
    n4: u32,         // vec4 columns of X and Y (row stride / 4)
    row_tiles: u32,  // row tiles of TM rows
    tiles: u32,      // row_tiles * column tiles
    nch: u32,        // K chunks: ceil(K / KT)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: PanelParams;
@group(0) @binding(1) var<storage, read> cp: array<u32>;
@group(0) @binding(2) var<storage, read> wp: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> row_order: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

// Fused epilogue (src/gpu/epilogue.rs).
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;

override CT: u32 = 16u;                      // lanes across columns
override TN4: u32 = 1u;                      // vec4 columns per lane
override RT: u32 = 16u;                      // threads across rows
override RM: u32 = 8u;                       // rows per thread (RM * TN4 <= MAX_ACC)
override KT: u32 = 64u;                      // X rows per chunk
override ROW_LOOPS: bool = false;
override WG: u32 = CT * RT;
override TM: u32 = RT * RM;
override XW: u32 = CT * TN4;                 // vec4s per staged X row
override XS_LEN: u32 = KT * XW;
override XL: u32 = (XS_LEN + WG - 1u) / WG;  // staged vec4s per thread (<= MAX_XL)

const MAX_RM: u32 = 16u;
const MAX_ACC: u32 = 16u;
const MAX_XL: u32 = 16u;
const NONE: u32 = 0xffffffffu;

var<workgroup> xs: array<vec4<f32>, XS_LEN>;

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

// Element e of the staged chunk starting at X row k0 (zero past K and N).
fn load_x(k0: u32, c4_0: u32, e: u32) -> vec4<f32> {
    let k = k0 + e / XW;
    let c4 = c4_0 + e % XW;
    var v = vec4<f32>(0.0);
    if (e < XS_LEN && k < p.k && c4 < p.n4) {
        v = x[k * p.n4 + c4];
    }
    return v;
}

@compute @workgroup_size(WG)
fn spmm_csr_panel(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * nwg.x + wid.x;
    if (flat >= p.tiles) {
        return;
    }
    let s0 = (flat % p.row_tiles) * TM;
    let c4_0 = (flat / p.row_tiles) * XW;
    let ct = lid % CT;
    let rt = lid / CT;
    let per = p.nch + 1u;

    // base[i]: the row's entries in cp (NONE past M); [qa, qb): its non-zeros
    // in the current chunk.
    var base: array<u32, MAX_RM>;
    var qa: array<u32, MAX_RM>;
    var qb: array<u32, MAX_RM>;
    var acc: array<vec4<f32>, MAX_ACC>;
    for (var i = 0u; i < RM; i++) {
        let s = s0 + rt + i * RT;
        var b = NONE;
        var a = 0u;
        if (s < p.m_rows) {
            b = s * per;
            a = cp[b];
        }
        base[i] = b;
        qa[i] = a;
    }
    for (var a = 0u; a < RM * TN4; a++) {
        acc[a] = vec4<f32>(0.0);
    }
    var xr: array<vec4<f32>, MAX_XL>;
    for (var l = 0u; l < XL; l++) {
        xr[l] = load_x(0u, c4_0, lid + l * WG);
    }

    for (var chunk = 0u; chunk < p.nch; chunk++) {
        for (var l = 0u; l < XL; l++) {
            let e = lid + l * WG;
            if (e < XS_LEN) {
                xs[e] = xr[l];
            }
        }
        workgroupBarrier();
        if (chunk + 1u < p.nch) {
            let k0 = (chunk + 1u) * KT;
            for (var l = 0u; l < XL; l++) {
                xr[l] = load_x(k0, c4_0, lid + l * WG);
            }
        }

        var steps = 0u;
        for (var i = 0u; i < RM; i++) {
            var b = qa[i];
            if (base[i] != NONE) {
                b = cp[base[i] + chunk + 1u];
            }
            qb[i] = b;
            steps = max(steps, b - qa[i]);
        }
        if (ROW_LOOPS) {
            for (var i = 0u; i < RM; i++) {
                for (var q = qa[i]; q < qb[i]; q++) {
                    let e = wp[q];
                    let v = vec4<f32>(bitcast<f32>(e.y));
                    let o = e.x + ct;
                    for (var j = 0u; j < TN4; j++) {
                        acc[i * TN4 + j] = fma(v, xs[o + j * CT], acc[i * TN4 + j]);
                    }
                }
            }
        } else {
            for (var st = 0u; st < steps; st++) {
                for (var i = 0u; i < RM; i++) {
                    let q = qa[i] + st;
                    if (q < qb[i]) {
                        let e = wp[q];
                        let v = vec4<f32>(bitcast<f32>(e.y));
                        let o = e.x + ct;
                        for (var j = 0u; j < TN4; j++) {
                            acc[i * TN4 + j] = fma(v, xs[o + j * CT], acc[i * TN4 + j]);
                        }
                    }
                }
            }
        }
        for (var i = 0u; i < RM; i++) {
            qa[i] = qb[i];
        }
        workgroupBarrier();
    }

    for (var j = 0u; j < TN4; j++) {
        let c4 = c4_0 + ct + j * CT;
        if (c4 < p.n4) {
            for (var i = 0u; i < RM; i++) {
                let s = s0 + rt + i * RT;
                if (s < p.m_rows) {
                    let r = row_order[s];
                    y[r * p.n4 + c4] = epilogue(acc[i * TN4 + j], r);
                }
            }
        }
    }
}
