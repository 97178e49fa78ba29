//! The CPU reference ops on odd shapes, against values computed by hand or
//! by an independent formulation written here (explicitly padded input,
//! direct index arithmetic), plus constant folding and the fusion passes
//! (a fused graph must compute what the unfused one does).

use wgsparse::graph::{
    fuse, reference, Activation, AutoPad, BinaryOp, ConvAttrs, DType, Dim, Graph, GraphInput, Node, Op, PadMode,
    PoolAttrs, PrepareOptions, Tensor, TensorData,
};

/// Relative tolerance for f32 results of f64-accumulated sums.
const F32_REL_TOL: f64 = 1e-5;
/// Absolute tolerance next to zero.
const F32_ABS_TOL: f64 = 1e-6;

fn assert_close(what: &str, actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok = (a as f64 - e).abs() <= F32_ABS_TOL + F32_REL_TOL * e.abs();
        assert!(ok, "{what}: index {i}: actual {a}, expected {e}");
    }
}

/// Deterministic values in [-1, 1) (a small LCG; no dependence on the code under test).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::from_f32(shape.to_vec(), data).unwrap()
}

fn ti(data: Vec<i64>) -> Tensor {
    Tensor::vec_i64(data)
}

/// A one-node graph: `runtime` inputs are fed at run, `consts` are constants
/// (named in the node's input order by `names`).
fn run_one(op: Op, inputs: &[(&str, Tensor, bool)]) -> Tensor {
    let mut g = Graph {
        opset: 21,
        ..Default::default()
    };
    let mut feed = Vec::new();
    for (name, tensor, is_const) in inputs {
        if name.is_empty() {
            continue;
        }
        if *is_const {
            g.constants.insert(name.to_string(), tensor.clone());
        } else {
            g.inputs.push(GraphInput {
                name: name.to_string(),
                dtype: tensor.dtype(),
                dims: Some(tensor.shape().iter().map(|&d| Dim::Fixed(d)).collect()),
            });
            feed.push((name.to_string(), tensor.clone()));
        }
    }
    let names: Vec<&str> = inputs.iter().map(|(n, _, _)| *n).collect();
    g.nodes.push(Node::new("n", op, &names, &["y"]));
    g.outputs.push("y".into());
    g.prepare(&PrepareOptions::default()).unwrap();
    let mut out = reference::run(&g, feed).unwrap();
    out.remove(0).1
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.f32s("test").unwrap().to_vec()
}

fn conv_attrs(strides: &[usize], dil: &[usize], pads: &[usize], group: usize, auto_pad: AutoPad) -> ConvAttrs {
    ConvAttrs {
        kernel_shape: None,
        strides: strides.to_vec(),
        dilations: dil.to_vec(),
        pads: pads.to_vec(),
        auto_pad,
        group,
    }
}

/// 2-d convolution written the textbook way: pad X with zeros into a new
/// buffer, then slide the dilated kernel over it.
#[allow(clippy::too_many_arguments)]
fn naive_conv2d(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    (m, kh, kw): (usize, usize, usize),
    b: Option<&[f32]>,
    (sh, sw): (usize, usize),
    (dh, dw): (usize, usize),
    (pt, pl, pb, pr): (usize, usize, usize, usize),
    g: usize,
) -> (Vec<f64>, usize, usize) {
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    let mut xp = vec![0f64; n * c * hp * wp];
    for i in 0..n * c {
        for y in 0..h {
            for z in 0..w {
                xp[(i * hp + y + pt) * wp + z + pl] = x[(i * h + y) * w + z] as f64;
            }
        }
    }
    let (ekh, ekw) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
    let (oh, ow) = ((hp - ekh) / sh + 1, (wp - ekw) / sw + 1);
    let cg = c / g;
    let mg = m / g;
    let mut out = vec![0f64; n * m * oh * ow];
    for ni in 0..n {
        for oc in 0..m {
            let grp = oc / mg;
            for y in 0..oh {
                for z in 0..ow {
                    let mut s = b.map_or(0.0, |b| b[oc] as f64);
                    for ci in 0..cg {
                        let ic = grp * cg + ci;
                        for a in 0..kh {
                            for bb in 0..kw {
                                let xv = xp[((ni * c + ic) * hp + y * sh + a * dh) * wp + z * sw + bb * dw];
                                s += xv * wt[((oc * cg + ci) * kh + a) * kw + bb] as f64;
                            }
                        }
                    }
                    out[((ni * m + oc) * oh + y) * ow + z] = s;
                }
            }
        }
    }
    (out, oh, ow)
}

