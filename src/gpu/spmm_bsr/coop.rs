//! Block-sparse SpMM `Y = act(W_bsr X + bias)` on cooperative matrices (tensor
//! cores) with f16 storage and f32 accumulation (`spmm_bsr_coop.wgsl`),
//! for square blocks of 16 or 32: one block of 16x16 is one 16x16x16 tile, one
//! of 32x32 is 2x2 tiles. W is a [`GpuBsrF16`], X and Y are [`GpuMatrixF16`].
//!
//! Native only, like [`crate::gpu::gemm::coop`] ([`coop_support`]): [`prepare`] falls
//! back to [`crate::gpu::spmm_bsr::f16`] where cooperative matrices are missing, for
//! other block shapes and for X of at most 16 columns; [`prepare_with`] is the
//! cooperative kernel itself and returns [`Error::Gpu`] without support.

use crate::error::{Error, Result};

use crate::gpu::gemm::check_product;
use crate::gpu::gemm::coop::{coop_support, CoopTile};
use crate::gpu::spmm_bsr::f16 as spmm_bsr_f16;
use crate::gpu::spmm_bsr::prepare_kernel;
use crate::gpu::{Context, Dispatch, Epilogue, GpuBsrF16, GpuMatrixF16};

/// Block sizes the cooperative SpMM takes (square blocks).
pub const COOP_BLOCKS: [usize; 2] = [16, 32];

/// Tiling of the cooperative SpMM: a workgroup owns one block row (`block`
/// rows) and `wn * tn * 16` columns; its `wm x wn` subgroups split the rows
/// (`block / 16 / wm` tiles each) and the columns (`tn` tiles each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BsrCoopTile {
    pub wm: u32,
    pub wn: u32,
    pub tn: u32,
    /// Blocks between a global load and its use (1 or 2).
    pub depth: u32,
    /// Workgroup buffers (1 or 2), as [`CoopTile::bufs`].
    pub bufs: u32,
}

impl BsrCoopTile {
    pub const fn new(wm: u32, wn: u32, tn: u32, depth: u32, bufs: u32) -> Self {
        BsrCoopTile {
            wm,
            wn,
            tn,
            depth,
            bufs,
        }
    }

    /// The tile [`prepare`] uses for `block` at `density` (stored blocks / all
    /// blocks): the fastest of the last H100 run (2026-11-25 21:02 UTC, 4096^3,
    /// 50-95% sparsity): 16: one buffer, 4 subgroups of 16x64 (256 columns) at
    /// every sparsity; 32: the same up to 80% sparsity, above it one buffer and
    /// 16 subgroups of 32x16 (3.57x the dense cooperative GEMM at 90%, against
    /// 3.39x).
    pub fn default_for(block: usize, density: f64) -> BsrCoopTile {
        if block == 32 && density < 0.2 {
            BsrCoopTile::new(1, 16, 1, 1, 1)
        } else {
            BsrCoopTile::new(1, 4, 4, 1, 1)
        }
    }

    /// The tilings the benchmark compares for `block` (tuning): those of the
    /// last H100 run, the earlier defaults first.
    pub fn candidates(block: usize) -> Vec<BsrCoopTile> {
        if block == 32 {
            vec![
                BsrCoopTile::new(1, 8, 2, 1, 2),
                BsrCoopTile::new(1, 8, 4, 1, 1),
                BsrCoopTile::new(1, 16, 1, 1, 1),
                BsrCoopTile::new(2, 8, 2, 1, 1),
                BsrCoopTile::new(2, 4, 2, 1, 2),
                BsrCoopTile::new(1, 4, 4, 1, 1),
                BsrCoopTile::new(2, 8, 1, 1, 2),
            ]
        } else {
            vec![
                BsrCoopTile::new(1, 2, 2, 1, 2),
                BsrCoopTile::new(1, 4, 2, 1, 2),
                BsrCoopTile::new(1, 8, 4, 1, 1),
                BsrCoopTile::new(1, 16, 2, 1, 1),
                BsrCoopTile::new(1, 8, 2, 1, 2),
                BsrCoopTile::new(1, 4, 4, 1, 1),
                BsrCoopTile::new(1, 2, 4, 1, 2),
            ]
        }
    }

    /// The dense tile this is for `block`, or an error for a block the
    /// tiling cannot cover.
    fn as_dense(&self, block: usize) -> Result<CoopTile> {
        let b = block as u32;
        if !COOP_BLOCKS.contains(&block) || self.wm == 0 || !b.is_multiple_of(16 * self.wm) {
            return Err(Error::Shape(format!(
                "the cooperative BSR SpMM takes square blocks of 16 or 32 split over whole 16-row tiles, \
                 not {block} over {} subgroups",
                self.wm
            )));
        }
        Ok(CoopTile::new(
            self.wm,
            self.wn,
            b / 16 / self.wm,
            self.tn,
            b,
            self.depth,
            self.bufs,
        ))
    }

