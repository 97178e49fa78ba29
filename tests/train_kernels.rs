//! The training kernels against their CPU references (src/train/reference.rs,
//! itself checked against finite differences) on lavapipe in CI: random
//! shapes that are not multiples of the tiles, outputs poisoned with NaN
//! first, compared by relative error.

mod common;

use common::ctx;
use wgsparse::gpu::{elementwise, Context, Dispatch, GpuBuffer, GpuMatrix, PrunePlan};
use wgsparse::prune::BlockNorm;
use wgsparse::train::kernels::{self as k, ConvGeom, GemmEpilogue, Operand, Pruned};
use wgsparse::train::{reference, Rng};
use wgsparse::{Matrix, Pattern};

/// Relative error (max |a - b| / max |b|) every kernel must meet in f32.
const REL_TOL: f64 = 1e-5;

fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.range(-1.0, 1.0) as f32).collect()
}

fn upload(ctx: &Context, v: &[f32]) -> GpuBuffer {
    GpuBuffer::from_slice(ctx, v, "test").unwrap()
}

fn poisoned(ctx: &Context, n: usize) -> GpuBuffer {
    let b = GpuBuffer::new(ctx, (n.max(1) * 4) as u64, "poisoned").unwrap();
    elementwise::fill_f32(ctx, &b, f32::NAN).unwrap();
    b
}

fn run(ctx: &Context, list: &[Dispatch]) {
    let refs: Vec<&Dispatch> = list.iter().collect();
    ctx.submit(&refs);
    ctx.take_errors().unwrap();
}

fn read(ctx: &Context, b: &GpuBuffer, n: usize) -> Vec<f32> {
    let v: Vec<f32> = b.read_blocking(ctx).unwrap();
    v[..n].to_vec()
}

fn assert_rel(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: [{i}] = {g} (poison left or overflow)");
        worst = worst.max((g as f64 - w).abs() / scale);
    }
    assert!(worst <= REL_TOL, "{what}: relative error {worst:.2e} > {REL_TOL:.0e}");
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

