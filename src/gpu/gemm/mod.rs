//! Dense GEMM `Y = act(W X + bias)` (`gemm.wgsl`): the baseline every
//! sparse kernel must beat, and the fallback the runtime picks when sparse is
//! not faster.

pub mod coop;
pub mod f16;

use crate::error::{Error, Result};

use super::{Context, Dispatch, Epilogue, GpuMatrix, GpuMatrixF16, GpuTensor, KernelDef, PipelineKey};

/// A tile shape of the GEMM kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
}

impl GemmTile {
    /// 128x128 tiles, 8x8 outputs per thread, K steps of 8: discrete GPUs on
    /// large shapes (H100, 4096^3: 3.44 ms against 3.79 ms with K steps of 16,
    /// f16 storage 3.66 against 4.16).
    pub const LARGE: GemmTile = GemmTile {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    };
    /// 64x64 tiles, 4x4 per thread: mid-size shapes, CPU adapters.
    pub const MEDIUM: GemmTile = GemmTile {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    };
    /// 64x16 tiles for narrow X (few columns, e.g. late 7x7 layers, the classifier).
    pub const NARROW: GemmTile = GemmTile {
        bm: 64,
        bn: 16,
        bk: 16,
        tm: 4,
        tn: 4,
    };
    /// 128x64 tiles, 8x4 per thread.
    pub const WIDE_M: GemmTile = GemmTile {
        bm: 128,
        bn: 64,
        bk: 16,
        tm: 8,
        tn: 4,
    };

    pub const ALL: [GemmTile; 4] = [Self::LARGE, Self::WIDE_M, Self::MEDIUM, Self::NARROW];

    /// Further valid tiles, measured by `wgsparse bench --gemm-tiles`.
    pub const EXPERIMENTAL: [GemmTile; 4] = [
        GemmTile {
            bm: 128,
            bn: 128,
            bk: 16,
            tm: 8,
            tn: 8,
        },
        GemmTile {
            bm: 128,
            bn: 128,
            bk: 32,
            tm: 8,
            tn: 8,
        },
        GemmTile {
            bm: 64,
            bn: 128,
            bk: 16,
            tm: 4,
            tn: 8,
        },
        GemmTile {
            bm: 64,
            bn: 64,
            bk: 32,
            tm: 4,
            tn: 4,
        },
    ];

    fn threads(self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// The override constants of `gemm.wgsl` (and `gemm_f16.wgsl`) for this tile.
    pub(crate) fn constants(self, ep: &Epilogue) -> Vec<(&'static str, u32)> {
        let mut c = vec![
            ("BM", self.bm),
            ("BN", self.bn),
            ("BK", self.bk),
            ("TM", self.tm),
            ("TN", self.tn),
            ("WG_X", self.bn / self.tn),
            ("WG_Y", self.bm / self.tm),
            ("WS_LEN", self.bk * self.bm / 4),
            ("XS_LEN", self.bk * self.bn / 4),
        ];
        c.extend(ep.constants());
        c
    }

    /// Checks the shape rules of the shader (and the device's limits).
    pub fn validate(self, ctx: &Context) -> Result<()> {
        let ok = self.tm.is_multiple_of(4)
            && self.tn.is_multiple_of(4)
            && self.tm <= 8
            && self.tn <= 8
            && self.bk.is_multiple_of(4)
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && (self.bm * self.bk / 4).is_multiple_of(self.threads())
            && (self.bk * self.bn / 4).is_multiple_of(self.threads())
            && (self.bm * self.bk / 4) / self.threads() <= 8
            && (self.bk * self.bn / 4) / self.threads() <= 8;
        if !ok {
            return Err(Error::Shape(format!("unsupported GEMM tile {self:?}")));
        }
        let l = ctx.limits();
        let smem = 4 * self.bk * (self.bm + self.bn);
        if self.threads() > l.max_compute_invocations_per_workgroup || smem > l.max_compute_workgroup_storage_size {
            return Err(Error::Limit(format!(
                "GEMM tile {self:?} needs {} invocations and {smem} bytes of workgroup memory; the device allows {} and {}",
                self.threads(),
                l.max_compute_invocations_per_workgroup,
                l.max_compute_workgroup_storage_size
            )));
        }
        Ok(())
    }

    /// The tile for an `m x n` output on this adapter: the largest tile that
    /// still gives the GPU enough workgroups to fill it, and fits its limits.
    pub fn choose(ctx: &Context, m: usize, n: usize) -> GemmTile {
        let want_groups = if ctx.is_cpu() { 4 } else { 256 };
        let candidates: &[GemmTile] = if ctx.is_cpu() {
            &[Self::MEDIUM, Self::NARROW]
        } else {
            &Self::ALL
        };
        let mut best = Self::NARROW;
        for &t in candidates {
            if t.validate(ctx).is_err() {
                continue;
            }
            if n <= 16 && t.bn > 16 {
                continue;
            }
            let groups = m.div_ceil(t.bm as usize) * n.div_ceil(t.bn as usize);
            if groups >= want_groups {
                return t;
            }
            best = t;
        }
        best
    }
}

/// The uniform of the dense kernels (`gemm.wgsl` for every storage type,
/// `gemm_coop.wgsl`): strides in vec4s of the storage type.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    m: u32,
    k: u32,
    w_stride4: u32,
    x_stride4: u32,
}

