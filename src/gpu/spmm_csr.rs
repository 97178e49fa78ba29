//! CSR SpMM (`shaders/spmm_csr.wgsl`): `Y = epilogue(W X)` with W unstructured
//! in CSR ([`CsrWeights`]: the [`GpuCsr`] arrays plus a row schedule) and X, Y
//! dense ([`GpuMatrix`]).
//!
//! Two kernels share the bindings; [`Tiling::auto`] picks one from the shape
//! and density: [`Tiling::Tiled`] stages X in workgroup memory per K chunk so
//! every X element fetched serves all rows of a tile (N of a few dozen and up),
//! [`Tiling::Rows`] lets several threads split each row's non-zeros and reads X
//! directly (N = 1..~28). Both take rows in the order of
//! [`CsrWeights::row_order`] (longest first) for load balance; the shader
//! header says what each workgroup and thread owns.

use crate::error::{Error, Result};
use crate::sparse::Csr;

use super::spmm_nm::{check_product, fit_rows, PORTABLE_WORKGROUP_BYTES};
use super::{longest_first, Context, Dispatch, Epilogue, GpuBuffer, GpuCsr, GpuMatrix, Kernel, PipelineKey};

/// Most rows one thread of [`Tiling::Tiled`] owns (`MAX_RM` in the shader).
pub const MAX_ROWS_PER_THREAD: u32 = 16;

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
    /// A workgroup owns `row_threads * rows_per_thread` (sorted) rows by
    /// `4 * col_threads` columns and walks the K range its rows touch in chunks
    /// of `k_chunk` rows of X; each thread owns `rows_per_thread` rows by one
    /// vec4 column.
    Tiled {
        col_threads: u32,
        row_threads: u32,
        rows_per_thread: u32,
        k_chunk: u32,
    },
    /// A workgroup owns `rows` (sorted) rows by `4 * col_threads` columns; each
    /// row has `col_threads * split` threads, `split` sharing its non-zeros.
    Rows { col_threads: u32, split: u32, rows: u32 },
    /// `spmm_csr_panel`: a workgroup owns `row_threads * rows_per_thread`
    /// (sorted) rows by `4 * col_threads * vec4s` columns and walks K in chunks
    /// of `k_chunk` rows of X staged in workgroup memory; a plan computed when
    /// the product is prepared says where each row's non-zeros of each chunk
    /// are. Each thread owns `rows_per_thread` rows by `vec4s` vec4 columns;
    /// `row_loops` walks its rows one after the other instead of in lock step.
    Panel {
        col_threads: u32,
        vec4s: u32,
        row_threads: u32,
        rows_per_thread: u32,
        k_chunk: u32,
        row_loops: bool,
    },
    /// `spmm_csr_rowwise`: a workgroup owns `row_threads * rows_per_thread`
    /// (sorted) rows by `4 * col_threads * vec4s` columns; each thread owns
    /// `rows_per_thread` consecutive sorted rows (advancing in lock step) by
    /// `vec4s` vec4 columns, `split` lanes share a row's non-zeros, `unroll`
    /// steps are unrolled. X is read straight from memory.
    Rowwise {
        col_threads: u32,
        vec4s: u32,
        split: u32,
        row_threads: u32,
        rows_per_thread: u32,
        unroll: u32,
    },
}

/// Most accumulators (rows x vec4 columns) one thread of [`Tiling::Panel`]
/// holds (`MAX_ACC` in the shader).
pub const PANEL_MAX_ACC: u32 = 16;
/// Most staged vec4s one thread of [`Tiling::Panel`] prefetches per chunk.
const PANEL_MAX_XL: u32 = 16;

