//! The CPU reference executor: plain loops, f32 tensors with f64
//! accumulation in every sum (convolution, products, pooling, means,
//! softmax). It is the oracle the GPU ops are tested against, and it checks
//! each node's output against the shape inferred at load.

use std::collections::{BTreeMap, HashMap};

use super::op::{Activation, BinaryOp, Epilogue, Op, PadMode, PoolAttrs};
use super::shape::{self, Window};
use super::tensor::{flatten_axis, map_data, norm_axis, numel, strides, DType, Tensor, TensorData};
use super::{Graph, Node};
use crate::error::{Error, Result};

/// Runs a prepared graph on named inputs and returns its outputs in the
/// graph's order. Names, dtypes and shapes of the inputs are checked first.
pub fn run(graph: &Graph, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
    let expected = graph.input_names();
    let mut env: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in inputs {
        let decl = graph
            .inputs
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| Error::InputName {
                name: name.clone(),
                problem: "is not an input of the graph",
                expected: expected.clone(),
            })?;
        let info = graph.info(&name)?;
        if t.dtype() != decl.dtype {
            return Err(Error::InputDtype {
                name,
                expected: decl.dtype.name().to_string(),
                got: t.dtype().name().to_string(),
            });
        }
        if t.shape() != info.shape.as_slice() {
            return Err(Error::InputShape {
                name,
                expected: info.shape.clone(),
                got: t.shape().to_vec(),
            });
        }
        if env.insert(name.clone(), t).is_some() {
            return Err(Error::InputName {
                name,
                problem: "is given twice",
                expected,
            });
        }
    }
    if let Some(missing) = graph.inputs.iter().find(|i| !env.contains_key(&i.name)) {
        return Err(Error::InputName {
            name: missing.name.clone(),
            problem: "is missing",
            expected,
        });
    }
    // Free each value after its last reader.
    let mut last_use: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for v in node.reads() {
            last_use.insert(v, i);
        }
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let outs = {
            let lookup = |v: &str| env.get(v).or_else(|| graph.constants.get(v));
            let mut ins = Vec::with_capacity(node.inputs.len());
            for v in &node.inputs {
                if v.is_empty() {
                    ins.push(None);
                } else {
                    ins.push(Some(lookup(v).ok_or_else(|| Error::UndefinedValue {
                        node: node.name.clone(),
                        value: v.clone(),
                    })?));
                }
            }
            let bias = node.epilogue.bias.as_deref().and_then(lookup);
            let residual = node.epilogue.residual.as_deref().and_then(lookup);
            let outs = eval_node_with(node, &ins, bias, residual)?;
            for (name, t) in node.outputs.iter().zip(&outs) {
                if name.is_empty() {
                    continue;
                }
                let info = graph.info(name)?;
                if info.shape != t.shape() || info.dtype != t.dtype() {
                    return Err(node.err(format!(
                        "produced {} {:?} for '{name}' but {} {:?} was inferred (a bug)",
                        t.dtype(),
                        t.shape(),
                        info.dtype,
                        info.shape
                    )));
                }
            }
            outs
        };
        for (name, t) in node.outputs.iter().zip(outs) {
            if !name.is_empty() {
                env.insert(name.clone(), t);
            }
        }
        for v in node.reads() {
            if last_use.get(v) == Some(&i) && !graph.outputs.iter().any(|o| o == v) {
                env.remove(v);
            }
        }
    }
    graph
        .outputs
        .iter()
        .map(|o| {
            let t = env
                .get(o)
                .or_else(|| graph.constants.get(o))
                .cloned()
                .ok_or_else(|| Error::UndefinedValue {
                    node: "(graph output)".into(),
                    value: o.clone(),
                })?;
            Ok((o.clone(), t))
        })
        .collect()
}

/// Evaluates one node whose epilogue operands (if any) are constants.
pub fn eval_node(node: &Node, ins: &[Option<&Tensor>], consts: &BTreeMap<String, Tensor>) -> Result<Vec<Tensor>> {
    let bias = node.epilogue.bias.as_deref().and_then(|b| consts.get(b));
    let residual = node.epilogue.residual.as_deref().and_then(|b| consts.get(b));
    eval_node_with(node, ins, bias, residual)
}

