//! N:M pruning on the GPU (`prune_nm.wgsl`): one pass from the dense
//! matrix to the packed [`GpuNm`] layout of [`crate::NmMatrix`].

use crate::error::{checked_mul, Error, Result};
use crate::sparse::Pattern;

use crate::gpu::prune::{Builder, PrunePlan};
use crate::gpu::{Context, GpuBuffer, GpuMatrix, GpuNm};

/// Slot indices one workgroup packs (`TILE_SLOTS` in WGSL).
const TILE_SLOTS: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct NmParams {
    rows: u32,
    cols: u32,
    stride: u32,
    groups: u32,
    wpr: u32,
    total_words: u32,
    tile_words: u32,
    bits: u32,
    per_word: u32,
    _pad: [u32; 3],
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("N:M {what} = {v} does not fit in u32")))
}

impl PrunePlan<GpuNm> {
    /// Plans N:M pruning of `w` along its columns.
    pub fn nm(ctx: &Context, w: &GpuMatrix, n: usize, m: usize) -> Result<Self> {
        Self::nm_scored(ctx, w, None, n, m)
    }

    /// [`Self::nm`] ranking each group by `score` (same shape as `w`, e.g.
    /// `|w|` times an input-channel norm) instead of `|w|`; the values are `w`'s.
    pub fn nm_scored(ctx: &Context, w: &GpuMatrix, score: Option<&GpuMatrix>, n: usize, m: usize) -> Result<Self> {
        Pattern::NM { n, m }.validate()?;
        if let Some(sc) = score {
            crate::gpu::prune::select::check_score(w, sc)?;
        }
        let keys = score.unwrap_or(w);
        let (rows, cols) = (w.rows(), w.cols());
        let bits = (usize::BITS - (m - 1).leading_zeros()) as usize;
        let per_word = 32 / bits;
        let groups = cols.div_ceil(m);
        let wpr = (groups * n).div_ceil(per_word);
        let slots = checked_mul(checked_mul(rows, groups, "N:M groups")?, n, "N:M slots")?;
        let total_words = checked_mul(rows, wpr, "N:M index words")?;
        let tile_words = TILE_SLOTS / per_word;
        let params = NmParams {
            rows: u32_of(rows, "rows")?,
            cols: u32_of(cols, "cols")?,
            stride: u32_of(w.stride(), "stride")?,
            groups: u32_of(groups, "groups")?,
            wpr: u32_of(wpr, "words per row")?,
            total_words: u32_of(total_words, "index words")?,
            tile_words: tile_words as u32,
            bits: bits as u32,
            per_word: per_word as u32,
            _pad: [0; 3],
        };
        let mut b = Builder::new(ctx, &[keys], 0)?;
        let values = GpuBuffer::new(ctx, 4 * slots as u64, "nm values")?;
        let indices = GpuBuffer::new(ctx, 4 * total_words as u64, "nm indices")?;
        if total_words > 0 {
            let u = ctx.uniform(&params, "prune_nm params");
            let status = b.status.clone();
            b.push(
                &PRUNE_NM,
                &[("N", n as u32), ("M", m as u32)],
                &[
                    &u,
                    keys.buffer().raw(),
                    values.raw(),
                    indices.raw(),
                    status.raw(),
                    w.buffer().raw(),
                ],
                total_words.div_ceil(tile_words) as u64,
            )?;
        }
        Ok(b.finish(GpuNm {
            rows,
            cols,
            n,
            m,
            values,
            indices,
        }))
    }
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, WgslSource, RO, RW, UNIFORM};

const PRUNE_NM_WGSL: &str = include_str!("prune_nm.wgsl");
pub static PRUNE_NM: KernelDef = KernelDef::new(
    "prune_nm",
    WgslSource::File(PRUNE_NM_WGSL),
    &[UNIFORM, RO, RW, RW, RW, RO],
);