pub(crate) fn params<S: GpuTensor>(w: &S, x: &S) -> Params {
    Params {
        m: w.rows() as u32,
        k: w.cols() as u32,
        w_stride4: (w.stride() / 4) as u32,
        x_stride4: (x.stride() / 4) as u32,
    }
}

/// `W (w_rows x w_cols) * X` fits `Y`, for any storage type.
pub(crate) fn check_product<X: GpuTensor>(w_rows: usize, w_cols: usize, x: &X, y: &X) -> Result<()> {
    if w_cols != x.rows() || y.rows() != w_rows || y.cols() != x.cols() {
        return Err(Error::Shape(format!(
            "W {w_rows}x{w_cols} * X {}x{} does not fit Y {}x{}",
            x.rows(),
            x.cols(),
            y.rows(),
            y.cols()
        )));
    }
    Ok(())
}

/// A storage type of the `gemm.wgsl` family: its kernels (the file expanded
/// with `T` = the type) and what the adapter must offer for it.
pub(crate) trait GemmStorage: GpuTensor + Sized {
    const TILED: &'static KernelDef;
    const REDUCE: &'static KernelDef;
    const SKINNY: &'static KernelDef;
    /// `Err` where the adapter cannot run `what` in this storage type.
    fn require(ctx: &Context, what: &str) -> Result<()>;
}

impl GemmStorage for GpuMatrix {
    const TILED: &'static KernelDef = &GEMM;
    const REDUCE: &'static KernelDef = &GEMM_REDUCE;
    const SKINNY: &'static KernelDef = &GEMM_SKINNY;
    fn require(_: &Context, _: &str) -> Result<()> {
        Ok(())
    }
}

impl GemmStorage for GpuMatrixF16 {
    const TILED: &'static KernelDef = &f16::GEMM_F16;
    const REDUCE: &'static KernelDef = &f16::GEMM_F16_REDUCE;
    const SKINNY: &'static KernelDef = &f16::GEMM_SKINNY_F16;
    fn require(ctx: &Context, what: &str) -> Result<()> {
        ctx.require_f16(&format!("the f16 {what}"))
    }
}

