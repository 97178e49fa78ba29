//! Sparse fine-tuning of EfficientNet-Lite0 by distillation, entirely on the
//! GPU: each step augments a batch from the packed photos, runs the dense
//! teacher and the pruned student forward (keeping every activation of the
//! student), takes the KL divergence of the student's softened probabilities
//! from the teacher's plus a feature-matching term at every block output,
//! back-propagates through every layer (stem, depthwise, 1x1, residual adds,
//! pooling, classifier) and applies AdamW with the masks, so pruned weights
//! stay exactly zero. Masks come from the GPU pruning plans (the runtime's own
//! magnitude pruning, same tie rule as the CPU reference) at the target
//! sparsity, or along a cubic gradual schedule from dense to the target.
//!
//! One step is one submission; nothing is read back except when the caller
//! asks for the metrics (loss, agreement) or the weights.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{elementwise, read_many, Context, Dispatch, GpuBuffer, GpuMatrix, PrunePlan};
use crate::model::lite0::{Activation, Lite0, Op};
use crate::model::preprocess::LITE_NORMALIZATION;
use crate::prune::BlockNorm;
use crate::sparse::{Matrix, Pattern};

use super::data::{center_view, Augment, Rng, Sources};
use super::kernels::{self as k, ConvGeom, GemmEpilogue, Operand, Pruned, AUG_FLOATS, FEATURE_LOSS_GROUPS};

/// How to fine-tune.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub pattern: Pattern,
    /// Target sparsity of every prunable layer (ignored for N:M).
    pub sparsity: f64,
    /// Per prunable layer targets overriding `sparsity` (e.g. an auto budget).
    pub layer_sparsity: Option<Vec<f64>>,
    /// Prune gradually (cubic schedule from 0 to the target over the first
    /// `gradual_end` of the steps, masks recomputed every `prune_every`
    /// steps) instead of fixing the masks at the start.
    pub gradual: bool,
    pub gradual_end: f64,
    pub prune_every: usize,
    pub steps: usize,
    pub batch: usize,
    /// Square input side during training (the network is fully convolutional).
    pub resolution: usize,
    /// Peak learning rate (AdamW), reached after `warmup` steps, cosine to 0.
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Distillation temperature.
    pub temperature: f64,
    /// Weight of the feature-matching term (mean squared error at block outputs).
    pub feature_weight: f64,
    pub augment: Augment,
    pub seed: u64,
}

impl TrainConfig {
    pub fn new(pattern: Pattern, sparsity: f64, steps: usize) -> Self {
        TrainConfig {
            pattern,
            sparsity,
            layer_sparsity: None,
            gradual: false,
            gradual_end: 0.6,
            prune_every: 0,
            steps,
            batch: 32,
            resolution: 224,
            lr: 3e-4,
            warmup: 0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            temperature: 1.0,
            feature_weight: 1.0,
            augment: Augment::default(),
            seed: 0,
        }
    }

    /// Checks every field, with a clear message for the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let pattern = self.pattern.validate()?;
        if pattern == Pattern::Dense {
            return bad("fine-tuning needs a sparse pattern (unstructured, block:RxC or N:M)".into());
        }
        let nm = matches!(pattern, Pattern::NM { .. });
        if !(nm || self.sparsity > 0.0 && self.sparsity < 1.0) {
            return Err(Error::InvalidSparsity(self.sparsity));
        }
        if let Some(ls) = &self.layer_sparsity {
            if let Some(s) = ls.iter().find(|s| !(0.0..1.0).contains(*s)) {
                return Err(Error::InvalidSparsity(*s));
            }
        }
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("the batch must hold at least one image".into());
        }
        if self.resolution < 32 {
            return bad(format!("resolution {} is below Lite0's minimum of 32", self.resolution));
        }
        if self.gradual && matches!(pattern, Pattern::NM { .. }) {
            return bad("a gradual schedule needs unstructured or block sparsity (N:M has one level)".into());
        }
        if self.gradual && !(self.gradual_end > 0.0 && self.gradual_end <= 1.0) {
            return bad(format!("gradual end {} must be in (0, 1]", self.gradual_end));
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if !finite_pos(self.lr) || !finite_pos(self.temperature) {
            return bad("learning rate and temperature must be positive".into());
        }
        if !(self.weight_decay >= 0.0 && self.feature_weight >= 0.0) {
            return bad("weight decay and feature weight must be >= 0".into());
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return bad("Adam betas must be in [0, 1)".into());
        }
        self.augment.validate()
    }

    /// The sparsity of every prunable layer at `step` (the schedule).
    pub fn sparsity_at(&self, layer: usize, step: usize) -> f64 {
        let given = self.layer_sparsity.as_ref().and_then(|v| v.get(layer).copied());
        let target = match self.pattern {
            // N:M has one level; a per-layer 0 keeps that layer dense.
            Pattern::NM { n, m } => match given {
                Some(0.0) => 0.0,
                _ => 1.0 - n as f64 / m as f64,
            },
            _ => given.unwrap_or(self.sparsity),
        };
        if !self.gradual {
            return target;
        }
        let every = self.prune_interval();
        let end = ((self.steps as f64 * self.gradual_end).round() as usize).max(1);
        // The level is held between re-prunes: round the step down to one.
        let s = (step / every) * every;
        let frac = (s as f64 / end as f64).min(1.0);
        target * (1.0 - (1.0 - frac).powi(3))
    }

    /// Steps between re-prunes of the gradual schedule.
    pub fn prune_interval(&self) -> usize {
        if self.prune_every > 0 {
            self.prune_every
        } else {
            (((self.steps as f64 * self.gradual_end) / 16.0).round() as usize).max(1)
        }
    }

    /// The learning rate at `step` (linear warm-up, then cosine to 0).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup.min(self.steps)).max(1) as f64;
        let t = (step - self.warmup.min(step)) as f64 / span;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// The loss and agreement of one step (or one evaluation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepMetrics {
    pub step: usize,
    /// Mean over the batch of T^2 KL(teacher || student).
    pub kd: f64,
    /// Feature-matching loss (weighted sum of the per-block mean squared errors).
    pub feature: f64,
    /// Fraction of the batch whose top-1 class agrees with the teacher's.
    pub agreement: f64,
}

