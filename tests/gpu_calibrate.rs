//! Calibration kernels and activation-aware (scored) pruning on the GPU against
//! the CPU: row statistics (relative error), scores (bit for bit), pruning by
//! scores (the same mask and the original weights' values, bit for bit) and bias
//! correction. Outputs are poisoned first. FAIL (never skip) without an adapter.

mod common;

use common::{ctx, random};
use wgsparse::gpu::{calibrate, elementwise, Context, GpuBuffer, GpuMatrix, PrunePlan};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::sparse::SparseMatrix;
use wgsparse::{Matrix, Pattern};

const POISON: u32 = 0x7fc0_dead;

fn poison(ctx: &Context, b: &GpuBuffer) {
    elementwise::fill_f32(ctx, b, f32::from_bits(POISON)).unwrap();
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Positive column norms spanning three decades (the spread real activations have).
fn norms(cols: usize, seed: u64) -> Vec<f32> {
    let r = random(1, cols, seed);
    r.data().iter().map(|v| 10f32.powf(1.5 * v)).collect()
}

fn run_plan<T>(ctx: &Context, plan: &PrunePlan<T>) {
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    plan.encode(&mut enc);
    ctx.queue().submit([enc.finish()]);
    pollster::block_on(plan.check(ctx)).unwrap();
}

#[test]
fn row_stats_accumulate_sums_and_squares() {
    let ctx = ctx();
    for (rows, cols) in [(1, 1), (3, 7), (37, 301), (5, 1029)] {
        let x = random(rows, cols, 7 + rows as u64);
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let offset = 6;
        let stats = GpuBuffer::from_slice(&ctx, &vec![0.25f32; offset + 2 * rows], "stats").unwrap();
        let d = calibrate::prepare_row_stats(&ctx, &gx, &stats, offset).unwrap();
        // Twice: the kernel accumulates.
        ctx.submit(&[&d, &d]);
        let got: Vec<f32> = stats.read_blocking(&ctx).unwrap();
        assert!(
            got[..offset].iter().all(|&v| v == 0.25),
            "words before the offset untouched"
        );
        for r in 0..rows {
            let row = &x.data()[r * cols..(r + 1) * cols];
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            let q: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
            for (g, want) in [
                (got[offset + 2 * r], 0.25 + 2.0 * s),
                (got[offset + 2 * r + 1], 0.25 + 2.0 * q),
            ] {
                let err = (g as f64 - want).abs() / want.abs().max(1.0);
                assert!(err < 1e-5, "{rows}x{cols} row {r}: {g} vs {want}");
            }
        }
    }
}

#[test]
fn scores_equal_the_cpu_bit_for_bit() {
    let ctx = ctx();
    for (rows, cols) in [(1, 1), (19, 33), (64, 130)] {
        let w = random(rows, cols, 3);
        let n = norms(cols, 4);
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let gn = GpuBuffer::from_slice(&ctx, &n, "norm").unwrap();
        let gs = GpuMatrix::new(&ctx, rows, cols, "scores").unwrap();
        poison(&ctx, gs.buffer());
        ctx.submit(&[&calibrate::prepare_score_cols(&ctx, &gw, &gn, &gs).unwrap()]);
        let want = prune::activation_scores(&w, &n).unwrap();
        assert_eq!(bits(gs.download_blocking(&ctx).unwrap().data()), bits(want.data()));
    }
    // Wrong shapes are errors, not wrong answers.
    let gw = GpuMatrix::upload(&ctx, &random(4, 8, 1), "w").unwrap();
    let short = GpuBuffer::from_slice(&ctx, &[1.0f32; 5], "norm").unwrap();
    let gs = GpuMatrix::new(&ctx, 4, 8, "s").unwrap();
    assert!(calibrate::prepare_score_cols(&ctx, &gw, &short, &gs).is_err());
    assert!(prune::activation_scores(&random(4, 8, 1), &[1.0; 5]).is_err());
}

/// GPU pruning by scores gives the CPU's mask and keeps the weights' own values.
#[test]
fn scored_pruning_matches_the_cpu_for_every_pattern() {
    let ctx = ctx();
    for (rows, cols, seed) in [(13, 37, 1u64), (48, 100, 2), (70, 129, 3)] {
        let w = random(rows, cols, seed);
        let n = norms(cols, seed + 10);
        let score = prune::activation_scores(&w, &n).unwrap();
        let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
        let gs = GpuMatrix::upload(&ctx, &score, "scores").unwrap();
        for (pattern, s) in [
            (Pattern::Unstructured, 0.7),
            (Pattern::NM { n: 2, m: 4 }, 0.5),
            (Pattern::NM { n: 1, m: 4 }, 0.75),
            (Pattern::Block { rows: 4, cols: 4 }, 0.6),
        ] {
            let (want, _) = prune::prune_scored(&w, &score, pattern, s).unwrap();
            let (plain, _) = prune::prune(&w, pattern, s).unwrap();
            let got: Matrix = match pattern {
                Pattern::Unstructured => {
                    let p = PrunePlan::unstructured_scored(&ctx, &gw, Some(&gs), s).unwrap();
                    poison(&ctx, &p.output().values);
                    run_plan(&ctx, &p);
                    pollster::block_on(p.output().download(&ctx)).unwrap().to_dense()
                }
                Pattern::NM { n, m } => {
                    let p = PrunePlan::nm_scored(&ctx, &gw, Some(&gs), n, m).unwrap();
                    poison(&ctx, &p.output().values);
                    run_plan(&ctx, &p);
                    pollster::block_on(p.output().download(&ctx)).unwrap().to_dense()
                }
                Pattern::Block { rows: br, cols: bc } => {
                    let p = PrunePlan::block_scored(&ctx, &gw, Some(&gs), (br, bc), s, BlockNorm::L2).unwrap();
                    poison(&ctx, &p.output().values);
                    run_plan(&ctx, &p);
                    pollster::block_on(p.output().download(&ctx)).unwrap().to_dense()
                }
                Pattern::Dense => unreachable!(),
            };
            let what = format!("{rows}x{cols} {pattern}");
            assert_eq!(bits(got.data()), bits(want.to_dense().data()), "{what}");
            // The criterion matters: a different mask from plain magnitude.
            assert_ne!(
                bits(want.to_dense().data()),
                bits(SparseMatrix::to_dense(&plain).data()),
                "{what}: scores chose the magnitude mask"
            );
        }
    }
    // Scores of another shape are an error.
    let gw = GpuMatrix::upload(&ctx, &random(8, 8, 1), "w").unwrap();
    let gs = GpuMatrix::upload(&ctx, &random(8, 9, 1), "s").unwrap();
    assert!(PrunePlan::unstructured_scored(&ctx, &gw, Some(&gs), 0.5).is_err());
    assert!(PrunePlan::nm_scored(&ctx, &gw, Some(&gs), 2, 4).is_err());
    assert!(PrunePlan::block_scored(&ctx, &gw, Some(&gs), (2, 2), 0.5, BlockNorm::L2).is_err());
}

#[test]
fn bias_correction_adds_the_removed_mean() {
    let ctx = ctx();
    let (rows, stride) = (37, 4);
    let yd = random(rows, 1, 5);
    let yp = random(rows, 1, 6);
    let b = random(1, rows, 7);
    let gyd = GpuMatrix::upload(&ctx, &yd, "yd").unwrap();
    let gyp = GpuMatrix::upload(&ctx, &yp, "yp").unwrap();
    assert_eq!(gyd.stride(), stride);
    let gb = GpuBuffer::from_slice(&ctx, b.data(), "b").unwrap();
    let out = GpuBuffer::new(&ctx, 4 * rows as u64, "out").unwrap();
    poison(&ctx, &out);
    ctx.submit(&[&calibrate::prepare_bias_correct(&ctx, &gb, &gyd, &gyp, &out).unwrap()]);
    let got: Vec<f32> = out.read_blocking(&ctx).unwrap();
    for (r, g) in got.iter().enumerate() {
        let want = b.data()[r] + (yd.data()[r] - yp.data()[r]);
        assert_eq!(g.to_bits(), want.to_bits(), "row {r}");
    }
    let short = GpuBuffer::new(&ctx, 4 * (rows as u64 - 1), "short").unwrap();
    assert!(calibrate::prepare_bias_correct(&ctx, &gb, &gyd, &gyp, &short).is_err());
}
