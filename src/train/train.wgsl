// Training kernels (src/train/kernels.rs): forward with stored activations,
// backward, distillation losses, Adam with masks, masks from the pruned
// formats, and augmentation. Every kernel works on a batch.
//
// Activations are channel-major with the batch inside each channel:
// `[C, B, H*W]`, i.e. a row-major `C x (B*H*W)` matrix, so a 1x1 convolution
// over the whole batch is one GEMM `W[cout, cin] X[cin, B*HW]`.
//
// Every kernel takes the same uniform `P`; each section says what its fields
// mean there. Grids over many elements are 1-D, folded into 2-D when over the
// per-dimension limit (flat index rebuilt as wid.y * nwg.x + wid.x, checked).

struct P {
    u0: u32, u1: u32, u2: u32, u3: u32,
    u4: u32, u5: u32, u6: u32, u7: u32,
    u8: u32, u9: u32, u10: u32, u11: u32,
    f0: f32, f1: f32, f2: f32, f3: f32,
    f4: f32, f5: f32, f6: f32, f7: f32,
}

const F_BIAS: u32 = 1u;     // add bias[row]
const F_RELU6: u32 = 2u;    // clamp to [0, 6]
const F_RES: u32 = 4u;      // add a residual of the output's shape
const F_ACC: u32 = 8u;      // add into the output instead of overwriting
const F_SPLIT: u32 = 16u;   // gemm: write raw partial sums of this K slice
const F_DEPTHWISE: u32 = 32u; // conv: channel c reads input channel c only
const F_MASK: u32 = 64u;    // adam / act: a mask is bound

fn flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// ------------------------------------------------------------------ tr_gemm
// C[m, n] (+)= sum_k A(i, k) B(k, j), A(i, k) = a[i*u4 + k*u5],
// B(k, j) = b[k*u6 + j*u7] (strides give transposes for free), C row stride n.
// u0 m, u1 n, u2 k, u3 flags, u8 K slice length (grid z = slices), u9 C row
// stride. With F_SPLIT, slice z writes its raw sums to c[z*m*u9 + ...] and
// tr_reduce adds the slices. 64x64 tile per workgroup of 16x16 threads, 4x4
// outputs per thread, K staged 16 at a time.

@group(0) @binding(0) var<uniform> gp: P;
@group(0) @binding(1) var<storage, read> g_a: array<f32>;
@group(0) @binding(2) var<storage, read> g_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> g_c: array<f32>;
@group(0) @binding(4) var<storage, read> g_bias: array<f32>;
@group(0) @binding(5) var<storage, read> g_res: array<f32>;

var<workgroup> t_a: array<vec4<f32>, 256>; // [k 16][row quad 16]
var<workgroup> t_b: array<vec4<f32>, 256>; // [k 16][col quad 16]