struct Param {
    rows: usize,
    cols: usize,
    w: GpuBuffer,
    b: GpuBuffer,
    gw: GpuBuffer,
    gb: GpuBuffer,
    mw: GpuBuffer,
    vw: GpuBuffer,
    mb: GpuBuffer,
    vb: GpuBuffer,
    /// Prunable layers only: 1 where the weight is kept.
    mask: Option<GpuBuffer>,
}

/// The fine-tuning engine: the student's parameters and optimizer state,
/// every activation and gradient buffer, and the prepared dispatches of a step.
pub struct Trainer {
    cfg: TrainConfig,
    net: Lite0,
    params: Vec<Option<Param>>,
    /// Prunable layer indices, in network order.
    prunable: Vec<usize>,
    _sources: GpuBuffer,
    source_count: usize,
    side: usize,
    aug: GpuBuffer,
    hyper: GpuBuffer,
    metrics: GpuBuffer,
    feature_count: usize,
    backward_list: Vec<Dispatch>,
    update_list: Vec<Dispatch>,
    forward_list: Vec<Dispatch>,
    feature_eval: Vec<Dispatch>,
    augment_train: Dispatch,
    step: usize,
    rng: Rng,
    /// The sparsity each prunable layer's mask was last computed at.
    mask_level: Vec<f64>,
    /// Kept so the bind groups' buffers outlive the dispatches.
    _buffers: Vec<GpuBuffer>,
    /// Student activations (tensor `t` of the network, batched).
    acts: Vec<GpuBuffer>,
}

fn buffer(ctx: &Context, len: usize, label: &str) -> Result<GpuBuffer> {
    let b = GpuBuffer::new(ctx, (len.max(1) * 4) as u64, label)?;
    Ok(b)
}

fn zeros(ctx: &Context, len: usize, label: &str) -> Result<GpuBuffer> {
    GpuBuffer::from_slice(ctx, &vec![0.0f32; len.max(1)], label)
}

/// The weight and bias of a layer with parameters, and whether it is prunable.
fn layer_params(op: &Op) -> Option<(&Matrix, &[f32], bool)> {
    match op {
        Op::Conv(c) => Some((&c.weight, &c.bias, false)),
        Op::Depthwise(d) => Some((&d.weight, &d.bias, false)),
        Op::Pointwise(p) => Some((&p.weight, &p.bias, true)),
        Op::Classifier(c) => Some((&c.weight, &c.bias, true)),
        Op::Pool => None,
    }
}

fn geom(op: &Op, l: &crate::model::lite0::Layer, batch: usize) -> Option<ConvGeom> {
    let (cin, cout, kk, stride, pad, depthwise) = match op {
        Op::Conv(c) => (c.cin, c.cout, c.k, c.stride, c.pad, false),
        Op::Depthwise(d) => (d.c, d.c, d.k, d.stride, d.pad, true),
        _ => return None,
    };
    Some(ConvGeom {
        cin,
        cout,
        batch,
        k: kk,
        stride,
        h: l.input.h,
        w: l.input.w,
        oh: l.output.h,
        ow: l.output.w,
        pad_top: pad.top,
        pad_left: pad.left,
        depthwise,
    })
}

fn relu6(op: &Op) -> bool {
    match op {
        Op::Conv(c) => c.act == Activation::Relu6,
        Op::Depthwise(d) => d.act == Activation::Relu6,
        Op::Pointwise(p) => p.act == Activation::Relu6,
        _ => false,
    }
}

/// Records the forward pass of `net` over batched tensors `acts`, with the
/// weights `wb(layer)`.
fn forward(
    ctx: &Context,
    net: &Lite0,
    batch: usize,
    acts: &[GpuBuffer],
    wb: &dyn Fn(usize) -> Option<(GpuBuffer, GpuBuffer)>,
) -> Result<Vec<Dispatch>> {
    let mut list = Vec::new();
    for (i, l) in net.layers.iter().enumerate() {
        let (x, y) = (&acts[i], &acts[i + 1]);
        let n = batch * l.input.hw();
        match &l.op {
            Op::Conv(_) | Op::Depthwise(_) => {
                let g = geom(&l.op, l, batch).expect("convolution");
                let (w, b) = wb(i).expect("weights");
                list.push(k::conv(ctx, &g, x, &w, &b, y, relu6(&l.op))?);
            }
            Op::Pointwise(p) => {
                let (w, b) = wb(i).expect("weights");
                let res = p.residual_from.map(|t| &acts[t]);
                list.extend(k::gemm(
                    ctx,
                    Operand::rows(&w, p.cin),
                    Operand::rows(x, n),
                    y,
                    p.cout,
                    n,
                    p.cin,
                    GemmEpilogue {
                        bias: Some(&b),
                        relu6: p.act == Activation::Relu6,
                        residual: res,
                        accumulate: false,
                    },
                    None,
                )?);
            }
            Op::Pool => {
                let hw = l.input.hw();
                list.push(k::rowsum(ctx, x, y, l.input.c * batch, hw, 1.0 / hw as f32, false)?);
            }
            Op::Classifier(c) => {
                let (w, b) = wb(i).expect("weights");
                let (rows, cols) = (c.weight.rows(), c.weight.cols());
                list.extend(k::gemm(
                    ctx,
                    Operand::rows(&w, cols),
                    Operand::rows(x, batch),
                    y,
                    rows,
                    batch,
                    cols,
                    GemmEpilogue {
                        bias: Some(&b),
                        ..Default::default()
                    },
                    None,
                )?);
            }
        }
    }
    Ok(list)
}

