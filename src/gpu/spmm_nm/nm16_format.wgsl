// The W format of the f16 N:M kernels (GpuNmF16, see spmm_nm_coop.wgsl):
// their Params and bindings, imported (`// import nm16_format`) by
// spmm_nm_f16.wgsl (shader cores) and spmm_nm_coop.wgsl. Valid on its own.

enable f16;

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
