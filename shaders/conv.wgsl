// Convolutions and pooling on channel-major activations.
//
// Layout: an activation is a matrix [C, H*W] (channel c, pixel y*W + x) whose
// rows are padded to `in_stride` / `out_stride` floats (GpuMatrix stride), the
// layout the 1x1 convolutions multiply as W[Cout, Cin] * X[Cin, H*W].
// Padding is explicit and may be asymmetric (TensorFlow "same" padding puts
// the extra row/column at the bottom/right): input pixel (oy*s - pad_top + ky,
// ox*s - pad_left + kx) outside the image reads as zero.
//
// conv2d: one thread per output element (cout, pixel), looping over cin*k*k
//   taps; weight [cout][cin][ky][kx]. Used for the 3-channel stem.
// depthwise: one thread per output element (c, pixel), k*k taps; weight [c][ky][kx].
// avgpool: one workgroup per channel reduces its H*W pixels to the mean,
//   written to row c of a [C, 1] matrix (stride 4: the padding gets zeros).
// Every entry point adds bias[c] and applies ACT (0 none, 1 ReLU, 2 ReLU6).
// Grids over 65535 workgroups are folded into 2-D.

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
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

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

@compute @workgroup_size(256)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    let npix = cp.oh * cp.ow;
    if (idx >= cp.cout * npix) {
        return;
    }
    let co = idx / npix;
    let pix = idx % npix;
    let oy = pix / cp.ow;
    let ox = pix % cp.ow;
    var acc = 0.0;
    for (var ci = 0u; ci < cp.cin; ci++) {
        for (var ky = 0u; ky < cp.k; ky++) {
            let iy = i32(oy * cp.stride + ky) - i32(cp.pad_top);
            if (iy < 0 || iy >= i32(cp.h)) {
                continue;
            }
            for (var kx = 0u; kx < cp.k; kx++) {
                let ix = i32(ox * cp.stride + kx) - i32(cp.pad_left);
                if (ix < 0 || ix >= i32(cp.w)) {
                    continue;
                }
                let wv = weight[((co * cp.cin + ci) * cp.k + ky) * cp.k + kx];
                acc = fma(wv, input[ci * cp.in_stride + u32(iy) * cp.w + u32(ix)], acc);
            }
        }
    }
    output[co * cp.out_stride + pix] = finish(acc, co);
}

@compute @workgroup_size(256)
fn depthwise(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    let npix = cp.oh * cp.ow;
    if (idx >= cp.cout * npix) {
        return;
    }
    let c = idx / npix;
    let pix = idx % npix;
    let oy = pix / cp.ow;
    let ox = pix % cp.ow;
    var acc = 0.0;
    for (var ky = 0u; ky < cp.k; ky++) {
        let iy = i32(oy * cp.stride + ky) - i32(cp.pad_top);
        if (iy < 0 || iy >= i32(cp.h)) {
            continue;
        }
        for (var kx = 0u; kx < cp.k; kx++) {
            let ix = i32(ox * cp.stride + kx) - i32(cp.pad_left);
            if (ix < 0 || ix >= i32(cp.w)) {
                continue;
            }
            acc = fma(weight[(c * cp.k + ky) * cp.k + kx], input[c * cp.in_stride + u32(iy) * cp.w + u32(ix)], acc);
        }
    }
    output[c * cp.out_stride + pix] = finish(acc, c);
}

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn avgpool(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    // Channel index is workgroup-uniform; workgroups past C idle but still
    // reach the barriers.
    let c = wid.y * nwg.x + wid.x;
    let npix = cp.h * cp.w;
    var s = 0.0;
    if (c < cp.cout) {
        for (var i = lid; i < npix; i += 256u) {
            s += input[c * cp.in_stride + i];
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step /= 2u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    if (c < cp.cout && lid < cp.out_stride) {
        var v = 0.0;
        if (lid == 0u) {
            v = finish(partial[0] / f32(npix), c);
        }
        output[c * cp.out_stride + lid] = v;
    }
}
