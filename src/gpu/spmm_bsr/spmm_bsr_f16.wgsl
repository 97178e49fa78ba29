// Block-sparse SpMM  Y[M, N] = act(W_bsr[M, K] * X[K, N] + bias[M]) with f16
// storage and f32 accumulation (needs the shader-f16 feature). The f16 twin of
// spmm_bsr.wgsl: same schedule (one block row per workgroup, longest block rows
// first), same override constants plus VEC_W, same thread layout.
//
// Storage: the block values are f16 (row-major inside a block, the layout of
// src/sparse/bsr.rs), bound as vec4<f16> with the buffer padded to whole
// vec4s; row_ptr, col_idx and row_order are the u32 arrays of the f32 BSR. X
// and Y are f16 with rows padded to a multiple of 8 halves (GpuMatrixF16),
// bound as vec4<f16>. bias is f32.
//
// Precision: blocks and X chunks are converted to f32 as they are staged in
// workgroup memory, so the inner loop is the f32 kernel's; Y is rounded to f16
// once, after bias and activation.

enable f16;

override BR: u32 = 16u;
override BC: u32 = 16u;
override KC: u32 = 8u;      // X rows staged per chunk, <= BC
override WG_X: u32 = 32u;
override WG_Y: u32 = 4u;    // ceil(BR / 4)
override TN4: u32 = 2u;     // vec4 columns per thread, <= 4
override WS_LEN: u32 = 64u; // BC * WG_Y
override XS_LEN: u32 = 512u; // KC * WG_X * TN4
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
// BC is a multiple of 4: a block row is whole vec4<f16>s (every block starts
// on a vec4 since BR * BC is then one too), staged 4 values per load.
override VEC_W: bool = true;

struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,
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

var<workgroup> ws: array<vec4<f32>, WS_LEN>;
var<workgroup> xs: array<vec4<f32>, XS_LEN>;

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        return clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

@compute @workgroup_size(WG_X, WG_Y)
fn spmm_bsr_f16(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * WG_X + tx;
    let nthreads = WG_X * WG_Y;
    let bn4 = WG_X * TN4;
    let n04 = wid.x * bn4;
    let brow = row_order[wid.y];
    let first = row_ptr[brow];
    let last = row_ptr[brow + 1u];
    let bsize = BR * BC;

    var acc: array<vec4<f32>, 16>; // acc[e * 4 + j]: row 4*ty + e, vec4 column j
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var b = first; b < last; b++) {
        let kbase = col_idx[b] * BC;
        let vbase = b * bsize;
        // Stage the block transposed, in f32: ws[c * WG_Y + r / 4][r % 4] = W[r][c];
        // rows BR..4*WG_Y are zero.
        if (VEC_W) {
            let bc4 = BC / 4u;
            for (var i = t; i < bc4 * WG_Y * 4u; i += nthreads) {
                let r = i / bc4;
                let c4 = i % bc4;
                var v = vec4<f32>(0.0);
                if (r < BR) {
                    v = vec4<f32>(values[(vbase + r * BC) / 4u + c4]);
                }
                let base = 4u * c4 * WG_Y + r / 4u;
                let comp = r % 4u;
                ws[base][comp] = v.x;
                ws[base + WG_Y][comp] = v.y;
                ws[base + 2u * WG_Y][comp] = v.z;
                ws[base + 3u * WG_Y][comp] = v.w;
            }
        } else {
            for (var i = t; i < BC * WG_Y * 4u; i += nthreads) {
                let r = i / BC;
                let c = i % BC;
                var v = 0.0;
                if (r < BR) {
                    let e = vbase + r * BC + c;
                    v = f32(values[e / 4u][e % 4u]);
                }
                ws[c * WG_Y + r / 4u][r % 4u] = v;
            }
        }
        for (var kc0 = 0u; kc0 < BC; kc0 += KC) {
            // Stage KC rows of X in f32 (zero past K, past the block, past the row).
            for (var i = t; i < KC * bn4; i += nthreads) {
                let kr = i / bn4;
                let c = n04 + i % bn4;
                let kg = kbase + kc0 + kr;
                var v = vec4<f16>(0.0);
                if (kc0 + kr < BC && kg < p.k && c < p.x_stride4) {
                    v = x[kg * p.x_stride4 + c];
                }
                xs[i] = vec4<f32>(v);
            }
            workgroupBarrier();
            let kn = min(KC, BC - kc0);
            for (var kr = 0u; kr < kn; kr++) {
                let a = ws[(kc0 + kr) * WG_Y + ty];
                for (var j = 0u; j < TN4; j++) {
                    let bv = xs[kr * bn4 + tx + j * WG_X];
                    acc[j] = fma(vec4<f32>(a.x), bv, acc[j]);
                    acc[4u + j] = fma(vec4<f32>(a.y), bv, acc[4u + j]);
                    acc[8u + j] = fma(vec4<f32>(a.z), bv, acc[8u + j]);
                    acc[12u + j] = fma(vec4<f32>(a.w), bv, acc[12u + j]);
                }
            }
            workgroupBarrier();
        }
    }

    for (var e = 0u; e < 4u; e++) {
        let rl = 4u * ty + e;
        let row = brow * BR + rl;
        if (rl < BR && row < p.m) {
            var bv = 0.0;
            if (HAS_BIAS) {
                bv = bias[row];
            }
            for (var j = 0u; j < TN4; j++) {
                let c = n04 + tx + j * WG_X;
                if (c < p.x_stride4) {
                    y[row * p.x_stride4 + c] = vec4<f16>(act(acc[e * 4u + j] + vec4<f32>(bv)));
                }
            }
        }
    }
}
