//! A report of what a graph is: inputs and outputs with shapes, op counts,
//! parameter count, and the sparsity already present in each weight-bearing
//! layer (for `wgsparse inspect MODEL`, text or JSON).

use std::collections::BTreeMap;

use super::sparsity::{analyse_graph, LayerSparsity, Structure};
use super::tensor::TensorData;
use super::Graph;
use crate::error::Result;

/// One graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The report of [`inspect`].
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub name: String,
    pub opset: i64,
    pub inputs: Vec<ValueReport>,
    pub outputs: Vec<ValueReport>,
    /// Nodes per op after import (constants folded), by ONNX op name.
    pub op_counts: BTreeMap<String, usize>,
    /// Floating-point constant elements (weights, biases, normalisation parameters).
    pub parameters: usize,
    pub layers: Vec<LayerSparsity>,
}

/// Builds the report of a prepared graph.
pub fn inspect(g: &Graph) -> Result<Report> {
    let value = |name: &String| -> Result<ValueReport> {
        let info = g.info(name)?;
        Ok(ValueReport {
            name: name.clone(),
            dtype: info.dtype.name().to_string(),
            shape: info.shape.clone(),
        })
    };
    let inputs = g.inputs.iter().map(|i| value(&i.name)).collect::<Result<_>>()?;
    let outputs = g.outputs.iter().map(value).collect::<Result<_>>()?;
    let mut op_counts = BTreeMap::new();
    for n in &g.nodes {
        *op_counts.entry(n.op.name().to_string()).or_insert(0) += 1;
    }
    let parameters = g
        .constants
        .values()
        .filter(|t| matches!(t.data(), TensorData::F32(_) | TensorData::F64(_)))
        .map(|t| t.len())
        .sum();
    Ok(Report {
        name: g.name.clone(),
        opset: g.opset,
        inputs,
        outputs,
        op_counts,
        parameters,
        layers: analyse_graph(g)?,
    })
}

impl Report {
    /// The report as JSON (plain objects and numbers).
    pub fn to_json(&self) -> serde_json::Value {
        let values = |v: &[ValueReport]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|x| serde_json::json!({ "name": x.name, "dtype": x.dtype, "shape": x.shape }))
                .collect()
        };
        serde_json::json!({
            "name": self.name,
            "opset": self.opset,
            "inputs": values(&self.inputs),
            "outputs": values(&self.outputs),
            "op_counts": self.op_counts,
            "parameters": self.parameters,
            "layers": self.layers.iter().map(|l| {
                let (kind, n, m, block, zero_blocks) = match l.sparsity.structure {
                    Structure::Dense => ("dense", None, None, None, None),
                    Structure::AllZero => ("all_zero", None, None, None, None),
                    Structure::Nm { n, m } => ("nm", Some(n), Some(m), None, None),
                    Structure::Block { size, zero_blocks } => ("block", None, None, Some(size), Some(zero_blocks)),
                    Structure::Unstructured => ("unstructured", None, None, None, None),
                };
                serde_json::json!({
                    "node": l.node,
                    "op": l.op,
                    "weight": l.weight,
                    "rows": l.sparsity.rows,
                    "reduction": l.sparsity.cols,
                    "zeros": l.sparsity.zeros,
                    "density": l.sparsity.density,
                    "structure": kind,
                    "n": n,
                    "m": m,
                    "block": block,
                    "zero_blocks": zero_blocks,
                })
            }).collect::<Vec<_>>(),
        })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "graph '{}' (opset {})", self.name, self.opset)?;
        for (title, vals) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            writeln!(f, "{title}:")?;
            for v in vals {
                writeln!(f, "  {} {} {:?}", v.name, v.dtype, v.shape)?;
            }
        }
        let ops: Vec<String> = self.op_counts.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        writeln!(f, "ops: {}", ops.join(", "))?;
        writeln!(f, "parameters: {}", self.parameters)?;
        writeln!(f, "weight layers ({}):", self.layers.len())?;
        writeln!(
            f,
            "  {:<32} {:<6} {:>12} {:>8}  structure",
            "node", "op", "W[out, red]", "density"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "  {:<32} {:<6} {:>12} {:>8.4}  {}",
                l.node,
                l.op,
                format!("{}x{}", l.sparsity.rows, l.sparsity.cols),
                l.sparsity.density,
                l.sparsity.structure
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DType, Dim, GraphInput, Node, Op, PrepareOptions, Tensor};

    #[test]
    fn report_of_a_small_graph() {
        let mut g = Graph {
            name: "tiny".into(),
            opset: 17,
            ..Default::default()
        };
        g.inputs.push(GraphInput {
            name: "x".into(),
            dtype: DType::F32,
            dims: Some(vec![Dim::Fixed(2), Dim::Fixed(8)]),
        });
        // B [8, 4] with K 2:4 per column: rows k % 4 in {1, 2} are zero.
        let b: Vec<f32> = (0..32)
            .map(|i| if matches!((i / 4) % 4, 1 | 2) { 0.0 } else { 0.5 })
            .collect();
        g.constants.insert("B".into(), Tensor::from_f32(vec![8, 4], b).unwrap());
        g.constants
            .insert("C".into(), Tensor::from_f32(vec![4], vec![1.0; 4]).unwrap());
        g.nodes.push(Node::new(
            "fc",
            Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false,
            },
            &["x", "B", "C"],
            &["h"],
        ));
        g.nodes.push(Node::new(
            "act",
            Op::Activation(crate::graph::Activation::Relu),
            &["h"],
            &["y"],
        ));
        g.outputs.push("y".into());
        g.prepare(&PrepareOptions::default()).unwrap();
        let r = inspect(&g).unwrap();
        assert_eq!(r.parameters, 36);
        assert_eq!(r.op_counts.get("Gemm"), Some(&1));
        assert_eq!(r.op_counts.get("Relu"), Some(&1));
        assert_eq!(r.outputs[0].shape, [2, 4]);
        assert_eq!(r.layers.len(), 1);
        assert_eq!(r.layers[0].sparsity.structure, Structure::Nm { n: 2, m: 4 });
        let text = r.to_string();
        assert!(
            text.contains("fc") && text.contains("2:4") && text.contains("parameters: 36"),
            "{text}"
        );
        let j = r.to_json();
        assert_eq!(j["layers"][0]["structure"], "nm");
        assert_eq!(j["layers"][0]["n"], 2);
        assert_eq!(j["layers"][0]["reduction"], 8);
        assert_eq!(j["inputs"][0]["shape"], serde_json::json!([2, 8]));
        assert_eq!(j["parameters"], 36);
    }
}