#[test]
fn conv_hand_computed() {
    // 3x3 input 1..9, 2x2 kernel of ones, no padding: sums of 2x2 windows.
    let x = t(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
    let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
    let y = run_one(
        Op::Conv(conv_attrs(&[], &[], &[], 1, AutoPad::NotSet)),
        &[("x", x, false), ("w", w, true)],
    );
    assert_eq!(y.shape(), [1, 1, 2, 2]);
    assert_close("conv 2x2 ones", &f32s(&y), &[12.0, 16.0, 24.0, 28.0]);
}

#[test]
fn conv_odd_shapes_against_padded_formulation() {
    // (n, c, h, w, m, kh, kw, stride, dilation, pads t/l/b/r, group)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize, usize, usize),
        usize,
    );
    let cases: &[Case] = &[
        (1, 3, 7, 5, 4, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
        (2, 3, 9, 11, 5, 3, 2, (2, 1), (1, 2), (0, 2, 1, 0), 1),
        (1, 6, 8, 7, 6, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 6), // depthwise
        (1, 6, 5, 9, 9, 1, 3, (1, 3), (1, 1), (0, 1, 0, 2), 3), // grouped
        (1, 4, 10, 10, 2, 5, 5, (3, 2), (2, 1), (3, 0, 2, 4), 2),
        (3, 2, 4, 13, 3, 2, 4, (1, 2), (3, 3), (0, 3, 1, 3), 1),
    ];
    for (k, &(n, c, h, w, m, kh, kw, (sh, sw), (dh, dw), (pt, pl, pb, pr), g)) in cases.iter().enumerate() {
        let x = values(n * c * h * w, 10 + k as u64);
        let wt = values(m * (c / g) * kh * kw, 20 + k as u64);
        let b = values(m, 30 + k as u64);
        let (expected, oh, ow) = naive_conv2d(
            &x,
            (n, c, h, w),
            &wt,
            (m, kh, kw),
            Some(&b),
            (sh, sw),
            (dh, dw),
            (pt, pl, pb, pr),
            g,
        );
        let y = run_one(
            Op::Conv(conv_attrs(&[sh, sw], &[dh, dw], &[pt, pl, pb, pr], g, AutoPad::NotSet)),
            &[
                ("x", t(&[n, c, h, w], x), false),
                ("w", t(&[m, c / g, kh, kw], wt), true),
                ("b", t(&[m], b), true),
            ],
        );
        assert_eq!(y.shape(), [n, m, oh, ow], "case {k}");
        assert_close(&format!("conv case {k}"), &f32s(&y), &expected);
    }
}

#[test]
fn conv_auto_pad_same_and_valid() {
    // in 7, kernel 4, stride 2: out ceil(7/2) = 4, total pad (4-1)*2+4-7 = 3.
    let (h, w) = (7, 6);
    let x = values(2 * h * w, 1);
    let wt = values(3 * 2 * 4 * 3, 2);
    for (mode, pads) in [
        (AutoPad::SameUpper, (1, 1, 2, 1)), // h: 3 -> 1 top, 2 bottom; w: out 3, (3-1)*2+3-6 = 1 -> 0/1? see below
        (AutoPad::SameLower, (2, 1, 1, 1)),
    ] {
        // w axis: kernel 3, stride 2, in 6: out 3, total (3-1)*2+3-6 = 1: upper (0, 1), lower (1, 0).
        let (pl, pr) = if mode == AutoPad::SameUpper { (0, 1) } else { (1, 0) };
        let (pt, pb) = (pads.0, pads.2);
        let (expected, oh, ow) = naive_conv2d(
            &x,
            (1, 2, h, w),
            &wt,
            (3, 4, 3),
            None,
            (2, 2),
            (1, 1),
            (pt, pl, pb, pr),
            1,
        );
        assert_eq!((oh, ow), (4, 3));
        let y = run_one(
            Op::Conv(conv_attrs(&[2, 2], &[], &[], 1, mode)),
            &[
                ("x", t(&[1, 2, h, w], x.clone()), false),
                ("w", t(&[3, 2, 4, 3], wt.clone()), true),
            ],
        );
        assert_eq!(y.shape(), [1, 3, 4, 3]);
        assert_close(&format!("conv {mode:?}"), &f32s(&y), &expected);
    }
    let (expected, oh, ow) = naive_conv2d(&x, (1, 2, h, w), &wt, (3, 4, 3), None, (2, 2), (1, 1), (0, 0, 0, 0), 1);
    let y = run_one(
        Op::Conv(conv_attrs(&[2, 2], &[], &[], 1, AutoPad::Valid)),
        &[("x", t(&[1, 2, h, w], x), false), ("w", t(&[3, 2, 4, 3], wt), true)],
    );
    assert_eq!(y.shape(), [1, 3, oh, ow]);
    assert_close("conv VALID", &f32s(&y), &expected);
}

#[test]
fn conv_1d_equals_2d_with_unit_height() {
    let x = values(2 * 3 * 11, 5);
    let wt = values(4 * 3 * 3, 6);
    let (expected, _, ow) = naive_conv2d(&x, (2, 3, 1, 11), &wt, (4, 1, 3), None, (1, 2), (1, 2), (0, 2, 0, 1), 1);
    let y = run_one(
        Op::Conv(conv_attrs(&[2], &[2], &[2, 1], 1, AutoPad::NotSet)),
        &[("x", t(&[2, 3, 11], x), false), ("w", t(&[4, 3, 3], wt), true)],
    );
    assert_eq!(y.shape(), [2, 4, ow]);
    assert_close("conv1d", &f32s(&y), &expected);
}

#[test]
fn gemm_transposes_alpha_beta_broadcast_c() {
    let (m, k, n) = (3, 5, 4);
    let a = values(m * k, 1);
    let b = values(k * n, 2);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for c_shape in [vec![n], vec![m, 1], vec![m, n], vec![]] {
            let cn: usize = c_shape.iter().product();
            let c = values(cn, 3);
            let (alpha, beta) = (0.75f32, -1.5f32);
            // op(A)[i][p], op(B)[p][j] read from the stored (possibly transposed) layout.
            let a_st: Vec<f32> = if ta {
                (0..k * m).map(|q| a[(q % m) * k + q / m]).collect()
            } else {
                a.clone()
            };
            let b_st: Vec<f32> = if tb {
                (0..n * k).map(|q| b[(q % k) * n + q / k]).collect()
            } else {
                b.clone()
            };
            let mut expected = vec![0f64; m * n];
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                    let cv = match c_shape.len() {
                        0 => c[0],
                        1 => c[j],
                        _ if c_shape[1] == 1 => c[i],
                        _ => c[i * n + j],
                    } as f64;
                    expected[i * n + j] = alpha as f64 * s + beta as f64 * cv;
                }
            }
            let y = run_one(
                Op::Gemm {
                    alpha,
                    beta,
                    trans_a: ta,
                    trans_b: tb,
                },
                &[
                    ("a", t(&if ta { [k, m] } else { [m, k] }, a_st), false),
                    ("b", t(&if tb { [n, k] } else { [k, n] }, b_st), true),
                    ("c", t(&c_shape, c), true),
                ],
            );
            assert_close(&format!("gemm ta={ta} tb={tb} C{c_shape:?}"), &f32s(&y), &expected);
        }
    }
}

