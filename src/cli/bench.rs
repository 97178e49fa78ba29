//! `wgsparse bench`: the kernel benchmark on wgpu, or 2:4 on CUDA.

use super::common::TuneArgs;

#[derive(clap::Args)]
pub(super) struct BenchArgs {
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
    // --tune-cache: also record each shape's dense-or-sparse choice (f32 gemm
    // against the pattern's kernel), for the models to reuse.
    #[command(flatten)]
    tune: TuneArgs,
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

pub(super) fn run(a: BenchArgs) -> wgsparse::Result<()> {
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
    let tune = a.tune.open(&ctx);
    cfg.tuner = tune.as_ref().map(|t| t.tuner());
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