fn eval_node_with(
    node: &Node,
    ins: &[Option<&Tensor>],
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> Result<Vec<Tensor>> {
    let need = |i: usize| -> Result<&Tensor> {
        ins.get(i)
            .copied()
            .flatten()
            .ok_or_else(|| node.err(format!("input {i} is required")))
    };
    let opt = |i: usize| ins.get(i).copied().flatten();
    let ints = |i: usize| -> Result<Option<Vec<i64>>> {
        opt(i)
            .map(|t| t.to_i64s(&format!("input {i} of node '{}'", node.name)))
            .transpose()
    };
    let wrap = |e: Error| match e {
        Error::Shape(m) => node.err(m),
        other => other,
    };
    let single = |t: Result<Tensor>| t.map(|t| vec![t]);
    let out: Result<Vec<Tensor>> = (|| match &node.op {
        Op::Conv(attrs) => {
            let y = conv(need(0)?, need(1)?, opt(2), attrs)?;
            single(epilogue(y, &node.epilogue, bias, residual, 1))
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let y = gemm(need(0)?, need(1)?, opt(2), *alpha, *beta, *trans_a, *trans_b)?;
            let last = y.shape().len() - 1;
            single(epilogue(y, &node.epilogue, bias, residual, last))
        }
        Op::MatMul => {
            let y = matmul(need(0)?, need(1)?)?;
            let last = y.shape().len().saturating_sub(1);
            single(epilogue(y, &node.epilogue, bias, residual, last))
        }
        Op::BatchNormalization { epsilon } => {
            single(batch_norm(need(0)?, need(1)?, need(2)?, need(3)?, need(4)?, *epsilon))
        }
        Op::Activation(a) => single(map_f32(need(0)?, |x| a.apply(x))),
        Op::Clip => single(clip(need(0)?, opt(1), opt(2))),
        Op::Binary(op) => single(binary(*op, need(0)?, need(1)?)),
        Op::Sum => {
            let mut acc = need(0)?.clone();
            for i in 1..ins.len() {
                acc = binary(BinaryOp::Add, &acc, need(i)?)?;
            }
            single(Ok(acc))
        }
        Op::MaxPool(attrs) => {
            let x = need(0)?;
            match x.dtype() {
                // Max selects an input value, so 8-bit integers pool exactly through f32.
                DType::U8 | DType::I8 => {
                    let y = pool(&cast(x, DType::F32)?, attrs, PoolKind::Max)?;
                    single(cast(&y, x.dtype()))
                }
                _ => single(pool(x, attrs, PoolKind::Max)),
            }
        }
        Op::AveragePool(attrs) => single(pool(need(0)?, attrs, PoolKind::Average)),
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let x = need(0)?;
            let kernel = x.shape().get(2..).unwrap_or(&[]).to_vec();
            let attrs = PoolAttrs {
                kernel_shape: kernel,
                strides: vec![],
                dilations: vec![],
                pads: vec![],
                auto_pad: super::op::AutoPad::NotSet,
                ceil_mode: false,
                count_include_pad: false,
            };
            let kind = if matches!(node.op, Op::GlobalMaxPool) {
                PoolKind::Max
            } else {
                PoolKind::Average
            };
            single(pool(x, &attrs, kind))
        }
        Op::ReduceMean {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => ints(1)?,
            };
            single(reduce_mean(need(0)?, axes.as_deref(), *keepdims, *noop_with_empty_axes))
        }
        Op::Flatten { axis } => {
            let x = need(0)?;
            let a = flatten_axis(*axis, x.shape().len())?;
            let s = vec![numel(&x.shape()[..a])?, numel(&x.shape()[a..])?];
            single(x.clone().reshaped(s))
        }
        Op::Reshape { allowzero } => {
            let x = need(0)?;
            let target = ints(1)?.ok_or_else(|| node.err("needs a shape input"))?;
            let s = shape::reshape_target(x.shape(), &target, *allowzero)?;
            single(x.clone().reshaped(s))
        }
        Op::Transpose { perm } => single(transpose(need(0)?, perm.as_deref())),
        Op::Squeeze { axes } => {
            let x = need(0)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => ints(1)?,
            };
            let s = shape::squeeze_shape(x.shape(), axes.as_deref())?;
            single(x.clone().reshaped(s))
        }
        Op::Unsqueeze { axes } => {
            let x = need(0)?;
            let axes = match axes {
                Some(a) => a.clone(),
                None => ints(1)?.ok_or_else(|| node.err("needs axes"))?,
            };
            let s = shape::unsqueeze_shape(x.shape(), &axes)?;
            single(x.clone().reshaped(s))
        }
        Op::Concat { axis } => {
            let parts = (0..ins.len()).map(need).collect::<Result<Vec<_>>>()?;
            single(concat(&parts, *axis))
        }
        Op::Slice { attrs } => {
            let x = need(0)?;
            let (starts, ends, axes, steps) = match attrs {
                Some(sa) => (sa.starts.clone(), sa.ends.clone(), sa.axes.clone(), None),
                None => (
                    ints(1)?.ok_or_else(|| node.err("needs starts"))?,
                    ints(2)?.ok_or_else(|| node.err("needs ends"))?,
                    ints(3)?,
                    ints(4)?,
                ),
            };
            let ranges = shape::slice_ranges(x.shape(), &starts, &ends, axes.as_deref(), steps.as_deref())?;
            single(slice(x, &ranges))
        }
        Op::Pad { mode, pads, value } => {
            let x = need(0)?;
            let (pads, axes) = match pads {
                Some(p) => (p.clone(), None),
                None => (ints(1)?.ok_or_else(|| node.err("needs pads"))?, ints(3)?),
            };
            let amounts = shape::pad_amounts(x.shape().len(), &pads, axes.as_deref())?;
            let fill = match opt(2) {
                Some(v) => v
                    .data()
                    .to_f64_vec()
                    .first()
                    .copied()
                    .ok_or_else(|| Error::shape("Pad constant_value is empty"))?,
                None => *value as f64,
            };
            single(pad(x, &amounts, *mode, fill))
        }
        Op::Softmax { axis, legacy } => single(softmax(need(0)?, *axis, *legacy)),
        Op::Identity => single(Ok(need(0)?.clone())),
        Op::Dropout => {
            let x = need(0)?;
            if let Some(t) = opt(2) {
                if t.data() != &TensorData::Bool(vec![false]) {
                    return Err(node.err("training_mode must be a constant false (inference only)"));
                }
            }
            let mut v = vec![x.clone()];
            if node.outputs.len() > 1 {
                v.push(Tensor::new(x.shape().to_vec(), TensorData::Bool(vec![true; x.len()]))?);
            }
            Ok(v)
        }
        Op::Cast { to } => single(cast(need(0)?, *to)),
        Op::Shape { start, end } => {
            let x = need(0)?;
            let (s, e) = shape::shape_range(x.shape().len(), *start, *end);
            Ok(vec![Tensor::vec_i64(
                x.shape()[s..e].iter().map(|&d| d as i64).collect(),
            )])
        }
        Op::Gather { axis } => single(gather(need(0)?, need(1)?, *axis)),
        Op::ConstantOfShape { value } => {
            let dims = ints(0)?.ok_or_else(|| node.err("needs a shape"))?;
            let s = dims
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| Error::shape(format!("negative dimension {d}"))))
                .collect::<Result<Vec<_>>>()?;
            let n = super::tensor::checked_numel(&s)?;
            single(Tensor::new(s, value.data().repeat_first(n)?))
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => single(lrn(need(0)?, *size, *alpha, *beta, *bias)),
    })();
    out.map_err(wrap)
}

