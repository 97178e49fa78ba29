//! Where 2:4 sparse work runs: NVIDIA sparse tensor cores through CUDA, or any
//! GPU through wgpu.
//!
//! [`Sparse24Gemm`] holds a weight matrix `W` (`M x K`) pruned 2:4 by magnitude
//! along K and resident on one backend, and computes `Y = W X` for host `X`
//! (`K x N`). The backend is chosen once, when it is built:
//!
//! | requested          | `cuda` feature, CUDA GPU (sm_80+) usable | otherwise                  |
//! |--------------------|------------------------------------------|----------------------------|
//! | [`Backend::Auto`]  | CUDA                                     | wgpu                       |
//! | [`Backend::Cuda`]  | CUDA                                     | the error why not          |
//! | [`Backend::Wgpu`]  | wgpu                                     | wgpu                       |
//!
//! "Usable" means [`CudaRuntime::new(0)`](crate::cuda) succeeds: the driver,
//! NVRTC and cuBLAS load, GPU 0 is sm_80 or newer, and the kernels compile.
//! A forced [`Backend::Cuda`] never falls back: without the feature it is
//! [`Error::NotCompiledWithCuda`], without a GPU or driver it is the runtime's
//! [`Error::Cuda`]. [`Backend::Auto`] falls back to wgpu only when the CUDA
//! runtime cannot be opened; [`Sparse24Gemm::fallback`] says why. Errors about
//! the input itself (empty or non-finite `W`, weights outside the f16 range on
//! CUDA) are returned as they are, never hidden by a fallback.
//!
//! Numerics:
//! - wgpu: f32 values, f32 accumulation (`spmm_nm`).
//! - CUDA: f16 values of `W`, `X` and `Y`, f32 accumulation; weights or inputs
//!   beyond the f16 range (±65504) and results that overflow it are errors,
//!   and tiny values lose precision (f16 subnormals) as f16 does.
//!
//! The mask is the CPU reference's, [`prune::nm(w, 2, 4)`](crate::prune::nm), on
//! both backends. On CUDA, `W` is masked in f32 on the host first (rounding to
//! f16 could otherwise merge two distinct magnitudes and move a tie), then the
//! masked f16 matrix is uploaded and compressed on the GPU by
//! `CudaRuntime::compress` (same tie rule), which keeps exactly its nonzeros.
//!
//! CUDA kernel dispatch is measured, not guessed: the first time a batch width
//! `N` is seen, our `mma.sp` SpMM and cuBLAS dense GEMM (on an f16 copy of the
//! masked `W` that stays on the GPU) are both timed (CUDA graphs, 10 calls x 5
//! replays) and the one with the lower median is used for that `N` from then
//! on ([`Sparse24Gemm::choices`] lists the measurements). The two are
//! candidates of the crate's tuner ([`crate::gpu::tune`], family
//! `sparse24_cuda`), so batch widths in one of its buckets (N up to 16 exact,
//! above within ~6%) share one measurement.
//!
//! Native only (it blocks on the GPU), like [`crate::cuda`].
#![cfg(not(target_arch = "wasm32"))]

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::ops::SparseOperator;
use crate::sparse::{Matrix, Pattern};

#[cfg(feature = "cuda")]
use crate::cuda::pack::Half;
#[cfg(feature = "cuda")]
use crate::cuda::{CudaRuntime, Device24, DeviceHalf};
#[cfg(feature = "cuda")]
use crate::gpu::tune::{Family, TuneKey, Tuner};
#[cfg(feature = "cuda")]
use std::collections::HashMap;

/// Kernel name reported by [`Sparse24Gemm::last_kernel`] for our tensor-core SpMM.
pub const KERNEL_MMA_SP: &str = "mma.sp";
/// Kernel name reported for cuBLAS dense GEMM on the masked weights.
pub const KERNEL_CUBLAS_DENSE: &str = "cuBLAS dense";
/// Kernel name reported for the wgpu N:M SpMM.
pub const KERNEL_WGPU_NM: &str = "wgpu spmm_nm";

