//! Calibration, the activation-aware criterion and bias correction on the real
//! EfficientNet-Lite0 (lavapipe in CI): statistics against the CPU reference
//! activations, and the pruned GPU model against the CPU reference of the same
//! scored masks and corrected biases.

mod common;

use common::ctx;
use common::model::{fixture, image};
use wgsparse::model::{reference, Criterion, Dispatching, GpuLite0, Lite0, Op, PruneSpec};
use wgsparse::reference::rel_error;
use wgsparse::{Error, Matrix, Pattern};

const LOGITS_REL_TOL: f64 = 1e-4;

fn bias_mut(op: &mut Op) -> &mut Vec<f32> {
    match op {
        Op::Pointwise(p) => &mut p.bias,
        Op::Classifier(c) => &mut c.bias,
        _ => panic!("not prunable"),
    }
}

/// W' and b + (W - W') * mean for every prunable layer, from the GPU's
/// calibration statistics, by the CPU reference.
fn scored_cpu(net: &Lite0, gpu: &GpuLite0, pattern: Pattern, s: f64, bias_correction: bool) -> Lite0 {
    let mut out = net.clone();
    for (i, l) in out.layers.iter_mut().enumerate() {
        let Some(w) = l.prunable_weight().cloned() else {
            continue;
        };
        let c = gpu.calibration(i).expect("calibrated");
        let score = wgsparse::prune::activation_scores(&w, &c.in_norm).unwrap();
        let (sp, _) = wgsparse::prune::prune_scored(&w, &score, pattern, s).unwrap();
        let wp = sp.to_dense();
        if bias_correction {
            let b = bias_mut(&mut l.op);
            for (r, bv) in b.iter_mut().enumerate() {
                let row = |m: &Matrix| -> f64 {
                    m.data()[r * m.cols()..(r + 1) * m.cols()]
                        .iter()
                        .zip(&c.in_mean)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum()
                };
                *bv = (*bv as f64 + row(&w) - row(&wp)) as f32;
            }
        }
        *l.prunable_weight_mut().unwrap() = wp;
    }
    out
}

#[test]
fn calibration_statistics_match_the_cpu_activations() {
    let ctx = ctx();
    let f = fixture();
    let imgs = [image("coffee.png"), image("astronaut.png")];
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    assert!(pollster::block_on(gpu.calibrate(&ctx, &[])).is_err());
    pollster::block_on(gpu.calibrate(&ctx, &imgs)).unwrap();
    assert_eq!(gpu.calibrated_on(), 2);
    let acts: Vec<Vec<Vec<f32>>> = imgs
        .iter()
        .map(|x| reference::forward_all(&f.net, x).unwrap())
        .collect();
    let prunable = gpu.prunable_layers();
    // The first expand conv, a project conv with a residual, the head and the classifier.
    for &i in [
        prunable[0],
        prunable[5],
        prunable[prunable.len() - 2],
        prunable[prunable.len() - 1],
    ]
    .iter()
    {
        let layer = &f.net.layers[i];
        let w = layer.prunable_weight().unwrap();
        let bias = match &layer.op {
            Op::Pointwise(p) => &p.bias,
            Op::Classifier(c) => &c.bias,
            _ => unreachable!(),
        };
        let (cout, cin, px) = (w.rows(), w.cols(), layer.input.hw());
        let (mut in_sum, mut in_sq) = (vec![0f64; cin], vec![0f64; cin]);
        let (mut out_sum, mut out_sq) = (vec![0f64; cout], vec![0f64; cout]);
        for a in &acts {
            let x = &a[i];
            for c in 0..cin {
                for p in 0..px {
                    let v = x[c * px + p] as f64;
                    in_sum[c] += v;
                    in_sq[c] += v * v;
                }
            }
            for r in 0..cout {
                for p in 0..px {
                    let z: f64 = bias[r] as f64
                        + (0..cin)
                            .map(|c| w.data()[r * cin + c] as f64 * x[c * px + p] as f64)
                            .sum::<f64>();
                    out_sum[r] += z;
                    out_sq[r] += z * z;
                }
            }
        }
        let n = (imgs.len() * px) as f64;
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        let in_mean = f32s(in_sum.iter().map(|s| s / n).collect());
        let in_norm = f32s(in_sq.iter().map(|q| q.sqrt()).collect());
        let out_mean = f32s(out_sum.iter().map(|s| s / n).collect());
        let out_std = f32s(
            out_sum
                .iter()
                .zip(&out_sq)
                .map(|(s, q)| (q / n - (s / n).powi(2)).max(0.0).sqrt())
                .collect(),
        );
        let c = gpu.calibration(i).unwrap();
        for (what, got, want, tol) in [
            ("input mean", &c.in_mean, &in_mean, 1e-3),
            ("input norm", &c.in_norm, &in_norm, 1e-4),
            ("output mean", &c.out_mean, &out_mean, 1e-3),
            ("output std", &c.out_std, &out_std, 1e-3),
        ] {
            let err = rel_error(got, want);
            assert!(err <= tol, "{} {what}: relative error {err:e}", layer.name);
        }
    }
    // Not prunable, or out of range: no statistics.
    assert!(gpu.calibration(0).is_none());
    assert!(gpu.calibration(10_000).is_none());
}

