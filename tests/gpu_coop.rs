//! The cooperative-matrix (tensor-core) kernels and their fallbacks, against
//! the f64 CPU reference on the f16-rounded inputs: shapes that are not
//! multiples of any tile, the fused epilogue, outputs poisoned with f16 NaN.
//!
//! On an adapter without cooperative matrices (lavapipe in CI, every browser)
//! this checks that the dispatch picks the fallback (`gemm_f16`,
//! `spmm_bsr_f16`), that the fallback is right, and that asking for the
//! cooperative kernel itself is a clear error that reaches no pipeline. On an
//! adapter with them (the H100: build with `cargo test --release --test
//! gpu_coop --no-run` and run the binary there) it checks every cooperative
//! tile as well.

mod common;

use common::*;
use wgsparse::gpu::gemm::coop::{self as gemm_coop, coop_support, CoopTile, DenseF16Kernel};
use wgsparse::gpu::spmm_bsr::coop::{self as spmm_bsr_coop, BsrCoopTile};
use wgsparse::gpu::{f16_rounded, Activation, Context, Epilogue, FeatureSet, GpuBsrF16, GpuMatrixF16};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{reference, Bsr, Matrix};

/// (M, K, N): none a multiple of a cooperative tile (128 or 16) except the last.
const SHAPES: [(usize, usize, usize); 6] = [
    (37, 53, 29),
    (130, 17, 70),
    (200, 64, 131),
    (96, 16, 257),
    (129, 129, 129),
    (256, 96, 128),
];

fn up(ctx: &Context, m: &Matrix) -> GpuMatrixF16 {
    GpuMatrixF16::upload(ctx, m, "m").unwrap()
}

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

#[test]
fn dense_dispatch_matches_the_reference_and_picks_by_capability() {
    let ctx = ctx_f16();
    let coop = coop_support(&ctx);
    eprintln!("cooperative matrices on '{}': {coop:?}", ctx.info().name);
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let w = random(m, k, s as u64);
        let x = random(k, n, 100 + s as u64);
        let (bias, gbias) = bias_buffer(&ctx, m, 7 + s as u64);
        let plain = reference::gemm(&f16_rounded(&w), &f16_rounded(&x)).unwrap();
        let (gw, gx) = (up(&ctx, &w), up(&ctx, &x));
        let choice = gemm_coop::choose(&ctx, m, k, n);
        let big = (m * k * n) as u64 >= gemm_coop::COOP_MIN_MACS;
        assert_eq!(
            matches!(choice, DenseF16Kernel::Coop(_)),
            coop.is_ok() && big,
            "{m}x{k}x{n}: picked {choice:?} with support {coop:?}"
        );
        for (act, with_bias) in [(Activation::None, false), (Activation::Relu6, true)] {
            let ep = Epilogue {
                bias: with_bias.then_some(&gbias),
                act,
            };
            let want = epilogue(plain.clone(), with_bias.then_some(&bias[..]), act);
            let y = poisoned_f16(&ctx, m, n);
            gemm_coop::run(&ctx, &gw, &gx, &y, &ep).unwrap();
            let got = y.download_blocking(&ctx).unwrap();
            assert_close(&got, &want, F16_REL_TOL, &format!("{choice:?} {m}x{k}x{n} {act:?}"));
            if coop.is_ok() {
                for tile in CoopTile::CANDIDATES {
                    let y = poisoned_f16(&ctx, m, n);
                    let Ok(d) = gemm_coop::prepare_with(&ctx, &gw, &gx, &y, &ep, tile) else {
                        continue;
                    };
                    ctx.submit(&[&d]);
                    let got = y.download_blocking(&ctx).unwrap();
                    assert_close(
                        &got,
                        &want,
                        F16_REL_TOL,
                        &format!("gemm_coop {tile:?} {m}x{k}x{n} {act:?}"),
                    );
                }
            }
        }
    }
    // Skinny X always takes the fallback's skinny kernel, small products the
    // fallback's tiles; large ones the cooperative kernel where supported.
    assert_eq!(gemm_coop::choose(&ctx, 1 << 16, 1 << 16, 16), DenseF16Kernel::Fallback);
    assert_eq!(gemm_coop::choose(&ctx, 1280, 320, 49), DenseF16Kernel::Fallback);
    assert_eq!(
        matches!(gemm_coop::choose(&ctx, 4096, 4096, 4096), DenseF16Kernel::Coop(_)),
        coop.is_ok()
    );
    ctx.take_errors().unwrap();
}

