//! `wgsparse eval`: a folder of images through the dense and the pruned (or
//! loaded sparse) model.

use super::common::{read, weights_path, TuneArgs};
use super::method::MethodArgs;

#[derive(clap::Args)]
pub(super) struct EvalArgs {
    /// Folder of JPEG/PNG images (any size; the standard center crop).
    dir: std::path::PathBuf,
    /// Cache folder: the dense checkpoint and calibration images.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// A sparse file from `wgsparse prune` (or another checkpoint) to evaluate
    /// instead of pruning the cache's checkpoint.
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    #[arg(long, default_value = "dense")]
    pattern: String,
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    #[command(flatten)]
    method: MethodArgs,
    /// Also run the evaluated model in f16 storage (f32 sums; tensor cores
    /// where the adapter has cooperative matrices): top-1 agreement of f16 with
    /// f32 on the same weights, and both latencies.
    #[arg(long)]
    f16: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tune: TuneArgs,
}

pub(super) fn run(a: EvalArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{classes, preprocess, GpuLite0, KernelPolicy, INPUT_SIZE};
    let pattern: wgsparse::Pattern = a.pattern.parse()?;
    let files = wgsparse::train::data::image_files(&a.dir)?;
    if files.is_empty() {
        return Err(wgsparse::Error::Invalid(format!(
            "no JPEG or PNG images in {}",
            a.dir.display()
        )));
    }
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let dense_bytes = read(&weights_path(&a.cache, None)?)?;
    let (mut dense, _) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &dense_bytes, KernelPolicy::Fastest))?;
    let (mut model, loaded) = match &a.weights {
        Some(w) => {
            let (m, r) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &read(w)?, KernelPolicy::Fastest))?;
            (Some(m), r)
        }
        None => (None, None),
    };
    // One tuner for both models: the layers they share are measured once.
    let tune = a.tune.open(&ctx);
    if let Some(t) = &tune {
        t.attach(&ctx, &mut dense)?;
        if let Some(m) = model.as_mut() {
            t.attach(&ctx, m)?;
        }
    }
    let mut spec = a.method.spec(pattern, a.sparsity)?;
    let target = model.as_mut().unwrap_or(&mut dense);
    if loaded.is_some() && pattern != wgsparse::Pattern::Dense {
        return Err(wgsparse::Error::Invalid(
            "the weights file is already pruned: leave out --pattern/--sparsity".into(),
        ));
    }
    let method = if let Some(r) = &loaded {
        format!(
            "loaded {} ({}, criterion {}, bias correction {}, re-normalization {})",
            a.weights.as_ref().map_or(String::new(), |w| w.display().to_string()),
            r.layers.first().map_or("?".to_string(), |l| l.pattern.to_string()),
            r.criterion,
            r.bias_correction,
            r.renorm
        )
    } else if pattern == wgsparse::Pattern::Dense {
        "dense".to_string()
    } else {
        a.method.prepare(&ctx, target, &mut spec, &a.cache, None)?;
        pollster::block_on(target.prune(&ctx, &spec))?;
        format!(
            "{pattern} at {:.0}%, criterion {}, bias correction {}, re-normalization {}, budget {}",
            100.0 * a.sparsity,
            spec.criterion,
            spec.bias_correction,
            spec.renorm,
            a.method.budget
        )
    };
    let evaluated = model.as_ref().unwrap_or(&dense);
    // The evaluated model in f16, with its latency beside f32's.
    let f16 = if a.f16 {
        let m = pollster::block_on(evaluated.to_f16(&ctx, KernelPolicy::Fastest))?;
        let t32 = pollster::block_on(evaluated.latency(&ctx, 5, 100))?.median_ms();
        let t16 = pollster::block_on(m.latency(&ctx, 5, 100))?.median_ms();
        Some((m, t32, t16))
    } else {
        None
    };
    let bar = if files.len() > 1 && !a.json {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    struct Row {
        file: String,
        label: Option<usize>,
        dense: Vec<usize>,
        pruned: Vec<usize>,
        /// Top-5 of the evaluated model in f16.
        f16: Option<Vec<usize>>,
    }
    let mut rows = Vec::new();
    for f in &files {
        bar.inc(1);
        let name = f.file_name().map_or(String::new(), |n| n.to_string_lossy().to_string());
        let x = match read(f).and_then(|b| preprocess::preprocess(&b, INPUT_SIZE)) {
            Ok(x) => x,
            Err(e) => {
                bar.suspend(|| eprintln!("skipping {name}: {e}"));
                continue;
            }
        };
        let top = |l: &[f32]| classes::top_k(l, 5).iter().map(|p| p.class).collect::<Vec<_>>();
        let d = pollster::block_on(dense.forward_dense(&ctx, &x))?;
        let p = match &model {
            Some(m) => pollster::block_on(m.forward(&ctx, &x))?,
            None => pollster::block_on(dense.forward(&ctx, &x))?,
        };
        let h = match &f16 {
            Some((m, _, _)) => Some(top(&pollster::block_on(m.forward(&ctx, &x))?)),
            None => None,
        };
        rows.push(Row {
            label: classes::class_of_file_name(&name),
            file: name,
            dense: top(&d),
            pruned: top(&p),
            f16: h,
        });
    }
    bar.finish_and_clear();
    let n = rows.len().max(1) as f64;
    let agree = rows.iter().filter(|r| r.dense[0] == r.pruned[0]).count() as f64 / n;
    let f16_agree = rows
        .iter()
        .filter(|r| r.f16.as_ref().is_some_and(|h| h[0] == r.pruned[0]))
        .count() as f64
        / n;
    let labelled: Vec<&Row> = rows.iter().filter(|r| r.label.is_some()).collect();
    let acc = |top: fn(&Row) -> &Vec<usize>, k: usize| -> Option<f64> {
        (!labelled.is_empty()).then(|| {
            labelled
                .iter()
                .filter(|r| top(r)[..k].contains(&r.label.unwrap_or(usize::MAX)))
                .count() as f64
                / labelled.len() as f64
        })
    };
    let (p1, p5, d1, d5) = (
        acc(|r| &r.pruned, 1),
        acc(|r| &r.pruned, 5),
        acc(|r| &r.dense, 1),
        acc(|r| &r.dense, 5),
    );
    if a.json {
        let out = serde_json::json!({
            "adapter": ctx.info().name,
            "model": method,
            "images": rows.iter().map(|r| serde_json::json!({
                "file": r.file, "label": r.label, "top5": r.pruned, "dense_top5": r.dense,
                "agrees": r.dense[0] == r.pruned[0],
            })).collect::<Vec<_>>(),
            "agreement": agree,
            "labelled": labelled.len(),
            "top1": p1, "top5": p5, "dense_top1": d1, "dense_top5": d5,
            "f16": f16.as_ref().map(|(m, t32, t16)| serde_json::json!({
                "top1_agreement_with_f32": f16_agree,
                "f32_ms": t32, "f16_ms": t16,
                "kernels": m.report().layers.iter().map(|l| l.kernel).collect::<Vec<_>>(),
                "top5": rows.iter().map(|r| r.f16.clone()).collect::<Vec<_>>(),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("model: {method}; adapter {}", ctx.info().name);
    for r in &rows {
        println!(
            "{:<32} top-5 {:<24} dense top-1 {:>4} {}{}",
            r.file,
            r.pruned.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
            r.dense[0],
            if r.dense[0] == r.pruned[0] { "agrees" } else { "differs" },
            r.label.map_or(String::new(), |l| format!("  label {l}"))
        );
    }
    println!(
        "{} images: top-1 agreement with the dense model {:.1}%",
        rows.len(),
        100.0 * agree
    );
    if let Some((m, t32, t16)) = &f16 {
        println!(
            "f16 (same weights): top-1 agreement with f32 {:.1}% ({} of {}); GPU latency f32 {t32:.4} ms, \
             f16 {t16:.4} ms ({:.2}x)",
            100.0 * f16_agree,
            (f16_agree * n).round(),
            rows.len(),
            t32 / t16
        );
        eprintln!("{}", m.report());
    }
    if let (Some(p1), Some(p5), Some(d1), Some(d5)) = (p1, p5, d1, d5) {
        println!(
            "{} labelled: top-1 {:.1}% / top-5 {:.1}% (dense {:.1}% / {:.1}%)",
            labelled.len(),
            100.0 * p1,
            100.0 * p5,
            100.0 * d1,
            100.0 * d5
        );
    }
    Ok(())
}
