//! Dense GEMM `Y = act(W X + bias)` on cooperative matrices (tensor cores) with
//! f16 storage and f32 accumulation (`gemm_coop.wgsl`). W, X and Y are
//! [`GpuMatrixF16`], the bias stays f32 (the [`Epilogue`] of the other kernels).
//!
//! Native only: it needs wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX` with a
//! 16x16x16 f16 -> f32 configuration, shader-f16, subgroups and a fixed subgroup
//! size ([`coop_support`]). [`prepare`] falls back to [`crate::gpu::gemm::f16`]
//! wherever that is missing (browsers, lavapipe, ...) and for X of at most 16
//! columns; [`prepare_with`] is the cooperative kernel itself and returns
//! [`Error::Gpu`] without support.

use crate::error::{Error, Result};

use crate::gpu::gemm::f16 as gemm_f16;
use crate::gpu::gemm::{check_product, params};
use crate::gpu::{Context, Dispatch, Epilogue, GpuMatrixF16, PipelineKey};

/// Why the cooperative-matrix kernels cannot run on `ctx`, or the subgroup
/// size they are compiled for.
pub fn coop_support(ctx: &Context) -> std::result::Result<u32, String> {
    let f = ctx.features();
    let name = &ctx.info().name;
    if !f.coop_matrix {
        return Err(format!("'{name}' offers no cooperative matrices"));
    }
    if !f.shader_f16 || !f.subgroups {
        return Err(format!("'{name}' lacks shader-f16 or subgroups"));
    }
    let f16 = wgpu::CooperativeScalarType::F16;
    let f32 = wgpu::CooperativeScalarType::F32;
    if !ctx
        .coop_configs()
        .iter()
        .any(|c| (c.m, c.n, c.k, c.ab, c.cr) == (16, 16, 16, f16, f32))
    {
        return Err(format!("'{name}' has no 16x16x16 f16 -> f32 cooperative matrix"));
    }
    let (lo, hi) = (ctx.info().subgroup_min_size, ctx.info().subgroup_max_size);
    if lo != hi || lo == 0 {
        return Err(format!(
            "'{name}' has subgroups of {lo}..{hi} lanes; the cooperative kernels need a fixed size"
        ));
    }
    Ok(lo)
}

/// Workgroup tiling of the cooperative kernels: `wm x wn` subgroups, each with
/// `tm x tn` accumulator tiles of 16x16, K staged `bk` at a time, the global
/// loads of a stage issued `depth` (1 or 2) stages ahead. The workgroup owns
/// `bm() x bn()` outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopTile {
    pub wm: u32,
    pub wn: u32,
    pub tm: u32,
    pub tn: u32,
    pub bk: u32,
    pub depth: u32,
    /// Workgroup buffers: 2 (one barrier per stage) or 1 (two, but room for a
    /// stage twice as long).
    pub bufs: u32,
}

impl CoopTile {
    /// 128x256 outputs, 4x4 subgroups of 32x64 (8 accumulators each), K by 16,
    /// loads one stage ahead: the fastest tile of the H100 runs (194 TFLOP/s at
    /// 4096^3, 218 at 2048^3; 2026-11-25). Needs 512 invocations.
    pub const DEFAULT: CoopTile = CoopTile::new(4, 4, 2, 4, 16, 1, 2);
    /// The same outputs with 8 subgroups of 64x64, for devices that allow
    /// fewer than 512 invocations per workgroup (142 TFLOP/s at 4096^3).
    pub const SMALLER: CoopTile = CoopTile::new(2, 4, 4, 4, 16, 1, 2);
    /// The tilings the benchmark compares (tuning).
    pub const CANDIDATES: [CoopTile; 10] = [
        CoopTile::DEFAULT,
        CoopTile::new(4, 4, 2, 4, 32, 1, 1),
        CoopTile::new(4, 4, 2, 4, 32, 2, 1),
        CoopTile::new(2, 8, 4, 2, 32, 1, 1),
        CoopTile::new(4, 4, 2, 4, 16, 1, 1),
        CoopTile::SMALLER,
        CoopTile::new(2, 4, 4, 4, 32, 1, 1),
        CoopTile::new(2, 8, 4, 2, 16, 1, 2),
        CoopTile::new(4, 4, 2, 4, 16, 2, 1),
        CoopTile::new(4, 4, 2, 4, 16, 2, 2),
    ];

    pub const fn new(wm: u32, wn: u32, tm: u32, tn: u32, bk: u32, depth: u32, bufs: u32) -> Self {
        CoopTile {
            wm,
            wn,
            tm,
            tn,
            bk,
            depth,
            bufs,
        }
    }

