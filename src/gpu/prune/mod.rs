//! Magnitude pruning on the GPU, straight from a dense [`GpuMatrix`] to a
//! GPU-resident sparse format, with exactly the mask of the CPU reference
//! ([`crate::prune`], whose tie rule every kernel follows).
//!
//! - N:M ([`prune_nm`], `prune_nm.wgsl`, [`super::prune_nm`]): one pass.
//! - Block ([`prune_block`], `prune_block.wgsl`, [`super::prune_block`]):
//!   scores, exact selection of the k lowest, BSR compaction, longest-first
//!   block-row schedule.
//! - Unstructured per tensor ([`prune_unstructured`]) and global across tensors
//!   ([`prune_global`]) (`prune_select.wgsl`, [`super::prune_select`]):
//!   exact k-th |w| by a 3-pass radix select over `bits(|w|)`, the tie rule among
//!   the elements equal to the threshold, CSR compaction.
//!
//! Every function has a plan form ([`PrunePlan`]): building a plan validates the
//! input, allocates the outputs with their exact sizes (known on the CPU) and
//! the scratch, and prepares every dispatch; [`PrunePlan::encode`] records it
//! into a caller's encoder with no CPU round trip, so many layers can be
//! re-pruned in one submission and a plan can be recorded again whenever its
//! input changed. The `prune_*` functions build a plan, submit it and check it.
//!
//! Non-finite weights cannot be reported while recording; the kernels record
//! the first NaN/inf (lowest flat index, as the CPU reports it) in the plan's
//! status buffer, and [`PrunePlan::check`] turns it into
//! [`Error::NonFinite`]. Outputs of a plan whose input was not finite are well
//! formed but meaningless.

mod block;
mod nm;
mod select;

use crate::error::{Error, Result};
use crate::prune::BlockNorm;

use super::buffer::map_read;
use super::elementwise::prepare_fill;
use super::{Context, Dispatch, GpuBsr, GpuBuffer, GpuCsr, GpuMatrix, GpuNm, KernelDef, PipelineKey};

/// A prepared pruning: its output buffers and the dispatches that fill them.
///
/// Recording it again recomputes the outputs from the current contents of the
/// input matrix (scratch is reset by the plan's own first dispatches).
#[derive(Debug)]
pub struct PrunePlan<T> {
    pub(crate) output: T,
    pub(crate) dispatches: Vec<Dispatch>,
    pub(crate) status: GpuBuffer,
    pub(crate) inputs: Vec<Input>,
}

/// An input matrix, for naming a non-finite value.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    buffer: wgpu::Buffer,
    rows: usize,
    cols: usize,
    stride: usize,
    /// Flat index of its first element across all inputs of the plan.
    offset: u64,
}

/// Collects the dispatches of a plan.
pub(crate) struct Builder<'a> {
    pub(crate) ctx: &'a Context,
    dispatches: Vec<Dispatch>,
    pub(crate) status: GpuBuffer,
    inputs: Vec<Input>,
}

impl<'a> Builder<'a> {
    /// A builder whose status buffer has the error word and `counts` count words;
    /// its first dispatch zeroes the status.
    pub(crate) fn new(ctx: &'a Context, inputs: &[&GpuMatrix], counts: usize) -> Result<Self> {
        let status = GpuBuffer::new(ctx, 4 * (1 + counts as u64), "prune status")?;
        let mut offset = 0u64;
        let mut list = Vec::with_capacity(inputs.len());
        for m in inputs {
            list.push(Input {
                buffer: m.buffer().raw().clone(),
                rows: m.rows(),
                cols: m.cols(),
                stride: m.stride(),
                offset,
            });
            offset += (m.rows() * m.cols()) as u64;
        }
        // The kernels mark a non-finite value as 0xffffffff - flat index, so
        // every flat index must be below u32::MAX.
        if offset >= u32::MAX as u64 {
            return Err(Error::Limit(format!(
                "GPU pruning handles fewer than 2^32 - 1 elements per call, got {offset}"
            )));
        }
        let mut b = Builder {
            ctx,
            dispatches: Vec::new(),
            status,
            inputs: list,
        };
        let status = b.status.clone();
        b.fill(&status, 0)?;
        Ok(b)
    }

