//! N:M SpMM `Y = act(W_nm X + bias)` in f16 storage with f32 accumulation for
//! the half-density patterns 2:4 and 1:2, on cooperative matrices (tensor
//! cores, `spmm_nm_coop.wgsl`) or, as the fallback, on shader cores
//! (`spmm_nm_f16.wgsl`). W is a [`GpuNmF16`], X and Y are
//! [`GpuMatrixF16`], the bias stays f32 (the [`Epilogue`] of the other kernels).
//!
//! wgpu's cooperative matrices have no sparse MMA, and every row of a 2:4
//! matrix picks its own columns, so the rows of a 16-row tile share no rows of
//! X that could be gathered into dense K tiles. The cooperative kernel is
//! therefore the dense one ([`crate::gpu::gemm::coop`]) with W read compressed (20
//! bytes per row and 16 columns instead of 32) and expanded to dense f16 tiles
//! in workgroup memory; the MMAs are the dense kernel's. Measured on the H100
//! (BENCHMARKS.md, "2:4 on cooperative matrices"): 1.13x the dense
//! cooperative GEMM at 4096^3 and 8192^3, a loss on the small
//! EfficientNet-Lite0 shapes (where the dense one loses to shader cores too).
//!
//! [`prepare`] runs the cooperative kernel where [`coop_support`] holds, X has
//! more than 16 columns and the product is large ([`choose`]), the shader-core
//! kernel otherwise (browsers, lavapipe, small or skinny products); [`prepare_with`] is the cooperative kernel itself and
//! returns [`Error::Gpu`] without support.

use half::f16;

use crate::error::{checked_mul, Error, Result};
use crate::sparse::NmMatrix;

use crate::gpu::buffer::to_f16;
use crate::gpu::gemm::coop::{coop_support, CoopTile, COOP_MIN_MACS};
use crate::gpu::{Context, Dispatch, Epilogue, GpuBuffer, GpuMatrixF16, PipelineKey};

/// Columns of W per chunk of the format (one vec4<u32> of values, 16 mask bits).
pub const CHUNK: usize = 16;

/// True for the N:M patterns [`GpuNmF16`] holds: two kept of every column quad,
/// i.e. 2:4 and 1:2.
pub fn supports(n: usize, m: usize) -> bool {
    (n, m) == (2, 4) || (n, m) == (1, 2)
}

/// An N:M matrix (2:4 or 1:2) with f16 values on the GPU, in the layout of the
/// f16 N:M kernels: K in chunks of 16 columns (the last one zero-padded);
/// `values` holds 8 halves per row and chunk, the kept values in column order
/// (two per column quad), `masks` 16 bits per row and chunk (bit `c` = column
/// `c` of the chunk is kept), two chunks per u32 (the even one in the low
/// half), `ceil(chunks / 2)` words per row. Every quad of a chunk has exactly
/// two mask bits set.
#[derive(Clone, Debug)]
pub struct GpuNmF16 {
    pub rows: usize,
    pub cols: usize,
    pub n: usize,
    pub m: usize,
    pub values: GpuBuffer,
    pub masks: GpuBuffer,
}

/// Chunks of 16 columns per row.
fn chunks(cols: usize) -> usize {
    cols.div_ceil(CHUNK).max(1)
}

/// Mask words per row.
fn mask_words(cols: usize) -> usize {
    chunks(cols).div_ceil(2)
}