    pub fn bm(&self) -> u32 {
        self.wm * self.tm * 16
    }
    pub fn bn(&self) -> u32 {
        self.wn * self.tn * 16
    }
    pub fn label(&self) -> String {
        format!(
            "{}x{}x{} {}x{}sg {}x{}acc d{} b{}",
            self.bm(),
            self.bn(),
            self.bk,
            self.wm,
            self.wn,
            self.tm,
            self.tn,
            self.depth,
            self.bufs
        )
    }

    /// The override constants for subgroups of `sg` lanes, or why the tile
    /// cannot be compiled (tile rules, `max_wg_bytes` of workgroup memory).
    /// With `ceil_a`, W loads per thread round up (BSR blocks smaller than
    /// the thread count).
    pub(crate) fn constants_for(
        &self,
        sg: u32,
        max_wg_bytes: u32,
        ceil_a: bool,
        ep: &Epilogue,
    ) -> Result<Vec<(&'static str, u32)>> {
        let CoopTile {
            wm,
            wn,
            tm,
            tn,
            bk,
            depth,
            bufs,
        } = *self;
        let bad = |why: &str| Err(Error::Limit(format!("cooperative tile {}: {why}", self.label())));
        if wm == 0 || wn == 0 || tm == 0 || tn == 0 || tm > 4 || tn > 4 || tm * tn > 16 {
            return bad("needs 1..4 accumulator tiles per side, at most 16");
        }
        if bk == 0 || !bk.is_multiple_of(16) {
            return bad("K stage must be a multiple of 16");
        }
        if depth != 1 && depth != 2 {
            return bad("loads are issued 1 or 2 stages ahead");
        }
        if bufs != 1 && bufs != 2 {
            return bad("stages go through 1 or 2 workgroup buffers");
        }
        let nt = wm * wn * sg;
        let (bm, bn) = (self.bm(), self.bn());
        // In vec4<f16>s (8 bytes), the unit of the loads and of workgroup memory.
        let (a4, b4) = (bm * bk / 4, bk * bn / 4);
        let la = if ceil_a {
            a4.div_ceil(nt)
        } else if a4.is_multiple_of(nt) {
            a4 / nt
        } else {
            return bad("W stage is not a whole number of vec4 loads per thread");
        };
        if !b4.is_multiple_of(nt) {
            return bad("X stage is not a whole number of vec4 loads per thread");
        }
        let lb = b4 / nt;
        if la == 0 || la > 16 || lb == 0 || lb > 16 {
            return bad("more than 16 (or no) vec4 loads per thread and stage");
        }
        // Staged rows padded by 8 halves (2 vec4s) against bank conflicts.
        let (sa, sb) = ((bk + 8) / 4, (bn + 8) / 4);
        let (a_len, b_len, c_len) = (bufs * bm * sa, bufs * bk * sb, wm * wn * 256);
        let bytes = 8 * a_len + 8 * b_len + 4 * c_len;
        if bytes > max_wg_bytes {
            return bad(&format!("{bytes} bytes of workgroup memory exceed {max_wg_bytes}"));
        }
        let mut c = vec![
            ("SG", sg),
            ("WM", wm),
            ("WN", wn),
            ("TM", tm),
            ("TN", tn),
            ("BK", bk),
            ("NT", nt),
            ("SA", sa),
            ("SB", sb),
            ("A_LEN", a_len),
            ("B_LEN", b_len),
            ("C_LEN", c_len),
            ("LA", la),
            ("LB", lb),
            ("DEPTH", depth),
            ("BUFS", bufs),
        ];
        c.extend(ep.constants());
        Ok(c)
    }

    /// [`CoopTile::constants_for`] for the dense kernel.
    pub fn constants(&self, sg: u32, max_wg_bytes: u32, ep: &Epilogue) -> Result<Vec<(&'static str, u32)>> {
        self.constants_for(sg, max_wg_bytes, false, ep)
    }

    /// Checks the tile against `ctx` and returns its constants.
    pub(crate) fn constants_on(
        &self,
        ctx: &Context,
        sg: u32,
        ceil_a: bool,
        ep: &Epilogue,
    ) -> Result<Vec<(&'static str, u32)>> {
        let l = ctx.limits();
        let nt = self.wm * self.wn * sg;
        if nt > l.max_compute_invocations_per_workgroup || nt > l.max_compute_workgroup_size_x {
            return Err(Error::Limit(format!(
                "cooperative tile {}: {nt} invocations exceed the device's workgroup size",
                self.label()
            )));
        }
        self.constants_for(sg, l.max_compute_workgroup_storage_size, ceil_a, ep)
    }
}

