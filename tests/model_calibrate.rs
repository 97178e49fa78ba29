//! Calibration, the activation-aware criterion and bias correction on the real
//! EfficientNet-Lite0 (lavapipe in CI): statistics against the CPU reference
//! activations, and the pruned GPU model against the CPU reference of the same
//! scored masks and corrected biases.

mod common;

use common::ctx;
use common::model::{fixture, image};
use wgsparse::model::calibrate::RENORM_MAX_SCALE;
use wgsparse::model::{cpu_forward, Criterion, GpuLite0, KernelPolicy, Lite0, Op, PruneSpec};
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
        .map(|x| cpu_forward::forward_all(&f.net, x).unwrap())
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
    spec.dispatching = KernelPolicy::Sparse;
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
        spec.dispatching = KernelPolicy::Sparse;
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
        let want = cpu_forward::forward(&cpu, &x).unwrap();
        let err = rel_error(&got, &want);
        assert!(
            err <= LOGITS_REL_TOL,
            "{p} (bias correction {correct}): GPU logits differ from the CPU reference by {err:e}"
        );
        assert!(rel_error(&got, &dense) > 1e-3, "{p}: pruning changed nothing");
    }
}

/// Per-channel mean and std of `W x + b` over the calibration images (CPU).
fn pre_activation_stats(net: &Lite0, i: usize, imgs: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let layer = &net.layers[i];
    let w = layer.prunable_weight().unwrap();
    let bias = match &layer.op {
        Op::Pointwise(p) => &p.bias,
        Op::Classifier(c) => &c.bias,
        _ => unreachable!(),
    };
    let (cout, cin, px) = (w.rows(), w.cols(), layer.input.hw());
    let (mut s, mut q) = (vec![0f64; cout], vec![0f64; cout]);
    for x in imgs {
        let a = &cpu_forward::forward_all(net, x).unwrap()[i];
        for r in 0..cout {
            for p in 0..px {
                let z: f64 = bias[r] as f64
                    + (0..cin)
                        .map(|c| w.data()[r * cin + c] as f64 * a[c * px + p] as f64)
                        .sum::<f64>();
                s[r] += z;
                q[r] += z * z;
            }
        }
    }
    let n = (imgs.len() * px) as f64;
    let mean: Vec<f32> = s.iter().map(|v| (v / n) as f32).collect();
    let std: Vec<f32> = s
        .iter()
        .zip(&q)
        .map(|(v, q)| (q / n - (v / n).powi(2)).max(0.0).sqrt() as f32)
        .collect();
    (mean, std)
}

#[test]
fn renormalization_restores_the_dense_channel_statistics() {
    let ctx = ctx();
    let f = fixture();
    let x = image("chelsea.png");
    let calib = [image("coffee.png"), image("astronaut.png")];
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let dense = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
    let mut spec = PruneSpec::new(Pattern::Unstructured, 0.5);
    spec.renorm = true;
    assert!(matches!(
        pollster::block_on(gpu.prune(&ctx, &spec)),
        Err(Error::Invalid(_))
    ));
    pollster::block_on(gpu.calibrate(&ctx, &calib)).unwrap();
    // At 0% re-normalization changes nothing.
    let mut zero = spec.clone();
    zero.sparsity = 0.0;
    pollster::block_on(gpu.prune(&ctx, &zero)).unwrap();
    assert_eq!(pollster::block_on(gpu.forward(&ctx, &x)).unwrap(), dense);

    let prunable = gpu.prunable_layers();
    let probe = [prunable[0], prunable[1], prunable[prunable.len() / 2]];
    for p in ["unstructured", "2:4", "block:4x4"] {
        let pattern: Pattern = p.parse().unwrap();
        let mut plain = PruneSpec::new(pattern, 0.5);
        plain.dispatching = KernelPolicy::Sparse;
        pollster::block_on(gpu.prune(&ctx, &plain)).unwrap();
        let before = pollster::block_on(gpu.current_net(&ctx)).unwrap();
        let mut spec = plain.clone();
        spec.renorm = true;
        let report = pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
        assert!(report.renorm);
        let after = pollster::block_on(gpu.current_net(&ctx)).unwrap();
        // Same mask, scaled weights (a channel whose dense output is constant
        // on the calibration images gets scale 0: its whole row is zero).
        for &i in &prunable {
            let (b, a) = (
                before.layers[i].prunable_weight().unwrap(),
                after.layers[i].prunable_weight().unwrap(),
            );
            let cols = b.cols();
            for (r, (rb, ra)) in b.data().chunks(cols).zip(a.data().chunks(cols)).enumerate() {
                let same = rb.iter().zip(ra).all(|(u, v)| (*u == 0.0) == (*v == 0.0));
                let zeroed = ra.iter().all(|v| *v == 0.0) && gpu.calibration(i).unwrap().out_std[r] == 0.0;
                assert!(
                    same || zeroed,
                    "{p}: re-normalization changed the mask of {} row {r}",
                    f.net.layers[i].name
                );
            }
        }
        // The GPU model equals the CPU reference of its own weights.
        let got = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
        let want = cpu_forward::forward(&after, &x).unwrap();
        assert!(rel_error(&got, &want) <= 1e-4, "{p}: {:e}", rel_error(&got, &want));
        assert!(rel_error(&got, &dense) > 1e-3);
        // Channel statistics back to the dense model's (the first pruned
        // layer exactly up to f32 sums; later ones see re-normalized inputs).
        for &i in &probe {
            let c = gpu.calibration(i).unwrap();
            let (m0, s0) = pre_activation_stats(&before, i, &calib);
            let (m1, s1) = pre_activation_stats(&after, i, &calib);
            // Channels whose scale was not clamped (a <= RENORM_MAX_SCALE;
            // the margin covers f32 against f64 statistics).
            let free: Vec<usize> = (0..s0.len())
                .filter(|&r| s0[r] > 0.0 && (c.out_std[r] / s0[r]) as f64 <= 0.99 * RENORM_MAX_SCALE)
                .collect();
            let pick = |v: &[f32]| free.iter().map(|&r| v[r]).collect::<Vec<f32>>();
            // (Rows the pattern emptied have sp = 0: only their mean can be restored.)
            assert!(
                free.len() * 2 >= s0.len(),
                "{p}: {} of {} channels free",
                free.len(),
                s0.len()
            );
            let (c_std, c_mean) = (pick(&c.out_std), pick(&c.out_mean));
            let (s0, s1, m0, m1) = (pick(&s0), pick(&s1), pick(&m0), pick(&m1));
            let (e0, e1) = (rel_error(&s0, &c_std), rel_error(&s1, &c_std));
            let (f0, f1) = (rel_error(&m0, &c_mean), rel_error(&m1, &c_mean));
            eprintln!(
                "{p} {}: std error {e0:.3e} -> {e1:.3e}, mean error {f0:.3e} -> {f1:.3e}",
                f.net.layers[i].name
            );
            assert!(
                e1 < 1e-2 && f1 < 1e-2,
                "{p} {}: statistics not restored",
                f.net.layers[i].name
            );
            assert!(e1 < e0, "{p} {}: std error did not drop", f.net.layers[i].name);
        }
    }
}

