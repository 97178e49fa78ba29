use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use crate::error::{checked_mul, Error, Result};
use crate::sparse::Matrix;

use super::Context;

/// A storage buffer on the GPU with its length in bytes.
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    bytes: u64,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuBuffer {
    /// Checks `bytes` against the device limits, naming the limit it breaks.
    pub fn check_size(ctx: &Context, bytes: u64, label: &str) -> Result<()> {
        let l = ctx.limits();
        if bytes > l.max_buffer_size {
            return Err(Error::Limit(format!(
                "{label}: {bytes} bytes exceed max_buffer_size = {}",
                l.max_buffer_size
            )));
        }
        if bytes > l.max_storage_buffer_binding_size {
            return Err(Error::Limit(format!(
                "{label}: {bytes} bytes exceed max_storage_buffer_binding_size = {}",
                l.max_storage_buffer_binding_size
            )));
        }
        Ok(())
    }

    /// An uninitialised storage buffer (at least 4 bytes, as bindings need).
    pub fn new(ctx: &Context, bytes: u64, label: &str) -> Result<Self> {
        Self::check_size(ctx, bytes, label)?;
        let size = bytes.max(4).next_multiple_of(4);
        let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        Ok(GpuBuffer { buffer, bytes })
    }

    /// A storage buffer holding `data`.
    pub fn from_slice<T: bytemuck::Pod>(ctx: &Context, data: &[T], label: &str) -> Result<Self> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let me = Self::new(ctx, bytes.len() as u64, label)?;
        if bytes.len().is_multiple_of(4) {
            ctx.queue().write_buffer(&me.buffer, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            ctx.queue().write_buffer(&me.buffer, 0, &padded);
        }
        Ok(me)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Copies the buffer back to the CPU (awaits the GPU).
    pub async fn read<T: bytemuck::Pod>(&self, ctx: &Context) -> Result<Vec<T>> {
        let size = self.buffer.size();
        let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
        enc.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, size);
        ctx.queue().submit([enc.finish()]);
        map_read(ctx, &staging).await?;
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading back {}: {e}", self.buffer.size())))?;
            let n = self.bytes as usize / std::mem::size_of::<T>();
            bytemuck::cast_slice::<u8, T>(&view[..n * std::mem::size_of::<T>()]).to_vec()
        };
        staging.unmap();
        ctx.take_errors()?;
        Ok(out)
    }

    /// [`GpuBuffer::read`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking<T: bytemuck::Pod>(&self, ctx: &Context) -> Result<Vec<T>> {
        pollster::block_on(self.read(ctx))
    }
}

/// Reads several buffers (whole, as u32 words) with ONE copy into one staging
/// buffer and ONE map: a single GPU round trip however many buffers, which is
/// what keeps re-pruning a whole model fast (a browser pays milliseconds per
/// `mapAsync`).
pub async fn read_many(ctx: &Context, buffers: &[&GpuBuffer]) -> Result<Vec<Vec<u32>>> {
    let mut offsets = Vec::with_capacity(buffers.len());
    let mut total = 0u64;
    for b in buffers {
        offsets.push(total);
        total += b.bytes().div_ceil(4) * 4;
    }
    if total == 0 {
        return Ok(vec![Vec::new(); buffers.len()]);
    }
    let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback (many)"),
        size: total,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("readback (many)"),
    });
    for (b, &off) in buffers.iter().zip(&offsets) {
        let n = b.bytes().div_ceil(4) * 4;
        if n > 0 {
            enc.copy_buffer_to_buffer(&b.buffer, 0, &staging, off, n);
        }
    }
    ctx.queue().submit([enc.finish()]);
    map_read(ctx, &staging).await?;
    let out = {
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back {total} bytes: {e}")))?;
        buffers
            .iter()
            .zip(&offsets)
            .map(|(b, &off)| {
                let words = (b.bytes() / 4) as usize;
                bytemuck::cast_slice::<u8, u32>(&view[off as usize..off as usize + 4 * words]).to_vec()
            })
            .collect()
    };
    staging.unmap();
    ctx.take_errors()?;
    Ok(out)
}

/// One-shot future completed by a `map_async` callback. Natively the device is
/// polled to completion first; in the browser the callback fires from the event
/// loop and wakes the awaiting task.
type MapSlot = Arc<Mutex<(Option<std::result::Result<(), wgpu::BufferAsyncError>>, Option<Waker>)>>;

struct MapFuture {
    slot: MapSlot,
}

