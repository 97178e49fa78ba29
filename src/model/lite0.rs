//! EfficientNet-Lite0 as a flat list of layers that a CPU loop or a GPU plan
//! walks in order.
//!
//! # Tensors
//! Every activation is channel-major `[C, H*W]` (batch 1). Tensors are numbered:
//! tensor 0 is the preprocessed image `[3, 224*224]`; layer `i` reads tensor `i`
//! and writes tensor `i + 1`; the last tensor is the logits `[1000, 1]`. The only
//! non-chain edge is a residual: a [`Pointwise`] with `residual_from: Some(t)`
//! adds tensor `t` (same shape as its output) after its bias and activation —
//! `t` is always the input of the same block's first layer, so a plan keeps
//! that one buffer alive across the block.
//!
//! # Architecture (Lite0: width 1.0, depth 1.0, no squeeze-excitation, ReLU6)
//! stem 3x3/2 conv 3->32, then 16 MBConv blocks (stages as
//! `repeats x (kernel, stride, expand, out)`): 1x(3,1,1,16), 2x(3,2,6,24),
//! 2x(5,2,6,40), 3x(3,2,6,80), 3x(5,1,6,112), 4x(5,2,6,192), 1x(3,1,6,320);
//! head 1x1 320->1280, global average pool, classifier 1280->1000. A block is
//! `[expand 1x1 + ReLU6] -> depthwise kxk/s + ReLU6 -> project 1x1 (linear)
//! [+ input]`; block 0 (expand ratio 1) has no expand layer; the residual
//! exists when stride is 1 and input and output channels agree.
//!
//! # Padding
//! TensorFlow "SAME", as the checkpoint was trained with (it is a conversion of
//! the official TF Lite0 checkpoint, and the lukemelas port pads statically the
//! same way): output = ceil(in / stride), total padding
//! `max((out - 1) * stride + k - in, 0)`, the smaller half before (top/left)
//! and the larger after (bottom/right). At 224x224 every stride-2 layer pads
//! asymmetrically: 3x3/2 gets (0, 1), 5x5/2 gets (1, 2); stride 1 is symmetric.
//! Symmetric PyTorch-style padding `k/2` misclassifies (see the crate report).

use std::fmt;

use super::weights::Weights;
use crate::error::{Error, Result};
use crate::sparse::Matrix;

/// The input resolution this checkpoint was trained and evaluated at.
pub const INPUT_SIZE: usize = 224;
/// Output channels of the stem convolution (fixed in the Lite variants).
pub const STEM_CHANNELS: usize = 32;
/// Output channels of the head 1x1 convolution (fixed in the Lite variants).
pub const HEAD_CHANNELS: usize = 1280;
/// ImageNet classes.
pub const NUM_CLASSES: usize = 1000;

/// One stage of MBConv blocks: `(repeats, kernel, stride, expand_ratio, out_channels)`.
pub const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// A `[C, H, W]` activation shape; stored channel-major as `[C, H*W]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Number of values, `C * H * W`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// Zero padding of a spatial convolution, in input pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    /// TensorFlow "SAME" padding for an `h x w` input: output `ceil(in / stride)`.
    pub fn same(h: usize, w: usize, k: usize, stride: usize) -> (Padding, usize, usize) {
        let axis = |n: usize| {
            let out = n.div_ceil(stride);
            let total = ((out - 1) * stride + k).saturating_sub(n);
            (total / 2, total - total / 2, out)
        };
        let (top, bottom, oh) = axis(h);
        let (left, right, ow) = axis(w);
        (
            Padding {
                top,
                left,
                bottom,
                right,
            },
            oh,
            ow,
        )
    }
}

/// The activation applied after the bias: the kernels' own type (the
/// network uses `None` and `Relu6`), so the GPU plan takes it as it is.
pub use crate::gpu::Activation;

