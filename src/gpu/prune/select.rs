//! Exact selection by magnitude and CSR compaction (`prune_select.wgsl`):
//! unstructured pruning of one tensor, global pruning across tensors, and the
//! block selection of block pruning (over the score matrix).
//!
//! How the k-th smallest key is found exactly (keys = `bits(|w|)`, which order
//! finite magnitudes): three radix passes over digits of 11, 10 and 10 bits,
//! most significant first. Each pass builds a histogram of the digit of the
//! keys that still match the prefix chosen so far (workgroup-local histograms
//! in workgroup memory, added to one global histogram), and one workgroup picks
//! the bin that holds the remaining rank. After the third pass the threshold
//! `T` is known, with the number of elements equal to `T` that must be pruned;
//! the tie rule (the later equal element is pruned first) keeps the first
//! `keep_eq = count(T) - pruned_eq` of them in flat order. Ranks among equal
//! elements and the output positions come from per-chunk counts, one scan of
//! the chunk counts, and workgroup scans inside each chunk. Global pruning runs
//! the same passes over all tensors into one histogram and one chunk list
//! (tensor order first), so the threshold and the tie order span the tensors.

use crate::error::{check_sparsity, checked_mul, Error, Result};
use crate::prune::prune_count;

use crate::gpu::prune::{Builder, PrunePlan};
use crate::gpu::{Context, GpuBuffer, GpuCsr, GpuMatrix};

/// vec4s per workgroup in `select_count` / `select_scatter` (`CHUNK` in WGSL).
const CHUNK_VEC4: u64 = 1024;
/// vec4s per thread in `radix_histogram`.
const HIST_ITEMS: u32 = 16;
/// Words of the global histogram buffer: three passes of up to 2048 bins.
const HIST_WORDS: u64 = 3 * 2048;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SelParams {
    rows: u32,
    cols: u32,
    stride: u32,
    len4: u32,
    chunk0: u32,
    nchunks: u32,
    offset: u32,
    k: u32,
    total_chunks: u32,
    source: u32,
    _pad: [u32; 2],
}

/// A row-major matrix of f32 bits on the GPU, rows padded to `stride` (a
/// multiple of 4) words, whose elements are selected by magnitude, and the
/// matrix of the same layout whose values the CSR keeps (the source itself,
/// or the weights when the source holds their scores).
pub(crate) struct Source<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub values: &'a wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

/// Where the CSR structure of one source goes: `row_ptr` (rows + 1),
/// `col_idx` and `aux` (the value bits, or the row with `write_row`).
pub(crate) struct Target<'a> {
    pub row_ptr: &'a GpuBuffer,
    pub col_idx: &'a GpuBuffer,
    pub aux: &'a GpuBuffer,
}

