//! N:M SpMM (`spmm_nm.wgsl`): `Y = epilogue(W X)` with W in N:M along K
//! ([`GpuNm`]) and X, Y dense ([`GpuMatrix`]).
//!
//! Three kernels share the bindings; [`Tiling::auto`] picks one from the shape
//! (the fastest measured on an H100, see the shader header):
//! - [`Tiling::Switch`] (large products, n <= 2, m <= 4: 2:4, 1:4, 1:2):
//!   X values in registers, each reused by several rows, chosen by a branch on
//!   the group's pattern that is uniform across the 32 lanes sharing a row;
//! - [`Tiling::Tiled`] (other patterns and smaller products, N >= 32): X staged
//!   in workgroup memory per K chunk and gathered per slot, rows
//!   register-tiled;
//! - [`Tiling::Rows`] (N = 1..~28): several threads split each row's slots and
//!   read X directly.
//!
//! The shader header says what each workgroup and thread owns.

pub mod coop;
mod format;

pub use format::GpuNm;

use crate::error::{Error, Result};
use crate::sparse::Pattern;

use super::{Context, Dispatch, Epilogue, GpuMatrix, PipelineKey};

/// Most rows one thread of [`Tiling::Tiled`] owns (`MAX_RM` in the shader).
pub const MAX_ROWS_PER_THREAD: u32 = 8;

/// Workgroup memory [`Tiling::auto`] stays within, so the chosen tiles run on
/// WebGPU's default limit (16 KiB) as well as natively.
pub const PORTABLE_WORKGROUP_BYTES: u32 = 16 * 1024;

/// Below this many outputs (M x N) [`Tiling::auto`] treats a product as small.
const SMALL_OUTPUTS: u64 = 1 << 20;

/// How the product is split into workgroups and threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// A workgroup owns `row_threads * rows_per_thread` rows by
    /// `4 * col_threads` columns and walks K in chunks of `groups_per_chunk`
    /// groups of m; each thread owns `rows_per_thread` rows by one vec4 column.
    Tiled {
        col_threads: u32,
        row_threads: u32,
        rows_per_thread: u32,
        groups_per_chunk: u32,
    },
    /// A workgroup owns `rows` rows by `4 * col_threads` columns; each row has
    /// `col_threads * split` threads, `split` of them sharing out its slots.
    Rows { col_threads: u32, split: u32, rows: u32 },
    /// `spmm_nm_switch`: a workgroup owns `row_threads * rows_per_thread` rows
    /// by `4 * col_threads * vec4s` columns and walks K in chunks of
    /// `groups_per_chunk` groups; each thread owns `rows_per_thread` rows by
    /// `vec4s` vec4 columns, keeps the group's X rows in registers and picks
    /// them with one branch per (row, group) on the group's pattern. Needs
    /// n <= 2 and m <= 8; `col_threads` should be at least the subgroup size.
    Switch {
        col_threads: u32,
        vec4s: u32,
        row_threads: u32,
        rows_per_thread: u32,
        groups_per_chunk: u32,
    },
}

/// Most accumulators (rows x vec4 columns) of one [`Tiling::Switch`] thread.
pub const SWITCH_MAX_ACC: u32 = 16;

/// The pattern and sizes the kernels need, derived from a [`GpuNm`].
pub(crate) struct Shape {
    pub(crate) n: u32,
    pub(crate) m: u32,
    pub(crate) bits: u32,
    groups: u32,
    pub(crate) vpr: u32,
    pub(crate) wpr: u32,
}

pub(crate) fn shape(w: &GpuNm) -> Result<Shape> {
    Pattern::NM { n: w.n, m: w.m }.validate()?;
    let bits = usize::BITS - (w.m - 1).leading_zeros();
    let per_word = 32 / bits as usize;
    let groups = w.cols.div_ceil(w.m);
    let vpr = groups * w.n;
    let wpr = vpr.div_ceil(per_word);
    let values = w.rows as u64 * vpr as u64;
    let words = w.rows as u64 * wpr as u64;
    if w.values.bytes() < 4 * values || w.indices.bytes() < 4 * words {
        return Err(Error::InvalidFormat(format!(
            "N:M {}:{} {}x{} needs {values} values and {words} index words, the GPU buffers hold {} and {}",
            w.n,
            w.m,
            w.rows,
            w.cols,
            w.values.bytes() / 4,
            w.indices.bytes() / 4
        )));
    }
    let too_big = |v: u64| u32::try_from(v).is_err();
    if too_big(values) || too_big(words) || too_big(vpr as u64) || too_big(w.cols as u64) {
        return Err(Error::Overflow(format!(
            "N:M arrays of {values} values exceed u32 indexing"
        )));
    }
    Ok(Shape {
        n: w.n as u32,
        m: w.m as u32,
        bits,
        groups: groups as u32,
        vpr: vpr as u32,
        wpr: wpr as u32,
    })
}