impl Trainer {
    /// Builds the engine for `net` (the dense teacher, folded, built at
    /// `cfg.resolution`: [`Lite0::from_weights`]), which is also the
    /// student's starting point, training on `sources`.
    pub fn new(ctx: &Context, net: &Lite0, sources: &Sources, cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        if net.input.h != cfg.resolution || net.input.w != cfg.resolution {
            return Err(Error::Shape(format!(
                "the network is built for {}x{}, the configuration trains at {}",
                net.input.h, net.input.w, cfg.resolution
            )));
        }
        if sources.is_empty() || sources.pixels.len() != sources.len() * sources.side * sources.side {
            return Err(Error::Invalid("the training sources are empty or malformed".into()));
        }
        let prunable: Vec<usize> = (0..net.layers.len())
            .filter(|&i| net.layers[i].prunable_weight().is_some())
            .collect();
        if let Some(ls) = &cfg.layer_sparsity {
            if ls.len() != prunable.len() {
                return Err(Error::Shape(format!(
                    "{} per-layer sparsities for {} prunable layers",
                    ls.len(),
                    prunable.len()
                )));
            }
        }
        let batch = cfg.batch;
        let mut keep = Vec::new();

        // Parameters: the student's (trained) and the teacher's (frozen).
        let mut params = Vec::with_capacity(net.layers.len());
        let mut teacher: Vec<Option<(GpuBuffer, GpuBuffer)>> = Vec::with_capacity(net.layers.len());
        for l in &net.layers {
            let Some((w, b, prunable)) = layer_params(&l.op) else {
                params.push(None);
                teacher.push(None);
                continue;
            };
            let (rows, cols) = (w.rows(), w.cols());
            let n = rows * cols;
            let tw = GpuBuffer::from_slice(ctx, w.data(), "teacher weight")?;
            let tb = GpuBuffer::from_slice(ctx, b, "teacher bias")?;
            teacher.push(Some((tw, tb)));
            params.push(Some(Param {
                rows,
                cols,
                w: GpuBuffer::from_slice(ctx, w.data(), "student weight")?,
                b: GpuBuffer::from_slice(ctx, b, "student bias")?,
                gw: zeros(ctx, n, "weight gradient")?,
                gb: zeros(ctx, rows, "bias gradient")?,
                mw: zeros(ctx, n, "adam m")?,
                vw: zeros(ctx, n, "adam v")?,
                mb: zeros(ctx, rows, "adam m")?,
                vb: zeros(ctx, rows, "adam v")?,
                mask: if prunable {
                    Some(GpuBuffer::from_slice(ctx, &vec![1.0f32; n], "mask")?)
                } else {
                    None
                },
            }));
        }

        // Activations: tensor t batched; the teacher shares the input.
        let tensors = net.layers.len() + 1;
        let len_of = |t: usize| {
            let s = net.tensor_shape(t).expect("tensor");
            s.c * batch * s.hw()
        };
        let mut acts = Vec::with_capacity(tensors);
        let mut tacts = Vec::with_capacity(tensors);
        let mut grads = Vec::with_capacity(tensors);
        for t in 0..tensors {
            let len = len_of(t);
            let a = buffer(ctx, len, "activation")?;
            tacts.push(if t == 0 {
                a.clone()
            } else {
                buffer(ctx, len, "teacher activation")?
            });
            acts.push(a);
            grads.push(if t == 0 {
                None
            } else {
                Some(buffer(ctx, len, "gradient")?)
            });
        }
        // Split-K scratch: room for the largest weight gradient many times over.
        let largest = params.iter().flatten().map(|p| p.rows * p.cols).max().unwrap_or(1);
        let max_words = (ctx.limits().max_storage_buffer_binding_size / 4) as usize;
        let scratch_len = (largest * 16).clamp(1 << 20, 1 << 24).min(max_words);
        let scratch = buffer(ctx, scratch_len, "split-K scratch")?;

        // Blocks: outputs of the projections (feature matching) and the skips.
        let feature_tensors: Vec<usize> = net
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.name.ends_with(".project"))
            .map(|(i, _)| i + 1)
            .collect();
        let mut skip_into: HashMap<usize, usize> = HashMap::new();
        for (i, l) in net.layers.iter().enumerate() {
            if let Op::Pointwise(p) = &l.op {
                if let Some(t) = p.residual_from {
                    skip_into.insert(t, i + 1);
                }
            }
        }
        let feature_count = feature_tensors.len();
        let metrics = zeros(ctx, 2 * batch + FEATURE_LOSS_GROUPS * feature_count, "metrics")?;
        let hyper = zeros(ctx, 8, "adam hyper-parameters")?;
        let aug = zeros(ctx, batch * AUG_FLOATS, "augmentation parameters")?;
        let src = GpuBuffer::from_slice(ctx, &sources.pixels, "training photos")?;

        let augment_train = k::augment(
            ctx,
            &src,
            sources.len(),
            sources.side,
            &aug,
            &acts[0],
            batch,
            cfg.resolution,
            LITE_NORMALIZATION.mean,
            LITE_NORMALIZATION.std,
        )?;