/// [`prepare_with`] in any storage type (tiles are staged as f32, so the f32
/// kernel's rules and limits apply to all).
pub(crate) fn tiled<S: GemmStorage>(
    ctx: &Context,
    w: &S,
    x: &S,
    y: &S,
    ep: &Epilogue,
    tile: GemmTile,
) -> Result<Dispatch> {
    S::require(ctx, "GEMM")?;
    check_product(w.rows(), w.cols(), x, y)?;
    tile.validate(ctx)?;
    let u = ctx.uniform(&params(w, x), &format!("{} params", S::TILED.name));
    let bias = ep.bias_buffer(ctx, w.rows())?;
    let groups = [
        (x.stride() as u32).div_ceil(tile.bn),
        (w.rows() as u32).div_ceil(tile.bm).max(1),
        1,
    ];
    let key = PipelineKey::new(S::TILED, &tile.constants(ep));
    let no_partials = ctx.dummy_rw_buffer();
    ctx.prepare(
        &key,
        &[
            &u,
            w.buffer().raw(),
            x.buffer().raw(),
            y.buffer().raw(),
            &bias,
            &no_partials,
        ],
        groups,
    )
}

/// Prepares `y = act(w x + bias)` with an explicit tile.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuMatrix,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
    tile: GemmTile,
) -> Result<Dispatch> {
    tiled(ctx, w, x, y, ep, tile)
}

/// Most K splits [`prepare_split`] takes.
pub const MAX_SPLIT: u32 = 16;

/// The K split for `W[M, K] X[K, N]` with `tile`: enough workgroups for a
/// large GPU (about 128) while every split keeps at least 4 K stages; 1 (no
/// split) where the tile grid is already large or K short. The H100 runs of
/// EfficientNet-Lite0 (f16, 2026-11-26) measured the split faster on every
/// 1x1 layer where this is above 1 (192x1152x49: 13 us against 48 us).
pub fn choose_split(m: usize, k: usize, n: usize, tile: GemmTile) -> u32 {
    let groups = (m.div_ceil(tile.bm as usize) * n.div_ceil(tile.bn as usize)).max(1);
    let stages = k.div_ceil(tile.bk as usize);
    let by_groups = 128usize.div_ceil(groups);
    let by_stages = stages / 4;
    by_groups.min(by_stages).clamp(1, MAX_SPLIT as usize) as u32
}

/// The dispatches of a split-K product (both storage types): `main` with the
/// constants `c` plus SPLIT over a `[.., .., split]` grid writing f32 partials
/// into a scratch buffer allocated here, then `reduce` (SPLIT and the
/// epilogue) summing them into `y`. `bufs` are uniform, w, x, y, bias.
#[allow(clippy::too_many_arguments)]
pub(crate) fn split_dispatches(
    ctx: &Context,
    (main, reduce): (&'static KernelDef, &'static KernelDef),
    bufs: [&wgpu::Buffer; 5],
    mut c: Vec<(&'static str, u32)>,
    ep: &Epilogue,
    (m, x_stride, bm, bn): (usize, usize, u32, u32),
    split: u32,
) -> Result<Vec<Dispatch>> {
    if split == 0 || split > MAX_SPLIT {
        return Err(Error::Invalid(format!("K split {split}: use 1 to {MAX_SPLIT}")));
    }
    let part_bytes = (split as u64)
        .checked_mul(m as u64)
        .and_then(|v| v.checked_mul(x_stride as u64))
        .and_then(|v| v.checked_mul(16))
        .ok_or_else(|| Error::Limit("split-K scratch size overflows".into()))?;
    let part = super::GpuBuffer::new(ctx, part_bytes.max(16), "split-K partials")?;
    let all = [bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], part.raw()];
    let groups = [
        (x_stride as u32 * 4).div_ceil(bn),
        (m as u32).div_ceil(bm).max(1),
        split,
    ];
    c.push(("SPLIT", split));
    let partials = ctx.prepare(&PipelineKey::new(main, &c), &all, groups)?;
    let mut rc = vec![("SPLIT", split)];
    rc.extend(ep.constants());
    let vec4s = (m * x_stride) as u32;
    let rgroups = ctx.fold_groups(vec4s.div_ceil(256).max(1))?;
    let reduce = ctx.prepare(&PipelineKey::new(reduce, &rc), &all, rgroups)?;
    Ok(vec![partials, reduce])
}

