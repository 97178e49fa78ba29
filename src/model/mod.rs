//! EfficientNet-Lite0 (ImageNet) on the CPU side: the pretrained weights
//! ([`fetch`], [`pth`], [`weights`]), the network as a list of layers with
//! BatchNorm folded ([`Lite0`]), image preprocessing ([`preprocess`]), the CPU
//! reference forward pass ([`cpu_forward`]) and class names ([`classes`]).
//!
//! ```no_run
//! # fn main() -> wgsparse::Result<()> {
//! use wgsparse::model::{classes, cpu_forward, preprocess, Lite0, INPUT_SIZE};
//! let net = Lite0::from_safetensors(&std::fs::read("cache/lite0.safetensors").unwrap())?;
//! let x = preprocess::preprocess(&std::fs::read("cache/images/chelsea.png").unwrap(), INPUT_SIZE)?;
//! for p in classes::top_k(&cpu_forward::forward(&net, &x)?, 5) {
//!     println!("{:>5.1}% {}", p.prob * 100.0, p.name);
//! }
//! # Ok(()) }
//! ```

pub mod budget;
pub mod calibrate;
pub mod classes;
pub mod cpu_forward;
#[cfg(not(target_arch = "wasm32"))]
pub mod fetch;
pub mod gpu;
pub mod gpu_f16;
pub mod lite0;
pub mod preprocess;
pub mod pth;
pub mod sparse_file;
pub mod sweep;
pub mod weights;

pub use calibrate::LayerCalib;
pub use classes::{top_k, Prediction};
pub use gpu::{
    now_ms, Classification, Criterion, Dispatching, GpuLite0, KernelPolicy, LayerReport, ModelReport, PruneSpec, Scope,
};
pub use gpu_f16::{F16LayerReport, F16Report, GpuLite0F16};
pub use lite0::{
    Activation, Classifier, Conv, Depthwise, Layer, Lite0, Op, Padding, Pointwise, Shape, INPUT_SIZE, NUM_CLASSES,
};
pub use weights::{Weights, BN_EPS};
