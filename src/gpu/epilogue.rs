//! The fused epilogue shared by the GEMM and SpMM kernels: `y = act(acc + bias[row])`.
//!
//! In WGSL every product kernel declares `override HAS_BIAS: bool` and
//! `override ACT: u32` (0 none, 1 ReLU, 2 ReLU6) and binds a bias buffer (a
//! one-word dummy when there is no bias), so one compiled pipeline exists per
//! (tile, epilogue) and no branch depends on data.

use crate::error::{Error, Result};

use super::{Context, GpuBuffer};

/// Activation applied after the bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
}

impl Activation {
    /// The value of the WGSL `ACT` override.
    pub fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        }
    }
    /// The same on the CPU (for references).
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }
}

/// What to do with each output after accumulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// One value per output row (`rows` floats).
    pub bias: Option<&'a GpuBuffer>,
    pub act: Activation,
}

impl Epilogue<'_> {
    /// The override constants for this epilogue.
    pub fn constants(&self) -> [(&'static str, u32); 2] {
        [("HAS_BIAS", self.bias.is_some() as u32), ("ACT", self.act.code())]
    }
    /// The buffer to bind as bias: the real one (length checked against `rows`)
    /// or a one-word dummy.
    pub fn bias_buffer(&self, ctx: &Context, rows: usize) -> Result<wgpu::Buffer> {
        match self.bias {
            Some(b) => {
                if b.bytes() < 4 * rows as u64 {
                    return Err(Error::Shape(format!(
                        "bias has {} floats, the output has {rows} rows",
                        b.bytes() / 4
                    )));
                }
                Ok(b.raw().clone())
            }
            None => Ok(ctx.dummy_buffer()),
        }
    }
}
