// The f16 BSR's block values (GpuBsrF16: f16, the buffer padded to whole
// vec4s), as spmm_bsr.wgsl stages them (imported there for T = f16 as
// `spmm_bsr_values_{T}`), widened to f32 (exact). Valid on its own.

enable f16;

@group(0) @binding(3) var<storage, read> values: array<vec4<f16>>;

// Value e of the blocks.
fn w_at(e: u32) -> f32 {
    return f32(values[e / 4u][e % 4u]);
}

// Values 4i..4i+3 in one load (the VEC_W staging).
fn w4_at(i: u32) -> vec4<f32> {
    return vec4<f32>(values[i]);
}
