//! Dense GEMM `Y = act(W X + bias)` with f16 storage and f32 accumulation
//! (`gemm.wgsl` with `T = f16`): W, X and Y are [`GpuMatrixF16`], the bias stays
//! f32 (the [`Epilogue`] of the f32 kernels). Same tiles ([`GemmTile`]) and the
//! same skinny split-K kernel for narrow X as [`crate::gpu::gemm`]. Needs the
//! adapter's shader-f16 feature: without it every function here returns
//! [`Error::Gpu`].

use crate::error::Result;

use crate::gpu::gemm::{self, GemmTile};
pub use crate::gpu::gemm::{choose_split, MAX_SPLIT};
use crate::gpu::{Context, Dispatch, Epilogue, GpuMatrixF16};

/// Prepares `y = act(w x + bias)` in f16 storage with an explicit tile.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuMatrixF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: GemmTile,
) -> Result<Dispatch> {
    gemm::tiled(ctx, w, x, y, ep, tile)
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
    gemm::split(ctx, w, x, y, ep, tile, split)
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
    gemm::skinny(ctx, w, x, y, ep)
}

/// Prepares `y = act(w x + bias)` in f16 storage: the skinny kernel for X of at
/// most 16 columns, otherwise the tile [`GemmTile::choose`] picks.
pub fn prepare(ctx: &Context, w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<Dispatch> {
    gemm::choose_and_prepare(ctx, w, x, y, ep)
}

/// Computes `y = act(w x + bias)` in f16 storage (submitted; read `y` to wait).
pub fn run(ctx: &Context, w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::KernelDef;

// `gemm.wgsl` with `T = f16`: the same entry points under f16 names.
use crate::gpu::gemm::f16_source;
pub static GEMM_F16: KernelDef = gemm::GEMM.f16_twin("gemm_f16", f16_source);
pub static GEMM_F16_REDUCE: KernelDef = gemm::GEMM_REDUCE.f16_twin("gemm_f16_reduce", f16_source);
pub static GEMM_SKINNY_F16: KernelDef = gemm::GEMM_SKINNY.f16_twin("gemm_skinny_f16", f16_source);
pub const KERNELS: &[&KernelDef] = &[&GEMM_F16, &GEMM_F16_REDUCE, &GEMM_SKINNY_F16];