/// Clip with optional scalar bounds of X's type (f32 or an integer type).
fn clip(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Tensor> {
    if let TensorData::F32(_) = x.data() {
        let bound = |t: Option<&Tensor>, default: f32| -> Result<f32> {
            match t {
                None => Ok(default),
                Some(t) => t
                    .f32s("Clip bound")?
                    .first()
                    .copied()
                    .ok_or_else(|| Error::shape("Clip bound is empty")),
            }
        };
        let a = Activation::Clip {
            min: bound(lo, f32::NEG_INFINITY)?,
            max: bound(hi, f32::INFINITY)?,
        };
        return map_f32(x, |v| a.apply(v));
    }
    let bound = |t: Option<&Tensor>, default: i64| -> Result<i64> {
        match t {
            None => Ok(default),
            Some(t) => t
                .to_i64s("Clip bound")?
                .first()
                .copied()
                .ok_or_else(|| Error::shape("Clip bound is empty")),
        }
    };
    let (l, h) = (bound(lo, i64::MIN)?, bound(hi, i64::MAX)?);
    let data = match x.data() {
        TensorData::I64(v) => TensorData::I64(v.iter().map(|&a| a.max(l).min(h)).collect()),
        TensorData::I32(v) => TensorData::I32(v.iter().map(|&a| (a as i64).max(l).min(h) as i32).collect()),
        TensorData::I8(v) => TensorData::I8(v.iter().map(|&a| (a as i64).max(l).min(h) as i8).collect()),
        TensorData::U8(v) => TensorData::U8(v.iter().map(|&a| (a as i64).max(l).min(h) as u8).collect()),
        other => {
            return Err(Error::UnsupportedDtype {
                what: "Clip".into(),
                dtype: other.dtype().name().into(),
            })
        }
    };
    Tensor::new(x.shape().to_vec(), data)
}

fn map_f32(x: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor> {
    let v = x.f32s("activation input")?;
    Tensor::from_f32(x.shape().to_vec(), v.iter().map(|&a| f(a)).collect())
}

/// Applies a fused epilogue: `act(y + bias[c] + residual)`, the bias along `axis`.
pub fn epilogue(
    y: Tensor,
    ep: &Epilogue,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    axis: usize,
) -> Result<Tensor> {
    if ep.is_empty() {
        return Ok(y);
    }
    let shape = y.shape().to_vec();
    let mut v = match y.into_data() {
        TensorData::F32(v) => v,
        other => {
            return Err(Error::UnsupportedDtype {
                what: "epilogue".into(),
                dtype: other.dtype().name().into(),
            })
        }
    };
    if ep.bias.is_some() {
        let b = bias
            .ok_or_else(|| Error::Invalid("epilogue bias is not available".into()))?
            .f32s("epilogue bias")?;
        let c = shape.get(axis).copied().unwrap_or(1);
        if b.len() != c {
            return Err(Error::shape(format!(
                "epilogue bias has {} values for {c} channels",
                b.len()
            )));
        }
        let inner: usize = shape[axis + 1..].iter().product();
        for (i, o) in v.iter_mut().enumerate() {
            *o = (*o as f64 + b[(i / inner) % c] as f64) as f32;
        }
    }
    if ep.residual.is_some() {
        let r = residual.ok_or_else(|| Error::Invalid("epilogue residual is not available".into()))?;
        if r.shape() != shape.as_slice() {
            return Err(Error::shape(format!(
                "residual {:?} for an output {:?}",
                r.shape(),
                shape
            )));
        }
        for (o, &a) in v.iter_mut().zip(r.f32s("residual")?) {
            *o += a;
        }
    }
    if let Some(act) = ep.activation {
        v.iter_mut().for_each(|o| *o = act.apply(*o));
    }
    Tensor::from_f32(shape, v)
}

/// Spatial sizes padded to 3 axes (`[D, H, W]`) so one loop nest serves
/// 1-d, 2-d and 3-d windows.
fn to3(win: &[Window]) -> Result<[Window; 3]> {
    let unit = Window {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        pad_begin: 0,
        pad_end: 0,
        output: 1,
    };
    match win.len() {
        1 => Ok([unit, unit, win[0]]),
        2 => Ok([unit, win[0], win[1]]),
        3 => Ok([win[0], win[1], win[2]]),
        n => Err(Error::shape(format!("{n} spatial axes; 1, 2 and 3 are supported"))),
    }
}

/// Valid output range `[lo, hi)` along one axis for kernel tap `k`: the
/// outputs whose input coordinate `o * s + k * d - pad` lies in the input.
fn valid_range(w: &Window, k: usize) -> (usize, usize) {
    let off = (k * w.dilation) as i64 - w.pad_begin as i64;
    let s = w.stride as i64;
    // o * s + off >= 0  ->  o >= ceil(-off / s)
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    // o * s + off <= input - 1  ->  o <= floor((input - 1 - off) / s)
    let top = w.input as i64 - 1 - off;
    let hi = if top < 0 { 0 } else { top / s + 1 };
    (lo.min(w.output as i64) as usize, hi.min(w.output as i64) as usize)
}

/// N-d convolution (1, 2 or 3 spatial axes), grouped, f64 accumulation.
pub fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, attrs: &super::op::ConvAttrs) -> Result<Tensor> {
    let (win, g, m) = shape::conv_geometry(x.shape(), w.shape(), attrs)?;
    let xd = x.f32s("Conv X")?;
    let wd = w.f32s("Conv W")?;
    let bd = b.map(|t| t.f32s("Conv B")).transpose()?;
    if let Some(bd) = bd {
        if bd.len() != m {
            return Err(Error::shape(format!("Conv bias has {} values, needs {m}", bd.len())));
        }
    }
    let [wd3, wh3, ww3] = to3(&win)?;
    let n = x.shape()[0];
    let c = x.shape()[1];
    let cg = c / g;
    let mg = m / g;
    let in_plane = wd3.input * wh3.input * ww3.input;
    let out_plane = wd3.output * wh3.output * ww3.output;
    let ksize = wd3.kernel * wh3.kernel * ww3.kernel;
    let mut out = vec![0f32; n * m * out_plane];
    let mut acc = vec![0f64; out_plane];
    let ranges: Vec<[(usize, usize); 3]> = (0..ksize)
        .map(|k| {
            let kd = k / (wh3.kernel * ww3.kernel);
            let kh = (k / ww3.kernel) % wh3.kernel;
            let kw = k % ww3.kernel;
            [valid_range(&wd3, kd), valid_range(&wh3, kh), valid_range(&ww3, kw)]
        })
        .collect();
    for ni in 0..n {
        for oc in 0..m {
            let grp = oc / mg;
            acc.iter_mut().for_each(|a| *a = bd.map_or(0.0, |b| b[oc] as f64));
            for ci in 0..cg {
                let ic = grp * cg + ci;
                let xp = &xd[(ni * c + ic) * in_plane..][..in_plane];
                let wp = &wd[(oc * cg + ci) * ksize..][..ksize];
                for (k, &wv) in wp.iter().enumerate() {
                    let wv = wv as f64;
                    let kd = k / (wh3.kernel * ww3.kernel);
                    let kh = (k / ww3.kernel) % wh3.kernel;
                    let kw = k % ww3.kernel;
                    let [(d0, d1), (h0, h1), (w0, w1)] = ranges[k];
                    for od in d0..d1 {
                        let id = od * wd3.stride + kd * wd3.dilation - wd3.pad_begin;
                        for oh in h0..h1 {
                            let ih = oh * wh3.stride + kh * wh3.dilation - wh3.pad_begin;
                            let row = (id * wh3.input + ih) * ww3.input;
                            let arow = (od * wh3.output + oh) * ww3.output;
                            if w0 >= w1 {
                                continue;
                            }
                            // First input column read; valid_range keeps it >= 0.
                            let iw0 = w0 * ww3.stride + kw * ww3.dilation - ww3.pad_begin;
                            let dst = &mut acc[arow + w0..arow + w1];
                            if ww3.stride == 1 {
                                let src = &xp[row + iw0..row + iw0 + (w1 - w0)];
                                for (d, &s) in dst.iter_mut().zip(src) {
                                    *d += wv * s as f64;
                                }
                            } else {
                                let src = xp[row + iw0..].iter().step_by(ww3.stride);
                                for (d, &s) in dst.iter_mut().zip(src) {
                                    *d += wv * s as f64;
                                }
                            }
                        }
                    }
                }
            }
            let o = &mut out[(ni * m + oc) * out_plane..][..out_plane];
            for (dst, &a) in o.iter_mut().zip(&acc) {
                *dst = a as f32;
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(win.iter().map(|w| w.output));
    Tensor::from_f32(shape, out)
}

/// `Y = alpha op(A) op(B) + beta C`, C unidirectionally broadcast.
pub fn gemm(
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let (m, k, n) = shape::gemm_dims(a.shape(), b.shape(), trans_a, trans_b)?;
    let ad = a.f32s("Gemm A")?;
    let bd = b.f32s("Gemm B")?;
    let cidx = match c {
        Some(c) => {
            if shape::broadcast(c.shape(), &[m, n])? != [m, n] {
                return Err(Error::shape(format!(
                    "Gemm C {:?} does not broadcast to [{m}, {n}]",
                    c.shape()
                )));
            }
            Some((c.f32s("Gemm C")?, broadcast_index(&[m, n], c.shape())))
        }
        None => None,
    };
    let mut out = vec![0f32; m * n];
    let mut row = vec![0f64; n];
    for i in 0..m {
        row.iter_mut().for_each(|r| *r = 0.0);
        for p in 0..k {
            let av = if trans_a { ad[p * m + i] } else { ad[i * k + p] } as f64;
            if trans_b {
                for (j, r) in row.iter_mut().enumerate() {
                    *r += av * bd[j * k + p] as f64;
                }
            } else {
                for (r, &bv) in row.iter_mut().zip(&bd[p * n..(p + 1) * n]) {
                    *r += av * bv as f64;
                }
            }
        }
        for j in 0..n {
            let mut v = alpha as f64 * row[j];
            if let Some((cd, ci)) = &cidx {
                v += beta as f64 * cd[ci[i * n + j]] as f64;
            }
            out[i * n + j] = v as f32;
        }
    }
    Tensor::from_f32(vec![m, n], out)
}

/// numpy matmul with batch broadcasting.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out_shape = shape::matmul_shape(a.shape(), b.shape())?;
    let a2: Vec<usize> = if a.shape().len() == 1 {
        vec![1, a.shape()[0]]
    } else {
        a.shape().to_vec()
    };
    let b2: Vec<usize> = if b.shape().len() == 1 {
        vec![b.shape()[0], 1]
    } else {
        b.shape().to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let n = b2[b2.len() - 1];
    let batch = shape::broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let nb = numel(&batch)?;
    let ia = broadcast_index(&batch, &a2[..a2.len() - 2]);
    let ib = broadcast_index(&batch, &b2[..b2.len() - 2]);
    let ad = a.f32s("MatMul A")?;
    let bd = b.f32s("MatMul B")?;
    let mut out = vec![0f32; nb * m * n];
    let mut row = vec![0f64; n];
    for bi in 0..nb {
        let ap = &ad[ia[bi] * m * k..][..m * k];
        let bp = &bd[ib[bi] * k * n..][..k * n];
        for i in 0..m {
            row.iter_mut().for_each(|r| *r = 0.0);
            for p in 0..k {
                let av = ap[i * k + p] as f64;
                for (r, &bv) in row.iter_mut().zip(&bp[p * n..(p + 1) * n]) {
                    *r += av * bv as f64;
                }
            }
            for (o, &r) in out[(bi * m + i) * n..][..n].iter_mut().zip(&row) {
                *o = r as f32;
            }
        }
    }
    Tensor::from_f32(out_shape, out)
}

/// Inference BatchNormalization over axis 1.
pub fn batch_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, mean: &Tensor, var: &Tensor, eps: f32) -> Result<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(Error::shape("BatchNormalization needs [N, C, ...]"));
    }
    let c = s[1];
    let p = [
        scale.f32s("scale")?,
        bias.f32s("B")?,
        mean.f32s("mean")?,
        var.f32s("var")?,
    ];
    if p.iter().any(|v| v.len() != c) {
        return Err(Error::shape(format!(
            "BatchNormalization parameters must have {c} values"
        )));
    }
    let inner: usize = s[2..].iter().product();
    let xd = x.f32s("X")?;
    let out = xd
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner.max(1)) % c;
            let inv = 1.0 / (p[3][ch] as f64 + eps as f64).sqrt();
            ((v as f64 - p[2][ch] as f64) * inv * p[0][ch] as f64 + p[1][ch] as f64) as f32
        })
        .collect();
    Tensor::from_f32(s.to_vec(), out)
}