#[test]
fn matmul_batched_broadcast_and_vectors() {
    let a = values(2 * 3 * 4, 7);
    let b = values(3 * 4 * 5, 8);
    // [2, 1, 3, 4] x [3, 4, 5] -> [2, 3, 3, 5]
    let y = run_one(
        Op::MatMul,
        &[
            ("a", t(&[2, 1, 3, 4], a.clone()), false),
            ("b", t(&[3, 4, 5], b.clone()), false),
        ],
    );
    assert_eq!(y.shape(), [2, 3, 3, 5]);
    let mut expected = Vec::new();
    for i0 in 0..2 {
        for i1 in 0..3 {
            for r in 0..3 {
                for col in 0..5 {
                    let s: f64 = (0..4)
                        .map(|p| a[(i0 * 3 + r) * 4 + p] as f64 * b[(i1 * 4 + p) * 5 + col] as f64)
                        .sum();
                    expected.push(s);
                }
            }
        }
    }
    assert_close("matmul batched", &f32s(&y), &expected);
    // vector x matrix: [4] x [4, 5] -> [5]
    let v = values(4, 9);
    let y = run_one(
        Op::MatMul,
        &[
            ("a", t(&[4], v.clone()), false),
            ("b", t(&[4, 5], b[..20].to_vec()), true),
        ],
    );
    assert_eq!(y.shape(), [5]);
    let expected: Vec<f64> = (0..5)
        .map(|j| (0..4).map(|p| v[p] as f64 * b[p * 5 + j] as f64).sum())
        .collect();
    assert_close("matmul vector", &f32s(&y), &expected);
}

#[test]
fn batch_norm_inference_formula() {
    let x = values(2 * 3 * 5, 11);
    let (s, b, mu, var) = (
        [0.5f32, 2.0, -1.0],
        [0.1f32, 0.0, 3.0],
        [0.2f32, -0.3, 0.0],
        [1.0f32, 0.25, 4.0],
    );
    let eps = 1e-3f32;
    let y = run_one(
        Op::BatchNormalization { epsilon: eps },
        &[
            ("x", t(&[2, 3, 5], x.clone()), false),
            ("s", t(&[3], s.to_vec()), true),
            ("b", t(&[3], b.to_vec()), true),
            ("m", t(&[3], mu.to_vec()), true),
            ("v", t(&[3], var.to_vec()), true),
        ],
    );
    let expected: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 5) % 3;
            (v as f64 - mu[c] as f64) / (var[c] as f64 + eps as f64).sqrt() * s[c] as f64 + b[c] as f64
        })
        .collect();
    assert_close("batchnorm", &f32s(&y), &expected);
}