#[test]
fn gemm_with_transposes_split_k_and_epilogue_matches_the_cpu() {
    let ctx = ctx();
    let scratch = GpuBuffer::new(&ctx, 4 << 20, "scratch").unwrap();
    let mut seed = 10;
    for &(m, n, kk) in &[
        (1, 1, 1),
        (37, 53, 29),
        (65, 3, 1000),
        (16, 24, 5000),
        (130, 70, 17),
        (3, 200, 64),
    ] {
        for ta in [false, true] {
            for tb in [false, true] {
                seed += 1;
                let a = rand(m * kk, seed);
                let b = rand(kk * n, seed + 100);
                let want = reference::matmul(&a, &b, m, n, kk);
                // Store A (and B) transposed where asked and read them through strides.
                let a_buf = if ta {
                    upload(&ctx, &transpose(&a, m, kk))
                } else {
                    upload(&ctx, &a)
                };
                let b_buf = if tb {
                    upload(&ctx, &transpose(&b, kk, n))
                } else {
                    upload(&ctx, &b)
                };
                let ao = if ta {
                    Operand::transposed(&a_buf, m)
                } else {
                    Operand::rows(&a_buf, kk)
                };
                let bo = if tb {
                    Operand::transposed(&b_buf, kk)
                } else {
                    Operand::rows(&b_buf, n)
                };
                // Split-K (weight gradients) and the plain kernel.
                for split in [false, true] {
                    let c = poisoned(&ctx, m * n);
                    let list = k::gemm(
                        &ctx,
                        ao,
                        bo,
                        &c,
                        m,
                        n,
                        kk,
                        GemmEpilogue::default(),
                        split.then_some(&scratch),
                    )
                    .unwrap();
                    run(&ctx, &list);
                    let what = format!(
                        "gemm {m}x{n}x{kk} ta={ta} tb={tb} split={split} ({} dispatches)",
                        list.len()
                    );
                    assert_rel(&read(&ctx, &c, m * n), &want, &what);
                    // Accumulating adds to what is there.
                    let list = k::gemm(
                        &ctx,
                        ao,
                        bo,
                        &c,
                        m,
                        n,
                        kk,
                        GemmEpilogue {
                            accumulate: true,
                            ..Default::default()
                        },
                        split.then_some(&scratch),
                    )
                    .unwrap();
                    run(&ctx, &list);
                    let twice: Vec<f64> = want.iter().map(|x| 2.0 * x).collect();
                    assert_rel(&read(&ctx, &c, m * n), &twice, &format!("{what} accumulate"));
                }
            }
        }
        // Bias, ReLU6 and residual (the forward of a 1x1 convolution).
        let (a, b) = (rand(m * kk, seed + 7), rand(kk * n, seed + 8));
        let bias = rand(m, seed + 9);
        let res = rand(m * n, seed + 10);
        let (ab, bb, biasb, resb) = (
            upload(&ctx, &a),
            upload(&ctx, &b),
            upload(&ctx, &bias),
            upload(&ctx, &res),
        );
        let c = poisoned(&ctx, m * n);
        let list = k::gemm(
            &ctx,
            Operand::rows(&ab, kk),
            Operand::rows(&bb, n),
            &c,
            m,
            n,
            kk,
            GemmEpilogue {
                bias: Some(&biasb),
                relu6: true,
                residual: Some(&resb),
                accumulate: false,
            },
            None,
        )
        .unwrap();
        run(&ctx, &list);
        let want_unscaled: Vec<f64> = reference::matmul(&a, &b, m, n, kk)
            .iter()
            .enumerate()
            .map(|(i, v)| ((v + bias[i / n] as f64).clamp(0.0, 6.0)) + res[i] as f64)
            .collect();
        assert_rel(
            &read(&ctx, &c, m * n),
            &want_unscaled,
            &format!("gemm epilogue {m}x{n}x{kk}"),
        );
    }
}

fn geoms() -> Vec<ConvGeom> {
    let mut v = Vec::new();
    for (depthwise, cin, cout, kk, stride, h, w, batch) in [
        (false, 3, 5, 3, 2, 17, 13, 3),
        (true, 7, 7, 3, 1, 9, 11, 2),
        (true, 5, 5, 3, 2, 12, 9, 3),
        (true, 6, 6, 5, 2, 13, 14, 2),
        (true, 3, 3, 5, 1, 7, 7, 1),
        (true, 4, 4, 3, 1, 40, 37, 3),
        (false, 3, 2, 3, 2, 71, 64, 2),
    ] {
        v.push(ConvGeom::same(cin, cout, batch, kk, stride, h, w, depthwise));
    }
    v
}