/// A dense spatial convolution (the stem).
#[derive(Clone, Debug)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: Padding,
    /// `[cout, cin*k*k]`, column `(ci * k + ky) * k + kx` (PyTorch OIHW flattened), BN folded.
    pub weight: Matrix,
    /// `[cout]`, BN folded.
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// A depthwise convolution: channel `c` of the output sees only channel `c` of the input.
#[derive(Clone, Debug)]
pub struct Depthwise {
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: Padding,
    /// `[c, k*k]`, column `ky * k + kx`, BN folded.
    pub weight: Matrix,
    /// `[c]`, BN folded.
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// A 1x1 convolution, `Y[cout, HW] = act(W[cout, cin] X[cin, HW] + b) (+ residual)`:
/// the layers worth pruning.
#[derive(Clone, Debug)]
pub struct Pointwise {
    pub cin: usize,
    pub cout: usize,
    /// `[cout, cin]`, BN folded.
    pub weight: Matrix,
    /// `[cout]`, BN folded.
    pub bias: Vec<f32>,
    pub act: Activation,
    /// Tensor id to add after the activation (see the module docs).
    pub residual_from: Option<usize>,
}

/// The final fully connected layer on the pooled features.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// `[classes, features]` = `[1000, 1280]`.
    pub weight: Matrix,
    /// `[classes]`.
    pub bias: Vec<f32>,
}

/// What a layer computes.
#[derive(Clone, Debug)]
pub enum Op {
    Conv(Conv),
    Depthwise(Depthwise),
    Pointwise(Pointwise),
    /// Global average over `H*W`: `[C, HW] -> [C, 1]`.
    Pool,
    Classifier(Classifier),
}

/// One layer: reads tensor `i`, writes tensor `i + 1` (see the module docs).
#[derive(Clone, Debug)]
pub struct Layer {
    /// Stable name: `stem`, `blocks.N.expand`, `blocks.N.depthwise`,
    /// `blocks.N.project`, `head`, `pool`, `classifier`.
    pub name: String,
    /// Prefix of its weights in the checkpoint (`_blocks.3._expand_conv`); empty for `pool`.
    pub key: String,
    pub input: Shape,
    pub output: Shape,
    pub op: Op,
}

impl Layer {
    /// Number of weights and biases.
    pub fn params(&self) -> usize {
        match &self.op {
            Op::Conv(c) => c.weight.data().len() + c.bias.len(),
            Op::Depthwise(d) => d.weight.data().len() + d.bias.len(),
            Op::Pointwise(p) => p.weight.data().len() + p.bias.len(),
            Op::Pool => 0,
            Op::Classifier(c) => c.weight.data().len() + c.bias.len(),
        }
    }

    /// Multiply-accumulates for one image.
    pub fn macs(&self) -> usize {
        let hw = self.output.hw();
        match &self.op {
            Op::Conv(c) => c.weight.data().len() * hw,
            Op::Depthwise(d) => d.weight.data().len() * hw,
            Op::Pointwise(p) => p.weight.data().len() * hw,
            Op::Pool => 0,
            Op::Classifier(c) => c.weight.data().len(),
        }
    }

    /// The weight matrix of a prunable layer (pointwise or classifier).
    pub fn prunable_weight(&self) -> Option<&Matrix> {
        match &self.op {
            Op::Pointwise(p) => Some(&p.weight),
            Op::Classifier(c) => Some(&c.weight),
            _ => None,
        }
    }

    /// Mutable access to the weight matrix of a prunable layer.
    pub fn prunable_weight_mut(&mut self) -> Option<&mut Matrix> {
        match &mut self.op {
            Op::Pointwise(p) => Some(&mut p.weight),
            Op::Classifier(c) => Some(&mut c.weight),
            _ => None,
        }
    }
}

/// EfficientNet-Lite0 with BatchNorm folded, ready to run layer by layer.
#[derive(Clone, Debug)]
pub struct Lite0 {
    /// The input it was built for, `[3, H, W]`.
    pub input: Shape,
    pub layers: Vec<Layer>,
}

fn matrix(rows: usize, cols: usize, data: Vec<f32>) -> Result<Matrix> {
    Matrix::new(rows, cols, data)
}

