//! The GPU side: one [`Context`] owning adapter, device and queue; a pipeline
//! cache keyed by kernel and specialisation; matrices on the GPU; one file per
//! kernel family (the `.wgsl` of the same name lives in `shaders/`).

mod buffer;
pub mod calibrate;
mod context;
pub mod conv;
pub mod elementwise;
mod epilogue;
mod formats;
pub mod gemm;
pub mod gemm_coop;
pub mod gemm_f16;
mod pipeline;
pub mod prune;
mod prune_block;
mod prune_nm;
mod prune_select;
pub mod spmm_bsr;
pub mod spmm_bsr_coop;
pub mod spmm_bsr_f16;
pub mod spmm_csr;
pub mod spmm_nm;
pub mod spmm_nm_coop;
mod timing;

pub use buffer::{
    f16_rounded, padded_stride, padded_stride_f16, read_many, GpuBuffer, GpuMatrix, GpuMatrixF16, GpuTensor,
};
pub use context::{AdapterSummary, Context, CoopConfig, Dispatch, FeatureSet};
pub use epilogue::{Activation, Epilogue};
pub use formats::{longest_first, GpuBsr, GpuBsrF16, GpuCsr, GpuNm};
pub use pipeline::{Binding, Kernel, PipelineKey, ShaderChecks};
pub use prune::{prune_block, prune_global, prune_nm, prune_unstructured, PrunePlan};
#[cfg(not(target_arch = "wasm32"))]
pub use prune::{prune_block_blocking, prune_global_blocking, prune_nm_blocking, prune_unstructured_blocking};
pub use timing::{TimingSource, Timings};
