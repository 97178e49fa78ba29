//! `wgsparse finetune`: the whole recipe around [`Trainer`] — photos from a
//! folder, resumable checkpoints, a time limit (the H100 machine gives 10
//! minutes a command), periodic held-out evaluation, a loss/agreement curve
//! as SVG, and the recovered network written as a compressed sparse file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::model::{Lite0, Weights};

use super::checkpoint;
use super::data::source_side;
use super::trainer::{StepMetrics, TrainConfig, Trainer};
use super::Sources;

/// Everything `wgsparse finetune` takes besides the recipe.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    /// The dense checkpoint (BatchNorm is folded on load).
    pub weights: PathBuf,
    /// Training photos (PNG/JPEG, any size).
    pub data: PathBuf,
    /// Held-out photos for the agreement curve (optional).
    pub heldout: Option<PathBuf>,
    /// The recovered sparse network.
    pub out: PathBuf,
    /// Resumable state, written every `checkpoint_every` steps and on stop.
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: usize,
    /// Continue from `checkpoint` if it exists.
    pub resume: bool,
    /// Metrics read back every this many steps.
    pub log_every: usize,
    /// Held-out evaluation every this many steps (and at the end).
    pub eval_every: usize,
    /// Stop (saving the checkpoint) after this many seconds.
    pub time_limit: Option<f64>,
    /// Loss and agreement curve.
    pub curve: Option<PathBuf>,
    pub progress: bool,
    /// Time one step by phase and by kernel on this adapter first.
    pub profile: bool,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct FinetuneReport {
    pub steps_done: usize,
    pub finished: bool,
    pub seconds: f64,
    /// Training throughput of this run's steps (each image: augmentation,
    /// teacher and student forward, backward, update).
    pub images_per_second: f64,
    pub history: Vec<StepMetrics>,
    pub heldout: Vec<StepMetrics>,
    /// Held-out agreement of the start (pruned, not trained) and of the end.
    pub heldout_start: Option<StepMetrics>,
    pub heldout_end: Option<StepMetrics>,
    pub out_bytes: Option<usize>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| Error::Io { path: p, source: e }
    };
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Runs (or resumes) a fine-tune; `log` gets one line per event.
pub fn finetune(
    ctx: &Context,
    cfg: TrainConfig,
    o: &FinetuneOptions,
    log: &mut dyn FnMut(&str),
) -> Result<FinetuneReport> {
    cfg.validate()?;
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::Io {
            path: p.display().to_string(),
            source: e,
        })
    };
    let bytes = read(&o.weights)?;
    let wts = Weights::from_bytes(&bytes)?;
    if wts.prune_info()?.is_some() {
        return Err(Error::Invalid(format!(
            "{} is a pruned sparse file: fine-tune from the dense checkpoint (it is the teacher)",
            o.weights.display()
        )));
    }
    let net = Lite0::from_weights(&wts, cfg.resolution, cfg.resolution)?;
    let side = source_side(cfg.resolution);
    let t0 = Instant::now();
    let train = Sources::from_dir(&o.data, side)?;
    let heldout = match &o.heldout {
        Some(d) => Some(Sources::from_dir(d, side)?),
        None => None,
    };
    log(&format!(
        "{} training photos{} decoded in {:.1} s",
        train.len(),
        heldout
            .as_ref()
            .map_or(String::new(), |h| format!(", {} held out", h.len())),
        t0.elapsed().as_secs_f64()
    ));
    let mut trainer = Trainer::new(ctx, &net, &train, cfg.clone())?;
    let mut history = Vec::new();
    let mut held = Vec::new();
    let mut heldout_start = None;
    if o.resume {
        if let Some(ck) = o.checkpoint.as_ref().filter(|p| p.is_file()) {
            let saved = read(ck)?;
            let (h, e) = checkpoint::restore(ctx, &mut trainer, &saved)?;
            history = h;
            held = e;
            heldout_start = held.first().copied();
            log(&format!("resumed {} at step {}", ck.display(), trainer.step()));
        } else if o.checkpoint.is_none() {
            return Err(Error::Invalid("--resume needs --checkpoint FILE".into()));
        }
    }
    if let (Some(h), true) = (&heldout, trainer.step() == 0) {
        pollster::block_on(trainer.prune_now(ctx))?;
        let m = pollster::block_on(trainer.evaluate(ctx, h))?;
        log(&format!(
            "pruned start: held-out agreement {:.1}%, KL {:.4}",
            100.0 * m.agreement,
            m.kd
        ));
        heldout_start = Some(m);
        held.push(m);
    }
    if o.profile {
        let probe = Trainer::new(ctx, &net, &train, cfg.clone())?;
        let (phases, per) = pollster::block_on(probe.profile(ctx, 5))?;
        drop(probe);
        let total: f64 = phases.iter().map(|p| p.1).sum();
        log(&format!(
            "profile, batch {} at {}x{}: {total:.2} ms per step = {:.0} images/s of GPU time",
            cfg.batch,
            cfg.resolution,
            cfg.resolution,
            cfg.batch as f64 * 1000.0 / total
        ));
        for (n, ms) in phases {
            log(&format!("  {n:40} {ms:9.3} ms"));
        }
        for (n, ms, c) in per.iter().take(12) {
            log(&format!(
                "  kernel {n:20} {ms:9.3} ms over {c} dispatches (each timed alone)"
            ));
        }
    }
    let bar = if o.progress {
        indicatif::ProgressBar::new(cfg.steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {per_sec}, eta {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step() as u64);
    let start = Instant::now();
    let first = trainer.step();
    let save = |t: &Trainer, h: &[StepMetrics], e: &[StepMetrics]| -> Result<()> {
        if let Some(ck) = &o.checkpoint {
            let b = pollster::block_on(checkpoint::save(ctx, t, h, e))?;
            write_atomic(ck, &b)?;
        }
        Ok(())
    };
    let mut stopped = false;
    while !trainer.finished() {
        pollster::block_on(trainer.train_step(ctx))?;
        let s = trainer.step();
        bar.inc(1);
        if s % o.log_every.max(1) == 0 || trainer.finished() {
            let m = pollster::block_on(trainer.metrics(ctx))?;
            if !(m.kd.is_finite() && m.feature.is_finite()) {
                return Err(Error::Invalid(format!(
                    "the loss diverged at step {s} (KL {}, features {}): lower --lr",
                    m.kd, m.feature
                )));
            }
            bar.set_message(format!(
                "KL {:.3} feat {:.3} agree {:.0}%",
                m.kd,
                m.feature,
                100.0 * m.agreement
            ));
            history.push(m);
        }
        if let Some(h) = &heldout {
            if s % o.eval_every.max(1) == 0 || trainer.finished() {
                let m = pollster::block_on(trainer.evaluate(ctx, h))?;
                bar.suspend(|| {
                    log(&format!(
                        "step {s}: held-out agreement {:.1}%, KL {:.4}",
                        100.0 * m.agreement,
                        m.kd
                    ))
                });
                held.push(m);
            }
        }
        if o.checkpoint_every > 0 && s % o.checkpoint_every == 0 && !trainer.finished() {
            save(&trainer, &history, &held)?;
        }
        if o.time_limit.is_some_and(|l| start.elapsed().as_secs_f64() > l) && !trainer.finished() {
            stopped = true;
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let done = trainer.step() - first;
    let images_per_second = (done * cfg.batch) as f64 / seconds.max(1e-9);
    log(&format!(
        "{done} steps in {seconds:.1} s: {images_per_second:.0} training images/s (batch {}, {}x{})",
        cfg.batch, cfg.resolution, cfg.resolution
    ));
    save(&trainer, &history, &held)?;
    if let Some(c) = &o.curve {
        plot_curve(&history, &held, c)?;
    }
    let mut report = FinetuneReport {
        steps_done: trainer.step(),
        finished: !stopped,
        seconds,
        images_per_second,
        heldout_start,
        heldout_end: if heldout.is_some() { held.last().copied() } else { None },
        history,
        heldout: held,
        out_bytes: None,
    };
    let at_target = trainer
        .mask_levels()
        .iter()
        .enumerate()
        .all(|(j, &l)| (l - cfg.sparsity_at(j, cfg.steps)).abs() < 1e-12);
    if stopped && !at_target {
        log(&format!(
            "stopped by the time limit at step {}/{}: resume with --resume{}",
            trainer.step(),
            cfg.steps,
            o.checkpoint
                .as_ref()
                .map_or(String::new(), |c| format!(" --checkpoint {}", c.display()))
        ));
        return Ok(report);
    }
    if stopped {
        log(&format!(
            "stopped by the time limit at step {}/{} with the masks at their targets: writing that student \
             (resume with --resume to finish)",
            trainer.step(),
            cfg.steps
        ));
    }
    let out = pollster::block_on(trainer.sparse_file(ctx, &bytes, &o.data.display().to_string(), train.len()))?;
    write_atomic(&o.out, &out)?;
    log(&format!("wrote {} ({} bytes)", o.out.display(), out.len()));
    report.out_bytes = Some(out.len());
    Ok(report)
}

/// Loss (KL + features) and agreement against the step.
pub fn plot_curve(history: &[StepMetrics], heldout: &[StepMetrics], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let gerr = |e: &dyn std::fmt::Display| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| gerr(&e))?;
    let root = root
        .titled(
            "wgsparse finetune: distillation loss and agreement with the dense model",
            ("sans-serif", 18),
        )
        .map_err(|e| gerr(&e))?;
    let (left, right) = root.split_horizontally(600);
    let last = history.iter().chain(heldout).map(|m| m.step).max().unwrap_or(1).max(1) as f64;
    let ymax = history.iter().map(|m| m.kd + m.feature).fold(0.0, f64::max).max(1e-6) * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..last, 0.0..ymax)
        .map_err(|e| gerr(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("training loss")
        .draw()
        .map_err(|e| gerr(&e))?;
    for (i, (label, f)) in [
        (
            "KL + features",
            &(|m: &StepMetrics| m.kd + m.feature) as &dyn Fn(&StepMetrics) -> f64,
        ),
        ("KL", &|m: &StepMetrics| m.kd),
    ]
    .into_iter()
    .enumerate()
    {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                history.iter().map(|m| (m.step as f64, f(m))),
                color.stroke_width(2),
            ))
            .map_err(|e| gerr(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| gerr(&e))?;
    let mut chart = ChartBuilder::on(&right)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..last, 0.0..100.0)
        .map_err(|e| gerr(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("top-1 agreement with dense (%)")
        .draw()
        .map_err(|e| gerr(&e))?;
    for (i, (label, pts)) in [("training batches", history), ("held-out photos", heldout)]
        .into_iter()
        .enumerate()
    {
        let color = Palette99::pick(i + 2).to_rgba();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|m| (m.step as f64, 100.0 * m.agreement)),
                color.stroke_width(2),
            ))
            .map_err(|e| gerr(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| gerr(&e))?;
    root.present().map_err(|e| gerr(&e))?;
    Ok(())
}
