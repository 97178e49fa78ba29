//! CSR SpMM: `Y = epilogue(W X)` with W unstructured in CSR ([`CsrWeights`]:
//! the [`GpuCsr`] arrays plus a row schedule) and X, Y dense ([`GpuMatrix`]).
//!
//! Two kernels; [`Tiling::auto`] picks one from the shape and the mean row
//! length: [`Tiling::Rowwise`] (`spmm_csr_rowwise.wgsl`, N of a few
//! dozen and up) and [`Tiling::Rows`] (`spmm_csr_rows.wgsl`, N = 1..~28).
//! Both read X rows straight from memory (measured on an H100, that beat
//! staging X in workgroup memory at every sparsity, see the shader headers)
//! and take rows in the order of [`CsrWeights::row_order`] (longest first)
//! for load balance; the shader headers say what each workgroup and thread
//! owns.

mod format;

pub use format::GpuCsr;

use crate::error::{Error, Result};
use crate::sparse::Csr;

use super::spmm_nm::{check_product, check_workgroup};
use super::{longest_first, Context, Dispatch, Epilogue, GpuBuffer, GpuMatrix, PipelineKey};

/// Most rows one thread of [`Tiling::Rowwise`] owns (`MAX_RM` in the shader).
pub const MAX_ROWS_PER_THREAD: u32 = 8;
/// Most accumulators (rows x vec4 columns) of one [`Tiling::Rowwise`] thread.
pub const MAX_ACCUMULATORS: u32 = 16;

/// Below this many outputs (M x N) [`Tiling::auto`] treats a product as small.
const SMALL_OUTPUTS: u64 = 1 << 20;

/// CSR weights ready for SpMM: the GPU arrays and the order in which the
/// kernels visit the rows (by decreasing non-zero count, ties lower row first),
/// computed once here so that rows of one workgroup have similar lengths.
#[derive(Clone, Debug)]
pub struct CsrWeights {
    pub csr: GpuCsr,
    /// `rows` u32 row indices, longest row first.
    pub row_order: GpuBuffer,
    /// Non-zeros of the longest row.
    pub max_row_nnz: usize,
}

impl CsrWeights {
    /// Uploads `m` and its row schedule.
    pub fn upload(ctx: &Context, m: &Csr) -> Result<Self> {
        Self::from_gpu(ctx, GpuCsr::upload(ctx, m)?, m.row_ptr())
    }

    /// Wraps CSR arrays already on the GPU; `row_ptr` is their host copy, from
    /// which the schedule is computed.
    pub fn from_gpu(ctx: &Context, csr: GpuCsr, row_ptr: &[u32]) -> Result<Self> {
        if row_ptr.len() != csr.rows + 1 || row_ptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::InvalidFormat(format!(
                "row_ptr of {} entries does not describe {} rows",
                row_ptr.len(),
                csr.rows
            )));
        }
        let order = longest_first(row_ptr);
        let max_row_nnz = order
            .first()
            .map_or(0, |&r| (row_ptr[r as usize + 1] - row_ptr[r as usize]) as usize);
        Ok(CsrWeights {
            row_order: GpuBuffer::from_slice(ctx, &order, "csr row_order")?,
            csr,
            max_row_nnz,
        })
    }

    pub fn rows(&self) -> usize {
        self.csr.rows
    }
    pub fn cols(&self) -> usize {
        self.csr.cols
    }
    /// Fraction of stored elements.
    pub fn density(&self) -> f64 {
        let len = self.csr.rows as f64 * self.csr.cols as f64;
        if len == 0.0 {
            0.0
        } else {
            self.csr.nnz as f64 / len
        }
    }

    fn check_buffers(&self) -> Result<()> {
        let c = &self.csr;
        let need = [
            ("row_ptr", &c.row_ptr, c.rows as u64 + 1),
            ("col_idx", &c.col_idx, c.nnz as u64),
            ("values", &c.values, c.nnz as u64),
            ("row_order", &self.row_order, c.rows as u64),
        ];
        for (what, buf, words) in need {
            if buf.bytes() < 4 * words {
                return Err(Error::InvalidFormat(format!(
                    "CSR {what} holds {} words, {} are needed",
                    buf.bytes() / 4,
                    words
                )));
            }
        }
        if u32::try_from(c.nnz).is_err() {
            return Err(Error::Overflow(format!("{} non-zeros exceed u32 indexing", c.nnz)));
        }
        Ok(())
    }
}

