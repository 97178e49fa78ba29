//! The network graph, independent of any one network: typed nodes with
//! named inputs and outputs, constants (initializers and folded shape
//! sub-graphs), and the dtype and static shape of every value.
//!
//! A graph comes from an importer ([`crate::import::onnx`]) or a builder,
//! then [`Graph::prepare`] fixes the input shapes, orders the nodes
//! topologically (rejecting cycles), folds every node whose inputs are all
//! constant (so `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains
//! become a constant target shape) and infers the shape of every other value.
//! [`fuse`] then rewrites the graph for the kernels (BatchNorm into Conv/Gemm,
//! bias, residual and activation into the producer's epilogue), and
//! [`reference`] runs it on the CPU: the oracle for the GPU ops.

pub mod fuse;
pub mod inspect;
pub mod op;
pub mod reference;
pub mod shape;
pub mod sparsity;
pub mod tensor;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{Error, Result};
pub use op::{Activation, AutoPad, BinaryOp, ConvAttrs, Epilogue, Op, PadMode, PoolAttrs, SliceAttrs};
pub use tensor::{DType, Tensor, TensorData};

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique within the graph (the importer names unnamed nodes).
    pub name: String,
    pub op: Op,
    /// Value names; an empty string is an omitted optional input.
    pub inputs: Vec<String>,
    /// Value names; an empty string is an output nobody asked for.
    pub outputs: Vec<String>,
    /// Work fused into a Conv/Gemm/MatMul (empty elsewhere).
    pub epilogue: Epilogue,
}

impl Node {
    pub fn new(name: &str, op: Op, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: name.to_string(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            epilogue: Epilogue::default(),
        }
    }

    /// Input `i` if present and not omitted.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Every value this node reads, including epilogue operands.
    pub fn reads(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .map(String::as_str)
            .chain(self.epilogue.bias.as_deref())
            .chain(self.epilogue.residual.as_deref())
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn err(&self, detail: impl Into<String>) -> Error {
        Error::BadNode {
            node: self.name.clone(),
            op: self.op.name().to_string(),
            detail: detail.into(),
        }
    }
}

/// A dimension of a declared graph input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// Symbolic (`"N"`, `"batch"`) or unknown (`"?"`).
    Param(String),
}

/// A graph input as declared by the model.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphInput {
    pub name: String,
    pub dtype: DType,
    /// `None`: the model declares no shape at all.
    pub dims: Option<Vec<Dim>>,
}

/// The dtype and static shape of a value.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Options of [`Graph::prepare`].
#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    /// Shapes for inputs with dynamic dimensions (or to override fixed ones
    /// of the same rank).
    pub input_shapes: HashMap<String, Vec<usize>>,
}

/// A network graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    /// The default-domain opset the graph was imported with.
    pub opset: i64,
    /// Inputs that are fed at run time (initializers are not inputs).
    pub inputs: Vec<GraphInput>,
    pub outputs: Vec<String>,
    /// Initializers and folded values.
    pub constants: BTreeMap<String, Tensor>,
    /// In topological order once prepared.
    pub nodes: Vec<Node>,
    /// dtype and shape of every value (inputs, constants, node outputs), once prepared.
    pub values: HashMap<String, ValueInfo>,
}

