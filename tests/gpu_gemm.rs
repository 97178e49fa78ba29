//! Dense GEMM on the GPU against the CPU reference, generated over the
//! family's variants (`testgen!`): f32 and f16 storage on shader cores
//! (`gemm`, `gemm_f16`: every tile, the skinny and split-K kernels) and f16
//! on cooperative matrices (`gemm_coop`: every candidate tile where the adapter
//! has them; its clear error and the dispatch's fallback where it has not).
//! Shapes that are not multiples of any tile (N = 1, N not a multiple of 8),
//! with and without the fused epilogue, outputs poisoned with NaN; the
//! reference sees the inputs rounded to the storage type.

mod common;

use common::variants::{Mma, Storage, Variant};
use common::*;
use wgsparse::gpu::gemm::coop::{self as gemm_coop, CoopTile};
use wgsparse::gpu::gemm::{self, f16 as gemm_f16, GemmTile};
use wgsparse::gpu::{Activation, Context, Dispatch, Epilogue, GpuMatrix, GpuMatrixF16};
use wgsparse::{reference, Result};

/// The entry points of one storage type of the dense family.
trait Dense: Storage {
    fn prepare_with(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue, t: GemmTile) -> Result<Dispatch>;
    fn prepare_split(
        ctx: &Context,
        w: &Self,
        x: &Self,
        y: &Self,
        ep: &Epilogue,
        t: GemmTile,
        split: u32,
    ) -> Result<Vec<Dispatch>>;
    fn prepare_skinny(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue) -> Result<Dispatch>;
    /// The dispatching entry point of the variant's MMA path.
    fn run(ctx: &Context, mma: Mma, w: &Self, x: &Self, y: &Self, ep: &Epilogue) -> Result<()>;
    /// The cooperative kernel with an explicit tile (f16 only: there is no
    /// f32 cooperative variant to generate).
    fn prepare_coop(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue, t: CoopTile) -> Result<Dispatch>;
}

impl Dense for GpuMatrix {
    fn prepare_with(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue, t: GemmTile) -> Result<Dispatch> {
        gemm::prepare_with(ctx, w, x, y, ep, t)
    }
    fn prepare_split(
        ctx: &Context,
        w: &Self,
        x: &Self,
        y: &Self,
        ep: &Epilogue,
        t: GemmTile,
        split: u32,
    ) -> Result<Vec<Dispatch>> {
        gemm::prepare_split(ctx, w, x, y, ep, t, split)
    }
    fn prepare_skinny(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue) -> Result<Dispatch> {
        gemm::prepare_skinny(ctx, w, x, y, ep)
    }
    fn run(ctx: &Context, mma: Mma, w: &Self, x: &Self, y: &Self, ep: &Epilogue) -> Result<()> {
        assert_eq!(mma, Mma::ShaderCores, "no f32 cooperative GEMM");
        gemm::run(ctx, w, x, y, ep)
    }
    fn prepare_coop(_: &Context, _: &Self, _: &Self, _: &Self, _: &Epilogue, _: CoopTile) -> Result<Dispatch> {
        unreachable!("no f32 cooperative GEMM: the variant is not generated")
    }
}

impl Dense for GpuMatrixF16 {
    fn prepare_with(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue, t: GemmTile) -> Result<Dispatch> {
        gemm_f16::prepare_with(ctx, w, x, y, ep, t)
    }
    fn prepare_split(
        ctx: &Context,
        w: &Self,
        x: &Self,
        y: &Self,
        ep: &Epilogue,
        t: GemmTile,
        split: u32,
    ) -> Result<Vec<Dispatch>> {
        gemm_f16::prepare_split(ctx, w, x, y, ep, t, split)
    }
    fn prepare_skinny(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue) -> Result<Dispatch> {
        gemm_f16::prepare_skinny(ctx, w, x, y, ep)
    }
    fn run(ctx: &Context, mma: Mma, w: &Self, x: &Self, y: &Self, ep: &Epilogue) -> Result<()> {
        match mma {
            Mma::ShaderCores => gemm_f16::run(ctx, w, x, y, ep),
            Mma::Coop => gemm_coop::run(ctx, w, x, y, ep),
        }
    }
    fn prepare_coop(ctx: &Context, w: &Self, x: &Self, y: &Self, ep: &Epilogue, t: CoopTile) -> Result<Dispatch> {
        gemm_coop::prepare_with(ctx, w, x, y, ep, t)
    }
}