/// For each flat index of `out` (a broadcast shape), the flat index into a
/// tensor of shape `input` that numpy broadcasting reads.
pub fn broadcast_index(out: &[usize], input: &[usize]) -> Vec<usize> {
    let r = out.len();
    let total: usize = out.iter().product();
    let in_strides = strides(input);
    // Stride of each output axis in the input (0 where broadcast).
    let mut st = vec![0usize; r];
    for i in 0..input.len() {
        let oi = r - input.len() + i;
        if input[i] != 1 {
            st[oi] = in_strides[i];
        }
    }
    let mut idx = Vec::with_capacity(total);
    let mut coord = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..total {
        idx.push(cur);
        for ax in (0..r).rev() {
            coord[ax] += 1;
            cur += st[ax];
            if coord[ax] < out[ax] {
                break;
            }
            cur -= st[ax] * coord[ax];
            coord[ax] = 0;
        }
    }
    idx
}

/// Element arithmetic of one type; integer division by zero is an error.
trait Arith: Copy {
    fn op(self, other: Self, op: BinaryOp) -> Result<Self>;
}

impl Arith for f32 {
    fn op(self, b: f32, op: BinaryOp) -> Result<f32> {
        Ok(match op {
            BinaryOp::Add => self + b,
            BinaryOp::Sub => self - b,
            BinaryOp::Mul => self * b,
            BinaryOp::Div => self / b,
        })
    }
}