/// [`prepare_split`] in any storage type (the partial sums are f32 for all).
pub(crate) fn split<S: GemmStorage>(
    ctx: &Context,
    w: &S,
    x: &S,
    y: &S,
    ep: &Epilogue,
    tile: GemmTile,
    split: u32,
) -> Result<Vec<Dispatch>> {
    if split == 1 {
        return Ok(vec![tiled(ctx, w, x, y, ep, tile)?]);
    }
    S::require(ctx, "GEMM")?;
    check_product(w.rows(), w.cols(), x, y)?;
    tile.validate(ctx)?;
    let u = ctx.uniform(&params(w, x), &format!("{} split params", S::TILED.name));
    let bias = ep.bias_buffer(ctx, w.rows())?;
    split_dispatches(
        ctx,
        (S::TILED, S::REDUCE),
        [&u, w.buffer().raw(), x.buffer().raw(), y.buffer().raw(), &bias],
        tile.constants(ep),
        ep,
        (w.rows(), x.stride() / 4, tile.bm, tile.bn),
        split,
    )
}

/// Prepares `y = act(w x + bias)` with K split `split` ways: one dispatch
/// writes partial sums per split into a scratch buffer (`split * M * N`
/// floats, allocated here), a second sums them and applies the epilogue.
/// `split == 1` is [`prepare_with`].
pub fn prepare_split(
    ctx: &Context,
    w: &GpuMatrix,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
    tile: GemmTile,
    split: u32,
) -> Result<Vec<Dispatch>> {
    self::split(ctx, w, x, y, ep, tile, split)
}

/// The dispatches of `y = act(w x + bias)` for a model layer: [`prepare`], or
/// on GPUs (not CPU adapters, where more workgroups buy nothing) the K split
/// of [`choose_split`] where it is above 1.
pub fn prepare_layer(
    ctx: &Context,
    w: &GpuMatrix,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
) -> Result<Vec<Dispatch>> {
    if x.stride() > 16 && !ctx.is_cpu() {
        let tile = GemmTile::choose(ctx, w.rows(), x.cols());
        let split = choose_split(w.rows(), w.cols(), x.cols(), tile);
        if split > 1 {
            return prepare_split(ctx, w, x, y, ep, tile, split);
        }
    }
    Ok(vec![prepare(ctx, w, x, y, ep)?])
}

/// The override constants of the skinny kernels (both storage types).
pub(crate) fn skinny_constants(ep: &Epilogue) -> Vec<(&'static str, u32)> {
    let mut c = vec![
        ("SK_ROWS", SKINNY_ROWS),
        ("SK_THREADS", SKINNY_THREADS),
        ("RED_LEN", SKINNY_ROWS * SKINNY_THREADS),
    ];
    c.extend(ep.constants());
    c
}

/// Specialisations of the tiled GEMMs (both storage types): every tile, whole
/// K with every epilogue and split-K partials.
pub(crate) fn tiled_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for tile in GemmTile::ALL.into_iter().chain(GemmTile::EXPERIMENTAL) {
        let base = tile.constants(&Epilogue::default());
        v.extend(across_epilogues(base.clone()));
        let mut split = base;
        split.push(("SPLIT", MAX_SPLIT));
        v.push(split);
    }
    v
}

/// Specialisations of the split-K reductions (both storage types).
pub(crate) fn reduce_specialisations() -> Vec<Constants> {
    [2, MAX_SPLIT]
        .into_iter()
        .flat_map(|s| across_epilogues(vec![("SPLIT", s)]))
        .collect()
}

/// Specialisations of the skinny kernels (both storage types).
pub(crate) fn skinny_specialisations() -> Vec<Constants> {
    across_epilogues(skinny_constants(&Epilogue::default()))
}