/// (M, K, N): none a multiple of a tile; N = 1, 3, 29, 131, 257 are not
/// multiples of 8, 64 is.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (37, 53, 29),
    (130, 17, 70),
    (5, 300, 3),
    (200, 64, 131),
    (96, 16, 257),
    (129, 129, 129),
    (70, 45, 1),
];

/// A cooperative entry point on an adapter without cooperative matrices: a
/// clear `Error::Gpu` naming them, and no pipeline.
fn assert_needs_coop<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(wgsparse::Error::Gpu(msg)) => assert!(msg.contains("cooperative"), "{what}: {msg}"),
        other => panic!("{what}: expected a cooperative-matrix error, got {other:?}"),
    }
}

fn every_tile_matches_the_reference<S: Dense>(v: Variant) {
    let (ctx, coop) = v.context();
    let mut ran = 0;
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        let w = random(m, k, s as u64);
        let x = random(k, n, 100 + s as u64);
        let want = reference::gemm(&S::rounded(&w), &S::rounded(&x)).unwrap();
        let (gw, gx) = (S::up(&ctx, &w), S::up(&ctx, &x));
        let ep = Epilogue::default();
        let check = |d: Dispatch, what: String, y: S| {
            ctx.submit(&[&d]);
            assert_close(&y.down(&ctx), &want, S::TOL, &format!("{v:?} {m}x{k}x{n} {what}"));
        };
        match v.mma {
            Mma::ShaderCores => {
                for tile in GemmTile::ALL.into_iter().chain(GemmTile::EXPERIMENTAL) {
                    if tile.validate(&ctx).is_err() {
                        continue;
                    }
                    let y = S::poisoned(&ctx, m, n);
                    check(
                        S::prepare_with(&ctx, &gw, &gx, &y, &ep, tile).unwrap(),
                        format!("{tile:?}"),
                        y,
                    );
                    ran += 1;
                }
            }
            Mma::Coop => {
                for tile in CoopTile::CANDIDATES {
                    let y = S::poisoned(&ctx, m, n);
                    let r = S::prepare_coop(&ctx, &gw, &gx, &y, &ep, tile);
                    if coop.is_none() {
                        assert_needs_coop(r, &format!("{v:?} {tile:?}"));
                        ran += 1;
                        continue;
                    }
                    // Tiles beyond the device's workgroup memory are refused.
                    let Ok(d) = r else { continue };
                    check(d, format!("{tile:?}"), y);
                    ran += 1;
                }
            }
        }
    }
    assert!(
        ran >= SHAPES.len() * 4,
        "{v:?}: only {ran} tile runs: too many tiles refused"
    );
}

testgen!(every_tile_matches_the_reference, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
    f16_coop: GpuMatrixF16, Coop;
});

fn fused_bias_and_activations<S: Dense>(v: Variant) {
    let (ctx, _) = v.context();
    // N = 33 takes a tiled kernel, N = 5 the skinny one (the cooperative
    // dispatch falls back for both: they are below its size threshold).
    for (m, k, n) in [(70, 45, 33), (70, 45, 5)] {
        let w = random(m, k, 1);
        let x = random(k, n, 2);
        let (bias, gbias) = bias_buffer(&ctx, m, 3);
        let plain = reference::gemm(&S::rounded(&w), &S::rounded(&x)).unwrap();
        let (gw, gx) = (S::up(&ctx, &w), S::up(&ctx, &x));
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            for with_bias in [false, true] {
                let ep = Epilogue {
                    bias: with_bias.then_some(&gbias),
                    act,
                };
                let y = S::poisoned(&ctx, m, n);
                S::run(&ctx, v.mma, &gw, &gx, &y, &ep).unwrap();
                let want = epilogue(plain.clone(), with_bias.then_some(&bias[..]), act);
                let what = format!("{v:?} {m}x{k}x{n} {act:?} bias {with_bias}");
                assert_close(&y.down(&ctx), &want, S::TOL, &what);
                // The cooperative kernel itself, with the same epilogue, where it runs.
                if v.mma == Mma::Coop {
                    let y = S::poisoned(&ctx, m, n);
                    match S::prepare_coop(&ctx, &gw, &gx, &y, &ep, CoopTile::DEFAULT) {
                        Ok(d) => {
                            ctx.submit(&[&d]);
                            assert_close(&y.down(&ctx), &want, S::TOL, &format!("{what} coop"));
                        }
                        r => assert_needs_coop(r, &what),
                    }
                }
            }
        }
    }
}

testgen!(fused_bias_and_activations, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
    f16_coop: GpuMatrixF16, Coop;
});

