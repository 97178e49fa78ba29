//! Operator level: a weight matrix pruned to a pattern and resident on the GPU
//! in that pattern's format, multiplied by dense X with the matching kernel.
//! The Rust API, the CLI and the wasm package all go through this.

use crate::error::Result;
use crate::gpu::spmm_csr::CsrWeights;
use crate::gpu::PrunePlan;
use crate::gpu::{gemm, spmm_bsr, spmm_csr, spmm_nm, Context, Dispatch, Epilogue, GpuBsr, GpuCsr, GpuMatrix, GpuNm};
use crate::prune::{self, BlockNorm, TensorReport};
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

    /// Prunes a dense matrix that is already on the GPU, on the GPU (same
    /// result as the CPU reference, see [`crate::gpu::prune`]), into the
    /// pattern's format. Block pruning uses the L2 norm.
    pub async fn prune_on_gpu(ctx: &Context, w: &GpuMatrix, pattern: Pattern, sparsity: f64) -> Result<Self> {
        let (rows, cols) = (w.rows(), w.cols());
        if pattern.validate()? == Pattern::Dense {
            if sparsity != 0.0 {
                return Err(crate::Error::InvalidSparsity(sparsity));
            }
            return Ok(Self::from_gpu_weights(
                GpuWeights::Dense(w.clone()),
                rows,
                cols,
                pattern,
                0.0,
            ));
        }
        let plan = LayerPlan::new(ctx, w, None, pattern, sparsity)?;
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("prune") });
        plan.encode(&mut enc);
        ctx.queue().submit([enc.finish()]);
        plan.finish(ctx, rows, cols, pattern, sparsity).await
    }

    /// Wraps a CSR matrix pruned on the GPU (e.g. one tensor of a global prune).
    pub async fn from_gpu_csr(ctx: &Context, csr: GpuCsr, target: f64) -> Result<Self> {
        let (rows, cols) = (csr.rows, csr.cols);
        let row_ptr: Vec<u32> = csr.row_ptr.read(ctx).await?;
        let weights = GpuWeights::Csr(CsrWeights::from_gpu(ctx, csr, &row_ptr)?);
        Ok(Self::from_gpu_weights(
            weights,
            rows,
            cols,
            Pattern::Unstructured,
            target,
        ))
    }

    /// Wraps weights pruned on the GPU, with the report of what they keep.
    pub fn from_gpu_weights(weights: GpuWeights, rows: usize, cols: usize, pattern: Pattern, target: f64) -> Self {
        // Stored slots: edge blocks count whole, N:M counts filler slots.
        let (kept, bytes) = match &weights {
            GpuWeights::Dense(_) => (rows * cols, 4 * rows * cols),
            GpuWeights::Bsr(b) => (b.nnz_blocks * b.block_rows * b.block_cols, b.bytes() as usize),
            GpuWeights::Nm(nm) => (
                (rows * cols.div_ceil(nm.m) * nm.n).min(rows * cols),
                nm.bytes() as usize,
            ),
            GpuWeights::Csr(c) => (c.csr.nnz, c.csr.bytes() as usize),
        };
        let total = (rows * cols).max(1);
        let report = TensorReport {
            name: String::new(),
            rows,
            cols,
            pattern,
            target,
            achieved: 1.0 - kept.min(total) as f64 / total as f64,
            kept,
        };
        SparseOperator {
            weights,
            report,
            bytes,
            dense_bytes: 4 * rows * cols,
        }
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

/// A GPU pruning plan of one matrix, in its pattern's format: recorded into
/// any encoder (the model records every layer's into one submission), then
/// checked and wrapped as a [`SparseOperator`].
pub(crate) enum LayerPlan {
    Nm(PrunePlan<GpuNm>),
    Bsr(PrunePlan<GpuBsr>),
    Csr(PrunePlan<GpuCsr>),
}

impl LayerPlan {
    /// Ranks by `score` (the shape of `w`) when given, else by `|w|`.
    pub(crate) fn new(
        ctx: &Context,
        w: &GpuMatrix,
        score: Option<&GpuMatrix>,
        pattern: Pattern,
        sparsity: f64,
    ) -> Result<Self> {
        Ok(match pattern {
            Pattern::NM { n, m } => LayerPlan::Nm(PrunePlan::nm_scored(ctx, w, score, n, m)?),
            Pattern::Block { rows, cols } => LayerPlan::Bsr(PrunePlan::block_scored(
                ctx,
                w,
                score,
                (rows, cols),
                sparsity,
                BlockNorm::L2,
            )?),
            Pattern::Unstructured => LayerPlan::Csr(PrunePlan::unstructured_scored(ctx, w, score, sparsity)?),
            Pattern::Dense => return Err(crate::Error::Shape("nothing to plan for the dense pattern".into())),
        })
    }

    pub(crate) fn encode(&self, enc: &mut wgpu::CommandEncoder) {
        match self {
            LayerPlan::Nm(p) => p.encode(enc),
            LayerPlan::Bsr(p) => p.encode(enc),
            LayerPlan::Csr(p) => p.encode(enc),
        }
    }

    /// The buffers [`Self::finish_read`] needs read back: the status, and for
    /// CSR the row pointers (for the row schedule).
    pub(crate) fn readbacks(&self) -> Vec<&crate::gpu::GpuBuffer> {
        match self {
            LayerPlan::Nm(p) => vec![p.status()],
            LayerPlan::Bsr(p) => vec![p.status()],
            LayerPlan::Csr(p) => vec![p.status(), &p.output().row_ptr],
        }
    }

    /// [`Self::finish`] from the words of [`Self::readbacks`], read by the
    /// caller together with other plans' (one GPU round trip for a whole model).
    pub(crate) async fn finish_read(
        self,
        ctx: &Context,
        words: &[Vec<u32>],
        rows: usize,
        cols: usize,
        pattern: Pattern,
        sparsity: f64,
    ) -> Result<SparseOperator> {
        let ok = words.first().and_then(|w| w.first()) == Some(&0);
        if !ok || (matches!(self, LayerPlan::Csr(_)) && words.len() < 2) {
            // Non-finite weights (or a short read): the slow path names the value.
            return self.finish(ctx, rows, cols, pattern, sparsity).await;
        }
        Ok(match self {
            LayerPlan::Csr(p) => {
                let weights = GpuWeights::Csr(CsrWeights::from_gpu(ctx, p.into_output(), &words[1])?);
                SparseOperator::from_gpu_weights(weights, rows, cols, Pattern::Unstructured, sparsity)
            }
            LayerPlan::Nm(p) => {
                let target = match pattern {
                    Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
                    _ => sparsity,
                };
                SparseOperator::from_gpu_weights(GpuWeights::Nm(p.into_output()), rows, cols, pattern, target)
            }
            LayerPlan::Bsr(p) => {
                SparseOperator::from_gpu_weights(GpuWeights::Bsr(p.into_output()), rows, cols, pattern, sparsity)
            }
        })
    }

    /// Checks the plan's status (non-finite weights) and wraps its output.
    pub(crate) async fn finish(
        self,
        ctx: &Context,
        rows: usize,
        cols: usize,
        pattern: Pattern,
        sparsity: f64,
    ) -> Result<SparseOperator> {
        Ok(match self {
            LayerPlan::Nm(p) => {
                p.check(ctx).await?;
                let target = match pattern {
                    Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
                    _ => sparsity,
                };
                SparseOperator::from_gpu_weights(GpuWeights::Nm(p.into_output()), rows, cols, pattern, target)
            }
            LayerPlan::Bsr(p) => {
                p.check(ctx).await?;
                SparseOperator::from_gpu_weights(GpuWeights::Bsr(p.into_output()), rows, cols, pattern, sparsity)
            }
            LayerPlan::Csr(p) => {
                p.check(ctx).await?;
                SparseOperator::from_gpu_csr(ctx, p.into_output(), sparsity).await?
            }
        })
    }
}
