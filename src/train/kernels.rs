//! Thin, shape-checked wrappers over the training kernels of
//! `train.wgsl`: each returns prepared [`Dispatch`]es (bind groups
//! made once) that a training step records again and again.

use crate::error::{Error, Result};
use crate::gpu::{Context, Dispatch, GpuBsr, GpuBuffer, GpuCsr, GpuNm, PipelineKey};

pub const F_BIAS: u32 = 1;
pub const F_RELU6: u32 = 2;
pub const F_RES: u32 = 4;
pub const F_ACC: u32 = 8;
pub const F_SPLIT: u32 = 16;
pub const F_DEPTHWISE: u32 = 32;
pub const F_MASK: u32 = 64;

/// The uniform every training kernel takes (see `train.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct P {
    pub u: [u32; 12],
    pub f: [f32; 8],
}

pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("{what} = {v} does not fit in u32")))
}

fn words(b: &GpuBuffer) -> usize {
    (b.bytes() / 4) as usize
}

fn need(b: &GpuBuffer, len: usize, what: &str) -> Result<()> {
    if words(b) < len {
        return Err(Error::Shape(format!(
            "{what}: needs {len} floats, the buffer holds {}",
            words(b)
        )));
    }
    Ok(())
}

fn prep(ctx: &Context, kernel: &'static KernelDef, p: &P, res: &[&wgpu::Buffer], groups: [u32; 3]) -> Result<Dispatch> {
    let u = ctx.uniform(p, kernel.name);
    let mut all: Vec<&wgpu::Buffer> = vec![&u];
    all.extend_from_slice(res);
    ctx.prepare(&PipelineKey::new(kernel, &[]), &all, groups)
}

fn grid(ctx: &Context, threads: usize) -> Result<[u32; 3]> {
    ctx.fold_groups(u32_of(threads.div_ceil(256).max(1), "workgroups")?)
}

/// A strided view of a matrix operand: element `(i, k)` at `i * rs + k * cs`.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buf: &'a GpuBuffer,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Operand<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(buf: &'a GpuBuffer, cols: usize) -> Self {
        Operand { buf, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(buf: &'a GpuBuffer, cols: usize) -> Self {
        Operand { buf, rs: 1, cs: cols }
    }
    fn max_index(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.rs + (cols - 1) * self.cs + 1
        }
    }
}

/// What the GEMM epilogue adds.
#[derive(Clone, Copy, Default)]
pub struct GemmEpilogue<'a> {
    pub bias: Option<&'a GpuBuffer>,
    pub relu6: bool,
    pub residual: Option<&'a GpuBuffer>,
    pub accumulate: bool,
}