/// Where 2:4 work runs. Parses from `"auto"`, `"wgpu"` or `"cuda"` (any case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// CUDA when the `cuda` feature is on and a CUDA GPU opens, else wgpu.
    #[default]
    Auto,
    /// wgpu (Vulkan, Metal, DX12, WebGPU), f32.
    Wgpu,
    /// NVIDIA sparse tensor cores, f16 values with f32 accumulation; an error
    /// when unavailable, never a fallback.
    Cuda,
}

impl Backend {
    /// The accepted spellings, lower case.
    pub const NAMES: [&'static str; 3] = ["auto", "wgpu", "cuda"];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(Error::Invalid(format!(
                "unknown backend '{s}': expected one of {}",
                Backend::NAMES.join(", ")
            ))),
        }
    }
}

/// Whether the CUDA backend can run here: `"NAME (sm_XY)"` of GPU 0, or the
/// reason it cannot ([`Error::NotCompiledWithCuda`] without the `cuda` feature,
/// the runtime's [`Error::Cuda`] without a driver, libraries or an sm_80+ GPU).
///
/// This opens the runtime (and compiles the kernels), so it takes a moment.
pub fn cuda_available() -> Result<String> {
    #[cfg(feature = "cuda")]
    {
        let rt = CudaRuntime::new(0)?;
        Ok(cuda_description(&rt))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(Error::NotCompiledWithCuda)
    }
}

#[cfg(feature = "cuda")]
fn cuda_description(rt: &CudaRuntime) -> String {
    let (major, minor) = rt.compute_capability();
    format!("{} (sm_{major}{minor})", rt.name())
}

/// One measurement of the CUDA dispatch for a batch width `n` (milliseconds of
/// GPU time per call, medians) and the kernel it chose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelChoice {
    pub n: usize,
    /// [`KERNEL_MMA_SP`] or [`KERNEL_CUBLAS_DENSE`].
    pub kernel: &'static str,
    /// Median of our `mma.sp` SpMM; `None` when it could not run this shape.
    pub spmm_ms: Option<f64>,
    /// Median of cuBLAS dense; `None` when it could not run this shape.
    pub dense_ms: Option<f64>,
}

/// The CUDA side of a [`Sparse24Gemm`].
#[cfg(feature = "cuda")]
struct CudaEngine {
    rt: CudaRuntime,
    /// The masked weights, 2:4-compressed for `mma.sp`.
    a: Device24,
    /// The same masked weights, dense f16, for cuBLAS.
    dense: DeviceHalf,
    /// Measured choices between `mma.sp` and cuBLAS, per bucket of N.
    tuner: Tuner,
    /// The choice each batch width N seen so far runs.
    choices: HashMap<usize, KernelChoice>,
}

/// The wgpu side of a [`Sparse24Gemm`].
struct WgpuEngine {
    ctx: Context,
    op: SparseOperator,
}

enum Engine {
    Wgpu(Box<WgpuEngine>),
    #[cfg(feature = "cuda")]
    Cuda(Box<CudaEngine>),
}

/// A 2:4-pruned weight matrix on the chosen backend, computing `Y = W X`.
/// See the [module docs](self) for the choice rules and numerics.
pub struct Sparse24Gemm {
    engine: Engine,
    rows: usize,
    cols: usize,
    device: String,
    fallback: Option<String>,
    last_kernel: Option<&'static str>,
}

impl fmt::Debug for Sparse24Gemm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sparse24Gemm")
            .field("backend", &self.backend())
            .field("device", &self.device)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("last_kernel", &self.last_kernel)
            .finish()
    }
}

impl Sparse24Gemm {
    /// Prunes `w` (`M x K`) 2:4 along K by magnitude and puts it on the backend
    /// `requested` resolves to (module docs). An empty or non-finite `w` is an
    /// error on every backend.
    pub fn new(w: &Matrix, requested: Backend) -> Result<Self> {
        let (rows, cols) = (w.rows(), w.cols());
        if rows == 0 || cols == 0 {
            return Err(Error::Shape(format!(
                "2:4 GEMM of an empty {rows}x{cols} weight matrix"
            )));
        }
        w.check_finite()?;
        match requested {
            Backend::Wgpu => Self::new_wgpu(w, None),
            Backend::Cuda => Self::new_cuda(w),
            Backend::Auto => {
                #[cfg(feature = "cuda")]
                {
                    match CudaRuntime::new(0) {
                        Ok(rt) => Self::with_runtime(w, rt),
                        Err(e) => Self::new_wgpu(w, Some(e.to_string())),
                    }
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Self::new_wgpu(w, Some(Error::NotCompiledWithCuda.to_string()))
                }
            }
        }
    }