impl Arith for f64 {
    fn op(self, b: f64, op: BinaryOp) -> Result<f64> {
        Ok(match op {
            BinaryOp::Add => self + b,
            BinaryOp::Sub => self - b,
            BinaryOp::Mul => self * b,
            BinaryOp::Div => self / b,
        })
    }
}

macro_rules! int_arith {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn op(self, b: $t, op: BinaryOp) -> Result<$t> {
                Ok(match op {
                    BinaryOp::Add => self.wrapping_add(b),
                    BinaryOp::Sub => self.wrapping_sub(b),
                    BinaryOp::Mul => self.wrapping_mul(b),
                    BinaryOp::Div => {
                        if b == 0 {
                            return Err(Error::Invalid("integer division by zero".into()));
                        }
                        // C semantics (truncation), as ONNX Runtime.
                        self.wrapping_div(b)
                    }
                })
            }
        }
    )*};
}
int_arith!(i64, i32, i8, u8);

fn zip_op<T: Arith>(x: &[T], y: &[T], ia: &[usize], ib: &[usize], op: BinaryOp) -> Result<Vec<T>> {
    ia.iter().zip(ib).map(|(&i, &j)| x[i].op(y[j], op)).collect()
}

/// Add/Sub/Mul/Div with numpy broadcasting.
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let s = shape::broadcast(a.shape(), b.shape())?;
    let ia = broadcast_index(&s, a.shape());
    let ib = broadcast_index(&s, b.shape());
    use TensorData as D;
    let data = match (a.data(), b.data()) {
        (D::F32(x), D::F32(y)) => D::F32(zip_op(x, y, &ia, &ib, op)?),
        (D::F64(x), D::F64(y)) => D::F64(zip_op(x, y, &ia, &ib, op)?),
        (D::I64(x), D::I64(y)) => D::I64(zip_op(x, y, &ia, &ib, op)?),
        (D::I32(x), D::I32(y)) => D::I32(zip_op(x, y, &ia, &ib, op)?),
        (D::I8(x), D::I8(y)) => D::I8(zip_op(x, y, &ia, &ib, op)?),
        (D::U8(x), D::U8(y)) => D::U8(zip_op(x, y, &ia, &ib, op)?),
        (x, y) => {
            return Err(Error::UnsupportedDtype {
                what: format!("{op:?} of {} and {}", x.dtype(), y.dtype()),
                dtype: x.dtype().name().into(),
            })
        }
    };
    Tensor::new(s, data)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PoolKind {
    Max,
    Average,
}

