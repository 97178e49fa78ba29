//! cuSPARSELt, loaded at run time when present, for comparison only: NVIDIA's own
//! 2:4 SpMM on the same matrices in the same run. Bindings for cuSPARSELt >= 0.6
//! (checked at load: the compute-type enum and the plan API changed before).

use std::ffi::c_void;

use cudarc::driver::{sys, CudaSlice, DevicePtr, DevicePtrMut};
use libloading::Library;

use super::pack::Half;
use super::runtime::{CudaRuntime, DeviceHalf};
use crate::error::{Error, Result};

/// Opaque cuSPARSELt structure (512 bytes in 0.8; room to spare).
#[repr(C, align(16))]
struct Opaque([u8; 4096]);

impl Opaque {
    fn boxed() -> Box<Opaque> {
        Box::new(Opaque([0; 4096]))
    }
}

type H = *const Opaque;
type M = *mut Opaque;
type Status = i32;

const ORDER_ROW: i32 = 2;
const OP_N: i32 = 0;
const SPARSITY_50: i32 = 0;
const COMPUTE_32F: i32 = 2;
const ALG_DEFAULT: i32 = 0;
const CUDA_R_16F: i32 = 2;
const CUDA_R_16BF: i32 = 14;

struct Api {
    init: unsafe extern "C" fn(M) -> Status,
    destroy: unsafe extern "C" fn(H) -> Status,
    version: unsafe extern "C" fn(H, *mut i32) -> Status,
    dense: unsafe extern "C" fn(H, M, i64, i64, i64, u32, i32, i32) -> Status,
    structured: unsafe extern "C" fn(H, M, i64, i64, i64, u32, i32, i32, i32) -> Status,
    desc_destroy: unsafe extern "C" fn(H) -> Status,
    matmul_desc: unsafe extern "C" fn(H, M, i32, i32, H, H, H, H, i32) -> Status,
    alg_init: unsafe extern "C" fn(H, M, H, i32) -> Status,
    plan_init: unsafe extern "C" fn(H, M, H, H) -> Status,
    plan_destroy: unsafe extern "C" fn(H) -> Status,
    workspace: unsafe extern "C" fn(H, H, *mut usize) -> Status,
    compressed_size: unsafe extern "C" fn(H, H, *mut usize, *mut usize) -> Status,
    compress: unsafe extern "C" fn(H, H, *const c_void, *mut c_void, *mut c_void, sys::CUstream) -> Status,
    #[allow(clippy::type_complexity)]
    matmul: unsafe extern "C" fn(
        H,
        H,
        *const c_void,
        *const c_void,
        *const c_void,
        *const c_void,
        *const c_void,
        *mut c_void,
        *mut c_void,
        *mut sys::CUstream,
        i32,
    ) -> Status,
}

/// A loaded cuSPARSELt with an initialised handle.
pub struct CuSparseLt {
    api: Api,
    handle: Box<Opaque>,
    version: i32,
    _lib: Library,
}

fn check(what: &str, s: Status) -> Result<()> {
    if s == 0 {
        Ok(())
    } else {
        Err(Error::Cuda(format!("cuSPARSELt {what} failed with status {s}")))
    }
}

impl CuSparseLt {
    /// Loads `libcusparseLt.so.0` from `path` or the library search path.
    pub fn load(path: Option<&str>) -> Result<Self> {
        let name = path.unwrap_or("libcusparseLt.so.0");
        // SAFETY: loading a shared library runs its initialisers; cuSPARSELt's are benign.
        let lib = unsafe { Library::new(name) }
            .map_err(|e| Error::Cuda(format!("cuSPARSELt not available ({name}): {e}")))?;
        macro_rules! sym {
            ($n:literal) => {
                // SAFETY: the signature is cuSPARSELt's (cusparseLt.h, 0.6-0.8).
                *unsafe { lib.get($n) }.map_err(|e| Error::Cuda(format!("cuSPARSELt lacks a symbol: {e}")))?
            };
        }
        let api = Api {
            init: sym!(b"cusparseLtInit\0"),
            destroy: sym!(b"cusparseLtDestroy\0"),
            version: sym!(b"cusparseLtGetVersion\0"),
            dense: sym!(b"cusparseLtDenseDescriptorInit\0"),
            structured: sym!(b"cusparseLtStructuredDescriptorInit\0"),
            desc_destroy: sym!(b"cusparseLtMatDescriptorDestroy\0"),
            matmul_desc: sym!(b"cusparseLtMatmulDescriptorInit\0"),
            alg_init: sym!(b"cusparseLtMatmulAlgSelectionInit\0"),
            plan_init: sym!(b"cusparseLtMatmulPlanInit\0"),
            plan_destroy: sym!(b"cusparseLtMatmulPlanDestroy\0"),
            workspace: sym!(b"cusparseLtMatmulGetWorkspace\0"),
            compressed_size: sym!(b"cusparseLtSpMMACompressedSize\0"),
            compress: sym!(b"cusparseLtSpMMACompress\0"),
            matmul: sym!(b"cusparseLtMatmul\0"),
        };
        let mut handle = Opaque::boxed();
        check("init", unsafe { (api.init)(&mut *handle) })?;
        let mut version = 0;
        check("version", unsafe { (api.version)(&*handle, &mut version) })?;
        let me = CuSparseLt {
            api,
            handle,
            version,
            _lib: lib,
        };
        if version < 600 {
            return Err(Error::Cuda(format!(
                "cuSPARSELt {}.{}.{} is older than the 0.6 API these bindings use",
                version / 1000,
                version / 100 % 10,
                version % 100
            )));
        }
        Ok(me)
    }