#[test]
fn convolution_forward_and_backward_match_the_cpu() {
    let ctx = ctx();
    for (gi, g) in geoms().iter().enumerate() {
        let s = 50 + gi as u64 * 10;
        let x: Vec<f32> = rand(g.input_len(), s).iter().map(|v| v * 3.0).collect();
        let w = rand(g.cout * g.weight_cols(), s + 1);
        let b = rand(g.cout, s + 2);
        let dz = rand(g.output_len(), s + 3);
        let (xb, wb, bb, dzb) = (upload(&ctx, &x), upload(&ctx, &w), upload(&ctx, &b), upload(&ctx, &dz));
        for relu6 in [false, true] {
            let y = poisoned(&ctx, g.output_len());
            run(&ctx, &[k::conv(&ctx, g, &xb, &wb, &bb, &y, relu6).unwrap()]);
            let want: Vec<f64> = reference::conv(g, &x, &w, &b, relu6)
                .iter()
                .map(|&v| v as f64)
                .collect();
            assert_rel(
                &read(&ctx, &y, g.output_len()),
                &want,
                &format!("conv {g:?} relu6={relu6}"),
            );
        }
        let (dx, dw, db) = reference::conv_backward(g, &x, &w, &dz);
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let dwb = poisoned(&ctx, dw.len());
        let dbb = poisoned(&ctx, db.len());
        let scratch = GpuBuffer::new(&ctx, 1 << 20, "scratch").unwrap();
        run(
            &ctx,
            &k::conv_bwd_w(&ctx, g, &dzb, &xb, &dwb, &dbb, &scratch, false).unwrap(),
        );
        run(
            &ctx,
            &k::conv_bwd_w(&ctx, g, &dzb, &xb, &dwb, &dbb, &scratch, true).unwrap(),
        );
        let twice = |v: &[f32]| v.iter().map(|&x| 2.0 * x as f64).collect::<Vec<_>>();
        assert_rel(
            &read(&ctx, &dwb, dw.len()),
            &twice(&dw),
            &format!("conv dw accumulate {g:?}"),
        );
        run(
            &ctx,
            &k::conv_bwd_w(&ctx, g, &dzb, &xb, &dwb, &dbb, &scratch, false).unwrap(),
        );
        assert_rel(&read(&ctx, &dwb, dw.len()), &f64s(&dw), &format!("conv dw {g:?}"));
        assert_rel(&read(&ctx, &dbb, db.len()), &f64s(&db), &format!("conv db {g:?}"));
        if g.depthwise {
            let dxb = poisoned(&ctx, dx.len());
            run(&ctx, &[k::dw_bwd_x(&ctx, g, &dzb, &wb, &dxb, false).unwrap()]);
            assert_rel(&read(&ctx, &dxb, dx.len()), &f64s(&dx), &format!("depthwise dx {g:?}"));
            run(&ctx, &[k::dw_bwd_x(&ctx, g, &dzb, &wb, &dxb, true).unwrap()]);
            let twice: Vec<f64> = dx.iter().map(|&v| 2.0 * v as f64).collect();
            assert_rel(
                &read(&ctx, &dxb, dx.len()),
                &twice,
                &format!("depthwise dx accumulate {g:?}"),
            );
        } else {
            assert!(k::dw_bwd_x(&ctx, g, &dzb, &wb, &poisoned(&ctx, dx.len()), false).is_err());
        }
    }
}

#[test]
fn pooling_gating_and_row_sums_match_the_cpu() {
    let ctx = ctx();
    let (rows, cols) = (37, 49);
    let x: Vec<f32> = rand(rows * cols, 3).iter().map(|v| v * 8.0).collect();
    let xb = upload(&ctx, &x);
    let out = poisoned(&ctx, rows);
    run(&ctx, &[k::rowsum(&ctx, &xb, &out, rows, cols, 0.5, false).unwrap()]);
    let want: Vec<f64> = (0..rows)
        .map(|r| 0.5 * x[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).sum::<f64>())
        .collect();
    assert_rel(&read(&ctx, &out, rows), &want, "rowsum");
    // Backward of pooling with the ReLU6 gate of the pooled tensor.
    let d = rand(rows, 4);
    let db = upload(&ctx, &d);
    let dst = poisoned(&ctx, rows * cols);
    run(
        &ctx,
        &[k::pool_backward(&ctx, &db, &dst, rows, cols, 0.25, Some(&xb)).unwrap()],
    );
    let gate = |y: f32| if y > 0.0 && y < 6.0 { 1.0 } else { 0.0 };
    let want: Vec<f64> = (0..rows * cols)
        .map(|i| 0.25 * d[i / cols] as f64 * gate(x[i]))
        .collect();
    assert_rel(&read(&ctx, &dst, rows * cols), &want, "bcast");
    let g = rand(rows * cols, 5);
    let gb = upload(&ctx, &g);
    run(&ctx, &[k::relu6_backward(&ctx, &gb, &xb, rows * cols).unwrap()]);
    let want: Vec<f64> = (0..rows * cols).map(|i| g[i] as f64 * gate(x[i])).collect();
    assert_rel(&read(&ctx, &gb, rows * cols), &want, "gate");
}