/// `C[m, n] (+)= A[m, k] B[k, n]` (+ epilogue). When the output has few tiles
/// and K is long (weight gradients: K = batch * pixels), K is split into
/// slices written to `scratch` and summed by a second dispatch.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ctx: &Context,
    a: Operand,
    b: Operand,
    c: &GpuBuffer,
    m: usize,
    n: usize,
    k: usize,
    ep: GemmEpilogue,
    scratch: Option<&GpuBuffer>,
) -> Result<Vec<Dispatch>> {
    need(a.buf, a.max_index(m, k), "gemm A")?;
    need(b.buf, b.max_index(k, n), "gemm B")?;
    need(c, m * n, "gemm C")?;
    if let Some(bias) = ep.bias {
        need(bias, m, "gemm bias")?;
    }
    if let Some(r) = ep.residual {
        need(r, m * n, "gemm residual")?;
    }
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    let mut slices = 1usize;
    if let Some(s) = scratch {
        let want = 512usize.div_ceil(tiles.max(1));
        let by_k = k.div_ceil(256);
        let by_room = words(s) / (m * n).max(1);
        slices = want.min(by_k).min(by_room).clamp(1, 4096);
    }
    let k_chunk = k.div_ceil(slices).next_multiple_of(16).max(16);
    let slices = k.div_ceil(k_chunk).max(1);
    let split = slices > 1;
    let mut flags = 0;
    if !split {
        if ep.bias.is_some() {
            flags |= F_BIAS;
        }
        if ep.relu6 {
            flags |= F_RELU6;
        }
        if ep.residual.is_some() {
            flags |= F_RES;
        }
        if ep.accumulate {
            flags |= F_ACC;
        }
    } else {
        flags |= F_SPLIT;
        if ep.bias.is_some() || ep.relu6 || ep.residual.is_some() {
            return Err(Error::Invalid("split-K GEMM has no bias/activation epilogue".into()));
        }
    }
    let p = P {
        u: [
            u32_of(m, "m")?,
            u32_of(n, "n")?,
            u32_of(k, "k")?,
            flags,
            u32_of(a.rs, "A row stride")?,
            u32_of(a.cs, "A column stride")?,
            u32_of(b.rs, "B row stride")?,
            u32_of(b.cs, "B column stride")?,
            u32_of(k_chunk, "K slice")?,
            u32_of(n, "C row stride")?,
            0,
            0,
        ],
        f: [0.0; 8],
    };
    let dummy = ctx.dummy_buffer();
    let out = if split {
        scratch.expect("split needs scratch")
    } else {
        c
    };
    let groups = ctx.check_dispatch([
        u32_of(n.div_ceil(64).max(1), "gemm tiles")?,
        u32_of(m.div_ceil(64).max(1), "gemm tiles")?,
        u32_of(slices, "K slices")?,
    ])?;
    let mut list = vec![prep(
        ctx,
        &TR_GEMM,
        &p,
        &[
            a.buf.raw(),
            b.buf.raw(),
            out.raw(),
            ep.bias.map(|x| x.raw()).unwrap_or(&dummy),
            ep.residual.map(|x| x.raw()).unwrap_or(&dummy),
        ],
        groups,
    )?];
    if split {
        list.push(reduce(ctx, out, c, m * n, slices, ep.accumulate)?);
    }
    Ok(list)
}

/// `out[i] (+)= sum_z part[z * len + i]`.
pub fn reduce(
    ctx: &Context,
    part: &GpuBuffer,
    out: &GpuBuffer,
    len: usize,
    slices: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    need(part, len * slices, "reduce slices")?;
    need(out, len, "reduce output")?;
    let mut p = P::default();
    p.u[0] = u32_of(len, "len")?;
    p.u[1] = u32_of(slices, "slices")?;
    p.u[3] = if accumulate { F_ACC } else { 0 };
    prep(ctx, &TR_REDUCE, &p, &[part.raw(), out.raw()], grid(ctx, len)?)
}

/// `out[r] (+)= scale * sum_c x[r, c]` over a row-major `rows x cols` matrix.
pub fn rowsum(
    ctx: &Context,
    x: &GpuBuffer,
    out: &GpuBuffer,
    rows: usize,
    cols: usize,
    scale: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    need(x, rows * cols, "rowsum input")?;
    need(out, rows, "rowsum output")?;
    let mut p = P::default();
    p.u[0] = u32_of(rows, "rows")?;
    p.u[1] = u32_of(cols, "cols")?;
    p.u[3] = if accumulate { F_ACC } else { 0 };
    p.f[0] = scale;
    let groups = ctx.fold_groups(u32_of(rows.max(1), "rows")?)?;
    prep(ctx, &TR_ROWSUM, &p, &[x.raw(), out.raw()], groups)
}

