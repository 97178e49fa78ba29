// The f32 BSR's block values, as spmm_bsr.wgsl stages them (imported there
// for T = f32 as `spmm_bsr_values_{T}`). Valid on its own.

@group(0) @binding(3) var<storage, read> values: array<f32>;

// Value e of the blocks.
fn w_at(e: u32) -> f32 {
    return values[e];
}

// Values 4i..4i+3 (the VEC_W staging; the f32 kernels do not use it).
fn w4_at(i: u32) -> vec4<f32> {
    return vec4<f32>(values[4u * i], values[4u * i + 1u], values[4u * i + 2u], values[4u * i + 3u]);
}
