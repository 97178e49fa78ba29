//! Fusion passes over a prepared graph, each a separate function that
//! returns how many rewrites it made. They keep the graph runnable by the
//! reference executor (which applies epilogues), so every pass is tested by
//! running the graph before and after.
//!
//! - [`fold_batch_norm`]: `BatchNormalization(Conv|Gemm)` into the weights and bias.
//! - [`fuse_bias`]: `Add(Conv, C)` into the conv bias; `Add(Gemm|MatMul, [N])` into the epilogue.
//! - [`fuse_residual`]: `Add(producer, r)` into the producer's epilogue where `r`
//!   is ready before the producer runs.
//! - [`fuse_activation`]: Relu, Clip (ReLU6), Sigmoid, HardSigmoid, HardSwish,
//!   Tanh, LeakyRelu and `Mul(x, Sigmoid(x))` (SiLU) into the epilogue.

use std::collections::{HashMap, HashSet};

use super::op::{Activation, BinaryOp, Op};
use super::tensor::{Tensor, TensorData};
use super::{Graph, ValueInfo};
use crate::error::{Error, Result};

/// What [`fuse_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuseReport {
    pub batch_norms: usize,
    pub biases: usize,
    pub residuals: usize,
    pub activations: usize,
}

impl std::fmt::Display for FuseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} BatchNorm folded, {} bias, {} residual and {} activation epilogues",
            self.batch_norms, self.biases, self.residuals, self.activations
        )
    }
}

/// All passes, in the order that lets each see the previous one's result
/// (`Conv -> BN -> Add -> Relu` becomes one Conv with a residual + ReLU epilogue).
pub fn fuse_all(g: &mut Graph) -> Result<FuseReport> {
    Ok(FuseReport {
        batch_norms: fold_batch_norm(g)?,
        biases: fuse_bias(g)?,
        residuals: fuse_residual(g)?,
        activations: fuse_activation(g)?,
    })
}

fn use_counts(g: &Graph) -> HashMap<String, usize> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for n in &g.nodes {
        for v in n.reads() {
            *m.entry(v.to_string()).or_default() += 1;
        }
    }
    for o in &g.outputs {
        *m.entry(o.clone()).or_default() += 1;
    }
    m
}

fn producers(g: &Graph) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for o in &n.outputs {
            if !o.is_empty() {
                m.insert(o.clone(), i);
            }
        }
    }
    m
}

fn fresh_name(g: &Graph, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 1;
    while g.constants.contains_key(&name) || g.values.contains_key(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

fn add_constant(g: &mut Graph, base: &str, t: Tensor) -> String {
    let name = fresh_name(g, base);
    g.values.insert(
        name.clone(),
        ValueInfo {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
        },
    );
    g.constants.insert(name.clone(), t);
    name
}

/// Runs `find` over the nodes, applying each rewrite it returns (producer
/// index, consumer nodes to delete), until a sweep finds nothing.
fn sweep(
    g: &mut Graph,
    mut rewrite: impl FnMut(
        &mut Graph,
        usize,
        &HashMap<String, usize>,
        &HashMap<String, usize>,
    ) -> Result<Option<Vec<usize>>>,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let mut remove: HashSet<usize> = HashSet::new();
        let mut touched: HashSet<usize> = HashSet::new();
        for i in 0..g.nodes.len() {
            if remove.contains(&i) || touched.contains(&i) {
                continue;
            }
            if let Some(dead) = rewrite(g, i, &uses, &prod)? {
                // One rewrite per producer per sweep: its outputs changed.
                if dead.iter().any(|d| remove.contains(d) || touched.contains(d)) {
                    return Err(Error::Invalid(
                        "fusion rewrote a node twice in one sweep (a bug)".into(),
                    ));
                }
                touched.insert(i);
                remove.extend(dead);
                total += 1;
            }
        }
        if remove.is_empty() {
            break;
        }
        let mut idx = 0;
        g.nodes.retain(|_| {
            let keep = !remove.contains(&idx);
            idx += 1;
            keep
        });
    }
    g.remove_dead();
    Ok(total)
}

/// The single consumer node of `value` (and its index), if it has exactly one
/// reader and is not a graph output.
fn sole_consumer(g: &Graph, value: &str, uses: &HashMap<String, usize>) -> Option<usize> {
    if uses.get(value) != Some(&1) {
        return None;
    }
    g.nodes.iter().position(|n| n.reads().any(|v| v == value))
}

fn is_producer(op: &Op) -> bool {
    matches!(op, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul)
}

fn const_f32<'a>(g: &'a Graph, name: Option<&str>) -> Option<&'a [f32]> {
    match g.constants.get(name?)?.data() {
        TensorData::F32(v) => Some(v),
        _ => None,
    }
}

