//! Block-sparse SpMM `Y = act(W_bsr X + bias)` (`spmm_bsr.wgsl`).

pub mod coop;
pub mod f16;
mod format;

pub use format::{longest_first, GpuBsr, GpuBsrF16};

use crate::error::{Error, Result};

use super::gemm::check_product;
use super::{Context, Dispatch, Epilogue, GpuBuffer, GpuMatrix, GpuTensor, KernelDef, PipelineKey};

/// The thread layout of the BSR kernel for one block shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BsrTile {
    /// Threads along the columns.
    pub wg_x: u32,
    /// vec4 columns per thread (<= 4).
    pub tn4: u32,
    /// X rows staged per chunk (<= block columns).
    pub kc: u32,
}

impl BsrTile {
    /// A layout for `br x bc` blocks and an X of `x_stride4` vec4 columns: about
    /// 128 threads (64 on CPU adapters), no more columns than X has, and about
    /// 8 KiB of X staged per chunk.
    pub fn choose(ctx: &Context, br: usize, bc: usize, x_stride4: usize) -> BsrTile {
        Self::choose_for(ctx.is_cpu(), br, bc, x_stride4)
    }

    /// [`BsrTile::choose`] for a CPU adapter or not.
    pub fn choose_for(cpu: bool, br: usize, bc: usize, x_stride4: usize) -> BsrTile {
        let wg_y = br.div_ceil(4) as u32;
        let (threads, tn4) = if cpu { (64u32, 2u32) } else { (128, 4) };
        let mut wg_x = (threads / wg_y).max(1).next_power_of_two();
        let need = (x_stride4 as u32).div_ceil(tn4).next_power_of_two();
        while wg_x > 1 && wg_x / 2 >= need {
            wg_x /= 2;
        }
        let tn4 = tn4.min((x_stride4 as u32).div_ceil(wg_x)).max(1);
        // Stage about 8 KiB of X per chunk: measured on an H100 (4096^3, 90%),
        // larger chunks cost occupancy (32x32 blocks: KC 8 0.55 ms, KC 20
        // 0.72 ms; 16x16: KC 4 0.61 ms, KC 8 1.02 ms).
        let per_row = 16 * wg_x * tn4;
        let kc = (8192 / per_row).clamp(1, bc as u32);
        BsrTile { wg_x, tn4, kc }
    }

    pub(crate) fn constants(self, br: usize, bc: usize, ep: &Epilogue) -> Vec<(&'static str, u32)> {
        let wg_y = br.div_ceil(4) as u32;
        let mut c = vec![
            ("BR", br as u32),
            ("BC", bc as u32),
            ("KC", self.kc),
            ("WG_X", self.wg_x),
            ("WG_Y", wg_y),
            ("TN4", self.tn4),
            ("WS_LEN", bc as u32 * wg_y),
            ("XS_LEN", self.kc * self.wg_x * self.tn4),
        ];
        c.extend(ep.constants());
        c
    }

    pub(crate) fn validate(self, ctx: &Context, br: usize, bc: usize) -> Result<()> {
        let wg_y = br.div_ceil(4) as u32;
        let l = ctx.limits();
        let smem = 16 * (bc as u32 * wg_y + self.kc * self.wg_x * self.tn4);
        let threads = self.wg_x * wg_y;
        if self.tn4 == 0 || self.tn4 > 4 || self.kc == 0 || self.kc as usize > bc {
            return Err(Error::Shape(format!(
                "unsupported BSR tile {self:?} for {br}x{bc} blocks"
            )));
        }
        if threads > l.max_compute_invocations_per_workgroup
            || self.wg_x > l.max_compute_workgroup_size_x
            || wg_y > l.max_compute_workgroup_size_y
            || smem > l.max_compute_workgroup_storage_size
        {
            return Err(Error::Limit(format!(
                "BSR tile {self:?} for {br}x{bc} blocks needs {threads} invocations and {smem} bytes of workgroup memory; \
                 the device allows {} and {}",
                l.max_compute_invocations_per_workgroup, l.max_compute_workgroup_storage_size
            )));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    x_stride4: u32,
    _pad: u32,
}

/// What every BSR kernel binds of W, whatever the type of its values.
pub(crate) struct BsrBuffers<'a> {
    pub rows: usize,
    pub cols: usize,
    pub block_rows: usize,
    pub nnz_blocks: usize,
    pub row_ptr: &'a GpuBuffer,
    pub col_idx: &'a GpuBuffer,
    pub values: &'a GpuBuffer,
    pub row_order: &'a GpuBuffer,
}

macro_rules! bsr_buffers {
    ($t:ty) => {
        impl $t {
            pub(crate) fn buffers(&self) -> BsrBuffers<'_> {
                BsrBuffers {
                    rows: self.rows,
                    cols: self.cols,
                    block_rows: self.block_rows,
                    nnz_blocks: self.nnz_blocks,
                    row_ptr: &self.row_ptr,
                    col_idx: &self.col_idx,
                    values: &self.values,
                    row_order: &self.row_order,
                }
            }
        }
    };
}
bsr_buffers!(GpuBsr);
bsr_buffers!(GpuBsrF16);

