//! `wgsparse classify` (the GPU, dense and pruned, with latencies) and
//! `wgsparse classify-cpu` (the CPU reference forward pass).

use super::common::{read, weights_path, TuneArgs};
use super::method::MethodArgs;

#[derive(clap::Args)]
pub(super) struct ClassifyArgs {
    /// PNG or JPEG image, any size.
    image: std::path::PathBuf,
    /// Cache folder holding lite0.safetensors (see `wgsparse fetch`).
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Also print the layer table.
    #[arg(long)]
    layers: bool,
}

#[derive(clap::Args)]
pub(super) struct GpuClassifyArgs {
    /// PNG or JPEG image, any size.
    image: std::path::PathBuf,
    /// Cache folder holding lite0.safetensors (see `wgsparse fetch`).
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Weights: the checkpoint (default CACHE/lite0.safetensors) or a sparse
    /// file written by `wgsparse prune` (then it runs as stored, no pruning).
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    /// Pattern of the pruned model: dense, unstructured, block:RxC, N:M.
    #[arg(long, default_value = "dense")]
    pattern: String,
    /// Sparsity of the pruned model (ignored for N:M).
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    /// One magnitude threshold across all layers (unstructured only).
    #[arg(long)]
    global: bool,
    #[command(flatten)]
    method: MethodArgs,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Print the per-layer report and timing breakdown.
    #[arg(long)]
    layers: bool,
    /// Also run each model in f16 storage (f32 sums; tensor cores where the
    /// adapter has cooperative matrices), with its latency beside f32's.
    #[arg(long)]
    f16: bool,
    #[command(flatten)]
    tune: TuneArgs,
}

pub(super) fn classify_cpu(a: ClassifyArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{classes, cpu_forward, preprocess, Lite0, INPUT_SIZE};
    let weights = a.cache.join(wgsparse::model::fetch::WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(wgsparse::Error::Weights(format!(
            "{} not found: run `wgsparse fetch --cache {}` first",
            weights.display(),
            a.cache.display()
        )));
    }
    let net = Lite0::from_safetensors(&read(&weights)?)?;
    if a.layers {
        println!("{net}");
    }
    let x = preprocess::preprocess(&read(&a.image)?, INPUT_SIZE)?;
    let t = std::time::Instant::now();
    let logits = cpu_forward::forward(&net, &x)?;
    eprintln!("CPU reference forward: {:.2} s", t.elapsed().as_secs_f64());
    for p in classes::top_k(&logits, a.top) {
        println!("{:>6.2}%  {:>3}  {}", p.prob * 100.0, p.class, p.name);
    }
    Ok(())
}

fn print_top(title: &str, logits: &[f32], ms: f64, source: wgsparse::gpu::TimingSource) {
    println!("{title}: {ms:.3} ms ({source}, median)");
    for p in wgsparse::model::classes::top_k(logits, 5) {
        println!("  {:>6.2}%  {:>3}  {}", p.prob * 100.0, p.class, p.name);
    }
}

