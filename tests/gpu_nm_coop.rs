//! The f16 N:M kernels (2:4 and 1:2): `spmm_nm_coop` on cooperative matrices
//! and its shader-core fallback `spmm_nm_f16`, against the f64 CPU reference on
//! the f16-rounded inputs: shapes that are not multiples of any tile (K not a
//! multiple of 16 or even of 4), the fused epilogue, outputs poisoned with f16
//! NaN. The packed layout is checked on the CPU against the masked matrix.
//!
//! On an adapter without cooperative matrices (lavapipe in CI) this checks the
//! fallback, that the dispatch picks it, and that asking for the cooperative
//! kernel is a clear error that reaches no pipeline; on one with them (the
//! H100: `cargo test --release --test gpu_nm_coop --no-run`, run the binary
//! there) every candidate tile as well.

mod common;

use common::*;
use wgsparse::gpu::gemm::coop::{coop_support, CoopTile, COOP_MIN_MACS};
use wgsparse::gpu::spmm_nm::coop::{self as spmm_nm_coop, GpuNmF16, NmF16Kernel};
use wgsparse::gpu::{f16_rounded, Activation, Context, Epilogue, FeatureSet, GpuMatrixF16};
use wgsparse::{prune, reference, Matrix, NmMatrix};

/// (M, K, N): odd M and K (K = 5 and 53 leave short 1:2 and 2:4 groups and a
/// padded chunk), N on both sides of 16 (skinny X takes the fallback).
const SHAPES: [(usize, usize, usize); 7] = [
    (37, 53, 29),
    (130, 17, 70),
    (200, 64, 131),
    (96, 16, 257),
    (129, 130, 129),
    (21, 5, 9),
    (300, 96, 1),
];

const PATTERNS: [(usize, usize); 2] = [(2, 4), (1, 2)];

fn nm_matrix(m: usize, k: usize, n: usize, mm: usize, seed: u64) -> NmMatrix {
    let w = random(m, k, seed);
    let mask = prune::nm(&w, n, mm).unwrap().mask;
    NmMatrix::from_dense_masked(&w, &mask, n, mm).unwrap()
}

/// Dense W from the packed layout, decoded on the CPU.
fn unpack(rows: usize, cols: usize, values: &[half::f16], masks: &[u32]) -> Matrix {
    let cpr = cols.div_ceil(16).max(1);
    let mwpr = cpr.div_ceil(2);
    assert_eq!(values.len(), rows * cpr * 8);
    assert_eq!(masks.len(), rows * mwpr);
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for ch in 0..cpr {
            let mask = (masks[r * mwpr + ch / 2] >> (16 * (ch % 2))) & 0xFFFF;
            for q in 0..4 {
                let nib = (mask >> (4 * q)) & 15;
                assert_eq!(nib.count_ones(), 2, "row {r} chunk {ch} quad {q}: mask {nib:04b}");
                let mut slot = 0;
                for c in 0..4 {
                    if nib >> c & 1 == 1 {
                        let v = values[(r * cpr + ch) * 8 + 2 * q + slot].to_f32();
                        let col = ch * 16 + 4 * q + c;
                        if col < cols {
                            out[r * cols + col] = v;
                        } else {
                            assert_eq!(v, 0.0, "row {r}: padding column {col} holds {v}");
                        }
                        slot += 1;
                    }
                }
            }
        }
    }
    Matrix::new(rows, cols, out).unwrap()
}

#[test]
fn packed_layout_is_the_masked_matrix_in_f16() {
    for (n, mm) in PATTERNS {
        for (s, &(m, k, _)) in SHAPES.iter().enumerate() {
            let nm = nm_matrix(m, k, n, mm, 10 + s as u64);
            let (values, masks) = spmm_nm_coop::pack(&nm).unwrap();
            let got = unpack(m, k, &values, &masks);
            let want = f16_rounded(&nm.to_dense());
            assert_eq!(got.data(), want.data(), "{n}:{mm} {m}x{k}");
        }
    }
    // Other patterns are refused with a reason.
    for (n, mm) in [(1, 4), (2, 8), (4, 8), (3, 4)] {
        let nm = nm_matrix(8, 32, n, mm, 1);
        match spmm_nm_coop::pack(&nm) {
            Err(wgsparse::Error::Shape(msg)) => assert!(msg.contains("2:4"), "{msg}"),
            other => panic!("{n}:{mm}: expected a shape error, got {other:?}"),
        }
        assert!(!spmm_nm_coop::supports(n, mm));
    }
}