@compute @workgroup_size(16, 16)
fn tr_gemm(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(local_invocation_id) lid3: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let m = gp.u0;
    let n = gp.u1;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let kbeg = wid.z * gp.u8;
    let kend = min(gp.u2, kbeg + gp.u8);
    let tx = lid3.x;
    let ty = lid3.y;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k0 = kbeg; k0 < kend; k0 += 16u) {
        for (var q = 0u; q < 4u; q++) {
            let e = li + 256u * q;
            // A tile: 64 rows x 16 k; consecutive threads walk the unit stride.
            var r: u32;
            var kk: u32;
            if (gp.u5 == 1u) {
                r = e / 16u;
                kk = e % 16u;
            } else {
                r = e % 64u;
                kk = e / 64u;
            }
            let gi = row0 + r;
            let gk = k0 + kk;
            var va = 0.0;
            if (gi < m && gk < kend) {
                va = g_a[gi * gp.u4 + gk * gp.u5];
            }
            t_a[kk * 16u + r / 4u][r % 4u] = va;
            // B tile: 16 k x 64 columns.
            var c: u32;
            var kb: u32;
            if (gp.u7 == 1u) {
                c = e % 64u;
                kb = e / 64u;
            } else {
                c = e / 16u;
                kb = e % 16u;
            }
            let gj = col0 + c;
            let gkb = k0 + kb;
            var vb = 0.0;
            if (gj < n && gkb < kend) {
                vb = g_b[gkb * gp.u6 + gj * gp.u7];
            }
            t_b[kb * 16u + c / 4u][c % 4u] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let av = t_a[kk * 16u + ty];
            let bv = t_b[kk * 16u + tx];
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    let flags = gp.u3;
    let ldc = gp.u9;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty * 4u + i;
        if (row >= m) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx * 4u + j;
            if (col >= n) {
                continue;
            }
            var v = acc[i][j];
            if ((flags & F_SPLIT) != 0u) {
                g_c[wid.z * m * ldc + row * ldc + col] = v;
                continue;
            }
            let idx = row * ldc + col;
            if ((flags & F_BIAS) != 0u) {
                v += g_bias[row];
            }
            if ((flags & F_RELU6) != 0u) {
                v = clamp(v, 0.0, 6.0);
            }
            if ((flags & F_RES) != 0u) {
                v += g_res[idx];
            }
            if ((flags & F_ACC) != 0u) {
                v += g_c[idx];
            }
            g_c[idx] = v;
        }
    }
}

// ---------------------------------------------------------------- tr_reduce
// out[i] (+)= sum_{z < u1} part[z * u0 + i], i < u0; u3 flags (F_ACC).

@group(0) @binding(0) var<uniform> rp: P;
@group(0) @binding(1) var<storage, read> r_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_out: array<f32>;

@compute @workgroup_size(256)
fn tr_reduce(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    if (i >= rp.u0) {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < rp.u1; z++) {
        s += r_part[z * rp.u0 + i];
    }
    if ((rp.u3 & F_ACC) != 0u) {
        s += r_out[i];
    }
    r_out[i] = s;
}

// --------------------------------------------------------------- tr_rowsum
// out[r] (+)= f0 * sum_{c < u1} x[r * u1 + c], r < u0; u3 flags (F_ACC).
// One workgroup per row. Bias gradients (f0 = 1) and average pooling
// (rows = C*B, u1 = HW, f0 = 1/HW).

@group(0) @binding(0) var<uniform> sp: P;
@group(0) @binding(1) var<storage, read> s_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_out: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn tr_rowsum(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let r = flat(wid, nwg);
    if (r >= sp.u0) {
        return;
    }
    var s = 0.0;
    let base = r * sp.u1;
    for (var c = li; c < sp.u1; c += 256u) {
        s += s_x[base + c];
    }
    red[li] = s;
    workgroupBarrier();
    for (var o = 128u; o > 0u; o = o >> 1u) {
        if (li < o) {
            red[li] += red[li + o];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        var v = sp.f0 * red[0];
        if ((sp.u3 & F_ACC) != 0u) {
            v += s_out[r];
        }
        s_out[r] = v;
    }
}

// ---------------------------------------------------------------- tr_pool_backward
// dst[r * u1 + c] = f0 * src[r] for r < u0, c < u1 (the backward of average
// pooling), times the ReLU6 gate of y (0 < y < 6) when F_RELU6 is set.

@group(0) @binding(0) var<uniform> bp: P;
@group(0) @binding(1) var<storage, read> b_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> b_dst: array<f32>;
@group(0) @binding(3) var<storage, read> b_y: array<f32>;

@compute @workgroup_size(256)
fn tr_pool_backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    if (i >= bp.u0 * bp.u1) {
        return;
    }
    var v = bp.f0 * b_src[i / bp.u1];
    if ((bp.u3 & F_RELU6) != 0u) {
        let y = b_y[i];
        if (!(y > 0.0 && y < 6.0)) {
            v = 0.0;
        }
    }
    b_dst[i] = v;
}

// ------------------------------------------------------------------ tr_relu6_backward
// d[i] *= (0 < y[i] < 6) for i < u0: the backward of ReLU6 from its output.