/// How the product is split into workgroups and threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// `spmm_csr_rows`: a workgroup owns `rows` (sorted) rows by `4 *
    /// col_threads` columns; each row has `col_threads * split` threads,
    /// `split` sharing its non-zeros.
    Rows { col_threads: u32, split: u32, rows: u32 },
    /// `spmm_csr_rowwise`: a workgroup owns `row_threads * rows_per_thread`
    /// (sorted) rows by `4 * col_threads * vec4s` columns; each thread owns
    /// `rows_per_thread` consecutive sorted rows (advancing in lock step) by
    /// `vec4s` vec4 columns, `split` lanes share a row's non-zeros, `unroll`
    /// steps are unrolled, and with `sync` the workgroup meets at a barrier
    /// every `unroll` steps.
    Rowwise {
        col_threads: u32,
        vec4s: u32,
        split: u32,
        row_threads: u32,
        rows_per_thread: u32,
        unroll: u32,
        sync: bool,
    },
}

impl Tiling {
    /// A tiling suited to `w` times an X with `n_cols` columns on `ctx`'s
    /// device (within WebGPU's default limits: 256 threads, 16 KiB of
    /// workgroup memory). Each class gets the tiling measured fastest for it
    /// on an H100 (`wgsparse bench --variants`, 2026-11-25; numbers in the
    /// shader headers).
    pub fn auto(ctx: &Context, w: &CsrWeights, n_cols: usize) -> Tiling {
        let n4 = (n_cols.div_ceil(4).max(1)).min(u32::MAX as usize) as u32;
        let rows = w.rows().min(u32::MAX as usize) as u32;
        let threads = 256u32.min(ctx.limits().max_compute_invocations_per_workgroup);
        if n4 < 8 {
            // N = 1..28 (the classifier): lanes split each row's non-zeros.
            let mean = (w.csr.nnz as f64 / w.rows().max(1) as f64).ceil().max(1.0) as u32;
            let col_threads = n4.max(1).next_power_of_two().min(threads);
            let split = (32 / col_threads)
                .clamp(1, mean.next_power_of_two())
                .min(threads / col_threads);
            return Tiling::Rows {
                col_threads,
                split,
                rows: (threads / (col_threads * split)).max(1),
            };
        }
        if rows as u64 * n4 as u64 * 4 < SMALL_OUTPUTS {
            // Small products (EfficientNet-Lite0's 1x1 convolutions): the plain
            // row kernel, 8 lanes x 4-way split over a narrow X (49, 196
            // columns), 32 lanes over a wide one (3136).
            let (col_threads, split) = if n4 <= 64 { (8, 4) } else { (32, 1) };
            let col_threads = col_threads.min(threads);
            return Tiling::Rows {
                col_threads,
                split,
                rows: (threads / (col_threads * split)).max(1),
            };
        }
        // Large products: 16 lanes across columns, 2 splitting each row, one
        // row per thread, 16 steps unrolled (4096^3: 1.69 ms at 90%, 0.43 ms
        // at 98%, the best of 22 tilings at both).
        let (mut col_threads, mut split) = (16, 2);
        while col_threads > 8 && col_threads / 2 >= n4.next_power_of_two() {
            col_threads /= 2;
            split *= 2;
        }
        let lanes = (col_threads * split).min(threads);
        let mut row_threads = (threads / lanes).max(1);
        // Fewer rows per workgroup where the grid would not fill the GPU.
        let col_tiles = n4.div_ceil(col_threads);
        while row_threads > 1 && rows.div_ceil(row_threads) * col_tiles < 256 {
            row_threads /= 2;
        }
        Tiling::Rowwise {
            col_threads,
            vec4s: 1,
            split,
            row_threads,
            rows_per_thread: 1,
            unroll: 16,
            sync: false,
        }
    }

