//! Dense GEMM on the GPU against the CPU reference, every tile, shapes that are
//! not multiples of any tile, with and without the fused epilogue.

mod common;

use common::*;
use wgsparse::gpu::gemm::{self, GemmTile};
use wgsparse::gpu::{Activation, Epilogue, GpuMatrix};
use wgsparse::reference;

const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (37, 53, 29),
    (130, 17, 70),
    (5, 300, 3),
    (200, 64, 131),
    (96, 16, 257),
    (129, 129, 129),
];

#[test]
fn every_tile_matches_the_reference() {
    let ctx = ctx();
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let w = random(m, k, s as u64);
        let x = random(k, n, 100 + s as u64);
        let want = reference::gemm(&w, &x).unwrap();
        let (gw, gx) = (
            GpuMatrix::upload(&ctx, &w, "w").unwrap(),
            GpuMatrix::upload(&ctx, &x, "x").unwrap(),
        );
        for tile in GemmTile::ALL {
            if tile.validate(&ctx).is_err() {
                continue;
            }
            let y = poisoned(&ctx, m, n);
            let d = gemm::prepare_with(&ctx, &gw, &gx, &y, &Epilogue::default(), tile).unwrap();
            ctx.submit(&[&d]);
            let got = y.download_blocking(&ctx).unwrap();
            assert_close(&got, &want, F32_REL_TOL, &format!("gemm {m}x{k}x{n} tile {tile:?}"));
        }
    }
}

#[test]
fn fused_bias_and_activations() {
    let ctx = ctx();
    let (m, k, n) = (70, 45, 33);
    let w = random(m, k, 1);
    let x = random(k, n, 2);
    let (bias, gbias) = bias_buffer(&ctx, m, 3);
    let plain = reference::gemm(&w, &x).unwrap();
    let (gw, gx) = (
        GpuMatrix::upload(&ctx, &w, "w").unwrap(),
        GpuMatrix::upload(&ctx, &x, "x").unwrap(),
    );
    for act in [Activation::None, Activation::Relu, Activation::Relu6] {
        for with_bias in [false, true] {
            let ep = Epilogue {
                bias: with_bias.then_some(&gbias),
                act,
            };
            let y = poisoned(&ctx, m, n);
            gemm::run(&ctx, &gw, &gx, &y, &ep).unwrap();
            let want = epilogue(plain.clone(), with_bias.then_some(&bias[..]), act);
            assert_close(
                &y.download_blocking(&ctx).unwrap(),
                &want,
                F32_REL_TOL,
                &format!("{act:?} bias {with_bias}"),
            );
        }
    }
}

#[test]
fn mismatched_shapes_and_short_bias_are_errors() {
    let ctx = ctx();
    let w = GpuMatrix::upload(&ctx, &random(4, 5, 1), "w").unwrap();
    let x = GpuMatrix::upload(&ctx, &random(6, 3, 2), "x").unwrap();
    let y = GpuMatrix::new(&ctx, 4, 3, "y").unwrap();
    assert!(matches!(
        gemm::run(&ctx, &w, &x, &y, &Epilogue::default()),
        Err(wgsparse::Error::Shape(_))
    ));
    let x = GpuMatrix::upload(&ctx, &random(5, 3, 2), "x").unwrap();
    let (_, short) = bias_buffer(&ctx, 2, 1);
    let ep = Epilogue {
        bias: Some(&short),
        act: Activation::None,
    };
    assert!(matches!(
        gemm::run(&ctx, &w, &x, &y, &ep),
        Err(wgsparse::Error::Shape(_))
    ));
}

#[test]
fn skinny_x_uses_the_split_k_kernel() {
    let ctx = ctx();
    for (s, &(m, k, n)) in [(1000, 1280, 1), (37, 53, 3), (5, 300, 16), (130, 1, 7), (1, 4097, 13)]
        .iter()
        .enumerate()
    {
        let w = random(m, k, 20 + s as u64);
        let x = random(k, n, 40 + s as u64);
        let (bias, gbias) = bias_buffer(&ctx, m, 7);
        let want = epilogue(reference::gemm(&w, &x).unwrap(), Some(&bias), Activation::Relu6);
        let (gw, gx) = (
            GpuMatrix::upload(&ctx, &w, "w").unwrap(),
            GpuMatrix::upload(&ctx, &x, "x").unwrap(),
        );
        let y = poisoned(&ctx, m, n);
        let ep = Epilogue {
            bias: Some(&gbias),
            act: Activation::Relu6,
        };
        let d = gemm::prepare_skinny(&ctx, &gw, &gx, &y, &ep).unwrap();
        ctx.submit(&[&d]);
        assert_close(
            &y.download_blocking(&ctx).unwrap(),
            &want,
            F32_REL_TOL,
            &format!("skinny {m}x{k}x{n}"),
        );
    }
    // Wider X is refused by the skinny kernel itself.
    let gw = GpuMatrix::upload(&ctx, &random(4, 4, 1), "w").unwrap();
    let gx = GpuMatrix::upload(&ctx, &random(4, 17, 1), "x").unwrap();
    let y = GpuMatrix::new(&ctx, 4, 17, "y").unwrap();
    assert!(gemm::prepare_skinny(&ctx, &gw, &gx, &y, &Epilogue::default()).is_err());
}

#[test]
fn split_k_matches_the_reference_with_the_epilogue() {
    let ctx = ctx();
    // Long K against few output tiles (the case split-K is for), odd shapes,
    // and splits that leave some workgroups no K tiles at all (K = 20, 7 ways).
    let cases = [
        (192, 1152, 49, 0),
        (37, 301, 29, 3),
        (130, 517, 70, 5),
        (19, 20, 33, 7),
        (200, 64, 131, 16),
    ];
    for (s, &(m, k, n, split)) in cases.iter().enumerate() {
        let w = random(m, k, 7 + s as u64);
        let x = random(k, n, 70 + s as u64);
        let (bias, gb) = bias_buffer(&ctx, m, 700 + s as u64);
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let tile = GemmTile::choose(&ctx, m, n);
        let split = if split == 0 {
            gemm::choose_split(m, k, n, tile)
        } else {
            split
        };
        for act in [Activation::None, Activation::Relu6] {
            let ep = Epilogue { bias: Some(&gb), act };
            let y = poisoned(&ctx, m, n);
            let ds = gemm::prepare_split(&ctx, &gw, &gx, &y, &ep, tile, split).unwrap();
            assert_eq!(ds.len(), if split > 1 { 2 } else { 1 });
            ctx.submit(&ds.iter().collect::<Vec<_>>());
            let want = epilogue(reference::gemm(&w, &x).unwrap(), Some(&bias), act);
            assert_close(
                &y.download_blocking(&ctx).unwrap(),
                &want,
                F32_REL_TOL,
                &format!("gemm {m}x{k}x{n} split {split} {act:?}"),
            );
        }
    }
    assert!(gemm::choose_split(192, 1152, 49, GemmTile::NARROW) > 1);
    assert_eq!(gemm::choose_split(4096, 4096, 4096, GemmTile::LARGE), 1);
    let gw = GpuMatrix::upload(&ctx, &random(8, 8, 1), "w").unwrap();
    let gx = GpuMatrix::upload(&ctx, &random(8, 8, 2), "x").unwrap();
    let y = poisoned(&ctx, 8, 8);
    for bad in [0, gemm::MAX_SPLIT + 1] {
        assert!(gemm::prepare_split(&ctx, &gw, &gx, &y, &Epilogue::default(), GemmTile::NARROW, bad).is_err());
    }
}
