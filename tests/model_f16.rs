//! EfficientNet-Lite0 in f16 storage (lavapipe in CI, the H100 by hand): the
//! f16 model against the f32 model on the same weights, layer by layer and on
//! the logits, dense and pruned, with the per-layer dispatch checked against
//! its own measurements.

mod common;

use common::ctx_f16;
use common::model::{fixture, image};
use wgsparse::gpu::Context;
use wgsparse::model::{classes, F16Report, GpuLite0, KernelPolicy, PruneSpec};
use wgsparse::reference::rel_error;
use wgsparse::Pattern;

/// f16 activations and weights (f32 sums) against the f32 model, norm-wise:
/// about 2e-3 is the rounding of 50 layers; a wrong tile or index is O(1).
const F16_MODEL_TOL: f64 = 2e-2;

fn logits(ctx: &Context, gpu: &GpuLite0, x: &[f32]) -> Vec<f32> {
    pollster::block_on(gpu.forward(ctx, x)).unwrap()
}

/// Every measured layer runs the fastest of its candidates.
fn check_dispatch(report: &F16Report, what: &str) {
    for l in &report.layers {
        assert!(
            l.candidates.iter().any(|(k, _)| *k == "gemm_f16"),
            "{what}: {} has no gemm_f16 candidate",
            l.name
        );
        let best = l
            .candidates
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("measured candidates");
        assert!(best.1.is_finite() && best.1 > 0.0, "{what}: {} timed {best:?}", l.name);
        assert_eq!(
            l.kernel, best.0,
            "{what}: {} does not run its fastest candidate",
            l.name
        );
    }
}

#[test]
fn dense_f16_model_tracks_the_f32_model_layer_by_layer() {
    let ctx = ctx_f16();
    let f = fixture();
    let gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let f16 = pollster::block_on(gpu.to_f16(&ctx, KernelPolicy::Fastest)).unwrap();
    eprintln!("{}", f16.report());
    assert_eq!(f16.report().layers.len(), gpu.prunable_layers().len());
    assert!(f16.report().layers.iter().all(|l| !l.pruned));
    check_dispatch(f16.report(), "dense");
    // Built again, every layer's decision comes from the tuner: nothing is
    // measured and every layer runs what it ran.
    let measured = gpu.tuner().measurements();
    assert!(measured > 0 && measured <= f16.report().layers.len());
    let again = pollster::block_on(gpu.to_f16(&ctx, KernelPolicy::Fastest)).unwrap();
    assert_eq!(gpu.tuner().measurements(), measured, "a decision was measured twice");
    for (a, b) in again.report().layers.iter().zip(&f16.report().layers) {
        assert_eq!((a.kernel, &a.candidates), (b.kernel, &b.candidates), "{}", a.name);
    }
    for img in ["chelsea.png", "coffee.png"] {
        let x = image(img);
        let want = pollster::block_on(gpu.forward_all(&ctx, &x)).unwrap();
        let got = pollster::block_on(f16.forward_all(&ctx, &x)).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = rel_error(g, w);
            assert!(
                err <= F16_MODEL_TOL,
                "{img}: tensor {i} ({}) differs from f32 by {err:e}",
                if i == 0 { "input" } else { &f.net.layers[i - 1].name }
            );
        }
        let (g, w) = (got.last().unwrap(), want.last().unwrap());
        eprintln!("{img}: f16 logits vs f32: {:e}", rel_error(g, w));
        assert_eq!(
            classes::top_k(g, 1)[0].class,
            classes::top_k(w, 1)[0].class,
            "{img}: f16 and f32 disagree on top-1"
        );
    }
    assert!(f16.set_input(&ctx, &image("chelsea.png")[..100]).is_err());
    let t = pollster::block_on(f16.latency(&ctx, 1, 3)).unwrap();
    assert!(t.median_ms() > 0.0);
}

#[test]
fn pruned_f16_model_runs_the_pruned_weights_with_the_sparse_or_the_faster_kernel() {
    let ctx = ctx_f16();
    let f = fixture();
    let x = image("chelsea.png");
    let mut gpu = GpuLite0::new(&ctx, f.net.clone()).unwrap();
    let dense = logits(&ctx, &gpu, &x);
    // block:32x32 is pruned with the f32 model's measured dispatch, so layers
    // where dense f32 won hold masked dense weights: f16 must still offer BSR.
    for (p, sparsity, f32_dispatch) in [
        ("block:16x16", 0.5, KernelPolicy::Sparse),
        ("block:32x32", 0.7, KernelPolicy::Fastest),
        ("unstructured", 0.5, KernelPolicy::Sparse),
        ("2:4", 0.0, KernelPolicy::Fastest),
    ] {
        let pattern: Pattern = p.parse().unwrap();
        let mut spec = PruneSpec::new(pattern, sparsity);
        spec.dispatching = f32_dispatch;
        pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
        let want = logits(&ctx, &gpu, &x);
        assert!(rel_error(&want, &dense) > 1e-3, "{p}: pruning changed nothing");
        // The f16 sparse kernels of the pattern (none for unstructured).
        let sparse_prefix = match pattern {
            Pattern::Block { .. } => Some("spmm_bsr"),
            Pattern::NM { .. } => Some("spmm_nm"),
            _ => None,
        };
        for dispatching in [KernelPolicy::Sparse, KernelPolicy::Fastest] {
            let f16 = pollster::block_on(gpu.to_f16(&ctx, dispatching)).unwrap();
            let what = format!("{p} {dispatching:?}");
            let report = f16.report();
            assert!(report.layers.iter().all(|l| l.pruned), "{what}: a layer is not pruned");
            match dispatching {
                KernelPolicy::Sparse => {
                    for l in &report.layers {
                        // Block and 2:4 layers run their f16 sparse kernels;
                        // unstructured has none and runs dense on its pruned weights.
                        let ok = l.kernel.starts_with(sparse_prefix.unwrap_or("gemm"));
                        assert!(ok, "{what}: {} runs {}", l.name, l.kernel);
                        assert!(l.candidates.is_empty());
                    }
                }
                KernelPolicy::Fastest => {
                    eprintln!("{what}\n{report}");
                    check_dispatch(report, &what);
                    if let Some(prefix) = sparse_prefix {
                        for l in &report.layers {
                            assert!(
                                l.candidates.iter().any(|(k, _)| k.starts_with(prefix)),
                                "{what}: {} has no sparse candidate",
                                l.name
                            );
                        }
                    }
                }
            }
            let got = pollster::block_on(f16.forward(&ctx, &x)).unwrap();
            let err = rel_error(&got, &want);
            eprintln!("{what}: f16 vs f32 logits {err:e}");
            assert!(
                err <= F16_MODEL_TOL,
                "{what}: f16 differs from the pruned f32 model by {err:e}"
            );
            assert_eq!(
                classes::top_k(&got, 1)[0].class,
                classes::top_k(&want, 1)[0].class,
                "{what}"
            );
        }
    }
}
