//! wgsparse: pruned neural networks that actually run faster, on any GPU that
//! speaks WebGPU.
//!
//! - [`sparse`]: the formats (CSR, BSR, N:M) and the dense [`Matrix`].
//! - [`prune`]: magnitude pruning on the CPU, the reference for the GPU kernels.
//! - [`reference`]: CPU reference GEMM/SpMM.
//! - [`gpu`]: the wgpu [`Context`](gpu::Context), pipeline cache and kernels.
//! - [`model`]: EfficientNet-Lite0: weights, BN folding, layers, preprocessing, CPU forward.

pub mod backend;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod cuda;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod import;
pub mod model;
pub mod ops;
pub mod prune;
pub mod reference;
pub mod sparse;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
pub use sparse::{Bsr, Csr, Mask, Matrix, NmMatrix, Pattern, SparseMatrix};
