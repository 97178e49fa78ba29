//! The kernel benchmark behind `wgsparse bench`: dense GEMM against the sparse
//! kernels over a grid of shapes and sparsities, medians of repeated GPU-timed
//! runs, speedups measured against our own dense GEMM IN THE SAME RUN, and every
//! kernel's output checked against a float64 reference on sampled elements.
//! With [`BenchConfig::f16`] the f16-storage kernels (f32 accumulation) are
//! timed too, checked against float64 products of the f16-rounded inputs, with
//! speedups against both the f32 and the f16 dense GEMM of the same run. Where
//! the adapter has cooperative matrices, the f16 benchmark adds the
//! tensor-core kernels (`gemm_coop`, `spmm_bsr_coop` for 16x16 and 32x32
//! blocks, `spmm_nm_coop` for 2:4 and 1:2), with speedups against the
//! cooperative dense GEMM too; f16 2:4 and 1:2 also run `spmm_nm_f16`.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::gemm::coop as gemm_coop;
use crate::gpu::gemm::f16 as gemm_f16;
use crate::gpu::gemm::GemmTile;
use crate::gpu::spmm_bsr::coop as spmm_bsr_coop;
use crate::gpu::spmm_bsr::f16 as spmm_bsr_f16;
use crate::gpu::spmm_bsr::BsrTile;
use crate::gpu::spmm_nm::coop as spmm_nm_coop;
use crate::gpu::tune::{Family, TuneKey, Tuner};
use crate::gpu::{
    f16_rounded, gemm, spmm_bsr, spmm_csr, spmm_nm, AdapterSummary, Context, Dispatch, Epilogue, GpuBsrF16, GpuMatrix,
    GpuMatrixF16, PrunePlan, TimingSource,
};
use crate::ops::{GpuWeights, SparseOperator};
use crate::prune::{self, BlockNorm};
use crate::sparse::{Matrix, Pattern, SparseMatrix};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// `(M, K, N)` of `Y[M, N] = W[M, K] X[K, N]`.
    pub shapes: Vec<(usize, usize, usize)>,
    /// Sparsities for the patterns that take one.
    pub sparsities: Vec<f64>,
    /// Patterns measured against dense (N:M at its own sparsity, the others at
    /// every sparsity of `sparsities`).
    pub patterns: Vec<Pattern>,
    pub warmup: usize,
    pub runs: usize,
    pub seed: u64,
    /// Also time every GEMM tile (tuning).
    pub gemm_tiles: bool,
    /// Also time a grid of BSR tiles (tuning).
    pub bsr_tiles: bool,
    /// Time GPU pruning (prune + compress) of each square shape's W per pattern.
    pub prune: bool,
    /// Also time the f16-storage kernels (`gemm_f16`, `spmm_bsr_f16`; needs
    /// shader-f16), and with `gemm_tiles`/`bsr_tiles` their tiles.
    pub f16: bool,
    /// Also time the candidate tilings of the CSR and N:M kernels (tuning).
    pub variants: bool,
    /// With `f16` on an adapter with cooperative matrices: also time every
    /// candidate tile of the cooperative kernels (tuning).
    pub coop_tiles: bool,
    /// Record each (shape, pattern, sparsity)'s dense-or-sparse decision
    /// here: the f32 `gemm` against the format's kernel, family
    /// [`Family::ModelLayer`], the candidates a model layer of that shape
    /// has (timed without the layer's bias and activation), so a model
    /// using this tuner takes the benchmark's choice instead of measuring.
    pub tuner: Option<Arc<Tuner>>,
}

/// Pointwise-convolution shapes of EfficientNet-Lite0 at batch 1 (M = Cout,
/// K = Cin, N = H*W) and its classifier.
pub const LITE0_SHAPES: [(usize, usize, usize); 5] = [
    (1280, 320, 49),
    (96, 16, 12544),
    (1000, 1280, 1),
    (192, 32, 3136),
    (480, 80, 196),
];

/// Patterns of the default grid.
pub const DEFAULT_PATTERNS: [&str; 8] = [
    "block:4x4",
    "block:8x8",
    "block:16x16",
    "block:32x32",
    "2:4",
    "1:4",
    "2:8",
    "unstructured",
];

impl BenchConfig {
    /// The default grid: square 1024/2048/4096 (only 512/1024 on CPU adapters,
    /// where 4096^3 takes minutes per run) plus the Lite0 shapes.
    pub fn default_for(ctx: &Context) -> Self {
        let squares: &[usize] = if ctx.is_cpu() {
            &[512, 1024]
        } else {
            &[1024, 2048, 4096]
        };
        let mut shapes: Vec<_> = squares.iter().map(|&s| (s, s, s)).collect();
        shapes.extend(LITE0_SHAPES);
        BenchConfig {
            shapes,
            sparsities: vec![0.5, 0.7, 0.9, 0.95, 0.98],
            patterns: DEFAULT_PATTERNS
                .iter()
                .map(|p| p.parse().expect("valid pattern"))
                .collect(),
            warmup: 5,
            runs: 20,
            seed: 1,
            gemm_tiles: false,
            bsr_tiles: false,
            prune: true,
            f16: false,
            variants: false,
            coop_tiles: false,
            tuner: None,
        }
    }
}

