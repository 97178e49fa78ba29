//! General 2-D convolution as an implicit GEMM (`conv_gemm.wgsl`): any
//! kernel size, stride, dilation and (asymmetric) padding, groups = 1, grouped
//! or depthwise, with the fused bias/activation epilogue. `Y = W * im2col(X)`
//! with the im2col matrix gathered inside the kernel, never materialised.
//!
//! Layouts (the graph runtime's feature-major activations): X is a
//! [`GpuMatrix`] `[Cin, N*H*W]`, Y `[Cout, N*OH*OW]`, W `[Cout, Cin/groups *
//! KH * KW]` (an ONNX/PyTorch weight `[Cout, Cin/groups, KH, KW]` flattened).
//!
//! Pruned weights run through [`prepare_csr`] (`conv_sparse.wgsl`): the same
//! addressing, one pass over each output channel's non-zeros; N:M weights
//! (2:4 along `Cin/groups*KH*KW`) through [`prepare_nm`] (`conv_sparse.wgsl`).

use crate::error::{Error, Result};

use super::{Context, Dispatch, Epilogue, GpuCsr, GpuMatrix, GpuNm, PipelineKey};

/// The geometry of one convolution (ONNX `Conv` semantics, NCHW).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    /// (along H, along W).
    pub stride: (usize, usize),
    /// (along H, along W).
    pub dilation: (usize, usize),
    /// Top, left, bottom, right (ONNX `pads` is `[top, left, bottom, right]`).
    pub pads: [usize; 4],
    pub groups: usize,
}

impl ConvGeometry {
    /// Checks the geometry and returns the output height and width.
    pub fn output_hw(&self) -> Result<(usize, usize)> {
        let bad = |what: String| Err(Error::Shape(format!("convolution {self:?}: {what}")));
        if self.batch == 0 || self.cin == 0 || self.h == 0 || self.w == 0 || self.cout == 0 {
            return bad("a zero dimension".into());
        }
        if self.kh == 0 || self.kw == 0 {
            return bad("a zero kernel size".into());
        }
        if self.stride.0 == 0 || self.stride.1 == 0 || self.dilation.0 == 0 || self.dilation.1 == 0 {
            return bad("stride and dilation must be at least 1".into());
        }
        if self.groups == 0 || !self.cin.is_multiple_of(self.groups) || !self.cout.is_multiple_of(self.groups) {
            return bad(format!(
                "{} groups must divide both {} input and {} output channels",
                self.groups, self.cin, self.cout
            ));
        }
        let span = |k: usize, d: usize| (k - 1) * d + 1;
        let ph = self.h + self.pads[0] + self.pads[2];
        let pw = self.w + self.pads[1] + self.pads[3];
        let (eh, ew) = (span(self.kh, self.dilation.0), span(self.kw, self.dilation.1));
        if eh > ph || ew > pw {
            return bad(format!(
                "the dilated kernel {eh}x{ew} is larger than the padded input {ph}x{pw}"
            ));
        }
        Ok(((ph - eh) / self.stride.0 + 1, (pw - ew) / self.stride.1 + 1))
    }

    /// The reduction length `Cin/groups * KH * KW` (W's columns).
    pub fn k(&self) -> usize {
        self.cin / self.groups.max(1) * self.kh * self.kw
    }
}

/// A thread tile of the kernel: a workgroup owns `bm x bn` outputs, each of
/// its `(bn/tn) x (bm/tm)` threads `tm x tn`, and stages `bk` of K at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvTile {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
}

impl ConvTile {
    /// 64 x 64 outputs by 256 threads (GPUs).
    pub const LARGE: ConvTile = ConvTile {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    };
    /// 32 x 32 outputs by 64 threads: few output channels or pixels, CPU adapters.
    pub const SMALL: ConvTile = ConvTile {
        bm: 32,
        bn: 32,
        bk: 16,
        tm: 4,
        tn: 4,
    };
    /// 16 x 64: narrow layers (depthwise and grouped convolutions with few
    /// channels per group).
    pub const NARROW: ConvTile = ConvTile {
        bm: 16,
        bn: 64,
        bk: 16,
        tm: 2,
        tn: 4,
    };
    pub const ALL: [ConvTile; 3] = [Self::LARGE, Self::SMALL, Self::NARROW];