/// The f16 values and mask words of `w` in [`GpuNmF16`]'s layout, or an error
/// for patterns other than 2:4 and 1:2 (and for values beyond f16's range).
pub fn pack(w: &NmMatrix) -> Result<(Vec<f16>, Vec<u32>)> {
    let (n, m) = (w.n(), w.m());
    if !supports(n, m) {
        return Err(Error::Shape(format!(
            "the f16 N:M kernels take 2:4 and 1:2 (two kept values per column quad), not {n}:{m}"
        )));
    }
    let (rows, cols, groups) = (w.rows(), w.cols(), w.groups());
    let (cpr, mwpr) = (chunks(cols), mask_words(cols));
    let vals16 = to_f16(w.values(), "N:M values (f16)")?;
    let mut values = vec![f16::ZERO; checked_mul(checked_mul(rows, cpr, "N:M f16")?, 8, "N:M f16")?];
    let mut masks = vec![0u32; checked_mul(rows, mwpr, "N:M f16")?];
    let mut quads: Vec<Vec<(usize, f16)>> = vec![Vec::with_capacity(2); cpr * 4];
    for r in 0..rows {
        // Every slot (kept value or a zero filling its group) goes to the
        // column quad of its column.
        quads.iter_mut().for_each(Vec::clear);
        for g in 0..groups {
            for s in 0..n {
                let col = g * m + w.slot_index(r, g * n + s);
                quads[col / 4].push((col % 4, vals16[(r * groups + g) * n + s]));
            }
        }
        for (q, quad) in quads.iter_mut().enumerate() {
            // Quads past the last group (K padded to 16, or a 1:2 group short
            // of its quad) get zeros at free columns: two bits in every quad.
            for c in 0..4 {
                if quad.len() < 2 && !quad.iter().any(|&(qc, _)| qc == c) {
                    quad.push((c, f16::ZERO));
                }
            }
            quad.sort_unstable_by_key(|&(c, _)| c);
            let (ch, base) = (q / 4, 16 * (q / 4 % 2) + 4 * (q % 4));
            for (i, &(c, v)) in quad.iter().enumerate() {
                values[(r * cpr + ch) * 8 + 2 * (q % 4) + i] = v;
                masks[r * mwpr + ch / 2] |= 1 << (base + c);
            }
        }
    }
    Ok((values, masks))
}

impl GpuNmF16 {
    /// Uploads `w` (2:4 or 1:2) with its values rounded to f16.
    pub fn upload(ctx: &Context, w: &NmMatrix) -> Result<Self> {
        let (values, masks) = pack(w)?;
        Ok(GpuNmF16 {
            rows: w.rows(),
            cols: w.cols(),
            n: w.n(),
            m: w.m(),
            values: GpuBuffer::from_slice(ctx, &values, "nm values (f16)")?,
            masks: GpuBuffer::from_slice(ctx, &masks, "nm masks")?,
        })
    }

    /// Bytes of values and masks.
    pub fn bytes(&self) -> u64 {
        self.values.bytes() + self.masks.bytes()
    }
}

/// Largest number of W units (row x 16 columns) one thread stages per stage
/// (`LA` in the shader, the size of its register arrays).
const MAX_UNITS: u32 = 4;

/// Tiles the benchmark compares (tuning); the first is [`default_tile`]'s:
/// 128x256 outputs, 2x8 subgroups of 4x2 accumulators, K staged 32 at a time
/// through one workgroup buffer, the fastest on the H100 (2026-11-26 ~05:00
/// UTC: 0.627 ms at 4096^3 = 1.13x the dense cooperative GEMM's 0.707 in the
/// same run, 4.76 ms at 8192^3 = 1.13x its 5.39). With K by 32, half the
/// threads expand a W unit per stage, with K by 16 a quarter (0.82-0.94x
/// dense), the others waiting at the barrier. Tall tiles (256x128), which
/// load half the X and twice the compressed W, were 0.80-1.02x.
pub const CANDIDATES: [CoopTile; 10] = [
    CoopTile::new(2, 8, 4, 2, 32, 1, 1),
    CoopTile::new(4, 4, 2, 4, 32, 1, 1),
    CoopTile::DEFAULT,
    CoopTile::new(4, 4, 4, 2, 32, 1, 1),
    CoopTile::new(4, 4, 2, 4, 32, 2, 1),
    CoopTile::new(4, 4, 4, 2, 16, 1, 1),
    CoopTile::new(8, 2, 2, 4, 16, 1, 1),
    CoopTile::new(4, 4, 4, 2, 16, 2, 1),
    CoopTile::new(4, 4, 2, 4, 16, 1, 1),
    CoopTile::SMALLER,
];