    fn new_wgpu(w: &Matrix, fallback: Option<String>) -> Result<Self> {
        let ctx = Context::new_blocking()?;
        let op = SparseOperator::new(&ctx, w, Pattern::NM { n: 2, m: 4 }, 0.0)?;
        let info = ctx.info();
        let device = format!("{} ({:?})", info.name, info.backend);
        Ok(Sparse24Gemm {
            engine: Engine::Wgpu(Box::new(WgpuEngine { ctx, op })),
            rows: w.rows(),
            cols: w.cols(),
            device,
            fallback,
            last_kernel: None,
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn new_cuda(_w: &Matrix) -> Result<Self> {
        Err(Error::NotCompiledWithCuda)
    }

    #[cfg(feature = "cuda")]
    fn new_cuda(w: &Matrix) -> Result<Self> {
        Self::with_runtime(w, CudaRuntime::new(0)?)
    }

    #[cfg(feature = "cuda")]
    fn with_runtime(w: &Matrix, rt: CudaRuntime) -> Result<Self> {
        let (rows, cols) = (w.rows(), w.cols());
        // Mask in f32 with the CPU reference, so that f16 rounding cannot change
        // which weights are kept; the GPU compression then keeps exactly the
        // nonzeros of each chunk (at most 2), and a kept weight that rounds to
        // 0 in f16 contributes 0 wherever the compression puts it.
        let mask = crate::prune::nm(w, 2, 4)?.mask;
        let masked = w.masked(&mask)?;
        let bits = to_f16(masked.data(), "weight")?;
        let dense = rt.upload(&bits, rows, cols, cols, Half::F16)?;
        let a = rt.compress(&dense)?;
        let device = cuda_description(&rt);
        Ok(Sparse24Gemm {
            engine: Engine::Cuda(Box::new(CudaEngine {
                rt,
                a,
                dense,
                tuner: Tuner::new(format!("cuda: {device}")),
                choices: HashMap::new(),
            })),
            rows,
            cols,
            device,
            fallback: None,
            last_kernel: None,
        })
    }

    /// The backend in use: [`Backend::Wgpu`] or [`Backend::Cuda`], never `Auto`.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Wgpu(_) => Backend::Wgpu,
            #[cfg(feature = "cuda")]
            Engine::Cuda(_) => Backend::Cuda,
        }
    }

    /// The backend and its device, e.g. `"cuda: NVIDIA H100 80GB HBM3 (sm_90)"`
    /// or `"wgpu: llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan)"`.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.backend(), self.device)
    }

    /// Why [`Backend::Auto`] did not pick CUDA (`None` when it did, or when a
    /// backend was requested explicitly).
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Rows of `W` (M, the rows of `Y`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of `W` (K, the rows `X` must have).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The kernel of the last successful [`run`](Self::run): [`KERNEL_MMA_SP`],
    /// [`KERNEL_CUBLAS_DENSE`] or [`KERNEL_WGPU_NM`]; `None` before the first
    /// (and after a run with `N = 0`, which launches nothing).
    pub fn last_kernel(&self) -> Option<&'static str> {
        self.last_kernel
    }

    /// The CUDA dispatch measurements so far, by increasing `N` (empty on wgpu).
    pub fn choices(&self) -> Vec<KernelChoice> {
        match &self.engine {
            Engine::Wgpu(_) => Vec::new(),
            #[cfg(feature = "cuda")]
            Engine::Cuda(e) => {
                let mut v: Vec<KernelChoice> = e.choices.values().copied().collect();
                v.sort_by_key(|c| c.n);
                v
            }
        }
    }

