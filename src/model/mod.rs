//! EfficientNet-Lite0 (ImageNet) on the CPU side.

pub mod pth;
