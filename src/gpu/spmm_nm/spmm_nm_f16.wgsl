// N:M SpMM  Y[M, N] = act(W_nm[M, K] * X[K, N] + bias[M]) on shader cores for
// the half-density patterns 2:4 and 1:2, f16 storage, f32 accumulation: the
// portable fallback of spmm_nm_coop.wgsl (browsers, adapters without
// cooperative matrices), on the same W format (GpuNmF16, see there): per row
// and 16-column chunk one vec4<u32> of kept values (two f16 per column quad,
// column order) and 16 mask bits, two chunks per u32.
//
// Each invocation owns one row and one vec4 of columns and walks the row's
// chunks: for every quad with its two mask bits set it reads the two X rows
// of those columns. Plain and simple: the f32 `spmm_nm` kernels are the tuned
// shader-core path; this one keeps f16 models off f32 conversions.

enable f16;

override WX: u32 = 16u;  // invocations along N (vec4 columns)
override WY: u32 = 4u;   // along M (rows)
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;  // 0 none, 1 ReLU, 2 ReLU6

struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,  // vec4<f16>s per X row = per Y row
    cpr: u32,        // chunks of 16 columns per W row
    mwpr: u32,       // mask words per W row: ceil(cpr / 2)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> values: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> masks: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f16>>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        return clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

@compute @workgroup_size(WX, WY)
fn spmm_nm_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c4 = gid.x;
    let row = gid.y;
    if (c4 >= p.x_stride4 || row >= p.m) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var ch = 0u; ch < p.cpr; ch++) {
        let mask = masks[row * p.mwpr + ch / 2u] >> ((ch & 1u) * 16u);
        let v = values[row * p.cpr + ch];
        for (var q = 0u; q < 4u; q++) {
            let nib = (mask >> (4u * q)) & 15u;
            if (nib == 0u) {
                continue;
            }
            let pair = unpack2x16float(v[q]);
            let c0 = ch * 16u + 4u * q + firstTrailingBit(nib);
            let c1 = ch * 16u + 4u * q + firstLeadingBit(nib);
            if (c0 < p.k) {
                acc += pair.x * vec4<f32>(x[c0 * p.x_stride4 + c4]);
            }
            if (c1 < p.k) {
                acc += pair.y * vec4<f32>(x[c1 * p.x_stride4 + c4]);
            }
        }
    }
    var b = 0.0;
    if (HAS_BIAS) {
        b = bias[row];
    }
    y[row * p.x_stride4 + c4] = vec4<f16>(act(acc + vec4<f32>(b)));
}