    /// Adds a dispatch of `groups` workgroups (folded into 2-D when needed).
    pub(crate) fn push(
        &mut self,
        kernel: &'static KernelDef,
        constants: &[(&'static str, u32)],
        resources: &[&wgpu::Buffer],
        groups: u64,
    ) -> Result<()> {
        let groups =
            u32::try_from(groups).map_err(|_| Error::Limit(format!("{} needs {groups} workgroups", kernel.name)))?;
        let grid = self.ctx.fold_groups(groups)?;
        let d = self
            .ctx
            .prepare(&PipelineKey::new(kernel, constants), resources, grid)?;
        self.dispatches.push(d);
        Ok(())
    }

    /// Adds a fill of every word of `buf` with `bits`.
    pub(crate) fn fill(&mut self, buf: &GpuBuffer, bits: u32) -> Result<()> {
        if buf.bytes() >= 4 {
            self.dispatches.push(prepare_fill(self.ctx, buf, bits)?);
        }
        Ok(())
    }

    pub(crate) fn finish<T>(self, output: T) -> PrunePlan<T> {
        PrunePlan {
            output,
            dispatches: self.dispatches,
            status: self.status,
            inputs: self.inputs,
        }
    }
}

impl<T> PrunePlan<T> {
    /// The output format (valid on the GPU once the plan has run).
    pub fn output(&self) -> &T {
        &self.output
    }
    /// The output, giving up the plan.
    pub fn into_output(self) -> T {
        self.output
    }
    /// The dispatches, in order (e.g. for [`Context::time`]).
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
    /// The status words: `[0]` is `0xffffffff - i` for the first non-finite
    /// weight at flat index `i` (0 when all are finite); for CSR outputs,
    /// `[1 + t]` is the number of elements kept in tensor `t`.
    pub fn status(&self) -> &GpuBuffer {
        &self.status
    }
    /// Records the plan into an open compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }
    /// Records the plan into `enc`, in one compute pass of its own.
    pub fn encode(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("prune"),
            timestamp_writes: None,
        });
        self.record(&mut pass);
    }
    /// Waits for the plan's last recorded run and reports a non-finite input
    /// as [`Error::NonFinite`] (index and value as the CPU reference reports them).
    pub async fn check(&self, ctx: &Context) -> Result<()> {
        self.read_status(ctx).await.map(|_| ())
    }

    /// The status words after checking the error word.
    async fn read_status(&self, ctx: &Context) -> Result<Vec<u32>> {
        let words: Vec<u32> = self.status.read(ctx).await?;
        if words[0] == 0 {
            return Ok(words);
        }
        let flat = (u32::MAX - words[0]) as u64;
        let input = self
            .inputs
            .iter()
            .rev()
            .find(|i| i.offset <= flat)
            .ok_or_else(|| Error::Gpu(format!("prune status names index {flat}")))?;
        let local = (flat - input.offset) as usize;
        if input.cols == 0 || local >= input.rows * input.cols {
            return Err(Error::Gpu(format!("prune status names index {flat}")));
        }
        let (r, c) = (local / input.cols, local % input.cols);
        let bits = read_word(ctx, &input.buffer, 4 * (r * input.stride + c) as u64).await?;
        Err(Error::NonFinite {
            what: "matrix",
            index: local,
            value: f32::from_bits(bits),
        })
    }

    /// Records, submits and checks the plan.
    async fn execute(&self, ctx: &Context) -> Result<Vec<u32>> {
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("prune") });
        self.encode(&mut enc);
        ctx.queue().submit([enc.finish()]);
        self.read_status(ctx).await
    }
}

/// Reads one 32-bit word of `buffer` at byte `offset`.
async fn read_word(ctx: &Context, buffer: &wgpu::Buffer, offset: u64) -> Result<u32> {
    let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("prune readback"),
        size: 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("prune readback"),
    });
    enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, 4);
    ctx.queue().submit([enc.finish()]);
    map_read(ctx, &staging).await?;
    let word = {
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading a weight back: {e}")))?;
        u32::from_le_bytes([view[0], view[1], view[2], view[3]])
    };
    staging.unmap();
    ctx.take_errors()?;
    Ok(word)
}

impl PrunePlan<GpuMatrix> {
    /// Runs the plan and returns its output, or the error of a non-finite input.
    pub async fn run(self, ctx: &Context) -> Result<GpuMatrix> {
        self.execute(ctx).await?;
        Ok(self.output)
    }
}

impl PrunePlan<GpuNm> {
    /// Runs the plan and returns its output, or the error of a non-finite input.
    pub async fn run(self, ctx: &Context) -> Result<GpuNm> {
        self.execute(ctx).await?;
        Ok(self.output)
    }
}

impl PrunePlan<GpuBsr> {
    /// Runs the plan and returns its output, or the error of a non-finite input.
    pub async fn run(self, ctx: &Context) -> Result<GpuBsr> {
        self.execute(ctx).await?;
        Ok(self.output)
    }
}

impl PrunePlan<GpuCsr> {
    /// Runs the plan and returns its output, or the error of a non-finite input.
    pub async fn run(self, ctx: &Context) -> Result<GpuCsr> {
        self.execute(ctx).await?;
        Ok(self.output)
    }
}