        // Forward passes.
        let tw = |i: usize| teacher[i].clone();
        let sw = |i: usize| params[i].as_ref().map(|p| (p.w.clone(), p.b.clone()));
        let mut forward_list = forward(ctx, net, batch, &tacts, &tw)?;
        forward_list.extend(forward(ctx, net, batch, &acts, &sw)?);
        let last = tensors - 1;
        let classes = net.tensor_shape(last).expect("logits").c;
        let g_last = grads[last].as_ref().expect("gradient");
        let kd_weight = 1.0f32;
        forward_list.push(k::kd_loss(
            ctx,
            &acts[last],
            &tacts[last],
            g_last,
            &metrics,
            0,
            classes,
            batch,
            cfg.temperature as f32,
            kd_weight,
        )?);

        // Backward pass (and the feature terms alone, for evaluations).
        let mut back = Vec::new();
        let mut feature_eval = Vec::new();
        let mut gated = vec![false; tensors];
        for i in (0..net.layers.len()).rev() {
            let l = &net.layers[i];
            let out = i + 1;
            let g_out = grads[out].as_ref().expect("gradient");
            if let Some(f) = feature_tensors.iter().position(|&t| t == out) {
                if cfg.feature_weight > 0.0 {
                    let d = k::feature_loss(
                        ctx,
                        &acts[out],
                        &tacts[out],
                        g_out,
                        &metrics,
                        2 * batch + FEATURE_LOSS_GROUPS * f,
                        len_of(out),
                        cfg.feature_weight as f32,
                    )?;
                    // Outside a step the gradient it adds is overwritten by
                    // the next backward pass before being read.
                    feature_eval.push(d.clone());
                    back.push(d);
                }
            }
            if relu6(&l.op) && !gated[out] {
                back.push(k::relu6_backward(ctx, g_out, &acts[out], len_of(out))?);
                gated[out] = true;
            }
            let g_in = grads[i].as_ref();
            let n = batch * l.input.hw();
            match &l.op {
                Op::Classifier(c) => {
                    let p = params[i].as_ref().expect("params");
                    let (rows, cols) = (c.weight.rows(), c.weight.cols());
                    back.extend(k::gemm(
                        ctx,
                        Operand::rows(g_out, batch),
                        Operand::transposed(&acts[i], batch),
                        &p.gw,
                        rows,
                        cols,
                        batch,
                        GemmEpilogue::default(),
                        Some(&scratch),
                    )?);
                    back.push(k::rowsum(ctx, g_out, &p.gb, rows, batch, 1.0, false)?);
                    if let Some(gi) = g_in {
                        back.extend(k::gemm(
                            ctx,
                            Operand::transposed(&p.w, cols),
                            Operand::rows(g_out, batch),
                            gi,
                            cols,
                            batch,
                            rows,
                            GemmEpilogue::default(),
                            None,
                        )?);
                    }
                }
                Op::Pool => {
                    if let Some(gi) = g_in {
                        let hw = l.input.hw();
                        let producer_relu = i > 0 && relu6(&net.layers[i - 1].op);
                        back.push(k::pool_backward(
                            ctx,
                            g_out,
                            gi,
                            l.input.c * batch,
                            hw,
                            1.0 / hw as f32,
                            producer_relu.then_some(&acts[i]),
                        )?);
                        gated[i] = producer_relu;
                    }
                }
                Op::Pointwise(pw) => {
                    let p = params[i].as_ref().expect("params");
                    back.extend(k::gemm(
                        ctx,
                        Operand::rows(g_out, n),
                        Operand::transposed(&acts[i], n),
                        &p.gw,
                        pw.cout,
                        pw.cin,
                        n,
                        GemmEpilogue::default(),
                        Some(&scratch),
                    )?);
                    back.push(k::rowsum(ctx, g_out, &p.gb, pw.cout, n, 1.0, false)?);
                    if let Some(gi) = g_in {
                        back.extend(k::gemm(
                            ctx,
                            Operand::transposed(&p.w, pw.cin),
                            Operand::rows(g_out, n),
                            gi,
                            pw.cin,
                            n,
                            pw.cout,
                            GemmEpilogue::default(),
                            None,
                        )?);
                    }
                }
                Op::Conv(_) | Op::Depthwise(_) => {
                    let p = params[i].as_ref().expect("params");
                    let g = geom(&l.op, l, batch).expect("convolution");
                    back.extend(k::conv_bwd_w(ctx, &g, g_out, &acts[i], &p.gw, &p.gb, &scratch, false)?);
                    if let Some(gi) = g_in {
                        if g.depthwise {
                            back.push(k::dw_bwd_x(ctx, &g, g_out, &p.w, gi, false)?);
                        } else {
                            return Err(Error::Invalid(format!(
                                "layer {} is a dense convolution inside the network: no input gradient kernel",
                                l.name
                            )));
                        }
                    }
                }
            }
            if let (Some(gi), Some(&from)) = (g_in, skip_into.get(&i)) {
                let g_from = grads[from].as_ref().expect("gradient");
                back.push(elementwise::prepare_add(ctx, gi, g_from)?);
            }
        }

        // Optimizer.
        let mut update = Vec::new();
        for p in params.iter().flatten() {
            update.push(k::adam(
                ctx,
                &p.w,
                &p.gw,
                &p.mw,
                &p.vw,
                p.mask.as_ref(),
                &hyper,
                p.rows * p.cols,
                true,
            )?);
            update.push(k::adam(ctx, &p.b, &p.gb, &p.mb, &p.vb, None, &hyper, p.rows, false)?);
        }

