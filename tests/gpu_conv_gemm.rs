//! The implicit-GEMM convolution against a CPU reference written from ONNX's
//! `Conv` definition (plain loops, f64 sums): odd sizes, strides, dilations,
//! asymmetric padding, 1x1 and 7x7 kernels, grouped and depthwise, batches,
//! every tile, with and without the fused epilogue; outputs poisoned with NaN.
//! Pruned weights through the CSR and N:M kernels against the same reference
//! on the masked dense weight. Bad geometry is a clear error, never a dispatch.

mod common;

use common::*;
use wgsparse::gpu::conv_gemm::{self, ConvGeometry, ConvTile};
use wgsparse::gpu::{Activation, Epilogue, GpuCsr, GpuMatrix, GpuNm};
use wgsparse::{Csr, Mask, Matrix, NmMatrix};

/// ONNX Conv, NCHW, written independently of the kernel: for every output
/// (n, co, oy, ox) the sum over the group's input channels and kernel taps of
/// X[n, ci, oy*s + ky*d - pad, ox*s + kx*d - pad] (zero outside) times W.
/// X is `[Cin, N*H*W]`, W `[Cout, Cin/g*KH*KW]`, the result `[Cout, N*OH*OW]`.
fn reference_conv(g: &ConvGeometry, w: &Matrix, x: &Matrix) -> Matrix {
    let (oh, ow) = g.output_hw().unwrap();
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let mut y = vec![0f32; g.cout * g.batch * oh * ow];
    for n in 0..g.batch {
        for co in 0..g.cout {
            let grp = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0f64;
                    for ci in 0..cin_g {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.pads[0] as isize;
                                let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize - g.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x.get(grp * cin_g + ci, n * g.h * g.w + iy as usize * g.w + ix as usize);
                                let wv = w.get(co, (ci * g.kh + ky) * g.kw + kx);
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[co * g.batch * oh * ow + n * oh * ow + oy * ow + ox] = s as f32;
                }
            }
        }
    }
    Matrix::new(g.cout, g.batch * oh * ow, y).unwrap()
}

