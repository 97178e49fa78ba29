//! Static shape inference, one rule per op. The geometry helpers here
//! (windows, broadcasting, reshape targets, slices) are the ones the CPU
//! reference executes with, so inference and execution cannot disagree; the
//! executor additionally checks every output against the inferred shape.

use std::collections::{BTreeMap, HashMap};

use super::op::{AutoPad, BinaryOp, ConvAttrs, Op, PoolAttrs};
use super::tensor::{flatten_axis, norm_axis, numel, DType, Tensor};
use super::{Node, ValueInfo};
use crate::error::{Error, Result};

/// One spatial axis of a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

impl Window {
    /// `(kernel - 1) * dilation + 1`.
    pub fn extent(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1
    }
}

/// The per-axis windows of a convolution/pool over `input` spatial sizes.
#[allow(clippy::too_many_arguments)]
pub fn windows(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<Vec<Window>> {
    let r = input.len();
    let get = |v: &[usize], i: usize, what: &str| -> Result<usize> {
        if v.is_empty() {
            Ok(1)
        } else if v.len() == r {
            Ok(v[i])
        } else {
            Err(Error::shape(format!(
                "{what} has {} entries for {r} spatial axes",
                v.len()
            )))
        }
    };
    if kernel.len() != r {
        return Err(Error::shape(format!(
            "kernel_shape {kernel:?} has {} axes but the input has {r} spatial axes",
            kernel.len()
        )));
    }
    if !pads.is_empty() && pads.len() != 2 * r {
        return Err(Error::shape(format!("pads {pads:?} must have 2 x {r} entries")));
    }
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let (k, s, d) = (kernel[i], get(strides, i, "strides")?, get(dilations, i, "dilations")?);
        if k == 0 || s == 0 || d == 0 {
            return Err(Error::shape(format!(
                "kernel {k}, stride {s} and dilation {d} must all be positive"
            )));
        }
        let extent = (k - 1)
            .checked_mul(d)
            .and_then(|e| e.checked_add(1))
            .ok_or_else(|| Error::Overflow("window extent".into()))?;
        let x = input[i];
        let (pb, pe, o) = match auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => {
                let o = x.div_ceil(s);
                let total = ((o.max(1) - 1) * s + extent).saturating_sub(x);
                let small = total / 2;
                if auto_pad == AutoPad::SameUpper {
                    (small, total - small, o)
                } else {
                    (total - small, small, o)
                }
            }
            AutoPad::Valid | AutoPad::NotSet => {
                let (pb, pe) = if auto_pad == AutoPad::NotSet && !pads.is_empty() {
                    (pads[i], pads[i + r])
                } else {
                    (0, 0)
                };
                let padded = x + pb + pe;
                if padded < extent {
                    return Err(Error::shape(format!(
                        "window extent {extent} (kernel {k}, dilation {d}) exceeds the padded input {padded} on spatial axis {i}"
                    )));
                }
                let span = padded - extent;
                let mut o = if ceil_mode { span.div_ceil(s) } else { span / s } + 1;
                // A last window that would start inside the end padding is dropped.
                if ceil_mode && (o - 1) * s >= x + pb {
                    o -= 1;
                }
                (pb, pe, o)
            }
        };
        out.push(Window {
            input: x,
            kernel: k,
            stride: s,
            dilation: d,
            pad_begin: pb,
            pad_end: pe,
            output: o,
        });
    }
    Ok(out)
}

/// Conv geometry: `(windows, groups, out_channels)` after checking `x` and `w`.
pub fn conv_geometry(x: &[usize], w: &[usize], attrs: &ConvAttrs) -> Result<(Vec<Window>, usize, usize)> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(Error::shape(format!(
            "Conv needs X [N, C, spatial...] and W of the same rank, got X {x:?} and W {w:?}"
        )));
    }
    let g = attrs.group;
    if g == 0 || !x[1].is_multiple_of(g) || !w[0].is_multiple_of(g) || x[1] / g != w[1] {
        return Err(Error::shape(format!(
            "Conv with group {g}: X has {} channels, W is {w:?} (needs C = W[1] x group and W[0] divisible by group)",
            x[1]
        )));
    }
    let kernel = &w[2..];
    if let Some(ks) = &attrs.kernel_shape {
        if ks.as_slice() != kernel {
            return Err(Error::shape(format!(
                "kernel_shape {ks:?} differs from the weight's spatial shape {kernel:?}"
            )));
        }
    }
    let win = windows(
        &x[2..],
        kernel,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        attrs.auto_pad,
        false,
    )?;
    Ok((win, g, w[0]))
}

