//! The CUDA runtime of the 2:4 path: context, NVRTC-compiled kernels, device
//! matrices, our `mma.sp` SpMM and GPU compression, cuBLAS dense, timing.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use cudarc::nvrtc;

use super::pack::{self, Compressed24, Half, MetaLayout};
use crate::error::{Error, Result};

/// The CUDA C++ source of every kernel of this backend.
pub const SOURCE: &str = include_str!("sparse24.cu");

fn cuda<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

/// A tile configuration of the SpMM (the `.cu` file instantiates the same table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub name: &'static str,
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub threads: u32,
    pub stages: u32,
}

impl Tile {
    /// Whether a device whose blocks may opt into `smem_optin` bytes of shared
    /// memory can run this tile (1 KB kept for static shared memory and alignment).
    pub fn fits(&self, smem_optin: u32) -> bool {
        self.smem() + 1024 <= smem_optin
    }

    /// Dynamic shared memory of one block, bytes.
    pub fn smem(&self) -> u32 {
        self.stages * (self.bm * (self.bk / 2) * 2 + self.bk * self.bn * 2 + (self.bm / 16) * (self.bk / 32) * 16 * 4)
    }
}

/// Large tiles for big GEMMs, small ones for the thin shapes of batch-1
/// inference (name: BMxBNxBK, warps, stages `s`, resident blocks `b`), largest
/// first: [`CudaRuntime::choose_tile`] takes the first that gives every SM a block.
/// Measured on the H100 (BENCHMARKS.md): BK 128 wins on large squares, 128x64
/// and 64x64 on the Lite0 shapes.
pub const TILES: [Tile; 6] = [
    Tile {
        name: "256x128x128w4x2s3",
        bm: 256,
        bn: 128,
        bk: 128,
        threads: 256,
        stages: 3,
    },
    Tile {
        name: "128x256x128w2x4s2",
        bm: 128,
        bn: 256,
        bk: 128,
        threads: 256,
        stages: 2,
    },
    Tile {
        name: "256x128x64w4x2",
        bm: 256,
        bn: 128,
        bk: 64,
        threads: 256,
        stages: 4,
    },
    Tile {
        name: "128x128x64w2x2",
        bm: 128,
        bn: 128,
        bk: 64,
        threads: 128,
        stages: 4,
    },
    Tile {
        name: "128x64x64w2x2b3",
        bm: 128,
        bn: 64,
        bk: 64,
        threads: 128,
        stages: 4,
    },
    Tile {
        name: "64x64x64w2x2",
        bm: 64,
        bn: 64,
        bk: 64,
        threads: 128,
        stages: 4,
    },
];

/// Hopper (sm_90a) tiles on the sparse warpgroup MMA (`wgmma.mma_async.sp`):
/// BM = 64 rows per warpgroup, BN the instruction's N.
pub const TILES_SM90: [Tile; 3] = [
    Tile {
        name: "wgsa128x256x64s4",
        bm: 128,
        bn: 256,
        bk: 64,
        threads: 256,
        stages: 4,
    },
    Tile {
        name: "wgsa128x256x64s5",
        bm: 128,
        bn: 256,
        bk: 64,
        threads: 256,
        stages: 5,
    },
    Tile {
        name: "wgsa128x128x128s4",
        bm: 128,
        bn: 128,
        bk: 128,
        threads: 256,
        stages: 4,
    },
];

/// The tile for an `m x k x n` product on a GPU of compute capability `cc` with
/// `sms` multiprocessors, from the H100 measurements in BENCHMARKS.md. On Hopper:
/// the sparse warpgroup MMA with TMA loads (`wgsa`: 128x256 tiles when they give
/// every SM a block, 128x128 with K steps of 128 for smaller outputs when K >= 256);
/// otherwise (and on Ampere/Ada) the largest `mma.sp` tile that still gives every
/// SM a block, the smallest when none does. Only tiles whose shared memory fits
/// `smem_optin` (the device's opt-in limit per block) are considered.
pub fn choose_tile(cc: (i32, i32), sms: u32, smem_optin: u32, m: usize, k: usize, n: usize) -> &'static Tile {
    let blocks = |t: &Tile| m.div_ceil(t.bm as usize) * n.div_ceil(t.bn as usize);
    if cc == (9, 0) {
        let by_name = |name: &str| TILES_SM90.iter().find(|t| t.name == name && t.fits(smem_optin));
        if let (Some(big), Some(mid)) = (by_name("wgsa128x256x64s5"), by_name("wgsa128x128x128s4")) {
            if blocks(big) >= sms as usize {
                return big;
            }
            if k >= 256 {
                return mid;
            }
        }
    }
    for t in TILES.iter().filter(|t| t.fits(smem_optin)) {
        if blocks(t) >= sms as usize {
            return t;
        }
    }
    &TILES[TILES.len() - 1]
}

/// A tiled TMA descriptor of 16-bit elements at `ptr`: `dims` (innermost first),
/// byte `strides` of dims 1.., `boxd` elements per box; out-of-range elements read
/// as zeros.
fn tensor_map(
    ptr: sys::CUdeviceptr,
    dims: &[u64],
    strides: &[u64],
    boxd: &[u32],
    swizzle: sys::CUtensorMapSwizzle,
    l2: sys::CUtensorMapL2promotion,
    what: &str,
) -> Result<TmaDesc> {
    let rank = dims.len();
    if strides.len() + 1 != rank || boxd.len() != rank {
        return Err(Error::Cuda(format!("tensor map for {what}: inconsistent rank")));
    }
    let es = vec![1u32; rank];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every array has the rank's length (checked above); ptr is a live
    // device allocation of the elements described.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT16,
            rank as u32,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxd.as_ptr(),
            es.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            swizzle,
            l2,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(Error::Cuda(format!("cuTensorMapEncodeTiled for {what}: {r:?}")));
    }
    // SAFETY: CUtensorMap is 16 u64 (128 bytes), fully written on success.
    Ok(TmaDesc(unsafe { map.assume_init() }.opaque))
}