#[test]
fn nm_f16_kernels_match_the_reference() {
    let ctx = ctx_f16();
    let coop = coop_support(&ctx);
    eprintln!("cooperative matrices on '{}': {coop:?}", ctx.info().name);
    let mut coop_checked = 0;
    for (pi, (n, mm)) in PATTERNS.into_iter().enumerate() {
        for (s, &(m, k, cols)) in SHAPES.iter().enumerate() {
            let seed = (pi * 100 + s) as u64;
            let nm = nm_matrix(m, k, n, mm, seed);
            let x = random(k, cols, seed + 50);
            let (bias, gbias) = bias_buffer(&ctx, m, seed + 7);
            let plain = reference::gemm(&f16_rounded(&nm.to_dense()), &f16_rounded(&x)).unwrap();
            let gw = GpuNmF16::upload(&ctx, &nm).unwrap();
            let gx = GpuMatrixF16::upload(&ctx, &x, "x").unwrap();
            let choice = spmm_nm_coop::choose(&ctx, m, k, cols);
            let big = (m * k * cols) as u64 >= COOP_MIN_MACS;
            assert_eq!(
                matches!(choice, NmF16Kernel::Coop(_)),
                coop.is_ok() && cols > 16 && big,
                "{m}x{k}x{cols}: picked {choice:?} with support {coop:?}"
            );
            for (act, with_bias) in [(Activation::None, false), (Activation::Relu6, true)] {
                let ep = Epilogue {
                    bias: with_bias.then_some(&gbias),
                    act,
                };
                let want = epilogue(plain.clone(), with_bias.then_some(&bias[..]), act);
                let what = format!("{n}:{mm} {m}x{k}x{cols} {act:?}");
                let y = poisoned_f16(&ctx, m, cols);
                spmm_nm_coop::run(&ctx, &gw, &gx, &y, &ep).unwrap();
                assert_close(
                    &y.download_blocking(&ctx).unwrap(),
                    &want,
                    F16_REL_TOL,
                    &format!("{choice:?} {what}"),
                );
                let y = poisoned_f16(&ctx, m, cols);
                let d = spmm_nm_coop::prepare_fallback(&ctx, &gw, &gx, &y, &ep).unwrap();
                ctx.submit(&[&d]);
                assert_close(
                    &y.download_blocking(&ctx).unwrap(),
                    &want,
                    F16_REL_TOL,
                    &format!("fallback {what}"),
                );
                if coop.is_ok() {
                    for tile in spmm_nm_coop::CANDIDATES {
                        let y = poisoned_f16(&ctx, m, cols);
                        let d = spmm_nm_coop::prepare_with(&ctx, &gw, &gx, &y, &ep, tile)
                            .unwrap_or_else(|e| panic!("{what} {}: {e}", tile.label()));
                        ctx.submit(&[&d]);
                        let got = y.download_blocking(&ctx).unwrap();
                        assert_close(
                            &got,
                            &want,
                            F16_REL_TOL,
                            &format!("spmm_nm_coop {} {what}", tile.label()),
                        );
                        coop_checked += 1;
                    }
                }
            }
        }
    }
    // Large products take the tensor cores where supported, skinny X never.
    assert_eq!(
        matches!(spmm_nm_coop::choose(&ctx, 4096, 4096, 4096), NmF16Kernel::Coop(_)),
        coop.is_ok()
    );
    assert_eq!(spmm_nm_coop::choose(&ctx, 1 << 16, 1 << 16, 16), NmF16Kernel::Fallback);
    assert_eq!(spmm_nm_coop::choose(&ctx, 1280, 320, 49), NmF16Kernel::Fallback);
    if coop.is_ok() {
        assert_eq!(coop_checked, 2 * SHAPES.len() * 2 * spmm_nm_coop::CANDIDATES.len());
    }
    ctx.take_errors().unwrap();
}

#[test]
fn without_cooperative_matrices_nm_coop_is_a_clear_error_and_the_fallback_runs() {
    let full = ctx_f16();
    let no_coop = FeatureSet {
        coop_matrix: false,
        ..full.features()
    };
    let ctx = pollster::block_on(Context::from_adapter_with(full.adapter().clone(), no_coop)).unwrap();
    assert!(coop_support(&ctx).is_err());
    let nm = nm_matrix(40, 48, 2, 4, 3);
    let x = random(48, 64, 4);
    let gw = GpuNmF16::upload(&ctx, &nm).unwrap();
    let gx = GpuMatrixF16::upload(&ctx, &x, "x").unwrap();
    let y = poisoned_f16(&ctx, 40, 64);
    let ep = Epilogue::default();
    assert_eq!(spmm_nm_coop::choose(&ctx, 4096, 4096, 4096), NmF16Kernel::Fallback);
    let pipelines = ctx.cached_pipelines();
    match spmm_nm_coop::prepare_with(&ctx, &gw, &gx, &y, &ep, spmm_nm_coop::default_tile()) {
        Err(wgsparse::Error::Gpu(msg)) => assert!(msg.contains("cooperative"), "{msg}"),
        other => panic!("expected a cooperative-matrix error, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        ctx.cached_pipelines(),
        pipelines,
        "the refused kernel reached a pipeline"
    );
    spmm_nm_coop::run(&ctx, &gw, &gx, &y, &ep).unwrap();
    let want = reference::gemm(&f16_rounded(&nm.to_dense()), &f16_rounded(&x)).unwrap();
    assert_close(
        &y.download_blocking(&ctx).unwrap(),
        &want,
        F16_REL_TOL,
        "fallback without coop",
    );
    ctx.take_errors().unwrap();
}

/// Every candidate fits 48 KiB with subgroups of 32 (each is compiled by
/// `tests/shaders.rs` through the registry); tiles the kernel cannot take are
/// refused with the reason.
#[test]
fn nm_coop_tiles_fit_or_are_refused() {
    for tile in spmm_nm_coop::CANDIDATES {
        spmm_nm_coop::constants(&tile, 32, 48 * 1024, &Epilogue::default())
            .unwrap_or_else(|e| panic!("{} does not fit 48 KiB with subgroups of 32: {e}", tile.label()));
    }
    // Too many loads per thread, and the dense kernel's other rules, are refused.
    let narrow = CoopTile::new(1, 1, 4, 1, 64, 1, 1);
    assert!(matches!(
        spmm_nm_coop::constants(&narrow, 32, 48 * 1024, &Epilogue::default()),
        Err(wgsparse::Error::Limit(_))
    ));
    let deep = CoopTile {
        depth: 3,
        ..spmm_nm_coop::default_tile()
    };
    assert!(spmm_nm_coop::constants(&deep, 32, 48 * 1024, &Epilogue::default()).is_err());
}
