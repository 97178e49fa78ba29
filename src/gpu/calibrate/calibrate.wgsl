// Calibration and pruning-criterion kernels (src/gpu/calibrate.rs).
//
// Matrices are row-major f32, rows padded to `stride` floats (GpuMatrix).
// Grids are 1-D, folded into 2-D when over 65535 workgroups (flat index
// rebuilt from both and checked).

struct CalParams {
    rows: u32,
    cols: u32,
    stride: u32,
    offset: u32, // row_stats: first stats word; bias_correct: stride of the products
}

fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// ---------------------------------------------------------------- row_stats
// stats[offset + 2r] += sum_c x[r, c] and stats[offset + 2r + 1] += sum_c x[r, c]^2,
// one workgroup per row (tree reduction in workgroup memory).

@group(0) @binding(0) var<uniform> sp: CalParams;
@group(0) @binding(1) var<storage, read> s_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_stats: array<f32>;

var<workgroup> red: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn row_stats(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let r = flat_group(wid, nwg);
    if (r >= sp.rows) {
        return;
    }
    var acc = vec2<f32>(0.0, 0.0);
    let base = r * sp.stride;
    for (var c = lid; c < sp.cols; c += 256u) {
        let v = s_x[base + c];
        acc += vec2<f32>(v, v * v);
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var o = 128u; o > 0u; o = o >> 1u) {
        if (lid < o) {
            red[lid] += red[lid + o];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let i = sp.offset + 2u * r;
        s_stats[i] += red[0].x;
        s_stats[i + 1u] += red[0].y;
    }
}

// ---------------------------------------------------------------- score_cols
// score[r, c] = |w[r, c]| * norm[c] (the activation-aware criterion); padding 0.

@group(0) @binding(0) var<uniform> cp: CalParams;
@group(0) @binding(1) var<storage, read> c_w: array<f32>;
@group(0) @binding(2) var<storage, read> c_norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> c_score: array<f32>;

@compute @workgroup_size(256)
fn score_cols(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_group(wid, nwg) * 256u + lid;
    if (i >= cp.rows * cp.stride) {
        return;
    }
    let c = i % cp.stride;
    var s = 0.0;
    if (c < cp.cols) {
        s = abs(c_w[i]) * c_norm[c];
    }
    c_score[i] = s;
}

// ---------------------------------------------------------------- bias_correct
// out[r] = bias[r] + yd[r * offset] - yp[r * offset]: the bias that keeps each
// output's mean when the weights change from W (yd = W * mean) to the pruned
// W' (yp = W' * mean).

@group(0) @binding(0) var<uniform> bp: CalParams;
@group(0) @binding(1) var<storage, read> b_bias: array<f32>;
@group(0) @binding(2) var<storage, read> b_yd: array<f32>;
@group(0) @binding(3) var<storage, read> b_yp: array<f32>;
@group(0) @binding(4) var<storage, read_write> b_out: array<f32>;

@compute @workgroup_size(256)
fn bias_correct(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = flat_group(wid, nwg) * 256u + lid;
    if (r >= bp.rows) {
        return;
    }
    b_out[r] = b_bias[r] + (b_yd[r * bp.offset] - b_yp[r * bp.offset]);
}

// ---------------------------------------------------------------- scale_rows
// out[r, c] = w[r, c] * scale[r] (re-normalization: each output channel's
// weights scaled; padding columns copied scaled, i.e. stay 0).

@group(0) @binding(0) var<uniform> rp: CalParams;
@group(0) @binding(1) var<storage, read> r_w: array<f32>;
@group(0) @binding(2) var<storage, read> r_scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_out: array<f32>;

@compute @workgroup_size(256)
fn scale_rows(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_group(wid, nwg) * 256u + lid;
    if (i >= rp.rows * rp.stride) {
        return;
    }
    r_out[i] = r_w[i] * r_scale[i / rp.stride];
}
