//! N:M resident on the GPU: the layout of [`crate::sparse::NmMatrix`].

use crate::error::Result;
use crate::sparse::NmMatrix;

use crate::gpu::{Context, GpuBuffer};

/// N:M on the GPU: `values` and packed `indices` as in [`NmMatrix`].
#[derive(Clone, Debug)]
pub struct GpuNm {
    pub rows: usize,
    pub cols: usize,
    pub n: usize,
    pub m: usize,
    pub values: GpuBuffer,
    pub indices: GpuBuffer,
}

impl GpuNm {
    pub fn upload(ctx: &Context, m: &NmMatrix) -> Result<Self> {
        Ok(GpuNm {
            rows: m.rows(),
            cols: m.cols(),
            n: m.n(),
            m: m.m(),
            values: GpuBuffer::from_slice(ctx, m.values(), "nm values")?,
            indices: GpuBuffer::from_slice(ctx, m.indices(), "nm indices")?,
        })
    }
    /// Reads the arrays back and re-validates them.
    pub async fn download(&self, ctx: &Context) -> Result<NmMatrix> {
        NmMatrix::new(
            self.rows,
            self.cols,
            self.n,
            self.m,
            self.values.read(ctx).await?,
            self.indices.read(ctx).await?,
        )
    }
    pub fn bytes(&self) -> u64 {
        self.values.bytes() + self.indices.bytes()
    }
}
