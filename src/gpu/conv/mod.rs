//! Convolutions and pooling on channel-major activations (`conv.wgsl`):
//! the stem convolution, depthwise convolutions and global average pooling of
//! a CNN, around the 1x1 convolutions that the GEMM/SpMM kernels compute.

use crate::error::{Error, Result};

use super::{Activation, Context, Dispatch, GpuBuffer, GpuTensor, PipelineKey};

/// Geometry of a 2-D convolution over `[cin, h*w]` activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    /// Zero padding before the first row / column.
    pub pad_top: usize,
    pub pad_left: usize,
    /// Zero padding after the last row / column.
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl ConvShape {
    /// Output height and width.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        let (hp, wp) = (
            self.h + self.pad_top + self.pad_bottom,
            self.w + self.pad_left + self.pad_right,
        );
        if self.k == 0 || self.stride == 0 || hp < self.k || wp < self.k {
            return Err(Error::Shape(format!("convolution {self:?} has no output")));
        }
        Ok(((hp - self.k) / self.stride + 1, (wp - self.k) / self.stride + 1))
    }

    /// TensorFlow "same" padding for `k`/`stride` on an `h x w` input (the
    /// extra row/column, if any, goes to the bottom/right).
    pub fn same(cin: usize, cout: usize, h: usize, w: usize, k: usize, stride: usize) -> Self {
        let pad = |n: usize| {
            let out = n.div_ceil(stride);
            ((out - 1) * stride + k).saturating_sub(n)
        };
        let (ph, pw) = (pad(h), pad(w));
        ConvShape {
            cin,
            cout,
            h,
            w,
            k,
            stride,
            pad_top: ph / 2,
            pad_left: pw / 2,
            pad_bottom: ph - ph / 2,
            pad_right: pw - pw / 2,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    in_stride: u32,
    out_stride: u32,
}

fn params<T: GpuTensor>(s: &ConvShape, x: &T, y: &T) -> Result<Params> {
    let (oh, ow) = s.out_hw()?;
    if x.rows() != s.cin || x.cols() != s.h * s.w {
        return Err(Error::Shape(format!(
            "input is {}x{}, the convolution expects [{}, {}x{}]",
            x.rows(),
            x.cols(),
            s.cin,
            s.h,
            s.w
        )));
    }
    if y.rows() != s.cout || y.cols() != oh * ow {
        return Err(Error::Shape(format!(
            "output is {}x{}, the convolution produces [{}, {oh}x{ow}]",
            y.rows(),
            y.cols(),
            s.cout
        )));
    }
    Ok(Params {
        cin: s.cin as u32,
        cout: s.cout as u32,
        h: s.h as u32,
        w: s.w as u32,
        oh: oh as u32,
        ow: ow as u32,
        k: s.k as u32,
        stride: s.stride as u32,
        pad_top: s.pad_top as u32,
        pad_left: s.pad_left as u32,
        in_stride: x.stride() as u32,
        out_stride: y.stride() as u32,
    })
}

fn check_len(buf: &GpuBuffer, floats: usize, what: &str) -> Result<()> {
    if buf.bytes() < 4 * floats as u64 {
        return Err(Error::Shape(format!(
            "{what} has {} floats, needs {floats}",
            buf.bytes() / 4
        )));
    }
    Ok(())
}

fn consts(act: Activation, bias: bool) -> [(&'static str, u32); 2] {
    [("HAS_BIAS", bias as u32), ("ACT", act.code())]
}

/// The epilogue and the kernel geometry (K, STRIDE are pipeline constants).
fn conv_consts(act: Activation, s: &ConvShape) -> [(&'static str, u32); 4] {
    let [b, a] = consts(act, true);
    [b, a, ("K", s.k as u32), ("STRIDE", s.stride as u32)]
}

/// Workgroups of 256 threads, each thread 4 adjacent output pixels of one row
/// of `channels_per_thread` channels.
fn conv_groups(ctx: &Context, s: &ConvShape, p: &Params, channels_per_thread: usize) -> Result<[u32; 3]> {
    let quads = (s.cout.div_ceil(channels_per_thread) as u64) * p.oh as u64 * p.ow.div_ceil(4) as u64;
    let groups = u32::try_from(quads.div_ceil(256)).map_err(|_| {
        Error::Limit(format!(
            "a convolution of {quads} output quads needs too many workgroups"
        ))
    })?;
    ctx.fold_groups(groups)
}

/// Dense convolution (the stem): weight `[cout][cin][k][k]`, bias `[cout]`.
/// Activations f32 or f16 (`T`); weights, bias and sums f32.
pub fn prepare_conv2d<T: GpuTensor>(
    ctx: &Context,
    s: &ConvShape,
    x: &T,
    weight: &GpuBuffer,
    bias: &GpuBuffer,
    y: &T,
    act: Activation,
) -> Result<Dispatch> {
    let p = params(s, x, y)?;
    check_len(weight, s.cout * s.cin * s.k * s.k, "conv weight")?;
    check_len(bias, s.cout, "conv bias")?;
    let u = ctx.uniform(&p, "conv2d params");
    let groups = conv_groups(ctx, s, &p, 8)?;
    let kernel = if T::F16 { &CONV2D_F16 } else { &CONV2D };
    let key = PipelineKey::new(kernel, &conv_consts(act, s));
    ctx.prepare(
        &key,
        &[&u, x.buffer().raw(), weight.raw(), bias.raw(), y.buffer().raw()],
        groups,
    )
}

/// Depthwise convolution: `cin == cout`, weight `[c][k][k]`, bias `[c]`.
/// Activations f32 or f16 (`T`); weights, bias and sums f32.
pub fn prepare_depthwise<T: GpuTensor>(
    ctx: &Context,
    s: &ConvShape,
    x: &T,
    weight: &GpuBuffer,
    bias: &GpuBuffer,
    y: &T,
    act: Activation,
) -> Result<Dispatch> {
    if s.cin != s.cout {
        return Err(Error::Shape(format!(
            "depthwise needs cin == cout, got {} and {}",
            s.cin, s.cout
        )));
    }
    let p = params(s, x, y)?;
    check_len(weight, s.cout * s.k * s.k, "depthwise weight")?;
    check_len(bias, s.cout, "depthwise bias")?;
    let u = ctx.uniform(&p, "depthwise params");
    let groups = conv_groups(ctx, s, &p, 1)?;
    let kernel = if T::F16 { &DEPTHWISE_F16 } else { &DEPTHWISE };
    let key = PipelineKey::new(kernel, &conv_consts(act, s));
    ctx.prepare(
        &key,
        &[&u, x.buffer().raw(), weight.raw(), bias.raw(), y.buffer().raw()],
        groups,
    )
}

/// Global average pooling of `[c, h*w]` into `[c, 1]` (f32 or f16 activations,
/// f32 sums).
pub fn prepare_avgpool<T: GpuTensor>(ctx: &Context, x: &T, h: usize, w: usize, y: &T) -> Result<Dispatch> {
    if h * w == 0 || x.cols() != h * w || y.rows() != x.rows() || y.cols() != 1 {
        return Err(Error::Shape(format!(
            "average pooling of {}x{} ({h}x{w} pixels) into {}x{}",
            x.rows(),
            x.cols(),
            y.rows(),
            y.cols()
        )));
    }
    let p = Params {
        cin: x.rows() as u32,
        cout: x.rows() as u32,
        h: h as u32,
        w: w as u32,
        oh: 1,
        ow: 1,
        k: 1,
        stride: 1,
        pad_top: 0,
        pad_left: 0,
        in_stride: x.stride() as u32,
        out_stride: y.stride() as u32,
    };
    let u = ctx.uniform(&p, "avgpool params");
    let groups = ctx.fold_groups((x.rows() as u32).div_ceil(64))?;
    let kernel = if T::F16 { &AVGPOOL_F16 } else { &AVGPOOL };
    let key = PipelineKey::new(kernel, &consts(Activation::None, false));
    let dummy = ctx.dummy_buffer();
    ctx.prepare(&key, &[&u, x.buffer().raw(), &dummy, &dummy, y.buffer().raw()], groups)
}

/// Every activation with the kernel sizes and strides of the networks here
/// (and 7x7), as [`conv_consts`] builds them.
fn conv_specialisations() -> Vec<Constants> {
    let mut v = Vec::new();
    for act in [Activation::None, Activation::Relu, Activation::Relu6] {
        for k in [1u32, 3, 5, 7] {
            for stride in [1u32, 2] {
                let [b, a] = consts(act, true);
                v.push(vec![b, a, ("K", k), ("STRIDE", stride)]);
            }
        }
    }
    v
}

fn avgpool_specialisations() -> Vec<Constants> {
    vec![consts(Activation::None, false).to_vec()]
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{Constants, KernelDef, WgslSource, RO, RW, UNIFORM};

const CONV_WGSL: &str = include_str!("conv.wgsl");
// `conv.wgsl` with f16 activations (`alias T = f16;`, gpu::wgsl::expand).
crate::gpu::wgsl::generated!(conv_f16_source, CONV_WGSL, &[("T", "f16")]);

pub static CONV2D: KernelDef =
    KernelDef::new("conv2d", WgslSource::File(CONV_WGSL), &[UNIFORM, RO, RO, RO, RW]).specialised(conv_specialisations);
pub static DEPTHWISE: KernelDef = KernelDef::new("depthwise", WgslSource::File(CONV_WGSL), &[UNIFORM, RO, RO, RO, RW])
    .specialised(conv_specialisations);
pub static AVGPOOL: KernelDef = KernelDef::new("avgpool", WgslSource::File(CONV_WGSL), &[UNIFORM, RO, RO, RO, RW])
    .specialised(avgpool_specialisations);
pub static CONV2D_F16: KernelDef = CONV2D.f16_twin("conv2d_f16", conv_f16_source);
pub static DEPTHWISE_F16: KernelDef = DEPTHWISE.f16_twin("depthwise_f16", conv_f16_source);
pub static AVGPOOL_F16: KernelDef = AVGPOOL.f16_twin("avgpool_f16", conv_f16_source);
pub const KERNELS: &[&KernelDef] = &[&CONV2D, &DEPTHWISE, &AVGPOOL, &CONV2D_F16, &DEPTHWISE_F16, &AVGPOOL_F16];