impl PrunePlan<Vec<GpuCsr>> {
    /// Runs the plan and returns one CSR per tensor with its exact `nnz`: the
    /// per-tensor counts are read back with the status and every output whose
    /// capacity exceeds its count is copied into exact buffers.
    pub async fn run(self, ctx: &Context) -> Result<Vec<GpuCsr>> {
        let status = self.execute(ctx).await?;
        let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("global prune trim"),
        });
        let mut out = Vec::with_capacity(self.output.len());
        for (t, csr) in self.output.into_iter().enumerate() {
            let nnz = status[1 + t] as usize;
            if nnz == csr.nnz {
                out.push(csr);
                continue;
            }
            if nnz > csr.nnz {
                return Err(Error::Gpu(format!(
                    "global pruning kept {nnz} elements of tensor {t}, capacity {}",
                    csr.nnz
                )));
            }
            let col_idx = GpuBuffer::new(ctx, 4 * nnz as u64, "csr col_idx")?;
            let values = GpuBuffer::new(ctx, 4 * nnz as u64, "csr values")?;
            if nnz > 0 {
                let bytes = 4 * nnz as u64;
                enc.copy_buffer_to_buffer(csr.col_idx.raw(), 0, col_idx.raw(), 0, bytes);
                enc.copy_buffer_to_buffer(csr.values.raw(), 0, values.raw(), 0, bytes);
            }
            out.push(GpuCsr {
                nnz,
                col_idx,
                values,
                ..csr
            });
        }
        ctx.queue().submit([enc.finish()]);
        Ok(out)
    }
}

/// N:M pruning along K (the columns): keeps the `n` most important of every
/// group of `m` consecutive columns (see [`crate::prune::nm`]).
pub async fn prune_nm(ctx: &Context, w: &GpuMatrix, n: usize, m: usize) -> Result<GpuNm> {
    PrunePlan::nm(ctx, w, n, m)?.run(ctx).await
}

/// Block pruning into BSR (see [`crate::prune::block`]); `row_order` lists the
/// block rows longest first, computed on the GPU.
pub async fn prune_block(
    ctx: &Context,
    w: &GpuMatrix,
    block_rows: usize,
    block_cols: usize,
    sparsity: f64,
    norm: BlockNorm,
) -> Result<GpuBsr> {
    PrunePlan::block(ctx, w, block_rows, block_cols, sparsity, norm)?
        .run(ctx)
        .await
}

/// Unstructured pruning of one tensor into CSR (see [`crate::prune::unstructured`]).
pub async fn prune_unstructured(ctx: &Context, w: &GpuMatrix, sparsity: f64) -> Result<GpuCsr> {
    PrunePlan::unstructured(ctx, w, sparsity)?.run(ctx).await
}

/// Unstructured pruning with one threshold across tensors (see
/// [`crate::prune::global`]): one CSR per tensor, in order.
pub async fn prune_global(ctx: &Context, ws: &[&GpuMatrix], sparsity: f64) -> Result<Vec<GpuCsr>> {
    PrunePlan::global(ctx, ws, sparsity)?.run(ctx).await
}

/// [`prune_nm`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn prune_nm_blocking(ctx: &Context, w: &GpuMatrix, n: usize, m: usize) -> Result<GpuNm> {
    pollster::block_on(prune_nm(ctx, w, n, m))
}

/// [`prune_block`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn prune_block_blocking(
    ctx: &Context,
    w: &GpuMatrix,
    block_rows: usize,
    block_cols: usize,
    sparsity: f64,
    norm: BlockNorm,
) -> Result<GpuBsr> {
    pollster::block_on(prune_block(ctx, w, block_rows, block_cols, sparsity, norm))
}

/// [`prune_unstructured`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn prune_unstructured_blocking(ctx: &Context, w: &GpuMatrix, sparsity: f64) -> Result<GpuCsr> {
    pollster::block_on(prune_unstructured(ctx, w, sparsity))
}

/// [`prune_global`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn prune_global_blocking(ctx: &Context, ws: &[&GpuMatrix], sparsity: f64) -> Result<Vec<GpuCsr>> {
    pollster::block_on(prune_global(ctx, ws, sparsity))
}

/// The kernels of the pruning family (N:M, block, exact selection).
pub const KERNELS: &[&KernelDef] = &[
    &nm::PRUNE_NM,
    &block::BLOCK_SCORES,
    &block::BLOCK_VALUES,
    &block::BLOCK_ROW_ORDER,
    &select::RADIX_HISTOGRAM,
    &select::RADIX_SCAN,
    &select::SELECT_COUNT,
    &select::SELECT_CHUNK_SCAN,
    &select::SELECT_SCATTER,
];
