//! `wgsparse finetune`: recover a pruned model by sparse fine-tuning.

use super::common::weights_path;

#[derive(clap::Args)]
pub(super) struct FinetuneArgs {
    /// Folder of training photos (PNG/JPEG, any size; no labels needed).
    #[arg(long)]
    data: std::path::PathBuf,
    /// Folder of held-out photos: agreement with the dense model is measured
    /// on their standard crops every --eval-every steps.
    #[arg(long)]
    heldout: Option<std::path::PathBuf>,
    /// Pattern: unstructured, block:RxC or N:M.
    #[arg(long)]
    pattern: String,
    /// Target sparsity (ignored for N:M).
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    /// Prune gradually (cubic schedule from dense to the target over the
    /// first --gradual-end of the steps) instead of fixing the masks.
    #[arg(long)]
    gradual: bool,
    #[arg(long, default_value_t = 0.6)]
    gradual_end: f64,
    /// Steps between re-prunes of the gradual schedule (default: 16 re-prunes).
    #[arg(long, default_value_t = 0)]
    prune_every: usize,
    #[arg(long)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Training input side (the network is fully convolutional; the output
    /// file runs at 224).
    #[arg(long, default_value_t = 224)]
    resolution: usize,
    /// Peak AdamW learning rate (cosine decay to 0 after --warmup steps).
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Distillation temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Weight of the block-output feature matching (0: logits only).
    #[arg(long, default_value_t = 1.0)]
    feature_weight: f64,
    /// Augmentation: smallest crop area fraction, colour jitter, mixup probability.
    #[arg(long, default_value_t = 0.25)]
    min_scale: f64,
    #[arg(long, default_value_t = 0.3)]
    jitter: f64,
    #[arg(long, default_value_t = 0.5)]
    mixup: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dense checkpoint (default CACHE/lite0.safetensors).
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// The recovered network, as a compressed sparse safetensors file.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Resumable training state (default OUT with .ckpt.safetensors).
    #[arg(long)]
    checkpoint: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Continue from the checkpoint when it exists.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Stop after this many seconds, saving the checkpoint (resume later).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Loss and agreement curve (SVG).
    #[arg(long)]
    curve: Option<std::path::PathBuf>,
    /// Time one step by phase and by kernel before training.
    #[arg(long)]
    profile: bool,
}

pub(super) fn run(a: FinetuneArgs) -> wgsparse::Result<()> {
    use wgsparse::train::run::{finetune, FinetuneOptions};
    use wgsparse::train::{Augment, TrainConfig};
    let mut cfg = TrainConfig::new(a.pattern.parse()?, a.sparsity, a.steps);
    cfg.gradual = a.gradual;
    cfg.gradual_end = a.gradual_end;
    cfg.prune_every = a.prune_every;
    cfg.batch = a.batch;
    cfg.resolution = a.resolution;
    cfg.lr = a.lr;
    cfg.warmup = a.warmup;
    cfg.weight_decay = a.weight_decay;
    cfg.temperature = a.temperature;
    cfg.feature_weight = a.feature_weight;
    cfg.seed = a.seed;
    cfg.augment = Augment {
        min_scale: a.min_scale,
        jitter: a.jitter,
        mixup_prob: a.mixup,
        ..Augment::default()
    };
    cfg.validate()?;
    let checkpoint = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| a.out.with_extension("ckpt.safetensors"));
    let o = FinetuneOptions {
        weights: weights_path(&a.cache, a.weights.as_deref())?,
        data: a.data,
        heldout: a.heldout,
        out: a.out,
        checkpoint: Some(checkpoint),
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
        log_every: a.log_every,
        eval_every: a.eval_every,
        time_limit: a.time_limit,
        curve: a.curve,
        progress: true,
        profile: a.profile,
    };
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    eprintln!("adapter: {}", ctx.summary());
    let r = finetune(&ctx, cfg, &o, &mut |l| eprintln!("{l}"))?;
    if let (Some(s), Some(e)) = (r.heldout_start, r.heldout_end) {
        println!(
            "held-out agreement with dense: {:.1}% pruned -> {:.1}% after {} steps (KL {:.4} -> {:.4})",
            100.0 * s.agreement,
            100.0 * e.agreement,
            r.steps_done,
            s.kd,
            e.kd
        );
    }
    println!(
        "{} steps this run, {:.1} s, {:.0} training images/s{}",
        r.history.last().map_or(0, |m| m.step),
        r.seconds,
        r.images_per_second,
        if r.finished {
            ""
        } else {
            " (stopped by --time-limit: --resume to continue)"
        }
    );
    Ok(())
}
