// The parameters shared by conv_gemm.wgsl and conv_sparse.wgsl (one Rust
// mirror, `Params` in conv_gemm/mod.rs), and the scalar epilogue. Imported
// (`// import conv_params`); brings the product epilogue with it.

// import epilogue

struct ConvParams {
    cin_g: u32,    // input channels per group
    cout_g: u32,   // output channels per group
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    cols: u32,     // N * OH * OW
    k: u32,        // Cin_g * KH * KW
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,       // padding at the top
    pl: u32,       // padding at the left
    w_stride: u32, // floats per dense W row
    x_stride: u32, // floats per X row
    y_stride: u32, // floats per Y row
    cout: u32,
    nm_n: u32,     // N:M weights only: kept per group,
    nm_m: u32,     //   group length,
    bits: u32,     //   bits per in-group index,
    vpr: u32,      //   value slots per row,
    wpr: u32,      //   index words per row
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

// The epilogue's activation on one value.
fn act1(v: f32) -> f32 {
    return act(vec4<f32>(v)).x;
}