impl Graph {
    /// The node names and ops, for messages.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Names of the run-time inputs.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|i| i.name.clone()).collect()
    }

    /// Makes input `name` a constant with the value given (a graph specialised
    /// to it: axes, pads, shapes or indices that are inputs of the model).
    pub fn bind_input(&mut self, name: &str, value: Tensor) -> Result<()> {
        let pos = self
            .inputs
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| Error::InputName {
                name: name.to_string(),
                problem: "is not an input of the graph",
                expected: self.input_names(),
            })?;
        let decl = &self.inputs[pos];
        if decl.dtype != value.dtype() {
            return Err(Error::InputDtype {
                name: name.to_string(),
                expected: decl.dtype.name().to_string(),
                got: value.dtype().name().to_string(),
            });
        }
        self.inputs.remove(pos);
        self.constants.insert(name.to_string(), value);
        Ok(())
    }

    /// Fixes the input shapes, orders the nodes, folds constants and infers
    /// every value's shape (see the module docs). Idempotent.
    pub fn prepare(&mut self, opts: &PrepareOptions) -> Result<()> {
        self.values.clear();
        for (name, t) in &self.constants {
            self.values.insert(
                name.clone(),
                ValueInfo {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                },
            );
        }
        for input in &self.inputs {
            let shape = resolve_input_shape(input, opts.input_shapes.get(&input.name))?;
            self.values.insert(
                input.name.clone(),
                ValueInfo {
                    dtype: input.dtype,
                    shape,
                },
            );
        }
        if let Some(unknown) = opts
            .input_shapes
            .keys()
            .find(|k| !self.inputs.iter().any(|i| &i.name == *k))
        {
            return Err(Error::InputName {
                name: unknown.clone(),
                problem: "was given a shape but is not an input of the graph",
                expected: self.input_names(),
            });
        }
        self.toposort()?;
        self.check_weights_finite()?;

        let nodes = std::mem::take(&mut self.nodes);
        let mut kept = Vec::with_capacity(nodes.len());
        for node in nodes {
            // Shape needs only the (static) shape of its input: always a constant.
            if let (Op::Shape { start, end }, Some(x)) = (&node.op, node.input(0)) {
                let info = self.values.get(x).ok_or_else(|| Error::UndefinedValue {
                    node: node.name.clone(),
                    value: x.to_string(),
                })?;
                let (s, e) = shape::shape_range(info.shape.len(), *start, *end);
                let t = Tensor::vec_i64(info.shape[s..e].iter().map(|&d| d as i64).collect());
                if let Some(out) = node.outputs.first().filter(|o| !o.is_empty()) {
                    self.values.insert(
                        out.clone(),
                        ValueInfo {
                            dtype: DType::I64,
                            shape: t.shape().to_vec(),
                        },
                    );
                    self.constants.insert(out.clone(), t);
                }
                continue;
            }
            let all_const = node.reads().all(|v| self.constants.contains_key(v));
            if all_const {
                let ins: Vec<Option<&Tensor>> = node
                    .inputs
                    .iter()
                    .map(|v| if v.is_empty() { None } else { self.constants.get(v) })
                    .collect();
                let outs = reference::eval_node(&node, &ins, &self.constants)?;
                for (name, t) in node.outputs.iter().zip(outs) {
                    if name.is_empty() {
                        continue;
                    }
                    self.values.insert(
                        name.clone(),
                        ValueInfo {
                            dtype: t.dtype(),
                            shape: t.shape().to_vec(),
                        },
                    );
                    self.constants.insert(name.clone(), t);
                }
            } else {
                let infos = shape::infer_node(&node, &self.values, &self.constants)?;
                for (name, info) in node.outputs.iter().zip(infos) {
                    if !name.is_empty() {
                        self.values.insert(name.clone(), info);
                    }
                }
                kept.push(node);
            }
        }
        self.nodes = kept;
        for out in &self.outputs {
            if !self.values.contains_key(out) {
                return Err(Error::UndefinedValue {
                    node: "(graph output)".to_string(),
                    value: out.clone(),
                });
            }
        }
        self.remove_dead();
        Ok(())
    }

    /// Drops nodes whose outputs nobody reads and constants nobody uses.
    pub fn remove_dead(&mut self) {
        let mut live: HashSet<String> = self.outputs.iter().cloned().collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if node.outputs.iter().any(|o| live.contains(o)) {
                keep[i] = true;
                for v in node.reads() {
                    live.insert(v.to_string());
                }
            }
        }
        let mut it = keep.iter();
        self.nodes.retain(|_| *it.next().unwrap_or(&false));
        // Unread outputs of kept nodes (a Dropout mask) keep their shapes.
        for node in &self.nodes {
            live.extend(node.outputs.iter().filter(|o| !o.is_empty()).cloned());
        }
        self.constants.retain(|k, _| live.contains(k));
        let inputs: HashSet<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        self.values
            .retain(|k, _| live.contains(k) || inputs.contains(k.as_str()));
    }

    /// Orders the nodes so every value is produced before it is read; a
    /// value read but never produced and a cycle are errors.
    pub fn toposort(&mut self) -> Result<()> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for out in node.outputs.iter().filter(|o| !o.is_empty()) {
                let is_source = self.constants.contains_key(out) || self.inputs.iter().any(|inp| &inp.name == out);
                if producer.insert(out, i).is_some() || is_source {
                    return Err(node.err(format!(
                        "output '{out}' is also produced elsewhere (by another node, an input or an initializer)"
                    )));
                }
            }
        }
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.reads() {
                if let Some(&p) = producer.get(v) {
                    indegree[i] += 1;
                    users[p].push(i);
                } else if !self.constants.contains_key(v) && !self.inputs.iter().any(|inp| inp.name == v) {
                    return Err(Error::UndefinedValue {
                        node: node.name.clone(),
                        value: v.to_string(),
                    });
                }
            }
        }
        // Kahn's algorithm, taking ready nodes in file order so that an
        // already sorted graph keeps its order.
        let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != n {
            let placed: HashSet<usize> = order.iter().copied().collect();
            return Err(Error::Cycle {
                nodes: (0..n)
                    .filter(|i| !placed.contains(i))
                    .map(|i| self.nodes[i].name.clone())
                    .collect(),
            });
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().filter_map(|i| old[i].take()).collect();
        Ok(())
    }

    /// Rejects NaN/inf in the constant weights of Conv, Gemm, MatMul and
    /// BatchNormalization (an infinite weight poisons every output).
    fn check_weights_finite(&self) -> Result<()> {
        for node in &self.nodes {
            let weight_inputs: &[usize] = match node.op {
                Op::Conv(_) | Op::Gemm { .. } | Op::MatMul => &[0, 1, 2],
                Op::BatchNormalization { .. } => &[1, 2, 3, 4],
                _ => &[],
            };
            for &i in weight_inputs {
                let Some(name) = node.input(i) else { continue };
                let Some(t) = self.constants.get(name) else {
                    continue;
                };
                if let TensorData::F32(v) = t.data() {
                    if let Some(index) = v.iter().position(|x| !x.is_finite()) {
                        return Err(Error::NonFiniteWeight {
                            tensor: name.to_string(),
                            index,
                            value: v[index],
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// How many nodes read value `name` (epilogue operands and graph outputs count).
    pub fn use_count(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| n.reads().filter(|v| *v == name).count())
            .sum::<usize>()
            + self.outputs.iter().filter(|o| *o == name).count()
    }

    /// The index of the node producing `name`.
    pub fn producer(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.outputs.iter().any(|o| o == name))
    }

    /// The value info of `name` (after [`Graph::prepare`]).
    pub fn info(&self, name: &str) -> Result<&ValueInfo> {
        self.values
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("value '{name}' has no inferred shape")))
    }
}

fn resolve_input_shape(input: &GraphInput, given: Option<&Vec<usize>>) -> Result<Vec<usize>> {
    match (&input.dims, given) {
        (None, Some(g)) => Ok(g.clone()),
        (None, None) => Err(Error::DynamicDim {
            input: input.name.clone(),
            axis: 0,
            param: "no shape declared".to_string(),
        }),
        (Some(dims), Some(g)) => {
            let fits =
                dims.len() == g.len() && dims.iter().zip(g).all(|(d, &v)| !matches!(d, Dim::Fixed(f) if *f != v));
            if !fits {
                return Err(Error::InputShape {
                    name: input.name.clone(),
                    expected: dims
                        .iter()
                        .map(|d| match d {
                            Dim::Fixed(v) => *v,
                            Dim::Param(_) => 0,
                        })
                        .collect(),
                    got: g.clone(),
                });
            }
            Ok(g.clone())
        }
        (Some(dims), None) => dims
            .iter()
            .enumerate()
            .map(|(axis, d)| match d {
                Dim::Fixed(v) => Ok(*v),
                Dim::Param(p) => Err(Error::DynamicDim {
                    input: input.name.clone(),
                    axis,
                    param: p.clone(),
                }),
            })
            .collect(),
    }
}
