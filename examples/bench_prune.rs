//! Times GPU magnitude pruning (every plan, and each of its dispatches) and
//! checks each result against the CPU reference at the same size.
//!
//! `cargo run --release --example bench_prune -- [rows] [cols] [--no-verify]`

use wgsparse::gpu::{Context, Dispatch, GpuMatrix, PrunePlan};
use wgsparse::prune::{self, BlockNorm};
use wgsparse::{Bsr, Csr, Matrix, NmMatrix, Result};

/// Roughly normal weights (sum of four uniforms), scale 0.02, as a layer has.
fn weights(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let v = (0..rows * cols)
        .map(|_| 0.02 * (next() + next() + next() + next() - 2.0))
        .collect();
    Matrix::new(rows, cols, v).unwrap()
}

fn time(ctx: &Context, name: &str, dispatches: &[Dispatch], detail: bool) -> Result<f64> {
    let refs: Vec<&Dispatch> = dispatches.iter().collect();
    let t = ctx.time_blocking(&refs, 5, 50)?;
    println!(
        "{name:<34} {:>9.3} ms median {:>9.3} ms min ({}, {} dispatches)",
        t.median_ms(),
        t.min_ms(),
        t.source,
        dispatches.len()
    );
    if detail {
        for d in dispatches {
            let t = ctx.time_blocking(&[d], 3, 20)?;
            println!("    {:<30} {:>9.4} ms", d.label(), t.median_ms());
        }
    }
    Ok(t.median_ms())
}

fn run<T>(ctx: &Context, plan: &PrunePlan<T>) -> Result<()> {
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    plan.encode(&mut enc);
    ctx.queue().submit([enc.finish()]);
    pollster::block_on(plan.check(ctx))
}

fn verdict(name: &str, ok: bool) {
    println!("    verify {name}: {}", if ok { "EXACT" } else { "MISMATCH" });
    if !ok {
        std::process::exit(1);
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let rows = nums.first().copied().unwrap_or(4096);
    let cols = nums.get(1).copied().unwrap_or(rows);
    let verify = !args.iter().any(|a| a == "--no-verify");
    let detail = args.iter().any(|a| a == "--detail");

    let ctx = Context::new_blocking()?;
    println!("{}", ctx.summary());
    println!("matrix {rows}x{cols}, verify {verify}");
    let w = weights(rows, cols, 0x9e37_79b9_7f4a_7c15);
    let gw = GpuMatrix::upload(&ctx, &w, "w")?;
    let mut table = Vec::new();

    for (n, m) in [(2, 4), (1, 4), (4, 8), (3, 16)] {
        let plan = PrunePlan::nm(&ctx, &gw, n, m)?;
        let name = format!("nm {n}:{m}");
        table.push((name.clone(), time(&ctx, &name, plan.dispatches(), detail)?));
        if verify {
            run(&ctx, &plan)?;
            let got = pollster::block_on(plan.output().download(&ctx))?;
            let mask = prune::nm(&w, n, m)?.mask;
            let want = NmMatrix::from_dense_masked(&w, &mask, n, m)?;
            verdict(
                &name,
                got.indices() == want.indices() && same_bits(got.values(), want.values()),
            );
        }
    }
    for (br, bc, s, norm) in [
        (8, 8, 0.5, BlockNorm::L2),
        (16, 16, 0.9, BlockNorm::L2),
        (32, 32, 0.9, BlockNorm::L2),
        (64, 64, 0.9, BlockNorm::L1),
        (1, 4, 0.5, BlockNorm::L2),
    ] {
        let plan = PrunePlan::block(&ctx, &gw, br, bc, s, norm)?;
        let name = format!("block {br}x{bc} s={s} {norm:?}");
        table.push((name.clone(), time(&ctx, &name, plan.dispatches(), detail)?));
        if verify {
            run(&ctx, &plan)?;
            let got = pollster::block_on(plan.output().download(&ctx))?;
            let mask = prune::block(&w, br, bc, s, norm)?.mask;
            let want = Bsr::from_dense_masked(&w, &mask, br, bc)?;
            let order: Vec<u32> = plan.output().row_order.read_blocking(&ctx)?;
            verdict(
                &name,
                got.row_ptr() == want.row_ptr()
                    && got.col_idx() == want.col_idx()
                    && same_bits(got.values(), want.values())
                    && order == wgsparse::gpu::longest_first(want.row_ptr()),
            );
        }
    }
    for s in [0.5, 0.9, 0.99] {
        let plan = PrunePlan::unstructured(&ctx, &gw, s)?;
        let name = format!("unstructured s={s}");
        table.push((name.clone(), time(&ctx, &name, plan.dispatches(), detail)?));
        if verify {
            run(&ctx, &plan)?;
            let got = pollster::block_on(plan.output().download(&ctx))?;
            let mask = prune::unstructured(&w, s)?.mask;
            let want = Csr::from_dense_masked(&w, &mask)?;
            verdict(
                &name,
                got.row_ptr() == want.row_ptr()
                    && got.col_idx() == want.col_idx()
                    && same_bits(got.values(), want.values()),
            );
        }
    }
    {
        let b = weights(rows / 4, cols, 7);
        let c = weights(rows, cols / 4 + 3, 11);
        let gb = GpuMatrix::upload(&ctx, &b, "b")?;
        let gc = GpuMatrix::upload(&ctx, &c, "c")?;
        let plan = PrunePlan::global(&ctx, &[&gw, &gb, &gc], 0.8)?;
        let name = "global 3 tensors s=0.8".to_string();
        table.push((name.clone(), time(&ctx, &name, plan.dispatches(), detail)?));
        if verify {
            let outs = pollster::block_on(plan.run(&ctx))?;
            let masks = prune::global(&[&w, &b, &c], 0.8)?;
            let mut ok = true;
            for ((o, m), p) in outs.iter().zip([&w, &b, &c]).zip(&masks) {
                let got = pollster::block_on(o.download(&ctx))?;
                let want = Csr::from_dense_masked(m, &p.mask)?;
                ok &= got.row_ptr() == want.row_ptr()
                    && got.col_idx() == want.col_idx()
                    && same_bits(got.values(), want.values());
            }
            verdict(&name, ok);
        }
    }
    println!("\n{:<34} {:>10}", "plan", "median ms");
    for (name, ms) in table {
        println!("{name:<34} {ms:>10.3}");
    }
    Ok(())
}
