//! BSR SpMM on the GPU against the CPU reference: every block size, sparsities
//! from 0 to 99%, an empty block row, shapes that are not multiples of any
//! block or tile, outputs poisoned.

mod common;

use common::*;
use wgsparse::gpu::spmm_bsr::{self, BsrTile};
use wgsparse::gpu::{Activation, Epilogue, GpuBsr, GpuMatrix};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{reference, Bsr, Matrix};

fn check(ctx: &wgsparse::gpu::Context, w: &Bsr, x: &Matrix, what: &str) {
    let want = reference::spmm_bsr(w, x).unwrap();
    let gw = GpuBsr::upload(ctx, w).unwrap();
    let gx = GpuMatrix::upload(ctx, x, "x").unwrap();
    let y = poisoned(ctx, w.rows(), x.cols());
    spmm_bsr::run(ctx, &gw, &gx, &y, &Default::default()).unwrap();
    assert_close(&y.download_blocking(ctx).unwrap(), &want, F32_REL_TOL, what);
}

#[test]
fn every_block_size_and_sparsity() {
    let ctx = ctx();
    let shapes = [(37, 53, 29), (130, 70, 3), (64, 64, 64), (100, 200, 131)];
    let blocks = [(4, 4), (8, 8), (16, 16), (32, 32), (8, 4), (3, 5)];
    for (s, &(m, k, n)) in shapes.iter().enumerate() {
        let w = random(m, k, s as u64);
        let x = random(k, n, 50 + s as u64);
        for &(br, bc) in &blocks {
            for sparsity in [0.0, 0.5, 0.9, 0.99] {
                let p = prune::block(&w, br, bc, sparsity, BlockNorm::L2).unwrap();
                let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
                check(&ctx, &b, &x, &format!("{m}x{k}x{n} block {br}x{bc} at {sparsity}"));
            }
        }
    }
}

#[test]
fn empty_block_rows_and_unbalanced_rows() {
    let ctx = ctx();
    let (m, k, n) = (80, 96, 45);
    // Block row 1 empty, block row 0 full, the rest sparse.
    let mut w = random(m, k, 9);
    for r in 16..32 {
        for c in 0..k {
            w.data_mut()[r * k + c] = 0.0;
        }
    }
    for r in 32..m {
        for c in 16..k {
            w.data_mut()[r * k + c] = 0.0;
        }
    }
    let keep: Vec<bool> = w.data().iter().map(|v| *v != 0.0).collect();
    let mask = wgsparse::Mask::new(m, k, keep).unwrap();
    let b = Bsr::from_dense_masked(&w, &mask, 16, 16).unwrap();
    assert_eq!(b.row_ptr()[2] - b.row_ptr()[1], 0, "block row 1 should be empty");
    check(&ctx, &b, &random(k, n, 10), "unbalanced 16x16");
    // A matrix with no blocks at all writes zeros.
    let empty = Bsr::from_dense_masked(&w, &wgsparse::Mask::new(m, k, vec![false; m * k]).unwrap(), 8, 8).unwrap();
    check(&ctx, &empty, &random(k, n, 11), "no blocks");
}

#[test]
fn every_tile_and_the_epilogue() {
    let ctx = ctx();
    let (m, k, n) = (67, 90, 75);
    let w = random(m, k, 3);
    let x = random(k, n, 4);
    let (bias, gbias) = bias_buffer(&ctx, m, 5);
    let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
    for (br, bc) in [(4, 4), (16, 16), (32, 32)] {
        let p = prune::block(&w, br, bc, 0.5, BlockNorm::L1).unwrap();
        let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
        let gw = GpuBsr::upload(&ctx, &b).unwrap();
        let plain = reference::spmm_bsr(&b, &x).unwrap();
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
            for act in [Activation::None, Activation::Relu6] {
                let ep = Epilogue {
                    bias: Some(&gbias),
                    act,
                };
                let y = poisoned(&ctx, m, n);
                let d = spmm_bsr::prepare_with(&ctx, &gw, &gx, &y, &ep, tile).unwrap();
                ctx.submit(&[&d]);
                let want = epilogue(plain.clone(), Some(&bias), act);
                assert_close(
                    &y.download_blocking(&ctx).unwrap(),
                    &want,
                    F32_REL_TOL,
                    &format!("{br}x{bc} {tile:?} {act:?}"),
                );
            }
        }
    }
}

#[test]
fn a_grid_over_the_dispatch_limit_is_a_clear_error() {
    let ctx = ctx();
    // 65536 block rows of 1x1 blocks: one more than a dispatch dimension allows.
    let rows = ctx.limits().max_compute_workgroups_per_dimension as usize + 1;
    let b = Bsr::new(rows, 1, 1, 1, vec![0; rows + 1], vec![], vec![]).unwrap();
    let gb = GpuBsr::upload(&ctx, &b).unwrap();
    let gx = GpuMatrix::upload(&ctx, &Matrix::zeros(1, 1).unwrap(), "x").unwrap();
    let y = GpuMatrix::new(&ctx, rows, 1, "y").unwrap();
    match spmm_bsr::prepare(&ctx, &gb, &gx, &y, &Default::default()) {
        Err(wgsparse::Error::Limit(msg)) => assert!(msg.contains("max_compute_workgroups_per_dimension"), "{msg}"),
        other => panic!("expected a limit error, got {other:?}"),
    }
}