/// `dst[r, c] = scale * src[r]` (times the ReLU6 gate of `gate_y` if given).
pub fn pool_backward(
    ctx: &Context,
    src: &GpuBuffer,
    dst: &GpuBuffer,
    rows: usize,
    cols: usize,
    scale: f32,
    gate_y: Option<&GpuBuffer>,
) -> Result<Dispatch> {
    need(src, rows, "pool backward source")?;
    need(dst, rows * cols, "pool backward destination")?;
    if let Some(y) = gate_y {
        need(y, rows * cols, "pool backward gate")?;
    }
    let mut p = P::default();
    p.u[0] = u32_of(rows, "rows")?;
    p.u[1] = u32_of(cols, "cols")?;
    p.u[3] = if gate_y.is_some() { F_RELU6 } else { 0 };
    p.f[0] = scale;
    let dummy = ctx.dummy_buffer();
    prep(
        ctx,
        &TR_POOL_BACKWARD,
        &p,
        &[src.raw(), dst.raw(), gate_y.map(|b| b.raw()).unwrap_or(&dummy)],
        grid(ctx, rows * cols)?,
    )
}

/// `d[i] *= (0 < y[i] < 6)` over `len` elements.
pub fn relu6_backward(ctx: &Context, d: &GpuBuffer, y: &GpuBuffer, len: usize) -> Result<Dispatch> {
    need(d, len, "relu6 backward gradient")?;
    need(y, len, "relu6 backward output")?;
    let mut p = P::default();
    p.u[0] = u32_of(len, "len")?;
    prep(ctx, &TR_RELU6_BACKWARD, &p, &[d.raw(), y.raw()], grid(ctx, len)?)
}

/// A batched spatial convolution's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub batch: usize,
    pub k: usize,
    pub stride: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub depthwise: bool,
}

impl ConvGeom {
    /// TensorFlow "SAME" geometry (as the network pads) of a `k x k` / `stride`
    /// convolution of a batch of `h x w` inputs.
    #[allow(clippy::too_many_arguments)]
    pub fn same(
        cin: usize,
        cout: usize,
        batch: usize,
        k: usize,
        stride: usize,
        h: usize,
        w: usize,
        depthwise: bool,
    ) -> Self {
        let (pad, oh, ow) = crate::model::Padding::same(h, w, k, stride);
        ConvGeom {
            cin,
            cout,
            batch,
            k,
            stride,
            h,
            w,
            oh,
            ow,
            pad_top: pad.top,
            pad_left: pad.left,
            depthwise,
        }
    }

    fn params(&self, flags: u32) -> Result<P> {
        if self.depthwise && self.cin != self.cout {
            return Err(Error::Shape(format!(
                "depthwise convolution with {} inputs and {} outputs",
                self.cin, self.cout
            )));
        }
        if self.k == 0 || self.stride == 0 {
            return Err(Error::Shape("convolution with kernel or stride 0".into()));
        }
        let p = P {
            u: [
                u32_of(self.cout, "cout")?,
                u32_of(self.batch, "batch")?,
                u32_of(self.k, "k")?,
                flags | if self.depthwise { F_DEPTHWISE } else { 0 },
                u32_of(self.h, "h")?,
                u32_of(self.w, "w")?,
                u32_of(self.oh, "oh")?,
                u32_of(self.ow, "ow")?,
                u32_of(self.stride, "stride")?,
                u32_of(self.pad_top, "pad")?,
                u32_of(self.pad_left, "pad")?,
                u32_of(self.cin, "cin")?,
            ],
            f: [0.0; 8],
        };
        Ok(p)
    }
    pub fn weight_cols(&self) -> usize {
        if self.depthwise {
            self.k * self.k
        } else {
            self.cin * self.k * self.k
        }
    }
    pub fn input_len(&self) -> usize {
        self.cin * self.batch * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.cout * self.batch * self.oh * self.ow
    }
}

/// `y = act(conv(x, w) + bias)`.
pub fn conv(
    ctx: &Context,
    g: &ConvGeom,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: &GpuBuffer,
    y: &GpuBuffer,
    relu6: bool,
) -> Result<Dispatch> {
    let p = g.params(if relu6 { F_RELU6 } else { 0 })?;
    need(x, g.input_len(), "conv input")?;
    need(w, g.cout * g.weight_cols(), "conv weight")?;
    need(bias, g.cout, "conv bias")?;
    need(y, g.output_len(), "conv output")?;
    prep(
        ctx,
        &TR_CONV,
        &p,
        &[x.raw(), w.raw(), y.raw(), bias.raw()],
        grid(ctx, g.output_len())?,
    )
}