#[test]
fn activation_criterion_and_bias_correction_match_the_cpu() {
    let ctx = ctx();
    let f = fixture();
    let x = image("chelsea.png");
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let dense = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
    let mut spec = PruneSpec::new(Pattern::Unstructured, 0.5);
    spec.criterion = Criterion::Activation;
    spec.dispatching = Dispatching::Sparse;
    // Before calibration: a clear error, for both options.
    match pollster::block_on(gpu.prune(&ctx, &spec)) {
        Err(Error::Invalid(m)) => assert!(m.contains("calibrat"), "{m}"),
        other => panic!("activation criterion without calibration: {other:?}"),
    }
    let mut bc = PruneSpec::new(Pattern::Unstructured, 0.5);
    bc.bias_correction = true;
    assert!(matches!(
        pollster::block_on(gpu.prune(&ctx, &bc)),
        Err(Error::Invalid(_))
    ));

    // Calibrated on other images than the one classified.
    pollster::block_on(gpu.calibrate(&ctx, &[image("coffee.png"), image("astronaut.png")])).unwrap();
    let first = gpu.prunable_layers()[0];
    for (p, s, correct) in [
        ("unstructured", 0.5, false),
        ("unstructured", 0.5, true),
        ("2:4", 0.5, true),
        ("block:4x4", 0.5, true),
    ] {
        let pattern: Pattern = p.parse().unwrap();
        let mut spec = PruneSpec::new(pattern, s);
        spec.criterion = Criterion::Activation;
        spec.bias_correction = correct;
        spec.dispatching = Dispatching::Sparse;
        let report = pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
        assert_eq!(report.calibration_images, 2);
        let cpu = scored_cpu(&f.net, &gpu, pattern, s, correct);
        // The mask of the first layer, bit for bit.
        let got_w = pollster::block_on(gpu.current_weights(&ctx, first)).unwrap();
        let want_w = cpu.layers[first].prunable_weight().unwrap();
        assert!(
            got_w
                .data()
                .iter()
                .zip(want_w.data())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{p}: first layer's scored mask differs from the CPU"
        );
        let magnitude = wgsparse::prune::mask(f.net.layers[first].prunable_weight().unwrap(), pattern, s)
            .unwrap()
            .mask;
        let scored_mask: Vec<bool> = got_w.data().iter().map(|v| *v != 0.0).collect();
        assert_ne!(
            scored_mask,
            (0..magnitude.rows() * magnitude.cols())
                .map(|k| magnitude.get(k / magnitude.cols(), k % magnitude.cols()))
                .collect::<Vec<_>>(),
            "{p}: the activation criterion chose the magnitude mask"
        );
        let got = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
        let want = reference::forward(&cpu, &x).unwrap();
        let err = rel_error(&got, &want);
        assert!(
            err <= LOGITS_REL_TOL,
            "{p} (bias correction {correct}): GPU logits differ from the CPU reference by {err:e}"
        );
        assert!(rel_error(&got, &dense) > 1e-3, "{p}: pruning changed nothing");
    }
}
