//! Block-sparse SpMM `Y = act(W_bsr X + bias)` with f16 storage and f32
//! accumulation (`spmm_bsr_f16.wgsl`): W is a [`GpuBsrF16`], X and Y
//! are [`GpuMatrixF16`], the bias stays f32. Same schedule and thread layouts
//! ([`BsrTile`]) as [`crate::gpu::spmm_bsr`]. Needs the adapter's shader-f16
//! feature: without it every function here returns [`Error::Gpu`].

use crate::error::{Error, Result};

use crate::gpu::spmm_bsr::BsrTile;
use crate::gpu::{Context, Dispatch, Epilogue, GpuBsrF16, GpuMatrixF16, PipelineKey};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,
    _pad: u32,
}

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
    if w.cols != x.rows() || y.rows() != w.rows || y.cols() != x.cols() {
        return Err(Error::Shape(format!(
            "W {}x{} * X {}x{} does not fit Y {}x{}",
            w.rows,
            w.cols,
            x.rows(),
            x.cols(),
            y.rows(),
            y.cols()
        )));
    }
    // Blocks and X are staged as f32, so the f32 kernel's rules and limits apply.
    tile.validate(ctx, w.block_rows, w.block_cols)?;
    let grid_rows = w.rows.div_ceil(w.block_rows) as u32;
    if grid_rows == 0 {
        return Err(Error::Shape("BSR matrix with no rows".into()));
    }
    let params = Params {
        m: w.rows as u32,
        k: w.cols as u32,
        x_stride4: (x.stride() / 4) as u32,
        _pad: 0,
    };
    let u = ctx.uniform(&params, "spmm_bsr_f16 params");
    let bias = ep.bias_buffer(ctx, w.rows)?;
    let groups = [params.x_stride4.div_ceil(tile.wg_x * tile.tn4), grid_rows, 1];
    let mut c = tile.constants(w.block_rows, w.block_cols, ep);
    c.push(("VEC_W", w.block_cols.is_multiple_of(4) as u32));
    let key = PipelineKey::new(&SPMM_BSR_F16, &c);
    let (values, col_idx) = if w.nnz_blocks == 0 {
        (ctx.dummy_buffer(), ctx.dummy_buffer())
    } else {
        (w.values.raw().clone(), w.col_idx.raw().clone())
    };
    ctx.prepare(
        &key,
        &[
            &u,
            w.row_ptr.raw(),
            &col_idx,
            &values,
            w.row_order.raw(),
            x.buf.raw(),
            y.buf.raw(),
            &bias,
        ],
        groups,
    )
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

const SPMM_BSR_F16_WGSL: &str = include_str!("spmm_bsr_f16.wgsl");
pub static SPMM_BSR_F16: KernelDef = KernelDef::new(
    "spmm_bsr_f16",
    WgslSource::File(SPMM_BSR_F16_WGSL),
    &[UNIFORM, RO, RO, RO, RO, RO, RW, RO],
)
.needs(Needs::F16)
.specialised(bsr_f16_specialisations);
pub const KERNELS: &[&KernelDef] = &[&SPMM_BSR_F16];