/// The input gradient of a depthwise convolution, `dx (+)= conv^T(dz, w)`.
pub fn dw_bwd_x(
    ctx: &Context,
    g: &ConvGeom,
    dz: &GpuBuffer,
    w: &GpuBuffer,
    dx: &GpuBuffer,
    accumulate: bool,
) -> Result<Dispatch> {
    if !g.depthwise {
        return Err(Error::Invalid(
            "the input gradient kernel is for depthwise convolutions".into(),
        ));
    }
    let p = g.params(if accumulate { F_ACC } else { 0 })?;
    need(dz, g.output_len(), "dw_bwd_x dz")?;
    need(w, g.cout * g.weight_cols(), "dw_bwd_x weight")?;
    need(dx, g.input_len(), "dw_bwd_x dx")?;
    prep(
        ctx,
        &TR_DW_BWD_X,
        &p,
        &[dz.raw(), w.raw(), dx.raw()],
        grid(ctx, g.input_len())?,
    )
}

/// The largest `weight columns + 1` of [`conv_bwd_w`] (its register array).
pub const CONV_MAX_COLS: usize = 28;

/// Weight and bias gradients of a convolution: slices of the batch's output
/// pixels reduced per output channel into `scratch`, then summed into `dw`
/// and `db` (two dispatches).
#[allow(clippy::too_many_arguments)]
pub fn conv_bwd_w(
    ctx: &Context,
    g: &ConvGeom,
    dz: &GpuBuffer,
    x: &GpuBuffer,
    dw: &GpuBuffer,
    db: &GpuBuffer,
    scratch: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let p = g.params(if accumulate { F_ACC } else { 0 })?;
    let cols = g.weight_cols();
    if cols + 1 > CONV_MAX_COLS {
        return Err(Error::Limit(format!(
            "convolution weight gradients handle at most {} columns, got {cols}",
            CONV_MAX_COLS - 1
        )));
    }
    need(dz, g.output_len(), "conv_bwd_w dz")?;
    need(x, g.input_len(), "conv_bwd_w x")?;
    need(dw, g.cout * cols, "conv_bwd_w dw")?;
    need(db, g.cout, "conv_bwd_w db")?;
    let total = g.batch * g.oh * g.ow;
    let per = g.cout * (cols + 1);
    // About 32 elements per thread of 64, at most what the scratch holds.
    let slices = total.div_ceil(2048).min(words(scratch) / per.max(1)).clamp(1, 65535);
    need(scratch, slices * per, "conv_bwd_w scratch")?;
    let ci = if g.depthwise { 1 } else { g.cin };
    let u = ctx.uniform(&p, TR_CONV_BWD_W.name);
    let d1 = ctx.prepare(
        &PipelineKey::new(&TR_CONV_BWD_W, &[("KS", u32_of(g.k, "k")?), ("CI", u32_of(ci, "cin")?)]),
        &[&u, dz.raw(), x.raw(), scratch.raw()],
        ctx.check_dispatch([u32_of(slices, "slices")?, u32_of(g.cout, "cout")?, 1])?,
    )?;
    let mut q = P::default();
    q.u[0] = u32_of(g.cout, "cout")?;
    q.u[1] = u32_of(cols, "cols")?;
    q.u[2] = u32_of(slices, "slices")?;
    q.u[3] = if accumulate { F_ACC } else { 0 };
    let d2 = prep(
        ctx,
        &TR_CONV_REDUCE,
        &q,
        &[scratch.raw(), dw.raw(), db.raw()],
        grid(ctx, per)?,
    )?;
    Ok(vec![d1, d2])
}