/// The override constants of the cooperative kernel for `tile` and subgroups
/// of `sg` lanes, or why it cannot be compiled: the dense kernel's rules (the
/// staged W tile is as large as the dense one) with W loaded in units.
pub fn constants(tile: &CoopTile, sg: u32, max_wg_bytes: u32, ep: &Epilogue) -> Result<Vec<(&'static str, u32)>> {
    let mut c = tile.constants_for(sg, max_wg_bytes, true, ep)?;
    let nt = tile.wm * tile.wn * sg;
    let la = (tile.bm() * tile.bk / CHUNK as u32).div_ceil(nt);
    if la > MAX_UNITS {
        return Err(Error::Limit(format!(
            "cooperative N:M tile {}: {la} W units per thread exceed {MAX_UNITS}",
            tile.label()
        )));
    }
    for (k, v) in c.iter_mut() {
        if *k == "LA" {
            *v = la;
        }
    }
    Ok(c)
}

fn constants_on(ctx: &Context, tile: &CoopTile, sg: u32, ep: &Epilogue) -> Result<Vec<(&'static str, u32)>> {
    tile.constants_on(ctx, sg, true, ep)?;
    constants(tile, sg, ctx.limits().max_compute_workgroup_storage_size, ep)
}

/// The tile [`prepare`] uses on the cooperative kernel.
pub fn default_tile() -> CoopTile {
    CANDIDATES[0]
}

/// Which kernel [`prepare`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmF16Kernel {
    /// `spmm_nm_coop` with this tile.
    Coop(CoopTile),
    /// `spmm_nm_f16` (shader cores).
    Fallback,
}

/// The kernel [`prepare`] picks for `W[m, k] X[k, n]`: cooperative where
/// supported, X has more than 16 columns and the product has at least
/// [`COOP_MIN_MACS`] multiply-adds (as the dense kernel: on the H100 the
/// cooperative N:M kernel was 0.81-0.89x the dense cooperative GEMM on the
/// EfficientNet-Lite0 shapes, and `spmm_nm_f16` faster than it on three of
/// the four with N > 16), else the shader-core kernel.
pub fn choose(ctx: &Context, m: usize, k: usize, n: usize) -> NmF16Kernel {
    let Ok(sg) = coop_support(ctx) else {
        return NmF16Kernel::Fallback;
    };
    if n <= 16 || (m as u64) * (k as u64) * (n as u64) < COOP_MIN_MACS {
        return NmF16Kernel::Fallback;
    }
    [default_tile(), CoopTile::SMALLER]
        .into_iter()
        .find(|t| constants_on(ctx, t, sg, &Epilogue::default()).is_ok())
        .map_or(NmF16Kernel::Fallback, NmF16Kernel::Coop)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,
    cpr: u32,
    mwpr: u32,
    _pad: [u32; 3],
}

fn check_shapes(w: &GpuNmF16, x: &GpuMatrixF16, y: &GpuMatrixF16) -> Result<()> {
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
    if w.rows == 0 {
        return Err(Error::Shape("N:M matrix with no rows".into()));
    }
    Ok(())
}

fn params(ctx: &Context, w: &GpuNmF16, x: &GpuMatrixF16) -> wgpu::Buffer {
    let p = Params {
        m: w.rows as u32,
        k: w.cols as u32,
        x_stride4: (x.stride() / 4) as u32,
        cpr: chunks(w.cols) as u32,
        mwpr: mask_words(w.cols) as u32,
        _pad: [0; 3],
    };
    ctx.uniform(&p, "spmm_nm f16 params")
}

/// Prepares `y = act(w x + bias)` on cooperative matrices with an explicit
/// tile; [`Error::Gpu`] where [`coop_support`] fails.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuNmF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: CoopTile,
) -> Result<Dispatch> {
    let sg = coop_support(ctx).map_err(|why| Error::Gpu(format!("the cooperative-matrix N:M SpMM: {why}")))?;
    check_shapes(w, x, y)?;
    let c = constants_on(ctx, &tile, sg, ep)?;
    let u = params(ctx, w, x);
    let bias = ep.bias_buffer(ctx, w.rows)?;
    let groups = [
        (x.stride() as u32).div_ceil(tile.bn()),
        (w.rows as u32).div_ceil(tile.bm()),
        1,
    ];
    let key = PipelineKey::new(&SPMM_NM_COOP, &c);
    ctx.prepare(
        &key,
        &[&u, w.values.raw(), w.masks.raw(), x.buf.raw(), y.buf.raw(), &bias],
        groups,
    )
}