    fn threads(self) -> u32 {
        (self.bm / self.tm.max(1)) * (self.bn / self.tn.max(1))
    }

    /// Checks the tile's shape rules and the device's limits.
    pub fn validate(self, ctx: &Context) -> Result<()> {
        let ok = self.tm >= 1
            && self.tn >= 1
            && self.tm <= 8
            && self.tn <= 8
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.bk >= 1;
        if !ok {
            return Err(Error::Shape(format!("unsupported convolution tile {self:?}")));
        }
        let l = ctx.limits();
        let smem = 4 * self.bk * (self.bm + self.bn);
        if self.threads() > l.max_compute_invocations_per_workgroup
            || self.bn / self.tn > l.max_compute_workgroup_size_x
            || self.bm / self.tm > l.max_compute_workgroup_size_y
            || smem > l.max_compute_workgroup_storage_size
        {
            return Err(Error::Limit(format!(
                "convolution tile {self:?} exceeds the device's workgroup limits"
            )));
        }
        Ok(())
    }

    /// The tile for `cout_g` output channels per group by `cols` output
    /// columns: the largest whose grid still has some parallelism.
    pub fn choose(ctx: &Context, cout_g: usize, cols: usize) -> ConvTile {
        let pick = if cout_g <= 16 {
            Self::NARROW
        } else if ctx.is_cpu() || cout_g <= 32 || cols <= 32 {
            Self::SMALL
        } else {
            Self::LARGE
        };
        if pick.validate(ctx).is_ok() {
            pick
        } else {
            Self::SMALL
        }
    }

    pub(crate) fn constants(self, ep: &Epilogue) -> Vec<(&'static str, u32)> {
        let mut c = vec![
            ("BM", self.bm),
            ("BN", self.bn),
            ("BK", self.bk),
            ("TM", self.tm),
            ("TN", self.tn),
            ("WG_X", self.bn / self.tn),
            ("WG_Y", self.bm / self.tm),
            ("WS_LEN", self.bk * self.bm),
            ("XS_LEN", self.bk * self.bn),
        ];
        c.extend(ep.constants());
        c
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    cin_g: u32,
    cout_g: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    cols: u32,
    k: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: u32,
    pl: u32,
    w_stride: u32,
    x_stride: u32,
    y_stride: u32,
    cout: u32,
    // N:M weights only (conv_sparse.wgsl's conv_nm).
    nm_n: u32,
    nm_m: u32,
    bits: u32,
    vpr: u32,
    wpr: u32,
    _pad: [u32; 3],
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("convolution {what} {v} exceeds u32 indexing")))
}

