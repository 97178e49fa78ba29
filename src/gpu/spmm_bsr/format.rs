//! BSR resident on the GPU, f32 and f16 values: the layout of
//! [`crate::sparse::Bsr`].

use crate::error::{Error, Result};
use crate::sparse::Bsr;

use crate::gpu::buffer::to_f16;
use crate::gpu::{Context, GpuBuffer};

/// BSR on the GPU. `row_order` lists the block rows longest first (most blocks
/// first), the order in which SpMM schedules them, so the heaviest rows start
/// earliest and short rows fill the tail (load balance).
#[derive(Clone, Debug)]
pub struct GpuBsr {
    pub rows: usize,
    pub cols: usize,
    pub block_rows: usize,
    pub block_cols: usize,
    pub nnz_blocks: usize,
    pub row_ptr: GpuBuffer,
    pub col_idx: GpuBuffer,
    pub values: GpuBuffer,
    pub row_order: GpuBuffer,
}

/// BSR on the GPU with f16 values (for the f16-storage SpMM): the index
/// buffers (`row_ptr`, `col_idx`, `row_order`) are those of [`GpuBsr`], and can
/// be shared with one ([`GpuBsrF16::sharing_indices`]); `values` holds the
/// blocks rounded to f16, zero-padded to a multiple of 4 halves so the kernel
/// may read whole `vec4<f16>`s.
#[derive(Clone, Debug)]
pub struct GpuBsrF16 {
    pub rows: usize,
    pub cols: usize,
    pub block_rows: usize,
    pub block_cols: usize,
    pub nnz_blocks: usize,
    pub row_ptr: GpuBuffer,
    pub col_idx: GpuBuffer,
    pub values: GpuBuffer,
    pub row_order: GpuBuffer,
}

/// Block rows sorted by decreasing block count (ties: lower index first).
pub fn longest_first(row_ptr: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..row_ptr.len().saturating_sub(1) as u32).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(row_ptr[r as usize + 1] - row_ptr[r as usize]));
    order
}

impl GpuBsr {
    pub fn upload(ctx: &Context, m: &Bsr) -> Result<Self> {
        Ok(GpuBsr {
            rows: m.rows(),
            cols: m.cols(),
            block_rows: m.block_rows(),
            block_cols: m.block_cols(),
            nnz_blocks: m.nnz_blocks(),
            row_ptr: GpuBuffer::from_slice(ctx, m.row_ptr(), "bsr row_ptr")?,
            col_idx: GpuBuffer::from_slice(ctx, m.col_idx(), "bsr col_idx")?,
            values: GpuBuffer::from_slice(ctx, m.values(), "bsr values")?,
            row_order: GpuBuffer::from_slice(ctx, &longest_first(m.row_ptr()), "bsr row_order")?,
        })
    }
    /// Reads the arrays back and re-validates them.
    pub async fn download(&self, ctx: &Context) -> Result<Bsr> {
        Bsr::new(
            self.rows,
            self.cols,
            self.block_rows,
            self.block_cols,
            self.row_ptr.read(ctx).await?,
            self.col_idx.read(ctx).await?,
            self.values.read(ctx).await?,
        )
    }
    /// Bytes of the arrays (without the schedule).
    pub fn bytes(&self) -> u64 {
        self.row_ptr.bytes() + self.col_idx.bytes() + self.values.bytes()
    }
}

/// BSR values rounded to f16 and padded with zeros to a multiple of 4 halves.
fn bsr_values_f16(m: &Bsr) -> Result<Vec<half::f16>> {
    let mut v = to_f16(m.values(), "bsr values (f16)")?;
    v.resize(v.len().next_multiple_of(4), half::f16::ZERO);
    Ok(v)
}

impl GpuBsrF16 {
    /// Uploads `m` with its values rounded to f16 (a finite value beyond
    /// +-65504 is an [`Error::Limit`]).
    pub fn upload(ctx: &Context, m: &Bsr) -> Result<Self> {
        Ok(GpuBsrF16 {
            rows: m.rows(),
            cols: m.cols(),
            block_rows: m.block_rows(),
            block_cols: m.block_cols(),
            nnz_blocks: m.nnz_blocks(),
            row_ptr: GpuBuffer::from_slice(ctx, m.row_ptr(), "bsr row_ptr")?,
            col_idx: GpuBuffer::from_slice(ctx, m.col_idx(), "bsr col_idx")?,
            values: GpuBuffer::from_slice(ctx, &bsr_values_f16(m)?, "bsr values (f16)")?,
            row_order: GpuBuffer::from_slice(ctx, &longest_first(m.row_ptr()), "bsr row_order")?,
        })
    }

    /// Uploads only the values of `m` (rounded to f16) and shares the index
    /// buffers of `indices`, which must be `m` uploaded with [`GpuBsr::upload`]
    /// (shape, block shape and block count are checked; the indices themselves
    /// are not read back). The f32 and f16 forms of one matrix then cost one set
    /// of index buffers.
    pub fn sharing_indices(ctx: &Context, indices: &GpuBsr, m: &Bsr) -> Result<Self> {
        let same = (
            indices.rows,
            indices.cols,
            indices.block_rows,
            indices.block_cols,
            indices.nnz_blocks,
        ) == (m.rows(), m.cols(), m.block_rows(), m.block_cols(), m.nnz_blocks());
        if !same {
            return Err(Error::Shape(format!(
                "BSR {}x{} ({}x{} blocks, {} stored) cannot share the indices of BSR {}x{} ({}x{} blocks, {} stored)",
                m.rows(),
                m.cols(),
                m.block_rows(),
                m.block_cols(),
                m.nnz_blocks(),
                indices.rows,
                indices.cols,
                indices.block_rows,
                indices.block_cols,
                indices.nnz_blocks
            )));
        }
        Ok(GpuBsrF16 {
            rows: m.rows(),
            cols: m.cols(),
            block_rows: m.block_rows(),
            block_cols: m.block_cols(),
            nnz_blocks: m.nnz_blocks(),
            row_ptr: indices.row_ptr.clone(),
            col_idx: indices.col_idx.clone(),
            values: GpuBuffer::from_slice(ctx, &bsr_values_f16(m)?, "bsr values (f16)")?,
            row_order: indices.row_order.clone(),
        })
    }

    /// Reads the arrays back (values widened to f32) and re-validates them.
    pub async fn download(&self, ctx: &Context) -> Result<Bsr> {
        let values: Vec<half::f16> = self.values.read(ctx).await?;
        let n = self.nnz_blocks * self.block_rows * self.block_cols;
        Bsr::new(
            self.rows,
            self.cols,
            self.block_rows,
            self.block_cols,
            self.row_ptr.read(ctx).await?,
            self.col_idx.read(ctx).await?,
            values[..n].iter().map(|h| h.to_f32()).collect(),
        )
    }

    /// Bytes of the arrays (without the schedule).
    pub fn bytes(&self) -> u64 {
        self.row_ptr.bytes() + self.col_idx.bytes() + self.values.bytes()
    }
}