/// Max/average pooling over 1-3 spatial axes.
fn pool(x: &Tensor, attrs: &PoolAttrs, kind: PoolKind) -> Result<Tensor> {
    let win = shape::pool_geometry(x.shape(), attrs)?;
    let xd = x.f32s("pool input")?;
    let [a, b, c] = to3(&win)?;
    let (n, ch) = (x.shape()[0], x.shape()[1]);
    let in_plane = a.input * b.input * c.input;
    let out_plane = a.output * b.output * c.output;
    let mut out = Vec::with_capacity(n * ch * out_plane);
    // Window positions inside the padded input (count_include_pad) along one axis.
    let padded = |w: &Window, o: usize, k: usize| -> bool {
        let p = o * w.stride + k * w.dilation;
        p < w.input + w.pad_begin + w.pad_end
    };
    let inside = |w: &Window, o: usize, k: usize| -> Option<usize> {
        let p = (o * w.stride + k * w.dilation) as i64 - w.pad_begin as i64;
        (p >= 0 && (p as usize) < w.input).then_some(p as usize)
    };
    for plane in 0..n * ch {
        let xp = &xd[plane * in_plane..][..in_plane];
        for od in 0..a.output {
            for oh in 0..b.output {
                for ow in 0..c.output {
                    let mut max = f32::NEG_INFINITY;
                    let mut nan = false;
                    let mut sum = 0f64;
                    let mut count = 0usize;
                    let mut count_pad = 0usize;
                    for kd in 0..a.kernel {
                        for kh in 0..b.kernel {
                            for kw in 0..c.kernel {
                                if padded(&a, od, kd) && padded(&b, oh, kh) && padded(&c, ow, kw) {
                                    count_pad += 1;
                                }
                                let (Some(id), Some(ih), Some(iw)) =
                                    (inside(&a, od, kd), inside(&b, oh, kh), inside(&c, ow, kw))
                                else {
                                    continue;
                                };
                                let v = xp[(id * b.input + ih) * c.input + iw];
                                nan |= v.is_nan();
                                max = max.max(v);
                                sum += v as f64;
                                count += 1;
                            }
                        }
                    }
                    out.push(match kind {
                        PoolKind::Max if nan => f32::NAN,
                        PoolKind::Max => max,
                        PoolKind::Average => {
                            let div = if attrs.count_include_pad { count_pad } else { count };
                            if div == 0 {
                                0.0
                            } else {
                                (sum / div as f64) as f32
                            }
                        }
                    });
                }
            }
        }
    }
    let mut s = vec![n, ch];
    s.extend(win.iter().map(|w| w.output));
    Tensor::from_f32(s, out)
}