/// One measured kernel on one shape.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub kernel: String,
    pub pattern: String,
    pub sparsity: f64,
    pub median_ms: f64,
    pub min_ms: f64,
    /// `2 M K N / t`.
    pub gflops_dense_equiv: f64,
    /// `2 nnz(W) N / t`.
    pub gflops_useful: f64,
    /// f32 dense median / this median, same run.
    pub speedup: f64,
    /// f16 dense (`gemm_f16`) median / this median, same run; for the f16
    /// kernels only.
    pub speedup_vs_f16_dense: Option<f64>,
    /// Cooperative dense (`gemm_coop`, default tile) median / this median,
    /// same run; for the f16 kernels on adapters with cooperative matrices.
    pub speedup_vs_coop_dense: Option<f64>,
    /// Norm-wise relative error of sampled outputs against float64.
    pub sample_rel_err: f64,
}

/// All rows of one run, with the adapter they ran on.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub adapter: AdapterSummary,
    pub timing: TimingSource,
    pub runs: usize,
    pub rows: Vec<BenchRow>,
    /// GPU pruning times: (rows, cols, pattern, sparsity, median ms).
    pub prune_rows: Vec<PruneRow>,
}

/// Time to prune and compress one matrix on the GPU.
#[derive(Clone, Debug)]
pub struct PruneRow {
    pub rows: usize,
    pub cols: usize,
    pub pattern: String,
    pub sparsity: f64,
    pub median_ms: f64,
}

/// Times the GPU pruning plan of `pattern` on `gw`, after checking that its
/// result equals the CPU reference exactly.
fn time_prune(ctx: &Context, cfg: &BenchConfig, w: &Matrix, gw: &GpuMatrix, pattern: Pattern, s: f64) -> Result<f64> {
    let (want, _) = prune::prune(w, pattern, s)?;
    let (dispatches, got) = match pattern {
        Pattern::NM { n, m } => {
            let plan = PrunePlan::nm(ctx, gw, n, m)?;
            let d = plan.dispatches().to_vec();
            (
                d,
                SparseMatrix::Nm(pollster::block_on(async { plan.run(ctx).await?.download(ctx).await })?),
            )
        }
        Pattern::Block { rows, cols } => {
            let plan = PrunePlan::block(ctx, gw, rows, cols, s, BlockNorm::L2)?;
            let d = plan.dispatches().to_vec();
            (
                d,
                SparseMatrix::Bsr(pollster::block_on(async { plan.run(ctx).await?.download(ctx).await })?),
            )
        }
        Pattern::Unstructured => {
            let plan = PrunePlan::unstructured(ctx, gw, s)?;
            let d = plan.dispatches().to_vec();
            (
                d,
                SparseMatrix::Csr(pollster::block_on(async { plan.run(ctx).await?.download(ctx).await })?),
            )
        }
        Pattern::Dense => return Ok(0.0),
    };
    if got != want {
        return Err(Error::Gpu(format!(
            "GPU pruning {pattern} at {s} of a {}x{} matrix differs from the CPU reference",
            w.rows(),
            w.cols()
        )));
    }
    let refs: Vec<&Dispatch> = dispatches.iter().collect();
    Ok(ctx.time_blocking(&refs, cfg.warmup, cfg.runs)?.median_ms())
}

/// Outputs sampled for the float64 check.
const SAMPLES: usize = 256;
/// Norm-wise relative error allowed on sampled outputs (f32 accumulation over K).
pub const SAMPLE_REL_TOL: f64 = 1e-4;
/// The same for the f16-storage kernels, against float64 products of the
/// f16-rounded inputs (f32 accumulation, output rounded to f16: about 3e-4).
pub const F16_SAMPLE_REL_TOL: f64 = 1e-2;

fn lcg(s: &mut u64) -> u64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *s >> 33
}

/// Uniform values in [-1, 1).
pub fn random_matrix(rows: usize, cols: usize, seed: u64) -> Result<Matrix> {
    let mut s = seed ^ 0x5DEECE66D;
    let data = (0..rows * cols)
        .map(|_| (lcg(&mut s) as f64 / (1u64 << 31) as f64 - 1.0) as f32)
        .collect();
    Matrix::new(rows, cols, data)
}

/// Compares sampled outputs of `y` with float64 dot products of `w` (dense,
/// masked) and `x`.
fn check_samples(w: &Matrix, x: &Matrix, y: &Matrix, seed: u64) -> f64 {
    let (m, n, k) = (w.rows(), x.cols(), w.cols());
    let mut s = seed;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for _ in 0..SAMPLES {
        let i = lcg(&mut s) as usize % m;
        let j = lcg(&mut s) as usize % n;
        let want: f64 = (0..k).map(|p| w.get(i, p) as f64 * x.get(p, j) as f64).sum();
        let got = y.get(i, j) as f64;
        num += (got - want) * (got - want);
        den += want * want;
    }
    if num.is_nan() {
        return f64::INFINITY;
    }
    num.sqrt() / den.sqrt().max(1e-30)
}

/// One kernel measurement on one shape.
struct Case<'a> {
    kernel: &'static str,
    pattern: String,
    sparsity: f64,
    /// Stored non-zeros of W (for the useful FLOP rate).
    nnz: usize,
    /// W as dense with the pruned entries zeroed (for the float64 check).
    masked: &'a Matrix,
}

/// The output a kernel writes, in either storage.
#[derive(Clone, Copy)]
enum Output<'a> {
    F32(&'a GpuMatrix),
    F16(&'a GpuMatrixF16),
}

/// What is fixed for one shape and precision: X on the CPU (as the GPU holds
/// it, i.e. f16-rounded for f16), Y on the GPU, the tolerance of the check.
struct ShapeBench<'a> {
    ctx: &'a Context,
    cfg: &'a BenchConfig,
    x: &'a Matrix,
    gy: Output<'a>,
    seed: u64,
    tol: f64,
}

