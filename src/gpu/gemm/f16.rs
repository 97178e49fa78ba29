//! Dense GEMM `Y = act(W X + bias)` with f16 storage and f32 accumulation
//! (`gemm_f16.wgsl`): W, X and Y are [`GpuMatrixF16`], the bias stays
//! f32 (the [`Epilogue`] of the f32 kernels). Same tiles ([`GemmTile`]) and the
//! same skinny split-K kernel for narrow X as [`crate::gpu::gemm`]. Needs the
//! adapter's shader-f16 feature: without it every function here returns
//! [`Error::Gpu`].

use crate::error::{Error, Result};

pub use crate::gpu::gemm::{choose_split, MAX_SPLIT};
use crate::gpu::gemm::{
    reduce_specialisations, skinny_constants, skinny_specialisations, tiled_specialisations, GemmTile, SKINNY_ROWS,
};
use crate::gpu::{Context, Dispatch, Epilogue, GpuMatrixF16, PipelineKey};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    w_stride4: u32,
    x_stride4: u32,
}

fn check_product(w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16) -> Result<()> {
    if w.cols() != x.rows() || y.rows() != w.rows() || y.cols() != x.cols() {
        return Err(Error::Shape(format!(
            "W {}x{} * X {}x{} does not fit Y {}x{}",
            w.rows(),
            w.cols(),
            x.rows(),
            x.cols(),
            y.rows(),
            y.cols()
        )));
    }
    Ok(())
}

fn params(w: &GpuMatrixF16, x: &GpuMatrixF16) -> Params {
    Params {
        m: w.rows() as u32,
        k: w.cols() as u32,
        w_stride4: (w.stride() / 4) as u32,
        x_stride4: (x.stride() / 4) as u32,
    }
}

/// Prepares `y = act(w x + bias)` in f16 storage with an explicit tile.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuMatrixF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: GemmTile,
) -> Result<Dispatch> {
    ctx.require_f16("the f16 GEMM")?;
    check_product(w, x, y)?;
    // Tiles are staged as f32, so the f32 kernel's rules and limits apply.
    tile.validate(ctx)?;
    let u = ctx.uniform(&params(w, x), "gemm_f16 params");
    let bias = ep.bias_buffer(ctx, w.rows())?;
    let groups = [
        (x.stride() as u32).div_ceil(tile.bn),
        (w.rows() as u32).div_ceil(tile.bm).max(1),
        1,
    ];
    let key = PipelineKey::new(&GEMM_F16, &tile.constants(ep));
    let no_partials = ctx.dummy_rw_buffer();
    ctx.prepare(
        &key,
        &[&u, w.buf.raw(), x.buf.raw(), y.buf.raw(), &bias, &no_partials],
        groups,
    )
}

/// Prepares `y = act(w x + bias)` in f16 storage with K split `split` ways:
/// one dispatch computes f32 partial sums per split into a scratch buffer
/// (`split * M * N` f32, allocated here), a second sums them, applies the
/// epilogue and rounds to f16 once. `split == 1` is [`prepare_with`].
pub fn prepare_split(
    ctx: &Context,
    w: &GpuMatrixF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: GemmTile,
    split: u32,
) -> Result<Vec<Dispatch>> {
    if split == 1 {
        return Ok(vec![prepare_with(ctx, w, x, y, ep, tile)?]);
    }
    ctx.require_f16("the f16 GEMM")?;
    check_product(w, x, y)?;
    tile.validate(ctx)?;
    let u = ctx.uniform(&params(w, x), "gemm_f16 split params");
    let bias = ep.bias_buffer(ctx, w.rows())?;
    crate::gpu::gemm::split_dispatches(
        ctx,
        (&GEMM_F16, &GEMM_F16_REDUCE),
        [&u, w.buf.raw(), x.buf.raw(), y.buf.raw(), &bias],
        tile.constants(ep),
        ep,
        (w.rows(), x.stride() / 4, tile.bm, tile.bn),
        split,
    )
}

/// Prepares `y = act(w x + bias)` in f16 storage for an X of at most 16
/// columns with the skinny kernel (threads split K, f32 reduction in
/// workgroup memory).
pub fn prepare_skinny(
    ctx: &Context,
    w: &GpuMatrixF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
) -> Result<Dispatch> {
    ctx.require_f16("the f16 skinny GEMM")?;
    check_product(w, x, y)?;
    if x.stride() > 16 {
        return Err(Error::Shape(format!(
            "the skinny GEMM takes at most 16 columns, X has {}",
            x.cols()
        )));
    }
    let u = ctx.uniform(&params(w, x), "gemm_skinny_f16 params");
    let bias = ep.bias_buffer(ctx, w.rows())?;
    let c = skinny_constants(ep);
    let groups = ctx.fold_groups((w.rows() as u32).div_ceil(SKINNY_ROWS))?;
    let key = PipelineKey::new(&GEMM_SKINNY_F16, &c);
    ctx.prepare(&key, &[&u, w.buf.raw(), x.buf.raw(), y.buf.raw(), &bias], groups)
}

/// Prepares `y = act(w x + bias)` in f16 storage: the skinny kernel for X of at
/// most 16 columns, otherwise the tile [`GemmTile::choose`] picks.
pub fn prepare(ctx: &Context, w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<Dispatch> {
    if x.stride() <= 16 {
        return prepare_skinny(ctx, w, x, y, ep);
    }
    prepare_with(ctx, w, x, y, ep, GemmTile::choose(ctx, w.rows(), x.cols()))
}

/// Computes `y = act(w x + bias)` in f16 storage (submitted; read `y` to wait).
pub fn run(ctx: &Context, w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, Needs, WgslSource, RO, RW, UNIFORM};

const GEMM_F16_WGSL: &str = include_str!("gemm_f16.wgsl");
pub static GEMM_F16: KernelDef = KernelDef::new(
    "gemm_f16",
    WgslSource::File(GEMM_F16_WGSL),
    &[UNIFORM, RO, RO, RW, RO, RW],
)
.needs(Needs::F16)
.specialised(tiled_specialisations);
pub static GEMM_F16_REDUCE: KernelDef = KernelDef::new(
    "gemm_f16_reduce",
    WgslSource::File(GEMM_F16_WGSL),
    &[UNIFORM, RO, RO, RW, RO, RW],
)
.needs(Needs::F16)
.specialised(reduce_specialisations);
pub static GEMM_SKINNY_F16: KernelDef = KernelDef::new(
    "gemm_skinny_f16",
    WgslSource::File(GEMM_F16_WGSL),
    &[UNIFORM, RO, RO, RW, RO],
)
.needs(Needs::F16)
.specialised(skinny_specialisations);
pub const KERNELS: &[&KernelDef] = &[&GEMM_F16, &GEMM_F16_REDUCE, &GEMM_SKINNY_F16];
