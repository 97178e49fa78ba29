//! The operator API: pruning on the GPU gives the CPU reference's pruned matrix,
//! and the product uses it.

mod common;

use common::*;
use wgsparse::gpu::GpuMatrix;
use wgsparse::ops::SparseOperator;
use wgsparse::{prune, reference, Pattern};

#[test]
fn prune_on_gpu_equals_the_cpu_reference_for_every_pattern() {
    let ctx = ctx();
    let w = random(67, 93, 5);
    let x = random(93, 29, 6);
    let gw = GpuMatrix::upload(&ctx, &w, "w").unwrap();
    for (p, s) in [("unstructured", 0.7), ("block:8x8", 0.5), ("2:4", 0.0), ("dense", 0.0)] {
        let pattern: Pattern = p.parse().unwrap();
        let op = pollster::block_on(SparseOperator::prune_on_gpu(&ctx, &gw, pattern, s)).unwrap();
        let want = w.masked(&prune::mask(&w, pattern, s).unwrap().mask).unwrap();
        assert_eq!(pollster::block_on(op.to_dense(&ctx)).unwrap(), want, "{p}");
        let y = pollster::block_on(op.matmul(&ctx, &x)).unwrap();
        assert_close(&y, &reference::gemm(&want, &x).unwrap(), F32_REL_TOL, p);
    }
    assert!(pollster::block_on(SparseOperator::prune_on_gpu(&ctx, &gw, Pattern::Dense, 0.5)).is_err());
    assert!(pollster::block_on(SparseOperator::prune_on_gpu(&ctx, &gw, Pattern::Unstructured, 1.0)).is_err());
}
