//! The GPU side: one [`Context`] owning adapter, device and queue; a pipeline
//! cache keyed by kernel descriptor and specialisation; matrices on the GPU;
//! one folder per kernel family (`gemm/`, `spmm_bsr/`, `spmm_nm/`,
//! `spmm_csr/`, `conv/`, `conv_gemm/`, `prune/`, `elementwise/`, `calibrate/`) holding its
//! host code, its kernel descriptors ([`KernelDef`]) and its WGSL. A family's
//! f32 / f16 / cooperative-matrix variants come from one source through
//! [`wgsl::expand`], with the snippets of `common/` (epilogue, cooperative core).

mod buffer;
pub mod calibrate;
mod context;
pub mod conv;
pub mod conv_gemm;
pub mod elementwise;
mod epilogue;
pub mod gemm;
mod kernel;
pub mod prune;
pub mod spmm_bsr;
pub mod spmm_csr;
pub mod spmm_nm;
mod timing;
pub mod tune;
pub mod wgsl;

pub use buffer::{
    f16_rounded, padded_stride, padded_stride_f16, read_many, GpuBuffer, GpuMatrix, GpuMatrixF16, GpuTensor,
};
pub use context::{AdapterSummary, Context, CoopConfig, Dispatch, FeatureSet};
pub use epilogue::{Activation, Epilogue};
pub use kernel::{
    across_epilogues, epilogue_variants, epilogues_only, registry, Binding, Constants, KernelDef, Needs, PipelineKey,
    ShaderChecks, WgslSource,
};
pub(crate) use kernel::{RO, RW, UNIFORM};
pub use prune::{prune_block, prune_global, prune_nm, prune_unstructured, PrunePlan};
#[cfg(not(target_arch = "wasm32"))]
pub use prune::{prune_block_blocking, prune_global_blocking, prune_nm_blocking, prune_unstructured_blocking};
pub use spmm_bsr::{longest_first, GpuBsr, GpuBsrF16};
pub use spmm_csr::GpuCsr;
pub use spmm_nm::GpuNm;
pub use timing::{TimingSource, Timings};