#[test]
fn sensitivity_budgets_prune_a_chosen_subset_of_layers() {
    use wgsparse::model::budget::{allocate, Cost};
    let ctx = ctx();
    let f = fixture();
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let nm: Pattern = "2:4".parse().unwrap();
    assert!(pollster::block_on(gpu.sensitivity(&ctx, nm, Criterion::Magnitude)).is_err());
    pollster::block_on(gpu.calibrate(&ctx, &[image("coffee.png")])).unwrap();
    let t = std::time::Instant::now();
    let s = pollster::block_on(gpu.sensitivity(&ctx, nm, Criterion::Magnitude)).unwrap();
    eprintln!(
        "2:4 sensitivity of {} layers in {:.1} s",
        s.layers.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(s.layers.len(), gpu.prunable_layers().len());
    for l in &s.layers {
        assert!(
            l.kl.len() == 1 && l.kl[0].is_finite() && l.kl[0] >= -1e-9,
            "{}: {:?}",
            l.name,
            l.kl
        );
    }
    let (lo, hi) = s
        .layers
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), l| (a.min(l.kl[0]), b.max(l.kl[0])));
    eprintln!("KL per layer from {lo:.4} to {hi:.4}");
    assert!(hi > 10.0 * lo.max(1e-6), "layers differ in sensitivity");
    // Cached: the second call measures nothing.
    let t = std::time::Instant::now();
    pollster::block_on(gpu.sensitivity(&ctx, nm, Criterion::Magnitude)).unwrap();
    assert!(t.elapsed().as_secs_f64() < 0.1);

    // A quarter of the weights removed by 2:4 on the least sensitive layers.
    let per = allocate(&s, 0.25, Cost::Weights).unwrap();
    let mut spec = PruneSpec::new(nm, 0.5);
    spec.layer_sparsity = Some(per.clone());
    spec.dispatching = KernelPolicy::Sparse;
    let report = pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
    let pruned: usize = report.layers.iter().map(|l| l.shape.0 * l.shape.1).sum();
    let total: usize = s.layers.iter().map(|l| l.weights).sum();
    let removed = 0.5 * pruned as f64 / total as f64;
    assert!((0.25..0.35).contains(&removed), "removed {removed}");
    assert_eq!(report.layers.len(), per.iter().filter(|&&x| x > 0.0).count());
    // The chosen layers are the cheap ones: their mean KL is below the rest's.
    let (mut a, mut b) = (vec![], vec![]);
    for (l, &x) in s.layers.iter().zip(&per) {
        if x > 0.0 {
            a.push(l.kl[0])
        } else {
            b.push(l.kl[0])
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(mean(&a) < mean(&b), "chosen {a:?} vs kept {b:?}");
    // The pruned model equals the CPU reference of the same weights.
    let x = image("chelsea.png");
    let got = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
    let net = pollster::block_on(gpu.current_net(&ctx)).unwrap();
    let want = cpu_forward::forward(&net, &x).unwrap();
    assert!(rel_error(&got, &want) <= LOGITS_REL_TOL);
    // A wrong number of per-layer sparsities is an error.
    spec.layer_sparsity = Some(vec![0.5; 3]);
    assert!(matches!(
        pollster::block_on(gpu.prune(&ctx, &spec)),
        Err(Error::Invalid(_))
    ));
}
