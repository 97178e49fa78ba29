//! `wgsparse bench --backend cuda`: our 2:4 `mma.sp` kernel, cuBLAS dense and
//! cuSPARSELt on the same matrices in one run, each result checked against a
//! float64 reference of the masked product on sampled outputs.

use super::cusparselt::CuSparseLt;
use super::pack::{self, rng, Compressed24, Half};
use super::runtime::{CudaRuntime, DeviceHalf};
use crate::error::{Error, Result};

/// Default shapes (M x K x N): large squares, the EfficientNet-Lite0 pointwise
/// shapes at batch 1 and the classifier, Lite0's head at batch 32, and an odd
/// shape off every tile size.
pub fn default_shapes() -> Vec<(usize, usize, usize)> {
    let mut s = vec![(4096, 4096, 4096), (8192, 8192, 8192), (1280, 320, 1568)];
    s.extend(crate::bench::LITE0_SHAPES);
    // Off every tile size in all three dimensions (edges, zero fill).
    s.push((1000, 1100, 300));
    s
}

/// Options of the CUDA benchmark.
#[derive(Clone, Debug)]
pub struct CudaBenchConfig {
    pub shapes: Vec<(usize, usize, usize)>,
    pub dtype: Half,
    /// Timed graph replays per kernel (the median is reported).
    pub runs: usize,
    /// Time every tile of our kernel, not only the one the runtime picks.
    pub all_tiles: bool,
    /// Path of libcusparseLt (None: the library search path).
    pub cusparselt: Option<String>,
    /// Largest normwise relative error accepted against float64.
    pub tolerance: f64,
}

/// One timed kernel on one shape.
#[derive(Clone, Debug)]
pub struct Timing {
    pub kernel: String,
    pub median_ms: f64,
    /// Dense-equivalent TFLOP/s: 2 M N K / time.
    pub tflops: f64,
    pub rel_err: f64,
    pub captured: bool,
}

/// All kernels on one shape.
#[derive(Clone, Debug)]
pub struct ShapeResult {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ours: Vec<Timing>,
    /// The tile the runtime picks without forcing.
    pub chosen: String,
    pub cublas: Timing,
    pub cusparselt: Option<Timing>,
    pub compress_ms: f64,
    pub compress_matches_cpu: bool,
}

impl ShapeResult {
    pub fn best_ours(&self) -> &Timing {
        self.ours
            .iter()
            .min_by(|a, b| a.median_ms.total_cmp(&b.median_ms))
            .expect("at least one tile is timed")
    }
    pub fn chosen_ours(&self) -> &Timing {
        self.ours
            .iter()
            .find(|t| t.kernel.ends_with(&self.chosen))
            .unwrap_or_else(|| self.best_ours())
    }
}

/// The whole report.
#[derive(Clone, Debug)]
pub struct CudaBenchReport {
    pub device: String,
    pub compute_capability: (i32, i32),
    pub dtype: Half,
    pub cusparselt_version: Option<String>,
    pub cusparselt_note: Option<String>,
    pub probe: super::runtime::Probe,
    /// Instruction ceilings: mma.sp (dense-equivalent) and mma.sync, TFLOP/s.
    pub peak_sparse: f64,
    pub peak_dense: f64,
    /// Hopper: wgmma.sp m64n256k32 with B in shared memory (0 elsewhere).
    pub peak_wgmma: f64,
    pub shapes: Vec<ShapeResult>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Sampled outputs and their float64 reference.
struct Check {
    samples: Vec<(usize, usize)>,
    want: Vec<f64>,
}

impl Check {
    fn new(c: &Compressed24, x: &[u16], n: usize, seed: u64) -> Self {
        let (m, kh) = (c.rows, c.kp / 2);
        let total = m * n;
        let mut r = rng(seed);
        let mut samples: Vec<(usize, usize)> = if total <= 8192 {
            (0..m).flat_map(|i| (0..n).map(move |j| (i, j))).collect()
        } else {
            (0..4096)
                .map(|_| {
                    let i = (((r() + 1.0) * 0.5 * m as f32) as usize).min(m - 1);
                    let j = (((r() + 1.0) * 0.5 * n as f32) as usize).min(n - 1);
                    (i, j)
                })
                .collect()
        };
        // Always include the corners (the edges of the last tiles).
        samples.extend([(0, 0), (m - 1, n - 1), (0, n - 1), (m - 1, 0)]);
        let want = samples
            .iter()
            .map(|&(i, j)| {
                (0..kh)
                    .map(|cc| {
                        let k = c.column_of(i, cc);
                        if k >= c.cols {
                            return 0.0;
                        }
                        c.dtype.to_f32(c.values[i * kh + cc]) as f64 * c.dtype.to_f32(x[k * n + j]) as f64
                    })
                    .sum()
            })
            .collect();
        Check { samples, want }
    }

