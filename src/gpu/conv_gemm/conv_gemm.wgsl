// Convolution as an implicit GEMM, f32:
//   Y[g*Cout_g + r, col] = act(sum_k W[g*Cout_g + r, k] * im2col(X)[g, k, col] + bias)
// for every group g (workgroup z), output channel r of the group and output
// column col = n*OH*OW + oy*OW + ox. The reduction index k runs over
// (ci, ky, kx) of the group's Cin_g input channels, k = (ci*KH + ky)*KW + kx,
// the order of an ONNX/PyTorch weight [Cout, Cin_g, KH, KW] flattened. The
// im2col matrix is never materialised: each X element is gathered from
// X[g*Cin_g + ci, n*H*W + iy*W + ix] with iy = oy*SH + ky*DH - PT and
// ix = ox*SW + kx*DW - PL, zero outside the image (padding).
//
// Memory: activations are feature-major GpuMatrix rows (X [Cin, N*H*W],
// Y [Cout, N*OH*OW]), W a GpuMatrix [Cout, K]; `*_stride` are floats per row
// (padded to a multiple of 4; the padding is never read or written).
//
// Each workgroup owns a BM x BN tile of Y (BM output channels of group z by
// BN output columns) and walks K in steps of BK, staging the W tile
// transposed (ws[k][m]) and the gathered X tile (xs[k][n]) in workgroup
// memory. Threads form a WG_X x WG_Y grid (WG_X = BN/TN, WG_Y = BM/TM);
// thread (tx, ty) owns rows ty + i*WG_Y (i < TM) and columns tx + j*WG_X
// (j < TN) of the tile, so neighbouring threads read neighbouring words of xs
// and one word of ws is broadcast. Out-of-range rows, columns and K are
// guarded against the uniform.

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;     // rows per thread, <= 8
override TN: u32 = 4u;     // columns per thread, <= 8
override WG_X: u32 = 16u;  // BN / TN
override WG_Y: u32 = 16u;  // BM / TM
override WS_LEN: u32 = 1024u; // BK * BM
override XS_LEN: u32 = 1024u; // BK * BN

// import conv_params

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> ws: array<f32, WS_LEN>;
var<workgroup> xs: array<f32, XS_LEN>;

// The im2col element (k, col) of group g, 0 in the padding.
fn gather(g: u32, k: u32, col: u32) -> f32 {
    if (k >= p.k || col >= p.cols) {
        return 0.0;
    }
    let taps = p.kh * p.kw;
    let ci = k / taps;
    let t = k - ci * taps;
    let ky = t / p.kw;
    let kx = t - ky * p.kw;
    let plane = p.oh * p.ow;
    let n = col / plane;
    let pix = col - n * plane;
    let oy = pix / p.ow;
    let ox = pix - oy * p.ow;
    let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pt);
    let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pl);
    if (iy < 0 || ix < 0 || u32(iy) >= p.h || u32(ix) >= p.w) {
        return 0.0;
    }
    let row = g * p.cin_g + ci;
    return x[row * p.x_stride + n * p.h * p.w + u32(iy) * p.w + u32(ix)];
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn conv_gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let tid = ty * WG_X + tx;
    let threads = WG_X * WG_Y;
    let g = wid.z;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let wrow0 = g * p.cout_g;

    var acc: array<f32, 64>;
    for (var i = 0u; i < 64u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = tid; i < BM * BK; i += threads) {
            let r = i / BK;
            let kk = i - r * BK;
            var v = 0.0;
            if (row0 + r < p.cout_g && k0 + kk < p.k) {
                v = wt[(wrow0 + row0 + r) * p.w_stride + k0 + kk];
            }
            ws[kk * BM + r] = v;
        }
        for (var i = tid; i < BK * BN; i += threads) {
            let kk = i / BN;
            let c = i - kk * BN;
            xs[kk * BN + c] = gather(g, k0 + kk, col0 + c);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 8>;
            for (var i = 0u; i < TM; i++) {
                a[i] = ws[kk * BM + ty + i * WG_Y];
            }
            for (var j = 0u; j < TN; j++) {
                let b = xs[kk * BN + tx + j * WG_X];
                for (var i = 0u; i < TM; i++) {
                    acc[i * 8u + j] = fma(a[i], b, acc[i * 8u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let r = row0 + ty + i * WG_Y;
        if (r >= p.cout_g) {
            continue;
        }
        var b = 0.0;
        if (HAS_BIAS) {
            b = bias[wrow0 + r];
        }
        for (var j = 0u; j < TN; j++) {
            let c = col0 + tx + j * WG_X;
            if (c < p.cols) {
                y[(wrow0 + r) * p.y_stride + c] = act1(acc[i * 8u + j] + b);
            }
        }
    }
}