#[test]
fn bsr_dispatch_matches_the_reference_for_every_block() {
    let ctx = ctx_f16();
    let coop = coop_support(&ctx).is_ok();
    // 8x8 and 16x8 blocks are never cooperative; 16 and 32 are where supported.
    for (bi, &(br, bc)) in [(16, 16), (32, 32), (8, 8), (16, 8)].iter().enumerate() {
        for (si, &s) in [0.0, 0.5, 0.9].iter().enumerate() {
            for (hi, &(m, k, n)) in [(100, 77, 70), (64, 200, 131), (33, 40, 300)].iter().enumerate() {
                let seed = (bi * 100 + si * 10 + hi) as u64;
                let w = random(m, k, seed);
                let x = random(k, n, seed + 1);
                let mask = prune::block(&w, br, bc, s, BlockNorm::L2).unwrap().mask;
                let b = Bsr::from_dense_masked(&w, &mask, br, bc).unwrap();
                let (bias, gbias) = bias_buffer(&ctx, m, seed + 2);
                let ep = Epilogue {
                    bias: Some(&gbias),
                    act: Activation::Relu,
                };
                let want = epilogue(
                    reference::spmm_bsr(&bsr_rounded(&b), &f16_rounded(&x)).unwrap(),
                    Some(&bias),
                    Activation::Relu,
                );
                let gb = GpuBsrF16::upload(&ctx, &b).unwrap();
                let gx = up(&ctx, &x);
                let uses = spmm_bsr_coop::uses_coop(&ctx, &gb, n);
                assert_eq!(uses, coop && br == bc && br >= 16, "{br}x{bc}: uses_coop {uses}");
                let what = format!("bsr {br}x{bc} at {s} {m}x{k}x{n} (coop {uses})");
                let y = poisoned_f16(&ctx, m, n);
                spmm_bsr_coop::run(&ctx, &gb, &gx, &y, &ep).unwrap();
                assert_close(&y.download_blocking(&ctx).unwrap(), &want, F16_REL_TOL, &what);
                if uses {
                    for tile in BsrCoopTile::candidates(br) {
                        let y = poisoned_f16(&ctx, m, n);
                        let Ok(d) = spmm_bsr_coop::prepare_with(&ctx, &gb, &gx, &y, &ep, tile) else {
                            continue;
                        };
                        ctx.submit(&[&d]);
                        let got = y.download_blocking(&ctx).unwrap();
                        assert_close(&got, &want, F16_REL_TOL, &format!("{what} {tile:?}"));
                    }
                }
            }
        }
    }
    ctx.take_errors().unwrap();
}

#[test]
fn without_cooperative_matrices_the_coop_kernels_are_clear_errors() {
    let full = ctx_f16();
    let no_coop = FeatureSet {
        coop_matrix: false,
        ..full.features()
    };
    let ctx = pollster::block_on(Context::from_adapter_with(full.adapter().clone(), no_coop)).unwrap();
    assert!(!ctx.features().coop_matrix);
    assert!(ctx.coop_configs().is_empty());
    assert!(coop_support(&ctx).is_err());
    let w = random(40, 48, 1);
    let x = random(48, 64, 2);
    let (gw, gx) = (up(&ctx, &w), up(&ctx, &x));
    let y = GpuMatrixF16::new(&ctx, 40, 64, "y").unwrap();
    let b = Bsr::from_dense_masked(&w, &prune::block(&w, 16, 16, 0.5, BlockNorm::L2).unwrap().mask, 16, 16).unwrap();
    let gb = GpuBsrF16::upload(&ctx, &b).unwrap();
    let ep = Epilogue::default();
    assert_eq!(gemm_coop::choose(&ctx, 4096, 4096, 4096), DenseF16Kernel::Fallback);
    assert!(!spmm_bsr_coop::uses_coop(&ctx, &gb, 64));
    let results = [
        (
            "gemm_coop",
            gemm_coop::prepare_with(&ctx, &gw, &gx, &y, &ep, CoopTile::DEFAULT).map(|_| ()),
        ),
        (
            "spmm_bsr_coop",
            spmm_bsr_coop::prepare_with(&ctx, &gb, &gx, &y, &ep, BsrCoopTile::default_for(16, 0.5)).map(|_| ()),
        ),
    ];
    for (what, r) in results {
        match r {
            Err(wgsparse::Error::Gpu(msg)) => assert!(msg.contains("cooperative"), "{what}: {msg}"),
            other => panic!("{what}: expected a cooperative-matrix error, got {other:?}"),
        }
    }
    ctx.take_errors().unwrap();
    assert_eq!(ctx.cached_pipelines(), 0);
}

#[test]
fn coop_tiles_are_checked_before_compiling() {
    let ep = Epilogue::default();
    for tile in CoopTile::CANDIDATES {
        tile.constants(32, 48 * 1024, &ep)
            .unwrap_or_else(|e| panic!("{tile:?} does not fit 48 KiB with subgroups of 32: {e}"));
    }
    for block in [16, 32] {
        for tile in BsrCoopTile::candidates(block) {
            tile.constants(block, 32, 48 * 1024, &ep)
                .unwrap_or_else(|e| panic!("{tile:?} block {block}: {e}"));
        }
    }
    let bad = CoopTile {
        tm: 5,
        ..CoopTile::DEFAULT
    };
    assert!(matches!(
        bad.constants(32, 48 * 1024, &ep),
        Err(wgsparse::Error::Limit(_))
    ));
    let big = CoopTile {
        wm: 4,
        wn: 4,
        bk: 64,
        ..CoopTile::DEFAULT
    };
    assert!(matches!(
        big.constants(32, 48 * 1024, &ep),
        Err(wgsparse::Error::Limit(_))
    ));
    assert!(BsrCoopTile::default_for(16, 0.5)
        .constants(8, 32, 48 * 1024, &ep)
        .is_err());
    assert!(BsrCoopTile::new(2, 2, 2, 1, 2)
        .constants(16, 32, 48 * 1024, &ep)
        .is_err());
    let deep = CoopTile {
        depth: 3,
        ..CoopTile::DEFAULT
    };
    assert!(deep.constants(32, 48 * 1024, &ep).is_err());
}