    /// `Y = W X` for `X` of `K` rows (any `N`, including 0). On CUDA, `X` must
    /// be finite and within the f16 range, and so must the result; on wgpu, `X`
    /// must be finite.
    pub fn run(&mut self, x: &Matrix) -> Result<Matrix> {
        if x.rows() != self.cols {
            return Err(Error::Shape(format!(
                "W is {}x{} but X is {}x{}: X needs {} rows",
                self.rows,
                self.cols,
                x.rows(),
                x.cols(),
                self.cols
            )));
        }
        if let Some(i) = x.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "X holds the non-finite value {} at row {}, column {}; inputs must be finite",
                x.data()[i],
                i / x.cols(),
                i % x.cols()
            )));
        }
        if x.cols() == 0 {
            self.last_kernel = None;
            return Matrix::zeros(self.rows, 0);
        }
        let (y, kernel) = match &mut self.engine {
            Engine::Wgpu(e) => (pollster::block_on(e.op.matmul(&e.ctx, x))?, KERNEL_WGPU_NM),
            #[cfg(feature = "cuda")]
            Engine::Cuda(e) => e.run(x)?,
        };
        self.last_kernel = Some(kernel);
        Ok(y)
    }
}

/// f32 to f16 bits; a finite value outside the f16 range is an error.
#[cfg(feature = "cuda")]
fn to_f16(data: &[f32], what: &str) -> Result<Vec<u16>> {
    let bits: Vec<u16> = data.iter().map(|&v| Half::F16.from_f32(v)).collect();
    if let Some(i) = bits.iter().position(|&b| b & 0x7c00 == 0x7c00) {
        return Err(Error::Invalid(format!(
            "{what} {} at index {i} is outside the f16 range (±65504) of the CUDA backend; use the wgpu backend (f32)",
            data[i]
        )));
    }
    Ok(bits)
}

#[cfg(feature = "cuda")]
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|t| t.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    })
}

#[cfg(feature = "cuda")]
impl CudaEngine {
    fn run(&mut self, x: &Matrix) -> Result<(Matrix, &'static str)> {
        let (k, n, m) = (x.rows(), x.cols(), self.a.rows);
        let xh = self.rt.upload(&to_f16(x.data(), "X value")?, k, n, n, Half::F16)?;
        let mut y = self.rt.zeros(m, n, Half::F16)?;
        let kernel = match self.choices.get(&n) {
            Some(c) => c.kernel,
            None => {
                // Our kernel first: it runs on a tie, and when neither has a time.
                let key = TuneKey::new(Family::Sparse24Cuda, m, k, n, Pattern::NM { n: 2, m: 4 }, 0.5);
                let c = self
                    .tuner
                    .choose_blocking(key, &[KERNEL_MMA_SP, KERNEL_CUBLAS_DENSE], || self.measure(&xh, &mut y))?;
                let choice = KernelChoice {
                    n,
                    kernel: if c.pick == 1 {
                        KERNEL_CUBLAS_DENSE
                    } else {
                        KERNEL_MMA_SP
                    },
                    spmm_ms: c.ms(0),
                    dense_ms: c.ms(1),
                };
                self.choices.insert(n, choice);
                choice.kernel
            }
        };
        if kernel == KERNEL_MMA_SP {
            self.rt.spmm(&self.a, &xh, &mut y, None)?;
        } else {
            self.rt.dense_gemm(&self.dense, &xh, &mut y)?;
        }
        let bits = self.rt.download(&y)?;
        let data: Vec<f32> = bits.iter().map(|&b| Half::F16.to_f32(b)).collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "Y at row {}, column {} is {} in f16 (the CUDA backend's output type): \
                 the result exceeds the f16 range; use the wgpu backend (f32)",
                i / n,
                i % n,
                data[i]
            )));
        }
        Ok((Matrix::new(m, n, data)?, kernel))
    }

    /// Median ms of both kernels on this `X`, `[mma.sp, cuBLAS]`, infinite
    /// for one that cannot run the shape (both failing is the SpMM's error).
    fn measure(&self, xh: &DeviceHalf, y: &mut DeviceHalf) -> Result<Vec<f64>> {
        let rt = &self.rt;
        let sparse = rt.time(10, 5, || rt.spmm(&self.a, xh, y, None));
        let dense = rt.time(10, 5, || rt.dense_gemm(&self.dense, xh, y));
        match (sparse, dense) {
            (Err(e), Err(_)) => Err(e),
            (s, d) => Ok([s, d]
                .into_iter()
                .map(|t| t.ok().and_then(|(t, _)| median(t)).unwrap_or(f64::INFINITY))
                .collect()),
        }
    }
}