impl Lite0 {
    /// Parses safetensors bytes and builds the network for 224x224 input.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        Self::from_weights(&Weights::from_bytes(bytes)?, INPUT_SIZE, INPUT_SIZE)
    }

    /// Builds the network for an `h x w` input, folding BatchNorm. Padding is
    /// computed for that size (TensorFlow SAME); every missing or misshapen
    /// tensor is an error that names it.
    pub fn from_weights(wts: &Weights, h: usize, w: usize) -> Result<Self> {
        if h < 32 || w < 32 {
            return Err(Error::shape(format!(
                "input {h}x{w} is too small: Lite0 needs at least 32x32"
            )));
        }
        let mut layers = Vec::new();
        let input = Shape { c: 3, h, w };
        let mut cur = input;

        // Stem.
        let (pad, oh, ow) = Padding::same(cur.h, cur.w, 3, 2);
        let (wt, bias) = wts.folded("_conv_stem", &[STEM_CHANNELS, 3, 3, 3], "_bn0")?;
        let out = Shape {
            c: STEM_CHANNELS,
            h: oh,
            w: ow,
        };
        layers.push(Layer {
            name: "stem".into(),
            key: "_conv_stem".into(),
            input: cur,
            output: out,
            op: Op::Conv(Conv {
                cin: 3,
                cout: STEM_CHANNELS,
                k: 3,
                stride: 2,
                pad,
                weight: matrix(STEM_CHANNELS, 27, wt)?,
                bias,
                act: Activation::Relu6,
            }),
        });
        cur = out;

        let mut block = 0;
        for &(repeats, k, stage_stride, expand, cout) in &STAGES {
            for r in 0..repeats {
                let stride = if r == 0 { stage_stride } else { 1 };
                let cin = cur.c;
                // Tensor id of this block's input: the output of the last layer pushed.
                let block_input = layers.len();
                let mid = cin * expand;
                let p = format!("_blocks.{block}");
                if expand != 1 {
                    let (wt, bias) =
                        wts.folded(&format!("{p}._expand_conv"), &[mid, cin, 1, 1], &format!("{p}._bn0"))?;
                    let out = Shape { c: mid, ..cur };
                    layers.push(Layer {
                        name: format!("blocks.{block}.expand"),
                        key: format!("{p}._expand_conv"),
                        input: cur,
                        output: out,
                        op: Op::Pointwise(Pointwise {
                            cin,
                            cout: mid,
                            weight: matrix(mid, cin, wt)?,
                            bias,
                            act: Activation::Relu6,
                            residual_from: None,
                        }),
                    });
                    cur = out;
                }
                let (pad, oh, ow) = Padding::same(cur.h, cur.w, k, stride);
                let (wt, bias) = wts.folded(&format!("{p}._depthwise_conv"), &[mid, 1, k, k], &format!("{p}._bn1"))?;
                let out = Shape { c: mid, h: oh, w: ow };
                layers.push(Layer {
                    name: format!("blocks.{block}.depthwise"),
                    key: format!("{p}._depthwise_conv"),
                    input: cur,
                    output: out,
                    op: Op::Depthwise(Depthwise {
                        c: mid,
                        k,
                        stride,
                        pad,
                        weight: matrix(mid, k * k, wt)?,
                        bias,
                        act: Activation::Relu6,
                    }),
                });
                cur = out;
                let (wt, bias) = wts.folded(&format!("{p}._project_conv"), &[cout, mid, 1, 1], &format!("{p}._bn2"))?;
                let out = Shape { c: cout, ..cur };
                let residual = stride == 1 && cin == cout;
                layers.push(Layer {
                    name: format!("blocks.{block}.project"),
                    key: format!("{p}._project_conv"),
                    input: cur,
                    output: out,
                    op: Op::Pointwise(Pointwise {
                        cin: mid,
                        cout,
                        weight: matrix(cout, mid, wt)?,
                        bias,
                        act: Activation::None,
                        residual_from: residual.then_some(block_input),
                    }),
                });
                cur = out;
                block += 1;
            }
        }

        // Head, pool, classifier.
        let (wt, bias) = wts.folded("_conv_head", &[HEAD_CHANNELS, cur.c, 1, 1], "_bn1")?;
        let out = Shape {
            c: HEAD_CHANNELS,
            ..cur
        };
        layers.push(Layer {
            name: "head".into(),
            key: "_conv_head".into(),
            input: cur,
            output: out,
            op: Op::Pointwise(Pointwise {
                cin: cur.c,
                cout: HEAD_CHANNELS,
                weight: matrix(HEAD_CHANNELS, cur.c, wt)?,
                bias,
                act: Activation::Relu6,
                residual_from: None,
            }),
        });
        cur = out;
        let pooled = Shape {
            c: HEAD_CHANNELS,
            h: 1,
            w: 1,
        };
        layers.push(Layer {
            name: "pool".into(),
            key: String::new(),
            input: cur,
            output: pooled,
            op: Op::Pool,
        });
        let fc_w = wts.tensor("_fc.weight", &[NUM_CLASSES, HEAD_CHANNELS])?;
        let fc_b = wts.tensor("_fc.bias", &[NUM_CLASSES])?;
        layers.push(Layer {
            name: "classifier".into(),
            key: "_fc".into(),
            input: pooled,
            output: Shape {
                c: NUM_CLASSES,
                h: 1,
                w: 1,
            },
            op: Op::Classifier(Classifier {
                weight: matrix(NUM_CLASSES, HEAD_CHANNELS, fc_w)?,
                bias: fc_b,
            }),
        });
        Ok(Lite0 { input, layers })
    }

    /// Shape of tensor `t` (0 = input, `i + 1` = output of layer `i`).
    pub fn tensor_shape(&self, t: usize) -> Option<Shape> {
        if t == 0 {
            Some(self.input)
        } else {
            self.layers.get(t - 1).map(|l| l.output)
        }
    }

    /// Per-layer `(name, output shape)`, in execution order.
    pub fn output_shapes(&self) -> Vec<(&str, Shape)> {
        self.layers.iter().map(|l| (l.name.as_str(), l.output)).collect()
    }

    /// Indices of the layer with this name.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }

    /// Indices of the 1x1 convolutions (expand, project, head), in order.
    pub fn pointwise_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| matches!(self.layers[i].op, Op::Pointwise(_)))
            .collect()
    }

    /// Total weights and biases.
    pub fn params(&self) -> usize {
        self.layers.iter().map(Layer::params).sum()
    }

    /// Total multiply-accumulates for one image.
    pub fn macs(&self) -> usize {
        self.layers.iter().map(Layer::macs).sum()
    }
}