fn next_pow2(v: u32) -> u32 {
    v.max(1).next_power_of_two()
}

/// Rows per thread for `rows` rows over `row_threads`: at most `max`, no more
/// than the rows need, and halved (not below `min`) while the grid would not
/// fill a big GPU (256 workgroups) so small products still spread out.
pub(crate) fn fit_rows(rows: u32, row_threads: u32, col_tiles: u32, min: u32, max: u32) -> u32 {
    let row_threads = row_threads.max(1);
    let mut rm = max.min(rows.div_ceil(row_threads)).max(1);
    while rm > min.max(1) && rows.div_ceil(row_threads * rm) * col_tiles < 256 {
        rm = rm.div_ceil(2);
    }
    // Even out the row tiles: the fewest rows per thread giving as many tiles.
    let tiles = rows.div_ceil(row_threads * rm).max(1);
    rows.div_ceil(tiles * row_threads).clamp(1, rm)
}

impl Tiling {
    /// A tiling suited to `w` times an X with `n_cols` columns on `ctx`'s device,
    /// within [`PORTABLE_WORKGROUP_BYTES`] of workgroup memory.
    pub fn auto(ctx: &Context, w: &GpuNm, n_cols: usize) -> Tiling {
        let n4 = (n_cols.div_ceil(4).max(1)).min(u32::MAX as usize) as u32;
        let (n, m) = (w.n.max(1) as u32, w.m.max(1) as u32);
        let rows = w.rows.min(u32::MAX as usize) as u32;
        let threads = 256u32.min(ctx.limits().max_compute_invocations_per_workgroup);
        if n4 < 8 {
            // Few columns: nothing to share across columns, so split each row.
            let col_threads = next_pow2(n4).min(threads);
            let slots = (w.cols.div_ceil(w.m.max(1)) * w.n).min(1 << 20) as u32;
            let split = (32 / col_threads).clamp(1, next_pow2(slots)).min(threads / col_threads);
            return Tiling::Rows {
                col_threads,
                split,
                rows: (threads / (col_threads * split)).max(1),
            };
        }
        if (rows as u64) * (n4 as u64) * 4 < SMALL_OUTPUTS {
            // Small products (EfficientNet-Lite0's 1x1 convolutions, measured
            // on an H100): over a narrow X (49, 196 columns) the row kernel
            // with 8 lanes x 4-way split; over a wide one (3136) the gather
            // with one row per thread, so that the grid fills the GPU.
            if n4 <= 64 {
                let col_threads = 8u32.min(threads);
                let split = 4u32.min(threads / col_threads).max(1);
                return Tiling::Rows {
                    col_threads,
                    split,
                    rows: (threads / (col_threads * split)).max(1),
                };
            }
            let col_threads = 16u32.min(threads);
            return Tiling::Tiled {
                col_threads,
                row_threads: (threads / col_threads).max(1),
                rows_per_thread: 1,
                groups_per_chunk: (32 / m).clamp(1, 4),
            };
        }
        // X in registers (one pattern branch per row and group) beats the
        // gather on big products with few patterns: H100, 4096^3, 2:4 4.85 ms
        // against 6.57, 1:4 3.66 against 3.76; not 2:8 (28 patterns, >= 10
        // ms against 3.58).
        if n <= 2 && m <= 4 && n4 >= 64 && rows >= 1024 && threads >= 256 {
            let (col_threads, vec4s, row_threads) = (32, 2, 8);
            let col_tiles = n4.div_ceil(col_threads * vec4s);
            return Tiling::Switch {
                col_threads,
                vec4s,
                row_threads,
                rows_per_thread: fit_rows(rows, row_threads, col_tiles, 4, 8),
                groups_per_chunk: 2,
            };
        }
        let col_threads = (if n4 >= 12 { 16 } else { 8 }).min(threads);
        let row_threads = (threads / col_threads).max(1);
        // Chunks of about 8 slots per row (at most 32 rows of X).
        let groups_per_chunk = (8 / n).clamp(1, (32 / m).max(1));
        let col_tiles = n4.div_ceil(col_threads);
        let mut rows_per_thread = fit_rows(rows, row_threads, col_tiles, 1, MAX_ROWS_PER_THREAD);
        let mut t = Tiling::Tiled {
            col_threads,
            row_threads,
            rows_per_thread,
            groups_per_chunk,
        };
        while t.workgroup_bytes(n, m) > PORTABLE_WORKGROUP_BYTES && rows_per_thread > 1 {
            rows_per_thread /= 2;
            t = Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            };
        }
        t
    }

    /// Tilings worth timing for `w` times an X with `n_cols` columns (tuning:
    /// `wgsparse bench --variants`); those the device cannot run are dropped.
    pub fn candidates(ctx: &Context, w: &GpuNm, n_cols: usize) -> Vec<Tiling> {
        let n4 = n_cols.div_ceil(4).max(1) as u32;
        let mut v = Vec::new();
        if n4 >= 8 {
            for (col_threads, vec4s, row_threads, rows_per_thread, groups_per_chunk) in
                [(32, 2, 8, 8, 2), (32, 2, 8, 4, 2), (32, 1, 8, 8, 2)]
            {
                v.push(Tiling::Switch {
                    col_threads,
                    vec4s,
                    row_threads,
                    rows_per_thread,
                    groups_per_chunk,
                });
            }
            for (col_threads, row_threads, rows_per_thread, groups_per_chunk) in [
                (16, 16, 8, 4),
                (32, 8, 8, 4),
                (32, 8, 8, 8),
                (16, 16, 4, 4),
                (32, 8, 4, 8),
                (16, 16, 2, 4),
                (16, 16, 1, 4),
                (8, 32, 2, 4),
                (16, 8, 2, 4),
            ] {
                v.push(Tiling::Tiled {
                    col_threads,
                    row_threads,
                    rows_per_thread,
                    groups_per_chunk,
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
            for (col_threads, row_threads, rows_per_thread, groups_per_chunk) in [(4, 64, 2, 4), (8, 32, 2, 4)] {
                v.push(Tiling::Tiled {
                    col_threads,
                    row_threads,
                    rows_per_thread,
                    groups_per_chunk,
                });
            }
        }
        if (8..256).contains(&n4) {
            for (col_threads, split, rows) in [(16, 2, 8), (8, 4, 8), (16, 1, 16)] {
                v.push(Tiling::Rows {
                    col_threads,
                    split,
                    rows,
                });
            }
        }
        if let Ok(s) = shape(w) {
            v.retain(|t| t.check(ctx, &s).is_ok());
        }
        v
    }

    /// A short name for tables.
    pub fn label(self) -> String {
        match self {
            Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            } => format!("tiled c{col_threads} r{row_threads}x{rows_per_thread} g{groups_per_chunk}"),
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => format!("rows c{col_threads} s{split} r{rows}"),
            Tiling::Switch {
                col_threads,
                vec4s,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            } => format!("switch c{col_threads}x{vec4s} r{row_threads}x{rows_per_thread} g{groups_per_chunk}"),
        }
    }

    fn threads(self) -> u64 {
        match self {
            Tiling::Switch {
                col_threads,
                row_threads,
                ..
            } => col_threads as u64 * row_threads as u64,
            Tiling::Tiled {
                col_threads,
                row_threads,
                ..
            } => col_threads as u64 * row_threads as u64,
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => col_threads as u64 * split as u64 * rows as u64,
        }
    }

    /// Bytes of workgroup memory the kernel declares for pattern `n:m`.
    pub fn workgroup_bytes(self, n: u32, m: u32) -> u32 {
        let b = match self {
            Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            } => {
                let xs = groups_per_chunk as u64 * m as u64 * col_threads as u64;
                let sc4 = (groups_per_chunk as u64 * n as u64).div_ceil(4);
                let ws = row_threads as u64 * rows_per_thread as u64 * sc4;
                16 * (xs + 2 * ws)
            }
            Tiling::Rows { .. } => 16 * self.threads(),
            Tiling::Switch {
                col_threads,
                vec4s,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            } => {
                let xs = groups_per_chunk as u64 * m as u64 * col_threads as u64 * vec4s as u64;
                let ws = row_threads as u64 * rows_per_thread as u64 * groups_per_chunk as u64;
                16 * (xs + ws)
            }
        };
        b.min(u32::MAX as u64) as u32
    }

    fn check(self, ctx: &Context, s: &Shape) -> Result<()> {
        let zero = match self {
            Tiling::Tiled {
                col_threads,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            } => {
                col_threads == 0
                    || row_threads == 0
                    || groups_per_chunk == 0
                    || !(1..=MAX_ROWS_PER_THREAD).contains(&rows_per_thread)
            }
            Tiling::Rows {
                col_threads,
                split,
                rows,
            } => col_threads == 0 || split == 0 || rows == 0,
            Tiling::Switch {
                col_threads,
                vec4s,
                row_threads,
                rows_per_thread,
                groups_per_chunk,
            } => {
                let staged = |len: u64| len.div_ceil(self.threads().max(1));
                let xs = groups_per_chunk as u64 * s.m as u64 * col_threads as u64 * vec4s as u64;
                let ws = row_threads as u64 * rows_per_thread as u64 * groups_per_chunk as u64;
                col_threads == 0
                    || vec4s == 0
                    || row_threads == 0
                    || rows_per_thread == 0
                    || groups_per_chunk == 0
                    || rows_per_thread as u64 * vec4s as u64 > SWITCH_MAX_ACC as u64
                    || s.m as u64 * vec4s as u64 > 32
                    || staged(xs) > 8
                    || staged(ws) > 4
            }
        };
        if zero {
            return Err(Error::Limit(format!(
                "{self:?}: every size must be >= 1 and rows_per_thread <= {MAX_ROWS_PER_THREAD}"
            )));
        }
        if matches!(self, Tiling::Switch { .. }) && (s.m > 8 || s.n > 2) {
            return Err(Error::Limit(format!(
                "{self:?} handles m <= 8 and n <= 2, not {}:{}",
                s.n, s.m
            )));
        }
        check_workgroup(ctx, &self, self.threads(), self.workgroup_bytes(s.n, s.m))
    }
}

