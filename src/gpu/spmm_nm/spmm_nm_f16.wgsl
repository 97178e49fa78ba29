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

// import epilogue
// import nm16_format

override WX: u32 = 16u;  // invocations along N (vec4 columns)
override WY: u32 = 4u;   // along M (rows)

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