impl fmt::Display for Lite0 {
    /// One line per layer: index, name, op, input and output shapes, residual.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>3} {:<22} {:<18} {:>14} -> {:<14} {:>9}",
            "#", "layer", "op", "input", "output", "params"
        )?;
        for (i, l) in self.layers.iter().enumerate() {
            let op = match &l.op {
                Op::Conv(c) => format!("conv {0}x{0}/{1}", c.k, c.stride),
                Op::Depthwise(d) => format!("dw {0}x{0}/{1}", d.k, d.stride),
                Op::Pointwise(p) => match p.residual_from {
                    Some(t) => format!("1x1 + t{t}"),
                    None => "1x1".into(),
                },
                Op::Pool => "avgpool".into(),
                Op::Classifier(_) => "fc".into(),
            };
            writeln!(
                f,
                "{i:>3} {:<22} {op:<18} {:>14} -> {:<14} {:>9}",
                l.name,
                l.input.to_string(),
                l.output.to_string(),
                l.params()
            )?;
        }
        write!(
            f,
            "{} layers, {} parameters, {} MACs",
            self.layers.len(),
            self.params(),
            self.macs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        let p = |t, l, b, r| Padding {
            top: t,
            left: l,
            bottom: b,
            right: r,
        };
        assert_eq!(Padding::same(224, 224, 3, 2), (p(0, 0, 1, 1), 112, 112));
        assert_eq!(Padding::same(56, 56, 5, 2), (p(1, 1, 2, 2), 28, 28));
        assert_eq!(Padding::same(14, 14, 5, 1), (p(2, 2, 2, 2), 14, 14));
        assert_eq!(Padding::same(7, 8, 3, 2), (p(1, 0, 1, 1), 4, 4));
        assert_eq!(Padding::same(7, 7, 1, 1), (p(0, 0, 0, 0), 7, 7));
    }
}