/// Pool geometry over `x` = `[N, C, spatial...]`.
pub fn pool_geometry(x: &[usize], attrs: &PoolAttrs) -> Result<Vec<Window>> {
    if x.len() < 3 {
        return Err(Error::shape(format!("pooling needs [N, C, spatial...], got {x:?}")));
    }
    windows(
        &x[2..],
        &attrs.kernel_shape,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        attrs.auto_pad,
        attrs.ceil_mode,
    )
}

/// numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(format!("shapes {a:?} and {b:?} do not broadcast")));
        };
    }
    Ok(out)
}

/// MatMul output shape (numpy rules, 1-d operands promoted and dropped).
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return Err(Error::shape("MatMul operands must have rank >= 1"));
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(Error::shape(format!(
            "MatMul of {a:?} and {b:?}: inner dimensions {k} and {k2} differ"
        )));
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

/// Gemm `(M, K, N)` after the transposes.
pub fn gemm_dims(a: &[usize], b: &[usize], trans_a: bool, trans_b: bool) -> Result<(usize, usize, usize)> {
    if a.len() != 2 || b.len() != 2 {
        return Err(Error::shape(format!("Gemm needs 2-d A and B, got {a:?} and {b:?}")));
    }
    let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
    let (k2, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
    if k != k2 {
        return Err(Error::shape(format!("Gemm: op(A) is {m}x{k} but op(B) is {k2}x{n}")));
    }
    Ok((m, k, n))
}

/// Reshape target from the `shape` input (0 copies, -1 infers).
pub fn reshape_target(input: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total = numel(input)?;
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 => {
                if infer.replace(i).is_some() {
                    return Err(Error::shape(format!("Reshape target {shape:?} has more than one -1")));
                }
                out.push(1);
            }
            0 if !allowzero => {
                let d = *input.get(i).ok_or_else(|| {
                    Error::shape(format!(
                        "Reshape target {shape:?}: 0 at axis {i} copies a dimension the input {input:?} does not have"
                    ))
                })?;
                out.push(d);
            }
            s if s >= 0 => out.push(s as usize),
            _ => {
                return Err(Error::shape(format!(
                    "Reshape target {shape:?} has the invalid entry {s}"
                )))
            }
        }
    }
    let known = numel(&out)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(Error::shape(format!(
                "Reshape of {input:?} ({total} elements) to {shape:?}: -1 cannot be inferred"
            )));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(Error::shape(format!(
            "Reshape of {input:?} ({total} elements) to {shape:?} ({known} elements)"
        )));
    }
    Ok(out)
}

/// Per-axis `(start, step, count)` of a Slice over `shape`.
pub fn slice_ranges(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, usize)>> {
    let r = shape.len();
    let mut ranges: Vec<(i64, i64, usize)> = shape.iter().map(|&d| (0, 1, d)).collect();
    if starts.len() != ends.len() {
        return Err(Error::shape(format!(
            "Slice: {} starts but {} ends",
            starts.len(),
            ends.len()
        )));
    }
    let axes: Vec<usize> = match axes {
        Some(a) => {
            if a.len() != starts.len() {
                return Err(Error::shape("Slice: axes and starts differ in length"));
            }
            a.iter().map(|&x| norm_axis(x, r, 0)).collect::<Result<_>>()?
        }
        None => (0..starts.len()).collect(),
    };
    if axes.len() > r {
        return Err(Error::shape(format!(
            "Slice with {} axes on a rank-{r} tensor",
            axes.len()
        )));
    }
    let mut seen = vec![false; r];
    for (j, &ax) in axes.iter().enumerate() {
        if std::mem::replace(&mut seen[ax], true) {
            return Err(Error::shape(format!("Slice: axis {ax} repeated")));
        }
        let step = match steps {
            Some(s) => *s.get(j).ok_or_else(|| Error::shape("Slice: steps too short"))?,
            None => 1,
        };
        if step == 0 {
            return Err(Error::shape("Slice: a step of 0"));
        }
        let d = shape[ax] as i128;
        let (mut s, mut e) = (starts[j] as i128, ends[j] as i128);
        if s < 0 {
            s += d;
        }
        if e < 0 {
            e += d;
        }
        let step_w = step as i128;
        let count = if step > 0 {
            s = s.clamp(0, d);
            e = e.clamp(0, d);
            if e > s {
                (e - s + step_w - 1) / step_w
            } else {
                0
            }
        } else {
            s = s.clamp(0, (d - 1).max(0));
            e = e.clamp(-1, d - 1);
            if d == 0 || s <= e {
                0
            } else {
                (s - e + (-step_w) - 1) / (-step_w)
            }
        };
        ranges[ax] = (s as i64, step, count as usize);
    }
    Ok(ranges)
}