#[test]
fn activations_hand_computed() {
    let x = vec![-3.0f32, -0.5, 0.0, 0.5, 3.0, 7.0];
    let xs = || t(&[2, 3], x.clone());
    let cases: Vec<(Activation, Vec<f64>)> = vec![
        (Activation::Relu, vec![0.0, 0.0, 0.0, 0.5, 3.0, 7.0]),
        (
            Activation::Clip { min: 0.0, max: 6.0 },
            vec![0.0, 0.0, 0.0, 0.5, 3.0, 6.0],
        ),
        (
            Activation::LeakyRelu { alpha: 0.1 },
            vec![-0.3, -0.05, 0.0, 0.5, 3.0, 7.0],
        ),
        (
            Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
            vec![0.0, 0.4, 0.5, 0.6, 1.0, 1.0],
        ),
        // x * relu6(x + 3) / 6
        (
            Activation::HardSwish,
            vec![0.0, -0.5 * 2.5 / 6.0, 0.0, 0.5 * 3.5 / 6.0, 3.0, 7.0],
        ),
        (
            Activation::Sigmoid,
            x.iter().map(|&v| 1.0 / (1.0 + (-(v as f64)).exp())).collect(),
        ),
        (Activation::Tanh, x.iter().map(|&v| (v as f64).tanh()).collect()),
    ];
    for (a, expected) in cases {
        let y = run_one(Op::Activation(a), &[("x", xs(), false)]);
        assert_close(a.name(), &f32s(&y), &expected);
    }
    // Clip from opset 11 with bounds as inputs; NaN propagates.
    let y = run_one(
        Op::Clip,
        &[
            ("x", t(&[3], vec![-2.0, f32::NAN, 9.0]), false),
            ("lo", Tensor::scalar_f32(-1.0), true),
            ("hi", Tensor::scalar_f32(1.0), true),
        ],
    );
    let v = f32s(&y);
    assert_eq!((v[0], v[2]), (-1.0, 1.0));
    assert!(v[1].is_nan(), "Clip(NaN) = {}", v[1]);
}

#[test]
fn binary_broadcasting_and_integer_division() {
    // [2, 1, 3] - [4, 1] -> [2, 4, 3]
    let a = values(6, 1);
    let b = values(4, 2);
    let y = run_one(
        Op::Binary(BinaryOp::Sub),
        &[
            ("a", t(&[2, 1, 3], a.clone()), false),
            ("b", t(&[4, 1], b.clone()), false),
        ],
    );
    assert_eq!(y.shape(), [2, 4, 3]);
    let mut expected = Vec::new();
    for i in 0..2 {
        for &bj in &b {
            for k in 0..3 {
                expected.push(a[i * 3 + k] as f64 - bj as f64);
            }
        }
    }
    assert_close("sub broadcast", &f32s(&y), &expected);
    let y = run_one(
        Op::Binary(BinaryOp::Div),
        &[
            ("a", ti(vec![7, -7, 9]), true),
            ("b", Tensor::from_i64(vec![], vec![2]).unwrap(), true),
        ],
    );
    assert_eq!(
        y.data(),
        &TensorData::I64(vec![3, -3, 4]),
        "C-style truncating division"
    );
}