/// Workgroup of the shader-core kernel: 16 vec4 columns by 4 rows.
const FALLBACK_WG: (u32, u32) = (16, 4);

fn fallback_constants(ep: &Epilogue) -> Vec<(&'static str, u32)> {
    let mut c = vec![("WX", FALLBACK_WG.0), ("WY", FALLBACK_WG.1)];
    c.extend(ep.constants());
    c
}

/// Prepares `y = act(w x + bias)` on shader cores (`spmm_nm_f16`, portable:
/// needs shader-f16 only).
pub fn prepare_fallback(
    ctx: &Context,
    w: &GpuNmF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
) -> Result<Dispatch> {
    ctx.require_f16("the f16 N:M SpMM")?;
    check_shapes(w, x, y)?;
    let (wx, wy) = FALLBACK_WG;
    let c = fallback_constants(ep);
    let u = params(ctx, w, x);
    let bias = ep.bias_buffer(ctx, w.rows)?;
    let groups = [((x.stride() / 4) as u32).div_ceil(wx), (w.rows as u32).div_ceil(wy), 1];
    let key = PipelineKey::new(&SPMM_NM_F16, &c);
    ctx.prepare(
        &key,
        &[&u, w.values.raw(), w.masks.raw(), x.buf.raw(), y.buf.raw(), &bias],
        groups,
    )
}

/// Prepares `y = act(w x + bias)` with the kernel [`choose`] picks.
pub fn prepare(ctx: &Context, w: &GpuNmF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<Dispatch> {
    match choose(ctx, w.rows, w.cols, x.cols()) {
        NmF16Kernel::Coop(tile) => prepare_with(ctx, w, x, y, ep, tile),
        NmF16Kernel::Fallback => prepare_fallback(ctx, w, x, y, ep),
    }
}

/// Computes `y = act(w x + bias)` (submitted; read `y` to wait).
pub fn run(ctx: &Context, w: &GpuNmF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

/// Every candidate tile that fits, for each subgroup size and epilogue.
fn nm_coop_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for sg in SUBGROUP_SIZES {
        for tile in CANDIDATES {
            if let Ok(c) = constants(&tile, sg, TEST_WG_BYTES, &Epilogue::default()) {
                v.extend(across_epilogues(c));
            }
        }
    }
    v
}

fn nm_f16_specialisations() -> Vec<Constants> {
    across_epilogues(fallback_constants(&Epilogue::default()))
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::gemm::coop::{SUBGROUP_SIZES, TEST_WG_BYTES};
use crate::gpu::{across_epilogues, Constants, KernelDef, Needs, WgslSource, RO, RW, UNIFORM};

// The two f16 N:M kernels share their W format (`nm16_format.wgsl`); the
// cooperative one adds the loads that expand it to the cooperative core.
const SPMM_NM_COOP_WGSL: &str = include_str!("spmm_nm_coop.wgsl");
crate::gpu::wgsl::generated!(spmm_nm_coop_source, SPMM_NM_COOP_WGSL, &[]);
pub static SPMM_NM_COOP: KernelDef = KernelDef::new(
    "spmm_nm_coop",
    WgslSource::Generated(spmm_nm_coop_source),
    &[UNIFORM, RO, RO, RO, RW, RO],
)
.entry("coop_product")
.needs(Needs::COOP)
.specialised(nm_coop_specialisations);
const SPMM_NM_F16_WGSL: &str = include_str!("spmm_nm_f16.wgsl");
crate::gpu::wgsl::generated!(spmm_nm_f16_source, SPMM_NM_F16_WGSL, &[]);
pub static SPMM_NM_F16: KernelDef = KernelDef::new(
    "spmm_nm_f16",
    WgslSource::Generated(spmm_nm_f16_source),
    &[UNIFORM, RO, RO, RO, RW, RO],
)
.needs(Needs::F16)
.specialised(nm_f16_specialisations);
pub const KERNELS: &[&KernelDef] = &[&SPMM_NM_COOP, &SPMM_NM_F16];
