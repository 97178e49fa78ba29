//! NVIDIA sparse tensor cores for 2:4 sparsity.
//!
//! - [`pack`]: the compressed layout and its CPU reference (always built).
//! - With the `cuda` feature: [`CudaRuntime`] (cudarc, libraries loaded at run
//!   time), our `mma.sp` SpMM and GPU compression compiled by NVRTC from
//!   `src/cuda/sparse24.cu`, cuBLAS dense, and cuSPARSELt for comparison.

pub mod pack;
#[cfg(feature = "cuda")]
mod runtime;
#[cfg(feature = "cuda")]
pub use runtime::{choose_tile, CudaRuntime, Device24, DeviceHalf, Probe, Tile, SOURCE, TILES, TILES_SM90};
#[cfg(feature = "cuda")]
pub mod bench;
#[cfg(feature = "cuda")]
pub mod cusparselt;
