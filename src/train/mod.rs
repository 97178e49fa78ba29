//! Sparse fine-tuning by distillation on the GPU (issue: accuracy that
//! survives the sparsities that are fast). [`Trainer`] runs the whole loop in
//! WGSL on any adapter — augmentation, teacher and student forward passes,
//! the distillation and feature-matching losses, back-propagation through
//! every layer type of EfficientNet-Lite0, masked AdamW, and re-pruning on
//! the GPU for the gradual schedule; [`checkpoint`] saves and resumes it;
//! [`reference`](mod@reference) holds the CPU references the kernels are tested against.

pub mod checkpoint;
pub mod data;
pub mod kernels;
pub mod reference;
#[cfg(not(target_arch = "wasm32"))]
pub mod run;
mod trainer;

pub use data::{Augment, Rng, Sources};
pub use trainer::{StepMetrics, TrainConfig, Trainer};