/// Folds inference BatchNormalization into the preceding Conv or Gemm
/// (`W' = W s`, `b' = (b - mean) s + beta`, `s = gamma / sqrt(var + eps)`).
pub fn fold_batch_norm(g: &mut Graph) -> Result<usize> {
    sweep(g, |g, i, uses, _| {
        let p = &g.nodes[i];
        if !is_producer(&p.op) || matches!(p.op, Op::MatMul) || !p.epilogue.is_empty() {
            return Ok(None);
        }
        let Some(out) = p.outputs.first().cloned() else {
            return Ok(None);
        };
        let Some(c) = sole_consumer(g, &out, uses) else {
            return Ok(None);
        };
        let bn = &g.nodes[c];
        let Op::BatchNormalization { epsilon } = bn.op else {
            return Ok(None);
        };
        if bn.input(0) != Some(out.as_str()) {
            return Ok(None);
        }
        let params: Option<Vec<&[f32]>> = (1..5).map(|k| const_f32(g, bn.input(k))).collect();
        let Some(params) = params else { return Ok(None) };
        let (gamma, beta, mean, var) = (params[0], params[1], params[2], params[3]);
        let s: Vec<f64> = gamma
            .iter()
            .zip(var)
            .map(|(&gm, &v)| gm as f64 / (v as f64 + epsilon as f64).sqrt())
            .collect();
        let ch = s.len();
        let Some(w) = p.input(1).and_then(|n| g.constants.get(n)) else {
            return Ok(None);
        };
        let wd = w.f32s("weight")?;
        let w_shape = w.shape().to_vec();
        let bn_out = bn.outputs[0].clone();
        let pname = p.name.clone();
        match p.op.clone() {
            Op::Conv(_) => {
                if ch == 0 || w_shape.first() != Some(&ch) {
                    return Ok(None);
                }
                let bias_in = p.input(2).map(str::to_string);
                let b: Vec<f32> = match bias_in.as_deref() {
                    None => vec![0.0; ch],
                    Some(name) => match const_f32(g, Some(name)) {
                        Some(b) => b.to_vec(),
                        None => return Ok(None),
                    },
                };
                let per = wd.len() / ch;
                let w2: Vec<f32> = wd
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| (x as f64 * s[k / per]) as f32)
                    .collect();
                let b2: Vec<f32> = (0..ch)
                    .map(|m| ((b[m] as f64 - mean[m] as f64) * s[m] + beta[m] as f64) as f32)
                    .collect();
                let wn = add_constant(g, &format!("{pname}/W_bn"), Tensor::from_f32(w_shape, w2)?);
                let bnm = add_constant(g, &format!("{pname}/B_bn"), Tensor::from_f32(vec![ch], b2)?);
                let p = &mut g.nodes[i];
                p.inputs.resize(3, String::new());
                p.inputs[1] = wn;
                p.inputs[2] = bnm;
                p.outputs[0] = bn_out;
            }
            Op::Gemm {
                alpha,
                beta: gbeta,
                trans_a,
                trans_b,
            } => {
                let out_shape = g.info(&out)?.shape.clone();
                if out_shape.len() != 2 || out_shape[1] != ch {
                    return Ok(None);
                }
                let (m, n) = (out_shape[0], out_shape[1]);
                let w2: Vec<f32> = wd
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| {
                        let col = if trans_b { k / w_shape[1] } else { k % w_shape[1] };
                        (x as f64 * s[col]) as f32
                    })
                    .collect();
                // C' = s (beta C - mean) + beta_bn, per column when C is.
                let c_in = p.input(2).map(str::to_string);
                let (c_vals, c_shape): (Vec<f32>, Vec<usize>) = match c_in.as_deref() {
                    None => (vec![0.0], vec![1]),
                    Some(name) => match g.constants.get(name) {
                        Some(t) => (t.f32s("Gemm C")?.to_vec(), t.shape().to_vec()),
                        None => return Ok(None),
                    },
                };
                let per_column = super::shape::broadcast(&c_shape, &[1, n])? == [1, n];
                let rows = if per_column { 1 } else { m };
                let idx = super::reference::broadcast_index(&[rows, n], &c_shape);
                let c2: Vec<f32> = (0..rows * n)
                    .map(|k| {
                        let j = k % n;
                        let cv = gbeta as f64 * c_vals[idx[k]] as f64;
                        ((cv - mean[j] as f64) * s[j] + beta[j] as f64) as f32
                    })
                    .collect();
                let c_shape2 = if per_column { vec![n] } else { vec![m, n] };
                let wn = add_constant(g, &format!("{pname}/B_bn"), Tensor::from_f32(w_shape, w2)?);
                let cn = add_constant(g, &format!("{pname}/C_bn"), Tensor::from_f32(c_shape2, c2)?);
                let p = &mut g.nodes[i];
                p.op = Op::Gemm {
                    alpha,
                    beta: 1.0,
                    trans_a,
                    trans_b,
                };
                p.inputs.resize(3, String::new());
                p.inputs[1] = wn;
                p.inputs[2] = cn;
                p.outputs[0] = bn_out;
            }
            _ => return Ok(None),
        }
        Ok(Some(vec![c]))
    })
}