/// Which kernel [`prepare`] runs for `W[M, K] X[K, N]` on `ctx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseF16Kernel {
    /// `gemm_coop` with this tile.
    Coop(CoopTile),
    /// `gemm_f16` (its tile or skinny kernel).
    Fallback,
}

/// Products of fewer multiply-adds than this stay on `gemm_f16`: on the H100
/// the cooperative kernel lost to it on every EfficientNet-Lite0 1x1 shape
/// (7.5M-20M multiply-adds, 0.64-0.84x) and won from 2048^3 (8.6G) up.
pub const COOP_MIN_MACS: u64 = 1 << 29;

/// The kernel [`prepare`] picks: cooperative where supported, X has more than
/// 16 columns (narrower X is the skinny kernel's) and the product has at least
/// [`COOP_MIN_MACS`] multiply-adds; otherwise the fallback.
pub fn choose(ctx: &Context, m: usize, k: usize, n: usize) -> DenseF16Kernel {
    let Ok(sg) = coop_support(ctx) else {
        return DenseF16Kernel::Fallback;
    };
    if n <= 16 || (m as u64) * (k as u64) * (n as u64) < COOP_MIN_MACS {
        return DenseF16Kernel::Fallback;
    }
    [CoopTile::DEFAULT, CoopTile::SMALLER]
        .into_iter()
        .find(|t| t.constants_on(ctx, sg, false, &Epilogue::default()).is_ok())
        .map_or(DenseF16Kernel::Fallback, DenseF16Kernel::Coop)
}

/// Prepares `y = act(w x + bias)` on cooperative matrices with an explicit
/// tile; [`Error::Gpu`] where [`coop_support`] fails.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuMatrixF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
    tile: CoopTile,
) -> Result<Dispatch> {
    let sg = coop_support(ctx).map_err(|why| Error::Gpu(format!("the cooperative-matrix GEMM: {why}")))?;
    check_product(w.rows(), w.cols(), x, y)?;
    let c = tile.constants_on(ctx, sg, false, ep)?;
    let u = ctx.uniform(&params(w, x), "gemm_coop params");
    let bias = ep.bias_buffer(ctx, w.rows())?;
    let groups = [
        (x.stride() as u32).div_ceil(tile.bn()),
        (w.rows() as u32).div_ceil(tile.bm()).max(1),
        1,
    ];
    let key = PipelineKey::new(&GEMM_COOP, &c);
    ctx.prepare(&key, &[&u, w.buf.raw(), x.buf.raw(), y.buf.raw(), &bias], groups)
}

/// Prepares `y = act(w x + bias)` in f16 storage with the kernel [`choose`]
/// picks: tensor cores where the adapter has them, `gemm_f16` otherwise.
pub fn prepare(ctx: &Context, w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<Dispatch> {
    match choose(ctx, w.rows(), w.cols(), x.cols()) {
        DenseF16Kernel::Coop(tile) => prepare_with(ctx, w, x, y, ep, tile),
        DenseF16Kernel::Fallback => gemm_f16::prepare(ctx, w, x, y, ep),
    }
}

/// Computes `y = act(w x + bias)` (submitted; read `y` to wait).
pub fn run(ctx: &Context, w: &GpuMatrixF16, x: &GpuMatrixF16, y: &GpuMatrixF16, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

/// Subgroup sizes the cooperative kernels are built for (NVIDIA, AMD wave64).
pub(crate) const SUBGROUP_SIZES: [u32; 2] = [32, 64];
/// Workgroup memory the shader tests assume (the H100's Vulkan limit is larger).
pub(crate) const TEST_WG_BYTES: u32 = 48 * 1024;

/// Every candidate tile that fits, for each subgroup size and epilogue.
fn coop_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for sg in SUBGROUP_SIZES {
        for tile in CoopTile::CANDIDATES {
            if let Ok(c) = tile.constants(sg, TEST_WG_BYTES, &Epilogue::default()) {
                v.extend(across_epilogues(c));
            }
        }
    }
    v
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{across_epilogues, Constants, KernelDef, Needs, WgslSource, RO, RW, UNIFORM};

// `gemm_coop.wgsl` (the W loads) with the cooperative core it imports.
const GEMM_COOP_WGSL: &str = include_str!("gemm_coop.wgsl");
crate::gpu::wgsl::generated!(gemm_coop_source, GEMM_COOP_WGSL, &[]);
pub static GEMM_COOP: KernelDef = KernelDef::new(
    "gemm_coop",
    WgslSource::Generated(gemm_coop_source),
    &[UNIFORM, RO, RO, RW, RO],
)
.entry("coop_product")
.needs(Needs::COOP)
.specialised(coop_specialisations);
pub const KERNELS: &[&KernelDef] = &[&GEMM_COOP];
