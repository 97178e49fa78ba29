//! Sparsity that is already in a model's weights: for each weight-bearing
//! layer (Conv, Gemm, MatMul with a constant weight), the zeros of its
//! weight viewed as the matrix `W[out, reduction]` every kernel here uses
//! (`Cin/groups * kh * kw` for a convolution, `K` for a product), checked
//! for exact N:M along the reduction axis (M in {4, 8}), square block
//! structure (32/16/8/4), or else unstructured density.

use super::op::Op;
use super::{Graph, Node};
use crate::error::{Error, Result};

/// Share of a weight's zeros that must lie in all-zero blocks for the
/// weight to count as block-structured (a few coincidental zeros of a
/// trained float weight elsewhere do not break the structure).
pub const BLOCK_ZERO_SHARE: f64 = 0.95;
/// Block sides tried, largest first.
pub const BLOCK_SIZES: [usize; 4] = [32, 16, 8, 4];

/// The structure found in a weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Structure {
    /// No zeros at all.
    Dense,
    /// Every weight is zero.
    AllZero,
    /// At most `n` non-zeros in every group of `m` consecutive weights along
    /// the reduction axis (the last group may be shorter).
    Nm { n: usize, m: usize },
    /// Zeros in whole `size x size` blocks of `W[out, reduction]`.
    Block { size: usize, zero_blocks: f64 },
    /// Zeros without structure.
    Unstructured,
}

impl std::fmt::Display for Structure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Structure::Dense => write!(f, "dense"),
            Structure::AllZero => write!(f, "all zero"),
            Structure::Nm { n, m } => write!(f, "{n}:{m}"),
            Structure::Block { size, zero_blocks } => {
                write!(f, "block {size}x{size} ({:.1}% zero blocks)", zero_blocks * 100.0)
            }
            Structure::Unstructured => write!(f, "unstructured"),
        }
    }
}

/// The analysis of one weight matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSparsity {
    /// Output channels / columns of the product.
    pub rows: usize,
    /// Length of the reduction axis.
    pub cols: usize,
    pub zeros: usize,
    /// Non-zeros over all weights.
    pub density: f64,
    pub structure: Structure,
}

/// One weight-bearing layer of a graph and its weight's sparsity.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSparsity {
    pub node: String,
    pub op: &'static str,
    pub weight: String,
    pub sparsity: WeightSparsity,
}

/// The weight of a Conv/Gemm/MatMul node as row-major `W[out, reduction]`,
/// with the constant's name; `None` when the weight is not a constant f32.
pub fn weight_matrix(g: &Graph, node: &Node) -> Option<(String, usize, usize, Vec<f32>)> {
    match &node.op {
        Op::Conv(_) => {
            let name = node.input(1)?;
            let w = g.constants.get(name)?;
            let d = w.f32s("W").ok()?;
            let rows = *w.shape().first()?;
            let cols = d.len().checked_div(rows).unwrap_or(0);
            Some((name.to_string(), rows, cols, d.to_vec()))
        }
        Op::Gemm { trans_b, trans_a, .. } => {
            // B is [K, N] (or [N, K] with transB): rows N, reduction K.
            if let Some(b) = node.input(1).and_then(|n| g.constants.get(n).map(|t| (n, t))) {
                let (name, t) = b;
                let d = t.f32s("B").ok()?;
                let s = t.shape();
                if s.len() != 2 {
                    return None;
                }
                return Some(if *trans_b {
                    (name.to_string(), s[0], s[1], d.to_vec())
                } else {
                    (name.to_string(), s[1], s[0], transpose2(d, s[0], s[1]))
                });
            }
            // A constant A ([M, K], or [K, M] with transA) is the weight of `A X`.
            let name = node.input(0)?;
            let t = g.constants.get(name)?;
            let d = t.f32s("A").ok()?;
            let s = t.shape();
            if s.len() != 2 {
                return None;
            }
            Some(if *trans_a {
                (name.to_string(), s[1], s[0], transpose2(d, s[0], s[1]))
            } else {
                (name.to_string(), s[0], s[1], d.to_vec())
            })
        }
        Op::MatMul => {
            if let Some(name) = node.input(1).filter(|n| g.constants.contains_key(*n)) {
                let t = g.constants.get(name)?;
                let s = t.shape();
                if s.len() != 2 {
                    return None;
                }
                return Some((name.to_string(), s[1], s[0], transpose2(t.f32s("B").ok()?, s[0], s[1])));
            }
            let name = node.input(0)?;
            let t = g.constants.get(name)?;
            let s = t.shape();
            if s.len() != 2 {
                return None;
            }
            Some((name.to_string(), s[0], s[1], t.f32s("A").ok()?.to_vec()))
        }
        _ => None,
    }
}

fn transpose2(d: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; d.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = d[i * c + j];
        }
    }
    out
}

