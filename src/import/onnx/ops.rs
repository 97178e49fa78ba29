//! ONNX nodes to typed [`Op`]s: attributes read with their types checked,
//! defaults per the operator spec, and the opset-dependent forms (attributes
//! that became inputs, changed defaults) resolved here.

use std::collections::HashMap;
use std::path::Path;

use super::proto::{attribute_type as at, AttributeProto, NodeProto};
use super::{dtype_of, sparse_to_dense, tensor_from_proto};
use crate::error::{Error, Result};
use crate::graph::{Activation, AutoPad, BinaryOp, ConvAttrs, Op, PadMode, PoolAttrs, SliceAttrs, Tensor};

/// The ONNX operators the importer accepts (default domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LRN",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

struct Attrs<'a> {
    node: &'a str,
    op: &'a str,
    map: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn new(np: &'a NodeProto, node: &'a str) -> Attrs<'a> {
        Attrs {
            node,
            op: &np.op_type,
            map: np.attribute.iter().map(|a| (a.name.as_str(), a)).collect(),
        }
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::BadNode {
            node: self.node.to_string(),
            op: self.op.to_string(),
            detail: detail.into(),
        }
    }

    fn get(&self, name: &str, ty: i32) -> Result<Option<&'a AttributeProto>> {
        match self.map.get(name) {
            None => Ok(None),
            // IR version 1 left `type` unset; trust the field then.
            Some(a) if a.r#type == ty || a.r#type == 0 => Ok(Some(*a)),
            Some(a) => Err(self.err(format!(
                "attribute '{name}' has type {} where type {ty} is expected",
                a.r#type
            ))),
        }
    }

    fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.get(name, at::INT)?.map_or(default, |a| a.i))
    }

    fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.get(name, at::FLOAT)?.map_or(default, |a| a.f))
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.get(name, at::INTS)?.map(|a| a.ints.clone()))
    }

    fn usizes(&self, name: &str) -> Result<Vec<usize>> {
        match self.ints(name)? {
            None => Ok(Vec::new()),
            Some(v) => v
                .iter()
                .map(|&x| {
                    usize::try_from(x).map_err(|_| self.err(format!("attribute '{name}' has the negative entry {x}")))
                })
                .collect(),
        }
    }

    fn string(&self, name: &str, default: &str) -> Result<String> {
        Ok(self
            .get(name, at::STRING)?
            .map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool> {
        Ok(self.int(name, default as i64)? != 0)
    }

    fn auto_pad(&self) -> Result<AutoPad> {
        match self.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => Ok(AutoPad::NotSet),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            "VALID" => Ok(AutoPad::Valid),
            other => Err(self.err(format!("unknown auto_pad '{other}'"))),
        }
    }
}

fn pool_attrs(a: &Attrs, average: bool) -> Result<PoolAttrs> {
    let kernel_shape = a.usizes("kernel_shape")?;
    if kernel_shape.is_empty() {
        return Err(a.err("kernel_shape is required"));
    }
    Ok(PoolAttrs {
        kernel_shape,
        strides: a.usizes("strides")?,
        dilations: a.usizes("dilations")?,
        pads: a.usizes("pads")?,
        auto_pad: a.auto_pad()?,
        ceil_mode: a.bool("ceil_mode", false)?,
        count_include_pad: average && a.bool("count_include_pad", false)?,
    })
}