@group(0) @binding(0) var<uniform> ap: P;
@group(0) @binding(1) var<storage, read_write> a_d: array<f32>;
@group(0) @binding(2) var<storage, read> a_y: array<f32>;

@compute @workgroup_size(256)
fn tr_relu6_backward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    if (i >= ap.u0) {
        return;
    }
    let y = a_y[i];
    if (!(y > 0.0 && y < 6.0)) {
        a_d[i] = 0.0;
    }
}

// ------------------------------------------------------------------ tr_conv
// Spatial convolution, dense (the stem) or depthwise (F_DEPTHWISE).
// u0 cout, u1 batch, u2 k, u3 flags, u4 h, u5 w, u6 oh, u7 ow, u8 stride,
// u9 pad top, u10 pad left, u11 cin. Weights [cout, cin_per_group*k*k],
// column (ci*k + ky)*k + kx. One thread per output element.

@group(0) @binding(0) var<uniform> cp: P;
@group(0) @binding(1) var<storage, read> c_x: array<f32>;
@group(0) @binding(2) var<storage, read> c_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> c_y: array<f32>;
@group(0) @binding(4) var<storage, read> c_bias: array<f32>;

@compute @workgroup_size(256)
fn tr_conv(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    let ohw = cp.u6 * cp.u7;
    let per_c = cp.u1 * ohw;
    if (i >= cp.u0 * per_c) {
        return;
    }
    let co = i / per_c;
    let rem = i % per_c;
    let b = rem / ohw;
    let o = rem % ohw;
    let oy = o / cp.u7;
    let ox = o % cp.u7;
    let k = cp.u2;
    let hw = cp.u4 * cp.u5;
    let dw = (cp.u3 & F_DEPTHWISE) != 0u;
    var cin = cp.u11;
    if (dw) {
        cin = 1u;
    }
    let iy0 = i32(oy * cp.u8) - i32(cp.u9);
    let ix0 = i32(ox * cp.u8) - i32(cp.u10);
    var s = 0.0;
    for (var ci = 0u; ci < cin; ci++) {
        var xc = ci;
        if (dw) {
            xc = co;
        }
        let xbase = (xc * cp.u1 + b) * hw;
        let wbase = (co * cin + ci) * k * k;
        for (var ky = 0u; ky < k; ky++) {
            let iy = iy0 + i32(ky);
            if (iy < 0 || iy >= i32(cp.u4)) {
                continue;
            }
            for (var kx = 0u; kx < k; kx++) {
                let ix = ix0 + i32(kx);
                if (ix < 0 || ix >= i32(cp.u5)) {
                    continue;
                }
                s += c_w[wbase + ky * k + kx] * c_x[xbase + u32(iy) * cp.u5 + u32(ix)];
            }
        }
    }
    s += c_bias[co];
    if ((cp.u3 & F_RELU6) != 0u) {
        s = clamp(s, 0.0, 6.0);
    }
    c_y[i] = s;
}

// ------------------------------------------------------------ tr_dw_bwd_x
// The input gradient of a depthwise convolution: dx[c, b, iy, ix] (+)=
// sum over the taps whose output saw that input of w[c, tap] dz[c, b, oy, ox].
// Fields as tr_conv (u0 channels); one thread per input element; F_ACC.

@group(0) @binding(0) var<uniform> xp: P;
@group(0) @binding(1) var<storage, read> x_dz: array<f32>;
@group(0) @binding(2) var<storage, read> x_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> x_dx: array<f32>;