impl ShapeBench<'_> {
    /// Times `d`, checks its output, and returns the row (speedup against `dense_ms`,
    /// or 1 when this is the dense run itself).
    fn measure(&self, case: Case, d: &Dispatch, dense_ms: Option<f64>) -> Result<(BenchRow, TimingSource)> {
        let t = self.ctx.time_blocking(&[d], self.cfg.warmup, self.cfg.runs)?;
        let y = match self.gy {
            Output::F32(y) => y.download_blocking(self.ctx)?,
            Output::F16(y) => y.download_blocking(self.ctx)?,
        };
        let err = check_samples(case.masked, self.x, &y, self.seed);
        let (m, k, n) = (case.masked.rows(), case.masked.cols(), self.x.cols());
        let med = t.median_ms();
        let r = BenchRow {
            m,
            k,
            n,
            kernel: case.kernel.to_string(),
            pattern: case.pattern,
            sparsity: case.sparsity,
            median_ms: med,
            min_ms: t.min_ms(),
            gflops_dense_equiv: 2.0 * (m * k * n) as f64 / (med * 1e6),
            gflops_useful: 2.0 * (case.nnz * n) as f64 / (med * 1e6),
            speedup: dense_ms.unwrap_or(med) / med,
            speedup_vs_f16_dense: None,
            speedup_vs_coop_dense: None,
            sample_rel_err: err,
        };
        check_err(&r, self.tol)?;
        Ok((r, t.source))
    }
}

/// What a candidate that fails does to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnFail {
    /// The kernel every shape must run (a dense GEMM, a format's default
    /// kernel): its error ends the benchmark.
    Stop,
    /// A tuning candidate: its failure is reported (`FAILED`) and the run goes on.
    Report,
    /// A tile grid point the kernel cannot build is left out silently; one
    /// that builds must compute the right product.
    SkipUnbuilt,
}

/// One candidate kernel of a family on one shape: its row, how to build its
/// dispatch, and what its failure means.
struct Candidate<'a> {
    case: Case<'a>,
    on_fail: OnFail,
    prepare: Box<dyn FnOnce() -> Result<Dispatch> + 'a>,
}

impl<'a> Candidate<'a> {
    fn new(case: Case<'a>, on_fail: OnFail, prepare: impl FnOnce() -> Result<Dispatch> + 'a) -> Self {
        Candidate {
            case,
            on_fail,
            prepare: Box::new(prepare),
        }
    }
}

/// A dense-GEMM case of W (`masked` is W itself, or its f16 rounding).
fn dense_case<'a>(kernel: &'static str, pattern: String, masked: &'a Matrix) -> Case<'a> {
    Case {
        kernel,
        pattern,
        sparsity: 0.0,
        nnz: masked.rows() * masked.cols(),
        masked,
    }
}

/// The `pattern` column of a GEMM tile.
fn gemm_tile_label(tile: GemmTile) -> String {
    let GemmTile { bm, bn, bk, tm, tn } = tile;
    format!("tile:{bm}x{bn}x{bk}/{tm}x{tn}")
}

/// The grid of BSR tiles `--bsr-tiles` times (the depth capped at the block width).
fn bsr_tile_grid(block_cols: usize) -> Vec<BsrTile> {
    let mut v = Vec::new();
    for wg_x in [8, 16, 32] {
        for tn4 in [2, 4] {
            for kc in [4, 8, 16] {
                v.push(BsrTile {
                    wg_x,
                    tn4,
                    kc: kc.min(block_cols as u32),
                });
            }
        }
    }
    v
}

fn bsr_tile_label(pattern: Pattern, t: BsrTile) -> String {
    format!("{pattern} wg{} tn{} kc{}", t.wg_x, t.tn4, t.kc)
}