fn mismatched_shapes_and_short_bias_are_errors<S: Dense>(v: Variant) {
    let (ctx, _) = v.context();
    let w = S::up(&ctx, &random(4, 5, 1));
    let x = S::up(&ctx, &random(6, 3, 2));
    let y = S::poisoned(&ctx, 4, 3);
    assert!(matches!(
        S::run(&ctx, v.mma, &w, &x, &y, &Epilogue::default()),
        Err(wgsparse::Error::Shape(_))
    ));
    let x = S::up(&ctx, &random(5, 3, 2));
    let (_, short) = bias_buffer(&ctx, 2, 1);
    let ep = Epilogue {
        bias: Some(&short),
        act: Activation::None,
    };
    assert!(matches!(
        S::run(&ctx, v.mma, &w, &x, &y, &ep),
        Err(wgsparse::Error::Shape(_))
    ));
}

testgen!(mismatched_shapes_and_short_bias_are_errors, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
    f16_coop: GpuMatrixF16, Coop;
});

fn skinny_x_uses_the_split_k_kernel<S: Dense>(v: Variant) {
    let (ctx, _) = v.context();
    for (s, &(m, k, n)) in [
        (1000, 1280, 1),
        (37, 53, 3),
        (5, 300, 16),
        (130, 1, 7),
        (1, 4097, 13),
        (64, 64, 8),
    ]
    .iter()
    .enumerate()
    {
        let w = random(m, k, 20 + s as u64);
        let x = random(k, n, 40 + s as u64);
        let (bias, gbias) = bias_buffer(&ctx, m, 7);
        let want = epilogue(
            reference::gemm(&S::rounded(&w), &S::rounded(&x)).unwrap(),
            Some(&bias),
            Activation::Relu6,
        );
        let (gw, gx) = (S::up(&ctx, &w), S::up(&ctx, &x));
        let y = S::poisoned(&ctx, m, n);
        let ep = Epilogue {
            bias: Some(&gbias),
            act: Activation::Relu6,
        };
        let d = S::prepare_skinny(&ctx, &gw, &gx, &y, &ep).unwrap();
        ctx.submit(&[&d]);
        assert_close(&y.down(&ctx), &want, S::TOL, &format!("{v:?} skinny {m}x{k}x{n}"));
    }
    // Wider X is refused by the skinny kernel itself.
    let gw = S::up(&ctx, &random(4, 4, 1));
    let gx = S::up(&ctx, &random(4, 17, 1));
    let y = S::poisoned(&ctx, 4, 17);
    assert!(S::prepare_skinny(&ctx, &gw, &gx, &y, &Epilogue::default()).is_err());
}

// The skinny and split-K kernels are shader-core kernels only.
testgen!(skinny_x_uses_the_split_k_kernel, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
});

fn split_k_matches_the_reference_with_the_epilogue<S: Dense>(v: Variant) {
    let (ctx, _) = v.context();
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
        let (gw, gx) = (S::up(&ctx, &w), S::up(&ctx, &x));
        let tile = GemmTile::choose(&ctx, m, n);
        let split = if split == 0 {
            gemm::choose_split(m, k, n, tile)
        } else {
            split
        };
        for act in [Activation::None, Activation::Relu6] {
            let ep = Epilogue { bias: Some(&gb), act };
            let y = S::poisoned(&ctx, m, n);
            let ds = S::prepare_split(&ctx, &gw, &gx, &y, &ep, tile, split).unwrap();
            assert_eq!(ds.len(), if split > 1 { 2 } else { 1 });
            ctx.submit(&ds.iter().collect::<Vec<_>>());
            let want = epilogue(
                reference::gemm(&S::rounded(&w), &S::rounded(&x)).unwrap(),
                Some(&bias),
                act,
            );
            assert_close(
                &y.down(&ctx),
                &want,
                S::TOL,
                &format!("{v:?} {m}x{k}x{n} split {split} {act:?}"),
            );
        }
    }
    assert!(gemm::choose_split(192, 1152, 49, GemmTile::NARROW) > 1);
    assert_eq!(gemm::choose_split(4096, 4096, 4096, GemmTile::LARGE), 1);
    let (gw, gx, y) = (
        S::up(&ctx, &random(8, 8, 1)),
        S::up(&ctx, &random(8, 8, 2)),
        S::poisoned(&ctx, 8, 8),
    );
    for bad in [0, gemm::MAX_SPLIT + 1] {
        assert!(S::prepare_split(&ctx, &gw, &gx, &y, &Epilogue::default(), GemmTile::NARROW, bad).is_err());
    }
}

testgen!(split_k_matches_the_reference_with_the_epilogue, {
    f32_shader_cores: GpuMatrix, ShaderCores;
    f16_shader_cores: GpuMatrixF16, ShaderCores;
});