@compute @workgroup_size(256)
fn tr_dw_bwd_x(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    let hw = xp.u4 * xp.u5;
    let per_c = xp.u1 * hw;
    if (i >= xp.u0 * per_c) {
        return;
    }
    let c = i / per_c;
    let rem = i % per_c;
    let b = rem / hw;
    let p = rem % hw;
    let iy = i32(p / xp.u5) + i32(xp.u9);
    let ix = i32(p % xp.u5) + i32(xp.u10);
    let k = xp.u2;
    let st = i32(xp.u8);
    let ohw = xp.u6 * xp.u7;
    let zbase = (c * xp.u1 + b) * ohw;
    var s = 0.0;
    for (var ky = 0u; ky < k; ky++) {
        let ny = iy - i32(ky);
        if (ny < 0 || ny % st != 0) {
            continue;
        }
        let oy = ny / st;
        if (oy >= i32(xp.u6)) {
            continue;
        }
        for (var kx = 0u; kx < k; kx++) {
            let nx = ix - i32(kx);
            if (nx < 0 || nx % st != 0) {
                continue;
            }
            let ox = nx / st;
            if (ox >= i32(xp.u7)) {
                continue;
            }
            s += x_w[c * k * k + ky * k + kx] * x_dz[zbase + u32(oy) * xp.u7 + u32(ox)];
        }
    }
    if ((xp.u3 & F_ACC) != 0u) {
        s += x_dx[i];
    }
    x_dx[i] = s;
}

// ---------------------------------------------------------- tr_conv_bwd_w
// Weight and bias gradients of tr_conv, in two stages. Here: workgroup
// (slice z, output channel co) of 64 threads reduces the slice's `u12`
// output elements (of batch * output pixels) into cols + 1 partial sums —
// every thread keeps all of them in registers (the kernel size KS and input
// channels CI are override constants, so the tap loops unroll) and reads each
// dz once — then writes part[(z * cout + co) * (cols + 1) + j], j < cols for
// the weight column j, j = cols for the bias. tr_conv_reduce sums the slices
// into the weight and bias gradients. Fields as tr_conv; grid (slices, cout).

override KS: u32 = 3u;
override CI: u32 = 1u;
const MAXCOLS: u32 = 28u; // 3 * 3 * 3 + 1 (stem), 5 * 5 + 1 (depthwise)

@group(0) @binding(0) var<uniform> wp: P;
@group(0) @binding(1) var<storage, read> w_dz: array<f32>;
@group(0) @binding(2) var<storage, read> w_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> w_part: array<f32>;

var<workgroup> wred: array<f32, 1792>; // MAXCOLS * 64

@compute @workgroup_size(64)
fn tr_conv_bwd_w(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let z = wid.x;
    let co = wid.y;
    let cols = CI * KS * KS;
    let dw = (wp.u3 & F_DEPTHWISE) != 0u;
    let ohw = wp.u6 * wp.u7;
    let hw = wp.u4 * wp.u5;
    let total = wp.u1 * ohw;
    let chunk = (total + nwg.x - 1u) / nwg.x;
    let e0 = z * chunk;
    let e1 = min(total, e0 + chunk);
    var acc: array<f32, MAXCOLS>;
    for (var j = 0u; j < MAXCOLS; j++) {
        acc[j] = 0.0;
    }
    for (var e = e0 + li; e < e1; e += 64u) {
        let b = e / ohw;
        let o = e % ohw;
        let dz = w_dz[(co * wp.u1 + b) * ohw + o];
        acc[cols] += dz;
        let iy0 = i32((o / wp.u7) * wp.u8) - i32(wp.u9);
        let ix0 = i32((o % wp.u7) * wp.u8) - i32(wp.u10);
        for (var ci = 0u; ci < CI; ci++) {
            var xc = ci;
            if (dw) {
                xc = co;
            }
            let xbase = (xc * wp.u1 + b) * hw;
            for (var ky = 0u; ky < KS; ky++) {
                let iy = iy0 + i32(ky);
                if (iy < 0 || iy >= i32(wp.u4)) {
                    continue;
                }
                for (var kx = 0u; kx < KS; kx++) {
                    let ix = ix0 + i32(kx);
                    if (ix < 0 || ix >= i32(wp.u5)) {
                        continue;
                    }
                    acc[(ci * KS + ky) * KS + kx] += dz * w_x[xbase + u32(iy) * wp.u5 + u32(ix)];
                }
            }
        }
    }
    for (var j = 0u; j <= cols; j++) {
        wred[j * 64u + li] = acc[j];
    }
    workgroupBarrier();
    if (li <= cols) {
        var s = 0.0;
        for (var t = 0u; t < 64u; t++) {
            s += wred[li * 64u + t];
        }
        w_part[(z * wp.u0 + co) * (cols + 1u) + li] = s;
    }
}

