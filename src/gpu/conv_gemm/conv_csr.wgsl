// Sparse convolution with a CSR weight and im2col addressing, f32:
//   Y[r, col] = act(sum over the non-zeros (k, v) of row r of v * im2col(X)[g(r), k, col] + bias[r])
// with the same (ci, ky, kx) order of k and the same gathering as
// conv_gemm.wgsl (zero in the padding); g(r) = r / Cout_g is the row's group.
// For pruned convolutions of any pattern (unstructured; N:M and blocks stored
// as CSR): the work is proportional to the non-zeros.
//
// Memory: W in CSR (row_ptr [Cout + 1], col_idx and values [nnz]); X and Y are
// feature-major GpuMatrix rows (X [Cin, N*H*W], Y [Cout, N*OH*OW]),
// `*_stride` floats per row.
//
// Each workgroup owns WG_Y output channels by WG_X * TN output columns; each
// thread one channel by TN columns (tx + j * WG_X, so neighbouring threads read
// neighbouring pixels), walking its row's non-zeros once: the (ci, ky, kx) of a
// non-zero is decoded once for its TN columns, and each column's
// (image, oy, ox) once for all non-zeros. No workgroup memory, no barriers.

override TN: u32 = 4u;     // columns per thread, <= 8
override WG_X: u32 = 16u;
override WG_Y: u32 = 4u;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;    // 0 none, 1 ReLU, 2 ReLU6

struct ConvParams {
    cin_g: u32,
    cout_g: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    cols: u32,
    k: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,
    pl: u32,
    w_stride: u32, // unused here (the layout is conv_gemm.wgsl's)
    x_stride: u32,
    y_stride: u32,
    cout: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

fn act(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    } else if (ACT == 2u) {
        return clamp(v, 0.0, 6.0);
    }
    return v;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv_csr(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.y * WG_Y + lid.y;
    if (r >= p.cout) {
        return;
    }
    let g = r / p.cout_g;
    let plane = p.oh * p.ow;
    let col0 = wid.x * WG_X * TN + lid.x;

    // Per column: the image's offset in X's row, and the top-left input pixel.
    var base: array<u32, 8>;
    var by: array<i32, 8>;
    var bx: array<i32, 8>;
    var live: array<bool, 8>;
    var acc: array<f32, 8>;
    for (var j = 0u; j < TN; j++) {
        let c = col0 + j * WG_X;
        live[j] = c < p.cols;
        acc[j] = 0.0;
        let cc = min(c, max(p.cols, 1u) - 1u);
        let n = cc / plane;
        let pix = cc - n * plane;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        base[j] = n * p.h * p.w;
        by[j] = i32(oy * p.sh) - i32(p.pt);
        bx[j] = i32(ox * p.sw) - i32(p.pl);
    }

    let taps = p.kh * p.kw;
    for (var e = row_ptr[r]; e < row_ptr[r + 1u]; e++) {
        let k = col_idx[e];
        let v = values[e];
        let ci = k / taps;
        let t = k - ci * taps;
        let ky = t / p.kw;
        let kx = t - ky * p.kw;
        let dy = i32(ky * p.dh);
        let dx = i32(kx * p.dw);
        let xrow = (g * p.cin_g + ci) * p.x_stride;
        for (var j = 0u; j < TN; j++) {
            let iy = by[j] + dy;
            let ix = bx[j] + dx;
            if (live[j] && iy >= 0 && ix >= 0 && u32(iy) < p.h && u32(ix) < p.w) {
                acc[j] = fma(v, x[xrow + base[j] + u32(iy) * p.w + u32(ix)], acc[j]);
            }
        }
    }

    var b = 0.0;
    if (HAS_BIAS) {
        b = bias[r];
    }
    for (var j = 0u; j < TN; j++) {
        if (live[j]) {
            y[r * p.y_stride + col0 + j * WG_X] = act(acc[j] + b);
        }
    }
}