    pub fn label(&self, block: usize) -> String {
        match self.as_dense(block) {
            Ok(t) => format!("{}x{} {}x{}sg d{} b{}", t.bm(), t.bn(), t.wm, t.wn, t.depth, t.bufs),
            Err(_) => format!(
                "wm{} wn{} tn{} d{} b{}",
                self.wm, self.wn, self.tn, self.depth, self.bufs
            ),
        }
    }

    /// The override constants for `block` and subgroups of `sg` lanes, or why
    /// the tile cannot be compiled.
    pub fn constants(
        &self,
        block: usize,
        sg: u32,
        max_wg_bytes: u32,
        ep: &Epilogue,
    ) -> Result<Vec<(&'static str, u32)>> {
        self.as_dense(block)?.constants_for(sg, max_wg_bytes, true, ep)
    }
}

/// Stored blocks over all blocks of `w`'s block grid.
pub fn block_density(w: &GpuBsrF16) -> f64 {
    let grid = w.rows.div_ceil(w.block_rows.max(1)) * w.cols.div_ceil(w.block_cols.max(1));
    w.nnz_blocks as f64 / grid.max(1) as f64
}

/// The tile [`prepare`] uses for `w`.
pub fn default_tile(w: &GpuBsrF16) -> BsrCoopTile {
    BsrCoopTile::default_for(w.block_rows, block_density(w))
}

/// True when [`prepare`] runs the cooperative kernel for `w` and an X of `n`
/// columns on `ctx`.
pub fn uses_coop(ctx: &Context, w: &GpuBsrF16, n: usize) -> bool {
    w.block_rows == w.block_cols
        && COOP_BLOCKS.contains(&w.block_rows)
        && n > 16
        && coop_support(ctx).is_ok_and(|sg| {
            default_tile(w)
                .as_dense(w.block_rows)
                .and_then(|t| t.constants_on(ctx, sg, true, &Epilogue::default()))
                .is_ok()
        })
}

/// Prepares `y = act(w x + bias)` on cooperative matrices with an explicit
/// tile; [`Error::Gpu`] where [`coop_support`] fails, [`Error::Shape`] for
/// blocks other than 16x16 and 32x32.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuBsrF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: BsrCoopTile,
) -> Result<Dispatch> {
    let sg = coop_support(ctx).map_err(|why| Error::Gpu(format!("the cooperative-matrix BSR SpMM: {why}")))?;
    check_product(w.rows, w.cols, x, y)?;
    if w.block_rows != w.block_cols {
        return Err(Error::Shape(format!(
            "the cooperative BSR SpMM takes square blocks, not {}x{}",
            w.block_rows, w.block_cols
        )));
    }
    let dense = tile.as_dense(w.block_rows)?;
    let c = dense.constants_on(ctx, sg, true, ep)?;
    let groups_x = (x.stride() as u32).div_ceil(dense.bn());
    prepare_kernel(ctx, &SPMM_BSR_COOP, w.buffers(), x, y, ep, &c, groups_x)
}

/// Prepares `y = act(w x + bias)` in f16 storage: the cooperative kernel where
/// [`uses_coop`], `spmm_bsr_f16` otherwise.
pub fn prepare(ctx: &Context, w: &GpuBsrF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<Dispatch> {
    if uses_coop(ctx, w, x.cols()) {
        prepare_with(ctx, w, x, y, ep, default_tile(w))
    } else {
        spmm_bsr_f16::prepare(ctx, w, x, y, ep)
    }
}

/// Computes `y = act(w x + bias)` (submitted; read `y` to wait).
pub fn run(ctx: &Context, w: &GpuBsrF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

/// Every candidate tile that fits, for each block size, subgroup size and epilogue.
fn bsr_coop_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for block in COOP_BLOCKS {
        for sg in SUBGROUP_SIZES {
            for tile in BsrCoopTile::candidates(block) {
                if let Ok(c) = tile.constants(block, sg, TEST_WG_BYTES, &Epilogue::default()) {
                    v.extend(across_epilogues(c));
                }
            }
        }
    }
    v
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::gemm::coop::{SUBGROUP_SIZES, TEST_WG_BYTES};
use crate::gpu::{across_epilogues, Constants, KernelDef, Needs, WgslSource, RO, RW, UNIFORM};

// `spmm_bsr_coop.wgsl` (the block loads) with the cooperative core it imports.
const SPMM_BSR_COOP_WGSL: &str = include_str!("spmm_bsr_coop.wgsl");
crate::gpu::wgsl::generated!(spmm_bsr_coop_source, SPMM_BSR_COOP_WGSL, &[]);
pub static SPMM_BSR_COOP: KernelDef = KernelDef::new(
    "spmm_bsr_coop",
    WgslSource::Generated(spmm_bsr_coop_source),
    &[UNIFORM, RO, RO, RO, RO, RO, RW, RO],
)
.entry("coop_product")
.needs(Needs::COOP)
.specialised(bsr_coop_specialisations);
pub const KERNELS: &[&KernelDef] = &[&SPMM_BSR_COOP];