// ---------------------------------------------------------- tr_conv_reduce
// dw[co, j] (+)= sum_z part[(z * u0 + co) * (u1 + 1) + j] for j < u1 (= cols),
// db[co] likewise from column u1; u2 slices, u3 flags (F_ACC); one thread per
// (co, j).

@group(0) @binding(0) var<uniform> qp: P;
@group(0) @binding(1) var<storage, read> q_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_db: array<f32>;

@compute @workgroup_size(256)
fn tr_conv_reduce(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    let w = qp.u1 + 1u;
    if (i >= qp.u0 * w) {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < qp.u2; z++) {
        s += q_part[z * qp.u0 * w + i];
    }
    let co = i / w;
    let j = i % w;
    let acc = (qp.u3 & F_ACC) != 0u;
    if (j < qp.u1) {
        let o = co * qp.u1 + j;
        if (acc) {
            s += q_dw[o];
        }
        q_dw[o] = s;
    } else {
        if (acc) {
            s += q_db[co];
        }
        q_db[co] = s;
    }
}

// -------------------------------------------------------------------- tr_kd_loss
// Distillation loss per sample, one workgroup per sample b < u1 (logits are
// [classes u0, batch u1]): p_s = softmax(s / T), p_t = softmax(t / T),
// loss_b = T^2 KL(p_t || p_s), ds[., b] = f1 * T * (p_s - p_t) (f0 = T,
// f1 = weight / batch). metrics[u4 + 2b] = loss_b, metrics[u4 + 2b + 1] = 1
// when the arg-maxes of s and t agree (lowest index on ties), else 0.

@group(0) @binding(0) var<uniform> kp: P;
@group(0) @binding(1) var<storage, read> k_s: array<f32>;
@group(0) @binding(2) var<storage, read> k_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_ds: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_metrics: array<f32>;

var<workgroup> kv: array<vec4<f32>, 256>;
var<workgroup> ki: array<vec2<u32>, 256>;