/// A `CUtensorMap` passed to a kernel by value (`const __grid_constant__`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TmaDesc([u64; 16]);
// SAFETY: plain bytes, laid out as the kernel's `TmaDesc` parameter.
unsafe impl cudarc::driver::DeviceRepr for TmaDesc {}

/// A dense row-major matrix of 16-bit values on the GPU; rows are padded to a
/// multiple of 8 elements (16 bytes) for vector loads.
pub struct DeviceHalf {
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
    pub dtype: Half,
    pub data: CudaSlice<u16>,
}

/// A 2:4-compressed matrix on the GPU (layout: [`pack`]).
pub struct Device24 {
    pub rows: usize,
    pub cols: usize,
    pub mp: usize,
    pub kp: usize,
    pub dtype: Half,
    pub values: CudaSlice<u16>,
    pub meta: CudaSlice<u32>,
}

/// What the one-instruction probe found: for each metadata layout, the largest
/// relative error of `mma.sp` on registers packed that way against float64.
#[derive(Clone, Debug)]
pub struct Probe {
    pub split_columns: f64,
    pub row_per_thread: f64,
}

impl Probe {
    /// The layout the hardware agrees with (relative error below 1e-3), if one.
    pub fn hardware_layout(&self) -> Option<MetaLayout> {
        if self.split_columns < 1e-3 {
            Some(MetaLayout::SplitColumns)
        } else if self.row_per_thread < 1e-3 {
            Some(MetaLayout::RowPerThread)
        } else {
            None
        }
    }
}

/// An NVIDIA GPU with sparse tensor cores (sm_80 or newer) and our kernels on it.
pub struct CudaRuntime {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    cc: (i32, i32),
    sms: u32,
    funcs: HashMap<String, CudaFunction>,
    blas: CudaBlas,
    tiles: Vec<&'static Tile>,
    smem_optin: u32,
    wgmma_peak: std::cell::Cell<f64>,
}

/// Block rows per rasterisation group (`WGSPARSE_RASTER_GROUP`, default 8).
fn raster_group() -> u32 {
    std::env::var("WGSPARSE_RASTER_GROUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&g| (1..=1024).contains(&g))
        .unwrap_or(8)
}

fn arch_of(cc: (i32, i32)) -> &'static str {
    match cc {
        // Hopper: the architecture-specific target, for the sparse warpgroup MMA.
        (9, 0) => "compute_90a",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        // Newer than this list: PTX for the newest architecture known here is
        // JIT-compiled forward by the driver.
        (major, _) if major >= 10 => "compute_100",
        (9, _) => "compute_90",
        _ => "compute_80",
    }
}

