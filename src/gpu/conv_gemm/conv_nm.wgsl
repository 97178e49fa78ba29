// Sparse convolution with an N:M weight along K = Cin_g*KH*KW and im2col
// addressing, f32: conv_csr.wgsl's kernel with the row's non-zeros read from
// the N:M layout (sparse/nm.rs: per row `vpr` slots, slot j of group j / N at
// in-group index idx(j), packed BITS bits each in `wpr` words per row) instead
// of CSR: k = (j / N) * M + idx(j). Slots holding 0 (short groups, padding
// past K) are skipped.
//
// Memory: W values [Cout, vpr], indices [Cout, wpr]; X and Y are
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
    nm_n: u32,
    nm_m: u32,
    bits: u32,
    vpr: u32,     // value slots per row
    wpr: u32,     // index words per row
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

fn act(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    } else if (ACT == 2u) {
        return clamp(v, 0.0, 6.0);
    }
    return v;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv_nm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
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
    let per_word = 32u / p.bits;
    let mask = (1u << p.bits) - 1u;
    for (var j = 0u; j < p.vpr; j++) {
        let v = values[r * p.vpr + j];
        let word = indices[r * p.wpr + j / per_word];
        let k = (j / p.nm_n) * p.nm_m + ((word >> ((j % per_word) * p.bits)) & mask);
        if (v == 0.0 || k >= p.k) {
            continue;
        }
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