impl Future for MapFuture {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut g = match self.slot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match g.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Maps `buffer` for reading and waits for it.
pub(crate) async fn map_read(ctx: &Context, buffer: &wgpu::Buffer) -> Result<()> {
    let slot = Arc::new(Mutex::new((None, None::<Waker>)));
    let s2 = slot.clone();
    buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let mut g = match s2.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.0 = Some(r);
        if let Some(w) = g.1.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    let _ = ctx;
    MapFuture { slot }
        .await
        .map_err(|e| Error::Gpu(format!("mapping a buffer for reading failed: {e}")))
}

/// A row-major f32 matrix on the GPU whose rows are padded to a multiple of 4
/// floats (`stride`), so kernels can read and write whole `vec4`s. Padding
/// columns are zero after an upload; kernels keep them finite but do not promise
/// zeros there (a bias epilogue writes the bias), and a download drops them.
#[derive(Clone, Debug)]
pub struct GpuMatrix {
    pub(crate) buf: GpuBuffer,
    rows: usize,
    cols: usize,
    stride: usize,
}

/// Row stride (in floats) of a GPU matrix with `cols` columns.
pub fn padded_stride(cols: usize) -> usize {
    cols.next_multiple_of(4).max(4)
}

impl GpuMatrix {
    /// An uninitialised `rows x cols` matrix.
    pub fn new(ctx: &Context, rows: usize, cols: usize, label: &str) -> Result<Self> {
        let stride = padded_stride(cols);
        let bytes = checked_mul(checked_mul(rows, stride, label)?, 4, label)? as u64;
        Ok(GpuMatrix {
            buf: GpuBuffer::new(ctx, bytes, label)?,
            rows,
            cols,
            stride,
        })
    }
    /// Uploads a matrix (padding its rows with zeros).
    pub fn upload(ctx: &Context, m: &Matrix, label: &str) -> Result<Self> {
        let stride = padded_stride(m.cols());
        checked_mul(checked_mul(m.rows(), stride, label)?, 4, label)?;
        let buf = if stride == m.cols() {
            GpuBuffer::from_slice(ctx, m.data(), label)?
        } else {
            let mut padded = vec![0.0f32; m.rows() * stride];
            // A matrix without columns is all padding (chunks_exact(0) panics).
            if m.cols() > 0 {
                for (dst, src) in padded.chunks_exact_mut(stride).zip(m.data().chunks_exact(m.cols())) {
                    dst[..m.cols()].copy_from_slice(src);
                }
            }
            GpuBuffer::from_slice(ctx, &padded, label)?
        };
        Ok(GpuMatrix {
            buf,
            rows: m.rows(),
            cols: m.cols(),
            stride,
        })
    }
    /// A view of an existing buffer as a `rows x cols` matrix; `cols` must be
    /// a multiple of 4 (no padding) and the buffer large enough.
    pub(crate) fn from_buffer(buf: GpuBuffer, rows: usize, cols: usize) -> Result<Self> {
        let stride = padded_stride(cols);
        if stride != cols || buf.bytes() < (rows * cols * 4) as u64 {
            return Err(crate::Error::Shape(format!(
                "a {}-byte buffer cannot hold an unpadded {rows}x{cols} matrix",
                buf.bytes()
            )));
        }
        Ok(GpuMatrix {
            buf,
            rows,
            cols,
            stride,
        })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Floats per row in the buffer (`cols` rounded up to a multiple of 4).
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn buffer(&self) -> &GpuBuffer {
        &self.buf
    }
    /// Downloads the matrix (awaits the GPU), dropping the row padding.
    pub async fn download(&self, ctx: &Context) -> Result<Matrix> {
        let data = self.buf.read::<f32>(ctx).await?;
        let data = if self.stride == self.cols {
            data
        } else {
            data.chunks_exact(self.stride)
                .flat_map(|row| row[..self.cols].iter().copied())
                .collect()
        };
        Matrix::new(self.rows, self.cols, data)
    }
    /// [`GpuMatrix::download`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download_blocking(&self, ctx: &Context) -> Result<Matrix> {
        pollster::block_on(self.download(ctx))
    }
}

/// Row stride (in halves) of an f16 GPU matrix with `cols` columns: a multiple
/// of 8, so every row is whole `vec4<f16>` pairs and starts 16-byte aligned.
pub fn padded_stride_f16(cols: usize) -> usize {
    cols.next_multiple_of(8).max(8)
}

/// The largest finite f16.
const F16_MAX: f32 = 65504.0;

/// `data` rounded to f16 (round to nearest even). A finite value beyond the f16
/// range is an error instead of becoming infinity; NaN and infinities pass.
pub(crate) fn to_f16(data: &[f32], what: &str) -> Result<Vec<half::f16>> {
    data.iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = half::f16::from_f32(v);
            if h.is_infinite() && v.is_finite() {
                return Err(Error::Limit(format!(
                    "{what}: value {v} at index {i} is beyond the f16 range (+-{F16_MAX})"
                )));
            }
            Ok(h)
        })
        .collect()
}

