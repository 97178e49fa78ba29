//! CSR resident on the GPU: the layout of [`crate::sparse::Csr`].

use crate::error::Result;
use crate::sparse::Csr;

use crate::gpu::{Context, GpuBuffer};

/// CSR on the GPU: `row_ptr` (rows + 1), `col_idx` and `values` (nnz each).
#[derive(Clone, Debug)]
pub struct GpuCsr {
    pub rows: usize,
    pub cols: usize,
    pub nnz: usize,
    pub row_ptr: GpuBuffer,
    pub col_idx: GpuBuffer,
    pub values: GpuBuffer,
}

impl GpuCsr {
    pub fn upload(ctx: &Context, m: &Csr) -> Result<Self> {
        Ok(GpuCsr {
            rows: m.rows(),
            cols: m.cols(),
            nnz: m.nnz(),
            row_ptr: GpuBuffer::from_slice(ctx, m.row_ptr(), "csr row_ptr")?,
            col_idx: GpuBuffer::from_slice(ctx, m.col_idx(), "csr col_idx")?,
            values: GpuBuffer::from_slice(ctx, m.values(), "csr values")?,
        })
    }
    /// Reads the arrays back and re-validates them.
    pub async fn download(&self, ctx: &Context) -> Result<Csr> {
        Csr::new(
            self.rows,
            self.cols,
            self.row_ptr.read(ctx).await?,
            self.col_idx.read(ctx).await?,
            self.values.read(ctx).await?,
        )
    }
    /// Bytes of the three arrays.
    pub fn bytes(&self) -> u64 {
        self.row_ptr.bytes() + self.col_idx.bytes() + self.values.bytes()
    }
}