/// Mean over `axes` (all when `None`/empty unless `noop_with_empty_axes`).
pub fn reduce_mean(x: &Tensor, axes: Option<&[i64]>, keepdims: bool, noop: bool) -> Result<Tensor> {
    if axes.is_none_or(|a| a.is_empty()) && noop {
        return Ok(x.clone());
    }
    let s = x.shape();
    let red = shape::reduce_axes(s.len(), axes)?;
    let kept: Vec<usize> = s
        .iter()
        .enumerate()
        .map(|(i, &d)| if red.contains(&i) { 1 } else { d })
        .collect();
    let xd = x.f32s("ReduceMean input")?;
    let nout = numel(&kept)?;
    let mut acc = vec![0f64; nout];
    // Output index of each input element: its coordinates with reduced axes at 0.
    let ks = strides(&kept);
    let mut coord = vec![0usize; s.len()];
    for &v in xd {
        let o: usize = coord
            .iter()
            .zip(&ks)
            .enumerate()
            .map(|(ax, (&c, &st))| if red.contains(&ax) { 0 } else { c * st })
            .sum();
        acc[o] += v as f64;
        for ax in (0..s.len()).rev() {
            coord[ax] += 1;
            if coord[ax] < s[ax] {
                break;
            }
            coord[ax] = 0;
        }
    }
    let count: usize = red.iter().map(|&a| s[a]).product();
    let out = acc
        .iter()
        .map(|&a| {
            if count == 0 {
                f32::NAN
            } else {
                (a / count as f64) as f32
            }
        })
        .collect();
    let shape = if keepdims {
        kept
    } else {
        s.iter()
            .enumerate()
            .filter(|(i, _)| !red.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    Tensor::from_f32(shape, out)
}

/// Transpose by a permutation (default reversed).
pub fn transpose(x: &Tensor, perm: Option<&[i64]>) -> Result<Tensor> {
    let s = x.shape();
    let p = shape::perm(s.len(), perm)?;
    let out: Vec<usize> = p.iter().map(|&a| s[a]).collect();
    let is = strides(s);
    let total = numel(&out)?;
    let mut idx = Vec::with_capacity(total);
    let mut coord = vec![0usize; out.len()];
    for _ in 0..total {
        idx.push(coord.iter().zip(&p).map(|(&c, &a)| c * is[a]).sum());
        for ax in (0..out.len()).rev() {
            coord[ax] += 1;
            if coord[ax] < out[ax] {
                break;
            }
            coord[ax] = 0;
        }
    }
    Tensor::new(out, x.data().gather(&idx))
}

/// Concatenation along `axis`.
pub fn concat(parts: &[&Tensor], axis: i64) -> Result<Tensor> {
    let first = parts.first().ok_or_else(|| Error::shape("Concat of no inputs"))?;
    let r = first.shape().len();
    let a = norm_axis(axis, r, 0)?;
    let mut out = first.shape().to_vec();
    out[a] = 0;
    for p in parts {
        if p.shape().len() != r
            || p.shape()
                .iter()
                .enumerate()
                .any(|(j, &d)| j != a && d != first.shape()[j])
        {
            return Err(Error::shape(format!(
                "Concat on axis {a} of {:?} and {:?}",
                first.shape(),
                p.shape()
            )));
        }
        out[a] += p.shape()[a];
    }
    let outer: usize = first.shape()[..a].iter().product();
    let mut chunks: Vec<TensorData> = Vec::with_capacity(outer * parts.len());
    for o in 0..outer {
        for p in parts {
            let inner: usize = p.shape()[a..].iter().product();
            let idx: Vec<usize> = (o * inner..(o + 1) * inner).collect();
            chunks.push(p.data().gather(&idx));
        }
    }
    let refs: Vec<&TensorData> = chunks.iter().collect();
    let data = if refs.is_empty() {
        map_data!(first.data(), _v => Vec::new())
    } else {
        TensorData::concat(&refs)?
    };
    Tensor::new(out, data)
}

/// Slice by per-axis `(start, step, count)`.
fn slice(x: &Tensor, ranges: &[(i64, i64, usize)]) -> Result<Tensor> {
    let out: Vec<usize> = ranges.iter().map(|r| r.2).collect();
    let is = strides(x.shape());
    let total = numel(&out)?;
    let mut idx = Vec::with_capacity(total);
    let mut coord = vec![0usize; out.len()];
    for _ in 0..total {
        let i: i64 = coord
            .iter()
            .zip(ranges)
            .zip(&is)
            .map(|((&c, &(s, step, _)), &st)| (s + c as i64 * step) * st as i64)
            .sum();
        idx.push(i as usize);
        for ax in (0..out.len()).rev() {
            coord[ax] += 1;
            if coord[ax] < out[ax] {
                break;
            }
            coord[ax] = 0;
        }
    }
    Tensor::new(out, x.data().gather(&idx))
}

/// Pad (constant / reflect / edge); negative amounts crop.
fn pad(x: &Tensor, amounts: &[(i64, i64)], mode: PadMode, fill: f64) -> Result<Tensor> {
    let s = x.shape();
    let out = shape::padded_shape(s, amounts)?;
    let total = super::tensor::checked_numel(&out)?;
    if mode != PadMode::Constant && s.contains(&0) && total > 0 {
        return Err(Error::shape("reflect/edge padding of an empty axis"));
    }
    if mode == PadMode::Reflect {
        if let Some((ax, _)) = s
            .iter()
            .zip(amounts)
            .enumerate()
            .find(|(_, (&d, &(b, e)))| (b.max(e) as usize) >= d && (b > 0 || e > 0) && d > 1)
        {
            return Err(Error::shape(format!(
                "reflect padding of axis {ax} by {:?} needs fewer pads than its size {}",
                amounts[ax], s[ax]
            )));
        }
    }
    let is = strides(s);
    let mut src: Vec<Option<usize>> = Vec::with_capacity(total);
    let mut coord = vec![0usize; out.len()];
    for _ in 0..total {
        let mut flat = Some(0usize);
        for ax in 0..out.len() {
            let d = s[ax] as i64;
            let mut i = coord[ax] as i64 - amounts[ax].0;
            if i < 0 || i >= d {
                match mode {
                    PadMode::Constant => {
                        flat = None;
                        break;
                    }
                    PadMode::Edge => i = i.clamp(0, d - 1),
                    PadMode::Wrap => i = i.rem_euclid(d),
                    PadMode::Reflect => {
                        if d == 1 {
                            i = 0;
                        } else {
                            let period = 2 * (d - 1);
                            i = i.rem_euclid(period);
                            if i >= d {
                                i = period - i;
                            }
                        }
                    }
                }
            }
            flat = flat.map(|f| f + i as usize * is[ax]);
        }
        src.push(flat);
        for ax in (0..out.len()).rev() {
            coord[ax] += 1;
            if coord[ax] < out[ax] {
                break;
            }
            coord[ax] = 0;
        }
    }
    macro_rules! fill_with {
        ($v:ident, $f:expr) => {
            src.iter().map(|o| o.map_or($f, |i| $v[i])).collect()
        };
    }
    use TensorData as D;
    let data = match x.data() {
        D::F32(v) => D::F32(fill_with!(v, fill as f32)),
        D::F64(v) => D::F64(fill_with!(v, fill)),
        D::I64(v) => D::I64(fill_with!(v, fill as i64)),
        D::I32(v) => D::I32(fill_with!(v, fill as i32)),
        D::I8(v) => D::I8(fill_with!(v, fill as i8)),
        D::U8(v) => D::U8(fill_with!(v, fill as u8)),
        D::F16(v) => D::F16(fill_with!(v, half::f16::from_f64(fill))),
        D::Bool(v) => D::Bool(fill_with!(v, fill != 0.0)),
    };
    Tensor::new(out, data)
}

/// Softmax along `axis`; `legacy` (opset < 13) flattens to 2-d at `axis`.
pub fn softmax(x: &Tensor, axis: i64, legacy: bool) -> Result<Tensor> {
    let s = x.shape();
    let a = norm_axis(axis, s.len(), 0)?;
    let (outer, len, inner) = if legacy {
        (s[..a].iter().product::<usize>(), s[a..].iter().product::<usize>(), 1)
    } else {
        (
            s[..a].iter().product::<usize>(),
            s[a],
            s[a + 1..].iter().product::<usize>(),
        )
    };
    let xd = x.f32s("Softmax input")?;
    let mut out = vec![0f32; xd.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let max = (0..len).map(|j| xd[at(j)] as f64).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..len).map(|j| (xd[at(j)] as f64 - max).exp()).sum();
            for j in 0..len {
                out[at(j)] = ((xd[at(j)] as f64 - max).exp() / sum) as f32;
            }
        }
    }
    Tensor::from_f32(s.to_vec(), out)
}