/// Rows per workgroup and threads of the skinny kernel.
pub(crate) const SKINNY_ROWS: u32 = 4;
pub(crate) const SKINNY_THREADS: u32 = 64;

/// [`prepare_skinny`] in any storage type.
pub(crate) fn skinny<S: GemmStorage>(ctx: &Context, w: &S, x: &S, y: &S, ep: &Epilogue) -> Result<Dispatch> {
    S::require(ctx, "skinny GEMM")?;
    check_product(w.rows(), w.cols(), x, y)?;
    if x.stride() > 16 {
        return Err(Error::Shape(format!(
            "the skinny GEMM takes at most 16 columns, X has {}",
            x.cols()
        )));
    }
    let u = ctx.uniform(&params(w, x), &format!("{} params", S::SKINNY.name));
    let bias = ep.bias_buffer(ctx, w.rows())?;
    let c = skinny_constants(ep);
    let groups = ctx.fold_groups((w.rows() as u32).div_ceil(SKINNY_ROWS))?;
    let key = PipelineKey::new(S::SKINNY, &c);
    ctx.prepare(
        &key,
        &[&u, w.buffer().raw(), x.buffer().raw(), y.buffer().raw(), &bias],
        groups,
    )
}

/// [`prepare`] in any storage type: the skinny kernel for X of at most 16
/// columns, otherwise the tile [`GemmTile::choose`] picks.
pub(crate) fn choose_and_prepare<S: GemmStorage>(
    ctx: &Context,
    w: &S,
    x: &S,
    y: &S,
    ep: &Epilogue,
) -> Result<Dispatch> {
    if x.stride() <= 16 {
        return skinny(ctx, w, x, y, ep);
    }
    tiled(ctx, w, x, y, ep, GemmTile::choose(ctx, w.rows(), x.cols()))
}

/// Prepares `y = act(w x + bias)` for an X of at most 16 columns with the
/// skinny kernel (threads split K, reduction in workgroup memory).
pub fn prepare_skinny(ctx: &Context, w: &GpuMatrix, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<Dispatch> {
    skinny(ctx, w, x, y, ep)
}

/// Prepares `y = act(w x + bias)`: the skinny kernel for X of at most 16
/// columns, otherwise the tile [`GemmTile::choose`] picks.
pub fn prepare(ctx: &Context, w: &GpuMatrix, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<Dispatch> {
    choose_and_prepare(ctx, w, x, y, ep)
}

/// Computes `y = act(w x + bias)` (submitted; read `y` to wait for it).
pub fn run(ctx: &Context, w: &GpuMatrix, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{across_epilogues, Constants, WgslSource, RO, RW, UNIFORM};

/// The family's one source: `gemm`, `gemm_reduce` and `gemm_skinny` over a
/// storage type `T` (f32 here, f16 in [`f16`]).
pub(crate) const GEMM_WGSL: &str = include_str!("gemm.wgsl");
crate::gpu::wgsl::generated!(gemm_f32_source, GEMM_WGSL, &[]);
crate::gpu::wgsl::generated!(pub(crate) f16_source, GEMM_WGSL, &[("T", "f16")]);

pub static GEMM: KernelDef = KernelDef::new(
    "gemm",
    WgslSource::Generated(gemm_f32_source),
    &[UNIFORM, RO, RO, RW, RO, RW],
)
.specialised(tiled_specialisations);
pub static GEMM_REDUCE: KernelDef = KernelDef::new(
    "gemm_reduce",
    WgslSource::Generated(gemm_f32_source),
    &[UNIFORM, RO, RO, RW, RO, RW],
)
.specialised(reduce_specialisations);
pub static GEMM_SKINNY: KernelDef = KernelDef::new(
    "gemm_skinny",
    WgslSource::Generated(gemm_f32_source),
    &[UNIFORM, RO, RO, RW, RO],
)
.specialised(skinny_specialisations);
pub const KERNELS: &[&KernelDef] = &[&GEMM, &GEMM_REDUCE, &GEMM_SKINNY];
