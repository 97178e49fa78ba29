//! Elementwise kernels (`elementwise.wgsl`).

use crate::error::Result;

use super::{Context, Dispatch, GpuBuffer, PipelineKey};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FillParams {
    len: u32,
    value: u32,
    _pad: [u32; 2],
}

/// Records a fill of every 32-bit word of `buf` with `bits` into `enc`.
pub fn encode_fill(ctx: &Context, enc: &mut wgpu::CommandEncoder, buf: &GpuBuffer, bits: u32) -> Result<()> {
    let len = (buf.bytes() / 4) as u32;
    let params = FillParams {
        len,
        value: bits,
        _pad: [0; 2],
    };
    let u = ctx.uniform(&params, "fill params");
    let groups = ctx.fold_groups(len.div_ceil(256))?;
    ctx.encode(enc, &PipelineKey::new(&FILL, &[]), &[&u, buf.raw()], groups)
}

/// A prepared fill of every 32-bit word of `buf` with `bits`, to record among
/// other dispatches (plans zero their scratch this way, inside their pass).
pub(crate) fn prepare_fill(ctx: &Context, buf: &GpuBuffer, bits: u32) -> Result<Dispatch> {
    let len = (buf.bytes() / 4) as u32;
    let params = FillParams {
        len,
        value: bits,
        _pad: [0; 2],
    };
    let u = ctx.uniform(&params, "fill params");
    let groups = ctx.fold_groups(len.div_ceil(256))?;
    ctx.prepare(&PipelineKey::new(&FILL, &[]), &[&u, buf.raw()], groups)
}

/// Fills `buf` with the f32 `value` (e.g. NaN to poison an output).
pub fn fill_f32(ctx: &Context, buf: &GpuBuffer, value: f32) -> Result<()> {
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fill") });
    encode_fill(ctx, &mut enc, buf, value.to_bits())?;
    ctx.queue().submit([enc.finish()]);
    Ok(())
}

/// Prepares `dst += src` over the whole of `dst` (both the same size, f32).
pub fn prepare_add(ctx: &Context, dst: &GpuBuffer, src: &GpuBuffer) -> Result<super::Dispatch> {
    add(ctx, dst, src, &ADD)
}

/// Prepares `dst += src` over two buffers of f16 values (both the same size, a
/// whole number of 32-bit words: [`super::GpuMatrixF16`] buffers are).
pub fn prepare_add_f16(ctx: &Context, dst: &GpuBuffer, src: &GpuBuffer) -> Result<super::Dispatch> {
    add(ctx, dst, src, &ADD_F16)
}

fn add(ctx: &Context, dst: &GpuBuffer, src: &GpuBuffer, kernel: &'static KernelDef) -> Result<super::Dispatch> {
    if src.bytes() != dst.bytes() {
        return Err(crate::Error::Shape(format!(
            "add: {} bytes into {} bytes",
            src.bytes(),
            dst.bytes()
        )));
    }
    let len = (dst.bytes() / 4) as u32;
    let params = FillParams {
        len,
        value: 0,
        _pad: [0; 2],
    };
    let u = ctx.uniform(&params, "add params");
    let groups = ctx.fold_groups(len.div_ceil(256))?;
    ctx.prepare(&PipelineKey::new(kernel, &[]), &[&u, dst.raw(), src.raw()], groups)
}

/// Fills `buf` with the f16 `value` in every half (e.g. NaN to poison an f16
/// output; the buffer is written in whole 32-bit words).
pub fn fill_f16(ctx: &Context, buf: &GpuBuffer, value: half::f16) -> Result<()> {
    let h = value.to_bits() as u32;
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fill") });
    encode_fill(ctx, &mut enc, buf, h | (h << 16))?;
    ctx.queue().submit([enc.finish()]);
    Ok(())
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{KernelDef, WgslSource, RO, RW, UNIFORM};

const ELEMENTWISE_WGSL: &str = include_str!("elementwise.wgsl");
pub static FILL: KernelDef = KernelDef::new("fill", WgslSource::File(ELEMENTWISE_WGSL), &[UNIFORM, RW]);
pub static ADD: KernelDef = KernelDef::new("add", WgslSource::File(ELEMENTWISE_WGSL), &[UNIFORM, RW, RO]);
pub static ADD_F16: KernelDef = KernelDef::new("add_f16", WgslSource::File(ELEMENTWISE_WGSL), &[UNIFORM, RW, RO]);
pub const KERNELS: &[&KernelDef] = &[&FILL, &ADD, &ADD_F16];
