// Dense GEMM  Y[M, N] = act(W[M, K] * X[K, N] + bias[M]) on cooperative
// matrices (tensor cores): f16 storage, 16x16x16 f16 tiles, f32 accumulation.
// Native only (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX, plus shader-f16 and
// subgroups); browsers never get this kernel, gemm.wgsl with T = f16 is the
// fallback. The schedule, X staging and epilogue are common/coop_core.wgsl's
// (imported; entry point `coop_product`); this file says how W is read.
//
// Storage: W, X and Y are f16, row-major, rows padded to a multiple of 8 halves
// (GpuMatrixF16), bound as vec4<f16>, so every global load and store moves 8
// bytes (adjacent lanes take adjacent vec4s). W's padding columns are zero. bias
// is f32 (M floats). A stage is the BM x BK slice of W at K offset s * BK,
// LA = BM * BK / 4 / NT vec4 loads per thread.

enable f16;
enable wgpu_cooperative_matrix;

// import coop_core

struct Params {
    m: u32,
    k: u32,
    w_stride4: u32,  // vec4<f16>s per W row
    x_stride4: u32,  // per X row = per Y row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

alias ARegs = array<vec4<f16>, 16>;

fn tile_rows(y_tile: u32) -> Rows {
    let bm = WM * TM * 16u;
    return Rows(y_tile * bm, 0u, (p.k + BK - 1u) / BK);
}

// Registers -> workgroup buffer `buf` (the W tile rows padded to SA, the X
// rows to SB).
fn store_stage(buf: u32, s: u32, t: u32, bn4: u32, ra: ptr<function, ARegs>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let bm = WM * TM * 16u;
    let bk4 = BK / 4u;
    let bsize4 = bm * bk4;
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        if (idx < bsize4) {
            a_s[buf * bm * SA + (idx / bk4) * SA + idx % bk4] = (*ra)[l];
        }
    }
    store_x(buf, t, bn4, rb);
}

// Global loads of stage s (W rows m0.., K offset s * BK; X columns from vec4
// n04) into registers; zeros past M, K and the row strides, and for a stage
// that is not `valid` (the padding stage of an odd stage count).
fn load_stage(rows: Rows, s: u32, valid: bool, t: u32, n04: u32, bn4: u32,
              ra: ptr<function, ARegs>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let k0 = s * BK;
    let bk4 = BK / 4u;
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        let row = rows.m0 + idx / bk4;
        let kv = k0 / 4u + idx % bk4;
        var v = vec4<f16>(0.0);
        if (valid && row < p.m && kv < p.w_stride4) {
            v = w[row * p.w_stride4 + kv];
        }
        (*ra)[l] = v;
    }
    load_x(k0, valid, t, n04, bn4, rb);
}