/// Adds to `b` the selection that prunes the `k` least important elements of
/// all `sources` together and the compaction of each source into its target.
/// `weights`: flag non-finite values and write values (else: write rows, for
/// block scores).
pub(crate) fn build_select(
    b: &mut Builder<'_>,
    sources: &[Source<'_>],
    targets: &[Target<'_>],
    k: usize,
    weights: bool,
) -> Result<()> {
    let ctx = b.ctx;
    let mut params = Vec::with_capacity(sources.len());
    let (mut chunk0, mut offset) = (0u64, 0u64);
    for (i, s) in sources.iter().enumerate() {
        debug_assert!(s.stride.is_multiple_of(4) && s.stride >= s.cols);
        let len = (s.rows * s.cols) as u64;
        let len4 = (s.rows * s.stride / 4) as u64;
        let nchunks = if len == 0 { 0 } else { len4.div_ceil(CHUNK_VEC4) };
        params.push(SelParams {
            rows: u32_of(s.rows, "rows")?,
            cols: u32_of(s.cols, "cols")?,
            stride: u32_of(s.stride, "stride")?,
            len4: u32_of(len4 as usize, "vec4 count")?,
            chunk0: chunk0 as u32,
            nchunks: nchunks as u32,
            offset: u32_of(offset as usize, "element offset")?,
            k: u32_of(k, "prune count")?,
            total_chunks: 0,
            source: i as u32,
            _pad: [0; 2],
        });
        chunk0 += nchunks;
        offset += len;
    }
    if (k as u64) > offset {
        return Err(Error::Gpu(format!("cannot prune {k} of {offset} elements")));
    }
    let total_chunks = u32_of(chunk0 as usize, "chunk count")?;
    let uniforms: Vec<wgpu::Buffer> = params
        .iter_mut()
        .map(|p| {
            p.total_chunks = total_chunks;
            ctx.uniform(&*p, "select params")
        })
        .collect();

    let state = if k == 0 {
        // Nothing to select: T = 0, every element equal to 0 kept.
        GpuBuffer::from_slice(ctx, &[0u32, 0, 0, 0, 0, 0, u32::MAX, 0], "select state")?
    } else {
        GpuBuffer::new(ctx, 32, "select state")?
    };
    let chunk_words = 2 * chunk0.max(1);
    let counts = GpuBuffer::new(ctx, 4 * chunk_words, "select chunk counts")?;
    let bases = GpuBuffer::new(ctx, 4 * chunk_words, "select chunk bases")?;
    let status = b.status.clone();

    if k > 0 {
        let hist = GpuBuffer::new(ctx, 4 * HIST_WORDS, "select histograms")?;
        b.fill(&hist, 0)?;
        for pass in 0..3u32 {
            for (s, u) in sources.iter().zip(&uniforms) {
                if s.rows * s.cols == 0 {
                    continue;
                }
                let groups = ((s.rows * s.stride / 4) as u64).div_ceil(256 * HIST_ITEMS as u64);
                b.push(
                    &RADIX_HISTOGRAM,
                    &[("PASS", pass), ("HIST_ITEMS", HIST_ITEMS)],
                    &[u, s.buffer, state.raw(), hist.raw()],
                    groups,
                )?;
            }
            b.push(
                &RADIX_SCAN,
                &[("PASS", pass)],
                &[&uniforms[0], hist.raw(), state.raw()],
                1,
            )?;
        }
    }
    let check = [("CHECK_FINITE", weights as u32)];
    for ((s, u), p) in sources.iter().zip(&uniforms).zip(&params) {
        if p.nchunks > 0 {
            b.push(
                &SELECT_COUNT,
                &check,
                &[u, s.buffer, state.raw(), counts.raw(), status.raw()],
                p.nchunks as u64,
            )?;
        }
    }
    if total_chunks > 0 {
        b.push(
            &SELECT_CHUNK_SCAN,
            &[],
            &[&uniforms[0], counts.raw(), state.raw(), bases.raw()],
            1,
        )?;
    }
    let write_row = [("WRITE_ROW", !weights as u32)];
    for (((s, t), u), p) in sources.iter().zip(targets).zip(&uniforms).zip(&params) {
        if p.nchunks > 0 {
            b.push(
                &SELECT_SCATTER,
                &write_row,
                &[
                    u,
                    s.buffer,
                    state.raw(),
                    bases.raw(),
                    t.row_ptr.raw(),
                    t.col_idx.raw(),
                    t.aux.raw(),
                    status.raw(),
                    s.values,
                ],
                p.nchunks as u64,
            )?;
        } else {
            // No elements: every row is empty.
            b.fill(t.row_ptr, 0)?;
        }
    }
    Ok(())
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("{what} = {v} does not fit in u32")))
}

/// Output buffers of a CSR with room for `cap` elements.
fn csr_buffers(ctx: &Context, rows: usize, cols: usize, cap: usize) -> Result<GpuCsr> {
    let ptr_bytes = checked_mul(rows + 1, 4, "csr row_ptr")? as u64;
    let bytes = checked_mul(cap, 4, "csr values")? as u64;
    Ok(GpuCsr {
        rows,
        cols,
        nnz: cap,
        row_ptr: GpuBuffer::new(ctx, ptr_bytes, "csr row_ptr")?,
        col_idx: GpuBuffer::new(ctx, bytes, "csr col_idx")?,
        values: GpuBuffer::new(ctx, bytes, "csr values")?,
    })
}

/// Selection over `score` (or `w` itself), keeping the values of `w`.
fn source<'a>(w: &'a GpuMatrix, score: Option<&'a GpuMatrix>) -> Result<Source<'a>> {
    let keys = match score {
        Some(sc) => {
            check_score(w, sc)?;
            sc
        }
        None => w,
    };
    Ok(Source {
        buffer: keys.buffer().raw(),
        values: w.buffer().raw(),
        rows: w.rows(),
        cols: w.cols(),
        stride: w.stride(),
    })
}

/// A score matrix must have the layout of the weights it ranks.
pub(crate) fn check_score(w: &GpuMatrix, score: &GpuMatrix) -> Result<()> {
    if (score.rows(), score.cols(), score.stride()) != (w.rows(), w.cols(), w.stride()) {
        return Err(Error::Shape(format!(
            "scores are {}x{}, the weights {}x{}",
            score.rows(),
            score.cols(),
            w.rows(),
            w.cols()
        )));
    }
    Ok(())
}

impl PrunePlan<GpuCsr> {
    /// Plans unstructured pruning of `w`: exactly `round(sparsity * len)`
    /// elements pruned, output CSR with exactly the remaining `nnz`.
    pub fn unstructured(ctx: &Context, w: &GpuMatrix, sparsity: f64) -> Result<Self> {
        Self::unstructured_scored(ctx, w, None, sparsity)
    }

