//! The GPU side: one [`Context`] owning adapter, device and queue; a pipeline
//! cache keyed by kernel and specialisation; matrices on the GPU; one file per
//! kernel family (the `.wgsl` of the same name lives in `shaders/`).

mod buffer;
mod context;
pub mod elementwise;
mod pipeline;

pub use buffer::{GpuBuffer, GpuMatrix};
pub use context::{AdapterSummary, Context, FeatureSet};
pub use pipeline::{Binding, Kernel, PipelineKey};