@compute @workgroup_size(256)
fn tr_kd_loss(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let b = wid.x;
    let nc = kp.u0;
    let nb = kp.u1;
    let inv_t = 1.0 / kp.f0;
    // Pass 1: maxima (for stable exponentials) and arg-maxes.
    var ms = -3.4e38;
    var mt = -3.4e38;
    var ias = 0xffffffffu;
    var iat = 0xffffffffu;
    for (var c = li; c < nc; c += 256u) {
        let s = k_s[c * nb + b];
        let t = k_t[c * nb + b];
        if (s > ms) {
            ms = s;
            ias = c;
        }
        if (t > mt) {
            mt = t;
            iat = c;
        }
    }
    kv[li] = vec4<f32>(ms, mt, 0.0, 0.0);
    ki[li] = vec2<u32>(ias, iat);
    workgroupBarrier();
    for (var o = 128u; o > 0u; o = o >> 1u) {
        if (li < o) {
            let a = kv[li];
            let c = kv[li + o];
            let ia = ki[li];
            let ic = ki[li + o];
            var r = a;
            var ir = ia;
            if (c.x > a.x || (c.x == a.x && ic.x < ia.x)) {
                r.x = c.x;
                ir.x = ic.x;
            }
            if (c.y > a.y || (c.y == a.y && ic.y < ia.y)) {
                r.y = c.y;
                ir.y = ic.y;
            }
            kv[li] = r;
            ki[li] = ir;
        }
        workgroupBarrier();
    }
    let mx = kv[0];
    let agree = ki[0].x == ki[0].y;
    workgroupBarrier();
    // Pass 2: partition functions and sum_c e_t (t - s) / T.
    var zs = 0.0;
    var zt = 0.0;
    var xent = 0.0;
    for (var c = li; c < nc; c += 256u) {
        let s = (k_s[c * nb + b] - mx.x) * inv_t;
        let t = (k_t[c * nb + b] - mx.y) * inv_t;
        let et = exp(t);
        zs += exp(s);
        zt += et;
        xent += et * (t - s);
    }
    kv[li] = vec4<f32>(zs, zt, xent, 0.0);
    workgroupBarrier();
    for (var o = 128u; o > 0u; o = o >> 1u) {
        if (li < o) {
            kv[li] += kv[li + o];
        }
        workgroupBarrier();
    }
    let z = kv[0];
    // KL = sum p_t (log p_t - log p_s) = xent / zt - log zt + log zs.
    let t2 = kp.f0 * kp.f0;
    for (var c = li; c < nc; c += 256u) {
        let s = (k_s[c * nb + b] - mx.x) * inv_t;
        let t = (k_t[c * nb + b] - mx.y) * inv_t;
        let ps = exp(s) / z.x;
        let pt = exp(t) / z.y;
        k_ds[c * nb + b] = kp.f1 * kp.f0 * (ps - pt);
    }
    if (li == 0u) {
        k_metrics[kp.u4 + 2u * b] = t2 * (z.z / z.y - log(z.y) + log(z.x));
        k_metrics[kp.u4 + 2u * b + 1u] = select(0.0, 1.0, agree);
    }
}

// ------------------------------------------------------------------ tr_feature_loss
// Feature matching at a block output: g[i] += f0 * (fs[i] - ft[i]) over
// i < u0 (f0 = 2 * weight / u0: the gradient of weight * mean squared error),
// and per workgroup the partial sum of (fs - ft)^2 into metrics[u4 + wg].
// Exactly 256 workgroups, grid-strided.

@group(0) @binding(0) var<uniform> fp: P;
@group(0) @binding(1) var<storage, read> f_s: array<f32>;
@group(0) @binding(2) var<storage, read> f_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> f_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_metrics: array<f32>;

var<workgroup> fred: array<f32, 256>;

@compute @workgroup_size(256)
fn tr_feature_loss(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = wid.x * 256u + li; i < fp.u0; i += 65536u) {
        let d = f_s[i] - f_t[i];
        f_g[i] += fp.f0 * d;
        s += d * d;
    }
    fred[li] = s;
    workgroupBarrier();
    for (var o = 128u; o > 0u; o = o >> 1u) {
        if (li < o) {
            fred[li] += fred[li + o];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        f_metrics[fp.u4 + wid.x] = fred[0];
    }
}

// ------------------------------------------------------------------ tr_adam
// Adam with decoupled weight decay (AdamW) over u0 elements; u3 flags: F_MASK
// multiplies the gradient and the result by mask (pruned weights stay exactly
// 0), u1 = 1 applies weight decay. The step's scalars live in `hyper` (one
// buffer rewritten per step): [lr, beta1, beta2, eps, 1 - beta1^t,
// 1 - beta2^t, weight decay, gradient scale].

@group(0) @binding(0) var<uniform> op: P;
@group(0) @binding(1) var<storage, read_write> o_w: array<f32>;
@group(0) @binding(2) var<storage, read> o_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> o_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> o_v: array<f32>;
@group(0) @binding(5) var<storage, read> o_mask: array<f32>;
@group(0) @binding(6) var<storage, read> o_hyper: array<f32>;