/// The output shape of Squeeze.
pub fn squeeze_shape(input: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    match axes {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let r = input.len();
            let mut drop = vec![false; r];
            for &a in axes {
                let a = norm_axis(a, r, 0)?;
                if input[a] != 1 {
                    return Err(Error::shape(format!(
                        "Squeeze of axis {a} of {input:?}: its size is not 1"
                    )));
                }
                drop[a] = true;
            }
            Ok(input.iter().zip(drop).filter(|(_, d)| !d).map(|(&v, _)| v).collect())
        }
    }
}

/// The output shape of Unsqueeze.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let r = input.len() + axes.len();
    let mut ones = vec![false; r];
    for &a in axes {
        let a = norm_axis(a, r, 0)?;
        if std::mem::replace(&mut ones[a], true) {
            return Err(Error::shape(format!("Unsqueeze: axis {a} repeated")));
        }
    }
    let mut it = input.iter();
    ones.iter()
        .map(|&one| {
            if one {
                Ok(1)
            } else {
                it.next()
                    .copied()
                    .ok_or_else(|| Error::shape("Unsqueeze: axes out of range"))
            }
        })
        .collect()
}

/// Normalised, sorted, deduplicated reduce axes (`None` = all).
pub fn reduce_axes(rank: usize, axes: Option<&[i64]>) -> Result<Vec<usize>> {
    let mut v: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&x| norm_axis(x, rank, 0)).collect::<Result<_>>()?,
        _ => (0..rank).collect(),
    };
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Transpose permutation (default: reversed), validated.
pub fn perm(rank: usize, perm: Option<&[i64]>) -> Result<Vec<usize>> {
    let p: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => p.iter().map(|&x| norm_axis(x, rank, 0)).collect::<Result<_>>()?,
    };
    let mut seen = vec![false; rank];
    if p.len() != rank || p.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
        return Err(Error::shape(format!(
            "Transpose perm {perm:?} is not a permutation of 0..{rank}"
        )));
    }
    Ok(p)
}

/// Pads as `(begin, end)` per axis from the ONNX layout `[b0, b1, ..., e0, e1, ...]`
/// over `axes` (all when `None`).
pub fn pad_amounts(rank: usize, pads: &[i64], axes: Option<&[i64]>) -> Result<Vec<(i64, i64)>> {
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&x| norm_axis(x, rank, 0)).collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(Error::shape(format!(
            "Pad: {} pads for {} axes (needs begin and end for each)",
            pads.len(),
            axes.len()
        )));
    }
    let mut out = vec![(0, 0); rank];
    let n = axes.len();
    for (j, &a) in axes.iter().enumerate() {
        out[a] = (pads[j], pads[j + n]);
    }
    Ok(out)
}

/// The padded shape (negative pads crop).
pub fn padded_shape(input: &[usize], amounts: &[(i64, i64)]) -> Result<Vec<usize>> {
    input
        .iter()
        .zip(amounts)
        .map(|(&d, &(b, e))| {
            let v = d as i64 + b + e;
            if v < 0 {
                Err(Error::shape(format!(
                    "Pad ({b}, {e}) leaves a negative size for a dimension of {d}"
                )))
            } else {
                Ok(v as usize)
            }
        })
        .collect()
}