    /// Tilings worth timing for `w` times an X with `n_cols` columns (tuning:
    /// `wgsparse bench --variants`); those the device cannot run are dropped.
    pub fn candidates(ctx: &Context, w: &CsrWeights, n_cols: usize) -> Vec<Tiling> {
        let n4 = n_cols.div_ceil(4).max(1) as u32;
        let mut v = Vec::new();
        let rowwise = |col_threads, split, row_threads, rows_per_thread, unroll, sync| Tiling::Rowwise {
            col_threads,
            vec4s: 1,
            split,
            row_threads,
            rows_per_thread,
            unroll,
            sync,
        };
        if n4 >= 8 {
            for (ct, ks, rt, rm, u, sync) in [
                (16, 2, 8, 1, 8, false),
                (16, 2, 8, 1, 16, false),
                (8, 4, 8, 1, 8, false),
                (8, 4, 8, 1, 16, false),
                (32, 1, 8, 1, 8, false),
                (8, 4, 8, 2, 4, false),
                (8, 4, 8, 2, 8, false),
                (16, 2, 8, 2, 8, false),
                (8, 4, 8, 2, 4, true),
                (8, 4, 8, 1, 8, true),
                (16, 2, 16, 2, 4, true),
                (8, 4, 32, 2, 4, true),
                (8, 4, 32, 1, 8, true),
                (16, 2, 32, 1, 8, true),
                (8, 4, 32, 1, 8, false),
                (16, 2, 32, 1, 8, false),
                (8, 4, 4, 1, 4, false),
                (16, 2, 4, 1, 4, false),
                (32, 1, 4, 1, 4, false),
            ] {
                v.push(rowwise(ct, ks, rt, rm, u, sync));
            }
            for (col_threads, split, rows) in [(8, 4, 8), (16, 2, 8), (32, 1, 8)] {
                v.push(Tiling::Rows {
                    col_threads,
                    split,
                    rows,
                });
            }
        } else {
            for (col_threads, split, rows) in [(1, 32, 8), (1, 8, 32), (2, 16, 8), (4, 8, 8)] {
                v.push(Tiling::Rows {
                    col_threads,
                    split,
                    rows,
                });
            }
            for (ct, ks, rt, rm, u) in [(1, 32, 8, 1, 4), (1, 32, 8, 2, 2), (2, 16, 8, 1, 4)] {
                v.push(rowwise(ct, ks, rt, rm, u, false));
            }
        }
        let _ = w;
        v.retain(|t| t.check(ctx).is_ok());
        v
    }

    /// A short name for tables.
    pub fn label(self) -> String {
        match self {
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => format!("rows c{col_threads} s{split} r{rows}"),
            Tiling::Rowwise {
                col_threads,
                vec4s,
                split,
                row_threads,
                rows_per_thread,
                unroll,
                sync,
            } => format!(
                "rowwise c{col_threads}x{vec4s} s{split} r{row_threads}x{rows_per_thread} u{unroll}{}",
                if sync { " sync" } else { "" }
            ),
        }
    }

    fn threads(self) -> u64 {
        match self {
            Tiling::Rowwise {
                col_threads,
                split,
                row_threads,
                ..
            } => col_threads as u64 * split as u64 * row_threads as u64,
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => col_threads as u64 * split as u64 * rows as u64,
        }
    }

    /// Bytes of workgroup memory the kernel declares.
    pub fn workgroup_bytes(self) -> u32 {
        let b = match self {
            Tiling::Rows { .. } => 16 * self.threads(),
            // The split sums, and 8 bytes for the synchronised step count.
            Tiling::Rowwise { split, .. } => 8 + if split > 1 { 16 * self.threads() } else { 16 },
        };
        b.min(u32::MAX as u64) as u32
    }

