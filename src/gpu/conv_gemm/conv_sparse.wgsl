// Sparse convolution with im2col addressing, f32, two weight formats:
//   Y[r, col] = act(sum over the non-zeros (k, v) of row r of v * im2col(X)[g(r), k, col] + bias[r])
// with the (ci, ky, kx) order of k and the gathering of conv_gemm.wgsl (zero in
// the padding); g(r) = r / Cout_g is the row's group. The work is proportional
// to the non-zeros.
// - conv_csr: W in CSR (row_ptr [Cout + 1], col_idx and values [nnz]): any
//   pattern (unstructured; blocks stored as CSR).
// - conv_nm: W in N:M along K (sparse/nm.rs: per row `vpr` value slots, slot j
//   of group j / N at a packed in-group index of BITS bits, `wpr` words per
//   row): k = (j / N) * M + idx(j); slots holding 0 (short groups, padding past
//   K) are skipped. It binds nothing at 3 (a dummy: conv_csr's values).
// X and Y are feature-major GpuMatrix rows (X [Cin, N*H*W], Y [Cout, N*OH*OW]),
// `*_stride` floats per row.
//
// Each workgroup owns WG_Y output channels by WG_X * TN output columns; each
// thread one channel by TN columns (tx + j * WG_X, so neighbouring threads read
// neighbouring pixels), walking its row's non-zeros once: the (ci, ky, kx) of a
// non-zero is decoded once for its TN columns, and each column's
// (image, oy, ox) once for all non-zeros. No workgroup memory, no barriers.

// import conv_params

override TN: u32 = 4u;     // columns per thread, <= 8
override WG_X: u32 = 16u;
override WG_Y: u32 = 4u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> csr_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> csr_col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> csr_values: array<f32>;
@group(0) @binding(1) var<storage, read> nm_values: array<f32>;
@group(0) @binding(2) var<storage, read> nm_indices: array<u32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

// One thread's TN output columns: the image's offset in X's row, the top-left
// input pixel of each, and the sums.
struct Columns {
    base: array<u32, 8>,
    by: array<i32, 8>,
    bx: array<i32, 8>,
    live: array<bool, 8>,
    acc: array<f32, 8>,
}

fn columns(col0: u32) -> Columns {
    var t: Columns;
    let plane = p.oh * p.ow;
    for (var j = 0u; j < TN; j++) {
        let c = col0 + j * WG_X;
        t.live[j] = c < p.cols;
        t.acc[j] = 0.0;
        let cc = min(c, max(p.cols, 1u) - 1u);
        let n = cc / plane;
        let pix = cc - n * plane;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        t.base[j] = n * p.h * p.w;
        t.by[j] = i32(oy * p.sh) - i32(p.pt);
        t.bx[j] = i32(ox * p.sw) - i32(p.pl);
    }
    return t;
}

// Adds the non-zero (k, v) of a row of group g to the thread's columns.
fn tap(t: ptr<function, Columns>, g: u32, k: u32, v: f32) {
    let taps = p.kh * p.kw;
    let ci = k / taps;
    let rest = k - ci * taps;
    let ky = rest / p.kw;
    let kx = rest - ky * p.kw;
    let dy = i32(ky * p.dh);
    let dx = i32(kx * p.dw);
    let xrow = (g * p.cin_g + ci) * p.x_stride;
    for (var j = 0u; j < TN; j++) {
        let iy = (*t).by[j] + dy;
        let ix = (*t).bx[j] + dx;
        if ((*t).live[j] && iy >= 0 && ix >= 0 && u32(iy) < p.h && u32(ix) < p.w) {
            (*t).acc[j] = fma(v, x[xrow + (*t).base[j] + u32(iy) * p.w + u32(ix)], (*t).acc[j]);
        }
    }
}

fn store(t: ptr<function, Columns>, r: u32, col0: u32) {
    var b = 0.0;
    if (HAS_BIAS) {
        b = bias[r];
    }
    for (var j = 0u; j < TN; j++) {
        if ((*t).live[j]) {
            y[r * p.y_stride + col0 + j * WG_X] = act1((*t).acc[j] + b);
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv_csr(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.y * WG_Y + lid.y;
    if (r >= p.cout) {
        return;
    }
    let col0 = wid.x * WG_X * TN + lid.x;
    var t = columns(col0);
    let g = r / p.cout_g;
    for (var e = csr_row_ptr[r]; e < csr_row_ptr[r + 1u]; e++) {
        tap(&t, g, csr_col_idx[e], csr_values[e]);
    }
    store(&t, r, col0);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv_nm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.y * WG_Y + lid.y;
    if (r >= p.cout) {
        return;
    }
    let col0 = wid.x * WG_X * TN + lid.x;
    var t = columns(col0);
    let g = r / p.cout_g;
    let per_word = 32u / p.bits;
    let mask = (1u << p.bits) - 1u;
    for (var j = 0u; j < p.vpr; j++) {
        let v = nm_values[r * p.vpr + j];
        let word = nm_indices[r * p.wpr + j / per_word];
        let k = (j / p.nm_n) * p.nm_m + ((word >> ((j % per_word) * p.bits)) & mask);
        if (v != 0.0 && k < p.k) {
            tap(&t, g, k, v);
        }
    }
    store(&t, r, col0);
}
