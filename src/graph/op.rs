//! The graph's typed operators: each variant carries its attributes already
//! parsed and checked, with the semantics of the opset it was imported from
//! recorded where they differ (Softmax before 13, Clip before 11).

use super::tensor::{DType, Tensor};

/// How a convolution or pooling window is padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    /// Explicit `pads`.
    NotSet,
    /// Output `ceil(in / stride)`, the odd padding at the end.
    SameUpper,
    /// Output `ceil(in / stride)`, the odd padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// Attributes of a convolution (any number of spatial axes).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    /// Kernel spatial shape, if given (else taken from the weight).
    pub kernel_shape: Option<Vec<usize>>,
    /// Per spatial axis; empty = all 1.
    pub strides: Vec<usize>,
    /// Per spatial axis; empty = all 1.
    pub dilations: Vec<usize>,
    /// `[begin..., end...]`; empty = all 0.
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub group: usize,
}

/// Attributes of MaxPool / AveragePool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
    /// AveragePool only: divide by the window including padding.
    pub count_include_pad: bool,
}

/// Elementwise binary arithmetic with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Activations that a Conv/Gemm/MatMul epilogue can apply (and that exist
/// as standalone ops too).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    /// `min(max(x, min), max)`; ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    LeakyRelu {
        alpha: f32,
    },
    /// `x * sigmoid(x)` (SiLU / swish), fused from `Mul(x, Sigmoid(x))`.
    Silu,
}

impl Activation {
    /// Applies the activation to one value (f32 result of an f64 evaluation).
    pub fn apply(self, x: f32) -> f32 {
        let v = x as f64;
        let y = match self {
            Activation::Relu => v.max(0.0),
            Activation::Clip { min, max } => v.max(min as f64).min(max as f64),
            Activation::Sigmoid => sigmoid(v),
            Activation::HardSigmoid { alpha, beta } => (alpha as f64 * v + beta as f64).clamp(0.0, 1.0),
            Activation::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Tanh => v.tanh(),
            Activation::LeakyRelu { alpha } => {
                if v < 0.0 {
                    alpha as f64 * v
                } else {
                    v
                }
            }
            Activation::Silu => v * sigmoid(v),
        };
        if x.is_nan() {
            // max/min/clamp drop NaN; the ONNX ops propagate it.
            return f32::NAN;
        }
        y as f32
    }

    /// The ONNX op this activation is (SiLU: the pair it replaces).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::Clip { .. } => "Clip",
            Activation::Sigmoid => "Sigmoid",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::HardSwish => "HardSwish",
            Activation::Tanh => "Tanh",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::Silu => "Mul(x, Sigmoid(x))",
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// The attribute form of Slice (opset < 10).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceAttrs {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub axes: Option<Vec<i64>>,
}

/// Pad modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// An operator with its attributes. Inputs that ONNX passes as tensors
/// (Reshape's shape, Slice's starts, Clip's bounds from opset 11, ...) stay
/// node inputs; the attribute forms of older opsets are carried here.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Inputs: X, W, optional B.
    Conv(ConvAttrs),
    /// Inputs: A, B, optional C. `Y = alpha op(A) op(B) + beta C`.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// numpy matmul (1-d operands promoted, batch dims broadcast).
    MatMul,
    /// Inference form. Inputs: X, scale, B, mean, var.
    BatchNormalization {
        epsilon: f32,
    },
    /// Standalone activation (Relu, Sigmoid, ...; Clip with constant bounds
    /// from attributes). Clip with bound inputs is [`Op::Clip`].
    Activation(Activation),
    /// Clip from opset 11: inputs X, optional min, optional max.
    Clip,
    Binary(BinaryOp),
    /// n-ary Add with numpy broadcasting.
    Sum,
    MaxPool(PoolAttrs),
    AveragePool(PoolAttrs),
    GlobalAveragePool,
    GlobalMaxPool,
    /// `axes` from the attribute (before opset 18); from 18 the optional second input.
    ReduceMean {
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    Flatten {
        axis: i64,
    },
    /// Inputs: data, shape (a constant known at load).
    Reshape {
        allowzero: bool,
    },
    Transpose {
        perm: Option<Vec<i64>>,
    },
    /// `axes` attribute (before 13) or the optional second input.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    /// `axes` attribute (before 13) or the second input.
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    Concat {
        axis: i64,
    },
    /// Before opset 10 the ranges are attributes (`attrs`), from 10 inputs.
    Slice {
        attrs: Option<SliceAttrs>,
    },
    /// Before opset 11 `pads`/`value` are attributes, from 11 inputs
    /// (pads, optional constant_value, optional axes).
    Pad {
        mode: PadMode,
        pads: Option<Vec<i64>>,
        value: f32,
    },
    /// `legacy`: opset < 13, the input is coerced to 2-d at `axis`.
    Softmax {
        axis: i64,
        legacy: bool,
    },
    Identity,
    /// Inference: output = input; an optional mask output of all true.
    Dropout,
    Cast {
        to: DType,
    },
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Gather {
        axis: i64,
    },
    ConstantOfShape {
        value: Tensor,
    },
    /// Local response normalisation across channels (AlexNet, GoogLeNet).
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
}

impl Op {
    /// The ONNX operator name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::Activation(a) => match a {
                Activation::Silu => "Silu",
                other => other.name(),
            },
            Op::Clip => "Clip",
            Op::Binary(BinaryOp::Add) => "Add",
            Op::Binary(BinaryOp::Sub) => "Sub",
            Op::Binary(BinaryOp::Mul) => "Mul",
            Op::Binary(BinaryOp::Div) => "Div",
            Op::Sum => "Sum",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Pad { .. } => "Pad",
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
            Op::Dropout => "Dropout",
            Op::Cast { .. } => "Cast",
            Op::Shape { .. } => "Shape",
            Op::Gather { .. } => "Gather",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::Lrn { .. } => "LRN",
        }
    }

    /// Whether this op holds weights (the layers sparsity analysis looks at).
    pub fn is_weight_layer(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul)
    }
}

/// What a Conv/Gemm/MatMul node does to its result before writing it:
/// `y = act(acc + bias + residual)`, in that order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    /// A constant added along the output-channel axis (axis 1 for Conv, the
    /// last axis for Gemm/MatMul); fused from a following `Add`.
    pub bias: Option<String>,
    /// A value of the output's shape added before the activation; fused from a
    /// residual `Add` whose other operand is ready before this node.
    pub residual: Option<String>,
    pub activation: Option<Activation>,
}

impl Epilogue {
    pub fn is_empty(&self) -> bool {
        self.bias.is_none() && self.residual.is_none() && self.activation.is_none()
    }
}