/// `Err(Error::Limit)` where a 1-D workgroup of `threads` invocations using
/// `bytes` of workgroup memory does not fit the device (`what` names the
/// tiling in the message).
pub(crate) fn check_workgroup(ctx: &Context, what: &impl std::fmt::Debug, threads: u64, bytes: u32) -> Result<()> {
    let l = ctx.limits();
    if threads > l.max_compute_invocations_per_workgroup as u64 || threads > l.max_compute_workgroup_size_x as u64 {
        return Err(Error::Limit(format!(
            "{what:?} has {threads} threads per workgroup; the device allows {} (x: {})",
            l.max_compute_invocations_per_workgroup, l.max_compute_workgroup_size_x
        )));
    }
    if bytes > l.max_compute_workgroup_storage_size {
        return Err(Error::Limit(format!(
            "{what:?} needs {bytes} bytes of workgroup memory; max_compute_workgroup_storage_size = {}",
            l.max_compute_workgroup_storage_size
        )));
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NmParams {
    m_rows: u32,
    k: u32,
    n4: u32,
    vpr: u32,
    wpr: u32,
    row_tiles: u32,
    tiles: u32,
    chunks: u32,
}

/// Checks that `W (rows x cols) * X = Y` fits together.
pub(crate) fn check_product(w_rows: usize, w_cols: usize, x: &GpuMatrix, y: &GpuMatrix) -> Result<u32> {
    if w_cols != x.rows() {
        return Err(Error::Shape(format!(
            "W is {w_rows}x{w_cols} but X is {}x{}: K must match",
            x.rows(),
            x.cols()
        )));
    }
    if y.rows() != w_rows || y.cols() != x.cols() || y.stride() != x.stride() {
        return Err(Error::Shape(format!(
            "Y must be {w_rows}x{} (W rows x X columns), got {}x{}",
            x.cols(),
            y.rows(),
            y.cols()
        )));
    }
    let n4 = x.stride() / 4;
    for (what, elems) in [("X", x.rows() * n4), ("Y", y.rows() * n4)] {
        if u32::try_from(elems).is_err() {
            return Err(Error::Overflow(format!(
                "{what} has {elems} vec4s, beyond u32 indexing"
            )));
        }
    }
    u32::try_from(w_rows).map_err(|_| Error::Overflow(format!("{w_rows} rows exceed u32 indexing")))?;
    Ok(n4 as u32)
}

/// Prepares `Y = epilogue(W X)` with the tiling [`Tiling::auto`] picks.
pub fn prepare(ctx: &Context, w: &GpuNm, x: &GpuMatrix, y: &GpuMatrix, epi: &Epilogue) -> Result<Dispatch> {
    prepare_with(ctx, w, x, y, epi, Tiling::auto(ctx, w, x.cols()))
}

/// Prepares `Y = epilogue(W X)` with a given tiling (for tests and tuning).
pub fn prepare_with(
    ctx: &Context,
    w: &GpuNm,
    x: &GpuMatrix,
    y: &GpuMatrix,
    epi: &Epilogue,
    tiling: Tiling,
) -> Result<Dispatch> {
    let n4 = check_product(w.rows, w.cols, x, y)?;
    let s = shape(w)?;
    tiling.check(ctx, &s)?;
    let bias = epi.bias_buffer(ctx, w.rows)?;
    let rows = w.rows as u32;
    let [has_bias, act] = epi.constants();
    let mut constants = vec![("N_KEEP", s.n), ("M_GROUP", s.m), ("BITS", s.bits), has_bias, act];
    let (kernel, row_tiles, col_tiles, chunks) = match tiling {
        Tiling::Tiled {
            col_threads,
            row_threads,
            rows_per_thread,
            groups_per_chunk,
        } => {
            constants.extend([
                ("GPC", groups_per_chunk),
                ("CT", col_threads),
                ("RT", row_threads),
                ("RM", rows_per_thread),
            ]);
            (
                &SPMM_NM_TILED,
                rows.div_ceil(row_threads * rows_per_thread),
                n4.div_ceil(col_threads),
                s.groups.div_ceil(groups_per_chunk),
            )
        }
        Tiling::Rows {
            col_threads,
            split,
            rows: rpw,
        } => {
            constants.extend([("R_CT", col_threads), ("R_KS", split), ("R_RPW", rpw)]);
            (&SPMM_NM_ROWS, rows.div_ceil(rpw), n4.div_ceil(col_threads), 0)
        }
        Tiling::Switch {
            col_threads,
            vec4s,
            row_threads,
            rows_per_thread,
            groups_per_chunk,
        } => {
            constants.extend([
                ("S_CT", col_threads),
                ("S_TN4", vec4s),
                ("S_RT", row_threads),
                ("S_RM", rows_per_thread),
                ("S_GPC", groups_per_chunk),
            ]);
            (
                &SPMM_NM_SWITCH,
                rows.div_ceil(row_threads * rows_per_thread),
                n4.div_ceil(col_threads * vec4s),
                0,
            )
        }
    };
    let tiles = row_tiles
        .checked_mul(col_tiles)
        .ok_or_else(|| Error::Limit(format!("{row_tiles} x {col_tiles} workgroups do not fit a dispatch")))?;
    let params = NmParams {
        m_rows: rows,
        k: w.cols as u32,
        n4,
        vpr: s.vpr,
        wpr: s.wpr,
        row_tiles: row_tiles.max(1),
        tiles,
        chunks,
    };
    let u = ctx.uniform(&params, "spmm_nm params");
    let groups = ctx.fold_groups(tiles)?;
    ctx.prepare(
        &PipelineKey::new(kernel, &constants),
        &[&u, w.values.raw(), w.indices.raw(), x.buf.raw(), y.buf.raw(), &bias],
        groups,
    )
}

/// Prepares and submits `Y = epilogue(W X)` (auto tiling).
pub fn run(ctx: &Context, w: &GpuNm, x: &GpuMatrix, y: &GpuMatrix, epi: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, epi)?;
    ctx.submit(&[&d]);
    Ok(())
}

/// The pattern constants of every kernel here, for N:M patterns the crate
/// prunes to (1:2, 2:4, 4:8, 1:4, 2:8), each with every epilogue; the tiling
/// constants keep their WGSL defaults (they only size loops and arrays).
fn nm_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for (n, m) in [(1u32, 2u32), (2, 4), (4, 8), (1, 4), (2, 8)] {
        let bits = u32::BITS - (m - 1).leading_zeros();
        v.extend(across_epilogues(vec![("N_KEEP", n), ("M_GROUP", m), ("BITS", bits)]));
    }
    v
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{across_epilogues, Constants, KernelDef, WgslSource, RO, RW, UNIFORM};

const SPMM_NM_WGSL: &str = include_str!("spmm_nm.wgsl");
crate::gpu::wgsl::generated!(spmm_nm_source, SPMM_NM_WGSL, &[]);
pub static SPMM_NM_TILED: KernelDef = KernelDef::new(
    "spmm_nm_tiled",
    WgslSource::Generated(spmm_nm_source),
    &[UNIFORM, RO, RO, RO, RW, RO],
)
.specialised(nm_specialisations);
pub static SPMM_NM_ROWS: KernelDef = KernelDef::new(
    "spmm_nm_rows",
    WgslSource::Generated(spmm_nm_source),
    &[UNIFORM, RO, RO, RO, RW, RO],
)
.specialised(nm_specialisations);
pub static SPMM_NM_SWITCH: KernelDef = KernelDef::new(
    "spmm_nm_switch",
    WgslSource::Generated(spmm_nm_source),
    &[UNIFORM, RO, RO, RO, RW, RO],
)
.specialised(nm_specialisations);
pub const KERNELS: &[&KernelDef] = &[&SPMM_NM_TILED, &SPMM_NM_ROWS, &SPMM_NM_SWITCH];
