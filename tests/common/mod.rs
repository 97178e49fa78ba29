//! Helpers shared by the GPU tests.
#![allow(dead_code)]

pub mod model;
pub mod variants;

use wgsparse::gpu::{elementwise, Activation, Context, GpuBuffer, GpuMatrix, GpuMatrixF16};
use wgsparse::Matrix;

/// Norm-wise relative error allowed between an f32 GPU product and the f64 CPU reference.
pub const F32_REL_TOL: f64 = 1e-5;

/// Norm-wise relative error allowed between an f16-storage product (f32
/// accumulation, output rounded to f16: about 3e-4 expected) and the f64 CPU
/// reference computed on the f16-rounded inputs.
pub const F16_REL_TOL: f64 = 1e-2;

/// The GPU context; panics (fails the test, never skips) without an adapter.
pub fn ctx() -> Context {
    match Context::new_blocking() {
        Ok(c) => c,
        Err(e) => panic!("GPU tests need an adapter (CI installs mesa-vulkan-drivers): {e}"),
    }
}

/// The GPU context for the f16 kernels; panics (fails the test, never skips)
/// without an adapter or when the adapter lacks shader-f16.
pub fn ctx_f16() -> Context {
    let ctx = ctx();
    assert!(
        ctx.features().shader_f16,
        "the f16 tests need an adapter with shader-f16; '{}' ({:?}) has none (lavapipe, the CI adapter, has it)",
        ctx.info().name,
        ctx.info().backend
    );
    ctx
}

/// Deterministic pseudo-random matrix with values in [-1, 1).
pub fn random(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    Matrix::new(rows, cols, data).unwrap()
}

/// An output matrix on the GPU filled with NaN, so unwritten elements show.
pub fn poisoned(ctx: &Context, rows: usize, cols: usize) -> GpuMatrix {
    let y = GpuMatrix::new(ctx, rows, cols, "y").unwrap();
    elementwise::fill_f32(ctx, y.buffer(), f32::NAN).unwrap();
    y
}

/// An f16 output matrix on the GPU filled with f16 NaN, so unwritten elements show.
pub fn poisoned_f16(ctx: &Context, rows: usize, cols: usize) -> GpuMatrixF16 {
    let y = GpuMatrixF16::new(ctx, rows, cols, "y").unwrap();
    elementwise::fill_f16(ctx, y.buffer(), half::f16::NAN).unwrap();
    y
}

/// Applies bias and activation on the CPU.
pub fn epilogue(mut y: Matrix, bias: Option<&[f32]>, act: Activation) -> Matrix {
    let cols = y.cols();
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        let b = bias.map_or(0.0, |b| b[i / cols]);
        *v = act.apply(*v + b);
    }
    y
}

pub fn bias_buffer(ctx: &Context, rows: usize, seed: u64) -> (Vec<f32>, GpuBuffer) {
    let b = random(1, rows, seed).into_data();
    let buf = GpuBuffer::from_slice(ctx, &b, "bias").unwrap();
    (b, buf)
}

/// Asserts `actual` matches `expected` within `tol`, printing the first bad element.
pub fn assert_close(actual: &Matrix, expected: &Matrix, tol: f64, what: &str) {
    assert_eq!(
        (actual.rows(), actual.cols()),
        (expected.rows(), expected.cols()),
        "{what}: shape"
    );
    let err = wgsparse::reference::rel_error(actual.data(), expected.data());
    if err.is_nan() || err > tol {
        let (i, (a, e)) = actual
            .data()
            .iter()
            .zip(expected.data())
            .enumerate()
            .max_by(|x, y| {
                ((x.1 .0 - x.1 .1).abs())
                    .total_cmp(&(y.1 .0 - y.1 .1).abs())
                    .then(std::cmp::Ordering::Less)
            })
            .map(|(i, (a, e))| (i, (*a, *e)))
            .unwrap();
        let bad = actual.data().iter().position(|v| !v.is_finite());
        panic!(
            "{what}: relative error {err:e} > {tol:e}; worst index {i} (row {}, col {}): actual {a}, expected {e}; first non-finite: {bad:?}",
            i / actual.cols(),
            i % actual.cols()
        );
    }
}