        keep.push(scratch);
        keep.extend(tacts);
        keep.extend(grads.into_iter().flatten());
        keep.extend(teacher.into_iter().flatten().flat_map(|(a, b)| [a, b]));
        ctx.take_errors()?;
        let count = sources.len();
        Ok(Trainer {
            rng: Rng::new(cfg.seed),
            mask_level: vec![0.0; prunable.len()],
            cfg,
            net: net.clone(),
            params,
            prunable,
            _sources: src,
            source_count: count,
            side: sources.side,
            aug,
            hyper,
            metrics,
            feature_count,
            backward_list: back,
            update_list: update,
            forward_list,
            feature_eval,
            augment_train,
            step: 0,
            _buffers: keep,
            acts,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    pub fn finished(&self) -> bool {
        self.step >= self.cfg.steps
    }

    /// The sparsity each prunable layer's mask is at now.
    pub fn mask_levels(&self) -> &[f64] {
        &self.mask_level
    }

    /// Recomputes the masks where the schedule moved (always at the first
    /// step): the GPU pruning plan of each layer's current weights, the mask
    /// from its output, and the weights and Adam moments multiplied by it.
    async fn update_masks(&mut self, ctx: &Context) -> Result<()> {
        let mut todo = Vec::new();
        for (j, &i) in self.prunable.iter().enumerate() {
            let s = self.cfg.sparsity_at(j, self.step);
            if (s - self.mask_level[j]).abs() > 1e-12 {
                todo.push((j, i, s));
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let mut plans_csr = Vec::new();
        let mut plans_bsr = Vec::new();
        let mut plans_nm = Vec::new();
        let mut list: Vec<Dispatch> = Vec::new();
        for &(_, i, s) in &todo {
            let p = self.params[i].as_ref().expect("params");
            let mask = p.mask.as_ref().expect("mask");
            if s == 0.0 {
                list.push(fill_ones(ctx, mask)?);
                continue;
            }
            let w = GpuMatrix::from_buffer(p.w.clone(), p.rows, p.cols)?;
            match self.cfg.pattern {
                Pattern::Unstructured => {
                    let plan = PrunePlan::unstructured(ctx, &w, s)?;
                    list.extend(plan.dispatches().iter().cloned());
                    list.extend(k::mask_from(ctx, Pruned::Csr(plan.output()), mask)?);
                    plans_csr.push(plan);
                }
                Pattern::Block { rows, cols } => {
                    let plan = PrunePlan::block(ctx, &w, rows, cols, s, BlockNorm::L2)?;
                    list.extend(plan.dispatches().iter().cloned());
                    list.extend(k::mask_from(ctx, Pruned::Bsr(plan.output()), mask)?);
                    plans_bsr.push(plan);
                }
                Pattern::NM { n, m } => {
                    let plan = PrunePlan::nm(ctx, &w, n, m)?;
                    list.extend(plan.dispatches().iter().cloned());
                    list.extend(k::mask_from(ctx, Pruned::Nm(plan.output()), mask)?);
                    plans_nm.push(plan);
                }
                Pattern::Dense => unreachable!("validated"),
            }
            list.push(k::mask_apply(ctx, mask, &p.w, &p.mw, &p.vw, p.rows * p.cols)?);
        }
        let refs: Vec<&Dispatch> = list.iter().collect();
        ctx.submit(&refs);
        for plan in &plans_csr {
            plan.check(ctx).await?;
        }
        for plan in &plans_bsr {
            plan.check(ctx).await?;
        }
        for plan in &plans_nm {
            plan.check(ctx).await?;
        }
        for (j, _, s) in todo {
            self.mask_level[j] = s;
        }
        ctx.take_errors()
    }

    /// One training step (masks updated first where the schedule says so).
    /// Nothing is read back but the pruning status on a re-prune.
    pub async fn train_step(&mut self, ctx: &Context) -> Result<()> {
        if self.finished() {
            return Err(Error::Invalid(format!(
                "training is finished ({} steps)",
                self.cfg.steps
            )));
        }
        self.update_masks(ctx).await?;
        let mut aug = Vec::with_capacity(self.cfg.batch * AUG_FLOATS);
        for _ in 0..self.cfg.batch {
            aug.extend(self.cfg.augment.sample(&mut self.rng, self.source_count, self.side));
        }
        ctx.queue().write_buffer(self.aug.raw(), 0, bytemuck::cast_slice(&aug));
        let t = (self.step + 1) as i32;
        let c = &self.cfg;
        let hyper = [
            c.lr_at(self.step) as f32,
            c.beta1 as f32,
            c.beta2 as f32,
            1e-8f32,
            (1.0 - c.beta1.powi(t)) as f32,
            (1.0 - c.beta2.powi(t)) as f32,
            c.weight_decay as f32,
            1.0f32,
        ];
        ctx.queue()
            .write_buffer(self.hyper.raw(), 0, bytemuck::cast_slice(&hyper));
        let mut refs: Vec<&Dispatch> = vec![&self.augment_train];
        refs.extend(self.forward_list.iter());
        refs.extend(self.backward_list.iter());
        refs.extend(self.update_list.iter());
        ctx.submit(&refs);
        self.step += 1;
        Ok(())
    }

    /// GPU time of one step by phase (augmentation + both forward passes and
    /// the losses, backward, update) and by kernel (each dispatch timed
    /// alone, medians summed per kernel name, largest first), in ms. It runs
    /// the update with a zero learning rate but decays the Adam moments: use a
    /// trainer made for profiling.
    pub async fn profile(
        &self,
        ctx: &Context,
        runs: usize,
    ) -> Result<(Vec<(&'static str, f64)>, Vec<(String, f64, usize)>)> {
        // A harmless update (learning rate and gradient scale 0): the moments
        // still decay, so profile a trainer that is not trained afterwards.
        let hyper = [0.0f32, 0.9, 0.999, 1e-8, 1.0, 1.0, 0.0, 0.0];
        ctx.queue()
            .write_buffer(self.hyper.raw(), 0, bytemuck::cast_slice(&hyper));
        let mut fwd: Vec<&Dispatch> = vec![&self.augment_train];
        fwd.extend(self.forward_list.iter());
        let back: Vec<&Dispatch> = self.backward_list.iter().collect();
        let upd: Vec<&Dispatch> = self.update_list.iter().collect();
        let mut phases = Vec::new();
        for (name, list) in [
            ("forward (teacher + student) and loss", &fwd),
            ("backward", &back),
            ("update", &upd),
        ] {
            phases.push((name, ctx.time(list, 2, runs).await?.median_ms()));
        }
        let mut per: Vec<(String, f64, usize)> = Vec::new();
        for d in fwd.iter().chain(&back).chain(&upd) {
            let ms = ctx.time(&[*d], 1, runs).await?.median_ms();
            match per.iter_mut().find(|(n, _, _)| n == d.label()) {
                Some(e) => {
                    e.1 += ms;
                    e.2 += 1;
                }
                None => per.push((d.label().to_string(), ms, 1)),
            }
        }
        per.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((phases, per))
    }

    /// Applies the masks of the current step's schedule now (a training step
    /// does this itself; for checks and for evaluating the pruned start).
    pub async fn prune_now(&mut self, ctx: &Context) -> Result<()> {
        self.update_masks(ctx).await
    }

    /// Runs the forward and backward passes (no update) on the given views
    /// (16 floats each, `tr_augment`'s layout; one per batch slot) and
    /// returns the loss: for checking gradients against finite differences.
    pub async fn loss_and_gradients(
        &self,
        ctx: &Context,
        views: &[[f32; AUG_FLOATS]],
        backward: bool,
    ) -> Result<StepMetrics> {
        if views.len() != self.cfg.batch {
            return Err(Error::Shape(format!(
                "{} views for a batch of {}",
                views.len(),
                self.cfg.batch
            )));
        }
        let flat: Vec<f32> = views.iter().flatten().copied().collect();
        ctx.queue().write_buffer(self.aug.raw(), 0, bytemuck::cast_slice(&flat));
        let mut refs: Vec<&Dispatch> = vec![&self.augment_train];
        refs.extend(self.forward_list.iter());
        if backward {
            refs.extend(self.backward_list.iter());
        } else {
            refs.extend(self.feature_eval.iter());
        }
        ctx.submit(&refs);
        self.metrics(ctx).await
    }

    fn param(&self, layer: usize) -> Result<&Param> {
        self.params
            .get(layer)
            .and_then(|p| p.as_ref())
            .ok_or_else(|| Error::Invalid(format!("layer {layer} has no parameters")))
    }

    /// Layer `layer`'s current weight (row-major) and bias.
    pub async fn parameters(&self, ctx: &Context, layer: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let p = self.param(layer)?;
        let mut d = read_many(ctx, &[&p.w, &p.b]).await?;
        let b = bytemuck::cast_slice(&d.pop().expect("bias")).to_vec();
        let w = bytemuck::cast_slice(&d.pop().expect("weight")).to_vec();
        Ok((w, b))
    }

    /// Layer `layer`'s last computed weight and bias gradients.
    pub async fn gradients(&self, ctx: &Context, layer: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let p = self.param(layer)?;
        let mut d = read_many(ctx, &[&p.gw, &p.gb]).await?;
        let b = bytemuck::cast_slice(&d.pop().expect("bias")).to_vec();
        let w = bytemuck::cast_slice(&d.pop().expect("weight")).to_vec();
        Ok((w, b))
    }

    /// Layer `layer`'s mask (prunable layers), 1 where kept.
    pub async fn mask(&self, ctx: &Context, layer: usize) -> Result<Vec<f32>> {
        let p = self.param(layer)?;
        let m = p
            .mask
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("layer {layer} is not prunable")))?;
        Ok(bytemuck::cast_slice(&read_many(ctx, &[m]).await?.remove(0)).to_vec())
    }

    /// Sets one weight (`bias` false) or bias element of layer `layer`.
    pub fn set_parameter(&self, ctx: &Context, layer: usize, bias: bool, index: usize, value: f32) -> Result<()> {
        let p = self.param(layer)?;
        let (buf, len) = if bias { (&p.b, p.rows) } else { (&p.w, p.rows * p.cols) };
        if index >= len {
            return Err(Error::Invalid(format!("index {index} past {len} parameters")));
        }
        ctx.queue()
            .write_buffer(buf.raw(), (index * 4) as u64, bytemuck::bytes_of(&value));
        Ok(())
    }

    /// The metrics of the last step (or evaluation batch): reads them back.
    pub async fn metrics(&self, ctx: &Context) -> Result<StepMetrics> {
        let words = read_many(ctx, &[&self.metrics]).await?.remove(0);
        let m: &[f32] = bytemuck::cast_slice(&words);
        Ok(self.summarize(m, self.cfg.batch))
    }

    fn summarize(&self, m: &[f32], valid: usize) -> StepMetrics {
        let b = self.cfg.batch;
        let mut kd = 0.0;
        let mut agree = 0.0;
        for s in 0..valid.min(b) {
            kd += m[2 * s] as f64;
            agree += m[2 * s + 1] as f64;
        }
        let mut feature = 0.0;
        for f in 0..self.feature_count {
            let off = 2 * b + FEATURE_LOSS_GROUPS * f;
            let sq: f64 = m[off..off + FEATURE_LOSS_GROUPS].iter().map(|&x| x as f64).sum();
            let s = self.net.tensor_shape(self.feature_tensor(f)).expect("tensor");
            feature += self.cfg.feature_weight * sq / (s.c * b * s.hw()) as f64;
        }
        StepMetrics {
            step: self.step,
            kd: kd / valid.max(1) as f64,
            feature,
            agreement: agree / valid.max(1) as f64,
        }
    }

    fn feature_tensor(&self, f: usize) -> usize {
        self.net
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.name.ends_with(".project"))
            .map(|(i, _)| i + 1)
            .nth(f)
            .expect("feature")
    }

    /// Top-1 agreement of the student with the teacher and the mean KL on
    /// the standard center crop of every photo of `sources` (batched; a
    /// last partial batch repeats its last photo and counts only the real ones).
    pub async fn evaluate(&self, ctx: &Context, sources: &Sources) -> Result<StepMetrics> {
        let r = self.cfg.resolution;
        let b = self.cfg.batch;
        let src = GpuBuffer::from_slice(ctx, &sources.pixels, "evaluation photos")?;
        let aug = zeros(ctx, b * AUG_FLOATS, "evaluation views")?;
        let d = k::augment(
            ctx,
            &src,
            sources.len(),
            sources.side,
            &aug,
            &self.acts[0],
            b,
            r,
            LITE_NORMALIZATION.mean,
            LITE_NORMALIZATION.std,
        )?;
        let (mut kd, mut agree, mut count) = (0.0, 0.0, 0usize);
        for start in (0..sources.len()).step_by(b) {
            let valid = (sources.len() - start).min(b);
            let views: Vec<f32> = (0..b)
                .flat_map(|j| center_view(start + j.min(valid - 1), sources.side, r))
                .collect();
            ctx.queue().write_buffer(aug.raw(), 0, bytemuck::cast_slice(&views));
            let mut refs: Vec<&Dispatch> = vec![&d];
            refs.extend(self.forward_list.iter());
            ctx.submit(&refs);
            let words = read_many(ctx, &[&self.metrics]).await?.remove(0);
            let m = self.summarize(bytemuck::cast_slice(&words), valid);
            kd += m.kd * valid as f64;
            agree += m.agreement * valid as f64;
            count += valid;
        }
        Ok(StepMetrics {
            step: self.step,
            kd: kd / count.max(1) as f64,
            feature: 0.0,
            agreement: agree / count.max(1) as f64,
        })
    }

    /// The student's current weights and biases, written into a copy of
    /// `net` (any resolution: the layers must match the trainer's).
    pub async fn student(&self, ctx: &Context, net: &Lite0) -> Result<Lite0> {
        if net.layers.len() != self.net.layers.len() {
            return Err(Error::Shape("the network does not match the trainer's".into()));
        }
        let mut bufs = Vec::new();
        for p in self.params.iter().flatten() {
            bufs.push(&p.w);
            bufs.push(&p.b);
        }
        let data = read_many(ctx, &bufs).await?;
        let mut out = net.clone();
        let mut it = data.into_iter();
        for (l, p) in out.layers.iter_mut().zip(&self.params) {
            let Some(p) = p else { continue };
            let w: Vec<f32> = bytemuck::cast_slice(&it.next().expect("weights")).to_vec();
            let b: Vec<f32> = bytemuck::cast_slice(&it.next().expect("bias")).to_vec();
            let (wm, bias) = match &mut l.op {
                Op::Conv(c) => (&mut c.weight, &mut c.bias),
                Op::Depthwise(d) => (&mut d.weight, &mut d.bias),
                Op::Pointwise(pw) => (&mut pw.weight, &mut pw.bias),
                Op::Classifier(c) => (&mut c.weight, &mut c.bias),
                Op::Pool => continue,
            };
            if (wm.rows(), wm.cols()) != (p.rows, p.cols) || bias.len() != p.rows {
                return Err(Error::Shape(format!("layer {} does not match the trainer's", l.name)));
            }
            *wm = Matrix::new(p.rows, p.cols, w[..p.rows * p.cols].to_vec())?;
            *bias = b[..p.rows].to_vec();
        }
        Ok(out)
    }

    /// The student as a compressed sparse file ([`crate::model::sparse_file`],
    /// runs at 224x224 whatever the training resolution), with the
    /// fine-tuning recipe in its metadata (`wgsparse.finetune`, starting
    /// "sparse-trained:"); `dense` is the teacher's checkpoint, `data` says
    /// where the `photos` came from. The masks must be at their targets.
    pub async fn sparse_file(&self, ctx: &Context, dense: &[u8], data: &str, photos: usize) -> Result<Vec<u8>> {
        use crate::model::sparse_file::{self, PruneInfo};
        for (j, &l) in self.mask_level.iter().enumerate() {
            let want = self.cfg.sparsity_at(j, self.cfg.steps);
            if (l - want).abs() > 1e-12 {
                return Err(Error::Invalid(format!(
                    "prunable layer {j} is at {:.1}% of its {:.1}%: train until the schedule reaches its target",
                    100.0 * l,
                    100.0 * want
                )));
            }
        }
        let wts = crate::model::Weights::from_bytes(dense)?;
        let net224 = Lite0::from_weights(&wts, crate::model::INPUT_SIZE, crate::model::INPUT_SIZE)?;
        let student = self.student(ctx, &net224).await?;
        let cfg = &self.cfg;
        let info = PruneInfo {
            pattern: cfg.pattern,
            sparsity: match cfg.pattern {
                Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
                _ => cfg.sparsity,
            },
            criterion: "magnitude".into(),
            bias_correction: false,
            renorm: false,
            calibration_images: 0,
        };
        let mut meta: HashMap<String, String> = wts
            .metadata()
            .iter()
            .filter(|(k, _)| *k == crate::model::weights::META_PTH_SHA256)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.insert(
            "wgsparse.finetune".into(),
            format!(
                "sparse-trained: {} of {} steps, batch {}, {}x{}, lr {}, T {}, feature weight {}, gradual {}, {photos} photos from {data}",
                self.step,
                cfg.steps,
                cfg.batch,
                cfg.resolution,
                cfg.resolution,
                cfg.lr,
                cfg.temperature,
                cfg.feature_weight,
                cfg.gradual,
            ),
        );
        sparse_file::write(&student, &info, &meta)
    }

    /// Every tensor of the training state, named, for checkpoints.
    pub(crate) fn state_buffers(&self) -> Vec<(String, &GpuBuffer)> {
        let mut v = Vec::new();
        for (l, p) in self.net.layers.iter().zip(&self.params) {
            let Some(p) = p else { continue };
            let key = &l.key;
            v.push((format!("{key}.weight"), &p.w));
            v.push((format!("{key}.bias"), &p.b));
            v.push((format!("{key}.weight.adam_m"), &p.mw));
            v.push((format!("{key}.weight.adam_v"), &p.vw));
            v.push((format!("{key}.bias.adam_m"), &p.mb));
            v.push((format!("{key}.bias.adam_v"), &p.vb));
            if let Some(m) = &p.mask {
                v.push((format!("{key}.mask"), m));
            }
        }
        v
    }

    pub(crate) fn rng_state(&self) -> [u64; 4] {
        self.rng.s
    }

    /// Restores a saved state (checkpoint resume): tensors by name, the step,
    /// the PRNG and the mask levels.
    pub(crate) fn restore(
        &mut self,
        ctx: &Context,
        tensors: &HashMap<String, Vec<f32>>,
        step: usize,
        rng: [u64; 4],
        mask_level: Vec<f64>,
    ) -> Result<()> {
        if mask_level.len() != self.prunable.len() {
            return Err(Error::Weights(format!(
                "the checkpoint has {} mask levels for {} prunable layers",
                mask_level.len(),
                self.prunable.len()
            )));
        }
        for (name, buf) in self.state_buffers() {
            let data = tensors
                .get(&name)
                .ok_or_else(|| Error::Weights(format!("the checkpoint has no tensor '{name}'")))?;
            if (data.len() * 4) as u64 != buf.bytes() {
                return Err(Error::Weights(format!(
                    "checkpoint tensor '{name}' has {} values, the model needs {}",
                    data.len(),
                    buf.bytes() / 4
                )));
            }
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Weights(format!(
                    "checkpoint tensor '{name}' holds {} at index {i}",
                    data[i]
                )));
            }
            ctx.queue().write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
        }
        self.step = step;
        self.rng = Rng { s: rng };
        self.mask_level = mask_level;
        Ok(())
    }
}

