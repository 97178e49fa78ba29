//! The f16 storage itself: f16 matrices and BSR round trips (rounded, out of
//! range refused), f16 BSR sharing the indices of another matrix refused, and
//! the clear errors of every f16 kernel without shader-f16. Fails, never
//! skips, without an adapter or without shader-f16. The f16 kernels are tested
//! with their f32 and cooperative twins from one body each (`testgen!`) in
//! gpu_gemm.rs and gpu_spmm_bsr.rs.

mod common;

use common::*;
use wgsparse::gpu::gemm::f16 as gemm_f16;
use wgsparse::gpu::gemm::GemmTile;
use wgsparse::gpu::spmm_bsr::f16 as spmm_bsr_f16;
use wgsparse::gpu::{f16_rounded, Context, Epilogue, FeatureSet, GpuBsr, GpuBsrF16, GpuMatrixF16};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{Bsr, Matrix};

/// `b` with its values rounded to f16 (what a [`GpuBsrF16`] holds).
fn bsr_rounded(b: &Bsr) -> Bsr {
    let v = b.values().iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    Bsr::new(
        b.rows(),
        b.cols(),
        b.block_rows(),
        b.block_cols(),
        b.row_ptr().to_vec(),
        b.col_idx().to_vec(),
        v,
    )
    .unwrap()
}

fn up(ctx: &Context, m: &Matrix) -> GpuMatrixF16 {
    GpuMatrixF16::upload(ctx, m, "m").unwrap()
}

#[test]
fn f16_matrix_round_trips_rounded_and_rejects_out_of_range() {
    let ctx = ctx_f16();
    for (r, c) in [(1, 1), (3, 7), (5, 8), (9, 17), (4, 0)] {
        let m = random(r, c, 3);
        let g = up(&ctx, &m);
        assert_eq!(g.stride() % 8, 0);
        assert!(g.stride() >= c.max(1));
        let back = g.download_blocking(&ctx).unwrap();
        assert_eq!(back.data(), f16_rounded(&m).data(), "{r}x{c}");
    }
    let big = Matrix::new(1, 2, vec![1.0, 70000.0]).unwrap();
    match GpuMatrixF16::upload(&ctx, &big, "big") {
        Err(wgsparse::Error::Limit(msg)) => assert!(msg.contains("f16 range"), "{msg}"),
        other => panic!("expected a limit error for 70000 in f16, got {other:?}"),
    }
    let w = random(37, 53, 1);
    let p = prune::block(&w, 5, 3, 0.5, BlockNorm::L2).unwrap();
    let b = Bsr::from_dense_masked(&w, &p.mask, 5, 3).unwrap();
    let back = pollster::block_on(GpuBsrF16::upload(&ctx, &b).unwrap().download(&ctx)).unwrap();
    assert_eq!(back.values(), bsr_rounded(&b).values());
    assert_eq!(back.col_idx(), b.col_idx());
}

#[test]
fn bsr_indices_of_another_matrix_are_refused() {
    let ctx = ctx_f16();
    let w = random(67, 90, 3);
    let b8 = Bsr::from_dense_masked(&w, &prune::block(&w, 8, 8, 0.5, BlockNorm::L1).unwrap().mask, 8, 8).unwrap();
    let b4 = Bsr::from_dense_masked(&w, &prune::block(&w, 4, 4, 0.5, BlockNorm::L1).unwrap().mask, 4, 4).unwrap();
    let g8 = GpuBsr::upload(&ctx, &b8).unwrap();
    assert!(matches!(
        GpuBsrF16::sharing_indices(&ctx, &g8, &b4),
        Err(wgsparse::Error::Shape(_))
    ));
}

#[test]
fn without_shader_f16_the_f16_kernels_are_clear_errors() {
    let full = ctx_f16();
    let no_f16 = FeatureSet {
        shader_f16: false,
        ..full.features()
    };
    let ctx = pollster::block_on(Context::from_adapter_with(full.adapter().clone(), no_f16)).unwrap();
    assert!(!ctx.features().shader_f16);
    let w = random(20, 30, 1);
    let x = random(30, 40, 2);
    let (gw, gx) = (up(&ctx, &w), up(&ctx, &x));
    let y = GpuMatrixF16::new(&ctx, 20, 40, "y").unwrap();
    let y1 = GpuMatrixF16::new(&ctx, 20, 1, "y1").unwrap();
    let gx1 = up(&ctx, &random(30, 1, 3));
    let b = Bsr::from_dense_masked(&w, &prune::block(&w, 4, 4, 0.5, BlockNorm::L2).unwrap().mask, 4, 4).unwrap();
    let gb = GpuBsrF16::upload(&ctx, &b).unwrap();
    let ep = Epilogue::default();
    let results = [
        ("gemm_f16", gemm_f16::prepare(&ctx, &gw, &gx, &y, &ep).map(|_| ())),
        (
            "gemm_skinny_f16",
            gemm_f16::prepare(&ctx, &gw, &gx1, &y1, &ep).map(|_| ()),
        ),
        (
            "gemm_f16 tile",
            gemm_f16::prepare_with(&ctx, &gw, &gx, &y, &ep, GemmTile::MEDIUM).map(|_| ()),
        ),
        (
            "spmm_bsr_f16",
            spmm_bsr_f16::prepare(&ctx, &gb, &gx, &y, &ep).map(|_| ()),
        ),
    ];
    for (what, r) in results {
        match r {
            Err(wgsparse::Error::Gpu(msg)) => assert!(msg.contains("shader-f16"), "{what}: {msg}"),
            other => panic!("{what}: expected a shader-f16 error, got {other:?}"),
        }
    }
    // Nothing reached wgpu: no validation error was recorded.
    ctx.take_errors().unwrap();
    assert_eq!(ctx.cached_pipelines(), 0);
}