#[test]
fn distillation_and_feature_losses_match_the_cpu() {
    let ctx = ctx();
    let (classes, batch) = (1000, 5);
    let s: Vec<f32> = rand(classes * batch, 1).iter().map(|v| v * 6.0).collect();
    let t: Vec<f32> = rand(classes * batch, 2).iter().map(|v| v * 6.0).collect();
    let (sb, tb) = (upload(&ctx, &s), upload(&ctx, &t));
    for temp in [1.0f32, 4.0] {
        let ds = poisoned(&ctx, classes * batch);
        let metrics = poisoned(&ctx, 3 + 2 * batch);
        run(
            &ctx,
            &[k::kd_loss(&ctx, &sb, &tb, &ds, &metrics, 3, classes, batch, temp, 0.7).unwrap()],
        );
        let (loss, want) = reference::kd(&s, &t, classes, batch, temp as f64, 0.7);
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        assert_rel(
            &read(&ctx, &ds, classes * batch),
            &want,
            &format!("kd gradient T={temp}"),
        );
        let m = read(&ctx, &metrics, 3 + 2 * batch);
        for b in 0..batch {
            let l = m[3 + 2 * b] as f64;
            assert!(
                (l - loss[b]).abs() <= 1e-4 * (1.0 + loss[b]),
                "kd loss [{b}]: {l} vs {}",
                loss[b]
            );
            let am = |v: &[f32]| {
                (0..classes)
                    .max_by(|&a, &c| v[a * batch + b].total_cmp(&v[c * batch + b]).then(c.cmp(&a)))
                    .unwrap()
            };
            assert_eq!(m[4 + 2 * b], (am(&s) == am(&t)) as u32 as f32, "agreement [{b}]");
        }
    }
    // Agreement: a student equal to the teacher agrees everywhere, loss 0.
    let ds = poisoned(&ctx, classes * batch);
    let metrics = poisoned(&ctx, 2 * batch);
    run(
        &ctx,
        &[k::kd_loss(&ctx, &tb, &tb, &ds, &metrics, 0, classes, batch, 1.0, 1.0).unwrap()],
    );
    let m = read(&ctx, &metrics, 2 * batch);
    for b in 0..batch {
        assert!(
            m[2 * b].abs() < 1e-5 && m[2 * b + 1] == 1.0,
            "self-distillation [{b}]: {m:?}"
        );
    }
    // Feature matching.
    let len = 70_001;
    let (fs, ft, g0) = (rand(len, 7), rand(len, 8), rand(len, 9));
    let (fsb, ftb, gb) = (upload(&ctx, &fs), upload(&ctx, &ft), upload(&ctx, &g0));
    let metrics = poisoned(&ctx, 10 + k::FEATURE_LOSS_GROUPS);
    run(
        &ctx,
        &[k::feature_loss(&ctx, &fsb, &ftb, &gb, &metrics, 10, len, 0.3).unwrap()],
    );
    let want: Vec<f64> = (0..len)
        .map(|i| g0[i] as f64 + 2.0 * 0.3 / len as f64 * (fs[i] as f64 - ft[i] as f64))
        .collect();
    assert_rel(&read(&ctx, &gb, len), &want, "feature gradient");
    let sq: f64 = read(&ctx, &metrics, 10 + k::FEATURE_LOSS_GROUPS)[10..]
        .iter()
        .map(|&v| v as f64)
        .sum();
    let want_sq: f64 = (0..len).map(|i| (fs[i] as f64 - ft[i] as f64).powi(2)).sum();
    assert!((sq - want_sq).abs() < 1e-4 * want_sq, "feature loss {sq} vs {want_sq}");
}

