// Block-sparse SpMM  Y[M, N] = act(W_bsr[M, K] * X[K, N] + bias[M]) on
// cooperative matrices (tensor cores) for square blocks of 16 or 32 (any
// multiple of 16 whose tiles fit): f16 storage, 16x16x16 f16 tiles, f32
// accumulation. Native only (EXPERIMENTAL_COOPERATIVE_MATRIX + shader-f16 +
// subgroups); spmm_bsr_f16.wgsl is the fallback everywhere else.
//
// The schedule of gemm_coop.wgsl with the K loop running over the non-zero
// blocks of one block row: a workgroup owns block row row_order[wid.y] (block
// rows longest first, so heavy rows start early and short ones fill the tail)
// and BN columns of Y; BM = BK = the block size (WM * TM * 16). Stage s stages
// block row_ptr[row] + s (b x b f16, contiguous, row-major) and the b x BN
// slice of X at rows col_idx * b, both with vec4<f16> loads, double buffered
// exactly as the dense kernel. X rows past K read zeros (a block on the edge
// of K is zero-padded, and so are block rows past M, which are not written).
//
// Storage: values are the f16 blocks of GpuBsrF16 (b * b halves each, so
// every block starts on a whole vec4), bound as vec4<f16>; row_ptr, col_idx
// and row_order are the u32 arrays of the BSR; X and Y are GpuMatrixF16 (rows
// padded to 8 halves) bound as vec4<f16>. Workgroup memory and coopLoadT
// strides are in vec4<f16>s, as in gemm_coop.wgsl. The schedule, X staging and
// epilogue are common/coop_core.wgsl's (imported; entry point `coop_product`);
// this file says how the blocks are read.

enable f16;
enable wgpu_cooperative_matrix;

// import coop_core

struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,  // vec4<f16>s per X row = per Y row
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> row_order: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f16>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

alias ARegs = array<vec4<f16>, 16>;

// Workgroup row y_tile takes block row row_order[y_tile]; its stages are its blocks.
fn tile_rows(y_tile: u32) -> Rows {
    let bm = WM * TM * 16u;
    let brow = row_order[y_tile];
    let first = row_ptr[brow];
    return Rows(brow * bm, first, row_ptr[brow + 1u] - first);
}

// Global loads of stage s (block rows.first + s and its X slice) into
// registers; zeros for a stage that is not `valid` (the padding stage of an
// odd block count).
fn load_stage(rows: Rows, s: u32, valid: bool, t: u32, c40: u32, bn4: u32,
              ra: ptr<function, ARegs>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let blk = rows.first + s;
    let bsize4 = WM * TM * 16u * BK / 4u;
    let vbase = blk * bsize4;
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        var v = vec4<f16>(0.0);
        if (valid && idx < bsize4) {
            v = values[vbase + idx];
        }
        (*ra)[l] = v;
    }
    var k0 = 0u;
    if (valid) {
        k0 = col_idx[blk] * BK;
    }
    load_x(k0, valid, t, c40, bn4, rb);
}

// Registers -> workgroup buffer `buf` (the block rows padded to SA, the X
// rows to SB).
fn store_stage(buf: u32, s: u32, t: u32, bn4: u32, ra: ptr<function, ARegs>, rb: ptr<function, array<vec4<f16>, 16>>) {
    let bm = WM * TM * 16u;
    let bk4 = BK / 4u;
    let bsize4 = bm * BK / 4u;
    for (var l = 0u; l < LA; l++) {
        let idx = t + l * NT;
        if (idx < bsize4) {
            a_s[buf * bm * SA + (idx / bk4) * SA + idx % bk4] = (*ra)[l];
        }
    }
    store_x(buf, t, bn4, rb);
}