/// The most non-zeros in any group of `m` consecutive weights of a row.
fn max_nonzeros_per_group(w: &[f32], rows: usize, cols: usize, m: usize) -> usize {
    let mut worst = 0;
    for r in 0..rows {
        for g in w[r * cols..(r + 1) * cols].chunks(m) {
            worst = worst.max(g.iter().filter(|&&v| v != 0.0).count());
        }
    }
    worst
}

/// `(zero blocks / blocks, zeros inside zero blocks)` for `b x b` tiles.
fn zero_blocks(w: &[f32], rows: usize, cols: usize, b: usize) -> (f64, usize) {
    let (gr, gc) = (rows.div_ceil(b), cols.div_ceil(b));
    let (mut zb, mut covered) = (0usize, 0usize);
    for br in 0..gr {
        for bc in 0..gc {
            let (r1, c1) = (((br + 1) * b).min(rows), ((bc + 1) * b).min(cols));
            let all_zero = (br * b..r1).all(|r| w[r * cols + bc * b..r * cols + c1].iter().all(|&v| v == 0.0));
            if all_zero {
                zb += 1;
                covered += (r1 - br * b) * (c1 - bc * b);
            }
        }
    }
    (zb as f64 / (gr * gc).max(1) as f64, covered)
}

/// Analyses a row-major `W[rows, cols]` whose reduction axis is `cols`.
pub fn analyse(w: &[f32], rows: usize, cols: usize) -> Result<WeightSparsity> {
    if rows.checked_mul(cols) != Some(w.len()) {
        return Err(Error::shape(format!(
            "a {rows}x{cols} weight needs {} values, got {}",
            rows.saturating_mul(cols),
            w.len()
        )));
    }
    let total = w.len();
    let zeros = w.iter().filter(|&&v| v == 0.0).count();
    let density = if total == 0 {
        0.0
    } else {
        (total - zeros) as f64 / total as f64
    };
    let structure = if total == 0 || zeros == total {
        Structure::AllZero
    } else if zeros == 0 {
        Structure::Dense
    } else {
        let nm = [(4usize, 2usize), (8, 4)].iter().find_map(|&(m, limit)| {
            let n = max_nonzeros_per_group(w, rows, cols, m);
            (cols >= m && n <= limit).then_some(Structure::Nm { n, m })
        });
        let block = || {
            BLOCK_SIZES.iter().find_map(|&b| {
                if rows < b || cols < b {
                    return None;
                }
                let (frac, covered) = zero_blocks(w, rows, cols, b);
                (frac > 0.0 && covered as f64 >= BLOCK_ZERO_SHARE * zeros as f64).then_some(Structure::Block {
                    size: b,
                    zero_blocks: frac,
                })
            })
        };
        nm.or_else(block).unwrap_or(Structure::Unstructured)
    };
    Ok(WeightSparsity {
        rows,
        cols,
        zeros,
        density,
        structure,
    })
}