#[test]
fn masked_adam_matches_the_cpu_and_keeps_pruned_weights_exactly_zero() {
    let ctx = ctx();
    let n = 1003;
    let w0 = rand(n, 1);
    let mask: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
    let w_masked: Vec<f32> = w0.iter().zip(&mask).map(|(w, m)| w * m).collect();
    let (wb, mb, vb, maskb) = (
        upload(&ctx, &w_masked),
        upload(&ctx, &vec![0.0; n]),
        upload(&ctx, &vec![0.0; n]),
        upload(&ctx, &mask),
    );
    let gb = upload(&ctx, &vec![0.0; n]);
    let hyper = upload(&ctx, &[0.0f32; 8]);
    let d = k::adam(&ctx, &wb, &gb, &mb, &vb, Some(&maskb), &hyper, n, true).unwrap();
    let (mut w, mut m, mut v) = (w_masked.clone(), vec![0.0f32; n], vec![0.0f32; n]);
    for step in 1..=25 {
        let g = rand(n, 100 + step);
        ctx.queue().write_buffer(gb.raw(), 0, bytemuck::cast_slice(&g));
        let h = [
            1e-2f32,
            0.9,
            0.999,
            1e-8,
            1.0 - 0.9f32.powi(step as i32),
            1.0 - 0.999f32.powi(step as i32),
            0.01,
            1.0,
        ];
        ctx.queue().write_buffer(hyper.raw(), 0, bytemuck::cast_slice(&h));
        run(&ctx, std::slice::from_ref(&d));
        (w, m, v) = reference::adam(&w, &g, &m, &v, Some(&mask), h, true);
    }
    let got = read(&ctx, &wb, n);
    let want: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    assert_rel(&got, &want, "adam weights after 25 steps");
    for i in (0..n).step_by(3) {
        assert_eq!(got[i].to_bits(), 0, "pruned weight {i} is {} after 25 steps", got[i]);
    }
    assert!(got.iter().zip(&w_masked).any(|(a, b)| a != b), "unmasked weights moved");
    let _ = (m, v);
}

#[test]
fn masks_from_the_gpu_pruning_plans_match_the_cpu_masks() {
    let ctx = ctx();
    let w = common::random(48, 40, 77);
    let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
    for (pattern, s) in [
        (Pattern::Unstructured, 0.7),
        (Pattern::Block { rows: 16, cols: 16 }, 0.5),
        (Pattern::Block { rows: 4, cols: 8 }, 0.6),
        (Pattern::NM { n: 2, m: 4 }, 0.5),
        (Pattern::NM { n: 1, m: 3 }, 0.0),
    ] {
        let mask = poisoned(&ctx, 48 * 40);
        let mut list: Vec<Dispatch> = Vec::new();
        match pattern {
            Pattern::Unstructured => {
                let plan = PrunePlan::unstructured(&ctx, &gw, s).unwrap();
                list.extend(plan.dispatches().iter().cloned());
                list.extend(k::mask_from(&ctx, Pruned::Csr(plan.output()), &mask).unwrap());
                run(&ctx, &list);
            }
            Pattern::Block { rows, cols } => {
                let plan = PrunePlan::block(&ctx, &gw, rows, cols, s, BlockNorm::L2).unwrap();
                list.extend(plan.dispatches().iter().cloned());
                list.extend(k::mask_from(&ctx, Pruned::Bsr(plan.output()), &mask).unwrap());
                run(&ctx, &list);
            }
            Pattern::NM { n, m } => {
                let plan = PrunePlan::nm(&ctx, &gw, n, m).unwrap();
                list.extend(plan.dispatches().iter().cloned());
                list.extend(k::mask_from(&ctx, Pruned::Nm(plan.output()), &mask).unwrap());
                run(&ctx, &list);
            }
            Pattern::Dense => unreachable!(),
        }
        let (sp, _) = wgsparse::prune::prune(&w, pattern, s).unwrap();
        let dense: Matrix = sp.to_dense();
        let want: Vec<f32> = dense
            .data()
            .iter()
            .zip(w.data())
            .map(|(p, _)| if *p != 0.0 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(read(&ctx, &mask, 48 * 40), want, "mask of {pattern} at {s}");
    }
}