#[test]
fn pools_ceil_mode_and_count_include_pad() {
    // 1x1x4x5 input 0..19; MaxPool 2x2 stride 2 ceil: out 2x3, last column window [4].
    let x = t(&[1, 1, 4, 5], (0..20).map(|v| v as f32).collect());
    let attrs = PoolAttrs {
        kernel_shape: vec![2, 2],
        strides: vec![2, 2],
        dilations: vec![],
        pads: vec![],
        auto_pad: AutoPad::NotSet,
        ceil_mode: true,
        count_include_pad: false,
    };
    let y = run_one(Op::MaxPool(attrs.clone()), &[("x", x.clone(), false)]);
    assert_eq!(y.shape(), [1, 1, 2, 3]);
    assert_close("maxpool ceil", &f32s(&y), &[6.0, 8.0, 9.0, 16.0, 18.0, 19.0]);
    let y = run_one(Op::AveragePool(attrs.clone()), &[("x", x.clone(), false)]);
    assert_close("avgpool ceil", &f32s(&y), &[3.0, 5.0, 6.5, 13.0, 15.0, 16.5]);
    // pads 1 on every side, kernel 3, stride 2 on a 1x1x3x3 input 1..9.
    let x = t(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
    let mut padded = PoolAttrs {
        kernel_shape: vec![3, 3],
        strides: vec![2, 2],
        pads: vec![1, 1, 1, 1],
        ceil_mode: false,
        ..attrs
    };
    let y = run_one(Op::AveragePool(padded.clone()), &[("x", x.clone(), false)]);
    // windows hold the 2x2 corners: (1+2+4+5)/4, (2+3+5+6)/4, (4+5+7+8)/4, (5+6+8+9)/4
    assert_close("avgpool exclude pad", &f32s(&y), &[3.0, 4.0, 6.0, 7.0]);
    padded.count_include_pad = true;
    let y = run_one(Op::AveragePool(padded.clone()), &[("x", x.clone(), false)]);
    assert_close(
        "avgpool include pad",
        &f32s(&y),
        &[12.0 / 9.0, 16.0 / 9.0, 24.0 / 9.0, 28.0 / 9.0],
    );
    let y = run_one(Op::MaxPool(padded), &[("x", x, false)]);
    assert_close("maxpool pads", &f32s(&y), &[5.0, 6.0, 8.0, 9.0]);
}

#[test]
fn global_pool_and_reduce_mean() {
    let x = values(2 * 3 * 5 * 7, 4);
    let y = run_one(Op::GlobalAveragePool, &[("x", t(&[2, 3, 5, 7], x.clone()), false)]);
    assert_eq!(y.shape(), [2, 3, 1, 1]);
    let expected: Vec<f64> = (0..6)
        .map(|p| x[p * 35..(p + 1) * 35].iter().map(|&v| v as f64).sum::<f64>() / 35.0)
        .collect();
    assert_close("global average pool", &f32s(&y), &expected);
    // ReduceMean over axes [-1, 1], keepdims 0: [2, 3, 5, 7] -> [2, 5]
    let y = run_one(
        Op::ReduceMean {
            axes: Some(vec![-1, 1]),
            keepdims: false,
            noop_with_empty_axes: false,
        },
        &[("x", t(&[2, 3, 5, 7], x.clone()), false)],
    );
    assert_eq!(y.shape(), [2, 5]);
    let mut expected = Vec::new();
    for n in 0..2 {
        for h in 0..5 {
            let mut s = 0f64;
            for c in 0..3 {
                for w in 0..7 {
                    s += x[((n * 3 + c) * 5 + h) * 7 + w] as f64;
                }
            }
            expected.push(s / 21.0);
        }
    }
    assert_close("reduce mean", &f32s(&y), &expected);
    // opset-18 form: axes as an input.
    let y = run_one(
        Op::ReduceMean {
            axes: None,
            keepdims: true,
            noop_with_empty_axes: false,
        },
        &[("x", t(&[2, 3, 5, 7], x), false), ("axes", ti(vec![2, 3]), true)],
    );
    assert_eq!(y.shape(), [2, 3, 1, 1]);
    assert_close(
        "reduce mean axes input",
        &f32s(&y),
        &[
            expected_mean_of_planes(&values(2 * 3 * 5 * 7, 4), 0),
            expected_mean_of_planes(&values(2 * 3 * 5 * 7, 4), 1),
            expected_mean_of_planes(&values(2 * 3 * 5 * 7, 4), 2),
            expected_mean_of_planes(&values(2 * 3 * 5 * 7, 4), 3),
            expected_mean_of_planes(&values(2 * 3 * 5 * 7, 4), 4),
            expected_mean_of_planes(&values(2 * 3 * 5 * 7, 4), 5),
        ],
    );
}

fn expected_mean_of_planes(x: &[f32], p: usize) -> f64 {
    x[p * 35..(p + 1) * 35].iter().map(|&v| v as f64).sum::<f64>() / 35.0
}

#[test]
fn softmax_legacy_coerces_to_2d() {
    let x = values(2 * 3 * 4, 3);
    let new = run_one(
        Op::Softmax { axis: 1, legacy: false },
        &[("x", t(&[2, 3, 4], x.clone()), false)],
    );
    let old = run_one(
        Op::Softmax { axis: 1, legacy: true },
        &[("x", t(&[2, 3, 4], x.clone()), false)],
    );
    let mut e_new = vec![0f64; 24];
    let mut e_old = vec![0f64; 24];
    for n in 0..2 {
        for k in 0..4 {
            let s: f64 = (0..3).map(|c| (x[(n * 3 + c) * 4 + k] as f64).exp()).sum();
            for c in 0..3 {
                e_new[(n * 3 + c) * 4 + k] = (x[(n * 3 + c) * 4 + k] as f64).exp() / s;
            }
        }
        let s: f64 = (0..12).map(|i| (x[n * 12 + i] as f64).exp()).sum();
        for i in 0..12 {
            e_old[n * 12 + i] = (x[n * 12 + i] as f64).exp() / s;
        }
    }
    assert_close("softmax axis 1", &f32s(&new), &e_new);
    assert_close("softmax legacy", &f32s(&old), &e_old);
}

#[test]
fn pad_modes() {
    let x = t(&[1, 3], vec![1.0, 2.0, 3.0]);
    let pads = ti(vec![0, 2, 0, 2]);
    let run = |mode| {
        f32s(&run_one(
            Op::Pad {
                mode,
                pads: None,
                value: 0.0,
            },
            &[
                ("x", x.clone(), false),
                ("p", pads.clone(), true),
                ("v", Tensor::scalar_f32(9.0), true),
            ],
        ))
    };
    assert_eq!(run(PadMode::Constant), [9.0, 9.0, 1.0, 2.0, 3.0, 9.0, 9.0]);
    assert_eq!(run(PadMode::Reflect), [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
    assert_eq!(run(PadMode::Edge), [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
    assert_eq!(run(PadMode::Wrap), [2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]);
    // Negative pads crop.
    let y = run_one(
        Op::Pad {
            mode: PadMode::Constant,
            pads: Some(vec![0, -1, 1, 0]),
            value: 0.5,
        },
        &[("x", x, false)],
    );
    assert_eq!(y.shape(), [2, 2]);
    assert_eq!(f32s(&y), [2.0, 3.0, 0.5, 0.5]);
}

#[test]
fn slice_negative_steps_and_clamping() {
    let x = t(&[3, 5], (0..15).map(|v| v as f32).collect());
    // rows 2..0 step -1 (2, 1), columns from -1 to far beyond the start step -2 (4, 2, 0)
    let y = run_one(
        Op::Slice { attrs: None },
        &[
            ("x", x.clone(), false),
            ("s", ti(vec![2, -1]), true),
            ("e", ti(vec![0, i64::MIN]), true),
            ("a", ti(vec![0, 1]), true),
            ("st", ti(vec![-1, -2]), true),
        ],
    );
    assert_eq!(y.shape(), [2, 3]);
    assert_eq!(f32s(&y), [14.0, 12.0, 10.0, 9.0, 7.0, 5.0]);
    // ends past the end clamp; an empty range gives a zero-size axis.
    let y = run_one(
        Op::Slice { attrs: None },
        &[
            ("x", x, false),
            ("s", ti(vec![1, 3]), true),
            ("e", ti(vec![100, 3]), true),
        ],
    );
    assert_eq!(y.shape(), [2, 0]);
}

#[test]
fn shape_ops() {
    let x = t(&[2, 3, 4], (0..24).map(|v| v as f32).collect());
    let y = run_one(
        Op::Reshape { allowzero: false },
        &[("x", x.clone(), false), ("s", ti(vec![0, -1, 2]), true)],
    );
    assert_eq!(y.shape(), [2, 6, 2]);
    let y = run_one(
        Op::Transpose {
            perm: Some(vec![2, 0, 1]),
        },
        &[("x", x.clone(), false)],
    );
    assert_eq!(y.shape(), [4, 2, 3]);
    // y[k][i][j] = x[i][j][k] = i*12 + j*4 + k
    let v = f32s(&y);
    assert_eq!(v[(3 * 2 + 1) * 3 + 2], (12 + 8 + 3) as f32);
    let y = run_one(
        Op::Unsqueeze { axes: None },
        &[("x", x.clone(), false), ("a", ti(vec![-1, 0]), true)],
    );
    assert_eq!(y.shape(), [1, 2, 3, 4, 1]);
    let y = run_one(Op::Squeeze { axes: None }, &[("x", y.clone(), false)]);
    assert_eq!(y.shape(), [2, 3, 4]);
    let y = run_one(Op::Flatten { axis: -1 }, &[("x", x.clone(), false)]);
    assert_eq!(y.shape(), [6, 4]);
    let y = run_one(
        Op::Gather { axis: 1 },
        &[("x", x.clone(), false), ("i", ti(vec![-1, 0]), true)],
    );
    assert_eq!(y.shape(), [2, 2, 4]);
    assert_eq!(&f32s(&y)[..8], [8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]);
    let y = run_one(
        Op::Concat { axis: -2 },
        &[("x", x.clone(), false), ("z", x.clone(), true)],
    );
    assert_eq!(y.shape(), [2, 6, 4]);
    assert_eq!(f32s(&y)[12..16], [0.0, 1.0, 2.0, 3.0]);
    let y = run_one(
        Op::Cast { to: DType::I64 },
        &[("x", t(&[3], vec![-1.7, 2.9, 0.2]), false)],
    );
    assert_eq!(y.data(), &TensorData::I64(vec![-1, 2, 0]));
    // f32 -> f16 rounds to nearest even once; beyond 65504 it is infinite.
    let y = run_one(
        Op::Cast { to: DType::F16 },
        &[("x", t(&[4], vec![1.0, 65504.0, 1e5, 0.1]), false)],
    );
    let h: Vec<f64> = y.data().to_f64_vec();
    assert_eq!(h, [1.0, 65504.0, f64::INFINITY, 0.0999755859375]);
    let back = run_one(Op::Cast { to: DType::F32 }, &[("h", y, false)]);
    assert_eq!(f32s(&back), [1.0, 65504.0, f32::INFINITY, 0.099975586]);
    let y = run_one(Op::Shape { start: -2, end: None }, &[("x", x, false)]);
    assert_eq!(y.data(), &TensorData::I64(vec![3, 4]));
}

/// `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` folds to a constant
/// target, leaving only the Reshape.
#[test]
fn shape_subgraph_folds_to_constant() {
    let mut g = Graph {
        opset: 21,
        ..Default::default()
    };
    g.inputs.push(GraphInput {
        name: "x".into(),
        dtype: DType::F32,
        dims: Some(vec![Dim::Param("N".into()), Dim::Fixed(3), Dim::Fixed(4)]),
    });
    g.constants
        .insert("zero".into(), Tensor::from_i64(vec![], vec![0]).unwrap());
    g.constants.insert("minus1".into(), ti(vec![-1]));
    g.constants.insert("ax0".into(), ti(vec![0]));
    g.nodes
        .push(Node::new("shape", Op::Shape { start: 0, end: None }, &["x"], &["s"]));
    g.nodes
        .push(Node::new("gather", Op::Gather { axis: 0 }, &["s", "zero"], &["n"]));
    g.nodes
        .push(Node::new("unsq", Op::Unsqueeze { axes: None }, &["n", "ax0"], &["n1"]));
    g.nodes
        .push(Node::new("cat", Op::Concat { axis: 0 }, &["n1", "minus1"], &["target"]));
    g.nodes.push(Node::new(
        "reshape",
        Op::Reshape { allowzero: false },
        &["x", "target"],
        &["y"],
    ));
    g.outputs.push("y".into());
    let mut opts = PrepareOptions::default();
    opts.input_shapes.insert("x".into(), vec![5, 3, 4]);
    g.prepare(&opts).unwrap();
    assert_eq!(g.nodes.len(), 1, "only the Reshape stays: {:?}", g.nodes);
    assert_eq!(g.constants.get("target").unwrap().data(), &TensorData::I64(vec![5, -1]));
    assert_eq!(g.info("y").unwrap().shape, [5, 12]);
}

fn conv_bn_residual_relu_graph() -> (Graph, Vec<(String, Tensor)>) {
    let mut g = Graph {
        opset: 21,
        ..Default::default()
    };
    let (c, m) = (3, 3);
    g.inputs.push(GraphInput {
        name: "x".into(),
        dtype: DType::F32,
        dims: Some(vec![Dim::Fixed(1), Dim::Fixed(c), Dim::Fixed(6), Dim::Fixed(5)]),
    });
    g.constants.insert("w".into(), t(&[m, c, 3, 3], values(m * c * 9, 1)));
    g.constants.insert("b".into(), t(&[m], values(m, 2)));
    g.constants.insert("gamma".into(), t(&[m], vec![0.5, 1.5, -2.0]));
    g.constants.insert("beta".into(), t(&[m], vec![0.1, -0.2, 0.3]));
    g.constants.insert("mean".into(), t(&[m], vec![0.05, 0.0, -0.1]));
    g.constants.insert("var".into(), t(&[m], vec![0.9, 1.1, 0.4]));
    g.constants.insert("w2".into(), t(&[m, c, 1, 1], values(m * c, 3)));
    let pad1 = conv_attrs(&[], &[], &[1, 1, 1, 1], 1, AutoPad::NotSet);
    // The shortcut first: the main conv runs later, so the residual is ready for it.
    g.nodes.push(Node::new(
        "shortcut",
        Op::Conv(conv_attrs(&[], &[], &[], 1, AutoPad::NotSet)),
        &["x", "w2"],
        &["s"],
    ));
    g.nodes
        .push(Node::new("conv", Op::Conv(pad1), &["x", "w", "b"], &["c"]));
    g.nodes.push(Node::new(
        "bn",
        Op::BatchNormalization { epsilon: 1e-5 },
        &["c", "gamma", "beta", "mean", "var"],
        &["n"],
    ));
    g.nodes
        .push(Node::new("add", Op::Binary(BinaryOp::Add), &["n", "s"], &["a"]));
    g.nodes
        .push(Node::new("relu", Op::Activation(Activation::Relu), &["a"], &["y"]));
    g.outputs.push("y".into());
    g.prepare(&PrepareOptions::default()).unwrap();
    let x = t(&[1, c, 6, 5], values(c * 30, 4));
    (g, vec![("x".into(), x)])
}

#[test]
fn fusion_conv_bn_residual_relu() {
    let (g, feed) = conv_bn_residual_relu_graph();
    let before = reference::run(&g, feed.clone()).unwrap();
    let mut f = g.clone();
    assert_eq!(fuse::fold_batch_norm(&mut f).unwrap(), 1);
    assert_eq!(fuse::fuse_residual(&mut f).unwrap(), 1);
    assert_eq!(fuse::fuse_activation(&mut f).unwrap(), 1);
    assert_eq!(f.nodes.len(), 2, "shortcut conv + one fused conv: {:?}", f.nodes);
    let main = f.nodes.iter().find(|n| n.name == "conv").unwrap();
    assert_eq!(main.epilogue.residual.as_deref(), Some("s"));
    assert_eq!(main.epilogue.activation, Some(Activation::Relu));
    assert_eq!(main.outputs, ["y"]);
    let after = reference::run(&f, feed).unwrap();
    let expected: Vec<f64> = f32s(&before[0].1).iter().map(|&v| v as f64).collect();
    assert_close("fused conv", &f32s(&after[0].1), &expected);
}

#[test]
fn fusion_gemm_bn_and_matmul_bias_relu6_and_silu() {
    let mut g = Graph {
        opset: 21,
        ..Default::default()
    };
    g.inputs.push(GraphInput {
        name: "x".into(),
        dtype: DType::F32,
        dims: Some(vec![Dim::Fixed(3), Dim::Fixed(5)]),
    });
    g.constants.insert("wb".into(), t(&[4, 5], values(20, 1)));
    g.constants.insert("gamma".into(), t(&[4], vec![0.5, 1.5, -2.0, 1.0]));
    g.constants.insert("beta".into(), t(&[4], vec![0.1, -0.2, 0.3, 0.0]));
    g.constants.insert("mean".into(), t(&[4], vec![0.05, 0.0, -0.1, 0.2]));
    g.constants.insert("var".into(), t(&[4], vec![0.9, 1.1, 0.4, 2.0]));
    g.constants.insert("m1".into(), t(&[4, 6], values(24, 2)));
    g.constants.insert("bias".into(), t(&[1, 6], values(6, 3)));
    g.constants.insert("m2".into(), t(&[6, 2], values(12, 4)));
    g.constants.insert("zero".into(), Tensor::scalar_f32(0.0));
    g.constants.insert("six".into(), Tensor::scalar_f32(6.0));
    g.nodes.push(Node::new(
        "gemm",
        Op::Gemm {
            alpha: 0.5,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        },
        &["x", "wb"],
        &["g"],
    ));
    g.nodes.push(Node::new(
        "bn",
        Op::BatchNormalization { epsilon: 1e-5 },
        &["g", "gamma", "beta", "mean", "var"],
        &["n"],
    ));
    g.nodes.push(Node::new("mm", Op::MatMul, &["n", "m1"], &["p"]));
    g.nodes
        .push(Node::new("addb", Op::Binary(BinaryOp::Add), &["bias", "p"], &["q"]));
    g.nodes
        .push(Node::new("relu6", Op::Clip, &["q", "zero", "six"], &["r"]));
    g.nodes.push(Node::new("mm2", Op::MatMul, &["r", "m2"], &["u"]));
    g.nodes
        .push(Node::new("sig", Op::Activation(Activation::Sigmoid), &["u"], &["sg"]));
    g.nodes
        .push(Node::new("mul", Op::Binary(BinaryOp::Mul), &["u", "sg"], &["y"]));
    g.outputs.push("y".into());
    g.prepare(&PrepareOptions::default()).unwrap();
    let feed = vec![("x".to_string(), t(&[3, 5], values(15, 5)))];
    let before = reference::run(&g, feed.clone()).unwrap();
    let mut f = g.clone();
    let report = fuse::fuse_all(&mut f).unwrap();
    assert_eq!(
        (report.batch_norms, report.biases, report.activations),
        (1, 1, 2),
        "{report}"
    );
    assert_eq!(f.nodes.len(), 3, "{:?}", f.nodes);
    assert_eq!(
        f.nodes[1].epilogue.activation,
        Some(Activation::Clip { min: 0.0, max: 6.0 })
    );
    assert!(f.nodes[1].epilogue.bias.is_some());
    assert_eq!(f.nodes[2].epilogue.activation, Some(Activation::Silu));
    let after = reference::run(&f, feed).unwrap();
    let expected: Vec<f64> = f32s(&before[0].1).iter().map(|&v| v as f64).collect();
    assert_close("fused gemm/matmul chain", &f32s(&after[0].1), &expected);
}

/// A residual whose operand is produced after the conv is not fused (it
/// would not be ready when the conv's epilogue runs).
#[test]
fn fusion_residual_needs_operand_ready() {
    let (mut g, feed) = conv_bn_residual_relu_graph();
    // Move the shortcut conv after the main conv's BN (the graph stays valid).
    let idx = g.nodes.iter().position(|n| n.name == "shortcut").unwrap();
    let sc = g.nodes.remove(idx);
    let bn = g.nodes.iter().position(|n| n.name == "bn").unwrap();
    g.nodes.insert(bn + 1, sc);
    let before = reference::run(&g, feed.clone()).unwrap();
    fuse::fold_batch_norm(&mut g).unwrap();
    // The shortcut conv runs later than the main conv, so only the shortcut
    // can take the residual (the main conv's output is ready before it).
    assert_eq!(fuse::fuse_residual(&mut g).unwrap(), 1);
    let sc = g.nodes.iter().find(|n| n.name == "shortcut").unwrap();
    assert_eq!(sc.epilogue.residual.as_deref(), Some("n"));
    let after = reference::run(&g, feed).unwrap();
    let expected: Vec<f64> = f32s(&before[0].1).iter().map(|&v| v as f64).collect();
    assert_close("residual into the later producer", &f32s(&after[0].1), &expected);
}