impl CudaRuntime {
    /// Opens GPU `ordinal`: loads the driver, NVRTC and cuBLAS (a clear error when
    /// any is missing), refuses GPUs below sm_80, compiles the kernels for the GPU.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: these only try to dlopen the libraries.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::Cuda(
                "the NVIDIA driver library (libcuda.so) was not found".into(),
            ));
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(Error::Cuda(
                "NVRTC (libnvrtc.so) was not found: add the CUDA toolkit's lib directory to LD_LIBRARY_PATH".into(),
            ));
        }
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::Cuda(
                "cuBLAS (libcublas.so) was not found: add the CUDA toolkit's lib directory to LD_LIBRARY_PATH".into(),
            ));
        }
        let count = CudaContext::device_count().map_err(cuda("counting CUDA devices"))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda(format!("no CUDA device {ordinal} ({count} present)")));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda("creating the CUDA context"))?;
        let name = ctx.name().map_err(cuda("device name"))?;
        let cc = ctx.compute_capability().map_err(cuda("compute capability"))?;
        if cc.0 < 8 {
            return Err(Error::Cuda(format!(
                "{name} is sm_{}{}: the 2:4 sparse tensor cores (mma.sp) need sm_80 (Ampere) or newer",
                cc.0, cc.1
            )));
        }
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(cuda("SM count"))? as u32;
        // Shared memory a block may opt into: 227 KB on Hopper, 163 KB on A100,
        // 99 KB on consumer Ampere/Ada; tiles that need more are not loaded.
        let smem_optin = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(cuda("shared memory per block"))? as u32;
        // One stream, so cudarc's per-buffer event tracking is not needed (and
        // would get in the way of graph capture).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let opts = nvrtc::CompileOptions {
            arch: Some(arch_of(cc)),
            options: vec![
                format!("-DMETA_LAYOUT={}", pack::META_LAYOUT as i32),
                format!("-DRASTER_GROUP={}", raster_group()),
                "-std=c++17".into(),
            ],
            ..Default::default()
        };
        let ptx = nvrtc::compile_ptx_with_opts(SOURCE, opts)
            .map_err(|e| Error::Cuda(format!("NVRTC could not compile src/cuda/sparse24.cu: {e:?}")))?;
        let module = ctx.load_module(ptx).map_err(cuda("loading the PTX module"))?;
        let mut funcs = HashMap::new();
        for n in [
            "compress24_f16",
            "compress24_bf16",
            "mma_sp_probe_f16",
            "peak_mma_sp_f16",
            "peak_mma_f16",
        ] {
            funcs.insert(
                n.to_string(),
                module.load_function(n).map_err(cuda("loading a kernel"))?,
            );
        }
        let tiles: Vec<&'static Tile> = if cc == (9, 0) {
            TILES_SM90
                .iter()
                .chain(TILES.iter())
                .filter(|t| t.fits(smem_optin))
                .collect()
        } else {
            TILES.iter().filter(|t| t.fits(smem_optin)).collect()
        };
        if tiles.is_empty() {
            return Err(Error::Cuda(format!(
                "{name} lets a block use {smem_optin} bytes of shared memory, less than any SpMM tile needs"
            )));
        }
        for t in &tiles {
            for h in ["f16", "bf16"] {
                let n = format!("spmm24_{h}_{}", t.name);
                let f = module.load_function(&n).map_err(cuda("loading a kernel"))?;
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    t.smem() as i32,
                )
                .map_err(cuda("raising the shared-memory limit"))?;
                funcs.insert(n, f);
            }
        }
        if cc == (9, 0) {
            for n in ["wgmma_sp_probe_sw128", "peak_wgmma_sp_f16"] {
                funcs.insert(
                    n.to_string(),
                    module.load_function(n).map_err(cuda("loading a kernel"))?,
                );
            }
        }
        let blas = CudaBlas::new(stream.clone()).map_err(cuda("creating the cuBLAS handle"))?;
        Ok(CudaRuntime {
            ctx,
            stream,
            name,
            cc,
            sms,
            funcs,
            blas,
            tiles,
            smem_optin,
            wgmma_peak: std::cell::Cell::new(0.0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// What ptxas says about our kernels for this GPU (registers, spills, and on
    /// Hopper any serialisation of the warpgroup MMAs): compiles the source to
    /// SASS with NVRTC and returns the log lines that mention a kernel.
    pub fn ptxas_log(&self) -> Result<String> {
        use cudarc::nvrtc::result as nr;
        let arch = format!(
            "--gpu-architecture=sm_{}{}{}",
            self.cc.0,
            self.cc.1,
            if self.cc == (9, 0) { "a" } else { "" }
        );
        let src = std::ffi::CString::new(SOURCE).map_err(|e| Error::Cuda(format!("source: {e}")))?;
        let prog = nr::create_program(&src, None).map_err(cuda("NVRTC program"))?;
        let opts = [
            arch,
            format!("-DMETA_LAYOUT={}", pack::META_LAYOUT as i32),
            "-std=c++17".to_string(),
            "--ptxas-options=-v".to_string(),
        ];
        // SAFETY: prog is a live NVRTC program; options are plain strings.
        let compiled = unsafe { nr::compile_program(prog, &opts) };
        let log = unsafe { nr::get_program_log(prog) }.map_err(cuda("NVRTC log"))?;
        let _ = unsafe { nr::destroy_program(prog) };
        let text: String = log.iter().map(|&c| c as u8 as char).collect();
        compiled.map_err(|e| Error::Cuda(format!("NVRTC: {e:?}: {text}")))?;
        Ok(text
            .lines()
            .filter(|l| l.contains("wgmma") || l.contains("spill") || l.contains("Used") || l.contains("Compiling"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The sparse warpgroup-MMA ceiling measured by [`Self::peak_rates`] (Hopper; 0 elsewhere).
    pub fn wgmma_peak(&self) -> f64 {
        self.wgmma_peak.get()
    }
    /// Every SpMM tile this GPU runs (on Hopper the warpgroup-MMA tiles first).
    pub fn tiles(&self) -> &[&'static Tile] {
        &self.tiles
    }
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }
    pub fn multiprocessors(&self) -> u32 {
        self.sms
    }
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    fn func(&self, name: &str) -> Result<&CudaFunction> {
        self.funcs
            .get(name)
            .ok_or_else(|| Error::Cuda(format!("kernel {name} is not loaded")))
    }

    /// Registers, spilled bytes and resident blocks per SM of a tile's kernel.
    pub fn kernel_info(&self, t: &Tile, dtype: Half) -> Result<String> {
        let f = self.func(&format!("spmm24_{}_{}", dtype.name(), t.name))?;
        let regs = f.num_regs().map_err(cuda("attribute"))?;
        let local = f.local_size_bytes().map_err(cuda("attribute"))?;
        let blocks = f
            .occupancy_max_active_blocks_per_multiprocessor(t.threads, t.smem() as usize, None)
            .map_err(cuda("occupancy"))?;
        Ok(format!(
            "{regs} regs, {local} B local, {blocks} blocks/SM, {} KB smem",
            t.smem() / 1024
        ))
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda("synchronizing"))
    }

    /// Uploads a row-major `rows x cols` matrix of 16-bit values (`ld` per row on
    /// the host); on the GPU each row is padded to a multiple of 8 with zeros.
    pub fn upload(&self, host: &[u16], rows: usize, cols: usize, ld: usize, dtype: Half) -> Result<DeviceHalf> {
        if rows == 0 || cols == 0 || ld < cols || host.len() < (rows - 1) * ld + cols {
            return Err(Error::shape(format!(
                "upload of a {rows}x{cols} matrix (leading dimension {ld}) from {} values",
                host.len()
            )));
        }
        let dld = cols.div_ceil(8) * 8;
        let mut padded = vec![0u16; rows * dld];
        for r in 0..rows {
            padded[r * dld..r * dld + cols].copy_from_slice(&host[r * ld..r * ld + cols]);
        }
        let data = self.stream.clone_htod(&padded).map_err(cuda("upload"))?;
        Ok(DeviceHalf {
            rows,
            cols,
            ld: dld,
            dtype,
            data,
        })
    }

    /// A zeroed device matrix.
    pub fn zeros(&self, rows: usize, cols: usize, dtype: Half) -> Result<DeviceHalf> {
        let ld = cols.div_ceil(8) * 8;
        let data = self.stream.alloc_zeros::<u16>(rows * ld).map_err(cuda("allocation"))?;
        Ok(DeviceHalf {
            rows,
            cols,
            ld,
            dtype,
            data,
        })
    }

    /// Fills a device matrix (padding included) with one 16-bit pattern (poison).
    pub fn fill(&self, m: &mut DeviceHalf, bits: u16) -> Result<()> {
        let host = vec![bits; m.data.len()];
        self.stream.memcpy_htod(&host, &mut m.data).map_err(cuda("fill"))
    }

    /// Downloads a device matrix as `rows x cols` (padding dropped).
    pub fn download(&self, m: &DeviceHalf) -> Result<Vec<u16>> {
        let all = self.stream.clone_dtoh(&m.data).map_err(cuda("download"))?;
        let mut out = Vec::with_capacity(m.rows * m.cols);
        for r in 0..m.rows {
            out.extend_from_slice(&all[r * m.ld..r * m.ld + m.cols]);
        }
        Ok(out)
    }

    /// Uploads a matrix compressed on the CPU.
    pub fn upload24(&self, c: &Compressed24) -> Result<Device24> {
        if c.layout != pack::META_LAYOUT {
            return Err(Error::Invalid(format!(
                "2:4 metadata in layout {:?}; the kernels read {:?}",
                c.layout,
                pack::META_LAYOUT
            )));
        }
        Ok(Device24 {
            rows: c.rows,
            cols: c.cols,
            mp: c.mp,
            kp: c.kp,
            dtype: c.dtype,
            values: self.stream.clone_htod(&c.values).map_err(cuda("upload"))?,
            meta: self.stream.clone_htod(&c.meta).map_err(cuda("upload"))?,
        })
    }

    /// Downloads a compressed matrix (to compare with the CPU compression).
    pub fn download24(&self, d: &Device24) -> Result<Compressed24> {
        Ok(Compressed24 {
            rows: d.rows,
            cols: d.cols,
            mp: d.mp,
            kp: d.kp,
            dtype: d.dtype,
            layout: pack::META_LAYOUT,
            values: self.stream.clone_dtoh(&d.values).map_err(cuda("download"))?,
            meta: self.stream.clone_dtoh(&d.meta).map_err(cuda("download"))?,
        })
    }

    /// Magnitude-2:4 compression of a dense device matrix, on the GPU (the CPU
    /// reference's tie rule); non-finite input is an error.
    pub fn compress(&self, a: &DeviceHalf) -> Result<Device24> {
        let (mp, kp) = pack::padded(a.rows, a.cols);
        let mut out = Device24 {
            rows: a.rows,
            cols: a.cols,
            mp,
            kp,
            dtype: a.dtype,
            values: self
                .stream
                .alloc_zeros::<u16>(mp * kp / 2)
                .map_err(cuda("allocation"))?,
            meta: self
                .stream
                .alloc_zeros::<u32>(mp / 16 * kp / 32 * 16)
                .map_err(cuda("allocation"))?,
        };
        let mut bad = self.stream.alloc_zeros::<i32>(1).map_err(cuda("allocation"))?;
        self.compress_into(a, &mut out, &mut bad)?;
        let flag = self.stream.clone_dtoh(&bad).map_err(cuda("download"))?;
        if flag[0] != 0 {
            return Err(Error::Invalid(
                "2:4 compression input holds NaN or infinite values; weights must be finite".into(),
            ));
        }
        Ok(out)
    }

    /// Launches the compression of `a` into `out` (same shape; every value and
    /// metadata word is written) without waiting; `bad` is set to 1 on non-finite input.
    pub fn compress_into(&self, a: &DeviceHalf, out: &mut Device24, bad: &mut CudaSlice<i32>) -> Result<()> {
        if (out.rows, out.cols, out.dtype) != (a.rows, a.cols, a.dtype) {
            return Err(Error::shape(
                "2:4 compression into a matrix of another shape or type".to_string(),
            ));
        }
        if out.mp > 65535 {
            return Err(Error::Limit(format!(
                "2:4 compression of {} rows (at most 65535)",
                a.rows
            )));
        }
        let f = self.func(match a.dtype {
            Half::F16 => "compress24_f16",
            Half::Bf16 => "compress24_bf16",
        })?;
        let quads = (out.kp / 16) as u32;
        let cfg = LaunchConfig {
            grid_dim: (quads.div_ceil(128), out.mp as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (m, k, ld, mpi, kpi) = (a.rows as i32, a.cols as i32, a.ld as i32, out.mp as i32, out.kp as i32);
        let mut launch = self.stream.launch_builder(f);
        // The kernel writes the metadata as 16-bit halves of the u32 words.
        launch
            .arg(&a.data)
            .arg(&mut out.values)
            .arg(&mut out.meta)
            .arg(&m)
            .arg(&k)
            .arg(&ld)
            .arg(&mpi)
            .arg(&kpi)
            .arg(bad);
        // SAFETY: argument list matches compress24_* in sparse24.cu; sizes from padded().
        unsafe { launch.launch(cfg) }.map_err(cuda("compress24 launch"))?;
        Ok(())
    }

    /// The tile the runtime uses for an `m x k x n` product when none is forced
    /// ([`choose_tile`] for this GPU).
    pub fn choose_tile(&self, m: usize, k: usize, n: usize) -> &'static Tile {
        choose_tile(self.cc, self.sms, self.smem_optin, m, k, n)
    }

    fn check_spmm(&self, a: &Device24, x: &DeviceHalf, y: &DeviceHalf) -> Result<()> {
        if x.rows != a.cols || y.rows != a.rows || y.cols != x.cols {
            return Err(Error::shape(format!(
                "2:4 SpMM: A {}x{} times X {}x{} into Y {}x{}",
                a.rows, a.cols, x.rows, x.cols, y.rows, y.cols
            )));
        }
        if x.dtype != a.dtype || y.dtype != a.dtype {
            return Err(Error::Invalid(format!(
                "2:4 SpMM: A is {}, X {}, Y {}; all must be the same",
                a.dtype.name(),
                x.dtype.name(),
                y.dtype.name()
            )));
        }
        for v in [a.rows, a.cols, x.cols] {
            if v > i32::MAX as usize / 2 {
                return Err(Error::Limit(format!(
                    "2:4 SpMM dimension {v} exceeds the kernel's 32-bit indexing"
                )));
            }
        }
        Ok(())
    }

    /// `Y = A X` with our `mma.sp` kernel (`tile`: forced, or [`Self::choose_tile`]).
    pub fn spmm(&self, a: &Device24, x: &DeviceHalf, y: &mut DeviceHalf, tile: Option<&Tile>) -> Result<()> {
        self.check_spmm(a, x, y)?;
        let t = tile.unwrap_or_else(|| self.choose_tile(a.rows, a.cols, x.cols));
        let f = self.func(&format!("spmm24_{}_{}", a.dtype.name(), t.name))?;
        self.launch_spmm(f, t, a, x, y)
    }

    /// X (K x N, leading dimension ld) for the Hopper tiles: 2-D (n, k) with
    /// boxes of 64 columns x BK rows and 128-byte swizzle.
    fn x_map(&self, x: &DeviceHalf, t: &Tile) -> Result<TmaDesc> {
        let (ptr, _sync) = x.data.device_ptr(&self.stream);
        tensor_map(
            ptr,
            &[x.ld as u64, x.rows as u64],
            &[(x.ld * 2) as u64],
            &[64, t.bk],
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            &format!("X ({}x{})", x.rows, x.cols),
        )
    }

    /// The compressed A (Mp x Kp/2) for TMA boxes of (BK/2, BM), swizzled as the
    /// kernels' shared tile expects (64-byte rows: 64B swizzle; 128: 128B).
    fn a_map(&self, a: &Device24, t: &Tile) -> Result<TmaDesc> {
        let (ptr, _sync) = a.values.device_ptr(&self.stream);
        let swizzle = if t.bk == 64 {
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_64B
        } else {
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B
        };
        tensor_map(
            ptr,
            &[(a.kp / 2) as u64, a.mp as u64],
            &[a.kp as u64],
            &[t.bk / 2, t.bm],
            swizzle,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            &format!("A ({}x{})", a.rows, a.cols),
        )
    }

    fn launch_spmm(&self, f: &CudaFunction, t: &Tile, a: &Device24, x: &DeviceHalf, y: &mut DeviceHalf) -> Result<()> {
        let gy = a.rows.div_ceil(t.bm as usize);
        if gy > 65535 {
            return Err(Error::Limit(format!(
                "2:4 SpMM with {} rows needs {gy} blocks in y (at most 65535)",
                a.rows
            )));
        }
        let cfg = LaunchConfig {
            grid_dim: (x.cols.div_ceil(t.bn as usize) as u32, gy as u32, 1),
            block_dim: (t.threads, 1, 1),
            shared_mem_bytes: t.smem(),
        };
        let (m, n, k, mp, kp, ldb, ldc) = (
            a.rows as i32,
            x.cols as i32,
            a.cols as i32,
            a.mp as i32,
            a.kp as i32,
            x.ld as i32,
            y.ld as i32,
        );
        // The Hopper kernels also take the tensor maps of X and A (their TMA loads).
        let maps = if TILES_SM90.iter().any(|h| h.name == t.name) {
            Some((self.x_map(x, t)?, self.a_map(a, t)?))
        } else {
            None
        };
        let mut launch = self.stream.launch_builder(f);
        launch
            .arg(&a.values)
            .arg(&a.meta)
            .arg(&x.data)
            .arg(&mut y.data)
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&mp)
            .arg(&kp)
            .arg(&ldb)
            .arg(&ldc);
        if let Some((xmap, amap)) = &maps {
            launch.arg(xmap).arg(amap);
        }
        // SAFETY: arguments match spmm24_* in sparse24.cu; shapes checked above;
        // every buffer holds what its shape says (DeviceHalf / Device24 invariants).
        unsafe { launch.launch(cfg) }.map_err(cuda("spmm24 launch"))?;
        Ok(())
    }

    /// Dense `Y = A X` through cuBLAS (f32 accumulation), A as a dense device matrix.
    pub fn dense_gemm(&self, a: &DeviceHalf, x: &DeviceHalf, y: &mut DeviceHalf) -> Result<()> {
        if x.rows != a.cols || y.rows != a.rows || y.cols != x.cols || a.dtype != x.dtype || y.dtype != x.dtype {
            return Err(Error::shape(format!(
                "dense GEMM: A {}x{} times X {}x{} into Y {}x{}",
                a.rows, a.cols, x.rows, x.cols, y.rows, y.cols
            )));
        }
        match a.dtype {
            Half::F16 => self.cublas_gemm(a, x, y, half::f16::ONE, half::f16::ZERO),
            Half::Bf16 => self.cublas_gemm(a, x, y, half::bf16::ONE, half::bf16::ZERO),
        }
    }

    /// cuBLAS on the 16-bit buffers viewed as `T` (f16 or bf16). Row-major
    /// `Y = A X` is column-major `Y^T = X^T A^T`: cuBLAS m = n, n = m.
    fn cublas_gemm<T>(&self, a: &DeviceHalf, x: &DeviceHalf, y: &mut DeviceHalf, one: T, zero: T) -> Result<()>
    where
        CudaBlas: Gemm<T>,
    {
        let cfg = GemmConfig {
            transa: cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
            transb: cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
            m: x.cols as i32,
            n: a.rows as i32,
            k: a.cols as i32,
            alpha: one,
            lda: x.ld as i32,
            ldb: a.ld as i32,
            beta: zero,
            ldc: y.ld as i32,
        };
        assert_eq!(std::mem::size_of::<T>(), 2, "cuBLAS views 16-bit buffers");
        // SAFETY: T is a 16-bit float (f16 or bf16, checked above), the same size
        // as the u16 the buffers hold, so the views cover the same bytes.
        let (xa, aa, mut ya) = unsafe {
            (
                x.data.transmute::<T>(x.data.len()).expect("same length"),
                a.data.transmute::<T>(a.data.len()).expect("same length"),
                y.data.transmute_mut::<T>(y.data.len()).expect("same length"),
            )
        };
        // SAFETY: shapes and leading dimensions checked by dense_gemm.
        unsafe { self.blas.gemm(cfg, &xa, &aa, &mut ya) }.map_err(cuda("cuBLAS gemm"))
    }

    /// GPU time of `f` in milliseconds per call: `iters` calls captured into a
    /// CUDA graph (no launch overhead in the figure), replayed `reps` times
    /// between events; one figure per replay. Falls back to timing a plain loop
    /// when the work cannot be captured (`captured` false).
    pub fn time(&self, iters: usize, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(Vec<f64>, bool)> {
        f()?; // warm-up (and any lazy initialisation) outside the capture
        self.synchronize()?;
        let start = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(cuda("event"))?;
        let end = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(cuda("event"))?;
        let graph = (|| -> Result<_> {
            self.stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                .map_err(cuda("begin capture"))?;
            let mut res = Ok(());
            for _ in 0..iters {
                res = f();
                if res.is_err() {
                    break;
                }
            }
            let g = self
                .stream
                .end_capture(sys::CUgraphInstantiate_flags(0))
                .map_err(cuda("end capture"))?;
            res?;
            g.ok_or_else(|| Error::Cuda("empty graph".into()))
        })();
        let mut out = Vec::with_capacity(reps);
        match graph {
            Ok(g) => {
                g.launch().map_err(cuda("graph launch"))?;
                self.synchronize()?;
                for _ in 0..reps {
                    start.record(&self.stream).map_err(cuda("event"))?;
                    g.launch().map_err(cuda("graph launch"))?;
                    end.record(&self.stream).map_err(cuda("event"))?;
                    end.synchronize().map_err(cuda("event"))?;
                    out.push(start.elapsed_ms(&end).map_err(cuda("event"))? as f64 / iters as f64);
                }
                Ok((out, true))
            }
            Err(_) => {
                // Clear a sticky capture state, then time eagerly.
                let _ = self.stream.synchronize();
                for _ in 0..reps {
                    start.record(&self.stream).map_err(cuda("event"))?;
                    for _ in 0..iters {
                        f()?;
                    }
                    end.record(&self.stream).map_err(cuda("event"))?;
                    end.synchronize().map_err(cuda("event"))?;
                    out.push(start.elapsed_ms(&end).map_err(cuda("event"))? as f64 / iters as f64);
                }
                Ok((out, false))
            }
        }
    }

    /// Instruction-throughput ceilings of this GPU, in dense-equivalent TFLOP/s:
    /// (sparse `mma.sp.m16n8k32`, dense `mma.sync.m16n8k16`), from register-only
    /// loops on every SM.
    pub fn peak_rates(&self) -> Result<(f64, f64)> {
        let mut out = self.stream.alloc_zeros::<f32>(1).map_err(cuda("allocation"))?;
        let iters = 4096i32;
        let blocks = self.sms * 4;
        let mut rate = |name: &str, flops_per_mma: f64| -> Result<f64> {
            let f = self.func(name)?.clone();
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let seed = 0x9e37u32;
            let (mut t, _) = self.time(3, 5, || {
                let mut l = self.stream.launch_builder(&f);
                l.arg(&mut out).arg(&iters).arg(&seed);
                // SAFETY: the peak kernels take (float*, int, u32) and write at most out[0].
                unsafe { l.launch(cfg) }.map_err(cuda("peak launch"))?;
                Ok(())
            })?;
            t.sort_by(|a, b| a.total_cmp(b));
            let mmas = blocks as f64 * 8.0 * iters as f64 * 8.0;
            Ok(mmas * flops_per_mma / (t[t.len() / 2] * 1e-3) / 1e12)
        };
        let sparse = rate("peak_mma_sp_f16", 2.0 * 16.0 * 8.0 * 32.0)?;
        if self.cc == (9, 0) {
            let mut out2 = self.stream.alloc_zeros::<f32>(1).map_err(cuda("allocation"))?;
            // 256 threads = 2 warpgroups, 4 m64n256k32 per iteration each.
            let f = self.func("peak_wgmma_sp_f16")?.clone();
            let cfg = LaunchConfig {
                grid_dim: (self.sms, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let seed = 0x9e37u32;
            let it = 2048i32;
            let (mut t, _) = self.time(3, 5, || {
                let mut l = self.stream.launch_builder(&f);
                l.arg(&mut out2).arg(&it).arg(&seed);
                // SAFETY: (float*, int, u32) as the kernel declares.
                unsafe { l.launch(cfg) }.map_err(cuda("peak launch"))?;
                Ok(())
            })?;
            t.sort_by(|a, b| a.total_cmp(b));
            let flops = self.sms as f64 * 2.0 * 4.0 * it as f64 * (2.0 * 64.0 * 256.0 * 32.0);
            self.wgmma_peak.set(flops / (t[t.len() / 2] * 1e-3) / 1e12);
        }
        let dense = rate("peak_mma_f16", 2.0 * 16.0 * 8.0 * 16.0)?;
        Ok((sparse, dense))
    }

    /// Hopper only: one sparse `wgmma` (m64n128k32, A from registers in the mma.sp
    /// fragment layout, B in the 128-byte-swizzled N-major layout a TMA box of 64
    /// columns writes) under both readings of the descriptor's byte offsets; the
    /// relative error of each against float64.
    pub fn probe_wgmma(&self, seed: u64) -> Result<[f64; 2]> {
        let (name, n) = ("wgmma_sp_probe_sw128", 128usize);
        let mut rnd = pack::rng(seed);
        let dense: Vec<u16> = (0..64 * 32).map(|_| Half::F16.from_f32(rnd())).collect();
        let x: Vec<u16> = (0..32 * n).map(|_| Half::F16.from_f32(rnd())).collect();
        let c = Compressed24::compress(&dense, 64, 32, 32, Half::F16, pack::META_LAYOUT)?;
        let want = pack::reference(&c.decompress(), 64, 32, &x, n, n, Half::F16);
        let mut a = Vec::new();
        let mut e = Vec::new();
        for w in 0..4 {
            a.extend(pack::a_fragments(&c, w, 0).concat());
            e.extend(pack::meta_fragments(&c, w, 0));
        }
        let da = self.stream.clone_htod(&a).map_err(cuda("upload"))?;
        let de = self.stream.clone_htod(&e).map_err(cuda("upload"))?;
        let dx = self.stream.clone_htod(&x).map_err(cuda("upload"))?;
        let per_thread = n / 2; // f32 accumulators of m64nN per thread
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        let mut out = [0.0f64; 2];
        for (variant, o) in out.iter_mut().enumerate() {
            let mut dd = self
                .stream
                .alloc_zeros::<f32>(128 * per_thread)
                .map_err(cuda("allocation"))?;
            let f = self.func(name)?;
            let v = variant as i32;
            let mut launch = self.stream.launch_builder(f);
            launch.arg(&da).arg(&de).arg(&dx).arg(&mut dd).arg(&v);
            // SAFETY: 128 threads x 4 A words, 1 metadata word, B 32 x n, D 128 x n/2 floats.
            unsafe {
                launch.launch(LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                })
            }
            .map_err(cuda("wgmma probe launch"))?;
            let got = self.stream.clone_dtoh(&dd).map_err(cuda("download"))?;
            let mut worst = 0.0f64;
            for t in 0..128 {
                let (w, l) = (t / 32, t % 32);
                let (g, q) = (l / 4, l % 4);
                for j in 0..n / 8 {
                    for i in 0..4 {
                        let row = 16 * w + g + 8 * (i >> 1);
                        let col = 8 * j + 2 * q + (i & 1);
                        let v = got[t * per_thread + 4 * j + i] as f64;
                        worst = worst.max((v - want[row * n + col]).abs() / scale);
                    }
                }
            }
            *o = worst;
        }
        Ok(out)
    }

    /// Runs one `mma.sp` on registers packed under each metadata layout and
    /// compares with float64: which layout is the hardware's.
    pub fn probe(&self, seed: u64) -> Result<Probe> {
        let mut rnd = pack::rng(seed);
        let dense: Vec<u16> = (0..16 * 32).map(|_| Half::F16.from_f32(rnd())).collect();
        let x: Vec<u16> = (0..32 * 8).map(|_| Half::F16.from_f32(rnd())).collect();
        let mut errs = [0.0f64; 2];
        for (li, layout) in [MetaLayout::SplitColumns, MetaLayout::RowPerThread]
            .into_iter()
            .enumerate()
        {
            let c = Compressed24::compress(&dense, 16, 32, 32, Half::F16, layout)?;
            let want = pack::reference(&c.decompress(), 16, 32, &x, 8, 8, Half::F16);
            let a: Vec<u32> = pack::a_fragments(&c, 0, 0).concat();
            let b: Vec<u32> = pack::b_fragments(&x, 8, 32, 0, 0).concat();
            let e: Vec<u32> = pack::meta_fragments(&c, 0, 0).to_vec();
            let da = self.stream.clone_htod(&a).map_err(cuda("upload"))?;
            let db = self.stream.clone_htod(&b).map_err(cuda("upload"))?;
            let de = self.stream.clone_htod(&e).map_err(cuda("upload"))?;
            let mut dd = self.stream.alloc_zeros::<f32>(128).map_err(cuda("allocation"))?;
            let f = self.func("mma_sp_probe_f16")?;
            let mut launch = self.stream.launch_builder(f);
            launch.arg(&da).arg(&db).arg(&de).arg(&mut dd);
            // SAFETY: 32 lanes x 4 words each, as the probe kernel reads.
            unsafe {
                launch.launch(LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (32, 1, 1),
                    shared_mem_bytes: 0,
                })
            }
            .map_err(cuda("probe launch"))?;
            let got = self.stream.clone_dtoh(&dd).map_err(cuda("download"))?;
            let mut regs = [[0.0f32; 4]; 32];
            for (l, r) in regs.iter_mut().enumerate() {
                r.copy_from_slice(&got[l * 4..l * 4 + 4]);
            }
            let d = pack::d_from_fragments(&regs);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
            let mut worst = 0.0f64;
            for r in 0..16 {
                for n in 0..8 {
                    worst = worst.max((d[r][n] as f64 - want[r * 8 + n]).abs() / scale);
                }
            }
            errs[li] = worst;
        }
        Ok(Probe {
            split_columns: errs[0],
            row_per_thread: errs[1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opt-in shared memory per block: H100, A100, consumer Ampere/Ada (RTX 30/40).
    const H100_SMEM: u32 = 232_448;
    const A100_SMEM: u32 = 166_912;
    const RTX_SMEM: u32 = 101_376;

    /// Every tile in the tables is a kernel of the CUDA source (both types), has a
    /// consistent shape, and the Hopper tiles fit the H100; every class of GPU has
    /// tiles it can run, the smallest among them.
    #[test]
    fn tile_tables_match_the_source_and_the_hardware() {
        for t in TILES.iter().chain(TILES_SM90.iter()) {
            for h in ["f16", "bf16"] {
                let name = format!("spmm24_{h}_{}(", t.name);
                let macro_line = format!("({}, ", t.name);
                assert!(
                    SOURCE.contains(&name) || SOURCE.contains(&macro_line),
                    "{} is not instantiated in sparse24.cu",
                    t.name
                );
            }
            assert!(t.bk == 64 || t.bk == 128, "{}", t.name);
            assert!(t.bn % 64 == 0 && t.bm % 64 == 0 && t.threads % 128 == 0, "{}", t.name);
            assert!(t.stages >= 2, "{}", t.name);
        }
        for t in &TILES_SM90 {
            assert!(t.fits(H100_SMEM), "{}: {} bytes of shared memory", t.name, t.smem());
        }
        for limit in [H100_SMEM, A100_SMEM, RTX_SMEM] {
            assert!(TILES.iter().any(|t| t.fits(limit)), "no tile for {limit} bytes");
        }
        assert!(
            TILES.last().unwrap().fits(RTX_SMEM),
            "the fallback tile must fit every GPU"
        );
        let mut names: Vec<&str> = TILES.iter().chain(TILES_SM90.iter()).map(|t| t.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate tile names");
    }

    #[test]
    fn tile_choice_follows_the_measurements_and_the_shared_memory() {
        let h100 = ((9, 0), 132, H100_SMEM);
        let a100 = ((8, 0), 108, A100_SMEM);
        let rtx = ((8, 9), 128, RTX_SMEM);
        let pick = |gpu: ((i32, i32), u32, u32), m, k, n| choose_tile(gpu.0, gpu.1, gpu.2, m, k, n);
        // Large squares: the 128x256 warpgroup tile on Hopper, mma.sp K-128 tiles
        // where they fit, smaller ones on GPUs with less shared memory.
        assert_eq!(pick(h100, 4096, 4096, 4096).name, "wgsa128x256x64s5");
        assert_eq!(pick(h100, 8192, 8192, 8192).name, "wgsa128x256x64s5");
        assert_eq!(pick(a100, 4096, 4096, 4096).name, "256x128x64w4x2");
        assert!(pick(rtx, 4096, 4096, 4096).fits(RTX_SMEM));
        // Lite0 shapes on the H100, as measured best (within 2.4%).
        assert_eq!(pick(h100, 1280, 320, 1568).name, "wgsa128x128x128s4");
        assert_eq!(pick(h100, 1280, 320, 49).name, "wgsa128x128x128s4");
        assert_eq!(pick(h100, 96, 16, 12544).name, "128x64x64w2x2b3");
        assert_eq!(pick(h100, 192, 32, 3136).name, "64x64x64w2x2");
        assert_eq!(pick(h100, 480, 80, 196).name, "64x64x64w2x2");
        assert_eq!(pick(h100, 1000, 1100, 300).name, "wgsa128x128x128s4");
        // No Hopper tile below sm_90, and never a tile over the shared memory.
        for (m, k, n) in [(1280, 320, 49), (1000, 1100, 300), (64, 64, 64), (8192, 8192, 8192)] {
            for gpu in [a100, rtx, ((12, 0), 84, RTX_SMEM)] {
                let t = pick(gpu, m, k, n);
                assert!(!t.name.starts_with("wg"), "{}", t.name);
                assert!(t.fits(gpu.2), "{} on {gpu:?}", t.name);
            }
        }
        // Tiny outputs fall back to the smallest tile.
        assert_eq!(pick(a100, 16, 16, 8).name, "64x64x64w2x2");
    }

    /// The CUDA source compiles with NVRTC for every architecture the runtime
    /// targets, and the PTX holds every kernel the runtime loads there. Needs
    /// libnvrtc (no GPU): `scripts/test.sh` fetches it from PyPI; without it the
    /// test fails, naming what is missing.
    #[test]
    fn the_kernels_compile_for_every_target() {
        // SAFETY: only tries to dlopen the library.
        assert!(
            unsafe { nvrtc::sys::is_culib_present() },
            "libnvrtc not found: scripts/test.sh installs it (pip nvidia-cuda-nvrtc) and sets LD_LIBRARY_PATH"
        );
        for cc in [(8, 0), (8, 6), (8, 9), (9, 0), (12, 0)] {
            let opts = nvrtc::CompileOptions {
                arch: Some(arch_of(cc)),
                options: vec![
                    format!("-DMETA_LAYOUT={}", pack::META_LAYOUT as i32),
                    "-std=c++17".into(),
                ],
                ..Default::default()
            };
            let ptx = nvrtc::compile_ptx_with_opts(SOURCE, opts)
                .unwrap_or_else(|e| panic!("sparse24.cu does not compile for {}: {e:?}", arch_of(cc)))
                .to_src();
            let mut names: Vec<String> = [
                "compress24_f16",
                "compress24_bf16",
                "mma_sp_probe_f16",
                "peak_mma_sp_f16",
            ]
            .map(String::from)
            .into();
            let hopper = cc == (9, 0);
            if hopper {
                names.extend(["wgmma_sp_probe_sw128", "peak_wgmma_sp_f16"].map(String::from));
            }
            for t in TILES.iter().chain(TILES_SM90.iter().filter(|_| hopper)) {
                for h in ["f16", "bf16"] {
                    names.push(format!("spmm24_{h}_{}", t.name));
                }
            }
            for n in names {
                assert!(
                    ptx.contains(&format!(".entry {n}(")),
                    "{n} missing from the PTX for {}",
                    arch_of(cc)
                );
            }
            assert_eq!(ptx.contains("wgmma"), hopper, "{}", arch_of(cc));
        }
    }

    #[test]
    fn architectures_compile_for_a_target_nvrtc_knows() {
        assert_eq!(arch_of((9, 0)), "compute_90a");
        assert_eq!(arch_of((8, 0)), "compute_80");
        assert_eq!(arch_of((8, 9)), "compute_89");
        assert_eq!(arch_of((8, 7)), "compute_87");
        assert_eq!(arch_of((10, 3)), "compute_100");
        assert_eq!(arch_of((9, 5)), "compute_90");
        assert_eq!(arch_of((8, 2)), "compute_80");
    }

    #[test]
    fn probe_verdicts() {
        let p = |a, b| Probe {
            split_columns: a,
            row_per_thread: b,
        };
        assert_eq!(p(5e-8, 1.3).hardware_layout(), Some(MetaLayout::SplitColumns));
        assert_eq!(p(1.3, 5e-8).hardware_layout(), Some(MetaLayout::RowPerThread));
        assert_eq!(p(0.5, 0.7).hardware_layout(), None);
        assert_eq!(p(f64::NAN, f64::NAN).hardware_layout(), None);
    }
}