impl ShapeBench<'_> {
    /// Times every candidate in order, as its [`OnFail`] says; returns the
    /// rows of those that ran, each with its index in `cands`.
    fn measure_all(
        &self,
        cands: Vec<Candidate>,
        dense_ms: Option<f64>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<(usize, BenchRow, TimingSource)>> {
        let mut out = Vec::with_capacity(cands.len());
        for (i, c) in cands.into_iter().enumerate() {
            let what = format!(
                "{}x{}x{} {} {}",
                c.case.masked.rows(),
                c.case.masked.cols(),
                self.x.cols(),
                c.case.kernel,
                c.case.pattern
            );
            let d = match ((c.prepare)(), c.on_fail) {
                (Ok(d), _) => d,
                (Err(_), OnFail::SkipUnbuilt) => continue,
                (Err(e), OnFail::Report) => {
                    progress(&format!("{what}: FAILED {e}"));
                    continue;
                }
                (Err(e), OnFail::Stop) => return Err(e),
            };
            match (self.measure(c.case, &d, dense_ms), c.on_fail) {
                (Ok((r, source)), _) => out.push((i, r, source)),
                (Err(e), OnFail::Report) => progress(&format!("{what}: FAILED {e}")),
                (Err(e), _) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Everything one shape is measured with: W and X on the CPU and the GPU, in
/// f32 and (with `--f16`) f16, and the dense times the sparse kernels are
/// compared with (NaN until measured).
struct Shape<'a> {
    ctx: &'a Context,
    cfg: &'a BenchConfig,
    w: &'a Matrix,
    gw: &'a GpuMatrix,
    gx: &'a GpuMatrix,
    gy: &'a GpuMatrix,
    sb: ShapeBench<'a>,
    f16: Option<F16Shape<'a>>,
    /// The adapter has cooperative matrices and `--f16` is on.
    coop: bool,
    /// Median of the f32 dense GEMM.
    dense_ms: f64,
    /// Median of the f16 dense GEMM on the shader cores.
    f16_dense_ms: f64,
    /// Median of the cooperative dense GEMM (default tile).
    coop_dense_ms: f64,
}

/// The f16 operands of a shape (W rounded on the CPU too, for the check).
struct F16Shape<'a> {
    w16: &'a Matrix,
    gw16: &'a GpuMatrixF16,
    gx16: &'a GpuMatrixF16,
    gy16: &'a GpuMatrixF16,
    sb16: ShapeBench<'a>,
}

impl Shape<'_> {
    /// `M x K x N` as the progress lines start.
    fn dims(&self) -> String {
        format!("{}x{}x{}", self.w.rows(), self.w.cols(), self.sb.x.cols())
    }

    /// The f16 speedups of a row: against the f16 dense GEMM, and against the
    /// cooperative one where `coop`.
    fn f16_speedups(&self, r: &mut BenchRow, coop: bool) {
        r.speedup_vs_f16_dense = Some(self.f16_dense_ms / r.median_ms);
        if coop {
            r.speedup_vs_coop_dense = Some(self.coop_dense_ms / r.median_ms);
        }
    }
}

/// Runs the benchmark. `progress` gets one line per measurement.
pub fn run(ctx: &Context, cfg: &BenchConfig, mut progress: impl FnMut(&str)) -> Result<BenchReport> {
    if cfg.f16 {
        ctx.require_f16("the f16 benchmark (--f16)")?;
    }
    let progress: &mut dyn FnMut(&str) = &mut progress;
    let mut rows = Vec::new();
    let mut prune_rows = Vec::new();
    let mut timing = TimingSource::WallClock;
    for (si, &(m, k, n)) in cfg.shapes.iter().enumerate() {
        let seed = cfg.seed.wrapping_add(si as u64 * 1000);
        let w = random_matrix(m, k, seed)?;
        let x = random_matrix(k, n, seed + 1)?;
        let gw = GpuMatrix::upload(ctx, &w, "bench w")?;
        let gx = GpuMatrix::upload(ctx, &x, "bench x")?;
        let gy = GpuMatrix::new(ctx, m, n, "bench y")?;
        // The f16 operands (rounded on the CPU too, for the float64 check).
        let f16 = if cfg.f16 {
            let (w16, x16) = (f16_rounded(&w), f16_rounded(&x));
            let gw16 = GpuMatrixF16::upload(ctx, &w, "bench w f16")?;
            let gx16 = GpuMatrixF16::upload(ctx, &x, "bench x f16")?;
            let gy16 = GpuMatrixF16::new(ctx, m, n, "bench y f16")?;
            Some((w16, x16, gw16, gx16, gy16))
        } else {
            None
        };
        let mut s = Shape {
            ctx,
            cfg,
            w: &w,
            gw: &gw,
            gx: &gx,
            gy: &gy,
            sb: ShapeBench {
                ctx,
                cfg,
                x: &x,
                gy: Output::F32(&gy),
                seed: seed + 2,
                tol: SAMPLE_REL_TOL,
            },
            f16: f16.as_ref().map(|(w16, x16, gw16, gx16, gy16)| F16Shape {
                w16,
                gw16,
                gx16,
                gy16,
                sb16: ShapeBench {
                    ctx,
                    cfg,
                    x: x16,
                    gy: Output::F16(gy16),
                    seed: seed + 2,
                    tol: F16_SAMPLE_REL_TOL,
                },
            }),
            coop: cfg.f16 && gemm_coop::coop_support(ctx).is_ok(),
            dense_ms: f64::NAN,
            f16_dense_ms: f64::NAN,
            coop_dense_ms: f64::NAN,
        };
        timing = dense_f32(&mut s, &mut rows, progress)?;
        if cfg.prune && m == k && m == n {
            for &pattern in &cfg.patterns {
                let sp = match pattern {
                    Pattern::NM { n, m } => 1.0 - n as f64 / m as f64, // implied; prune ignores it
                    Pattern::Dense => 0.0,
                    _ => 0.9,
                };
                let ms = time_prune(ctx, cfg, &w, &gw, pattern, sp)?;
                progress(&format!("prune {m}x{k} {pattern} at {sp}: {ms:.4} ms"));
                prune_rows.push(PruneRow {
                    rows: m,
                    cols: k,
                    pattern: pattern.to_string(),
                    sparsity: sp,
                    median_ms: ms,
                });
            }
        }
        dense_f16(&mut s, &mut rows, progress)?;
        dense_coop(&mut s, &mut rows, progress)?;
        for &pattern in &cfg.patterns {
            // N:M fixes its own sparsity: one measurement.
            let sparsities: Vec<f64> = match pattern {
                Pattern::NM { n, m } => vec![1.0 - n as f64 / m as f64],
                Pattern::Dense => vec![],
                _ => cfg.sparsities.clone(),
            };
            for sparsity in sparsities {
                sparse(&s, pattern, sparsity, &mut rows, progress)?;
            }
        }
    }
    Ok(BenchReport {
        adapter: ctx.summary().clone(),
        timing,
        runs: cfg.runs,
        rows,
        prune_rows,
    })
}

/// Family `gemm`: the dense GEMM (the baseline of every speedup), then with
/// `--gemm-tiles` each tile this adapter can build. Returns the timing source.
fn dense_f32(s: &mut Shape, rows: &mut Vec<BenchRow>, progress: &mut dyn FnMut(&str)) -> Result<TimingSource> {
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gw, gx, gy) = (s.gw, s.gx, s.gy);
    let d = gemm::prepare(ctx, gw, gx, gy, &ep)?;
    let (r, source) = s.sb.measure(dense_case("gemm", "dense".into(), s.w), &d, None)?;
    s.dense_ms = r.median_ms;
    progress(&format!(
        "{} dense: {:.4} ms, {:.0} GFLOP/s",
        s.dims(),
        r.median_ms,
        r.gflops_dense_equiv
    ));
    rows.push(r);
    if !s.cfg.gemm_tiles {
        return Ok(source);
    }
    let tiles = GemmTile::ALL.into_iter().chain(GemmTile::EXPERIMENTAL);
    let cands = tiles
        .filter(|t| t.validate(ctx).is_ok())
        .map(|tile| {
            Candidate::new(
                dense_case("gemm", gemm_tile_label(tile), s.w),
                OnFail::Stop,
                move || gemm::prepare_with(ctx, gw, gx, gy, &ep, tile),
            )
        })
        .collect();
    for (_, r, _) in s.sb.measure_all(cands, Some(s.dense_ms), progress)? {
        progress(&format!("{} {}: {:.4} ms", s.dims(), r.pattern, r.median_ms));
        rows.push(r);
    }
    Ok(source)
}