@compute @workgroup_size(256)
fn tr_adam(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    if (i >= op.u0) {
        return;
    }
    let lr = o_hyper[0];
    let b1 = o_hyper[1];
    let b2 = o_hyper[2];
    let eps = o_hyper[3];
    let c1 = o_hyper[4];
    let c2 = o_hyper[5];
    let wd = o_hyper[6];
    var g = o_g[i] * o_hyper[7];
    var keep = 1.0;
    if ((op.u3 & F_MASK) != 0u) {
        keep = o_mask[i];
        g *= keep;
    }
    let m = b1 * o_m[i] + (1.0 - b1) * g;
    let v = b2 * o_v[i] + (1.0 - b2) * g * g;
    o_m[i] = m;
    o_v[i] = v;
    var w = o_w[i];
    if (op.u1 == 1u) {
        w -= lr * wd * w;
    }
    w -= lr * (m / c1) / (sqrt(v / c2) + eps);
    o_w[i] = w * keep;
}

// ------------------------------------------------------------- tr_mask_*
// Dense 0/1 masks [rows u0, cols u1] from the pruned formats (the mask
// buffer is zeroed first). tr_mask_csr: one thread per row. tr_mask_bsr: one
// thread per (block row, element of a block), u2 block rows, u3 block cols.
// tr_mask_nm: one thread per (row, group), u2 n, u3 m, u4 bits per index,
// u5 indices per word, u6 index words per row, u7 groups per row (slots past
// the last column are padding and skipped).
// tr_mask_apply: w[i] *= mask[i], m[i] *= mask[i], v[i] *= mask[i], i < u0.

@group(0) @binding(0) var<uniform> mp: P;
@group(0) @binding(1) var<storage, read> m_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> m_idx: array<u32>;
@group(0) @binding(3) var<storage, read> m_val: array<f32>;
@group(0) @binding(4) var<storage, read_write> m_mask: array<f32>;

@compute @workgroup_size(256)
fn tr_mask_csr(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let r = flat(wid, nwg) * 256u + li;
    if (r >= mp.u0) {
        return;
    }
    for (var j = m_ptr[r]; j < m_ptr[r + 1u]; j++) {
        m_mask[r * mp.u1 + m_idx[j]] = 1.0;
    }
}

@compute @workgroup_size(256)
fn tr_mask_bsr(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let t = flat(wid, nwg) * 256u + li;
    let per = mp.u2 * mp.u3;
    let grid_rows = (mp.u0 + mp.u2 - 1u) / mp.u2;
    if (t >= grid_rows * per) {
        return;
    }
    let br = t / per;
    let e = t % per;
    let r = br * mp.u2 + e / mp.u3;
    if (r >= mp.u0) {
        return;
    }
    for (var j = m_ptr[br]; j < m_ptr[br + 1u]; j++) {
        let c = m_idx[j] * mp.u3 + e % mp.u3;
        if (c < mp.u1) {
            m_mask[r * mp.u1 + c] = 1.0;
        }
    }
}

@compute @workgroup_size(256)
fn tr_mask_nm(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let t = flat(wid, nwg) * 256u + li;
    let groups = mp.u7;
    if (t >= mp.u0 * groups) {
        return;
    }
    let r = t / groups;
    let g = t % groups;
    let n = mp.u2;
    let bits = mp.u4;
    let per_word = mp.u5;
    for (var s = 0u; s < n; s++) {
        let j = g * n + s;
        let word = m_idx[r * mp.u6 + j / per_word];
        let idx = (word >> ((j % per_word) * bits)) & ((1u << bits) - 1u);
        let c = g * mp.u3 + idx;
        if (c < mp.u1) {
            m_mask[r * mp.u1 + c] = 1.0;
        }
    }
}

@group(0) @binding(0) var<uniform> ma: P;
@group(0) @binding(1) var<storage, read> ma_mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> ma_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> ma_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> ma_v: array<f32>;

@compute @workgroup_size(256)
fn tr_mask_apply(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    if (i >= ma.u0) {
        return;
    }
    let k = ma_mask[i];
    ma_w[i] *= k;
    ma_m[i] *= k;
    ma_v[i] *= k;
}