/// Distillation: student logits `s`, teacher logits `t` (`[classes, batch]`),
/// gradient into `ds`, per-sample loss and agreement into `metrics` from `offset`.
#[allow(clippy::too_many_arguments)]
pub fn kd_loss(
    ctx: &Context,
    s: &GpuBuffer,
    t: &GpuBuffer,
    ds: &GpuBuffer,
    metrics: &GpuBuffer,
    offset: usize,
    classes: usize,
    batch: usize,
    temperature: f32,
    weight: f32,
) -> Result<Dispatch> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::Invalid(format!(
            "the distillation temperature must be positive, got {temperature}"
        )));
    }
    need(s, classes * batch, "kd loss student")?;
    need(t, classes * batch, "kd loss teacher")?;
    need(ds, classes * batch, "kd loss gradient")?;
    need(metrics, offset + 2 * batch, "kd loss metrics")?;
    let mut p = P::default();
    p.u[0] = u32_of(classes, "classes")?;
    p.u[1] = u32_of(batch, "batch")?;
    p.u[4] = u32_of(offset, "metrics offset")?;
    p.f[0] = temperature;
    p.f[1] = weight / batch as f32;
    let groups = ctx.check_dispatch([u32_of(batch, "batch")?, 1, 1])?;
    prep(
        ctx,
        &TR_KD_LOSS,
        &p,
        &[s.raw(), t.raw(), ds.raw(), metrics.raw()],
        groups,
    )
}

/// Workgroups of [`feature_loss`]: its partial sums take this many metrics words.
pub const FEATURE_LOSS_GROUPS: usize = 256;

/// Feature matching: `g += 2 * weight / len * (fs - ft)`, partial sums of
/// `(fs - ft)^2` into `metrics[offset..offset + FEATURE_LOSS_GROUPS]`.
#[allow(clippy::too_many_arguments)]
pub fn feature_loss(
    ctx: &Context,
    fs: &GpuBuffer,
    ft: &GpuBuffer,
    g: &GpuBuffer,
    metrics: &GpuBuffer,
    offset: usize,
    len: usize,
    weight: f32,
) -> Result<Dispatch> {
    need(fs, len, "feature loss student")?;
    need(ft, len, "feature loss teacher")?;
    need(g, len, "feature loss gradient")?;
    need(metrics, offset + FEATURE_LOSS_GROUPS, "feature loss metrics")?;
    let mut p = P::default();
    p.u[0] = u32_of(len, "len")?;
    p.u[4] = u32_of(offset, "metrics offset")?;
    p.f[0] = 2.0 * weight / len.max(1) as f32;
    prep(
        ctx,
        &TR_FEATURE_LOSS,
        &p,
        &[fs.raw(), ft.raw(), g.raw(), metrics.raw()],
        [FEATURE_LOSS_GROUPS as u32, 1, 1],
    )
}

/// One AdamW step of a tensor of `len` elements (see `tr_adam`).
#[allow(clippy::too_many_arguments)]
pub fn adam(
    ctx: &Context,
    w: &GpuBuffer,
    g: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    mask: Option<&GpuBuffer>,
    hyper: &GpuBuffer,
    len: usize,
    decay: bool,
) -> Result<Dispatch> {
    for (b, what) in [(w, "adam weights"), (g, "adam gradient"), (m, "adam m"), (v, "adam v")] {
        need(b, len, what)?;
    }
    if let Some(k) = mask {
        need(k, len, "adam mask")?;
    }
    need(hyper, 8, "adam hyper-parameters")?;
    let mut p = P::default();
    p.u[0] = u32_of(len, "len")?;
    p.u[1] = decay as u32;
    p.u[3] = if mask.is_some() { F_MASK } else { 0 };
    let dummy = ctx.dummy_buffer();
    prep(
        ctx,
        &TR_ADAM,
        &p,
        &[
            w.raw(),
            g.raw(),
            m.raw(),
            v.raw(),
            mask.map(|b| b.raw()).unwrap_or(&dummy),
            hyper.raw(),
        ],
        grid(ctx, len)?,
    )
}

