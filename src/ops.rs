//! Operator level: a weight matrix pruned to a pattern and resident on the GPU
//! in that pattern's format, multiplied by dense X with the matching kernel.
//! The Rust API, the CLI and the wasm package all go through this.

use crate::error::Result;
use crate::gpu::spmm_csr::CsrWeights;
use crate::gpu::{gemm, spmm_bsr, spmm_csr, spmm_nm, Context, Dispatch, Epilogue, GpuBsr, GpuMatrix, GpuNm};
use crate::prune::{self, TensorReport};
use crate::sparse::{Matrix, Pattern, SparseMatrix};

/// The weights on the GPU, in the format their pattern calls for.
#[derive(Debug)]
pub enum GpuWeights {
    Dense(GpuMatrix),
    Bsr(GpuBsr),
    Nm(GpuNm),
    Csr(CsrWeights),
}

impl GpuWeights {
    /// The kernel family that multiplies this format.
    pub fn kernel_name(&self) -> &'static str {
        match self {
            GpuWeights::Dense(_) => "gemm",
            GpuWeights::Bsr(_) => "spmm_bsr",
            GpuWeights::Nm(_) => "spmm_nm",
            GpuWeights::Csr(_) => "spmm_csr",
        }
    }
}

/// A pruned weight matrix on the GPU.
#[derive(Debug)]
pub struct SparseOperator {
    pub weights: GpuWeights,
    pub report: TensorReport,
    /// Bytes of the compressed format (values and indices).
    pub bytes: usize,
    /// Bytes of the same matrix stored dense (f32).
    pub dense_bytes: usize,
}

impl SparseOperator {
    /// Prunes `w` to `pattern` at `sparsity` by magnitude (see [`crate::prune`];
    /// N:M ignores `sparsity`) and uploads the compressed format.
    pub fn new(ctx: &Context, w: &Matrix, pattern: Pattern, sparsity: f64) -> Result<Self> {
        let (sp, report) = prune::prune(w, pattern, sparsity)?;
        Self::from_sparse(ctx, &sp, report)
    }

    /// Uploads an already compressed matrix.
    pub fn from_sparse(ctx: &Context, sp: &SparseMatrix, report: TensorReport) -> Result<Self> {
        let weights = match sp {
            SparseMatrix::Dense(m) => GpuWeights::Dense(GpuMatrix::upload(ctx, m, "weights")?),
            SparseMatrix::Bsr(b) => GpuWeights::Bsr(GpuBsr::upload(ctx, b)?),
            SparseMatrix::Nm(m) => GpuWeights::Nm(GpuNm::upload(ctx, m)?),
            SparseMatrix::Csr(c) => GpuWeights::Csr(CsrWeights::upload(ctx, c)?),
        };
        Ok(SparseOperator {
            weights,
            report,
            bytes: sp.bytes(),
            dense_bytes: 4 * sp.rows() * sp.cols(),
        })
    }

    pub fn rows(&self) -> usize {
        self.report.rows
    }
    pub fn cols(&self) -> usize {
        self.report.cols
    }

    /// Prepares `y = act(W x + bias)` with the kernel of this format.
    pub fn prepare(&self, ctx: &Context, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<Dispatch> {
        match &self.weights {
            GpuWeights::Dense(w) => gemm::prepare(ctx, w, x, y, ep),
            GpuWeights::Bsr(w) => spmm_bsr::prepare(ctx, w, x, y, ep),
            GpuWeights::Nm(w) => spmm_nm::prepare(ctx, w, x, y, ep),
            GpuWeights::Csr(w) => spmm_csr::prepare(ctx, w, x, y, ep),
        }
    }

    /// The pruned matrix as dense, read back from its GPU format.
    pub async fn to_dense(&self, ctx: &Context) -> Result<Matrix> {
        match &self.weights {
            GpuWeights::Dense(w) => w.download(ctx).await,
            GpuWeights::Bsr(w) => Ok(w.download(ctx).await?.to_dense()),
            GpuWeights::Nm(w) => Ok(w.download(ctx).await?.to_dense()),
            GpuWeights::Csr(w) => Ok(w.csr.download(ctx).await?.to_dense()),
        }
    }

    /// `W x` for a dense `x` of `cols()` rows: uploads x, runs, downloads.
    pub async fn matmul(&self, ctx: &Context, x: &Matrix) -> Result<Matrix> {
        let gx = GpuMatrix::upload(ctx, x, "x")?;
        let gy = GpuMatrix::new(ctx, self.rows(), x.cols(), "y")?;
        let d = self.prepare(ctx, &gx, &gy, &Epilogue::default())?;
        ctx.submit(&[&d]);
        gy.download(ctx).await
    }
}