/// The typed op of a node at the model's opset.
pub(super) fn parse_op(np: &NodeProto, name: &str, opset: i64, base: Option<&Path>) -> Result<Op> {
    let a = Attrs::new(np, name);
    let outputs = np.output.iter().filter(|o| !o.is_empty()).count();
    let single_output = |op: Op| -> Result<Op> {
        if np.output.len() > 1 && np.output[1..].iter().any(|o| !o.is_empty()) {
            Err(a.err(format!(
                "has {outputs} outputs; only the first is supported (inference form)"
            )))
        } else {
            Ok(op)
        }
    };
    let act = |x: Activation| single_output(Op::Activation(x));
    match np.op_type.as_str() {
        "Conv" => single_output(Op::Conv(ConvAttrs {
            kernel_shape: a.ints("kernel_shape")?.map(|_| a.usizes("kernel_shape")).transpose()?,
            strides: a.usizes("strides")?,
            dilations: a.usizes("dilations")?,
            pads: a.usizes("pads")?,
            auto_pad: a.auto_pad()?,
            group: usize::try_from(a.int("group", 1)?).map_err(|_| a.err("negative group"))?,
        })),
        "Gemm" => single_output(Op::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.bool("transA", false)?,
            trans_b: a.bool("transB", false)?,
        }),
        "MatMul" => single_output(Op::MatMul),
        "BatchNormalization" => {
            if a.bool("training_mode", false)? {
                return Err(a.err("training_mode = 1 is not supported (inference only)"));
            }
            if opset < 9 && !a.bool("spatial", true)? {
                return Err(a.err("spatial = 0 (per-element statistics) is not supported"));
            }
            single_output(Op::BatchNormalization {
                epsilon: a.float("epsilon", 1e-5)?,
            })
        }
        "Relu" => act(Activation::Relu),
        "Sigmoid" => act(Activation::Sigmoid),
        "Tanh" => act(Activation::Tanh),
        "HardSwish" => act(Activation::HardSwish),
        "HardSigmoid" => act(Activation::HardSigmoid {
            alpha: a.float("alpha", 0.2)?,
            beta: a.float("beta", 0.5)?,
        }),
        "LeakyRelu" => act(Activation::LeakyRelu {
            alpha: a.float("alpha", 0.01)?,
        }),
        "Clip" if opset < 11 => act(Activation::Clip {
            min: a.float("min", f32::NEG_INFINITY)?,
            max: a.float("max", f32::INFINITY)?,
        }),
        "Clip" => single_output(Op::Clip),
        "Add" => single_output(Op::Binary(BinaryOp::Add)),
        "Sub" => single_output(Op::Binary(BinaryOp::Sub)),
        "Mul" => single_output(Op::Binary(BinaryOp::Mul)),
        "Div" => single_output(Op::Binary(BinaryOp::Div)),
        "Sum" => single_output(Op::Sum),
        "MaxPool" => {
            if np.output.len() > 1 && !np.output[1].is_empty() {
                return Err(a.err("the Indices output is not supported"));
            }
            single_output(Op::MaxPool(pool_attrs(&a, false)?))
        }
        "AveragePool" => single_output(Op::AveragePool(pool_attrs(&a, true)?)),
        "GlobalAveragePool" => single_output(Op::GlobalAveragePool),
        "GlobalMaxPool" => single_output(Op::GlobalMaxPool),
        "ReduceMean" => single_output(Op::ReduceMean {
            axes: if opset < 18 { a.ints("axes")? } else { None },
            keepdims: a.bool("keepdims", true)?,
            noop_with_empty_axes: opset >= 18 && a.bool("noop_with_empty_axes", false)?,
        }),
        "Flatten" => single_output(Op::Flatten {
            axis: a.int("axis", 1)?,
        }),
        "Reshape" if opset < 5 => Err(a.err("Reshape-1 (shape as an attribute) is not supported")),
        "Reshape" => single_output(Op::Reshape {
            allowzero: a.bool("allowzero", false)?,
        }),
        "Transpose" => single_output(Op::Transpose { perm: a.ints("perm")? }),
        "Squeeze" => single_output(Op::Squeeze {
            axes: if opset < 13 { a.ints("axes")? } else { None },
        }),
        "Unsqueeze" if opset < 13 => single_output(Op::Unsqueeze {
            axes: Some(a.ints("axes")?.ok_or_else(|| a.err("axes is required"))?),
        }),
        "Unsqueeze" => single_output(Op::Unsqueeze { axes: None }),
        "Concat" => single_output(Op::Concat {
            axis: match a.get("axis", at::INT)? {
                Some(x) => x.i,
                None if opset < 4 => 1,
                None => return Err(a.err("axis is required")),
            },
        }),
        "Slice" if opset < 10 => single_output(Op::Slice {
            attrs: Some(SliceAttrs {
                starts: a.ints("starts")?.ok_or_else(|| a.err("starts is required"))?,
                ends: a.ints("ends")?.ok_or_else(|| a.err("ends is required"))?,
                axes: a.ints("axes")?,
            }),
        }),
        "Slice" => single_output(Op::Slice { attrs: None }),
        "Pad" => {
            let mode = match a.string("mode", "constant")?.as_str() {
                "constant" => PadMode::Constant,
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                "wrap" => PadMode::Wrap,
                other => {
                    return Err(a.err(format!(
                        "pad mode '{other}' is not supported (constant, reflect, edge, wrap)"
                    )))
                }
            };
            if opset < 11 {
                let pads = match a.ints("pads")? {
                    Some(p) => p,
                    None => a.ints("paddings")?.ok_or_else(|| a.err("pads is required"))?,
                };
                single_output(Op::Pad {
                    mode,
                    pads: Some(pads),
                    value: a.float("value", 0.0)?,
                })
            } else {
                single_output(Op::Pad {
                    mode,
                    pads: None,
                    value: 0.0,
                })
            }
        }
        "Softmax" => single_output(Op::Softmax {
            axis: a.int("axis", if opset < 13 { 1 } else { -1 })?,
            legacy: opset < 13,
        }),
        "Identity" => single_output(Op::Identity),
        "Dropout" => {
            if opset < 7 && a.get("is_test", at::INT)?.is_some_and(|x| x.i == 0) {
                return Err(a.err("is_test = 0 (training) is not supported"));
            }
            Ok(Op::Dropout)
        }
        "Cast" => {
            let to = a.get("to", at::INT)?.ok_or_else(|| a.err("'to' is required"))?;
            single_output(Op::Cast {
                to: dtype_of(to.i as i32, &format!("Cast node '{name}' target"))?,
            })
        }
        "Shape" => single_output(Op::Shape {
            start: a.int("start", 0)?,
            end: a.get("end", at::INT)?.map(|x| x.i),
        }),
        "Gather" => single_output(Op::Gather {
            axis: a.int("axis", 0)?,
        }),
        "ConstantOfShape" => {
            let value = match a.get("value", at::TENSOR)?.and_then(|x| x.t.as_ref()) {
                Some(t) => tensor_from_proto(t, base)?,
                None => Tensor::scalar_f32(0.0),
            };
            if value.len() != 1 {
                return Err(a.err("value must hold exactly one element"));
            }
            single_output(Op::ConstantOfShape { value })
        }
        "LRN" => {
            let size = a.get("size", at::INT)?.ok_or_else(|| a.err("size is required"))?.i;
            single_output(Op::Lrn {
                size: usize::try_from(size)
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| a.err("size must be positive"))?,
                alpha: a.float("alpha", 1e-4)?,
                beta: a.float("beta", 0.75)?,
                bias: a.float("bias", 1.0)?,
            })
        }
        other => Err(Error::UnsupportedOp {
            op: other.to_string(),
            domain: if np.domain.is_empty() {
                "ai.onnx".into()
            } else {
                np.domain.clone()
            },
            node: name.to_string(),
            supported: SUPPORTED_OPS.join(", "),
        }),
    }
}