fn geom(
    (batch, cin, h, w): (usize, usize, usize, usize),
    (cout, kh, kw): (usize, usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    pads: [usize; 4],
    groups: usize,
) -> ConvGeometry {
    ConvGeometry {
        batch,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        stride,
        dilation,
        pads,
        groups,
    }
}

fn cases() -> Vec<ConvGeometry> {
    vec![
        // 3x3 "same", odd image and channel counts, batch 2.
        geom((2, 3, 7, 9), (5, 3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 1),
        // Stride 2, dilation 2, asymmetric padding, non-square kernel.
        geom((1, 6, 11, 10), (7, 3, 2), (2, 1), (2, 3), [2, 0, 1, 3], 1),
        // 1x1 (a GEMM in disguise), more than one K stage.
        geom((3, 37, 5, 4), (70, 1, 1), (1, 1), (1, 1), [0, 0, 0, 0], 1),
        // 7x7 stride 2 pad 3 (ResNet's stem), K = 147 over several stages.
        geom((1, 3, 20, 17), (9, 7, 7), (2, 2), (1, 1), [3, 3, 3, 3], 1),
        // Grouped: 3 groups of 2 input / 3 output channels.
        geom((2, 6, 6, 7), (9, 3, 2), (1, 2), (1, 1), [1, 0, 1, 1], 3),
        // Depthwise 5x5 stride 2.
        geom((1, 4, 13, 12), (4, 5, 5), (2, 2), (1, 1), [2, 2, 2, 2], 4),
        // Kernel as large as the padded input: a single output pixel.
        geom((2, 2, 3, 3), (3, 5, 5), (1, 1), (1, 1), [1, 1, 1, 1], 1),
        // Many output channels and pixels: several workgroups each way.
        geom((1, 16, 19, 21), (130, 3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 1),
    ]
}

#[test]
fn every_tile_matches_the_reference() {
    let ctx = ctx();
    for (s, g) in cases().iter().enumerate() {
        let (oh, ow) = g.output_hw().unwrap();
        let w = random(g.cout, g.k(), 10 + s as u64);
        let x = random(g.cin, g.batch * g.h * g.w, 20 + s as u64);
        let want = reference_conv(g, &w, &x);
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        for tile in ConvTile::ALL {
            if tile.validate(&ctx).is_err() {
                continue;
            }
            let y = poisoned(&ctx, g.cout, g.batch * oh * ow);
            let d = conv_gemm::prepare_with(&ctx, g, &gw, &gx, &y, &Epilogue::default(), tile).unwrap();
            ctx.submit(&[&d]);
            let got = y.download_blocking(&ctx).unwrap();
            assert_close(&got, &want, F32_REL_TOL, &format!("conv {g:?} tile {tile:?}"));
        }
    }
    ctx.take_errors().unwrap();
}

#[test]
fn fused_bias_and_activation() {
    let ctx = ctx();
    for (s, g) in cases().iter().enumerate() {
        let (oh, ow) = g.output_hw().unwrap();
        let w = random(g.cout, g.k(), 30 + s as u64);
        let x = random(g.cin, g.batch * g.h * g.w, 40 + s as u64);
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let (b, gb) = bias_buffer(&ctx, g.cout, 50 + s as u64);
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            let want = epilogue(reference_conv(g, &w, &x), Some(&b), act);
            let y = poisoned(&ctx, g.cout, g.batch * oh * ow);
            let ep = Epilogue { bias: Some(&gb), act };
            conv_gemm::run(&ctx, g, &gw, &gx, &y, &ep).unwrap();
            let got = y.download_blocking(&ctx).unwrap();
            assert_close(&got, &want, F32_REL_TOL, &format!("conv {g:?} bias {act:?}"));
        }
    }
    ctx.take_errors().unwrap();
}

#[test]
fn bad_geometry_and_shapes_are_clear_errors() {
    let ctx = ctx();
    let ok = geom((1, 4, 5, 5), (6, 3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 2);
    let bad = [
        (ConvGeometry { groups: 3, ..ok }, "groups must divide"),
        (ConvGeometry { stride: (0, 1), ..ok }, "stride"),
        (
            ConvGeometry {
                kh: 9,
                pads: [0; 4],
                ..ok
            },
            "larger than the padded input",
        ),
        (ConvGeometry { batch: 0, ..ok }, "zero dimension"),
    ];
    for (g, want) in bad {
        let e = g.output_hw().unwrap_err().to_string();
        assert!(e.contains(want), "{g:?}: {e}");
    }
    let (oh, ow) = ok.output_hw().unwrap();
    let w = GpuMatrix::upload(&ctx, &random(ok.cout, ok.k(), 1), "w").unwrap();
    let x = GpuMatrix::upload(&ctx, &random(ok.cin, 25, 2), "x").unwrap();
    let y = poisoned(&ctx, ok.cout, oh * ow);
    let pipelines = ctx.cached_pipelines();
    // The weight of a groups = 1 convolution does not fit this geometry.
    let w1 = GpuMatrix::upload(&ctx, &random(ok.cout, ok.cin * 9, 3), "w1").unwrap();
    let e = conv_gemm::run(&ctx, &ok, &w1, &x, &y, &Epilogue::default()).unwrap_err();
    assert!(e.to_string().contains("weight is 6x36"), "{e}");
    let short_y = poisoned(&ctx, ok.cout, oh * ow - 1);
    let e = conv_gemm::run(&ctx, &ok, &w, &x, &short_y, &Epilogue::default()).unwrap_err();
    assert!(e.to_string().contains("output is"), "{e}");
    let e = conv_gemm::run(&ctx, &ConvGeometry { h: 4, ..ok }, &w, &x, &y, &Epilogue::default()).unwrap_err();
    assert!(e.to_string().contains("input is"), "{e}");
    assert_eq!(
        ctx.cached_pipelines(),
        pipelines,
        "a refused convolution reached a pipeline"
    );
    // And the good one runs.
    conv_gemm::run(&ctx, &ok, &w, &x, &y, &Epilogue::default()).unwrap();
    ctx.take_errors().unwrap();
}

/// `w` with a deterministic ~`zeros` fraction of its entries set to zero, and
/// the same as CSR.
fn sparse(w: &Matrix, zeros: f64, seed: u64) -> (Matrix, Csr) {
    let r = random(w.rows(), w.cols(), seed);
    let keep: Vec<bool> = r.data().iter().map(|v| ((*v as f64) + 1.0) / 2.0 >= zeros).collect();
    let mask = Mask::new(w.rows(), w.cols(), keep).unwrap();
    (w.masked(&mask).unwrap(), Csr::from_dense_masked(w, &mask).unwrap())
}

#[test]
fn csr_weights_match_the_reference() {
    let ctx = ctx();
    for (s, g) in cases().iter().enumerate() {
        let (oh, ow) = g.output_hw().unwrap();
        let x = random(g.cin, g.batch * g.h * g.w, 60 + s as u64);
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let (b, gb) = bias_buffer(&ctx, g.cout, 70 + s as u64);
        let w = random(g.cout, g.k(), 80 + s as u64);
        // Dense as CSR, 70% and 95% zeros, and no non-zero at all.
        for zeros in [0.0, 0.7, 0.95, 1.01] {
            let (wm, csr) = sparse(&w, zeros, 90 + s as u64);
            let gw = GpuCsr::upload(&ctx, &csr).unwrap();
            for (bias, act) in [(false, Activation::None), (true, Activation::Relu6)] {
                let want = epilogue(reference_conv(g, &wm, &x), bias.then_some(&b[..]), act);
                let y = poisoned(&ctx, g.cout, g.batch * oh * ow);
                let ep = Epilogue {
                    bias: bias.then_some(&gb),
                    act,
                };
                let d = conv_gemm::prepare_csr(&ctx, g, &gw, &gx, &y, &ep).unwrap();
                ctx.submit(&[&d]);
                let got = y.download_blocking(&ctx).unwrap();
                let what = format!("conv_csr {g:?} {} nnz {act:?}", csr.nnz());
                if csr.nnz() == 0 && !bias {
                    // All zeros: the exact result, not a relative error of nothing.
                    assert!(got.data().iter().all(|v| *v == 0.0), "{what}: {:?}", &got.data()[..4]);
                } else {
                    assert_close(&got, &want, F32_REL_TOL, &what);
                }
            }
        }
    }
    ctx.take_errors().unwrap();
}

#[test]
fn csr_weight_of_the_wrong_shape_is_refused() {
    let ctx = ctx();
    let g = geom((1, 4, 5, 5), (6, 3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 1);
    let (oh, ow) = g.output_hw().unwrap();
    let (_, csr) = sparse(&random(6, 35, 1), 0.5, 2);
    let gw = GpuCsr::upload(&ctx, &csr).unwrap();
    let x = GpuMatrix::upload(&ctx, &random(4, 25, 3), "x").unwrap();
    let y = poisoned(&ctx, 6, oh * ow);
    let e = conv_gemm::prepare_csr(&ctx, &g, &gw, &x, &y, &Epilogue::default()).unwrap_err();
    assert!(e.to_string().contains("weight is 6x35"), "{e}");
}

#[test]
fn nm_weights_match_the_reference() {
    let ctx = ctx();
    for (s, g) in cases().iter().enumerate() {
        let (oh, ow) = g.output_hw().unwrap();
        let x = random(g.cin, g.batch * g.h * g.w, 100 + s as u64);
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let (b, gb) = bias_buffer(&ctx, g.cout, 110 + s as u64);
        let w = random(g.cout, g.k(), 120 + s as u64);
        // K is odd in most cases: short last groups and padded slots.
        for (n, m) in [(2, 4), (1, 2), (4, 8), (1, 4)] {
            let pruned = wgsparse::prune::nm(&w, n, m).unwrap();
            let nm = NmMatrix::from_dense_masked(&w, &pruned.mask, n, m).unwrap();
            let wm = nm.to_dense();
            let gw = GpuNm::upload(&ctx, &nm).unwrap();
            for (bias, act) in [(false, Activation::None), (true, Activation::Relu)] {
                let want = epilogue(reference_conv(g, &wm, &x), bias.then_some(&b[..]), act);
                let y = poisoned(&ctx, g.cout, g.batch * oh * ow);
                let ep = Epilogue {
                    bias: bias.then_some(&gb),
                    act,
                };
                let d = conv_gemm::prepare_nm(&ctx, g, &gw, &gx, &y, &ep).unwrap();
                ctx.submit(&[&d]);
                let got = y.download_blocking(&ctx).unwrap();
                assert_close(&got, &want, F32_REL_TOL, &format!("conv_nm {n}:{m} {g:?} {act:?}"));
            }
        }
    }
    ctx.take_errors().unwrap();
}
