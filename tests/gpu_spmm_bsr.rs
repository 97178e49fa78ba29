//! BSR SpMM on the GPU against the CPU reference, generated over the family's
//! variants (`testgen!`): f32 and f16 storage on shader cores (`spmm_bsr`,
//! `spmm_bsr_f16`) and f16 on cooperative matrices (`spmm_bsr_coop` where the
//! adapter has them and the blocks are 16x16 or 32x32; its clear error, and
//! the dispatch's fallback, elsewhere). Every block size (odd ones too),
//! sparsities from 0 to 99%, an empty block row, no blocks, shapes that are
//! not multiples of any block or tile, the fused epilogue, outputs poisoned;
//! the reference sees the values rounded to the storage type.

mod common;

use common::variants::{Mma, Storage, Variant};
use common::*;
use wgsparse::gpu::spmm_bsr::coop::{self as spmm_bsr_coop, BsrCoopTile};
use wgsparse::gpu::spmm_bsr::{self, f16 as spmm_bsr_f16, BsrTile};
use wgsparse::gpu::{Activation, Context, Dispatch, Epilogue, GpuBsr, GpuBsrF16, GpuMatrix, GpuMatrixF16};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{reference, Bsr, Matrix, Result};

/// The BSR entry points of one storage type.
trait Blocks: Storage {
    type W;
    fn upload(ctx: &Context, b: &Bsr) -> Self::W;
    /// The values the GPU holds for `b`.
    fn rounded_bsr(b: &Bsr) -> Bsr;
    /// The dispatching entry point of the variant's MMA path.
    fn run(ctx: &Context, mma: Mma, w: &Self::W, x: &Self, y: &Self, ep: &Epilogue) -> Result<()>;
    fn prepare_with(ctx: &Context, w: &Self::W, x: &Self, y: &Self, ep: &Epilogue, t: BsrTile) -> Result<Dispatch>;
    /// The cooperative kernel with an explicit tile (f16 only: there is no
    /// f32 cooperative variant to generate).
    fn prepare_coop(ctx: &Context, w: &Self::W, x: &Self, y: &Self, ep: &Epilogue, t: BsrCoopTile) -> Result<Dispatch>;
}

impl Blocks for GpuMatrix {
    type W = GpuBsr;
    fn upload(ctx: &Context, b: &Bsr) -> GpuBsr {
        GpuBsr::upload(ctx, b).unwrap()
    }
    fn rounded_bsr(b: &Bsr) -> Bsr {
        b.clone()
    }
    fn run(ctx: &Context, mma: Mma, w: &GpuBsr, x: &Self, y: &Self, ep: &Epilogue) -> Result<()> {
        assert_eq!(mma, Mma::ShaderCores, "no f32 cooperative BSR SpMM");
        spmm_bsr::run(ctx, w, x, y, ep)
    }
    fn prepare_with(ctx: &Context, w: &GpuBsr, x: &Self, y: &Self, ep: &Epilogue, t: BsrTile) -> Result<Dispatch> {
        spmm_bsr::prepare_with(ctx, w, x, y, ep, t)
    }
    fn prepare_coop(_: &Context, _: &GpuBsr, _: &Self, _: &Self, _: &Epilogue, _: BsrCoopTile) -> Result<Dispatch> {
        unreachable!("no f32 cooperative BSR SpMM: the variant is not generated")
    }
}

impl Blocks for GpuMatrixF16 {
    type W = GpuBsrF16;
    /// Through the f32 matrix's indices (`sharing_indices`, what the f16
    /// model does).
    fn upload(ctx: &Context, b: &Bsr) -> GpuBsrF16 {
        let g32 = GpuBsr::upload(ctx, b).unwrap();
        GpuBsrF16::sharing_indices(ctx, &g32, b).unwrap()
    }
    fn rounded_bsr(b: &Bsr) -> Bsr {
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
    fn run(ctx: &Context, mma: Mma, w: &GpuBsrF16, x: &Self, y: &Self, ep: &Epilogue) -> Result<()> {
        match mma {
            Mma::ShaderCores => spmm_bsr_f16::run(ctx, w, x, y, ep),
            Mma::Coop => spmm_bsr_coop::run(ctx, w, x, y, ep),
        }
    }
    fn prepare_with(ctx: &Context, w: &GpuBsrF16, x: &Self, y: &Self, ep: &Epilogue, t: BsrTile) -> Result<Dispatch> {
        spmm_bsr_f16::prepare_with(ctx, w, x, y, ep, t)
    }
    fn prepare_coop(
        ctx: &Context,
        w: &GpuBsrF16,
        x: &Self,
        y: &Self,
        ep: &Epilogue,
        t: BsrCoopTile,
    ) -> Result<Dispatch> {
        spmm_bsr_coop::prepare_with(ctx, w, x, y, ep, t)
    }
}

fn check<S: Blocks>(ctx: &Context, v: Variant, w: &Bsr, x: &Matrix, what: &str) {
    let want = reference::spmm_bsr(&S::rounded_bsr(w), &S::rounded(x)).unwrap();
    let gw = S::upload(ctx, w);
    let gx = S::up(ctx, x);
    let y = S::poisoned(ctx, w.rows(), x.cols());
    S::run(ctx, v.mma, &gw, &gx, &y, &Default::default()).unwrap();
    assert_close(&y.down(ctx), &want, S::TOL, &format!("{v:?} {what}"));
}

fn every_block_size_and_sparsity<S: Blocks>(v: Variant) {
    let (ctx, _) = v.context();
    let shapes = [(37, 53, 29), (130, 70, 3), (64, 64, 64), (100, 200, 131), (45, 77, 1)];
    // 4/8/16/32 take the f16 kernel's vec4 block loads, 8x4 too; 3x5 and 4x6
    // the scalar ones; 16 and 32 the cooperative kernel where it runs.
    let blocks = [(4, 4), (8, 8), (16, 16), (32, 32), (8, 4), (3, 5), (4, 6)];
    for (s, &(m, k, n)) in shapes.iter().enumerate() {
        let w = random(m, k, s as u64);
        let x = random(k, n, 50 + s as u64);
        for &(br, bc) in &blocks {
            for sparsity in [0.0, 0.5, 0.9, 0.99] {
                let p = prune::block(&w, br, bc, sparsity, BlockNorm::L2).unwrap();
                let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
                check::<S>(&ctx, v, &b, &x, &format!("{m}x{k}x{n} block {br}x{bc} at {sparsity}"));
            }
        }
    }
}

testgen!(every_block_size_and_sparsity, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
    f16_coop: GpuMatrixF16, Coop;
});