/// Family `gemm_f16` (with `--f16`): the f16 dense GEMM on the shader cores,
/// then with `--gemm-tiles` its tiles.
fn dense_f16(s: &mut Shape, rows: &mut Vec<BenchRow>, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let Some(f) = &s.f16 else {
        return Ok(());
    };
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gw, gx, gy) = (f.gw16, f.gx16, f.gy16);
    let d = gemm_f16::prepare(ctx, gw, gx, gy, &ep)?;
    let (mut r, _) = f
        .sb16
        .measure(dense_case("gemm_f16", "dense".into(), f.w16), &d, Some(s.dense_ms))?;
    let f16_dense_ms = r.median_ms;
    r.speedup_vs_f16_dense = Some(1.0);
    progress(&format!(
        "{} dense f16: {:.4} ms, {:.0} GFLOP/s, {:.2}x f32 dense",
        s.dims(),
        r.median_ms,
        r.gflops_dense_equiv,
        r.speedup
    ));
    rows.push(r);
    let mut cands = Vec::new();
    if s.cfg.gemm_tiles {
        for tile in GemmTile::ALL.into_iter().chain(GemmTile::EXPERIMENTAL) {
            if tile.validate(ctx).is_ok() {
                cands.push(Candidate::new(
                    dense_case("gemm_f16", gemm_tile_label(tile), f.w16),
                    OnFail::Stop,
                    move || gemm_f16::prepare_with(ctx, gw, gx, gy, &ep, tile),
                ));
            }
        }
    }
    let measured = f.sb16.measure_all(cands, Some(s.dense_ms), progress)?;
    s.f16_dense_ms = f16_dense_ms;
    for (_, mut r, _) in measured {
        r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
        progress(&format!("{} f16 {}: {:.4} ms", s.dims(), r.pattern, r.median_ms));
        rows.push(r);
    }
    Ok(())
}

/// Family `gemm_coop` (with `--f16`, where the adapter has cooperative
/// matrices): the default tile (a failure ends the run), then with
/// `--coop-tiles` every candidate tile (failures reported and skipped).
fn dense_coop(s: &mut Shape, rows: &mut Vec<BenchRow>, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let (true, Some(f)) = (s.coop, &s.f16) else {
        return Ok(());
    };
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gw, gx, gy) = (f.gw16, f.gx16, f.gy16);
    let mut tiles = vec![gemm_coop::CoopTile::DEFAULT];
    if s.cfg.coop_tiles {
        tiles.extend(gemm_coop::CoopTile::CANDIDATES.into_iter().skip(1));
    }
    let cands = tiles
        .iter()
        .enumerate()
        .map(|(i, &tile)| {
            let (label, on_fail) = match i {
                0 => ("dense".to_string(), OnFail::Stop),
                _ => (format!("tile:{}", tile.label()), OnFail::Report),
            };
            Candidate::new(dense_case("gemm_coop", label, f.w16), on_fail, move || {
                gemm_coop::prepare_with(ctx, gw, gx, gy, &ep, tile)
            })
        })
        .collect();
    let measured = f.sb16.measure_all(cands, Some(s.dense_ms), progress)?;
    if let Some((0, r, _)) = measured.first() {
        s.coop_dense_ms = r.median_ms;
    }
    for (i, mut r, _) in measured {
        s.f16_speedups(&mut r, true);
        progress(&format!(
            "{} gemm_coop {}: {:.4} ms, {:.1} TFLOP/s, {:.2}x f16 dense",
            s.dims(),
            tiles[i].label(),
            r.median_ms,
            r.gflops_dense_equiv / 1e3,
            s.f16_dense_ms / r.median_ms
        ));
        rows.push(r);
    }
    Ok(())
}

/// W pruned to `pattern` at `sparsity`, through every sparse family that runs
/// the format: the f32 kernel, then its f16 and cooperative forms.
fn sparse(
    s: &Shape,
    pattern: Pattern,
    sparsity: f64,
    rows: &mut Vec<BenchRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (sp, report) = prune::prune(s.w, pattern, sparsity)?;
    let masked = sp.to_dense();
    let op = SparseOperator::from_sparse(s.ctx, &sp, report)?;
    let case = |kernel: &'static str, label: String, masked| Case {
        kernel,
        pattern: label,
        sparsity,
        nnz: op.report.kept,
        masked,
    };
    sparse_f32(s, pattern, &op, &|k, l| case(k, l, &masked), rows, progress)?;
    let Some(f) = &s.f16 else {
        return Ok(());
    };
    let masked16 = f16_rounded(&masked);
    if let (SparseMatrix::Bsr(bsr), GpuWeights::Bsr(gb)) = (&sp, &op.weights) {
        let gb16 = GpuBsrF16::sharing_indices(s.ctx, gb, bsr)?;
        bsr_f16(s, f, pattern, &gb16, &|k, l| case(k, l, &masked16), rows, progress)?;
        bsr_coop(s, f, pattern, &gb16, &|k, l| case(k, l, &masked16), rows, progress)?;
    }
    if let SparseMatrix::Nm(nm) = &sp {
        if spmm_nm_coop::supports(nm.n(), nm.m()) {
            let gn16 = spmm_nm_coop::GpuNmF16::upload(s.ctx, nm)?;
            nm_f16(s, f, pattern, &gn16, &|k, l| case(k, l, &masked16), rows, progress)?;
        }
    }
    Ok(())
}

