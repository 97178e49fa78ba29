//! The f16-storage kernels (f32 accumulation) on the GPU against the f64 CPU
//! reference computed on the f16-ROUNDED inputs: the f16 matrices, BSR blocks
//! 4/8/16/32 (and odd ones) at 0/50/90%, shapes that are not multiples of any
//! tile (N = 1, N not a multiple of 8), the fused epilogue, outputs poisoned
//! with f16 NaN, and the clear errors without shader-f16. Fails, never skips,
//! without an adapter or without shader-f16. The dense f16 GEMM is tested with
//! its f32 and cooperative twins from one body in gpu_gemm.rs.

mod common;

use common::*;
use wgsparse::gpu::gemm::f16 as gemm_f16;
use wgsparse::gpu::gemm::GemmTile;
use wgsparse::gpu::spmm_bsr::f16 as spmm_bsr_f16;
use wgsparse::gpu::spmm_bsr::BsrTile;
use wgsparse::gpu::{f16_rounded, Activation, Context, Epilogue, FeatureSet, GpuBsr, GpuBsrF16, GpuMatrixF16};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{reference, Bsr, Matrix};

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

fn check_bsr(ctx: &Context, w: &Bsr, x: &Matrix, what: &str) {
    let want = reference::spmm_bsr(&bsr_rounded(w), &f16_rounded(x)).unwrap();
    let gw = GpuBsrF16::upload(ctx, w).unwrap();
    let gx = up(ctx, x);
    let y = poisoned_f16(ctx, w.rows(), x.cols());
    spmm_bsr_f16::run(ctx, &gw, &gx, &y, &Default::default()).unwrap();
    assert_close(&y.download_blocking(ctx).unwrap(), &want, F16_REL_TOL, what);
}

#[test]
fn bsr_every_block_size_and_sparsity() {
    let ctx = ctx_f16();
    let shapes = [(37, 53, 29), (130, 70, 3), (64, 64, 64), (100, 200, 131), (45, 77, 1)];
    // 4/8/16/32 take the vec4 block loads, 8x4 too; 3x5 and 4x6 the scalar ones.
    let blocks = [(4, 4), (8, 8), (16, 16), (32, 32), (8, 4), (3, 5), (4, 6)];
    for (s, &(m, k, n)) in shapes.iter().enumerate() {
        let w = random(m, k, s as u64);
        let x = random(k, n, 50 + s as u64);
        for &(br, bc) in &blocks {
            for sparsity in [0.0, 0.5, 0.9] {
                let p = prune::block(&w, br, bc, sparsity, BlockNorm::L2).unwrap();
                let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
                check_bsr(
                    &ctx,
                    &b,
                    &x,
                    &format!("spmm_bsr_f16 {m}x{k}x{n} block {br}x{bc} at {sparsity}"),
                );
            }
        }
    }
}

#[test]
fn bsr_empty_rows_and_no_blocks() {
    let ctx = ctx_f16();
    let (m, k, n) = (80, 96, 45);
    let mut w = random(m, k, 9);
    for r in 16..32 {
        for c in 0..k {
            w.data_mut()[r * k + c] = 0.0;
        }
    }
    let keep: Vec<bool> = w.data().iter().map(|v| *v != 0.0).collect();
    let mask = wgsparse::Mask::new(m, k, keep).unwrap();
    let b = Bsr::from_dense_masked(&w, &mask, 16, 16).unwrap();
    assert_eq!(b.row_ptr()[2] - b.row_ptr()[1], 0, "block row 1 should be empty");
    check_bsr(&ctx, &b, &random(k, n, 10), "spmm_bsr_f16 empty block row");
    let none = wgsparse::Mask::new(m, k, vec![false; m * k]).unwrap();
    let empty = Bsr::from_dense_masked(&w, &none, 8, 8).unwrap();
    check_bsr(&ctx, &empty, &random(k, n, 11), "spmm_bsr_f16 no blocks");
}

#[test]
fn bsr_every_tile_and_the_epilogue_sharing_f32_indices() {
    let ctx = ctx_f16();
    let (m, k, n) = (67, 90, 75);
    let w = random(m, k, 3);
    let x = random(k, n, 4);
    let (bias, gbias) = bias_buffer(&ctx, m, 5);
    let gx = up(&ctx, &x);
    for (br, bc) in [(4, 4), (16, 16), (32, 32), (3, 5)] {
        let p = prune::block(&w, br, bc, 0.5, BlockNorm::L1).unwrap();
        let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
        let g32 = GpuBsr::upload(&ctx, &b).unwrap();
        let gw = GpuBsrF16::sharing_indices(&ctx, &g32, &b).unwrap();
        let plain = reference::spmm_bsr(&bsr_rounded(&b), &f16_rounded(&x)).unwrap();
        for tile in [
            BsrTile { wg_x: 8, tn4: 1, kc: 1 },
            BsrTile {
                wg_x: 16,
                tn4: 4,
                kc: bc.min(16) as u32,
            },
            BsrTile {
                wg_x: 4,
                tn4: 3,
                kc: 3.min(bc as u32),
            },
        ] {
            for act in [Activation::None, Activation::Relu, Activation::Relu6] {
                let ep = Epilogue {
                    bias: Some(&gbias),
                    act,
                };
                let y = poisoned_f16(&ctx, m, n);
                let d = spmm_bsr_f16::prepare_with(&ctx, &gw, &gx, &y, &ep, tile).unwrap();
                ctx.submit(&[&d]);
                let want = epilogue(plain.clone(), Some(&bias), act);
                assert_close(
                    &y.download_blocking(&ctx).unwrap(),
                    &want,
                    F16_REL_TOL,
                    &format!("spmm_bsr_f16 {br}x{bc} {tile:?} {act:?}"),
                );
            }
        }
    }
    // Indices of another matrix are refused.
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