fn empty_block_rows_and_unbalanced_rows<S: Blocks>(v: Variant) {
    let (ctx, _) = v.context();
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
    check::<S>(&ctx, v, &b, &random(k, n, 10), "unbalanced 16x16");
    // A matrix with no blocks at all writes zeros.
    let none = wgsparse::Mask::new(m, k, vec![false; m * k]).unwrap();
    for block in [8, 16] {
        let empty = Bsr::from_dense_masked(&w, &none, block, block).unwrap();
        check::<S>(
            &ctx,
            v,
            &empty,
            &random(k, n, 11),
            &format!("no {block}x{block} blocks"),
        );
    }
}

testgen!(empty_block_rows_and_unbalanced_rows, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
    f16_coop: GpuMatrixF16, Coop;
});

fn every_tile_and_the_epilogue<S: Blocks>(v: Variant) {
    let (ctx, coop) = v.context();
    let (m, k, n) = (67, 90, 75);
    let w = random(m, k, 3);
    let x = random(k, n, 4);
    let (bias, gbias) = bias_buffer(&ctx, m, 5);
    let gx = S::up(&ctx, &x);
    let mut ran = 0;
    for (br, bc) in [(4, 4), (16, 16), (32, 32), (3, 5)] {
        let p = prune::block(&w, br, bc, 0.5, BlockNorm::L1).unwrap();
        let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
        let gw = S::upload(&ctx, &b);
        let plain = reference::spmm_bsr(&S::rounded_bsr(&b), &S::rounded(&x)).unwrap();
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            let ep = Epilogue {
                bias: Some(&gbias),
                act,
            };
            let want = epilogue(plain.clone(), Some(&bias), act);
            let what = format!("{v:?} {br}x{bc} {act:?}");
            let check = |d: Dispatch, y: S, tile: String| {
                ctx.submit(&[&d]);
                assert_close(&y.down(&ctx), &want, S::TOL, &format!("{what} {tile}"));
            };
            match v.mma {
                Mma::ShaderCores => {
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
                        let y = S::poisoned(&ctx, m, n);
                        check(
                            S::prepare_with(&ctx, &gw, &gx, &y, &ep, tile).unwrap(),
                            y,
                            format!("{tile:?}"),
                        );
                        ran += 1;
                    }
                }
                Mma::Coop => {
                    // The dispatch: cooperative where it runs, the fallback elsewhere.
                    let y = S::poisoned(&ctx, m, n);
                    S::run(&ctx, v.mma, &gw, &gx, &y, &ep).unwrap();
                    assert_close(&y.down(&ctx), &want, S::TOL, &format!("{what} dispatch"));
                    if br != bc || br < 16 {
                        continue;
                    }
                    for tile in BsrCoopTile::candidates(br) {
                        let y = S::poisoned(&ctx, m, n);
                        let r = S::prepare_coop(&ctx, &gw, &gx, &y, &ep, tile);
                        ran += 1;
                        if coop.is_none() {
                            match r {
                                Err(wgsparse::Error::Gpu(msg)) => assert!(msg.contains("cooperative"), "{what}: {msg}"),
                                other => panic!("{what}: expected a cooperative-matrix error, got {other:?}"),
                            }
                            continue;
                        }
                        // Tiles beyond the device's workgroup memory are refused.
                        let Ok(d) = r else { continue };
                        check(d, y, format!("{tile:?}"));
                    }
                }
            }
        }
    }
    assert!(ran >= 18, "{v:?}: only {ran} tile runs");
}

testgen!(every_tile_and_the_epilogue, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
    f16_coop: GpuMatrixF16, Coop;
});

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