/// The output shape of Shape `[start, end)` after clamping.
pub fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = clamp(start);
    let e = clamp(end.unwrap_or(r));
    (s, e.max(s))
}

fn const_input<'a>(node: &Node, i: usize, consts: &'a BTreeMap<String, Tensor>) -> Result<Option<&'a Tensor>> {
    match node.input(i) {
        None => Ok(None),
        Some(name) => consts.get(name).map(Some).ok_or_else(|| Error::NotConstant {
            node: node.name.clone(),
            op: node.op.name().to_string(),
            input: name.to_string(),
        }),
    }
}

fn ints(node: &Node, i: usize, consts: &BTreeMap<String, Tensor>) -> Result<Option<Vec<i64>>> {
    match const_input(node, i, consts)? {
        None => Ok(None),
        Some(t) => Ok(Some(t.to_i64s(&format!("input {i} of node '{}'", node.name))?)),
    }
}

fn scalar_dims(t: &Tensor) -> bool {
    t.len() == 1
}

/// The dtype and shape of each output of `node` from those of its inputs
/// (and the values of the inputs that decide shapes, which must be constant).
pub fn infer_node(
    node: &Node,
    values: &HashMap<String, ValueInfo>,
    consts: &BTreeMap<String, Tensor>,
) -> Result<Vec<ValueInfo>> {
    let info = |i: usize| -> Result<&ValueInfo> {
        let name = node
            .input(i)
            .ok_or_else(|| node.err(format!("input {i} is required")))?;
        values.get(name).ok_or_else(|| Error::UndefinedValue {
            node: node.name.clone(),
            value: name.to_string(),
        })
    };
    let wrap = |e: Error| match e {
        Error::Shape(m) => node.err(m),
        other => other,
    };
    let x = info(0)?;
    let float_only = |v: &ValueInfo| -> Result<()> {
        if v.dtype != DType::F32 {
            Err(Error::UnsupportedDtype {
                what: format!("node '{}' ({})", node.name, node.op.name()),
                dtype: v.dtype.name().to_string(),
            })
        } else {
            Ok(())
        }
    };
    let one = |dtype: DType, shape: Vec<usize>| Ok(vec![ValueInfo { dtype, shape }]);
    let result: Result<Vec<ValueInfo>> = (|| match &node.op {
        Op::Conv(attrs) => {
            float_only(x)?;
            let w = info(1)?;
            let (win, _, m) = conv_geometry(&x.shape, &w.shape, attrs)?;
            if node.input(2).is_some() {
                let b = info(2)?;
                if b.shape != [m] {
                    return Err(Error::shape(format!("Conv bias is {:?}, needs [{m}]", b.shape)));
                }
            }
            let mut s = vec![x.shape[0], m];
            s.extend(win.iter().map(|w| w.output));
            one(DType::F32, s)
        }
        Op::Gemm { trans_a, trans_b, .. } => {
            float_only(x)?;
            let (m, _, n) = gemm_dims(&x.shape, &info(1)?.shape, *trans_a, *trans_b)?;
            if node.input(2).is_some() {
                let c = info(2)?;
                if broadcast(&c.shape, &[m, n])? != [m, n] {
                    return Err(Error::shape(format!(
                        "Gemm C {:?} does not broadcast to [{m}, {n}]",
                        c.shape
                    )));
                }
            }
            one(DType::F32, vec![m, n])
        }
        Op::MatMul => {
            float_only(x)?;
            one(DType::F32, matmul_shape(&x.shape, &info(1)?.shape)?)
        }
        Op::BatchNormalization { .. } => {
            float_only(x)?;
            if x.shape.len() < 2 {
                return Err(Error::shape("BatchNormalization needs [N, C, ...]"));
            }
            for i in 1..5 {
                let p = info(i)?;
                if p.shape != [x.shape[1]] {
                    return Err(Error::shape(format!(
                        "BatchNormalization parameter {i} is {:?}, needs [{}]",
                        p.shape, x.shape[1]
                    )));
                }
            }
            one(DType::F32, x.shape.clone())
        }
        Op::Activation(_) | Op::Clip | Op::Lrn { .. } => {
            if !(matches!(node.op, Op::Clip) && matches!(x.dtype, DType::I64 | DType::I32 | DType::I8 | DType::U8)) {
                float_only(x)?;
            }
            if matches!(node.op, Op::Clip) {
                for i in 1..3 {
                    if node.input(i).is_some() {
                        let b = info(i)?;
                        if numel(&b.shape)? != 1 || b.dtype != x.dtype {
                            return Err(Error::shape("Clip bounds must be scalars of X's type"));
                        }
                    }
                }
            }
            if matches!(node.op, Op::Lrn { .. }) && x.shape.len() < 3 {
                return Err(Error::shape("LRN needs [N, C, spatial...]"));
            }
            one(x.dtype, x.shape.clone())
        }
        Op::Binary(op) => {
            let y = info(1)?;
            if x.dtype != y.dtype {
                return Err(Error::shape(format!("{:?} of {} and {}", op, x.dtype, y.dtype)));
            }
            if x.dtype == DType::Bool {
                return Err(Error::UnsupportedDtype {
                    what: format!("node '{}' ({:?})", node.name, op),
                    dtype: "bool".into(),
                });
            }
            let _: BinaryOp = *op;
            one(x.dtype, broadcast(&x.shape, &y.shape)?)
        }
        Op::Sum => {
            float_only(x)?;
            let mut s = x.shape.clone();
            for i in 1..node.inputs.len() {
                let v = info(i)?;
                float_only(v)?;
                s = broadcast(&s, &v.shape)?;
            }
            one(DType::F32, s)
        }
        Op::MaxPool(attrs) | Op::AveragePool(attrs) => {
            if !(matches!(node.op, Op::MaxPool(_)) && matches!(x.dtype, DType::U8 | DType::I8)) {
                float_only(x)?;
            }
            let win = pool_geometry(&x.shape, attrs)?;
            let mut s = x.shape[..2].to_vec();
            s.extend(win.iter().map(|w| w.output));
            one(x.dtype, s)
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            float_only(x)?;
            if x.shape.len() < 3 {
                return Err(Error::shape("global pooling needs [N, C, spatial...]"));
            }
            let mut s = x.shape.clone();
            s[2..].iter_mut().for_each(|d| *d = 1);
            one(DType::F32, s)
        }
        Op::ReduceMean {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            float_only(x)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => ints(node, 1, consts)?,
            };
            if axes.as_ref().is_none_or(|a| a.is_empty()) && *noop_with_empty_axes {
                return one(x.dtype, x.shape.clone());
            }
            let red = reduce_axes(x.shape.len(), axes.as_deref())?;
            let s: Vec<usize> = if *keepdims {
                x.shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if red.contains(&i) { 1 } else { d })
                    .collect()
            } else {
                x.shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !red.contains(i))
                    .map(|(_, &d)| d)
                    .collect()
            };
            one(x.dtype, s)
        }
        Op::Flatten { axis } => {
            let a = flatten_axis(*axis, x.shape.len())?;
            one(x.dtype, vec![numel(&x.shape[..a])?, numel(&x.shape[a..])?])
        }
        Op::Reshape { allowzero } => {
            let shape = ints(node, 1, consts)?.ok_or_else(|| node.err("needs a shape input"))?;
            one(x.dtype, reshape_target(&x.shape, &shape, *allowzero)?)
        }
        Op::Transpose { perm: p } => {
            let p = perm(x.shape.len(), p.as_deref())?;
            one(x.dtype, p.iter().map(|&a| x.shape[a]).collect())
        }
        Op::Squeeze { axes } => {
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => ints(node, 1, consts)?,
            };
            one(x.dtype, squeeze_shape(&x.shape, axes.as_deref())?)
        }
        Op::Unsqueeze { axes } => {
            let axes = match axes {
                Some(a) => a.clone(),
                None => ints(node, 1, consts)?.ok_or_else(|| node.err("needs axes"))?,
            };
            one(x.dtype, unsqueeze_shape(&x.shape, &axes)?)
        }
        Op::Concat { axis } => {
            let r = x.shape.len();
            let a = norm_axis(*axis, r, 0)?;
            let mut s = x.shape.clone();
            s[a] = 0;
            for i in 0..node.inputs.len() {
                let v = info(i)?;
                if v.dtype != x.dtype
                    || v.shape.len() != r
                    || v.shape.iter().enumerate().any(|(j, &d)| j != a && d != x.shape[j])
                {
                    return Err(Error::shape(format!(
                        "Concat on axis {a}: input {i} is {} {:?}, input 0 is {} {:?}",
                        v.dtype, v.shape, x.dtype, x.shape
                    )));
                }
                s[a] += v.shape[a];
            }
            one(x.dtype, s)
        }
        Op::Slice { attrs } => {
            let (starts, ends, axes, steps) = match attrs {
                Some(sa) => (sa.starts.clone(), sa.ends.clone(), sa.axes.clone(), None),
                None => (
                    ints(node, 1, consts)?.ok_or_else(|| node.err("needs starts"))?,
                    ints(node, 2, consts)?.ok_or_else(|| node.err("needs ends"))?,
                    ints(node, 3, consts)?,
                    ints(node, 4, consts)?,
                ),
            };
            let r = slice_ranges(&x.shape, &starts, &ends, axes.as_deref(), steps.as_deref())?;
            one(x.dtype, r.iter().map(|t| t.2).collect())
        }
        Op::Pad { pads, .. } => {
            let (pads, axes) = match pads {
                Some(p) => (p.clone(), None),
                None => (
                    ints(node, 1, consts)?.ok_or_else(|| node.err("needs pads"))?,
                    ints(node, 3, consts)?,
                ),
            };
            if node.input(2).is_some() {
                let v = info(2)?;
                if numel(&v.shape)? != 1 || v.dtype != x.dtype {
                    return Err(Error::shape("Pad constant_value must be a scalar of X's type"));
                }
            }
            let amounts = pad_amounts(x.shape.len(), &pads, axes.as_deref())?;
            one(x.dtype, padded_shape(&x.shape, &amounts)?)
        }
        Op::Softmax { axis, .. } => {
            float_only(x)?;
            norm_axis(*axis, x.shape.len(), 0)?;
            one(x.dtype, x.shape.clone())
        }
        Op::Identity => one(x.dtype, x.shape.clone()),
        Op::Dropout => {
            let mut v = vec![ValueInfo {
                dtype: x.dtype,
                shape: x.shape.clone(),
            }];
            if node.outputs.len() > 1 {
                v.push(ValueInfo {
                    dtype: DType::Bool,
                    shape: x.shape.clone(),
                });
            }
            Ok(v)
        }
        Op::Cast { to } => one(*to, x.shape.clone()),
        Op::Shape { start, end } => {
            let (s, e) = shape_range(x.shape.len(), *start, *end);
            one(DType::I64, vec![e - s])
        }
        Op::Gather { axis } => {
            let idx = info(1)?;
            let a = norm_axis(*axis, x.shape.len(), 0)?;
            if !matches!(idx.dtype, DType::I64 | DType::I32) {
                return Err(Error::shape(format!("Gather indices are {}", idx.dtype)));
            }
            let mut s = x.shape[..a].to_vec();
            s.extend_from_slice(&idx.shape);
            s.extend_from_slice(&x.shape[a + 1..]);
            one(x.dtype, s)
        }
        Op::ConstantOfShape { value } => {
            let shape = ints(node, 0, consts)?.ok_or_else(|| node.err("needs a shape"))?;
            if !scalar_dims(value) {
                return Err(Error::shape("ConstantOfShape value must hold one element"));
            }
            let s = shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| Error::shape(format!("negative dimension {d}"))))
                .collect::<Result<Vec<_>>>()?;
            one(value.dtype(), s)
        }
    })();
    let out = result.map_err(wrap)?;
    for v in &out {
        super::tensor::checked_numel(&v.shape).map_err(wrap)?;
    }
    if out.len() < node.outputs.len() {
        return Err(node.err(format!(
            "has {} outputs; only {} are supported",
            node.outputs.len(),
            out.len()
        )));
    }
    Ok(out)
}
