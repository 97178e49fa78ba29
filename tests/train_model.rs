//! Fine-tuning the real EfficientNet-Lite0 on the GPU (lavapipe in CI, at a
//! small resolution so it runs in seconds): the gradients of the whole
//! network against finite differences of its loss, masks that hold through
//! training, a short fine-tune that lowers the distillation loss, checkpoints
//! that resume exactly, and clear errors for bad requests.

mod common;

use common::ctx;
use common::model::fixture;
use wgsparse::model::{Lite0, Op, Weights};
use wgsparse::train::data::center_view;
use wgsparse::train::{checkpoint, Augment, Sources, TrainConfig, Trainer};
use wgsparse::{Error, Pattern};

const RES: usize = 64;
const SIDE: usize = 72;

fn net_at(res: usize) -> Lite0 {
    Lite0::from_weights(&Weights::from_bytes(&fixture().bytes).unwrap(), res, res).unwrap()
}

fn sources(names: &[&str]) -> Sources {
    let dir = &fixture().fetched.images_dir;
    let imgs: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    Sources::from_encoded(&imgs, SIDE).unwrap()
}

fn config(pattern: Pattern, sparsity: f64, steps: usize, batch: usize) -> TrainConfig {
    let mut c = TrainConfig::new(pattern, sparsity, steps);
    c.batch = batch;
    c.resolution = RES;
    c
}

fn layer(net: &Lite0, name: &str) -> usize {
    net.layer_index(name).unwrap_or_else(|| panic!("no layer {name}"))
}

/// Every parameter's gradient flows through the whole network: the backward
/// pass (ReLU6 gates, residual adds, pooling, depthwise and stem kernels,
/// distillation and feature terms) against central differences of the loss
/// the forward pass computes, for the largest gradients of one layer of
/// each kind. Tolerance: 5% of the gradient (f32 loss, kinks of ReLU6).
#[test]
fn whole_network_gradients_match_finite_differences() {
    let ctx = ctx();
    let net = net_at(RES);
    let src = sources(&["coffee.png", "astronaut.png"]);
    let mut cfg = config(Pattern::NM { n: 2, m: 4 }, 0.5, 10, 2);
    cfg.feature_weight = 0.5;
    cfg.temperature = 2.0;
    let mut t = Trainer::new(&ctx, &net, &src, cfg).unwrap();
    pollster::block_on(t.prune_now(&ctx)).unwrap();
    let views = [center_view(0, SIDE, RES), center_view(1, SIDE, RES)];
    let base = pollster::block_on(t.loss_and_gradients(&ctx, &views, true)).unwrap();
    assert!(
        base.kd > 1e-3 && base.feature > 0.0,
        "the pruned student differs: {base:?}"
    );
    let total = |t: &Trainer| {
        let m = pollster::block_on(t.loss_and_gradients(&ctx, &views, false)).unwrap();
        m.kd + m.feature
    };
    for name in [
        "stem",
        "blocks.0.depthwise",
        "blocks.2.expand",
        "blocks.2.depthwise",
        "blocks.5.project",
        "head",
        "classifier",
    ] {
        let i = layer(&net, name);
        let (gw, gb) = pollster::block_on(t.gradients(&ctx, i)).unwrap();
        let (w, b) = pollster::block_on(t.parameters(&ctx, i)).unwrap();
        let mask = match &net.layers[i].op {
            Op::Pointwise(_) | Op::Classifier(_) => Some(pollster::block_on(t.mask(&ctx, i)).unwrap()),
            _ => None,
        };
        // Pruned weights get masked gradients in the optimizer, not here:
        // check kept ones only. The two largest weight gradients and the
        // largest bias gradient.
        let mut order: Vec<usize> = (0..gw.len())
            .filter(|&j| mask.as_ref().is_none_or(|m| m[j] == 1.0))
            .collect();
        order.sort_by(|&a, &c| gw[c].abs().total_cmp(&gw[a].abs()));
        let bj = (0..gb.len())
            .max_by(|&a, &c| gb[a].abs().total_cmp(&gb[c].abs()))
            .unwrap();
        let picks = [(false, order[0]), (false, order[1]), (true, bj)];
        for (is_bias, j) in picks {
            let (v0, g) = if is_bias { (b[j], gb[j]) } else { (w[j], gw[j]) };
            let h = 1e-2f32 * v0.abs().max(0.05);
            t.set_parameter(&ctx, i, is_bias, j, v0 + h).unwrap();
            let lp = total(&t);
            t.set_parameter(&ctx, i, is_bias, j, v0 - h).unwrap();
            let lm = total(&t);
            t.set_parameter(&ctx, i, is_bias, j, v0).unwrap();
            let num = (lp - lm) / (2.0 * h as f64);
            let what = format!("{name} {} [{j}]", if is_bias { "bias" } else { "weight" });
            assert!(
                (num - g as f64).abs() <= 0.05 * (g as f64).abs() + 1e-6,
                "{what}: finite difference {num:.6e}, backward {g:.6e}"
            );
        }
    }
}

fn kd_on(t: &Trainer, ctx: &wgsparse::gpu::Context, views: &[[f32; 16]]) -> f64 {
    pollster::block_on(t.loss_and_gradients(ctx, views, false)).unwrap().kd
}