/// A row of one sparse format at one sparsity: the kernel and the `pattern`
/// column, W masked as the kernel stores it.
type CaseOf<'c, 'a> = &'c dyn Fn(&'static str, String) -> Case<'a>;

/// The format's f32 kernel (`spmm_bsr`, `spmm_nm`, `spmm_csr`), with
/// `--bsr-tiles` its grid of BSR tiles, with `--variants` the candidate
/// tilings of the CSR and N:M kernels (rows before the format's own, as
/// they always came).
fn sparse_f32(
    s: &Shape,
    pattern: Pattern,
    op: &SparseOperator,
    case: CaseOf,
    rows: &mut Vec<BenchRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gx, gy, n) = (s.gx, s.gy, s.sb.x.cols());
    let kernel = op.weights.kernel_name();
    let main = case(kernel, pattern.to_string());
    let sparsity = main.sparsity;
    let d = op.prepare(ctx, gx, gy, &ep)?;
    let (r, _) = s.sb.measure(main, &d, Some(s.dense_ms))?;
    if let Some(t) = &s.cfg.tuner {
        // Dense first, as the model lists them: it wins a tie.
        let key = TuneKey::new(Family::ModelLayer, r.m, r.k, r.n, pattern, op.report.achieved);
        t.insert(key, &["gemm", kernel], &[s.dense_ms, r.median_ms])?;
    }
    let mut cands = Vec::new();
    if let (true, GpuWeights::Bsr(gb)) = (s.cfg.bsr_tiles, &op.weights) {
        for tile in bsr_tile_grid(gb.block_cols) {
            cands.push(Candidate::new(
                case("spmm_bsr", bsr_tile_label(pattern, tile)),
                OnFail::SkipUnbuilt,
                move || spmm_bsr::prepare_with(ctx, gb, gx, gy, &ep, tile),
            ));
        }
    }
    let tiles = cands.len();
    if s.cfg.variants {
        match &op.weights {
            GpuWeights::Csr(cw) => cands.extend(spmm_csr::Tiling::candidates(ctx, cw, n).into_iter().map(|t| {
                Candidate::new(
                    case(kernel, format!("{pattern} {}", t.label())),
                    OnFail::Report,
                    move || spmm_csr::prepare_with(ctx, cw, gx, gy, &ep, t),
                )
            })),
            GpuWeights::Nm(gn) => cands.extend(spmm_nm::Tiling::candidates(ctx, gn, n).into_iter().map(|t| {
                Candidate::new(
                    case(kernel, format!("{pattern} {}", t.label())),
                    OnFail::Report,
                    move || spmm_nm::prepare_with(ctx, gn, gx, gy, &ep, t),
                )
            })),
            _ => {}
        }
    }
    for (i, t, _) in s.sb.measure_all(cands, Some(s.dense_ms), progress)? {
        if i >= tiles {
            progress(&format!(
                "{} {} {:.0}%: {:.4} ms, {:.2}x dense",
                s.dims(),
                t.pattern,
                100.0 * sparsity,
                t.median_ms,
                t.speedup
            ));
        }
        rows.push(t);
    }
    progress(&format!(
        "{} {pattern} {:.0}%: {:.4} ms, {:.2}x dense",
        s.dims(),
        100.0 * sparsity,
        r.median_ms,
        r.speedup
    ));
    rows.push(r);
    Ok(())
}

/// Family `spmm_bsr_f16`: the f16 BSR kernel on the shader cores, with
/// `--bsr-tiles` its tile grid.
#[allow(clippy::too_many_arguments)]
fn bsr_f16(
    s: &Shape,
    f: &F16Shape,
    pattern: Pattern,
    gb16: &GpuBsrF16,
    case: CaseOf,
    rows: &mut Vec<BenchRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gx, gy) = (f.gx16, f.gy16);
    let mut cands = vec![Candidate::new(
        case("spmm_bsr_f16", pattern.to_string()),
        OnFail::Stop,
        move || spmm_bsr_f16::prepare(ctx, gb16, gx, gy, &ep),
    )];
    if s.cfg.bsr_tiles {
        for tile in bsr_tile_grid(gb16.block_cols) {
            cands.push(Candidate::new(
                case("spmm_bsr_f16", bsr_tile_label(pattern, tile)),
                OnFail::SkipUnbuilt,
                move || spmm_bsr_f16::prepare_with(ctx, gb16, gx, gy, &ep, tile),
            ));
        }
    }
    for (i, mut r, _) in f.sb16.measure_all(cands, Some(s.dense_ms), progress)? {
        s.f16_speedups(&mut r, false);
        if i == 0 {
            progress(&format!(
                "{} {pattern} {:.0}% f16: {:.4} ms, {:.2}x f32 dense, {:.2}x f16 dense",
                s.dims(),
                100.0 * r.sparsity,
                r.median_ms,
                r.speedup,
                s.f16_dense_ms / r.median_ms
            ));
        }
        rows.push(r);
    }
    Ok(())
}