impl Tiling {
    /// A tiling suited to `w` times an X with `n_cols` columns on `ctx`'s
    /// device, within [`PORTABLE_WORKGROUP_BYTES`] of workgroup memory.
    pub fn auto(ctx: &Context, w: &CsrWeights, n_cols: usize) -> Tiling {
        let n4 = (n_cols.div_ceil(4).max(1)).min(u32::MAX as usize) as u32;
        let rows = w.rows().min(u32::MAX as usize) as u32;
        let threads = 256u32.min(ctx.limits().max_compute_invocations_per_workgroup);
        let density = w.density();
        if n4 < 8 {
            let col_threads = n4.max(1).next_power_of_two().min(threads);
            let mean = (density * w.cols() as f64).ceil().max(1.0) as u32;
            let split = (32 / col_threads)
                .clamp(1, mean.next_power_of_two())
                .min(threads / col_threads);
            return Tiling::Rows {
                col_threads,
                split,
                rows: (threads / (col_threads * split)).max(1),
            };
        }
        let col_threads = (if n4 >= 12 { 16 } else { 8 }).min(threads);
        let row_threads = (threads / col_threads).max(1);
        // Sparser weights use each staged X row less often: share it among more
        // rows and stage more of K at a time.
        let (max_rows, k_chunk) = if density < 0.05 { (16, 48) } else { (8, 32) };
        let k_chunk = k_chunk.min(w.cols().max(1) as u32);
        let col_tiles = n4.div_ceil(col_threads);
        let rows_per_thread = fit_rows(rows, row_threads, col_tiles, 1, max_rows);
        let mut t = Tiling::Tiled {
            col_threads,
            row_threads,
            rows_per_thread,
            k_chunk,
        };
        if t.workgroup_bytes() > PORTABLE_WORKGROUP_BYTES {
            t = Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                // The rest of the memory is 16 bytes of K-range bookkeeping.
                k_chunk: (((PORTABLE_WORKGROUP_BYTES - 16) / (16 * col_threads)) & !3).max(1),
            };
        }
        t
    }

    /// Tilings worth timing for `w` times an X with `n_cols` columns (tuning:
    /// `wgsparse bench --variants`); those the device cannot run are dropped.
    pub fn candidates(ctx: &Context, w: &CsrWeights, n_cols: usize) -> Vec<Tiling> {
        let n4 = n_cols.div_ceil(4).max(1) as u32;
        let mut v = Vec::new();
        let panel = |col_threads, vec4s, rows_per_thread, k_chunk, row_loops| Tiling::Panel {
            col_threads,
            vec4s,
            row_threads: 256 / col_threads,
            rows_per_thread,
            k_chunk,
            row_loops,
        };
        let rowwise = |col_threads: u32, vec4s, split: u32, rows_per_thread, unroll| Tiling::Rowwise {
            col_threads,
            vec4s,
            split,
            row_threads: (256 / (col_threads * split)).max(1),
            rows_per_thread,
            unroll,
        };
        if n4 >= 8 {
            for (ct, tn4, ks, rm, u) in [
                (16, 1, 2, 1, 4),
                (16, 1, 2, 1, 8),
                (16, 1, 2, 2, 4),
                (16, 1, 2, 4, 2),
                (16, 1, 2, 4, 4),
                (16, 1, 2, 8, 2),
                (16, 2, 2, 1, 4),
                (16, 2, 2, 2, 2),
                (16, 2, 2, 4, 2),
                (16, 1, 4, 2, 2),
                (32, 1, 1, 1, 4),
                (32, 1, 1, 4, 2),
                (32, 2, 1, 2, 4),
                (8, 1, 4, 2, 4),
                (8, 2, 4, 2, 2),
                (8, 1, 4, 4, 2),
                (4, 1, 8, 2, 4),
            ] {
                v.push(rowwise(ct, tn4, ks, rm, u));
            }
            v.push(panel(16, 1, 4, 64, false));
            v.push(panel(16, 1, 8, 64, false));
            for (col_threads, split, rows) in [(32, 1, 8), (16, 1, 16), (16, 2, 8), (8, 4, 8)] {
                v.push(Tiling::Rows {
                    col_threads,
                    split,
                    rows,
                });
            }
        } else {
            for (col_threads, split, rows) in [(1, 32, 8), (1, 8, 32), (2, 16, 8), (4, 8, 8), (1, 4, 64)] {
                v.push(Tiling::Rows {
                    col_threads,
                    split,
                    rows,
                });
            }
            for (ct, ks, rm, u) in [(1, 32, 1, 4), (1, 32, 2, 2), (1, 8, 4, 2), (2, 16, 1, 4), (4, 8, 1, 4)] {
                v.push(rowwise(ct, 1, ks, rm, u));
            }
        }
        let _ = w;
        v.retain(|t| t.check(ctx).is_ok());
        v
    }

    /// A short name for tables.
    pub fn label(self) -> String {
        match self {
            Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                k_chunk,
            } => format!("tiled c{col_threads} r{row_threads}x{rows_per_thread} k{k_chunk}"),
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => format!("rows c{col_threads} s{split} r{rows}"),
            Tiling::Panel {
                col_threads,
                vec4s,
                row_threads,
                rows_per_thread,
                k_chunk,
                row_loops,
            } => format!(
                "panel c{col_threads}x{vec4s} r{row_threads}x{rows_per_thread} k{k_chunk}{}",
                if row_loops { " loops" } else { "" }
            ),
            Tiling::Rowwise {
                col_threads,
                vec4s,
                split,
                row_threads,
                rows_per_thread,
                unroll,
            } => format!("rowwise c{col_threads}x{vec4s} s{split} r{row_threads}x{rows_per_thread} u{unroll}"),
        }
    }

    fn threads(self) -> u64 {
        match self {
            Tiling::Tiled {
                col_threads,
                row_threads,
                ..
            }
            | Tiling::Panel {
                col_threads,
                row_threads,
                ..
            } => col_threads as u64 * row_threads as u64,
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
            Tiling::Tiled {
                col_threads, k_chunk, ..
            } => 16 * k_chunk as u64 * col_threads as u64 + 16,
            Tiling::Rows { .. } => 16 * self.threads(),
            Tiling::Panel {
                col_threads,
                vec4s,
                k_chunk,
                ..
            } => 16 * k_chunk as u64 * col_threads as u64 * vec4s as u64,
            Tiling::Rowwise { split, .. } => {
                if split > 1 {
                    16 * self.threads()
                } else {
                    16
                }
            }
        };
        b.min(u32::MAX as u64) as u32
    }

    fn check(self, ctx: &Context) -> Result<()> {
        let l = ctx.limits();
        let bad = match self {
            Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                k_chunk,
            } => {
                col_threads == 0
                    || row_threads == 0
                    || k_chunk == 0
                    || !(1..=MAX_ROWS_PER_THREAD).contains(&rows_per_thread)
            }
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => col_threads == 0 || split == 0 || rows == 0,
            Tiling::Panel {
                col_threads,
                vec4s,
                row_threads,
                rows_per_thread,
                k_chunk,
                ..
            } => {
                col_threads == 0
                    || vec4s == 0
                    || row_threads == 0
                    || rows_per_thread == 0
                    || k_chunk == 0
                    || rows_per_thread as u64 * vec4s as u64 > PANEL_MAX_ACC as u64
                    || (self.workgroup_bytes() as u64 / 16).div_ceil(self.threads().max(1)) > PANEL_MAX_XL as u64
            }
            Tiling::Rowwise {
                col_threads,
                vec4s,
                split,
                row_threads,
                rows_per_thread,
                unroll,
            } => {
                col_threads == 0
                    || !(1..=4).contains(&vec4s)
                    || split == 0
                    || row_threads == 0
                    || !(1..=8).contains(&rows_per_thread)
                    || rows_per_thread * vec4s > 16
                    || unroll == 0
                    || unroll as u64 * rows_per_thread as u64 > 16
            }
        };
        if bad {
            return Err(Error::Limit(format!(
                "{self:?}: every size must be >= 1, rows_per_thread <= {MAX_ROWS_PER_THREAD} (panel: rows x vec4s \
                 <= {PANEL_MAX_ACC}, at most {PANEL_MAX_XL} staged vec4s per thread)"
            )));
        }
        let threads = self.threads();
        if threads > l.max_compute_invocations_per_workgroup as u64 || threads > l.max_compute_workgroup_size_x as u64 {
            return Err(Error::Limit(format!(
                "{self:?} has {threads} threads per workgroup; the device allows {} (x: {})",
                l.max_compute_invocations_per_workgroup, l.max_compute_workgroup_size_x
            )));
        }
        let bytes = self.workgroup_bytes();
        if bytes > l.max_compute_workgroup_storage_size {
            return Err(Error::Limit(format!(
                "{self:?} needs {bytes} bytes of workgroup memory; max_compute_workgroup_storage_size = {}",
                l.max_compute_workgroup_storage_size
            )));
        }
        Ok(())
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

