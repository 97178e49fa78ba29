//! Calibration and pruning criteria on the GPU (`calibrate.wgsl`):
//! per-row statistics of activations, activation-aware scores (`|w|` times the
//! norm of the input channel, the idea behind Wanda), and bias correction
//! (`b + W * mean - W' * mean`, so each output keeps its mean when weights are
//! pruned). All prepared as [`Dispatch`]es that a caller records with others.

use crate::error::{Error, Result};

use super::{Context, Dispatch, GpuBuffer, GpuMatrix, PipelineKey};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct CalParams {
    rows: u32,
    cols: u32,
    stride: u32,
    offset: u32,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("{what} = {v} does not fit in u32")))
}

/// Adds each row's sum and sum of squares of `x` to `stats[offset + 2r]` and
/// `stats[offset + 2r + 1]`.
pub fn prepare_row_stats(ctx: &Context, x: &GpuMatrix, stats: &GpuBuffer, offset: usize) -> Result<Dispatch> {
    let end = offset + 2 * x.rows();
    if stats.bytes() < 4 * end as u64 {
        return Err(Error::Shape(format!(
            "row statistics of {} rows at word {offset} need {end} words, the buffer has {}",
            x.rows(),
            stats.bytes() / 4
        )));
    }
    let p = CalParams {
        rows: u32_of(x.rows(), "rows")?,
        cols: u32_of(x.cols(), "cols")?,
        stride: u32_of(x.stride(), "stride")?,
        offset: u32_of(offset, "stats offset")?,
    };
    let u = ctx.uniform(&p, "row_stats params");
    let grid = ctx.fold_groups(p.rows.max(1))?;
    ctx.prepare(
        &PipelineKey::new(&ROW_STATS, &[]),
        &[&u, x.buffer().raw(), stats.raw()],
        grid,
    )
}

/// `score[r, c] = |w[r, c]| * norm[c]` into `score` (the shape of `w`).
pub fn prepare_score_cols(ctx: &Context, w: &GpuMatrix, norm: &GpuBuffer, score: &GpuMatrix) -> Result<Dispatch> {
    if (score.rows(), score.cols(), score.stride()) != (w.rows(), w.cols(), w.stride()) {
        return Err(Error::Shape(format!(
            "scores are {}x{}, the weights {}x{}",
            score.rows(),
            score.cols(),
            w.rows(),
            w.cols()
        )));
    }
    if norm.bytes() < 4 * w.cols() as u64 {
        return Err(Error::Shape(format!(
            "{} column norms for {} columns",
            norm.bytes() / 4,
            w.cols()
        )));
    }
    let p = CalParams {
        rows: u32_of(w.rows(), "rows")?,
        cols: u32_of(w.cols(), "cols")?,
        stride: u32_of(w.stride(), "stride")?,
        offset: 0,
    };
    let len = u32_of(w.rows() * w.stride(), "score elements")?;
    let u = ctx.uniform(&p, "score_cols params");
    let grid = ctx.fold_groups(len.div_ceil(256).max(1))?;
    ctx.prepare(
        &PipelineKey::new(&SCORE_COLS, &[]),
        &[&u, w.buffer().raw(), norm.raw(), score.buffer().raw()],
        grid,
    )
}

/// `out[r] = bias[r] + yd[r, 0] - yp[r, 0]` for the `rows` of the single-column
/// products `yd = W * mean` and `yp = W' * mean`.
pub fn prepare_bias_correct(
    ctx: &Context,
    bias: &GpuBuffer,
    yd: &GpuMatrix,
    yp: &GpuMatrix,
    out: &GpuBuffer,
) -> Result<Dispatch> {
    let rows = yd.rows();
    if yp.rows() != rows
        || yd.stride() != yp.stride()
        || bias.bytes() < 4 * rows as u64
        || out.bytes() < 4 * rows as u64
    {
        return Err(Error::Shape(format!(
            "bias correction of {rows} rows: products of {} and {} rows, bias {} and output {} floats",
            yd.rows(),
            yp.rows(),
            bias.bytes() / 4,
            out.bytes() / 4
        )));
    }
    let p = CalParams {
        rows: u32_of(rows, "rows")?,
        cols: 1,
        stride: 1,
        offset: u32_of(yd.stride(), "product stride")?,
    };
    let u = ctx.uniform(&p, "bias_correct params");
    let grid = ctx.fold_groups(p.rows.div_ceil(256).max(1))?;
    ctx.prepare(
        &PipelineKey::new(&BIAS_CORRECT, &[]),
        &[&u, bias.raw(), yd.buffer().raw(), yp.buffer().raw(), out.raw()],
        grid,
    )
}

/// `out[r, c] = w[r, c] * scale[r]` (`out` of `w`'s shape; may not be `w`).
pub fn prepare_scale_rows(ctx: &Context, w: &GpuMatrix, scale: &GpuBuffer, out: &GpuMatrix) -> Result<Dispatch> {
    if (out.rows(), out.cols(), out.stride()) != (w.rows(), w.cols(), w.stride()) || scale.bytes() < 4 * w.rows() as u64
    {
        return Err(Error::Shape(format!(
            "scaling the rows of a {}x{} matrix into {}x{} with {} scales",
            w.rows(),
            w.cols(),
            out.rows(),
            out.cols(),
            scale.bytes() / 4
        )));
    }
    let p = CalParams {
        rows: u32_of(w.rows(), "rows")?,
        cols: u32_of(w.cols(), "cols")?,
        stride: u32_of(w.stride(), "stride")?,
        offset: 0,
    };
    let len = u32_of(w.rows() * w.stride(), "elements")?;
    let u = ctx.uniform(&p, "scale_rows params");
    let grid = ctx.fold_groups(len.div_ceil(256).max(1))?;
    ctx.prepare(
        &PipelineKey::new(&SCALE_ROWS, &[]),
        &[&u, w.buffer().raw(), scale.raw(), out.buffer().raw()],
        grid,
    )
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, WgslSource, RO, RW, UNIFORM};

const CALIBRATE_WGSL: &str = include_str!("calibrate.wgsl");
pub static ROW_STATS: KernelDef = KernelDef::new("row_stats", WgslSource::File(CALIBRATE_WGSL), &[UNIFORM, RO, RW]);
pub static SCORE_COLS: KernelDef =
    KernelDef::new("score_cols", WgslSource::File(CALIBRATE_WGSL), &[UNIFORM, RO, RO, RW]);
pub static BIAS_CORRECT: KernelDef = KernelDef::new(
    "bias_correct",
    WgslSource::File(CALIBRATE_WGSL),
    &[UNIFORM, RO, RO, RO, RW],
);
pub static SCALE_ROWS: KernelDef =
    KernelDef::new("scale_rows", WgslSource::File(CALIBRATE_WGSL), &[UNIFORM, RO, RO, RW]);
pub const KERNELS: &[&KernelDef] = &[&ROW_STATS, &SCORE_COLS, &BIAS_CORRECT, &SCALE_ROWS];
