//! EfficientNet-Lite0 on the GPU (lavapipe in CI): the whole network in one
//! submission against the CPU reference, and pruned on the GPU with every
//! pattern against the CPU reference of the same pruned weights.

mod common;

use common::ctx;
use common::model::{fixture, image};
use wgsparse::model::{classes, cpu_forward, GpuLite0, KernelPolicy, Lite0, Op, PruneSpec, Scope};
use wgsparse::reference::rel_error;
use wgsparse::Pattern;

/// GPU (f32) against the CPU reference (f64 accumulation) on the logits.
const LOGITS_REL_TOL: f64 = 1e-4;

fn cat(class: usize) -> bool {
    (281..=285).contains(&class)
}

/// The CPU network with every prunable layer pruned by the CPU reference.
fn pruned_cpu(net: &Lite0, pattern: Pattern, sparsity: f64) -> Lite0 {
    let mut net = net.clone();
    for l in &mut net.layers {
        if let Some(w) = l.prunable_weight_mut() {
            let m = wgsparse::prune::mask(w, pattern, sparsity).unwrap().mask;
            *w = w.masked(&m).unwrap();
        }
    }
    net
}

#[test]
fn dense_gpu_matches_the_cpu_reference_and_classifies() {
    let ctx = ctx();
    let f = fixture();
    let gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    for (img, ok) in [
        ("chelsea.png", &(|c| cat(c)) as &dyn Fn(usize) -> bool),
        ("coffee.png", &|c| [967, 968, 504].contains(&c)),
    ] {
        let x = image(img);
        let got = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
        let want = cpu_forward::forward(&f.net, &x).unwrap();
        let err = rel_error(&got, &want);
        assert!(
            err <= LOGITS_REL_TOL,
            "{img}: logits differ from the CPU reference by {err:e}"
        );
        let top = classes::top_k(&got, 5);
        eprintln!(
            "{img}: {:?}",
            top.iter().map(|p| (p.class, p.name.clone())).collect::<Vec<_>>()
        );
        assert!(top.iter().any(|p| ok(p.class)), "{img}: top-5 {top:?}");
    }
}

#[test]
fn every_pattern_at_50_percent_runs_its_sparse_kernel_and_matches_the_cpu() {
    let ctx = ctx();
    let f = fixture();
    let x = image("chelsea.png");
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let dense = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
    for p in ["unstructured", "block:16x16", "block:4x4", "2:4"] {
        let pattern: Pattern = p.parse().unwrap();
        let mut spec = PruneSpec::new(pattern, 0.5);
        spec.dispatching = KernelPolicy::Sparse;
        let report = pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
        let pointwise = f.net.layers.iter().filter(|l| l.prunable_weight().is_some()).count();
        assert_eq!(report.layers.len(), pointwise, "{p}: every prunable layer reported");
        for l in &report.layers {
            assert_ne!(l.kernel, "gemm", "{p}: {} did not run a sparse kernel", l.name);
            assert!(
                l.sparse_bytes < l.dense_bytes || pattern == Pattern::Unstructured,
                "{p}: {}",
                l.name
            );
        }
        let got = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
        assert!(got.iter().all(|v| v.is_finite()), "{p}: non-finite logits");
        assert!(rel_error(&got, &dense) > 1e-3, "{p}: pruning changed nothing");
        let want = cpu_forward::forward(&pruned_cpu(&f.net, pattern, 0.5), &x).unwrap();
        let err = rel_error(&got, &want);
        assert!(
            err <= LOGITS_REL_TOL,
            "{p}: GPU pruned logits differ from the CPU reference by {err:e}"
        );
    }
    // Back to dense is exact: the dense weights never changed.
    pollster::block_on(gpu.prune(&ctx, &PruneSpec::new(Pattern::Dense, 0.0))).unwrap();
    assert_eq!(pollster::block_on(gpu.forward(&ctx, &x)).unwrap(), dense);
}

#[test]
fn zero_sparsity_changes_nothing_and_30_percent_keeps_a_cat() {
    let ctx = ctx();
    let f = fixture();
    let x = image("chelsea.png");
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let dense = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
    pollster::block_on(gpu.prune(&ctx, &PruneSpec::new(Pattern::Unstructured, 0.0))).unwrap();
    assert_eq!(pollster::block_on(gpu.forward(&ctx, &x)).unwrap(), dense);
    // The default dispatching picks dense or sparse per layer by measured
    // speed; either way the layer must compute with the PRUNED weights.
    let report = pollster::block_on(gpu.prune(&ctx, &PruneSpec::new(Pattern::Unstructured, 0.3))).unwrap();
    eprintln!("{report}");
    let got = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
    let want = cpu_forward::forward(&pruned_cpu(&f.net, Pattern::Unstructured, 0.3), &x).unwrap();
    let err = rel_error(&got, &want);
    assert!(
        err <= LOGITS_REL_TOL,
        "30% with per-layer dispatch differs from the pruned CPU reference by {err:e}"
    );
    let top = classes::top_k(&got, 5);
    assert!(cat(top[0].class), "30% unstructured: top-1 {top:?}");
    // The same prune again: every layer's choice comes from the tuner, none
    // is measured twice.
    let measured = gpu.tuner().measurements();
    assert!(measured > 0);
    let again = pollster::block_on(gpu.prune(&ctx, &PruneSpec::new(Pattern::Unstructured, 0.3))).unwrap();
    assert_eq!(gpu.tuner().measurements(), measured, "a layer was measured twice");
    for (a, b) in again.layers.iter().zip(&report.layers) {
        assert_eq!(
            (a.kernel, a.dense_ms, a.sparse_ms),
            (b.kernel, b.dense_ms, b.sparse_ms),
            "{}",
            a.name
        );
    }
    // Global scope: one threshold, the total pruned is exact.
    let mut spec = PruneSpec::new(Pattern::Unstructured, 0.5);
    spec.scope = Scope::Global;
    spec.dispatching = KernelPolicy::Sparse;
    let report = pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
    let (total, kept): (usize, usize) = f
        .net
        .layers
        .iter()
        .filter_map(|l| l.prunable_weight())
        .map(|w| w.rows() * w.cols())
        .zip(
            report
                .layers
                .iter()
                .map(|l| ((1.0 - l.achieved) * (l.shape.0 * l.shape.1) as f64).round() as usize),
        )
        .fold((0, 0), |a, (t, k)| (a.0 + t, a.1 + k));
    assert_eq!(
        total - kept,
        (0.5 * total as f64).round() as usize,
        "global prune count"
    );
    let mut bad = PruneSpec::new(Pattern::NM { n: 2, m: 4 }, 0.5);
    bad.scope = Scope::Global;
    assert!(pollster::block_on(gpu.prune(&ctx, &bad)).is_err());
    assert!(pollster::block_on(gpu.prune(&ctx, &PruneSpec::new(Pattern::Unstructured, 1.5))).is_err());
    assert!(gpu.set_input(&ctx, &x[..100]).is_err());
    assert!(matches!(f.net.layers.last().map(|l| &l.op), Some(Op::Classifier(_))));
}