/// Checks the matrices against `g` and returns the kernels' parameters (`w`:
/// the weight's rows, columns and floats per row).
fn params(g: &ConvGeometry, w: (usize, usize, usize), x: &GpuMatrix, y: &GpuMatrix) -> Result<Params> {
    let (oh, ow) = g.output_hw()?;
    let cols = g.batch * oh * ow;
    let k = g.k();
    let (w_rows, w_cols, w_stride) = w;
    if w_rows != g.cout || w_cols != k {
        return Err(Error::Shape(format!(
            "convolution weight is {w_rows}x{w_cols}, the geometry needs {}x{k} (Cout x Cin/groups*KH*KW)",
            g.cout
        )));
    }
    if x.rows() != g.cin || x.cols() != g.batch * g.h * g.w {
        return Err(Error::Shape(format!(
            "convolution input is {}x{}, the geometry needs {}x{} (Cin x N*H*W)",
            x.rows(),
            x.cols(),
            g.cin,
            g.batch * g.h * g.w
        )));
    }
    if y.rows() != g.cout || y.cols() != cols {
        return Err(Error::Shape(format!(
            "convolution output is {}x{}, the geometry gives {}x{cols} (Cout x N*OH*OW)",
            y.rows(),
            y.cols(),
            g.cout
        )));
    }
    // The largest flat index each buffer is read at must fit u32.
    u32_of(g.cin * x.stride(), "input size")?;
    u32_of(g.cout * y.stride(), "output size")?;
    u32_of(g.cout * w_stride, "weight size")?;
    Ok(Params {
        cin_g: u32_of(g.cin / g.groups, "channels")?,
        cout_g: u32_of(g.cout / g.groups, "channels")?,
        h: u32_of(g.h, "height")?,
        w: u32_of(g.w, "width")?,
        oh: u32_of(oh, "output height")?,
        ow: u32_of(ow, "output width")?,
        cols: u32_of(cols, "output columns")?,
        k: u32_of(k, "reduction length")?,
        kh: u32_of(g.kh, "kernel height")?,
        kw: u32_of(g.kw, "kernel width")?,
        sh: u32_of(g.stride.0, "stride")?,
        sw: u32_of(g.stride.1, "stride")?,
        dh: u32_of(g.dilation.0, "dilation")?,
        dw: u32_of(g.dilation.1, "dilation")?,
        pt: u32_of(g.pads[0], "padding")?,
        pl: u32_of(g.pads[1], "padding")?,
        w_stride: u32_of(w_stride, "weight stride")?,
        x_stride: u32_of(x.stride(), "input stride")?,
        y_stride: u32_of(y.stride(), "output stride")?,
        cout: u32_of(g.cout, "channels")?,
        nm_n: 0,
        nm_m: 0,
        bits: 0,
        vpr: 0,
        wpr: 0,
        _pad: [0; 3],
    })
}

/// Prepares `y = act(conv(x, w) + bias)` with an explicit tile.
pub fn prepare_with(
    ctx: &Context,
    g: &ConvGeometry,
    w: &GpuMatrix,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
    tile: ConvTile,
) -> Result<Dispatch> {
    let p = params(g, (w.rows(), w.cols(), w.stride()), x, y)?;
    tile.validate(ctx)?;
    let u = ctx.uniform(&p, "conv_gemm params");
    let bias = ep.bias_buffer(ctx, g.cout)?;
    let groups = [
        p.cols.div_ceil(tile.bn),
        p.cout_g.div_ceil(tile.bm),
        u32_of(g.groups, "groups")?,
    ];
    let key = PipelineKey::new(&CONV_GEMM, &tile.constants(ep));
    ctx.prepare(&key, &[&u, w.buf.raw(), x.buf.raw(), y.buf.raw(), &bias], groups)
}

/// Prepares `y = act(conv(x, w) + bias)` with the tile [`ConvTile::choose`] picks.
pub fn prepare(
    ctx: &Context,
    g: &ConvGeometry,
    w: &GpuMatrix,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
) -> Result<Dispatch> {
    let (oh, ow) = g.output_hw()?;
    let tile = ConvTile::choose(ctx, g.cout / g.groups, g.batch * oh * ow);
    prepare_with(ctx, g, w, x, y, ep, tile)
}