/// Every weight-bearing layer of `g` with a constant weight, in node order.
pub fn analyse_graph(g: &Graph) -> Result<Vec<LayerSparsity>> {
    let mut out = Vec::new();
    for node in &g.nodes {
        if !node.op.is_weight_layer() {
            continue;
        }
        let Some((weight, rows, cols, w)) = weight_matrix(g, node) else {
            continue;
        };
        out.push(LayerSparsity {
            node: node.name.clone(),
            op: node.op.name(),
            weight,
            sparsity: analyse(&w, rows, cols)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{AutoPad, ConvAttrs, DType, Dim, GraphInput, PrepareOptions, Tensor};

    /// Non-zero, sign-varying values (never exactly zero).
    fn dense(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.5) / 10.0).collect()
    }

    #[test]
    fn exact_two_four() {
        let (r, c) = (6, 20);
        let mut w = dense(r * c);
        for (i, v) in w.iter_mut().enumerate() {
            // keep positions 1 and 3 of every group of 4 (the reduction axis is contiguous)
            if (i % c) % 4 == 0 || (i % c) % 4 == 2 {
                *v = 0.0;
            }
        }
        let s = analyse(&w, r, c).unwrap();
        assert_eq!(s.structure, Structure::Nm { n: 2, m: 4 });
        assert_eq!(s.zeros, r * c / 2);
        assert!((s.density - 0.5).abs() < 1e-12);
        // One extra non-zero in one group breaks 2:4; 4:8 may still hold.
        w[0] = 1.0;
        assert_ne!(analyse(&w, r, c).unwrap().structure, Structure::Nm { n: 2, m: 4 });
    }

    #[test]
    fn one_four_and_three_eight() {
        let (r, c) = (3, 16);
        let w1: Vec<f32> = (0..r * c).map(|i| if i % 4 == 3 { 1.5 } else { 0.0 }).collect();
        assert_eq!(analyse(&w1, r, c).unwrap().structure, Structure::Nm { n: 1, m: 4 });
        // 3 of every 8, bunched so that some groups of 4 hold 3: not 2:4, but 3:8.
        let w2: Vec<f32> = (0..r * c).map(|i| if i % 8 < 3 { -2.0 } else { 0.0 }).collect();
        assert_eq!(analyse(&w2, r, c).unwrap().structure, Structure::Nm { n: 3, m: 8 });
    }

    #[test]
    fn blocks() {
        let (r, c) = (32, 48);
        let mut w = dense(r * c);
        // zero the 8x8 blocks whose (block row + block col) is even
        for i in 0..r {
            for j in 0..c {
                if (i / 8 + j / 8) % 2 == 0 {
                    w[i * c + j] = 0.0;
                }
            }
        }
        match analyse(&w, r, c).unwrap().structure {
            Structure::Block { size: 8, zero_blocks } => assert!((zero_blocks - 0.5).abs() < 1e-12),
            other => panic!("expected 8x8 blocks, got {other}"),
        }
        // Whole 16x16 blocks are found at 16 (the largest that holds).
        let mut w = dense(r * c);
        for i in 0..16 {
            for j in 16..32 {
                w[i * c + j] = 0.0;
            }
        }
        assert!(matches!(
            analyse(&w, r, c).unwrap().structure,
            Structure::Block { size: 16, .. }
        ));
    }

    #[test]
    fn random_zeros_all_zeros_no_zeros() {
        let (r, c) = (17, 23);
        // ~60% zeros in no pattern (an LCG decides).
        let mut s = 12345u64;
        let w: Vec<f32> = dense(r * c)
            .into_iter()
            .map(|v| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (s >> 33) % 10 < 6 {
                    0.0
                } else {
                    v
                }
            })
            .collect();
        let a = analyse(&w, r, c).unwrap();
        assert_eq!(a.structure, Structure::Unstructured);
        assert!((0.3..0.5).contains(&a.density), "{}", a.density);
        assert_eq!(analyse(&vec![0.0; r * c], r, c).unwrap().structure, Structure::AllZero);
        let d = analyse(&dense(r * c), r, c).unwrap();
        assert_eq!((d.structure, d.zeros, d.density), (Structure::Dense, 0, 1.0));
        assert!(analyse(&[1.0; 5], 2, 3).is_err());
    }

    /// A conv weight that is 2:4 along Cin*kh*kw is found through the graph;
    /// a Gemm with B [K, N] is read along K.
    #[test]
    fn graph_layers_use_the_reduction_axis() {
        let mut g = Graph::default();
        g.inputs.push(GraphInput {
            name: "x".into(),
            dtype: DType::F32,
            dims: Some(vec![Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(4), Dim::Fixed(4)]),
        });
        // W [3, 2, 2, 2]: reduction 8 per output channel; zero positions 0, 1 of each 4.
        let w: Vec<f32> = (0..24).map(|i| if i % 4 < 2 { 0.0 } else { 1.0 + i as f32 }).collect();
        g.constants
            .insert("w".into(), Tensor::from_f32(vec![3, 2, 2, 2], w).unwrap());
        // B [K=8, N=3] with K 2:4 in each column: rows k%4 in {0, 3} zero.
        let b: Vec<f32> = (0..24)
            .map(|i| if (i / 3) % 4 == 0 || (i / 3) % 4 == 3 { 0.0 } else { 2.0 })
            .collect();
        g.constants.insert("b".into(), Tensor::from_f32(vec![8, 3], b).unwrap());
        g.constants.insert("shape".into(), Tensor::vec_i64(vec![1, 8]));
        let conv = ConvAttrs {
            kernel_shape: None,
            strides: vec![2, 2],
            dilations: vec![],
            pads: vec![],
            auto_pad: AutoPad::NotSet,
            group: 1,
        };
        g.nodes
            .push(crate::graph::Node::new("c", Op::Conv(conv), &["x", "w"], &["y"]));
        g.nodes
            .push(crate::graph::Node::new("p", Op::GlobalAveragePool, &["y"], &["z"]));
        // [1, 3, 1, 1] -> Reshape [1, 8] is not possible; use a Gemm on a separate input.
        g.inputs.push(GraphInput {
            name: "v".into(),
            dtype: DType::F32,
            dims: Some(vec![Dim::Fixed(2), Dim::Fixed(8)]),
        });
        g.nodes.push(crate::graph::Node::new(
            "fc",
            Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false,
            },
            &["v", "b"],
            &["o"],
        ));
        g.outputs = vec!["z".into(), "o".into()];
        g.prepare(&PrepareOptions::default()).unwrap();
        let layers = analyse_graph(&g).unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(
            (
                layers[0].node.as_str(),
                layers[0].sparsity.rows,
                layers[0].sparsity.cols
            ),
            ("c", 3, 8)
        );
        assert_eq!(layers[0].sparsity.structure, Structure::Nm { n: 2, m: 4 });
        assert_eq!((layers[1].sparsity.rows, layers[1].sparsity.cols), (3, 8));
        assert_eq!(layers[1].sparsity.structure, Structure::Nm { n: 2, m: 4 });
        // Read along the wrong axis (B's rows, length 3) it would not be 2:4.
        let wrong = analyse(g.constants["b"].f32s("b").unwrap(), 8, 3).unwrap();
        assert_ne!(wrong.structure, Structure::Nm { n: 2, m: 4 });
    }
}