    fn check(self, ctx: &Context) -> Result<()> {
        let bad = match self {
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => col_threads == 0 || split == 0 || rows == 0,
            Tiling::Rowwise {
                col_threads,
                vec4s,
                split,
                row_threads,
                rows_per_thread,
                unroll,
                ..
            } => {
                col_threads == 0
                    || !(1..=4).contains(&vec4s)
                    || split == 0
                    || row_threads == 0
                    || !(1..=MAX_ROWS_PER_THREAD).contains(&rows_per_thread)
                    || rows_per_thread * vec4s > MAX_ACCUMULATORS
                    || unroll == 0
                    || unroll as u64 * rows_per_thread as u64 > 16
            }
        };
        if bad {
            return Err(Error::Limit(format!(
                "{self:?}: every size must be >= 1; row-wise: rows_per_thread <= {MAX_ROWS_PER_THREAD}, vec4s <= 4, \
                 rows_per_thread * vec4s <= {MAX_ACCUMULATORS}, unroll * rows_per_thread <= 16"
            )));
        }
        check_workgroup(ctx, &self, self.threads(), self.workgroup_bytes())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CsrParams {
    m_rows: u32,
    k: u32,
    n4: u32,
    row_tiles: u32,
    tiles: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowwiseParams {
    m_rows: u32,
    n4: u32,
    row_tiles: u32,
    tiles: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    nnz: u32,
    n4: u32,
    _pad: [u32; 2],
}

/// Prepares `Y = epilogue(W X)` with the tiling [`Tiling::auto`] picks.
pub fn prepare(ctx: &Context, w: &CsrWeights, x: &GpuMatrix, y: &GpuMatrix, epi: &Epilogue) -> Result<Dispatch> {
    prepare_with(ctx, w, x, y, epi, Tiling::auto(ctx, w, x.cols()))
}

/// Prepares `Y = epilogue(W X)` with a given tiling (for tests and tuning).
/// [`Tiling::Rowwise`] first packs W's non-zeros for X's row stride into a
/// buffer of its own (8 bytes per non-zero, on the GPU, once).
pub fn prepare_with(
    ctx: &Context,
    w: &CsrWeights,
    x: &GpuMatrix,
    y: &GpuMatrix,
    epi: &Epilogue,
    tiling: Tiling,
) -> Result<Dispatch> {
    let n4 = check_product(w.rows(), w.cols(), x, y)?;
    w.check_buffers()?;
    tiling.check(ctx)?;
    let bias = epi.bias_buffer(ctx, w.rows())?;
    let rows = w.rows() as u32;
    let [has_bias, act] = epi.constants();
    let c = &w.csr;
    match tiling {
        Tiling::Rows {
            col_threads,
            split,
            rows: rpw,
        } => {
            let constants = [has_bias, act, ("R_CT", col_threads), ("R_KS", split), ("R_RPW", rpw)];
            let (row_tiles, tiles) = tiles(rows.div_ceil(rpw), n4.div_ceil(col_threads))?;
            let params = CsrParams {
                m_rows: rows,
                k: w.cols() as u32,
                n4,
                row_tiles,
                tiles,
                _pad: [0; 3],
            };
            let u = ctx.uniform(&params, "spmm_csr params");
            ctx.prepare(
                &PipelineKey::new(&SPMM_CSR_ROWS, &constants),
                &[
                    &u,
                    c.row_ptr.raw(),
                    c.col_idx.raw(),
                    c.values.raw(),
                    w.row_order.raw(),
                    x.buf.raw(),
                    y.buf.raw(),
                    &bias,
                ],
                ctx.fold_groups(tiles)?,
            )
        }
        Tiling::Rowwise {
            col_threads,
            vec4s,
            split,
            row_threads,
            rows_per_thread,
            unroll,
            sync,
        } => {
            let wp = pack_nonzeros(ctx, w, n4)?;
            let constants = [
                has_bias,
                act,
                ("CT", col_threads),
                ("TN4", vec4s),
                ("KS", split),
                ("RT", row_threads),
                ("RM", rows_per_thread),
                ("U", unroll),
                ("SYNC", sync as u32),
            ];
            let (row_tiles, tiles) = tiles(
                rows.div_ceil(row_threads * rows_per_thread),
                n4.div_ceil(col_threads * vec4s),
            )?;
            let params = RowwiseParams {
                m_rows: rows,
                n4,
                row_tiles,
                tiles,
            };
            let u = ctx.uniform(&params, "spmm_csr rowwise params");
            ctx.prepare(
                &PipelineKey::new(&SPMM_CSR_ROWWISE, &constants),
                &[
                    &u,
                    c.row_ptr.raw(),
                    wp.raw(),
                    w.row_order.raw(),
                    x.buf.raw(),
                    y.buf.raw(),
                    &bias,
                ],
                ctx.fold_groups(tiles)?,
            )
        }
    }
}

/// `(row tiles, all tiles)` of a grid, checked against u32.
fn tiles(row_tiles: u32, col_tiles: u32) -> Result<(u32, u32)> {
    let tiles = row_tiles
        .checked_mul(col_tiles)
        .ok_or_else(|| Error::Limit(format!("{row_tiles} x {col_tiles} workgroups do not fit a dispatch")))?;
    Ok((row_tiles.max(1), tiles))
}

/// Packs the non-zeros as (col * n4, value bits) on the GPU (submitted now).
fn pack_nonzeros(ctx: &Context, w: &CsrWeights, n4: u32) -> Result<GpuBuffer> {
    let c = &w.csr;
    let wp = GpuBuffer::new(ctx, 8 * c.nnz.max(1) as u64, "csr packed non-zeros")?;
    let u = ctx.uniform(
        &PackParams {
            nnz: c.nnz as u32,
            n4,
            _pad: [0; 2],
        },
        "spmm_csr pack params",
    );
    let d = ctx.prepare(
        &PipelineKey::new(&SPMM_CSR_PACK, &[]),
        &[&u, c.col_idx.raw(), c.values.raw(), wp.raw()],
        ctx.fold_groups((c.nnz as u32).div_ceil(256))?,
    )?;
    ctx.submit(&[&d]);
    Ok(wp)
}

/// Prepares and submits `Y = epilogue(W X)` (auto tiling).
pub fn run(ctx: &Context, w: &CsrWeights, x: &GpuMatrix, y: &GpuMatrix, epi: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, epi)?;
    ctx.submit(&[&d]);
    Ok(())
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{epilogues_only, KernelDef, WgslSource, RO, RW, UNIFORM};

const SPMM_CSR_ROWS_WGSL: &str = include_str!("spmm_csr_rows.wgsl");
crate::gpu::wgsl::generated!(spmm_csr_rows_source, SPMM_CSR_ROWS_WGSL, &[]);
pub static SPMM_CSR_ROWS: KernelDef = KernelDef::new(
    "spmm_csr_rows",
    WgslSource::Generated(spmm_csr_rows_source),
    &[UNIFORM, RO, RO, RO, RO, RO, RW, RO],
)
.specialised(epilogues_only);
const SPMM_CSR_ROWWISE_WGSL: &str = include_str!("spmm_csr_rowwise.wgsl");
crate::gpu::wgsl::generated!(spmm_csr_rowwise_source, SPMM_CSR_ROWWISE_WGSL, &[]);
pub static SPMM_CSR_ROWWISE: KernelDef = KernelDef::new(
    "spmm_csr_rowwise",
    WgslSource::Generated(spmm_csr_rowwise_source),
    &[UNIFORM, RO, RO, RO, RO, RW, RO],
)
.specialised(epilogues_only);
const SPMM_CSR_PACK_WGSL: &str = include_str!("spmm_csr_pack.wgsl");
pub static SPMM_CSR_PACK: KernelDef = KernelDef::new(
    "spmm_csr_pack",
    WgslSource::File(SPMM_CSR_PACK_WGSL),
    &[UNIFORM, RO, RO, RW],
);
pub const KERNELS: &[&KernelDef] = &[&SPMM_CSR_ROWS, &SPMM_CSR_ROWWISE, &SPMM_CSR_PACK];