/// Prepares and submits [`prepare`].
pub fn run(ctx: &Context, g: &ConvGeometry, w: &GpuMatrix, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, g, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

/// Columns per thread and the workgroup of the CSR kernel.
const CSR_TN: u32 = 4;
const CSR_WG: (u32, u32) = (16, 4);

fn csr_constants(ep: &Epilogue) -> Vec<(&'static str, u32)> {
    let mut c = vec![("TN", CSR_TN), ("WG_X", CSR_WG.0), ("WG_Y", CSR_WG.1)];
    c.extend(ep.constants());
    c
}

/// Prepares `y = act(conv(x, w) + bias)` with a CSR weight `[Cout,
/// Cin/groups*KH*KW]` (any sparsity pattern; work proportional to the
/// non-zeros).
pub fn prepare_csr(
    ctx: &Context,
    g: &ConvGeometry,
    w: &GpuCsr,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
) -> Result<Dispatch> {
    let p = params(g, (w.rows, w.cols, w.cols), x, y)?;
    u32_of(w.nnz, "non-zeros")?;
    let u = ctx.uniform(&p, "conv_csr params");
    let bias = ep.bias_buffer(ctx, g.cout)?;
    let groups = [p.cols.div_ceil(CSR_WG.0 * CSR_TN), p.cout.div_ceil(CSR_WG.1), 1];
    // An all-zero weight has empty index arrays: bind dummies (never read).
    let (col_idx, values) = if w.nnz == 0 {
        (ctx.dummy_buffer(), ctx.dummy_buffer())
    } else {
        (w.col_idx.raw().clone(), w.values.raw().clone())
    };
    let key = PipelineKey::new(&CONV_CSR, &csr_constants(ep));
    ctx.prepare(
        &key,
        &[&u, w.row_ptr.raw(), &col_idx, &values, x.buf.raw(), y.buf.raw(), &bias],
        groups,
    )
}

/// Prepares `y = act(conv(x, w) + bias)` with an N:M weight along K =
/// Cin/groups*KH*KW (`[Cout, K]`; 2:4 and any other N:M the crate prunes to).
pub fn prepare_nm(
    ctx: &Context,
    g: &ConvGeometry,
    w: &GpuNm,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
) -> Result<Dispatch> {
    // The pattern, the packed layout and the buffer sizes, as the N:M SpMM checks them.
    let s = crate::gpu::spmm_nm::shape(w)?;
    let mut p = params(g, (w.rows, w.cols, w.cols), x, y)?;
    p.nm_n = s.n;
    p.nm_m = s.m;
    p.bits = s.bits;
    p.vpr = s.vpr;
    p.wpr = s.wpr;
    let u = ctx.uniform(&p, "conv_nm params");
    let bias = ep.bias_buffer(ctx, g.cout)?;
    let groups = [p.cols.div_ceil(CSR_WG.0 * CSR_TN), p.cout.div_ceil(CSR_WG.1), 1];
    let key = PipelineKey::new(&CONV_NM, &csr_constants(ep));
    ctx.prepare(
        &key,
        &[
            &u,
            w.values.raw(),
            w.indices.raw(),
            &ctx.dummy_buffer(),
            x.buf.raw(),
            y.buf.raw(),
            &bias,
        ],
        groups,
    )
}

/// Every tile with every epilogue, for the shader tests.
fn conv_gemm_specialisations() -> Vec<Constants> {
    ConvTile::ALL
        .into_iter()
        .flat_map(|t| across_epilogues(t.constants(&Epilogue::default())))
        .collect()
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{across_epilogues, Constants, KernelDef, WgslSource, RO, RW, UNIFORM};

const CONV_GEMM_WGSL: &str = include_str!("conv_gemm.wgsl");
const CONV_SPARSE_WGSL: &str = include_str!("conv_sparse.wgsl");
crate::gpu::wgsl::generated!(conv_gemm_source, CONV_GEMM_WGSL, &[]);
crate::gpu::wgsl::generated!(conv_sparse_source, CONV_SPARSE_WGSL, &[]);
pub static CONV_GEMM: KernelDef = KernelDef::new(
    "conv_gemm",
    WgslSource::Generated(conv_gemm_source),
    &[UNIFORM, RO, RO, RW, RO],
)
.specialised(conv_gemm_specialisations);
pub static CONV_CSR: KernelDef = KernelDef::new(
    "conv_csr",
    WgslSource::Generated(conv_sparse_source),
    &[UNIFORM, RO, RO, RO, RO, RW, RO],
)
.specialised(|| across_epilogues(csr_constants(&Epilogue::default())));
/// Binding 3 (the CSR values) is not read: a dummy is bound.
pub static CONV_NM: KernelDef = KernelDef::new(
    "conv_nm",
    WgslSource::Generated(conv_sparse_source),
    &[UNIFORM, RO, RO, RO, RO, RW, RO],
)
.specialised(|| across_epilogues(csr_constants(&Epilogue::default())));
pub const KERNELS: &[&KernelDef] = &[&CONV_GEMM, &CONV_CSR, &CONV_NM];