/// Prepares `Y = epilogue(W X)` with the tiling [`Tiling::auto`] picks.
pub fn prepare(ctx: &Context, w: &CsrWeights, x: &GpuMatrix, y: &GpuMatrix, epi: &Epilogue) -> Result<Dispatch> {
    prepare_with(ctx, w, x, y, epi, Tiling::auto(ctx, w, x.cols()))
}

/// Prepares `Y = epilogue(W X)` with a given tiling (for tests and tuning).
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
    if let Tiling::Panel { .. } = tiling {
        return prepare_panel(ctx, w, x, y, epi, tiling, n4);
    }
    if let Tiling::Rowwise { .. } = tiling {
        return prepare_rowwise(ctx, w, x, y, epi, tiling, n4);
    }
    let bias = epi.bias_buffer(ctx, w.rows())?;
    let rows = w.rows() as u32;
    let [has_bias, act] = epi.constants();
    let mut constants = vec![has_bias, act];
    let (kernel, row_tiles, col_tiles) = match tiling {
        Tiling::Tiled {
            col_threads,
            row_threads,
            rows_per_thread,
            k_chunk,
        } => {
            constants.extend([
                ("CT", col_threads),
                ("RT", row_threads),
                ("RM", rows_per_thread),
                ("KT", k_chunk),
            ]);
            (
                Kernel::SpmmCsrTiled,
                rows.div_ceil(row_threads * rows_per_thread),
                n4.div_ceil(col_threads),
            )
        }
        Tiling::Rows {
            col_threads,
            split,
            rows: rpw,
        } => {
            constants.extend([("R_CT", col_threads), ("R_KS", split), ("R_RPW", rpw)]);
            (Kernel::SpmmCsrRows, rows.div_ceil(rpw), n4.div_ceil(col_threads))
        }
        Tiling::Panel { .. } | Tiling::Rowwise { .. } => unreachable!("handled by prepare_panel/prepare_rowwise"),
    };
    let tiles = row_tiles
        .checked_mul(col_tiles)
        .ok_or_else(|| Error::Limit(format!("{row_tiles} x {col_tiles} workgroups do not fit a dispatch")))?;
    let params = CsrParams {
        m_rows: rows,
        k: w.cols() as u32,
        n4,
        row_tiles: row_tiles.max(1),
        tiles,
        _pad: [0; 3],
    };
    let u = ctx.uniform(&params, "spmm_csr params");
    let groups = ctx.fold_groups(tiles)?;
    let c = &w.csr;
    ctx.prepare(
        &PipelineKey::new(kernel, &constants),
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
        groups,
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PlanParams {
    m_rows: u32,
    nnz: u32,
    kt: u32,
    nch: u32,
    xw: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PanelParams {
    m_rows: u32,
    k: u32,
    n4: u32,
    row_tiles: u32,
    tiles: u32,
    nch: u32,
    _pad: [u32; 2],
}

/// The plan of [`Tiling::Panel`] (computed on the GPU now, once) and its dispatch.
fn prepare_panel(
    ctx: &Context,
    w: &CsrWeights,
    x: &GpuMatrix,
    y: &GpuMatrix,
    epi: &Epilogue,
    tiling: Tiling,
    n4: u32,
) -> Result<Dispatch> {
    let Tiling::Panel {
        col_threads,
        vec4s,
        row_threads,
        rows_per_thread,
        k_chunk,
        row_loops,
    } = tiling
    else {
        unreachable!("prepare_panel takes Tiling::Panel")
    };
    let rows = w.rows() as u32;
    let nch = (w.cols() as u32).div_ceil(k_chunk);
    let xw = col_threads * vec4s;
    let ptrs = w.rows() as u64 * (nch as u64 + 1);
    if u32::try_from(ptrs).is_err() {
        return Err(Error::Overflow(format!(
            "{ptrs} chunk pointers exceed u32 indexing; use a larger k_chunk"
        )));
    }
    let cp = GpuBuffer::new(ctx, 4 * ptrs, "csr panel chunk pointers")?;
    let wp = GpuBuffer::new(ctx, 8 * w.csr.nnz.max(1) as u64, "csr panel packed non-zeros")?;
    let c = &w.csr;
    let plan = ctx.uniform(
        &PlanParams {
            m_rows: rows,
            nnz: c.nnz as u32,
            kt: k_chunk,
            nch,
            xw,
            _pad: [0; 3],
        },
        "spmm_csr plan params",
    );
    let res = [
        &plan,
        c.row_ptr.raw(),
        c.col_idx.raw(),
        c.values.raw(),
        w.row_order.raw(),
        cp.raw(),
        wp.raw(),
    ];
    let d_ptr = ctx.prepare(
        &PipelineKey::new(Kernel::SpmmCsrPlanPtr, &[]),
        &res,
        ctx.fold_groups((ptrs as u32).div_ceil(256))?,
    )?;
    let d_pack = ctx.prepare(
        &PipelineKey::new(Kernel::SpmmCsrPlanPack, &[]),
        &res,
        ctx.fold_groups((c.nnz as u32).div_ceil(256))?,
    )?;
    ctx.submit(&[&d_ptr, &d_pack]);

    let bias = epi.bias_buffer(ctx, w.rows())?;
    let [has_bias, act] = epi.constants();
    let constants = [
        has_bias,
        act,
        ("CT", col_threads),
        ("TN4", vec4s),
        ("RT", row_threads),
        ("RM", rows_per_thread),
        ("KT", k_chunk),
        ("ROW_LOOPS", row_loops as u32),
    ];
    let row_tiles = rows.div_ceil(row_threads * rows_per_thread);
    let col_tiles = n4.div_ceil(xw);
    let tiles = row_tiles
        .checked_mul(col_tiles)
        .ok_or_else(|| Error::Limit(format!("{row_tiles} x {col_tiles} workgroups do not fit a dispatch")))?;
    let u = ctx.uniform(
        &PanelParams {
            m_rows: rows,
            k: w.cols() as u32,
            n4,
            row_tiles: row_tiles.max(1),
            tiles,
            nch,
            _pad: [0; 2],
        },
        "spmm_csr panel params",
    );
    ctx.prepare(
        &PipelineKey::new(Kernel::SpmmCsrPanel, &constants),
        &[
            &u,
            cp.raw(),
            wp.raw(),
            w.row_order.raw(),
            x.buf.raw(),
            y.buf.raw(),
            &bias,
        ],
        ctx.fold_groups(tiles)?,
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowwiseParams {
    m_rows: u32,
    n4: u32,
    row_tiles: u32,
    tiles: u32,
}

/// Packs the non-zeros as (col * n4, value bits) on the GPU (once, now).
fn pack_nonzeros(ctx: &Context, w: &CsrWeights, n4: u32) -> Result<GpuBuffer> {
    let c = &w.csr;
    let wp = GpuBuffer::new(ctx, 8 * c.nnz.max(1) as u64, "csr packed non-zeros")?;
    let cp = ctx.dummy_buffer();
    let plan = ctx.uniform(
        &PlanParams {
            m_rows: 0,
            nnz: c.nnz as u32,
            kt: u32::MAX,
            nch: 0,
            xw: n4,
            _pad: [0; 3],
        },
        "spmm_csr pack params",
    );
    let d = ctx.prepare(
        &PipelineKey::new(Kernel::SpmmCsrPlanPack, &[]),
        &[
            &plan,
            c.row_ptr.raw(),
            c.col_idx.raw(),
            c.values.raw(),
            w.row_order.raw(),
            &cp,
            wp.raw(),
        ],
        ctx.fold_groups((c.nnz as u32).div_ceil(256))?,
    )?;
    ctx.submit(&[&d]);
    Ok(wp)
}

fn prepare_rowwise(
    ctx: &Context,
    w: &CsrWeights,
    x: &GpuMatrix,
    y: &GpuMatrix,
    epi: &Epilogue,
    tiling: Tiling,
    n4: u32,
) -> Result<Dispatch> {
    let Tiling::Rowwise {
        col_threads,
        vec4s,
        split,
        row_threads,
        rows_per_thread,
        unroll,
    } = tiling
    else {
        unreachable!("prepare_rowwise takes Tiling::Rowwise")
    };
    let wp = pack_nonzeros(ctx, w, n4)?;
    let rows = w.rows() as u32;
    let bias = epi.bias_buffer(ctx, w.rows())?;
    let [has_bias, act] = epi.constants();
    let constants = [
        has_bias,
        act,
        ("CT", col_threads),
        ("TN4", vec4s),
        ("KS", split),
        ("RT", row_threads),
        ("RM", rows_per_thread),
        ("U", unroll),
    ];
    let row_tiles = rows.div_ceil(row_threads * rows_per_thread);
    let col_tiles = n4.div_ceil(col_threads * vec4s);
    let tiles = row_tiles
        .checked_mul(col_tiles)
        .ok_or_else(|| Error::Limit(format!("{row_tiles} x {col_tiles} workgroups do not fit a dispatch")))?;
    let u = ctx.uniform(
        &RowwiseParams {
            m_rows: rows,
            n4,
            row_tiles: row_tiles.max(1),
            tiles,
        },
        "spmm_csr rowwise params",
    );
    ctx.prepare(
        &PipelineKey::new(Kernel::SpmmCsrRowwise, &constants),
        &[
            &u,
            w.csr.row_ptr.raw(),
            wp.raw(),
            w.row_order.raw(),
            x.buf.raw(),
            y.buf.raw(),
            &bias,
        ],
        ctx.fold_groups(tiles)?,
    )
}

/// Prepares and submits `Y = epilogue(W X)` (auto tiling).
pub fn run(ctx: &Context, w: &CsrWeights, x: &GpuMatrix, y: &GpuMatrix, epi: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, epi)?;
    ctx.submit(&[&d]);
    Ok(())
}
