//! Stem/depthwise convolutions and average pooling on the GPU against the CPU
//! reference: odd sizes, strides 1 and 2, symmetric and TF-"same" padding;
//! with f32 and with f16 activations (f32 weights and sums), outputs poisoned
//! with NaN.

mod common;

use common::variants::Storage;
use common::*;
use wgsparse::gpu::conv::{self, ConvShape};
use wgsparse::gpu::{elementwise, f16_rounded, Activation, Context, GpuBuffer, GpuMatrix, GpuMatrixF16};
use wgsparse::reference;

fn shapes() -> Vec<ConvShape> {
    let mut v = vec![
        ConvShape::same(3, 32, 29, 31, 3, 2),
        ConvShape::same(7, 7, 15, 13, 5, 2),
        ConvShape::same(5, 5, 9, 9, 3, 1),
        ConvShape::same(6, 6, 14, 14, 5, 1),
    ];
    let mut sym = ConvShape::same(4, 4, 17, 10, 3, 2);
    (sym.pad_top, sym.pad_left, sym.pad_bottom, sym.pad_right) = (1, 1, 1, 1);
    v.push(sym);
    v
}

fn check_convolutions<T: Storage>(ctx: &Context) {
    let what = if T::F16 { "f16" } else { "f32" };
    for (i, s) in shapes().into_iter().enumerate() {
        let (oh, ow) = s.out_hw().unwrap();
        let x = T::rounded(&random(s.cin, s.h * s.w, i as u64));
        let gx = T::up(ctx, &x);
        let bias = random(1, s.cout, 100 + i as u64).into_data();
        let gb = GpuBuffer::from_slice(ctx, &bias, "b").unwrap();
        for act in [Activation::None, Activation::Relu6] {
            let w = random(1, s.cout * s.cin * s.k * s.k, 200 + i as u64).into_data();
            let gw = GpuBuffer::from_slice(ctx, &w, "w").unwrap();
            let y = T::poisoned(ctx, s.cout, oh * ow);
            let d = conv::prepare_conv2d(ctx, &s, &gx, &gw, &gb, &y, act).unwrap();
            ctx.submit(&[&d]);
            let want = reference::conv2d(&x, &s, &w, &bias, act).unwrap();
            assert_close(&y.down(ctx), &want, T::TOL, &format!("conv2d {what} {s:?}"));
            if s.cin == s.cout {
                let w = random(1, s.cout * s.k * s.k, 300 + i as u64).into_data();
                let gw = GpuBuffer::from_slice(ctx, &w, "w").unwrap();
                let y = T::poisoned(ctx, s.cout, oh * ow);
                let d = conv::prepare_depthwise(ctx, &s, &gx, &gw, &gb, &y, act).unwrap();
                ctx.submit(&[&d]);
                let want = reference::depthwise(&x, &s, &w, &bias, act).unwrap();
                assert_close(&y.down(ctx), &want, T::TOL, &format!("depthwise {what} {s:?}"));
            }
        }
    }
}

fn check_avgpool<T: Storage>(ctx: &Context) {
    for (c, h, w) in [(1280, 7, 7), (3, 1, 1), (5, 23, 19)] {
        let x = T::rounded(&random(c, h * w, c as u64));
        let gx = T::up(ctx, &x);
        let y = T::poisoned(ctx, c, 1);
        let d = conv::prepare_avgpool(ctx, &gx, h, w, &y).unwrap();
        ctx.submit(&[&d]);
        let want = reference::avgpool(&x).unwrap();
        assert_close(
            &y.down(ctx),
            &want,
            T::TOL,
            &format!("avgpool f16={} {c}x{h}x{w}", T::F16),
        );
    }
}

#[test]
fn conv2d_and_depthwise_match_the_reference() {
    check_convolutions::<GpuMatrix>(&ctx());
}

#[test]
fn avgpool_matches_the_reference() {
    check_avgpool::<GpuMatrix>(&ctx());
}

#[test]
fn wrong_shapes_are_errors() {
    let ctx = ctx();
    let s = ConvShape::same(3, 8, 10, 10, 3, 2);
    let gx = GpuMatrix::upload(&ctx, &random(3, 99, 1), "x").unwrap();
    let gw = GpuBuffer::from_slice(&ctx, &random(1, 8 * 27, 2).into_data(), "w").unwrap();
    let gb = GpuBuffer::from_slice(&ctx, &[0.0f32; 8], "b").unwrap();
    let y = GpuMatrix::new(&ctx, 8, 25, "y").unwrap();
    assert!(conv::prepare_conv2d(&ctx, &s, &gx, &gw, &gb, &y, Activation::None).is_err());
    let gx = GpuMatrix::upload(&ctx, &random(3, 100, 1), "x").unwrap();
    let short = GpuBuffer::from_slice(&ctx, &[0.0f32; 4], "w").unwrap();
    assert!(conv::prepare_conv2d(&ctx, &s, &gx, &short, &gb, &y, Activation::None).is_err());
    assert!(conv::prepare_conv2d(&ctx, &s, &gx, &gw, &gb, &y, Activation::None).is_ok());
    assert!(conv::prepare_depthwise(&ctx, &s, &gx, &gw, &gb, &y, Activation::None).is_err());
}

#[test]
fn f16_activations_match_the_reference() {
    let ctx = ctx_f16();
    check_convolutions::<GpuMatrixF16>(&ctx);
    check_avgpool::<GpuMatrixF16>(&ctx);
}

#[test]
fn residual_add_in_f16_and_f32_matches_the_cpu() {
    let ctx = ctx_f16();
    for (rows, cols) in [(24, 3136), (7, 13), (1, 1)] {
        let (a, b) = (random(rows, cols, 1), random(rows, cols, 2));
        let mut want = a.clone();
        for (w, v) in want.data_mut().iter_mut().zip(b.data()) {
            *w += v;
        }
        // f32
        let (ga, gb) = (
            GpuMatrix::upload(&ctx, &a, "a").unwrap(),
            GpuMatrix::upload(&ctx, &b, "b").unwrap(),
        );
        ctx.submit(&[&elementwise::prepare_add(&ctx, ga.buffer(), gb.buffer()).unwrap()]);
        assert_close(&ga.download_blocking(&ctx).unwrap(), &want, F32_REL_TOL, "add f32");
        // f16: the sum of the f16-rounded operands, rounded once
        let (a16, b16) = (f16_rounded(&a), f16_rounded(&b));
        let mut want16 = a16.clone();
        for (w, v) in want16.data_mut().iter_mut().zip(b16.data()) {
            *w += v;
        }
        let ga = GpuMatrixF16::upload(&ctx, &a16, "a").unwrap();
        let gb = GpuMatrixF16::upload(&ctx, &b16, "b").unwrap();
        ctx.submit(&[&elementwise::prepare_add_f16(&ctx, ga.buffer(), gb.buffer()).unwrap()]);
        assert_close(&ga.download_blocking(&ctx).unwrap(), &want16, 1e-3, "add f16");
        // Buffers of different sizes are an error, not a partial add.
        let short = GpuMatrixF16::new(&ctx, rows, cols + 9, "c").unwrap();
        assert!(elementwise::prepare_add_f16(&ctx, ga.buffer(), short.buffer()).is_err());
    }
}
