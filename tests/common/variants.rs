//! Tests generated over the variants of a kernel family (cubecl's `testgen`
//! idea): one generic body, one `#[test]` per {storage type} x {MMA path}
//! variant, each declaring what it needs of the adapter.
//!
//! - [`Storage`]: f32 ([`GpuMatrix`]) or f16 ([`GpuMatrixF16`]) matrices, with
//!   the rounding the reference must see and the tolerance.
//! - [`Mma`]: shader cores, or cooperative matrices (tensor cores).
//! - [`Variant::context`]: the GPU context for the variant. It fails the test
//!   (never skips) where the adapter lacks an f16 variant's shader-f16; where
//!   it lacks a coop variant's cooperative matrices it says what is missing
//!   and returns `None` for the cooperative runs, and the body then checks
//!   the clear error of the cooperative entry points and the fallback of the
//!   dispatching ones instead. With `WGSPARSE_EXPECT_COOP=1` (set where the
//!   capability is expected, e.g. on the H100) a missing capability fails.
//!
//! `testgen!(body, { name: Storage, Mma, ... })` writes `mod body { #[test] fn
//! name() }` calling `body::<Storage>(Variant { .. })` for each listed variant.

use wgsparse::gpu::gemm::coop::coop_support;
use wgsparse::gpu::{f16_rounded, Context, GpuMatrix, GpuMatrixF16, GpuTensor, Needs};
use wgsparse::Matrix;

use super::{ctx, ctx_f16, poisoned, poisoned_f16, F16_REL_TOL, F32_REL_TOL};

/// A matrix storage type under test: upload (the reference sees the values
/// the GPU holds), a NaN-poisoned output, read-back, tolerance.
pub trait Storage: GpuTensor + Sized {
    /// Norm-wise relative tolerance against the f64 reference.
    const TOL: f64;
    /// The values the GPU holds for `m` (rounded to the storage type).
    fn rounded(m: &Matrix) -> Matrix;
    fn up(ctx: &Context, m: &Matrix) -> Self;
    fn poisoned(ctx: &Context, rows: usize, cols: usize) -> Self;
    fn down(&self, ctx: &Context) -> Matrix;
}

impl Storage for GpuMatrix {
    const TOL: f64 = F32_REL_TOL;
    fn rounded(m: &Matrix) -> Matrix {
        m.clone()
    }
    fn up(ctx: &Context, m: &Matrix) -> Self {
        GpuMatrix::upload(ctx, m, "m").unwrap()
    }
    fn poisoned(ctx: &Context, rows: usize, cols: usize) -> Self {
        poisoned(ctx, rows, cols)
    }
    fn down(&self, ctx: &Context) -> Matrix {
        self.download_blocking(ctx).unwrap()
    }
}

impl Storage for GpuMatrixF16 {
    const TOL: f64 = F16_REL_TOL;
    fn rounded(m: &Matrix) -> Matrix {
        f16_rounded(m)
    }
    fn up(ctx: &Context, m: &Matrix) -> Self {
        GpuMatrixF16::upload(ctx, m, "m").unwrap()
    }
    fn poisoned(ctx: &Context, rows: usize, cols: usize) -> Self {
        poisoned_f16(ctx, rows, cols)
    }
    fn down(&self, ctx: &Context) -> Matrix {
        self.download_blocking(ctx).unwrap()
    }
}

/// The multiply-add path of a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mma {
    ShaderCores,
    /// Cooperative matrices (native only, f16 storage).
    Coop,
}

/// One generated test's variant.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub f16: bool,
    pub mma: Mma,
}

impl Variant {
    /// What the adapter must offer for this variant's kernels.
    pub fn needs(&self) -> Needs {
        match (self.f16, self.mma) {
            (_, Mma::Coop) => Needs::COOP,
            (true, Mma::ShaderCores) => Needs::F16,
            (false, Mma::ShaderCores) => Needs::NONE,
        }
    }

    /// The context, and for a coop variant whether the cooperative kernels
    /// can run (`Some(subgroup size)`) or not (`None`, after saying why).
    /// Fails without an adapter, without shader-f16 for an f16 variant, and
    /// without cooperative matrices where `WGSPARSE_EXPECT_COOP=1`.
    pub fn context(&self) -> (Context, Option<u32>) {
        let needs = self.needs();
        let ctx = if needs.f16 { ctx_f16() } else { ctx() };
        if !needs.coop {
            return (ctx, None);
        }
        match coop_support(&ctx) {
            Ok(sg) => (ctx, Some(sg)),
            Err(why) => {
                assert!(
                    std::env::var("WGSPARSE_EXPECT_COOP").as_deref() != Ok("1"),
                    "{self:?} needs cooperative matrices (WGSPARSE_EXPECT_COOP=1): {why}"
                );
                eprintln!("{self:?} needs cooperative matrices: {why}; checking the errors and the fallback instead");
                (ctx, None)
            }
        }
    }
}

/// One `#[test]` per listed variant of a generic test body:
/// `testgen!(body, { f32_shader_cores: GpuMatrix, ShaderCores; ... })`.
#[macro_export]
macro_rules! testgen {
    ($body:ident, { $($name:ident: $storage:ty, $mma:ident);+ $(;)? }) => {
        mod $body {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    use $crate::common::variants::{Mma, Variant};
                    let f16 = <$storage as wgsparse::gpu::GpuTensor>::F16;
                    super::$body::<$storage>(Variant { f16, mma: Mma::$mma });
                }
            )+
        }
    };
}