    /// `major.minor.patch`.
    pub fn version(&self) -> String {
        format!(
            "{}.{}.{}",
            self.version / 1000,
            self.version / 100 % 10,
            self.version % 100
        )
    }

    /// A plan for `Y = A X` with A the 2:4-pruned dense `a` (compressed here by
    /// cuSPARSELt), X `x`, Y `y` (all row-major).
    pub fn plan(&self, rt: &CudaRuntime, a: &DeviceHalf, x: &DeviceHalf, y: &DeviceHalf) -> Result<LtPlan<'_>> {
        if x.rows != a.cols || y.rows != a.rows || y.cols != x.cols || a.dtype != x.dtype || y.dtype != x.dtype {
            return Err(Error::shape("cuSPARSELt plan: shapes or types do not fit".to_string()));
        }
        let dt = match a.dtype {
            Half::F16 => CUDA_R_16F,
            Half::Bf16 => CUDA_R_16BF,
        };
        let h: H = &*self.handle;
        let (mut da, mut dx, mut dy) = (Opaque::boxed(), Opaque::boxed(), Opaque::boxed());
        let (mut md, mut alg, mut plan) = (Opaque::boxed(), Opaque::boxed(), Opaque::boxed());
        let api = &self.api;
        unsafe {
            check(
                "structured descriptor",
                (api.structured)(
                    h,
                    &mut *da,
                    a.rows as i64,
                    a.cols as i64,
                    a.ld as i64,
                    16,
                    dt,
                    ORDER_ROW,
                    SPARSITY_50,
                ),
            )?;
            check(
                "dense descriptor",
                (api.dense)(
                    h,
                    &mut *dx,
                    x.rows as i64,
                    x.cols as i64,
                    x.ld as i64,
                    16,
                    dt,
                    ORDER_ROW,
                ),
            )?;
            check(
                "dense descriptor",
                (api.dense)(
                    h,
                    &mut *dy,
                    y.rows as i64,
                    y.cols as i64,
                    y.ld as i64,
                    16,
                    dt,
                    ORDER_ROW,
                ),
            )?;
            check(
                "matmul descriptor",
                (api.matmul_desc)(h, &mut *md, OP_N, OP_N, &*da, &*dx, &*dy, &*dy, COMPUTE_32F),
            )?;
            check("algorithm selection", (api.alg_init)(h, &mut *alg, &*md, ALG_DEFAULT))?;
            check("plan", (api.plan_init)(h, &mut *plan, &*md, &*alg))?;
        }
        let (mut ws, mut csize, mut cbuf) = (0usize, 0usize, 0usize);
        unsafe {
            check("workspace size", (api.workspace)(h, &*plan, &mut ws))?;
            check(
                "compressed size",
                (api.compressed_size)(h, &*plan, &mut csize, &mut cbuf),
            )?;
        }
        let stream = rt.stream();
        let alloc = |n: usize| {
            stream
                .alloc_zeros::<u8>(n.max(16))
                .map_err(|e| Error::Cuda(format!("allocation: {e:?}")))
        };
        let mut compressed = alloc(csize)?;
        let mut buffer = alloc(cbuf)?;
        let workspace = alloc(ws)?;
        {
            let (pa, _s1) = a.data.device_ptr(stream);
            let (pc, _s2) = compressed.device_ptr_mut(stream);
            let (pb, _s3) = buffer.device_ptr_mut(stream);
            unsafe {
                check(
                    "compress",
                    (api.compress)(
                        h,
                        &*plan,
                        pa as *const c_void,
                        pc as *mut c_void,
                        pb as *mut c_void,
                        stream.cu_stream(),
                    ),
                )?;
            }
        }
        rt.synchronize()?;
        Ok(LtPlan {
            lt: self,
            descs: [da, dx, dy],
            _md: md,
            _alg: alg,
            plan,
            compressed,
            workspace,
        })
    }
}

impl Drop for CuSparseLt {
    fn drop(&mut self) {
        unsafe { (self.api.destroy)(&*self.handle) };
    }
}

/// A cuSPARSELt plan with its compressed A and workspace.
pub struct LtPlan<'a> {
    lt: &'a CuSparseLt,
    descs: [Box<Opaque>; 3],
    _md: Box<Opaque>,
    _alg: Box<Opaque>,
    plan: Box<Opaque>,
    compressed: CudaSlice<u8>,
    workspace: CudaSlice<u8>,
}

impl LtPlan<'_> {
    /// `Y = A X` (f32 accumulation).
    pub fn run(&mut self, rt: &CudaRuntime, x: &DeviceHalf, y: &mut DeviceHalf) -> Result<()> {
        let stream = rt.stream();
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (pa, _s1) = self.compressed.device_ptr(stream);
        let (px, _s2) = x.data.device_ptr(stream);
        let (py, _s3) = y.data.device_ptr_mut(stream);
        let (pw, _s4) = self.workspace.device_ptr_mut(stream);
        let mut s = stream.cu_stream();
        let api = &self.lt.api;
        check("matmul", unsafe {
            (api.matmul)(
                &*self.lt.handle,
                &*self.plan,
                &alpha as *const f32 as *const c_void,
                pa as *const c_void,
                px as *const c_void,
                &beta as *const f32 as *const c_void,
                py as *const c_void,
                py as *mut c_void,
                pw as *mut c_void,
                &mut s,
                1,
            )
        })
    }
}

impl Drop for LtPlan<'_> {
    fn drop(&mut self) {
        let api = &self.lt.api;
        unsafe {
            (api.plan_destroy)(&*self.plan);
            for d in &self.descs {
                (api.desc_destroy)(&**d);
            }
        }
    }
}