    /// [`Self::unstructured`] ranking the elements by `score` (same shape as
    /// `w`, non-negative, e.g. `|w|` times an input-channel norm) instead of
    /// `|w|`; the CSR holds the values of `w`. Non-finite scores are errors.
    pub fn unstructured_scored(ctx: &Context, w: &GpuMatrix, score: Option<&GpuMatrix>, sparsity: f64) -> Result<Self> {
        check_sparsity(sparsity)?;
        let src = source(w, score)?;
        let len = checked_mul(w.rows(), w.cols(), "matrix size")?;
        let k = prune_count(sparsity, len);
        let mut b = Builder::new(ctx, &[score.unwrap_or(w)], 1)?;
        let out = csr_buffers(ctx, w.rows(), w.cols(), len - k)?;
        let target = Target {
            row_ptr: &out.row_ptr,
            col_idx: &out.col_idx,
            aux: &out.values,
        };
        build_select(&mut b, &[src], &[target], k, true)?;
        Ok(b.finish(out))
    }
}

impl PrunePlan<Vec<GpuCsr>> {
    /// Plans unstructured pruning with one threshold across `ws`: exactly
    /// `round(sparsity * total)` elements pruned in all, ties keeping the
    /// earlier tensor, then the lower index.
    ///
    /// How many elements each tensor keeps is only known on the GPU, so the
    /// plan's outputs have room for `min(len, total kept)` elements each and
    /// their `nnz` is that capacity; the real count is `row_ptr[rows]` (and
    /// status word `1 + t`). [`PrunePlan::run`] returns exact outputs.
    pub fn global(ctx: &Context, ws: &[&GpuMatrix], sparsity: f64) -> Result<Self> {
        Self::global_scored(ctx, ws, None, sparsity)
    }

    /// [`Self::global`] ranking by `scores` (one per tensor, each of its
    /// tensor's shape) instead of `|w|`; the CSRs hold the values of `ws`.
    pub fn global_scored(
        ctx: &Context,
        ws: &[&GpuMatrix],
        scores: Option<&[&GpuMatrix]>,
        sparsity: f64,
    ) -> Result<Self> {
        check_sparsity(sparsity)?;
        if let Some(sc) = scores {
            if sc.len() != ws.len() {
                return Err(Error::Shape(format!(
                    "{} score matrices for {} tensors",
                    sc.len(),
                    ws.len()
                )));
            }
        }
        let mut total = 0usize;
        for w in ws {
            let len = checked_mul(w.rows(), w.cols(), "matrix size")?;
            total = total
                .checked_add(len)
                .ok_or_else(|| Error::Overflow("total element count".into()))?;
        }
        let k = prune_count(sparsity, total);
        let kept = total - k;
        let keys: Vec<&GpuMatrix> = match scores {
            Some(sc) => sc.to_vec(),
            None => ws.to_vec(),
        };
        let mut b = Builder::new(ctx, &keys, ws.len())?;
        let outs = ws
            .iter()
            .map(|w| csr_buffers(ctx, w.rows(), w.cols(), (w.rows() * w.cols()).min(kept)))
            .collect::<Result<Vec<_>>>()?;
        let sources = ws
            .iter()
            .enumerate()
            .map(|(i, w)| source(w, scores.map(|sc| sc[i])))
            .collect::<Result<Vec<Source>>>()?;
        let targets: Vec<Target> = outs
            .iter()
            .map(|o| Target {
                row_ptr: &o.row_ptr,
                col_idx: &o.col_idx,
                aux: &o.values,
            })
            .collect();
        if !ws.is_empty() {
            build_select(&mut b, &sources, &targets, k, true)?;
        }
        Ok(b.finish(outs))
    }
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, WgslSource, RO, RW, UNIFORM};

const PRUNE_SELECT_WGSL: &str = include_str!("prune_select.wgsl");
pub static RADIX_HISTOGRAM: KernelDef = KernelDef::new(
    "radix_histogram",
    WgslSource::File(PRUNE_SELECT_WGSL),
    &[UNIFORM, RO, RO, RW],
);
pub static RADIX_SCAN: KernelDef =
    KernelDef::new("radix_scan", WgslSource::File(PRUNE_SELECT_WGSL), &[UNIFORM, RO, RW]);
pub static SELECT_COUNT: KernelDef = KernelDef::new(
    "select_count",
    WgslSource::File(PRUNE_SELECT_WGSL),
    &[UNIFORM, RO, RO, RW, RW],
);
pub static SELECT_CHUNK_SCAN: KernelDef = KernelDef::new(
    "select_chunk_scan",
    WgslSource::File(PRUNE_SELECT_WGSL),
    &[UNIFORM, RO, RO, RW],
);
pub static SELECT_SCATTER: KernelDef = KernelDef::new(
    "select_scatter",
    WgslSource::File(PRUNE_SELECT_WGSL),
    &[UNIFORM, RO, RO, RO, RW, RW, RW, RW, RO],
);
