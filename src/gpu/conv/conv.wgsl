// Convolutions and pooling on channel-major activations.
//
// Layout: an activation is a matrix [C, H*W] (channel c, pixel y*W + x) whose
// rows are padded to `in_stride` / `out_stride` floats (GpuMatrix stride), the
// layout the 1x1 convolutions multiply as W[Cout, Cin] * X[Cin, H*W].
// Padding is explicit and may be asymmetric (TensorFlow "same" padding puts
// the extra row/column at the bottom/right): input pixel (oy*s - pad_top + ky,
// ox*s - pad_left + kx) outside the image reads as zero.
//
// conv2d: each thread computes VEC horizontally adjacent output pixels of CO
//   output channels (sharing every input tap), looping over cin and the K x K
//   taps; weight [cout][cin][ky][kx]. Used for the 3-channel stem.
// depthwise: the same per channel, K x K taps; weight [c][ky][kx].
// K and STRIDE are pipeline constants, so the tap loops have constant trip
// counts (unrolled by the driver's compiler). Zero padding is branch-free: the
// index is clamped into the image and the value selected to 0 outside it (no
// divergent branches, which CPU implementations of Vulkan/WebGPU run lane by
// lane).
// avgpool: one thread per channel sums its H*W pixels (no barriers), writing
//   the mean to row c of a [C, 1] matrix (stride 4: the padding gets zeros).
// Every entry point adds bias[c] and applies ACT (0 none, 1 ReLU, 2 ReLU6).
// Grids over 65535 workgroups are folded into 2-D.
//
// Storage type: activations are arrays of T. This file says T = f32; the f16
// kernels (CONV2D_F16, ... in conv/mod.rs) compile it with `alias T = f16;`
// (gpu::wgsl::expand, which adds `enable f16;`): f16 activations, f32 weights
// and bias, every sum in f32, one rounding per output. Loads widen with f32(),
// stores narrow with T().
alias T = f32;

override HAS_BIAS: bool = true;
override ACT: u32 = 2u;

struct ConvParams {
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    in_stride: u32,
    out_stride: u32,
}

@group(0) @binding(0) var<uniform> cp: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<T>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<T>;

fn act(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    } else if (ACT == 2u) {
        return clamp(v, 0.0, 6.0);
    }
    return v;
}

fn finish(v: f32, c: u32) -> f32 {
    var r = v;
    if (HAS_BIAS) {
        r += bias[c];
    }
    return act(r);
}

override K: u32 = 3u;
override STRIDE: u32 = 1u;
const VEC: u32 = 4u;

// Input value (iy, ix) of the channel starting at `base`, 0 outside the image.
fn tap(base: u32, iy: i32, ix: i32) -> f32 {
    let ok = iy >= 0 && iy < i32(cp.h) && ix >= 0 && ix < i32(cp.w);
    let cy = u32(clamp(iy, 0, i32(cp.h) - 1));
    let cx = u32(clamp(ix, 0, i32(cp.w) - 1));
    return select(0.0, f32(input[base + cy * cp.w + cx]), ok);
}

// The VEC taps of one kernel position for outputs ox0 .. ox0 + VEC - 1.
fn taps(base: u32, iy: i32, ix0: i32) -> vec4<f32> {
    let s = i32(STRIDE);
    return vec4<f32>(tap(base, iy, ix0), tap(base, iy, ix0 + s), tap(base, iy, ix0 + 2 * s), tap(base, iy, ix0 + 3 * s));
}

struct Quad {
    c: u32,
    oy: u32,
    ox0: u32,
    ok: bool,
}

// Which channel, output row and first output column thread `idx` owns.
fn quad(idx: u32, channels: u32) -> Quad {
    let qw = (cp.ow + VEC - 1u) / VEC;
    let per_c = cp.oh * qw;
    let c = idx / per_c;
    let r = idx - c * per_c;
    let oy = r / qw;
    return Quad(c, oy, (r - oy * qw) * VEC, idx < channels * per_c);
}

fn store(q: Quad, acc: vec4<f32>) {
    let ob = q.c * cp.out_stride + q.oy * cp.ow + q.ox0;
    for (var j = 0u; j < VEC; j++) {
        if (q.ox0 + j < cp.ow) {
            output[ob + j] = T(finish(acc[j], q.c));
        }
    }
}

// conv2d: CO output channels per thread share every input tap.
const CO: u32 = 8u;

@compute @workgroup_size(256)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    // Threads enumerate (channel group, row, quad); q.c is the channel group.
    let q = quad((wid.y * nwg.x + wid.x) * 256u + lid, (cp.cout + CO - 1u) / CO);
    if (!q.ok) {
        return;
    }
    let c0 = q.c * CO;
    var acc: array<vec4<f32>, 8>;
    for (var j = 0u; j < CO; j++) {
        acc[j] = vec4<f32>(0.0);
    }
    let ix0 = i32(q.ox0 * STRIDE) - i32(cp.pad_left);
    for (var ci = 0u; ci < cp.cin; ci++) {
        let base = ci * cp.in_stride;
        for (var ky = 0u; ky < K; ky++) {
            let iy = i32(q.oy * STRIDE + ky) - i32(cp.pad_top);
            for (var kx = 0u; kx < K; kx++) {
                let t = taps(base, iy, ix0 + i32(kx));
                for (var j = 0u; j < CO; j++) {
                    // Channels past cout read weight 0 (clamped index, selected away).
                    let co = min(c0 + j, cp.cout - 1u);
                    let wv = select(0.0, weight[((co * cp.cin + ci) * K + ky) * K + kx], c0 + j < cp.cout);
                    acc[j] += wv * t;
                }
            }
        }
    }
    for (var j = 0u; j < CO; j++) {
        if (c0 + j < cp.cout) {
            store(Quad(c0 + j, q.oy, q.ox0, true), acc[j]);
        }
    }
}

@compute @workgroup_size(256)
fn depthwise(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let q = quad((wid.y * nwg.x + wid.x) * 256u + lid, cp.cout);
    if (!q.ok) {
        return;
    }
    var acc = vec4<f32>(0.0);
    let ix0 = i32(q.ox0 * STRIDE) - i32(cp.pad_left);
    let base = q.c * cp.in_stride;
    let wb = q.c * K * K;
    for (var ky = 0u; ky < K; ky++) {
        let iy = i32(q.oy * STRIDE + ky) - i32(cp.pad_top);
        for (var kx = 0u; kx < K; kx++) {
            acc += weight[wb + ky * K + kx] * taps(base, iy, ix0 + i32(kx));
        }
    }
    store(q, acc);
}

@compute @workgroup_size(64)
fn avgpool(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let c = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (c >= cp.cout) {
        return;
    }
    let npix = cp.h * cp.w;
    var s = 0.0;
    for (var i = 0u; i < npix; i++) {
        s += f32(input[c * cp.in_stride + i]);
    }
    output[c * cp.out_stride] = T(finish(s / f32(npix), c));
    for (var j = 1u; j < cp.out_stride; j++) {
        output[c * cp.out_stride + j] = T(0.0);
    }
}