/// Family `spmm_bsr_coop` (16x16 and 32x32 blocks, where the adapter has
/// cooperative matrices): the default tile, with `--coop-tiles` the others.
#[allow(clippy::too_many_arguments)]
fn bsr_coop(
    s: &Shape,
    f: &F16Shape,
    pattern: Pattern,
    gb16: &GpuBsrF16,
    case: CaseOf,
    rows: &mut Vec<BenchRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gx, gy, n) = (f.gx16, f.gy16, s.sb.x.cols());
    if !(s.coop && spmm_bsr_coop::uses_coop(ctx, gb16, n)) {
        return Ok(());
    }
    let block = gb16.block_rows;
    // The default tile first (labelled with the pattern alone).
    let first = spmm_bsr_coop::default_tile(gb16);
    let mut tiles = vec![first];
    if s.cfg.coop_tiles {
        tiles.extend(
            spmm_bsr_coop::BsrCoopTile::candidates(block)
                .into_iter()
                .filter(|t| *t != first),
        );
    }
    let cands = tiles
        .iter()
        .enumerate()
        .map(|(i, &tile)| {
            let (label, on_fail) = match i {
                0 => (pattern.to_string(), OnFail::Stop),
                _ => (format!("{pattern} {}", tile.label(block)), OnFail::Report),
            };
            Candidate::new(case("spmm_bsr_coop", label), on_fail, move || {
                spmm_bsr_coop::prepare_with(ctx, gb16, gx, gy, &ep, tile)
            })
        })
        .collect();
    for (i, mut r, _) in f.sb16.measure_all(cands, Some(s.dense_ms), progress)? {
        s.f16_speedups(&mut r, true);
        progress(&format!(
            "{} {pattern} {:.0}% coop {}: {:.4} ms, {:.2}x coop dense, {:.2}x f16 dense",
            s.dims(),
            100.0 * r.sparsity,
            tiles[i].label(block),
            r.median_ms,
            s.coop_dense_ms / r.median_ms,
            s.f16_dense_ms / r.median_ms
        ));
        rows.push(r);
    }
    Ok(())
}

/// Families `spmm_nm_f16` and `spmm_nm_coop` (2:4 and 1:2): the shader-core
/// kernel, then tensor cores where the adapter has them (the default tile,
/// with `--coop-tiles` every candidate, each followed by the dense
/// cooperative GEMM on the same tile where the dense candidates lack it:
/// tile or compression, which wins?).
#[allow(clippy::too_many_arguments)]
fn nm_f16(
    s: &Shape,
    f: &F16Shape,
    pattern: Pattern,
    gn16: &spmm_nm_coop::GpuNmF16,
    case: CaseOf,
    rows: &mut Vec<BenchRow>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (ctx, ep) = (s.ctx, Epilogue::default());
    let (gw, gx, gy) = (f.gw16, f.gx16, f.gy16);
    let mut tiles = vec![None];
    if s.coop {
        tiles.push(Some(spmm_nm_coop::default_tile()));
        if s.cfg.coop_tiles {
            tiles.extend(spmm_nm_coop::CANDIDATES.into_iter().skip(1).map(Some));
        }
    }
    let mut cands = Vec::new();
    let mut control = Vec::new();
    for (i, &tile) in tiles.iter().enumerate() {
        let (kernel, label) = match tile {
            Some(t) if i > 1 => ("spmm_nm_coop", format!("{pattern} {}", t.label())),
            Some(_) => ("spmm_nm_coop", pattern.to_string()),
            None => ("spmm_nm_f16", pattern.to_string()),
        };
        // The fallback and the default tile must work (loud failure).
        let on_fail = if i > 1 { OnFail::Report } else { OnFail::Stop };
        cands.push(Candidate::new(case(kernel, label), on_fail, move || match tile {
            Some(t) => spmm_nm_coop::prepare_with(ctx, gn16, gx, gy, &ep, t),
            None => spmm_nm_coop::prepare_fallback(ctx, gn16, gx, gy, &ep),
        }));
        control.push(false);
        if let Some(t) = tile.filter(|t| s.cfg.coop_tiles && !gemm_coop::CoopTile::CANDIDATES.contains(t)) {
            cands.push(Candidate::new(
                dense_case("gemm_coop", format!("tile:{}", t.label()), f.w16),
                OnFail::Report,
                move || gemm_coop::prepare_with(ctx, gw, gx, gy, &ep, t),
            ));
            control.push(true);
        }
    }
    for (i, mut r, _) in f.sb16.measure_all(cands, Some(s.dense_ms), progress)? {
        if control[i] {
            s.f16_speedups(&mut r, true);
            progress(&format!(
                "{} gemm_coop {}: {:.4} ms",
                s.dims(),
                r.pattern.trim_start_matches("tile:"),
                r.median_ms
            ));
        } else {
            s.f16_speedups(&mut r, s.coop);
            progress(&format!(
                "{} {} {}: {:.4} ms, {:.2}x coop dense, {:.2}x f16 dense",
                s.dims(),
                r.kernel,
                r.pattern,
                r.median_ms,
                s.coop_dense_ms / r.median_ms,
                s.f16_dense_ms / r.median_ms
            ));
        }
        rows.push(r);
    }
    Ok(())
}

fn check_err(r: &BenchRow, tol: f64) -> Result<()> {
    if r.sample_rel_err.is_nan() || r.sample_rel_err > tol {
        return Err(Error::Gpu(format!(
            "{} {} {}x{}x{} at {}: sampled outputs differ from the float64 reference by {:e} (> {tol:e})",
            r.kernel, r.pattern, r.m, r.k, r.n, r.sparsity, r.sample_rel_err
        )));
    }
    Ok(())
}

