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

use crate::error::{Error, Result};
use crate::gpu::gemm::coop as gemm_coop;
use crate::gpu::gemm::f16 as gemm_f16;
use crate::gpu::gemm::GemmTile;
use crate::gpu::spmm_bsr::coop as spmm_bsr_coop;
use crate::gpu::spmm_bsr::f16 as spmm_bsr_f16;
use crate::gpu::spmm_bsr::BsrTile;
use crate::gpu::spmm_nm::coop as spmm_nm_coop;
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

/// Runs the benchmark. `progress` gets one line per measurement.
pub fn run(ctx: &Context, cfg: &BenchConfig, mut progress: impl FnMut(&str)) -> Result<BenchReport> {
    if cfg.f16 {
        ctx.require_f16("the f16 benchmark (--f16)")?;
    }
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
        let ep = Epilogue::default();
        let sb = ShapeBench {
            ctx,
            cfg,
            x: &x,
            gy: Output::F32(&gy),
            seed: seed + 2,
            tol: SAMPLE_REL_TOL,
        };

        let d = gemm::prepare(ctx, &gw, &gx, &gy, &ep)?;
        let case = Case {
            kernel: "gemm",
            pattern: "dense".into(),
            sparsity: 0.0,
            nnz: m * k,
            masked: &w,
        };
        let (r, source) = sb.measure(case, &d, None)?;
        timing = source;
        let dense_ms = r.median_ms;
        progress(&format!(
            "{m}x{k}x{n} dense: {:.4} ms, {:.0} GFLOP/s",
            r.median_ms, r.gflops_dense_equiv
        ));
        rows.push(r);

        if cfg.gemm_tiles {
            for tile in GemmTile::ALL.into_iter().chain(GemmTile::EXPERIMENTAL) {
                if tile.validate(ctx).is_err() {
                    continue;
                }
                let d = gemm::prepare_with(ctx, &gw, &gx, &gy, &ep, tile)?;
                let GemmTile { bm, bn, bk, tm, tn } = tile;
                let case = Case {
                    kernel: "gemm",
                    pattern: format!("tile:{bm}x{bn}x{bk}/{tm}x{tn}"),
                    sparsity: 0.0,
                    nnz: m * k,
                    masked: &w,
                };
                let (r, _) = sb.measure(case, &d, Some(dense_ms))?;
                progress(&format!("{m}x{k}x{n} {}: {:.4} ms", r.pattern, r.median_ms));
                rows.push(r);
            }
        }

        if cfg.prune && m == k && m == n {
            for &pattern in &cfg.patterns {
                let s = match pattern {
                    Pattern::NM { n, m } => 1.0 - n as f64 / m as f64, // implied; prune ignores it
                    Pattern::Dense => 0.0,
                    _ => 0.9,
                };
                let ms = time_prune(ctx, cfg, &w, &gw, pattern, s)?;
                progress(&format!("prune {m}x{k} {pattern} at {s}: {ms:.4} ms"));
                prune_rows.push(PruneRow {
                    rows: m,
                    cols: k,
                    pattern: pattern.to_string(),
                    sparsity: s,
                    median_ms: ms,
                });
            }
        }

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
        let sb16 = f16.as_ref().map(|(_, x16, _, _, gy16)| ShapeBench {
            ctx,
            cfg,
            x: x16,
            gy: Output::F16(gy16),
            seed: seed + 2,
            tol: F16_SAMPLE_REL_TOL,
        });
        let mut f16_dense_ms = f64::NAN;
        if let (Some((w16, _, gw16, gx16, gy16)), Some(sb16)) = (&f16, &sb16) {
            let d = gemm_f16::prepare(ctx, gw16, gx16, gy16, &ep)?;
            let case = Case {
                kernel: "gemm_f16",
                pattern: "dense".into(),
                sparsity: 0.0,
                nnz: m * k,
                masked: w16,
            };
            let (mut r, _) = sb16.measure(case, &d, Some(dense_ms))?;
            f16_dense_ms = r.median_ms;
            r.speedup_vs_f16_dense = Some(1.0);
            progress(&format!(
                "{m}x{k}x{n} dense f16: {:.4} ms, {:.0} GFLOP/s, {:.2}x f32 dense",
                r.median_ms, r.gflops_dense_equiv, r.speedup
            ));
            rows.push(r);
            if cfg.gemm_tiles {
                for tile in GemmTile::ALL.into_iter().chain(GemmTile::EXPERIMENTAL) {
                    if tile.validate(ctx).is_err() {
                        continue;
                    }
                    let d = gemm_f16::prepare_with(ctx, gw16, gx16, gy16, &ep, tile)?;
                    let GemmTile { bm, bn, bk, tm, tn } = tile;
                    let case = Case {
                        kernel: "gemm_f16",
                        pattern: format!("tile:{bm}x{bn}x{bk}/{tm}x{tn}"),
                        sparsity: 0.0,
                        nnz: m * k,
                        masked: w16,
                    };
                    let (mut r, _) = sb16.measure(case, &d, Some(dense_ms))?;
                    r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
                    progress(&format!("{m}x{k}x{n} f16 {}: {:.4} ms", r.pattern, r.median_ms));
                    rows.push(r);
                }
            }
        }
        // The cooperative dense GEMM (tensor cores), where the adapter has them.
        let coop = cfg.f16 && gemm_coop::coop_support(ctx).is_ok();
        let mut coop_dense_ms = f64::NAN;
        if let (true, Some((w16, _, gw16, gx16, gy16)), Some(sb16)) = (coop, &f16, &sb16) {
            let mut tiles = vec![gemm_coop::CoopTile::DEFAULT];
            if cfg.coop_tiles {
                tiles.extend(gemm_coop::CoopTile::CANDIDATES.into_iter().skip(1));
            }
            for (i, tile) in tiles.into_iter().enumerate() {
                let case = Case {
                    kernel: "gemm_coop",
                    pattern: if i == 0 {
                        "dense".into()
                    } else {
                        format!("tile:{}", tile.label())
                    },
                    sparsity: 0.0,
                    nnz: m * k,
                    masked: w16,
                };
                // The default tile must work (loud failure); candidates are reported and skipped.
                let r = gemm_coop::prepare_with(ctx, gw16, gx16, gy16, &ep, tile)
                    .and_then(|d| sb16.measure(case, &d, Some(dense_ms)));
                let mut r = match r {
                    Ok((r, _)) => r,
                    Err(e) if i > 0 => {
                        progress(&format!("{m}x{k}x{n} gemm_coop {}: FAILED {e}", tile.label()));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if i == 0 {
                    coop_dense_ms = r.median_ms;
                }
                r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
                r.speedup_vs_coop_dense = Some(coop_dense_ms / r.median_ms);
                progress(&format!(
                    "{m}x{k}x{n} gemm_coop {}: {:.4} ms, {:.1} TFLOP/s, {:.2}x f16 dense",
                    tile.label(),
                    r.median_ms,
                    r.gflops_dense_equiv / 1e3,
                    f16_dense_ms / r.median_ms
                ));
                rows.push(r);
            }
        }

        for &pattern in &cfg.patterns {
            // N:M fixes its own sparsity: one measurement.
            let sparsities: Vec<f64> = match pattern {
                Pattern::NM { n, m } => vec![1.0 - n as f64 / m as f64],
                Pattern::Dense => vec![],
                _ => cfg.sparsities.clone(),
            };
            for s in sparsities {
                let (sp, report) = prune::prune(&w, pattern, s)?;
                let masked = sp.to_dense();
                let op = SparseOperator::from_sparse(ctx, &sp, report)?;
                let d = op.prepare(ctx, &gx, &gy, &ep)?;
                let nnz = op.report.kept;
                let case = Case {
                    kernel: op.weights.kernel_name(),
                    pattern: pattern.to_string(),
                    sparsity: s,
                    nnz,
                    masked: &masked,
                };
                let (r, _) = sb.measure(case, &d, Some(dense_ms))?;
                if let (true, GpuWeights::Bsr(gb)) = (cfg.bsr_tiles, &op.weights) {
                    for wg_x in [8, 16, 32] {
                        for tn4 in [2, 4] {
                            for kc in [4, 8, 16] {
                                let tile = BsrTile {
                                    wg_x,
                                    tn4,
                                    kc: kc.min(gb.block_cols as u32),
                                };
                                let Ok(d) = spmm_bsr::prepare_with(ctx, gb, &gx, &gy, &ep, tile) else {
                                    continue;
                                };
                                let case = Case {
                                    kernel: "spmm_bsr",
                                    pattern: format!("{pattern} wg{wg_x} tn{tn4} kc{}", tile.kc),
                                    sparsity: s,
                                    nnz,
                                    masked: &masked,
                                };
                                let (t, _) = sb.measure(case, &d, Some(dense_ms))?;
                                rows.push(t);
                            }
                        }
                    }
                }
                if cfg.variants {
                    let tilings: Vec<(String, Result<Dispatch>)> = match &op.weights {
                        GpuWeights::Csr(cw) => spmm_csr::Tiling::candidates(ctx, cw, n)
                            .into_iter()
                            .map(|t| (t.label(), spmm_csr::prepare_with(ctx, cw, &gx, &gy, &ep, t)))
                            .collect(),
                        GpuWeights::Nm(gn) => spmm_nm::Tiling::candidates(ctx, gn, n)
                            .into_iter()
                            .map(|t| (t.label(), spmm_nm::prepare_with(ctx, gn, &gx, &gy, &ep, t)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    // A candidate that fails (limits, wrong samples) is reported
                    // and skipped: tuning goes on with the others.
                    for (label, d) in tilings {
                        let case = Case {
                            kernel: op.weights.kernel_name(),
                            pattern: format!("{pattern} {label}"),
                            sparsity: s,
                            nnz,
                            masked: &masked,
                        };
                        let t = match d.and_then(|d| sb.measure(case, &d, Some(dense_ms))) {
                            Ok((t, _)) => t,
                            Err(e) => {
                                progress(&format!("{m}x{k}x{n} {pattern} {label}: FAILED {e}"));
                                continue;
                            }
                        };
                        progress(&format!(
                            "{m}x{k}x{n} {} {:.0}%: {:.4} ms, {:.2}x dense",
                            t.pattern,
                            100.0 * s,
                            t.median_ms,
                            t.speedup
                        ));
                        rows.push(t);
                    }
                }
                progress(&format!(
                    "{m}x{k}x{n} {pattern} {:.0}%: {:.4} ms, {:.2}x dense",
                    100.0 * s,
                    r.median_ms,
                    r.speedup
                ));
                rows.push(r);

                if let (Some(sb16), SparseMatrix::Bsr(bsr), GpuWeights::Bsr(gb)) = (&sb16, &sp, &op.weights) {
                    let (_, _, _, gx16, gy16) = f16.as_ref().expect("f16 operands with sb16");
                    let gb16 = GpuBsrF16::sharing_indices(ctx, gb, bsr)?;
                    let masked16 = f16_rounded(&masked);
                    let mut tiles = vec![None];
                    if cfg.bsr_tiles {
                        for wg_x in [8, 16, 32] {
                            for tn4 in [2, 4] {
                                for kc in [4, 8, 16] {
                                    tiles.push(Some(BsrTile {
                                        wg_x,
                                        tn4,
                                        kc: kc.min(gb.block_cols as u32),
                                    }));
                                }
                            }
                        }
                    }
                    for tile in tiles {
                        let (d, label) = match tile {
                            None => (spmm_bsr_f16::prepare(ctx, &gb16, gx16, gy16, &ep)?, pattern.to_string()),
                            Some(t) => match spmm_bsr_f16::prepare_with(ctx, &gb16, gx16, gy16, &ep, t) {
                                Ok(d) => (d, format!("{pattern} wg{} tn{} kc{}", t.wg_x, t.tn4, t.kc)),
                                Err(_) => continue,
                            },
                        };
                        let case = Case {
                            kernel: "spmm_bsr_f16",
                            pattern: label,
                            sparsity: s,
                            nnz,
                            masked: &masked16,
                        };
                        let (mut r, _) = sb16.measure(case, &d, Some(dense_ms))?;
                        r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
                        if tile.is_none() {
                            progress(&format!(
                                "{m}x{k}x{n} {pattern} {:.0}% f16: {:.4} ms, {:.2}x f32 dense, {:.2}x f16 dense",
                                100.0 * s,
                                r.median_ms,
                                r.speedup,
                                f16_dense_ms / r.median_ms
                            ));
                        }
                        rows.push(r);
                    }
                    // Tensor cores for 16x16 and 32x32 blocks.
                    if coop && spmm_bsr_coop::uses_coop(ctx, &gb16, n) {
                        // The default tile first (labelled with the pattern alone).
                        let first = spmm_bsr_coop::default_tile(&gb16);
                        let mut tiles = vec![first];
                        if cfg.coop_tiles {
                            tiles.extend(
                                spmm_bsr_coop::BsrCoopTile::candidates(gb.block_rows)
                                    .into_iter()
                                    .filter(|t| *t != first),
                            );
                        }
                        for (i, tile) in tiles.into_iter().enumerate() {
                            let case = Case {
                                kernel: "spmm_bsr_coop",
                                pattern: if i == 0 {
                                    pattern.to_string()
                                } else {
                                    format!("{pattern} {}", tile.label(gb.block_rows))
                                },
                                sparsity: s,
                                nnz,
                                masked: &masked16,
                            };
                            let r = spmm_bsr_coop::prepare_with(ctx, &gb16, gx16, gy16, &ep, tile)
                                .and_then(|d| sb16.measure(case, &d, Some(dense_ms)));
                            let mut r = match r {
                                Ok((r, _)) => r,
                                Err(e) if i > 0 => {
                                    progress(&format!(
                                        "{m}x{k}x{n} spmm_bsr_coop {pattern} {}: FAILED {e}",
                                        tile.label(gb.block_rows)
                                    ));
                                    continue;
                                }
                                Err(e) => return Err(e),
                            };
                            r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
                            r.speedup_vs_coop_dense = Some(coop_dense_ms / r.median_ms);
                            progress(&format!(
                                "{m}x{k}x{n} {pattern} {:.0}% coop {}: {:.4} ms, {:.2}x coop dense, {:.2}x f16 dense",
                                100.0 * s,
                                tile.label(gb.block_rows),
                                r.median_ms,
                                coop_dense_ms / r.median_ms,
                                f16_dense_ms / r.median_ms
                            ));
                            rows.push(r);
                        }
                    }
                }

                // f16 N:M (2:4, 1:2): the shader-core kernel, then tensor cores where
                // the adapter has them (the default tile, with coop_tiles every candidate).
                if let (Some(sb16), SparseMatrix::Nm(nm)) = (&sb16, &sp) {
                    if spmm_nm_coop::supports(nm.n(), nm.m()) {
                        let (_, _, _, gx16, gy16) = f16.as_ref().expect("f16 operands with sb16");
                        let gn16 = spmm_nm_coop::GpuNmF16::upload(ctx, nm)?;
                        let masked16 = f16_rounded(&masked);
                        let mut tiles = vec![None];
                        if coop {
                            tiles.push(Some(spmm_nm_coop::default_tile()));
                            if cfg.coop_tiles {
                                let rest = spmm_nm_coop::CANDIDATES.into_iter().skip(1);
                                tiles.extend(rest.map(Some));
                            }
                        }
                        for (i, tile) in tiles.into_iter().enumerate() {
                            let (kernel, label) = match tile {
                                Some(t) if i > 1 => ("spmm_nm_coop", format!("{pattern} {}", t.label())),
                                Some(_) => ("spmm_nm_coop", pattern.to_string()),
                                None => ("spmm_nm_f16", pattern.to_string()),
                            };
                            let case = Case {
                                kernel,
                                pattern: label.clone(),
                                sparsity: s,
                                nnz,
                                masked: &masked16,
                            };
                            let d = match tile {
                                Some(t) => spmm_nm_coop::prepare_with(ctx, &gn16, gx16, gy16, &ep, t),
                                None => spmm_nm_coop::prepare_fallback(ctx, &gn16, gx16, gy16, &ep),
                            };
                            // The fallback and the default tile must work (loud failure).
                            let mut r = match d.and_then(|d| sb16.measure(case, &d, Some(dense_ms))) {
                                Ok((r, _)) => r,
                                Err(e) if i > 1 => {
                                    progress(&format!("{m}x{k}x{n} {kernel} {label}: FAILED {e}"));
                                    continue;
                                }
                                Err(e) => return Err(e),
                            };
                            r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
                            if coop {
                                r.speedup_vs_coop_dense = Some(coop_dense_ms / r.median_ms);
                            }
                            progress(&format!(
                                "{m}x{k}x{n} {kernel} {label}: {:.4} ms, {:.2}x coop dense, {:.2}x f16 dense",
                                r.median_ms,
                                coop_dense_ms / r.median_ms,
                                f16_dense_ms / r.median_ms
                            ));
                            rows.push(r);
                            // Control: the dense kernel on the same tile, where the dense
                            // candidates above lack it (tile or compression: which wins?).
                            let control =
                                tile.filter(|t| cfg.coop_tiles && !gemm_coop::CoopTile::CANDIDATES.contains(t));
                            if let (Some(t), Some((w16, _, gw16, _, _))) = (control, &f16) {
                                let case = Case {
                                    kernel: "gemm_coop",
                                    pattern: format!("tile:{}", t.label()),
                                    sparsity: 0.0,
                                    nnz: m * k,
                                    masked: w16,
                                };
                                let r = gemm_coop::prepare_with(ctx, gw16, gx16, gy16, &ep, t)
                                    .and_then(|d| sb16.measure(case, &d, Some(dense_ms)));
                                match r {
                                    Ok((mut r, _)) => {
                                        r.speedup_vs_f16_dense = Some(f16_dense_ms / r.median_ms);
                                        r.speedup_vs_coop_dense = Some(coop_dense_ms / r.median_ms);
                                        progress(&format!(
                                            "{m}x{k}x{n} gemm_coop {}: {:.4} ms",
                                            t.label(),
                                            r.median_ms
                                        ));
                                        rows.push(r);
                                    }
                                    Err(e) => progress(&format!("{m}x{k}x{n} gemm_coop {}: FAILED {e}", t.label())),
                                }
                            }
                        }
                    }
                }
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