pub(super) fn run(a: GpuClassifyArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, GpuLite0, KernelPolicy, Scope, INPUT_SIZE};
    let pattern: wgsparse::Pattern = a.pattern.parse()?;
    let bytes = read(&weights_path(&a.cache, a.weights.as_deref())?)?;
    let x = preprocess::preprocess(&read(&a.image)?, INPUT_SIZE)?;
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    println!("adapter: {} ({:?})", ctx.info().name, ctx.info().backend);
    let (mut gpu, loaded) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &bytes, KernelPolicy::Fastest))?;
    let tune = a.tune.open(&ctx);
    if let Some(t) = &tune {
        t.attach(&ctx, &mut gpu)?;
    }
    if let Some(report) = loaded {
        if pattern != wgsparse::Pattern::Dense {
            return Err(wgsparse::Error::Invalid(
                "the weights file is already pruned: leave out --pattern/--sparsity".into(),
            ));
        }
        let logits = pollster::block_on(gpu.forward(&ctx, &x))?;
        let t = pollster::block_on(gpu.latency(&ctx, 5, a.runs))?;
        print_top("pruned (from the file)", &logits, t.median_ms(), t.source);
        if a.layers {
            println!("\n{report}");
        }
        if a.f16 {
            classify_f16(
                &ctx,
                &gpu,
                &x,
                "pruned (from the file)",
                t.median_ms(),
                a.runs,
                a.layers,
            )?;
        }
        return Ok(());
    }
    let dense = pollster::block_on(gpu.forward(&ctx, &x))?;
    let t = pollster::block_on(gpu.latency(&ctx, 5, a.runs))?;
    print_top("dense", &dense, t.median_ms(), t.source);
    if a.f16 {
        classify_f16(&ctx, &gpu, &x, "dense", t.median_ms(), a.runs, a.layers)?;
    }
    if pattern == wgsparse::Pattern::Dense {
        return Ok(());
    }
    let mut spec = a.method.spec(pattern, a.sparsity)?;
    if a.global {
        spec.scope = Scope::Global;
    }
    a.method.prepare(&ctx, &mut gpu, &mut spec, &a.cache, Some(&a.image))?;
    let report = pollster::block_on(gpu.prune(&ctx, &spec))?;
    let pruned = pollster::block_on(gpu.forward(&ctx, &x))?;
    let tp = pollster::block_on(gpu.latency(&ctx, 5, a.runs))?;
    let target = match pattern {
        wgsparse::Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
        _ => a.sparsity,
    };
    print_top(
        &format!("{pattern} at {:.0}%", 100.0 * target),
        &pruned,
        tp.median_ms(),
        tp.source,
    );
    println!("speedup over dense: {:.2}x", t.median_ms() / tp.median_ms());
    if a.f16 {
        let what = format!("{pattern} at {:.0}%", 100.0 * target);
        classify_f16(&ctx, &gpu, &x, &what, tp.median_ms(), a.runs, a.layers)?;
    }
    // Re-pruning as the demo's slider does: the whole model again on the GPU,
    // alternating between two nearby sparsities (every pipeline is warm).
    let mut times = Vec::new();
    for k in 0..6 {
        let mut s2 = spec.clone();
        if k % 2 == 0 && !matches!(pattern, wgsparse::Pattern::NM { .. }) {
            s2.sparsity = (a.sparsity - 0.05).max(0.0);
        }
        times.push(pollster::block_on(gpu.prune(&ctx, &s2))?.prune_ms);
    }
    pollster::block_on(gpu.prune(&ctx, &spec))?;
    times.sort_by(f64::total_cmp);
    println!(
        "re-prune of the whole model on the GPU (wall clock, median of {}): {:.2} ms",
        times.len(),
        times[times.len() / 2]
    );
    if a.layers {
        println!("\n{report}");
        println!("\nper-layer GPU time of the pruned model (median ms):");
        for (name, t) in pollster::block_on(gpu.layer_latency(&ctx, 3, 20))? {
            println!("  {name:<22} {:>9.4}", t.median_ms());
        }
    }
    Ok(())
}

/// `classify --f16`: the model as it computes now, in f16 storage: top-5,
/// latency against the f32 latency `f32_ms` of the same model, and with
/// `layers` the per-layer kernel choice.
fn classify_f16(
    ctx: &wgsparse::gpu::Context,
    gpu: &wgsparse::model::GpuLite0,
    x: &[f32],
    what: &str,
    f32_ms: f64,
    runs: usize,
    layers: bool,
) -> wgsparse::Result<()> {
    let m = pollster::block_on(gpu.to_f16(ctx, wgsparse::model::KernelPolicy::Fastest))?;
    let logits = pollster::block_on(m.forward(ctx, x))?;
    let t = pollster::block_on(m.latency(ctx, 5, runs))?;
    print_top(&format!("{what}, f16"), &logits, t.median_ms(), t.source);
    println!("f16 speedup over f32 ({what}): {:.2}x", f32_ms / t.median_ms());
    if layers {
        println!("\n{}", m.report());
    }
    Ok(())
}
