//! Times the N:M and CSR SpMM kernels on the shapes they are designed for:
//! `cargo run --release --example spmm_bench -- [SIZE]` (SIZE^3 products,
//! default 4096, plus EfficientNet-Lite0's 1x1-convolution shapes). Every
//! N:M tiling that fits the pattern is timed, the automatic one marked `*`.
//! Prints the median of timed runs (GPU timestamps where the adapter has them)
//! and dense-equivalent GFLOP/s (2 M K N / t); a few rows are checked against
//! the CPU so a wrong kernel cannot post a time.

use wgsparse::gpu::{spmm_csr, spmm_nm, Context, Dispatch, Epilogue, GpuMatrix, GpuNm};
use wgsparse::prune::prune;
use wgsparse::{Matrix, Pattern, SparseMatrix};

struct Rng(u64);
impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn matrix(&mut self, rows: usize, cols: usize) -> Matrix {
        Matrix::new(rows, cols, (0..rows * cols).map(|_| self.f32()).collect()).unwrap()
    }
}

fn time(ctx: &Context, d: &Dispatch) -> f64 {
    ctx.time_blocking(&[d], 3, 20)
        .map(|t| t.median_ms())
        .unwrap_or(f64::NAN)
}

/// Checks rows 0, M/2 and M-1 of Y against `dense W * X` on the CPU.
fn spot_check(ctx: &Context, w: &Matrix, x: &Matrix, y: &GpuMatrix) -> bool {
    let got = y.download_blocking(ctx).unwrap();
    let (k, n) = (x.rows(), x.cols());
    let rows = [0, w.rows() / 2, w.rows() - 1];
    rows.iter().all(|&r| {
        (0..n).all(|c| {
            let want: f64 = (0..k).map(|p| w.get(r, p) as f64 * x.get(p, c) as f64).sum();
            let scale: f64 = (0..k).map(|p| (w.get(r, p) as f64 * x.get(p, c) as f64).abs()).sum();
            (got.get(r, c) as f64 - want).abs() <= 1e-5 * scale.max(1e-30)
        })
    })
}

fn report(label: &str, shape: (usize, usize, usize), ms: f64, ok: bool) {
    let (m, k, n) = shape;
    let gflops = 2.0 * m as f64 * k as f64 * n as f64 / (ms * 1e6);
    println!(
        "{label:<58} {:>16} {ms:>9.4} ms {gflops:>9.1} GFLOP/s{}",
        format!("{m}x{k}x{n}"),
        if ok { "" } else { "  WRONG" }
    );
}

fn main() {
    let size: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let ctx = Context::new_blocking().expect("a GPU adapter");
    println!("{}", ctx.info().name);
    let mut rng = Rng(0x5eed);
    let shapes = [(size, size, size), (1280, 320, 49), (96, 16, 12544), (1000, 1280, 1)];
    let epi = Epilogue::default();
    for &(m, k, n) in &shapes {
        let w = rng.matrix(m, k);
        let x = rng.matrix(k, n);
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let gy = GpuMatrix::new(&ctx, m, n, "y").unwrap();
        for (nk, mk) in [(2, 4), (1, 4), (2, 8), (4, 8)] {
            let Ok((SparseMatrix::Nm(nm), _)) = prune(&w, Pattern::NM { n: nk, m: mk }, 0.0) else {
                continue;
            };
            let dense = nm.to_dense();
            let gw = GpuNm::upload(&ctx, &nm).unwrap();
            let auto = spmm_nm::Tiling::auto(&ctx, &gw, n);
            let mut tilings = vec![auto];
            let sized = |rm| (rm as usize).min(m.div_ceil(16)).max(1) as u32;
            tilings.push(spmm_nm::Tiling::Tiled {
                col_threads: 16,
                row_threads: 16,
                rows_per_thread: sized(8),
                groups_per_chunk: (8 / nk as u32).clamp(1, 32 / mk as u32),
            });
            tilings.push(spmm_nm::Tiling::Uniform {
                col_threads: 32,
                row_threads: 8,
                rows_per_thread: sized(8),
                groups_per_chunk: (8 / mk as u32).max(1),
            });
            tilings.dedup();
            for (i, t) in tilings.iter().enumerate() {
                let Ok(d) = spmm_nm::prepare_with(&ctx, &gw, &gx, &gy, &epi, *t) else {
                    continue;
                };
                let ms = time(&ctx, &d);
                let ok = spot_check(&ctx, &dense, &x, &gy);
                let mark = if i == 0 { "*" } else { " " };
                report(&format!("{mark}{nk}:{mk} {t:?}"), (m, k, n), ms, ok);
            }
        }
        for sparsity in [0.75, 0.9, 0.98] {
            let Ok((SparseMatrix::Csr(csr), _)) = prune(&w, Pattern::Unstructured, sparsity) else {
                continue;
            };
            let dense = csr.to_dense();
            let gw = spmm_csr::CsrWeights::upload(&ctx, &csr).unwrap();
            let t = spmm_csr::Tiling::auto(&ctx, &gw, n);
            let d = spmm_csr::prepare_with(&ctx, &gw, &gx, &gy, &epi, t).unwrap();
            let ms = time(&ctx, &d);
            let ok = spot_check(&ctx, &dense, &x, &gy);
            report(&format!("*csr {sparsity} {t:?}"), (m, k, n), ms, ok);
        }
    }
}
