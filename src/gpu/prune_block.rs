//! Block pruning on the GPU (`shaders/prune_block.wgsl`): block scores, the
//! exact selection of the lowest-scoring blocks and the BSR row pointers and
//! block columns (the selection of [`super::prune_select`] run over the score
//! matrix, one "element" per block), the kept blocks' values, and the
//! longest-first block-row schedule ([`GpuBsr::row_order`], equal to
//! [`super::longest_first`] of the row pointers), all without a CPU round trip.

use crate::error::{check_sparsity, checked_mul, Error, Result};
use crate::prune::{prune_count, BlockNorm};
use crate::sparse::Pattern;

use super::prune::{Builder, PrunePlan};
use super::prune_select::{build_select, Source, Target};
use super::{Context, GpuBsr, GpuBuffer, GpuMatrix, Kernel};

/// Bits of [`BlockNorm`] for the `NORM` override.
fn norm_code(norm: BlockNorm) -> u32 {
    match norm {
        BlockNorm::L2 => 0,
        BlockNorm::L1 => 1,
    }
}

/// The grid, its parameters and the score matrix of one block pruning.
struct Grid {
    params: BlockParams,
    gr: usize,
    gc: usize,
    nblocks: usize,
    scores: GpuMatrix,
}

fn grid(
    ctx: &Context,
    w: &GpuMatrix,
    block_rows: usize,
    block_cols: usize,
    kept: impl FnOnce(usize) -> usize,
) -> Result<Grid> {
    Pattern::Block {
        rows: block_rows,
        cols: block_cols,
    }
    .validate()?;
    let (rows, cols) = (w.rows(), w.cols());
    let (gr, gc) = (rows.div_ceil(block_rows), cols.div_ceil(block_cols));
    let nblocks = checked_mul(gr, gc, "block grid")?;
    let bs = block_rows * block_cols;
    let total = checked_mul(kept(nblocks), bs, "BSR values")?;
    let scores = GpuMatrix::new(ctx, gr, gc, "block scores")?;
    let params = BlockParams {
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "cols")?,
        stride: u32_of(w.stride(), "stride")?,
        br: block_rows as u32,
        bc: block_cols as u32,
        gr: u32_of(gr, "block rows")?,
        gc: u32_of(gc, "block columns")?,
        sstride: u32_of(scores.stride(), "score stride")?,
        nblocks: u32_of(nblocks, "blocks")?,
        bs: bs as u32,
        total: u32_of(total, "values")?,
        _pad: 0,
    };
    Ok(Grid {
        params,
        gr,
        gc,
        nblocks,
        scores,
    })
}

/// Adds the score kernel.
fn push_scores(
    b: &mut Builder<'_>,
    w: &GpuMatrix,
    g: &Grid,
    u: &wgpu::Buffer,
    norm: BlockNorm,
) -> Result<()> {
    if g.nblocks > 0 {
        let status = b.status.clone();
        b.push(
            Kernel::BlockScores,
            &[("NORM", norm_code(norm))],
            &[u, w.buffer().raw(), g.scores.buffer().raw(), status.raw()],
            (g.nblocks as u64).div_ceil(256),
        )?;
    }
    Ok(())
}

impl PrunePlan<GpuMatrix> {
    /// Plans the block scores of `w` (the GPU twin of
    /// [`crate::prune::block_scores`], bit-identical): a `grid_rows x
    /// grid_cols` matrix, row-major over the block grid.
    pub fn block_scores(
        ctx: &Context,
        w: &GpuMatrix,
        block_rows: usize,
        block_cols: usize,
        norm: BlockNorm,
    ) -> Result<Self> {
        let g = grid(ctx, w, block_rows, block_cols, |_| 0)?;
        let mut b = Builder::new(ctx, &[w], 0)?;
        let u = ctx.uniform(&g.params, "prune_block params");
        push_scores(&mut b, w, &g, &u, norm)?;
        Ok(b.finish(g.scores))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct BlockParams {
    rows: u32,
    cols: u32,
    stride: u32,
    br: u32,
    bc: u32,
    gr: u32,
    gc: u32,
    sstride: u32,
    nblocks: u32,
    bs: u32,
    total: u32,
    _pad: u32,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::Limit(format!("block pruning: {what} = {v} does not fit in u32")))
}

impl PrunePlan<GpuBsr> {
    /// Plans block pruning of `w` into `block_rows x block_cols` BSR: exactly
    /// `round(sparsity * blocks)` blocks of the zero-padded grid are pruned,
    /// the lowest `norm` scores first, ties pruning the later block.
    pub fn block(
        ctx: &Context,
        w: &GpuMatrix,
        block_rows: usize,
        block_cols: usize,
        sparsity: f64,
        norm: BlockNorm,
    ) -> Result<Self> {
        check_sparsity(sparsity)?;
        let mut k = 0;
        let g = grid(ctx, w, block_rows, block_cols, |n| {
            k = prune_count(sparsity, n);
            n - k
        })?;
        let (gr, kept) = (g.gr, g.nblocks - k);
        let total = g.params.total as usize;

        let mut b = Builder::new(ctx, &[w], 1)?;
        let u = ctx.uniform(&g.params, "prune_block params");
        let row_ptr = GpuBuffer::new(ctx, 4 * (gr as u64 + 1), "bsr row_ptr")?;
        let col_idx = GpuBuffer::new(ctx, 4 * kept as u64, "bsr col_idx")?;
        let block_row = GpuBuffer::new(ctx, 4 * kept as u64, "bsr block rows")?;
        let values = GpuBuffer::new(ctx, 4 * total as u64, "bsr values")?;
        let row_order = GpuBuffer::new(ctx, 4 * gr as u64, "bsr row_order")?;

        push_scores(&mut b, w, &g, &u, norm)?;
        let source = Source {
            buffer: g.scores.buffer().raw(),
            rows: gr,
            cols: g.gc,
            stride: g.scores.stride(),
        };
        let target = Target {
            row_ptr: &row_ptr,
            col_idx: &col_idx,
            aux: &block_row,
        };
        build_select(&mut b, &[source], &[target], k, false)?;
        if total > 0 {
            b.push(
                Kernel::BlockValues,
                &[],
                &[
                    &u,
                    w.buffer().raw(),
                    col_idx.raw(),
                    block_row.raw(),
                    values.raw(),
                ],
                (total as u64).div_ceil(256),
            )?;
        }
        if gr > 0 {
            b.push(
                Kernel::BlockRowOrder,
                &[],
                &[&u, row_ptr.raw(), row_order.raw()],
                (gr as u64).div_ceil(256),
            )?;
        }
        Ok(b.finish(GpuBsr {
            rows: w.rows(),
            cols: w.cols(),
            block_rows,
            block_cols,
            nnz_blocks: kept,
            row_ptr,
            col_idx,
            values,
            row_order,
        }))
    }
}