impl BenchReport {
    /// The table printed by `wgsparse bench`.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let i = &self.adapter.info;
        let _ = writeln!(
            s,
            "adapter: {} ({:?}, {:?}, driver {} {}); timing: {}, median of {} runs",
            i.name, i.backend, i.device_type, i.driver, i.driver_info, self.timing, self.runs
        );
        let f16 = self.rows.iter().any(|r| r.speedup_vs_f16_dense.is_some());
        let coop = self.rows.iter().any(|r| r.speedup_vs_coop_dense.is_some());
        let _ = write!(
            s,
            "{:>16} {:<12} {:<12} {:>6} {:>10} {:>12} {:>12} {:>8}",
            "M x K x N", "kernel", "pattern", "sparse", "ms", "GFLOP/s eq", "GFLOP/s use", "speedup"
        );
        if f16 {
            let _ = write!(s, " {:>8}", "vs f16");
        }
        if coop {
            let _ = write!(s, " {:>8}", "vs coop");
        }
        let _ = writeln!(s, " {:>9}", "rel.err");
        for r in &self.rows {
            let _ = write!(
                s,
                "{:>16} {:<12} {:<12} {:>5.0}% {:>10.4} {:>12.1} {:>12.1} {:>7.2}x",
                format!("{}x{}x{}", r.m, r.k, r.n),
                r.kernel,
                r.pattern,
                100.0 * r.sparsity,
                r.median_ms,
                r.gflops_dense_equiv,
                r.gflops_useful,
                r.speedup,
            );
            if f16 {
                let _ = match r.speedup_vs_f16_dense {
                    Some(v) => write!(s, " {v:>7.2}x"),
                    None => write!(s, " {:>8}", "-"),
                };
            }
            if coop {
                let _ = match r.speedup_vs_coop_dense {
                    Some(v) => write!(s, " {v:>7.2}x"),
                    None => write!(s, " {:>8}", "-"),
                };
            }
            let _ = writeln!(s, " {:>9.1e}", r.sample_rel_err);
        }
        if !self.prune_rows.is_empty() {
            let _ = writeln!(
                s,
                "\nGPU pruning (prune + compress, result checked equal to the CPU reference):"
            );
            for p in &self.prune_rows {
                let _ = writeln!(
                    s,
                    "{:>16} {:<14} {:>5.0}% {:>10.4} ms",
                    format!("{}x{}", p.rows, p.cols),
                    p.pattern,
                    100.0 * p.sparsity,
                    p.median_ms
                );
            }
        }
        s
    }

    /// Every number, with the adapter, as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let i = &self.adapter.info;
        serde_json::json!({
            "adapter": {
                "name": i.name, "backend": format!("{:?}", i.backend),
                "device_type": format!("{:?}", i.device_type),
                "driver": i.driver, "driver_info": i.driver_info,
            },
            "timing": self.timing.to_string(),
            "runs": self.runs,
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "m": r.m, "k": r.k, "n": r.n, "kernel": r.kernel, "pattern": r.pattern,
                "sparsity": r.sparsity, "median_ms": r.median_ms, "min_ms": r.min_ms,
                "gflops_dense_equiv": r.gflops_dense_equiv, "gflops_useful": r.gflops_useful,
                "speedup_vs_dense": r.speedup, "speedup_vs_f16_dense": r.speedup_vs_f16_dense,
                "speedup_vs_coop_dense": r.speedup_vs_coop_dense,
                "sample_rel_err": r.sample_rel_err,
            })).collect::<Vec<_>>(),
            "prune": self.prune_rows.iter().map(|p| serde_json::json!({
                "rows": p.rows, "cols": p.cols, "pattern": p.pattern, "sparsity": p.sparsity, "median_ms": p.median_ms,
            })).collect::<Vec<_>>(),
        })
    }

    /// Draws speedup over dense against sparsity, one line per (shape, pattern).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn plot_svg(&self, path: &std::path::Path) -> Result<()> {
        use plotters::prelude::*;
        let gerr = |e: &dyn std::fmt::Display| Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| gerr(&e))?;
        // f32 kernels against the f32 dense, f16 ones against the f16 dense.
        let speedup = |r: &BenchRow| r.speedup_vs_f16_dense.unwrap_or(r.speedup);
        let max_speed = self.rows.iter().map(speedup).fold(1.0f64, f64::max) * 1.1;
        let title = format!(
            "speedup over dense GEMM (same precision), same run — {}",
            self.adapter.info.name
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0f64..100.0, 0.0f64..max_speed)
            .map_err(|e| gerr(&e))?;
        chart
            .configure_mesh()
            .x_desc("sparsity (%)")
            .y_desc("speedup (x)")
            .draw()
            .map_err(|e| gerr(&e))?;
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for r in self
            .rows
            .iter()
            .filter(|r| r.kernel != "gemm" && r.kernel != "gemm_f16")
        {
            let tag = if r.speedup_vs_f16_dense.is_some() {
                " f16 (vs f16 dense)"
            } else {
                ""
            };
            let name = format!("{}x{}x{} {}{tag}", r.m, r.k, r.n, r.pattern);
            let pt = (100.0 * r.sparsity, speedup(r));
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, pts)) => pts.push(pt),
                None => series.push((name, vec![pt])),
            }
        }
        for (i, (name, pts)) in series.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| gerr(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| gerr(&e))?;
        }
        chart
            .draw_series(LineSeries::new(vec![(0.0, 1.0), (100.0, 1.0)], BLACK.stroke_width(1)))
            .map_err(|e| gerr(&e))?
            .label("dense = 1x");
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| gerr(&e))?;
        root.present().map_err(|e| gerr(&e))?;
        Ok(())
    }
}
