//! Block pruning on the GPU (`prune_block.wgsl`): block scores, the
//! exact selection of the lowest-scoring blocks and the BSR row pointers and
//! block columns (the selection of [`crate::gpu::prune::select`] run over the score
//! matrix, one "element" per block), the kept blocks' values, and the
//! longest-first block-row schedule ([`GpuBsr::row_order`], equal to
//! [`crate::gpu::longest_first`] of the row pointers), all without a CPU round trip.

use crate::error::{check_sparsity, checked_mul, Error, Result};
use crate::prune::{prune_count, BlockNorm};
use crate::sparse::Pattern;

use crate::gpu::prune::select::{build_select, Source, Target};
use crate::gpu::prune::{Builder, PrunePlan};
use crate::gpu::{Context, GpuBsr, GpuBuffer, GpuMatrix};

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
    zero: u32,
    force_integer: u32,
    _pad: [u32; 3],
    probes: [[u32; 4]; PROBES],
}

const PROBES: usize = 12;

/// Probe pairs `(v, s)` for the score kernel's check of the hardware f32
/// arithmetic, with the correctly rounded `fma(v, v, s)` and `s + |v|`. They
/// include results that differ between fused and unfused rounding (also
/// through a tie broken by a far smaller addend), subnormal inputs and results
/// (flushing), overflow, infinity and a tie to even.
pub(crate) fn score_probes() -> [[u32; 4]; PROBES] {
    let p2 = |e: i32| 2f32.powi(e);
    // Significand 4097 * 2^11: v * v ends exactly on its rounding bit.
    let tie = f32::from_bits((130 << 23) | ((4097 << 11) & 0x7f_ffff));
    let pairs: [(f32, f32); PROBES] = [
        (1.0 + p2(-12), p2(-24)),
        (tie, 1e-30),
        (-(1.0 + p2(-12)), p2(-24)),
        (0.0, f32::from_bits(0x0000_1234)),
        (p2(-70), 0.0),
        (f32::from_bits(0x0000_0800), f32::from_bits(0x0000_0800)),
        (p2(64), 1.0),
        (1.0, f32::INFINITY),
        (p2(-24), 1.0 + p2(-23)),
        (0.7, 0.3),
        (1.5, p2(-30)),
        (-f32::from_bits(0x0000_0003), f32::from_bits(0x0000_0001)),
    ];
    pairs.map(|(v, s)| {
        [
            v.to_bits(),
            s.to_bits(),
            v.mul_add(v, s).to_bits(),
            (s + v.abs()).to_bits(),
        ]
    })
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("block pruning: {what} = {v} does not fit in u32")))
}

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
    (block_rows, block_cols): (usize, usize),
    force_integer: bool,
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
        zero: 0,
        force_integer: force_integer as u32,
        _pad: [0; 3],
        probes: score_probes(),
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
fn push_scores(b: &mut Builder<'_>, w: &GpuMatrix, g: &Grid, u: &wgpu::Buffer, norm: BlockNorm) -> Result<()> {
    if g.nblocks > 0 {
        let status = b.status.clone();
        b.push(
            &BLOCK_SCORES,
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
        block_scores_plan(ctx, w, (block_rows, block_cols), norm, false)
    }
}

/// [`PrunePlan::block_scores`], optionally never using the hardware path.
pub(crate) fn block_scores_plan(
    ctx: &Context,
    w: &GpuMatrix,
    block: (usize, usize),
    norm: BlockNorm,
    force_integer: bool,
) -> Result<PrunePlan<GpuMatrix>> {
    let g = grid(ctx, w, block, force_integer, |_| 0)?;
    let mut b = Builder::new(ctx, &[w], 0)?;
    let u = ctx.uniform(&g.params, "prune_block params");
    push_scores(&mut b, w, &g, &u, norm)?;
    Ok(b.finish(g.scores))
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
        Self::block_scored(ctx, w, None, (block_rows, block_cols), sparsity, norm)
    }

    /// [`Self::block`] with block norms taken over `score` (same shape as `w`,
    /// e.g. `|w|` times an input-channel norm) instead of `w`; the BSR holds
    /// the values of `w`.
    pub fn block_scored(
        ctx: &Context,
        w: &GpuMatrix,
        score: Option<&GpuMatrix>,
        (block_rows, block_cols): (usize, usize),
        sparsity: f64,
        norm: BlockNorm,
    ) -> Result<Self> {
        check_sparsity(sparsity)?;
        if let Some(sc) = score {
            crate::gpu::prune::select::check_score(w, sc)?;
        }
        let keys = score.unwrap_or(w);
        let mut k = 0;
        let g = grid(ctx, w, (block_rows, block_cols), false, |n| {
            k = prune_count(sparsity, n);
            n - k
        })?;
        let (gr, kept) = (g.gr, g.nblocks - k);
        let total = g.params.total as usize;

        let mut b = Builder::new(ctx, &[keys], 1)?;
        let u = ctx.uniform(&g.params, "prune_block params");
        let row_ptr = GpuBuffer::new(ctx, 4 * (gr as u64 + 1), "bsr row_ptr")?;
        let col_idx = GpuBuffer::new(ctx, 4 * kept as u64, "bsr col_idx")?;
        let block_row = GpuBuffer::new(ctx, 4 * kept as u64, "bsr block rows")?;
        let values = GpuBuffer::new(ctx, 4 * total as u64, "bsr values")?;
        let row_order = GpuBuffer::new(ctx, 4 * gr as u64, "bsr row_order")?;

        push_scores(&mut b, keys, &g, &u, norm)?;
        let source = Source {
            buffer: g.scores.buffer().raw(),
            values: g.scores.buffer().raw(),
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
                &BLOCK_VALUES,
                &[],
                &[&u, w.buffer().raw(), col_idx.raw(), block_row.raw(), values.raw()],
                (total as u64).div_ceil(256),
            )?;
        }
        if gr > 0 {
            b.push(
                &BLOCK_ROW_ORDER,
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::sparse::Matrix;

    #[test]
    fn probes_separate_exact_from_inexact_arithmetic() {
        let p = score_probes();
        let f = |b: u32| f32::from_bits(b);
        // Fused and unfused rounding differ (also via a tie and a tiny addend).
        for i in [0, 1, 2] {
            let (v, s) = (f(p[i][0]), f(p[i][1]));
            assert_ne!((v * v + s).to_bits(), p[i][2], "probe {i}");
        }
        // Flushing subnormal inputs or results changes an expected value.
        let ftz = |x: f32| if x.is_subnormal() { 0.0 } else { x };
        let flushed = p.iter().any(|q| {
            let (v, s) = (ftz(f(q[0])), ftz(f(q[1])));
            ftz(v.mul_add(v, s)).to_bits() != q[2] || ftz(s + v.abs()).to_bits() != q[3]
        });
        assert!(flushed);
        assert_eq!(p[6][2], f32::INFINITY.to_bits());
    }

    /// The integer path against the CPU, whichever path the device would take.
    #[test]
    fn integer_scores_are_exact_for_both_norms() {
        let ctx = match Context::new_blocking() {
            Ok(c) => c,
            Err(e) => panic!("GPU tests need an adapter: {e}"),
        };
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let v: Vec<f32> = (0..61 * 47)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = x as u32;
                // Finite patterns over the whole range, many small ones.
                let b = if (b >> 23) & 0xff == 0xff { b & 0x807f_ffff } else { b };
                if x >> 62 == 0 {
                    f32::from_bits(b & 0x8000_ffff)
                } else {
                    f32::from_bits(b)
                }
            })
            .collect();
        let w = Matrix::new(61, 47, v).unwrap();
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        for block in [(1, 1), (2, 3), (8, 8), (61, 47)] {
            for norm in [BlockNorm::L2, BlockNorm::L1] {
                for force in [true, false] {
                    let plan = block_scores_plan(&ctx, &gw, block, norm, force).unwrap();
                    let got = pollster::block_on(plan.run(&ctx)).unwrap();
                    let got = got.download_blocking(&ctx).unwrap();
                    let want = crate::prune::block_scores(&w, block.0, block.1, norm).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(got.data()), bits(&want), "{block:?} {norm:?} force {force}");
                }
            }
        }
    }
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, WgslSource, RO, RW, UNIFORM};

const PRUNE_BLOCK_WGSL: &str = include_str!("prune_block.wgsl");
pub static BLOCK_SCORES: KernelDef = KernelDef::new(
    "block_scores",
    WgslSource::File(PRUNE_BLOCK_WGSL),
    &[UNIFORM, RO, RW, RW],
);
pub static BLOCK_VALUES: KernelDef = KernelDef::new(
    "block_values",
    WgslSource::File(PRUNE_BLOCK_WGSL),
    &[UNIFORM, RO, RO, RO, RW],
);
pub static BLOCK_ROW_ORDER: KernelDef = KernelDef::new(
    "block_row_order",
    WgslSource::File(PRUNE_BLOCK_WGSL),
    &[UNIFORM, RO, RW],
);
