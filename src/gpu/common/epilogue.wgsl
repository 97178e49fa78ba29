// The fused product epilogue (src/gpu/epilogue.rs): Y = act(acc + bias[row]).
// Imported (`// import epilogue`) by every SpMM/GEMM family; valid on its own
// apart from `epilogue`, which reads the importer's `bias: array<f32>`.

override HAS_BIAS: bool = false;
override ACT: u32 = 0u;    // 0 none, 1 ReLU, 2 ReLU6

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    } else if (ACT == 2u) {
        return clamp(v, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    return v;
}

// The bias added to the accumulator (not to a zero when there is none, so a
// -0.0 stays -0.0), then the activation.
fn epilogue(acc: vec4<f32>, row: u32) -> vec4<f32> {
    var v = acc;
    if (HAS_BIAS) {
        v += vec4<f32>(bias[row]);
    }
    return act(v);
}
