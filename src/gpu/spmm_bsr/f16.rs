//! Block-sparse SpMM `Y = act(W_bsr X + bias)` with f16 storage and f32
//! accumulation (`spmm_bsr.wgsl` with `T = f16`): W is a [`GpuBsrF16`], X and Y
//! are [`GpuMatrixF16`], the bias stays f32. Same schedule and thread layouts
//! ([`BsrTile`]) as [`crate::gpu::spmm_bsr`]. Needs the adapter's shader-f16
//! feature: without it every function here returns [`Error::Gpu`].

use crate::error::Result;

use crate::gpu::gemm::check_product;
use crate::gpu::spmm_bsr::{prepare_kernel, BsrTile};
use crate::gpu::{Context, Dispatch, Epilogue, GpuBsrF16, GpuMatrixF16};

/// Prepares `y = act(w x + bias)` in f16 storage with an explicit tile.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuBsrF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: BsrTile,
) -> Result<Dispatch> {
    ctx.require_f16("the f16 BSR SpMM")?;
    check_product(w.rows, w.cols, x, y)?;
    // Blocks and X are staged as f32, so the f32 kernel's rules and limits apply.
    tile.validate(ctx, w.block_rows, w.block_cols)?;
    let groups_x = ((x.stride() / 4) as u32).div_ceil(tile.wg_x * tile.tn4);
    let mut c = tile.constants(w.block_rows, w.block_cols, ep);
    c.push(("VEC_W", w.block_cols.is_multiple_of(4) as u32));
    prepare_kernel(ctx, &SPMM_BSR_F16, w.buffers(), x, y, ep, &c, groups_x)
}

/// Prepares `y = act(w x + bias)` in f16 storage with the tile
/// [`BsrTile::choose`] picks.
pub fn prepare(ctx: &Context, w: &GpuBsrF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<Dispatch> {
    let tile = BsrTile::choose(ctx, w.block_rows, w.block_cols, x.stride() / 4);
    prepare_with(ctx, w, x, y, ep, tile)
}

/// Computes `y = act(w x + bias)` in f16 storage (submitted; read `y` to wait).
pub fn run(ctx: &Context, w: &GpuBsrF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

fn bsr_f16_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for ((br, bc), t) in crate::gpu::spmm_bsr::test_tiles() {
        let mut c = t.constants(br, bc, &Epilogue::default());
        c.push(("VEC_W", bc.is_multiple_of(4) as u32));
        v.extend(across_epilogues(c));
    }
    v
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{across_epilogues, Constants, KernelDef, Needs, WgslSource, RO, RW, UNIFORM};

// `spmm_bsr.wgsl` with `T = f16`.
pub static SPMM_BSR_F16: KernelDef = KernelDef::new(
    "spmm_bsr_f16",
    WgslSource::Generated(crate::gpu::spmm_bsr::f16_source),
    &[UNIFORM, RO, RO, RO, RO, RO, RW, RO],
)
.entry("spmm_bsr")
.needs(Needs::F16)
.specialised(bsr_f16_specialisations);
pub const KERNELS: &[&KernelDef] = &[&SPMM_BSR_F16];