/// The value of a Constant node.
pub(super) fn constant_value(np: &NodeProto, name: &str, base: Option<&Path>) -> Result<Tensor> {
    let a = Attrs::new(np, name);
    if let Some(t) = a.get("value", at::TENSOR)?.and_then(|x| x.t.as_ref()) {
        return tensor_from_proto(t, base);
    }
    if let Some(st) = a
        .get("sparse_value", at::SPARSE_TENSOR)?
        .and_then(|x| x.sparse_tensor.as_ref())
    {
        return Ok(sparse_to_dense(st, base)?.1);
    }
    if let Some(x) = a.get("value_float", at::FLOAT)? {
        return Ok(Tensor::scalar_f32(x.f));
    }
    if let Some(x) = a.get("value_floats", at::FLOATS)? {
        return Tensor::from_f32(vec![x.floats.len()], x.floats.clone());
    }
    if let Some(x) = a.get("value_int", at::INT)? {
        return Tensor::from_i64(vec![], vec![x.i]);
    }
    if let Some(x) = a.get("value_ints", at::INTS)? {
        return Ok(Tensor::vec_i64(x.ints.clone()));
    }
    if a.map.contains_key("value_string") || a.map.contains_key("value_strings") {
        return Err(Error::UnsupportedDtype {
            what: format!("Constant node '{name}'"),
            dtype: "STRING".into(),
        });
    }
    Err(a.err("has no value attribute"))
}