/// Prepares one BSR kernel (`spmm_bsr`, its f16 twin, the cooperative one):
/// the uniform (M, K, X's vec4 stride), W's buffers (placeholders for a W
/// without blocks), X, Y and the bias, `groups_x` workgroups across the
/// columns and one row of workgroups per block row. The caller has checked
/// the shapes and built `constants` for its tile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_kernel<X: GpuTensor>(
    ctx: &Context,
    kernel: &'static KernelDef,
    w: BsrBuffers,
    x: &X,
    y: &X,
    ep: &Epilogue,
    constants: &[(&'static str, u32)],
    groups_x: u32,
) -> Result<Dispatch> {
    let grid_rows = w.rows.div_ceil(w.block_rows) as u32;
    if grid_rows == 0 {
        return Err(Error::Shape("BSR matrix with no rows".into()));
    }
    let params = Params {
        m: w.rows as u32,
        k: w.cols as u32,
        x_stride4: (x.stride() / 4) as u32,
        _pad: 0,
    };
    let u = ctx.uniform(&params, &format!("{} params", kernel.name));
    let bias = ep.bias_buffer(ctx, w.rows)?;
    let key = PipelineKey::new(kernel, constants);
    let (values, col_idx) = if w.nnz_blocks == 0 {
        (ctx.dummy_buffer(), ctx.dummy_buffer())
    } else {
        (w.values.raw().clone(), w.col_idx.raw().clone())
    };
    ctx.prepare(
        &key,
        &[
            &u,
            w.row_ptr.raw(),
            &col_idx,
            &values,
            w.row_order.raw(),
            x.buffer().raw(),
            y.buffer().raw(),
            &bias,
        ],
        [groups_x, grid_rows, 1],
    )
}

/// Prepares `y = act(w x + bias)` with an explicit tile.
pub fn prepare_with(
    ctx: &Context,
    w: &GpuBsr,
    x: &GpuMatrix,
    y: &GpuMatrix,
    ep: &Epilogue,
    tile: BsrTile,
) -> Result<Dispatch> {
    check_product(w.rows, w.cols, x, y)?;
    tile.validate(ctx, w.block_rows, w.block_cols)?;
    let groups_x = ((x.stride() / 4) as u32).div_ceil(tile.wg_x * tile.tn4);
    let c = tile.constants(w.block_rows, w.block_cols, ep);
    prepare_kernel(ctx, &SPMM_BSR, w.buffers(), x, y, ep, &c, groups_x)
}

/// Prepares `y = act(w x + bias)` with the tile [`BsrTile::choose`] picks.
pub fn prepare(ctx: &Context, w: &GpuBsr, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<Dispatch> {
    let tile = BsrTile::choose(ctx, w.block_rows, w.block_cols, x.stride() / 4);
    prepare_with(ctx, w, x, y, ep, tile)
}

/// Computes `y = act(w x + bias)` (submitted; read `y` to wait for it).
pub fn run(ctx: &Context, w: &GpuBsr, x: &GpuMatrix, y: &GpuMatrix, ep: &Epilogue) -> Result<()> {
    let d = prepare(ctx, w, x, y, ep)?;
    ctx.submit(&[&d]);
    Ok(())
}

/// Block shapes the shader tests compile the BSR kernels for: the patterns
/// the CLI offers, and odd ones.
pub(crate) const TEST_BLOCKS: [(usize, usize); 7] = [(4, 4), (8, 8), (16, 16), (32, 32), (1, 4), (2, 8), (32, 16)];

/// (block shape, tile) pairs the host may build: the tile [`BsrTile::choose`]
/// picks on CPU adapters and GPUs, for narrow and wide X.
pub(crate) fn test_tiles() -> Vec<((usize, usize), BsrTile)> {
    let mut v = Vec::new();
    for (br, bc) in TEST_BLOCKS {
        for cpu in [false, true] {
            for x4 in [1, 13, 1024] {
                let t = BsrTile::choose_for(cpu, br, bc, x4);
                if !v.contains(&((br, bc), t)) {
                    v.push(((br, bc), t));
                }
            }
        }
    }
    v
}

fn bsr_specialisations() -> Vec<Constants> {
    test_tiles()
        .into_iter()
        .flat_map(|((br, bc), t)| across_epilogues(t.constants(br, bc, &Epilogue::default())))
        .collect()
}

// Kernel descriptors (see `gpu::KernelDef`).

use crate::gpu::{across_epilogues, Constants, WgslSource, RO, RW, UNIFORM};

/// The family's shader-core source over a storage type `T` (f32 here, f16 in
/// [`f16`]).
const SPMM_BSR_WGSL: &str = include_str!("spmm_bsr.wgsl");
crate::gpu::wgsl::generated!(spmm_bsr_f32_source, SPMM_BSR_WGSL, &[]);
crate::gpu::wgsl::generated!(pub(crate) f16_source, SPMM_BSR_WGSL, &[("T", "f16")]);

pub static SPMM_BSR: KernelDef = KernelDef::new(
    "spmm_bsr",
    WgslSource::Generated(spmm_bsr_f32_source),
    &[UNIFORM, RO, RO, RO, RO, RO, RW, RO],
)
.specialised(bsr_specialisations);
pub const KERNELS: &[&KernelDef] = &[&SPMM_BSR];
