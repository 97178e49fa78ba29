//! `wgsparse sweep`: latency and agreement over patterns and sparsities.

use super::common::{read, sample_images, TuneArgs};

#[derive(clap::Args)]
pub(super) struct SweepArgs {
    /// Cache folder (see `wgsparse fetch`); its images/ are the data.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Patterns, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["unstructured".to_string(), "block:16x16".to_string(), "2:4".to_string()])]
    patterns: Vec<String>,
    /// Sparsities for the patterns that take one.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 0.3, 0.5, 0.7, 0.9])]
    sparsities: Vec<f64>,
    /// Pruning methods, comma separated: magnitude or activation, each
    /// optionally with +bc (bias correction), +renorm (re-normalization) and
    /// +budget (per-layer sparsity from measured sensitivity, same total).
    #[arg(long, value_delimiter = ',', default_values_t = ["magnitude".to_string()])]
    methods: Vec<String>,
    /// The first N sample images calibrate (activation criterion, bias
    /// correction) and are left out of the evaluation.
    #[arg(long, default_value_t = 6)]
    calibration: usize,
    /// Evaluate each image's mirror image and a tighter (zoomed) crop too.
    #[arg(long)]
    views: bool,
    /// Timed runs per point.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Draw latency and agreement against sparsity to this SVG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    #[command(flatten)]
    tune: TuneArgs,
}

fn load_net(cache: &std::path::Path) -> wgsparse::Result<wgsparse::model::Lite0> {
    let weights = cache.join(wgsparse::model::fetch::WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(wgsparse::Error::Weights(format!(
            "{} not found: run `wgsparse fetch --cache {}` first",
            weights.display(),
            cache.display()
        )));
    }
    wgsparse::model::Lite0::from_safetensors(&read(&weights)?)
}

pub(super) fn run(a: SweepArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, sweep, GpuLite0, INPUT_SIZE};
    let net = load_net(&a.cache)?;
    let methods: Vec<sweep::Method> = a.methods.iter().map(|m| m.parse()).collect::<wgsparse::Result<_>>()?;
    let calibrated = methods.iter().any(|m| *m != sweep::Method::default());
    let mut calib = Vec::new();
    let mut images = Vec::new();
    for f in &sample_images(&a.cache)? {
        let bytes = read(f)?;
        if calibrated && calib.len() < a.calibration {
            match preprocess::preprocess(&bytes, INPUT_SIZE) {
                Ok(x) => calib.push(x),
                Err(e) => eprintln!("skipping {}: {e}", f.display()),
            }
            continue;
        }
        match preprocess::views(&bytes, INPUT_SIZE) {
            Ok(v) if a.views => images.extend(v.into_iter().map(|(_, x)| x)),
            Ok(mut v) => images.push(v.swap_remove(0).1),
            Err(e) => eprintln!("skipping {}: {e}", f.display()),
        }
    }
    if images.is_empty() {
        return Err(wgsparse::Error::Invalid(format!(
            "no images to evaluate in {} (after {} for calibration)",
            a.cache.join("images").display(),
            calib.len()
        )));
    }
    let mut grid = Vec::new();
    for p in &a.patterns {
        let pattern: wgsparse::Pattern = p.parse()?;
        for &m in &methods {
            match pattern {
                wgsparse::Pattern::NM { n, m: mm } if m.budget => grid.extend(
                    a.sparsities
                        .iter()
                        .filter(|&&s| s <= 1.0 - n as f64 / mm as f64)
                        .map(|&s| (pattern, s, m)),
                ),
                wgsparse::Pattern::NM { .. } => grid.push((pattern, 0.0, m)),
                wgsparse::Pattern::Dense => {}
                _ => grid.extend(a.sparsities.iter().map(|&s| (pattern, s, m))),
            }
        }
    }
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let mut gpu = GpuLite0::new(&ctx, net)?;
    let tune = a.tune.open(&ctx);
    if let Some(t) = &tune {
        t.attach(&ctx, &mut gpu)?;
    }
    if calibrated {
        pollster::block_on(gpu.calibrate(&ctx, &calib))?;
    }
    let bar = indicatif::ProgressBar::new(grid.len() as u64 + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let points = pollster::block_on(sweep::sweep(&ctx, &mut gpu, &images, &grid, a.runs, |p| {
        bar.set_message(format!("{} {:.0}%", p.pattern, 100.0 * p.sparsity));
        bar.inc(1);
    }))?;
    bar.finish_and_clear();
    println!(
        "{} evaluated images{} ({} more calibrate), adapter {}; agreement = top-1 equal to the dense model's",
        images.len(),
        if a.views {
            " (each photo: center, flip, zoom, zoom+flip)"
        } else {
            ""
        },
        calib.len(),
        ctx.info().name
    );
    println!(
        "{:<14} {:<15} {:>8} {:>10} {:>10} {:>11} {:>9}",
        "pattern", "method", "sparsity", "agreement", "mean KL", "latency ms", "speedup"
    );
    let dense_ms = points[0].latency_ms;
    for p in &points {
        println!(
            "{:<14} {:<15} {:>7.0}% {:>9.1}% {:>10.4} {:>11.4} {:>8.2}x",
            p.pattern,
            p.method.to_string(),
            100.0 * p.sparsity,
            100.0 * p.agreement,
            p.mean_kl,
            p.latency_ms,
            dense_ms / p.latency_ms
        );
    }
    if let Some(path) = &a.plot {
        let title = format!("EfficientNet-Lite0 pruned on the GPU — {}", ctx.info().name);
        sweep::plot_svg(&points, &title, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