/// `w, m, v *= mask` elementwise.
pub fn mask_apply(
    ctx: &Context,
    mask: &GpuBuffer,
    w: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    len: usize,
) -> Result<Dispatch> {
    for (b, what) in [(mask, "mask"), (w, "weights"), (m, "adam m"), (v, "adam v")] {
        need(b, len, what)?;
    }
    let mut p = P::default();
    p.u[0] = u32_of(len, "len")?;
    prep(
        ctx,
        &TR_MASK_APPLY,
        &p,
        &[mask.raw(), w.raw(), m.raw(), v.raw()],
        grid(ctx, len)?,
    )
}

/// A pruned format on the GPU, as the pruning plans write it.
pub enum Pruned<'a> {
    Csr(&'a GpuCsr),
    Bsr(&'a GpuBsr),
    Nm(&'a GpuNm),
}

/// Dispatches that turn a pruned format into a dense 0/1 mask (zeroed first).
pub fn mask_from(ctx: &Context, sparse: Pruned, mask: &GpuBuffer) -> Result<Vec<Dispatch>> {
    let fill = crate::gpu::elementwise::prepare_fill(ctx, mask, 0)?;
    let dummy = ctx.dummy_buffer();
    let mut p = P::default();
    let d = match sparse {
        Pruned::Csr(c) => {
            need(mask, c.rows * c.cols, "mask")?;
            p.u[0] = u32_of(c.rows, "rows")?;
            p.u[1] = u32_of(c.cols, "cols")?;
            prep(
                ctx,
                &TR_MASK_CSR,
                &p,
                &[c.row_ptr.raw(), c.col_idx.raw(), &dummy, mask.raw()],
                grid(ctx, c.rows)?,
            )?
        }
        Pruned::Bsr(b) => {
            need(mask, b.rows * b.cols, "mask")?;
            p.u[0] = u32_of(b.rows, "rows")?;
            p.u[1] = u32_of(b.cols, "cols")?;
            p.u[2] = u32_of(b.block_rows, "block rows")?;
            p.u[3] = u32_of(b.block_cols, "block cols")?;
            let threads = b.rows.div_ceil(b.block_rows) * b.block_rows * b.block_cols;
            prep(
                ctx,
                &TR_MASK_BSR,
                &p,
                &[b.row_ptr.raw(), b.col_idx.raw(), &dummy, mask.raw()],
                grid(ctx, threads)?,
            )?
        }
        Pruned::Nm(nm) => {
            need(mask, nm.rows * nm.cols, "mask")?;
            let bits = crate::sparse::nm_index_bits(nm.m);
            let per_word = 32 / bits;
            let groups = nm.cols.div_ceil(nm.m);
            let words_per_row = (groups * nm.n).div_ceil(per_word);
            p.u[0] = u32_of(nm.rows, "rows")?;
            p.u[1] = u32_of(nm.cols, "cols")?;
            p.u[2] = u32_of(nm.n, "n")?;
            p.u[3] = u32_of(nm.m, "m")?;
            p.u[4] = u32_of(bits, "bits")?;
            p.u[5] = u32_of(per_word, "per word")?;
            p.u[6] = u32_of(words_per_row, "words per row")?;
            p.u[7] = u32_of(groups, "groups")?;
            prep(
                ctx,
                &TR_MASK_NM,
                &p,
                &[&dummy, nm.indices.raw(), nm.values.raw(), mask.raw()],
                grid(ctx, nm.rows * groups)?,
            )?
        }
    };
    Ok(vec![fill, d])
}

/// Per-sample augmentation parameters: 16 floats (see `tr_augment`).
pub const AUG_FLOATS: usize = 16;

/// The batch `[3, batch, r*r]` from packed RGBA sources of side `s`.
#[allow(clippy::too_many_arguments)]
pub fn augment(
    ctx: &Context,
    sources: &GpuBuffer,
    count: usize,
    s: usize,
    aug: &GpuBuffer,
    out: &GpuBuffer,
    batch: usize,
    r: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Dispatch> {
    if count == 0 {
        return Err(Error::Invalid("no source images".into()));
    }
    need(sources, count * s * s, "augment sources")?;
    need(aug, batch * AUG_FLOATS, "augment parameters")?;
    need(out, 3 * batch * r * r, "augment output")?;
    let mut p = P::default();
    p.u[0] = u32_of(batch, "batch")?;
    p.u[1] = u32_of(r, "resolution")?;
    p.u[2] = u32_of(s, "source side")?;
    p.u[3] = u32_of(count, "sources")?;
    p.f[..3].copy_from_slice(&mean);
    p.f[3..6].copy_from_slice(&std);
    prep(
        ctx,
        &TR_AUGMENT,
        &p,
        &[sources.raw(), aug.raw(), out.raw()],
        grid(ctx, batch * r * r)?,
    )
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, WgslSource, RO, RW, UNIFORM};

const TRAIN_WGSL: &str = include_str!("train.wgsl");
pub static TR_GEMM: KernelDef = KernelDef::new("tr_gemm", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RW, RO, RO]);
pub static TR_REDUCE: KernelDef = KernelDef::new("tr_reduce", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RW]);
pub static TR_ROWSUM: KernelDef = KernelDef::new("tr_rowsum", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RW]);
pub static TR_POOL_BACKWARD: KernelDef =
    KernelDef::new("tr_pool_backward", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RW, RO]);