/// `m` with every element rounded to f16 and back: what an f16 upload of `m`
/// holds, and so the input a reference for the f16 kernels should use.
pub fn f16_rounded(m: &Matrix) -> Matrix {
    let data = m.data().iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    Matrix::new(m.rows(), m.cols(), data).expect("same shape")
}

/// A row-major f16 matrix on the GPU (the storage of the f16 kernels, which
/// accumulate in f32), rows padded to a multiple of 8 halves (`stride`, see
/// [`padded_stride_f16`]). Uploads round f32 to nearest f16 and zero the
/// padding; downloads widen to f32 exactly and drop the padding. Kernels keep
/// padding columns finite but do not promise zeros there.
#[derive(Clone, Debug)]
pub struct GpuMatrixF16 {
    pub(crate) buf: GpuBuffer,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl GpuMatrixF16 {
    /// An uninitialised `rows x cols` matrix.
    pub fn new(ctx: &Context, rows: usize, cols: usize, label: &str) -> Result<Self> {
        let stride = padded_stride_f16(cols);
        let bytes = checked_mul(checked_mul(rows, stride, label)?, 2, label)? as u64;
        Ok(GpuMatrixF16 {
            buf: GpuBuffer::new(ctx, bytes, label)?,
            rows,
            cols,
            stride,
        })
    }
    /// Uploads `m` rounded to f16 (padding rows with zeros). A finite value
    /// beyond +-65504 is an [`Error::Limit`].
    pub fn upload(ctx: &Context, m: &Matrix, label: &str) -> Result<Self> {
        let stride = padded_stride_f16(m.cols());
        let len = checked_mul(m.rows(), stride, label)?;
        checked_mul(len, 2, label)?;
        let halves = to_f16(m.data(), label)?;
        let mut padded = vec![half::f16::ZERO; len];
        if m.cols() > 0 {
            for (dst, src) in padded.chunks_exact_mut(stride).zip(halves.chunks_exact(m.cols())) {
                dst[..m.cols()].copy_from_slice(src);
            }
        }
        Ok(GpuMatrixF16 {
            buf: GpuBuffer::from_slice(ctx, &padded, label)?,
            rows: m.rows(),
            cols: m.cols(),
            stride,
        })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Halves per row in the buffer (`cols` rounded up to a multiple of 8).
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn buffer(&self) -> &GpuBuffer {
        &self.buf
    }
    /// Downloads the matrix as f32 (awaits the GPU), dropping the row padding.
    pub async fn download(&self, ctx: &Context) -> Result<Matrix> {
        let data = self.buf.read::<half::f16>(ctx).await?;
        let data = data
            .chunks_exact(self.stride)
            .flat_map(|row| row[..self.cols].iter().map(|h| h.to_f32()))
            .collect();
        Matrix::new(self.rows, self.cols, data)
    }
    /// [`GpuMatrixF16::download`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download_blocking(&self, ctx: &Context) -> Result<Matrix> {
        pollster::block_on(self.download(ctx))
    }
}

/// A row-major matrix on the GPU in either storage type: what the convolution
/// kernels take, so one function serves f32 and f16 activations.
pub trait GpuTensor {
    /// True for f16 storage ([`GpuMatrixF16`]), false for f32 ([`GpuMatrix`]).
    const F16: bool;
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Elements per row in the buffer.
    fn stride(&self) -> usize;
    fn buffer(&self) -> &GpuBuffer;
}

macro_rules! impl_gpu_tensor {
    ($t:ty, $f16:expr) => {
        impl GpuTensor for $t {
            const F16: bool = $f16;
            fn rows(&self) -> usize {
                self.rows
            }
            fn cols(&self) -> usize {
                self.cols
            }
            fn stride(&self) -> usize {
                self.stride
            }
            fn buffer(&self) -> &GpuBuffer {
                &self.buf
            }
        }
    };
}
impl_gpu_tensor!(GpuMatrix, false);
impl_gpu_tensor!(GpuMatrixF16, true);
