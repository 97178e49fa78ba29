//! Prune a weight matrix to each pattern, multiply it by a dense matrix on the
//! GPU with the matching sparse kernel, and compare with the CPU reference.
//!
//!     cargo run --release --example spmm

use wgsparse::gpu::Context;
use wgsparse::ops::SparseOperator;
use wgsparse::{reference, Matrix, Pattern};

fn main() -> wgsparse::Result<()> {
    let ctx = Context::new_blocking()?;
    println!("adapter: {}", ctx.info().name);
    let (m, k, n) = (512, 384, 96);
    let w = Matrix::new(
        m,
        k,
        (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect(),
    )?;
    let x = Matrix::new(
        k,
        n,
        (0..k * n).map(|i| ((i * 104729) % 1000) as f32 / 500.0 - 1.0).collect(),
    )?;
    for (pattern, sparsity) in [("2:4", 0.0), ("block:16x16", 0.9), ("unstructured", 0.95)] {
        let pattern: Pattern = pattern.parse()?;
        let op = SparseOperator::new(&ctx, &w, pattern, sparsity)?;
        let y = pollster::block_on(op.matmul(&ctx, &x))?;
        let want = reference::gemm(&pollster::block_on(op.to_dense(&ctx))?, &x)?;
        println!(
            "{pattern:<14} kernel {:<9} sparsity {:5.1}%  {:>8} bytes ({:.2} of dense)  rel. error {:.1e}",
            op.weights.kernel_name(),
            100.0 * op.report.achieved,
            op.bytes,
            op.bytes as f64 / op.dense_bytes as f64,
            reference::rel_error(y.data(), want.data())
        );
    }
    Ok(())
}