/// Cast between the supported element types (`as` semantics: float to int
/// truncates toward zero; to bool is `!= 0`).
pub fn cast(x: &Tensor, to: DType) -> Result<Tensor> {
    use TensorData as D;
    macro_rules! conv {
        ($v:expr) => {
            match to {
                DType::F32 => D::F32($v.map(|a| a as f32).collect()),
                DType::F64 => D::F64($v.map(|a| a as f64).collect()),
                DType::I64 => D::I64($v.map(|a| a as i64).collect()),
                DType::I32 => D::I32($v.map(|a| a as i32).collect()),
                DType::I8 => D::I8($v.map(|a| a as i8).collect()),
                DType::U8 => D::U8($v.map(|a| a as u8).collect()),
                // One rounding, from the value itself (f32 and f64 convert exactly to f64).
                DType::F16 => D::F16($v.map(|a| half::f16::from_f64(a as f64)).collect()),
                DType::Bool => D::Bool($v.map(|a| a as f64 != 0.0).collect()),
            }
        };
    }
    let data = match x.data() {
        D::F32(v) => conv!(v.iter().copied()),
        D::F64(v) => conv!(v.iter().copied()),
        D::I64(v) => conv!(v.iter().copied()),
        D::I32(v) => conv!(v.iter().copied()),
        D::I8(v) => conv!(v.iter().copied()),
        D::U8(v) => conv!(v.iter().copied()),
        D::F16(v) => conv!(v.iter().map(|x| x.to_f32())),
        D::Bool(v) => conv!(v.iter().map(|&b| b as u8)),
    };
    Tensor::new(x.shape().to_vec(), data)
}

/// Gather along `axis` (negative indices count from the end).
pub fn gather(x: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor> {
    let s = x.shape();
    let a = norm_axis(axis, s.len(), 0)?;
    let idx = indices.to_i64s("Gather indices")?;
    let d = s[a] as i64;
    let idx: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + d } else { i };
            if j < 0 || j >= d {
                Err(Error::shape(format!(
                    "Gather index {i} is out of range for axis {a} of size {d}"
                )))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_>>()?;
    let outer: usize = s[..a].iter().product();
    let inner: usize = s[a + 1..].iter().product();
    let mut flat = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in &idx {
            let base = (o * s[a] + j) * inner;
            flat.extend(base..base + inner);
        }
    }
    let mut shape = s[..a].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&s[a + 1..]);
    Tensor::new(shape, x.data().gather(&flat))
}

/// LRN across channels: `x / (bias + alpha / size * sum x^2)^beta`.
fn lrn(x: &Tensor, size: usize, alpha: f32, beta: f32, bias: f32) -> Result<Tensor> {
    let s = x.shape();
    if s.len() < 3 || size == 0 {
        return Err(Error::shape("LRN needs [N, C, spatial...] and size >= 1"));
    }
    let (n, c) = (s[0], s[1]);
    let inner: usize = s[2..].iter().product();
    let xd = x.f32s("LRN input")?;
    let lo = (size - 1) / 2;
    let hi = size - 1 - lo;
    let mut out = vec![0f32; xd.len()];
    for ni in 0..n {
        for ch in 0..c {
            let c0 = ch.saturating_sub(lo);
            let c1 = (ch + hi).min(c - 1);
            for i in 0..inner {
                let sq: f64 = (c0..=c1)
                    .map(|k| {
                        let v = xd[(ni * c + k) * inner + i] as f64;
                        v * v
                    })
                    .sum();
                let at = (ni * c + ch) * inner + i;
                let den = (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64);
                out[at] = (xd[at] as f64 / den) as f32;
            }
        }
    }
    Tensor::from_f32(s.to_vec(), out)
}