pub static TR_RELU6_BACKWARD: KernelDef =
    KernelDef::new("tr_relu6_backward", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RW, RO]);
pub static TR_CONV: KernelDef = KernelDef::new("tr_conv", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RW, RO]);
pub static TR_DW_BWD_X: KernelDef = KernelDef::new("tr_dw_bwd_x", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RW]);
pub static TR_CONV_BWD_W: KernelDef =
    KernelDef::new("tr_conv_bwd_w", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RW]);
pub static TR_CONV_REDUCE: KernelDef =
    KernelDef::new("tr_conv_reduce", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RW, RW]);
pub static TR_KD_LOSS: KernelDef =
    KernelDef::new("tr_kd_loss", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RW, RW]);
pub static TR_FEATURE_LOSS: KernelDef = KernelDef::new(
    "tr_feature_loss",
    WgslSource::File(TRAIN_WGSL),
    &[UNIFORM, RO, RO, RW, RW],
);
pub static TR_ADAM: KernelDef = KernelDef::new(
    "tr_adam",
    WgslSource::File(TRAIN_WGSL),
    &[UNIFORM, RW, RO, RW, RW, RO, RO],
);
pub static TR_MASK_CSR: KernelDef =
    KernelDef::new("tr_mask_csr", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RO, RW]);
pub static TR_MASK_BSR: KernelDef =
    KernelDef::new("tr_mask_bsr", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RO, RW]);
pub static TR_MASK_NM: KernelDef =
    KernelDef::new("tr_mask_nm", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RO, RW]);
pub static TR_MASK_APPLY: KernelDef = KernelDef::new(
    "tr_mask_apply",
    WgslSource::File(TRAIN_WGSL),
    &[UNIFORM, RO, RW, RW, RW],
);
pub static TR_AUGMENT: KernelDef = KernelDef::new("tr_augment", WgslSource::File(TRAIN_WGSL), &[UNIFORM, RO, RO, RW]);
pub const KERNELS: &[&KernelDef] = &[
    &TR_GEMM,
    &TR_REDUCE,
    &TR_ROWSUM,
    &TR_POOL_BACKWARD,
    &TR_RELU6_BACKWARD,
    &TR_CONV,
    &TR_DW_BWD_X,
    &TR_CONV_BWD_W,
    &TR_CONV_REDUCE,
    &TR_KD_LOSS,
    &TR_FEATURE_LOSS,
    &TR_ADAM,
    &TR_MASK_CSR,
    &TR_MASK_BSR,
    &TR_MASK_NM,
    &TR_MASK_APPLY,
    &TR_AUGMENT,
];