    /// Normwise relative error of `y` (`m x n` host copy) on the samples; NaN
    /// (an output the kernel left poisoned) gives infinity.
    fn rel_err(&self, y: &[u16], n: usize, dtype: Half) -> f64 {
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (&(i, j), &w) in self.samples.iter().zip(&self.want) {
            let g = dtype.to_f32(y[i * n + j]) as f64;
            if !g.is_finite() {
                return f64::INFINITY;
            }
            num += (g - w) * (g - w);
            den += w * w;
        }
        (num / den.max(1e-300)).sqrt()
    }
}

/// A quiet NaN of the element type: outputs a kernel leaves unwritten stay NaN.
fn poison(dtype: Half) -> u16 {
    match dtype {
        Half::F16 => 0x7e00,
        Half::Bf16 => 0x7fc0,
    }
}

/// Runs the benchmark; `progress` gets a line per step.
pub fn run(cfg: &CudaBenchConfig, mut progress: impl FnMut(&str)) -> Result<CudaBenchReport> {
    if cfg.runs < 5 {
        return Err(Error::Invalid("--runs must be at least 5".into()));
    }
    let rt = CudaRuntime::new(0)?;
    progress(&format!(
        "{} (sm_{}{}, {} SMs)",
        rt.name(),
        rt.compute_capability().0,
        rt.compute_capability().1,
        rt.multiprocessors()
    ));
    let probe = rt.probe(7)?;
    progress(&format!(
        "mma.sp metadata probe: split-columns layout error {:.2e}, row-per-thread {:.2e}",
        probe.split_columns, probe.row_per_thread
    ));
    if probe.hardware_layout() != Some(pack::META_LAYOUT) {
        return Err(Error::Cuda(format!(
            "the GPU's mma.sp metadata layout is not the one the kernels use ({:?}): probe {probe:?}",
            pack::META_LAYOUT
        )));
    }
    if rt.compute_capability() == (9, 0) {
        // The Hopper tiles rely on this layout: a mismatch stops the run.
        let e = rt.probe_wgmma(5)?;
        progress(&format!(
            "wgmma.sp 128B-swizzle probe: descriptor variant 0 error {:.2e}, variant 1 {:.2e}",
            e[0], e[1]
        ));
        if e[0] >= 1e-3 {
            return Err(Error::Cuda(format!(
                "the GPU's wgmma.sp descriptor reading is not the one the Hopper tiles use: probe {e:?}"
            )));
        }
    }
    if std::env::var_os("WGSPARSE_PTXAS_LOG").is_some() {
        progress(&format!("ptxas:\n{}", rt.ptxas_log()?));
    }
    let (peak_sparse, peak_dense) = rt.peak_rates()?;
    progress(&format!(
        "instruction ceilings (register-only loops): mma.sp m16n8k32 {peak_sparse:.0} dense-eq. TFLOP/s, mma.sync m16n8k16 {peak_dense:.0} TFLOP/s, wgmma.sp m64n256k32 (B in shared memory) {:.0} dense-eq. TFLOP/s",
        rt.wgmma_peak()
    ));
    let (lt, lt_note) = match CuSparseLt::load(cfg.cusparselt.as_deref()) {
        Ok(lt) => (Some(lt), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(note) = &lt_note {
        progress(&format!("cuSPARSELt skipped: {note}"));
    }
    let dtype = cfg.dtype;
    let mut shapes = Vec::new();
    for (si, &(m, k, n)) in cfg.shapes.iter().enumerate() {
        progress(&format!("{m}x{k}x{n} {}", dtype.name()));
        let mut r = rng(100 + si as u64);
        let a_host: Vec<u16> = (0..m * k).map(|_| dtype.from_f32(r())).collect();
        let x_host: Vec<u16> = (0..k * n).map(|_| dtype.from_f32(r())).collect();
        let c_cpu = Compressed24::compress(&a_host, m, k, k, dtype, pack::META_LAYOUT)?;
        let masked: Vec<u16> = c_cpu.decompress().iter().map(|&v| dtype.from_f32(v)).collect();
        let check = Check::new(&c_cpu, &x_host, n, 200 + si as u64);

        let a_dev = rt.upload(&a_host, m, k, k, dtype)?;
        let mut d24 = rt.compress(&a_dev)?;
        let compress_matches_cpu = rt.download24(&d24)? == c_cpu;
        if !compress_matches_cpu {
            return Err(Error::Cuda(format!(
                "GPU 2:4 compression of {m}x{k} differs from the CPU reference"
            )));
        }
        let mut bad = rt
            .stream()
            .alloc_zeros::<i32>(1)
            .map_err(|e| Error::Cuda(format!("{e:?}")))?;
        let flops = 2.0 * m as f64 * n as f64 * k as f64;
        // About 20 ms of work per captured graph, at least 3 and at most 2000 calls.
        let iters = |est_tflops: f64| ((0.02 / (flops / (est_tflops * 1e12))).ceil() as usize).clamp(3, 2000);
        let (mut ct, _) = rt.time(iters(50.0).min(200), cfg.runs, || {
            rt.compress_into(&a_dev, &mut d24, &mut bad)
        })?;
        let compress_ms = median(&mut ct);

        let masked_dev = rt.upload(&masked, m, k, k, dtype)?;
        let x_dev = rt.upload(&x_host, k, n, n, dtype)?;
        let mut y = rt.zeros(m, n, dtype)?;

        if si == 0 {
            for t in rt.tiles() {
                progress(&format!("  kernel {}: {}", t.name, rt.kernel_info(t, dtype)?));
            }
        }
        let mut checked =
            |name: String, y: &mut DeviceHalf, run: &mut dyn FnMut(&mut DeviceHalf) -> Result<()>| -> Result<Timing> {
                rt.fill(y, poison(dtype))?;
                run(y)?;
                rt.synchronize()?;
                let rel_err = check.rel_err(&rt.download(y)?, n, dtype);
                if rel_err.is_nan() || rel_err > cfg.tolerance {
                    return Err(Error::Cuda(format!(
                        "{name} on {m}x{k}x{n}: relative error {rel_err:.3e} against float64 exceeds {:.0e}",
                        cfg.tolerance
                    )));
                }
                let (mut t, captured) = rt.time(iters(300.0), cfg.runs, || run(y))?;
                let median_ms = median(&mut t);
                progress(&format!(
                    "  {name:<26} {median_ms:>9.4} ms  {:>7.1} TFLOP/s  err {rel_err:.1e}",
                    flops / median_ms / 1e9
                ));
                Ok(Timing {
                    kernel: name,
                    median_ms,
                    tflops: flops / (median_ms * 1e-3) / 1e12,
                    rel_err,
                    captured,
                })
            };

        let chosen = rt.choose_tile(m, k, n).name.to_string();
        let mut ours = Vec::new();
        for t in rt.tiles().iter().filter(|t| cfg.all_tiles || t.name == chosen) {
            ours.push(checked(format!("ours mma.sp {}", t.name), &mut y, &mut |y| {
                rt.spmm(&d24, &x_dev, y, Some(t))
            })?);
        }
        let cublas = checked("cuBLAS dense".into(), &mut y, &mut |y| {
            rt.dense_gemm(&masked_dev, &x_dev, y)
        })?;
        let cusparselt = match &lt {
            Some(lt) => match lt.plan(&rt, &masked_dev, &x_dev, &y) {
                Ok(mut plan) => Some(checked("cuSPARSELt 2:4".into(), &mut y, &mut |y| {
                    plan.run(&rt, &x_dev, y)
                })?),
                Err(e) => {
                    progress(&format!("  cuSPARSELt refused {m}x{k}x{n}: {e}"));
                    None
                }
            },
            None => None,
        };
        shapes.push(ShapeResult {
            m,
            k,
            n,
            ours,
            chosen,
            cublas,
            cusparselt,
            compress_ms,
            compress_matches_cpu,
        });
    }
    Ok(CudaBenchReport {
        device: rt.name().to_string(),
        compute_capability: rt.compute_capability(),
        dtype,
        cusparselt_version: lt.as_ref().map(|l| l.version()),
        cusparselt_note: lt_note,
        probe,
        peak_sparse,
        peak_dense,
        peak_wgmma: rt.wgmma_peak(),
        shapes,
    })
}

impl CudaBenchReport {
    /// Markdown table: medians, dense-equivalent TFLOP/s, ratios.
    pub fn table(&self) -> String {
        let dense_peak = self.shapes.iter().map(|s| s.cublas.tflops).fold(0.0f64, f64::max);
        let mut out = format!(
            "{} (sm_{}{}), {}, cuSPARSELt {}; GPU time per call, median of graph replays\n\
             dense {} tensor-core rate in this run (best cuBLAS): {:.0} TFLOP/s; instruction ceilings: \
             mma.sp m16n8k32 {:.0} dense-eq. TFLOP/s, mma.sync m16n8k16 {:.0} TFLOP/s, \
             wgmma.sp m64n256k32 {:.0} dense-eq. TFLOP/s\n\n\
             | M x K x N | ours best (tile) | ours picked | cuBLAS dense | cuSPARSELt 2:4 | ours vs dense | cuSPARSELt vs dense | ours vs cuSPARSELt | ours TFLOP/s (dense-eq.) | % of dense rate | GPU compression |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            self.device,
            self.compute_capability.0,
            self.compute_capability.1,
            self.dtype.name(),
            self.cusparselt_version.as_deref().unwrap_or("absent"),
            self.dtype.name(),
            dense_peak,
            self.peak_sparse,
            self.peak_dense,
            self.peak_wgmma
        );
        for s in &self.shapes {
            let b = s.best_ours();
            let p = s.chosen_ours();
            let lt = s.cusparselt.as_ref();
            out += &format!(
                "| {}x{}x{} | {:.4} ms ({}) | {:.4} ms | {:.4} ms | {} | {:.2}x | {} | {} | {:.0} | {:.0}% | {:.4} ms |\n",
                s.m,
                s.k,
                s.n,
                b.median_ms,
                b.kernel.trim_start_matches("ours mma.sp "),
                p.median_ms,
                s.cublas.median_ms,
                lt.map_or("-".into(), |t| format!("{:.4} ms", t.median_ms)),
                s.cublas.median_ms / b.median_ms,
                lt.map_or("-".into(), |t| format!("{:.2}x", s.cublas.median_ms / t.median_ms)),
                lt.map_or("-".into(), |t| format!("{:.2}x", t.median_ms / b.median_ms)),
                b.tflops,
                100.0 * b.tflops / dense_peak,
                s.compress_ms,
            );
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let t = |t: &Timing| {
            serde_json::json!({"kernel": t.kernel, "median_ms": t.median_ms, "tflops": t.tflops,
                "rel_err": t.rel_err, "graph": t.captured})
        };
        serde_json::json!({
            "device": self.device,
            "compute_capability": format!("{}.{}", self.compute_capability.0, self.compute_capability.1),
            "dtype": self.dtype.name(),
            "cusparselt": self.cusparselt_version,
            "cusparselt_note": self.cusparselt_note,
            "peak_mma_sp_tflops": self.peak_sparse,
            "peak_mma_sync_tflops": self.peak_dense,
            "peak_wgmma_sp_tflops": self.peak_wgmma,
            "probe": {"split_columns": self.probe.split_columns, "row_per_thread": self.probe.row_per_thread},
            "shapes": self.shapes.iter().map(|s| serde_json::json!({
                "m": s.m, "k": s.k, "n": s.n, "chosen_tile": s.chosen,
                "ours": s.ours.iter().map(t).collect::<Vec<_>>(),
                "cublas": t(&s.cublas),
                "cusparselt": s.cusparselt.as_ref().map(t),
                "compress_ms": s.compress_ms,
                "compress_matches_cpu": s.compress_matches_cpu,
            })).collect::<Vec<_>>(),
        })
    }
}