/// Fine-tuning the 2:4-pruned network on two photos lowers its distillation
/// loss on them; pruned weights are exactly zero after every step and follow
/// the pattern; unpruned layers (stem, depthwise) train too.
#[test]
fn a_short_fine_tune_lowers_the_loss_and_keeps_the_masks() {
    let ctx = ctx();
    let net = net_at(RES);
    let src = sources(&["coffee.png", "chelsea.png"]);
    let mut cfg = config(Pattern::NM { n: 2, m: 4 }, 0.5, 12, 2);
    cfg.lr = 1e-3;
    cfg.augment = Augment::none();
    let mut t = Trainer::new(&ctx, &net, &src, cfg).unwrap();
    pollster::block_on(t.prune_now(&ctx)).unwrap();
    let views = [center_view(0, SIDE, RES), center_view(1, SIDE, RES)];
    let before = kd_on(&t, &ctx, &views);
    let stem = layer(&net, "stem");
    let (stem0, _) = pollster::block_on(t.parameters(&ctx, stem)).unwrap();
    while !t.finished() {
        pollster::block_on(t.train_step(&ctx)).unwrap();
    }
    let after = kd_on(&t, &ctx, &views);
    assert!(
        after < 0.7 * before,
        "KL on the training photos: {before:.4} before, {after:.4} after 12 steps"
    );
    let (stem1, _) = pollster::block_on(t.parameters(&ctx, stem)).unwrap();
    assert_ne!(stem0, stem1, "the stem did not train");
    let student = pollster::block_on(t.student(&ctx, &net_at(224))).unwrap();
    for (i, l) in student.layers.iter().enumerate() {
        let Some(w) = l.prunable_weight() else { continue };
        let mask = pollster::block_on(t.mask(&ctx, i)).unwrap();
        for (j, (&v, &m)) in w.data().iter().zip(&mask).enumerate() {
            if m == 0.0 {
                assert_eq!(v.to_bits(), 0, "{} weight {j} is pruned but {v}", l.name);
            }
        }
        for row in w.data().chunks(w.cols()) {
            for g in row.chunks(4) {
                assert!(
                    g.iter().filter(|v| **v != 0.0).count() <= 2,
                    "{}: a group breaks 2:4",
                    l.name
                );
            }
        }
    }
}

/// Training 5 steps straight equals training 3, saving, restoring into a
/// fresh trainer and training 2 more (gradual schedule, augmentation on).
#[test]
fn checkpoints_resume_exactly_and_refuse_other_recipes() {
    let ctx = ctx();
    let net = net_at(RES);
    let src = sources(&["coffee.png", "chelsea.png", "astronaut.png"]);
    let mut cfg = config(Pattern::Unstructured, 0.7, 5, 2);
    cfg.gradual = true;
    cfg.gradual_end = 0.8;
    cfg.prune_every = 1;
    let mut a = Trainer::new(&ctx, &net, &src, cfg.clone()).unwrap();
    for _ in 0..5 {
        pollster::block_on(a.train_step(&ctx)).unwrap();
    }
    let mut b = Trainer::new(&ctx, &net, &src, cfg.clone()).unwrap();
    for _ in 0..3 {
        pollster::block_on(b.train_step(&ctx)).unwrap();
    }
    let saved = pollster::block_on(checkpoint::save(&ctx, &b, &[], &[])).unwrap();
    let mut c = Trainer::new(&ctx, &net, &src, cfg.clone()).unwrap();
    checkpoint::restore(&ctx, &mut c, &saved).unwrap();
    assert_eq!(c.step(), 3);
    for _ in 0..2 {
        pollster::block_on(c.train_step(&ctx)).unwrap();
    }
    let head = layer(&net, "head");
    for i in [0, head, net.layers.len() - 1] {
        let (wa, ba) = pollster::block_on(a.parameters(&ctx, i)).unwrap();
        let (wc, bc) = pollster::block_on(c.parameters(&ctx, i)).unwrap();
        assert_eq!(wa, wc, "layer {i} weights differ after resuming");
        assert_eq!(ba, bc, "layer {i} biases differ after resuming");
    }
    assert!(
        a.mask_levels().iter().all(|&s| (s - 0.7).abs() < 1e-12),
        "{:?}",
        a.mask_levels()
    );
    // Another recipe, another file kind.
    let mut other = cfg.clone();
    other.sparsity = 0.9;
    let mut d = Trainer::new(&ctx, &net, &src, other).unwrap();
    assert!(matches!(
        checkpoint::restore(&ctx, &mut d, &saved),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        checkpoint::restore(&ctx, &mut d, &fixture().bytes),
        Err(Error::Weights(_))
    ));
    assert!(matches!(
        checkpoint::restore(&ctx, &mut d, b"not a file"),
        Err(Error::Weights(_))
    ));
}

#[test]
fn bad_requests_get_clear_errors() {
    let ctx = ctx();
    let net = net_at(RES);
    let src = sources(&["coffee.png"]);
    let bad = |c: TrainConfig| Trainer::new(&ctx, &net, &src, c).err().expect("must fail").to_string();
    assert!(bad(config(Pattern::Unstructured, 0.5, 0, 1)).contains("--steps"));
    assert!(bad(config(Pattern::Dense, 0.0, 5, 1)).contains("sparse pattern"));
    assert!(bad(config(Pattern::Unstructured, 1.5, 5, 1)).contains("sparsity"));
    let mut c = config(Pattern::NM { n: 2, m: 4 }, 0.5, 5, 1);
    c.gradual = true;
    assert!(bad(c).contains("gradual"));
    let mut c = config(Pattern::Unstructured, 0.5, 5, 1);
    c.resolution = 96;
    assert!(bad(c).contains("built for"));
    assert!(Sources::from_encoded(&[("x.png".into(), b"garbage".to_vec())], SIDE).is_err());
    assert!(Sources::from_encoded(&[], SIDE).is_err());
}