/// Moves a constant `Add` after a Conv into its bias, and after a
/// Gemm/MatMul (a bias along the last axis) into the epilogue.
pub fn fuse_bias(g: &mut Graph) -> Result<usize> {
    sweep(g, |g, i, uses, _| {
        let p = &g.nodes[i];
        if !is_producer(&p.op) || !p.epilogue.is_empty() {
            return Ok(None);
        }
        let out = p.outputs[0].clone();
        let Some(c) = sole_consumer(g, &out, uses) else {
            return Ok(None);
        };
        let add = &g.nodes[c];
        if add.op != Op::Binary(BinaryOp::Add) || add.inputs.len() != 2 {
            return Ok(None);
        }
        let other = if add.inputs[0] == out {
            &add.inputs[1]
        } else {
            &add.inputs[0]
        };
        if *other == out {
            return Ok(None);
        }
        let Some(b) = g.constants.get(other) else {
            return Ok(None);
        };
        let Ok(bv) = b.f32s("bias") else { return Ok(None) };
        let y = g.info(&out)?.shape.clone();
        if y.is_empty() {
            return Ok(None); // a scalar MatMul result has no channel axis
        }
        let bs = b.shape().to_vec();
        let axis = if matches!(p.op, Op::Conv(_)) { 1 } else { y.len() - 1 };
        // The constant must hold one value per channel on `axis` and broadcast
        // only along the other axes, without growing the output.
        let ch = y[axis];
        let aligned = bs.len() <= y.len()
            && bs.iter().rev().enumerate().all(|(k, &d)| {
                let ax = y.len() - 1 - k;
                d == 1 || (ax == axis && d == ch)
            })
            && bv.len() == ch
            && (bs.len() + axis >= y.len());
        if !aligned {
            return Ok(None);
        }
        let bv = bv.to_vec();
        let add_out = add.outputs[0].clone();
        let pname = p.name.clone();
        if matches!(p.op, Op::Conv(_)) {
            let old: Vec<f32> = match p.input(2) {
                None => vec![0.0; ch],
                Some(name) => match const_f32(g, Some(name)) {
                    Some(v) => v.to_vec(),
                    None => return Ok(None),
                },
            };
            let sum: Vec<f32> = old
                .iter()
                .zip(&bv)
                .map(|(&a, &b)| (a as f64 + b as f64) as f32)
                .collect();
            let name = add_constant(g, &format!("{pname}/B_add"), Tensor::from_f32(vec![ch], sum)?);
            let p = &mut g.nodes[i];
            p.inputs.resize(3, String::new());
            p.inputs[2] = name;
            p.outputs[0] = add_out;
        } else {
            let name = add_constant(g, &format!("{pname}/bias"), Tensor::from_f32(vec![ch], bv)?);
            let p = &mut g.nodes[i];
            p.epilogue.bias = Some(name);
            p.outputs[0] = add_out;
        }
        Ok(Some(vec![c]))
    })
}