fn fill_ones(ctx: &Context, mask: &GpuBuffer) -> Result<Dispatch> {
    elementwise::prepare_fill(ctx, mask, 1.0f32.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradual_schedule_is_cubic_held_between_re_prunes_and_ends_at_the_target() {
        let mut c = TrainConfig::new(Pattern::Unstructured, 0.8, 100);
        c.gradual = true;
        c.gradual_end = 0.5;
        c.prune_every = 10;
        assert_eq!(c.prune_interval(), 10);
        assert_eq!(c.sparsity_at(0, 0), 0.0);
        // Held between re-prunes, rising, cubic: 0.8 (1 - (1 - t/50)^3) at t = 10, 20, ...
        assert_eq!(c.sparsity_at(0, 10), c.sparsity_at(0, 19));
        assert!((c.sparsity_at(0, 10) - 0.8 * (1.0 - 0.8f64.powi(3))).abs() < 1e-12);
        let mut last = 0.0;
        for s in (0..=100).step_by(10) {
            let v = c.sparsity_at(0, s);
            assert!(v >= last, "step {s}: {v} < {last}");
            last = v;
        }
        assert_eq!(c.sparsity_at(0, 50), 0.8);
        assert_eq!(c.sparsity_at(0, 100), 0.8);
        // Fixed masks: the target from the first step; N:M: its own level; a
        // per-layer 0 keeps the layer dense.
        c.gradual = false;
        assert_eq!(c.sparsity_at(3, 0), 0.8);
        let mut nm = TrainConfig::new(Pattern::NM { n: 2, m: 4 }, 0.0, 10);
        assert_eq!(nm.sparsity_at(0, 0), 0.5);
        nm.layer_sparsity = Some(vec![0.0, 0.3]);
        assert_eq!((nm.sparsity_at(0, 0), nm.sparsity_at(1, 0)), (0.0, 0.5));
    }

    #[test]
    fn the_learning_rate_warms_up_then_decays_to_zero() {
        let mut c = TrainConfig::new(Pattern::Unstructured, 0.5, 110);
        c.lr = 1e-3;
        c.warmup = 10;
        assert!((c.lr_at(0) - 1e-4).abs() < 1e-15);
        assert!((c.lr_at(9) - 1e-3).abs() < 1e-15);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-15);
        assert!((c.lr_at(60) - 5e-4).abs() < 1e-12);
        assert!(c.lr_at(109) > 0.0 && c.lr_at(109) < 1e-6);
        assert!((1..110).all(|s| s < 10 || c.lr_at(s) <= c.lr_at(s - 1)));
    }
}