// --------------------------------------------------------------- tr_augment
// The training batch [3, batch u0, r*r] (u1 = r) from source images packed
// RGBA8 (one u32 per pixel, s*s each, u2 = s, u3 sources): per sample 16
// floats in `aug`: [src a, src b, mixup lambda (weight of a), flip a,
// a.x0, a.y0, a.w, a.h, b.x0, b.y0, b.w, b.h, brightness, contrast,
// saturation, flip b]; crop boxes in source pixels. Bilinear sampling, mixup
// of the two crops, then brightness (scale), contrast (around mid-grey) and
// saturation (around the pixel's luma), clamped to [0, 255], then
// (x - mean) / std with f0..f2 the means, f3..f5 the stds.

@group(0) @binding(0) var<uniform> gu: P;
@group(0) @binding(1) var<storage, read> au_src: array<u32>;
@group(0) @binding(2) var<storage, read> au_aug: array<f32>;
@group(0) @binding(3) var<storage, read_write> au_out: array<f32>;

fn texel(img: u32, x: i32, y: i32) -> vec3<f32> {
    let s = i32(gu.u2);
    let cx = clamp(x, 0, s - 1);
    let cy = clamp(y, 0, s - 1);
    let p = au_src[img * gu.u2 * gu.u2 + u32(cy * s + cx)];
    return vec3<f32>(f32(p & 255u), f32((p >> 8u) & 255u), f32((p >> 16u) & 255u));
}

fn sample_crop(img: u32, x0: f32, y0: f32, w: f32, h: f32, flip: bool, ox: u32, oy: u32) -> vec3<f32> {
    let r = f32(gu.u1);
    var fx = f32(ox);
    if (flip) {
        fx = r - 1.0 - fx;
    }
    let u = x0 + (fx + 0.5) * w / r - 0.5;
    let v = y0 + (f32(oy) + 0.5) * h / r - 0.5;
    let xf = floor(u);
    let yf = floor(v);
    let ax = u - xf;
    let ay = v - yf;
    let xi = i32(xf);
    let yi = i32(yf);
    let top = mix(texel(img, xi, yi), texel(img, xi + 1, yi), ax);
    let bot = mix(texel(img, xi, yi + 1), texel(img, xi + 1, yi + 1), ax);
    return mix(top, bot, ay);
}

@compute @workgroup_size(256)
fn tr_augment(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat(wid, nwg) * 256u + li;
    let rr = gu.u1 * gu.u1;
    if (i >= gu.u0 * rr) {
        return;
    }
    let b = i / rr;
    let p = i % rr;
    let oy = p / gu.u1;
    let ox = p % gu.u1;
    let a = b * 16u;
    let ia = min(u32(au_aug[a]), gu.u3 - 1u);
    let ib = min(u32(au_aug[a + 1u]), gu.u3 - 1u);
    let lam = au_aug[a + 2u];
    var col = sample_crop(ia, au_aug[a + 4u], au_aug[a + 5u], au_aug[a + 6u], au_aug[a + 7u],
                          au_aug[a + 3u] > 0.5, ox, oy);
    if (lam < 1.0) {
        let cb = sample_crop(ib, au_aug[a + 8u], au_aug[a + 9u], au_aug[a + 10u], au_aug[a + 11u],
                             au_aug[a + 15u] > 0.5, ox, oy);
        col = lam * col + (1.0 - lam) * cb;
    }
    col *= au_aug[a + 12u];
    col = (col - vec3<f32>(127.5)) * au_aug[a + 13u] + vec3<f32>(127.5);
    let luma = dot(col, vec3<f32>(0.299, 0.587, 0.114));
    col = vec3<f32>(luma) + (col - vec3<f32>(luma)) * au_aug[a + 14u];
    col = clamp(col, vec3<f32>(0.0), vec3<f32>(255.0));
    let plane = gu.u0 * rr;
    au_out[i] = (col.x - gu.f0) / gu.f3;
    au_out[plane + i] = (col.y - gu.f1) / gu.f4;
    au_out[2u * plane + i] = (col.z - gu.f2) / gu.f5;
}
