//! Importers: model files to a [`Graph`](crate::graph::Graph).

pub mod onnx;
