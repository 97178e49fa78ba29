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
    /// Also time a grid of BSR tile shapes (tuning).
    #[arg(long)]
    bsr_tiles: bool,
    /// Also time the candidate tilings of the CSR and N:M kernels (tuning).
    #[arg(long)]
    variants: bool,
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
    cfg.variants = a.variants;
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