/// Fuses `Add(y, r)` into y's producer as a residual when the shapes match
/// exactly and `r` is a graph input, a constant, or produced earlier.
pub fn fuse_residual(g: &mut Graph) -> Result<usize> {
    sweep(g, |g, i, uses, prod| {
        let p = &g.nodes[i];
        if !is_producer(&p.op) || p.epilogue.residual.is_some() || p.epilogue.activation.is_some() {
            return Ok(None);
        }
        let out = p.outputs[0].clone();
        let Some(c) = sole_consumer(g, &out, uses) else {
            return Ok(None);
        };
        let add = &g.nodes[c];
        // Sum of two is Add (Caffe2-exported ResNets write the residual as Sum).
        if !matches!(add.op, Op::Binary(BinaryOp::Add) | Op::Sum) || add.inputs.len() != 2 {
            return Ok(None);
        }
        let other = if add.inputs[0] == out {
            add.inputs[1].clone()
        } else {
            add.inputs[0].clone()
        };
        if other == out {
            return Ok(None);
        }
        let ready = prod.get(&other).is_none_or(|&k| k < i);
        let same =
            g.info(&other)?.shape == g.info(&out)?.shape && g.info(&add.outputs[0])?.shape == g.info(&out)?.shape;
        if !ready || !same {
            return Ok(None);
        }
        let add_out = add.outputs[0].clone();
        let p = &mut g.nodes[i];
        p.epilogue.residual = Some(other);
        p.outputs[0] = add_out;
        Ok(Some(vec![c]))
    })
}

/// Fuses a following activation (or SiLU pair) into the producer's epilogue.
pub fn fuse_activation(g: &mut Graph) -> Result<usize> {
    sweep(g, |g, i, uses, _| {
        let p = &g.nodes[i];
        if !is_producer(&p.op) || p.epilogue.activation.is_some() {
            return Ok(None);
        }
        let out = p.outputs[0].clone();
        // SiLU: x read by exactly Sigmoid(x) and Mul(x, sigmoid).
        if uses.get(&out) == Some(&2) {
            let readers: Vec<usize> = (0..g.nodes.len())
                .filter(|&k| g.nodes[k].reads().any(|v| v == out))
                .collect();
            if let [a, b] = readers[..] {
                for (sg, ml) in [(a, b), (b, a)] {
                    let (s, m) = (&g.nodes[sg], &g.nodes[ml]);
                    let s_out = s.outputs[0].clone();
                    if s.op == Op::Activation(Activation::Sigmoid)
                        && m.op == Op::Binary(BinaryOp::Mul)
                        && uses.get(&s_out) == Some(&1)
                        && (m.inputs == [out.clone(), s_out.clone()] || m.inputs == [s_out.clone(), out.clone()])
                    {
                        let m_out = m.outputs[0].clone();
                        let p = &mut g.nodes[i];
                        p.epilogue.activation = Some(Activation::Silu);
                        p.outputs[0] = m_out;
                        return Ok(Some(vec![sg, ml]));
                    }
                }
            }
            return Ok(None);
        }
        let Some(c) = sole_consumer(g, &out, uses) else {
            return Ok(None);
        };
        let n = &g.nodes[c];
        if n.input(0) != Some(out.as_str()) {
            return Ok(None);
        }
        let act = match &n.op {
            Op::Activation(a) => *a,
            Op::Clip => {
                let bound = |k: usize, d: f32| -> Option<f32> {
                    match n.input(k) {
                        None => Some(d),
                        Some(name) => const_f32(g, Some(name)).and_then(|v| v.first().copied()),
                    }
                };
                match (bound(1, f32::NEG_INFINITY), bound(2, f32::INFINITY)) {
                    (Some(min), Some(max)) => Activation::Clip { min, max },
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let n_out = n.outputs[0].clone();
        let p = &mut g.nodes[i];
        p.epilogue.activation = Some(act);
        p.outputs[0] = n_out;
        Ok(Some(vec![c]))
    })
}
