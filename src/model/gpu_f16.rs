//! EfficientNet-Lite0 in f16 storage (issue 10, item 5): every activation is
//! f16, the 1x1 convolutions and the classifier multiply f16 weights (dense,
//! or the pruned weights in an f16 sparse format) with f32 accumulation, the
//! stem and depthwise convolutions read and write f16 activations with their
//! f32 weights and f32 sums. Built from a [`GpuLite0`] as it currently computes
//! (pruned or dense, re-normalized convolutions and corrected biases included),
//! so f16 and f32 run the same network and their predictions can be compared.
//!
//! Each 1x1 layer runs the fastest of its candidate kernels, measured on this
//! adapter for that layer's shape ([`KernelPolicy::Fastest`]; the decisions
//! are the model's [`Tuner`](crate::gpu::tune::Tuner)'s, family
//! `model_layer_f16`, so layers of one shape bucket share one): the dense f16
//! GEMM on the shader cores (`gemm_f16`, and `gemm_f16_splitk` with K split
//! over more workgroups where K is long and the output small) and on
//! cooperative matrices (`gemm_coop`, where the adapter has them); for
//! block-pruned layers the block-sparse kernels (`spmm_bsr_f16`,
//! `spmm_bsr_coop`), for 2:4 and 1:2 layers the N:M ones (`spmm_nm_f16`,
//! `spmm_nm_coop`). Dense candidates of a pruned layer multiply the pruned
//! weights stored dense, so every candidate computes the same product.
//! Unstructured and other N:M layers have no f16 sparse kernel and run the
//! dense f16 kernels on their pruned weights. Needs shader-f16
//! ([`Context::require_f16`]); browsers without it keep the f32 model.

use std::fmt;
use std::ops::Range;

use super::gpu::{Current, GpuLayer, GpuLite0, KernelPolicy};
use crate::error::{Error, Result};
use crate::gpu::gemm::coop::{self as gemm_coop, CoopTile};
use crate::gpu::gemm::f16 as gemm_f16;
use crate::gpu::gemm::GemmTile;
use crate::gpu::spmm_bsr::coop as spmm_bsr_coop;
use crate::gpu::spmm_bsr::f16 as spmm_bsr_f16;
use crate::gpu::spmm_nm::coop::{self as spmm_nm_coop, GpuNmF16};
use crate::gpu::tune::{Family, TuneKey};
use crate::gpu::{conv, elementwise, Context, Dispatch, Epilogue, GpuBsrF16, GpuMatrixF16, Timings};
use crate::ops::GpuWeights;
use crate::sparse::{Bsr, Mask, Matrix, Pattern, SparseMatrix};

/// The BSR form of block-pruned weights stored dense: every `br x bc` block
/// with a non-zero value (a kept block that is all zeros computes the same
/// when dropped).
fn nonzero_blocks(w: &Matrix, br: usize, bc: usize) -> Result<Bsr> {
    let (rows, cols) = (w.rows(), w.cols());
    let gc = cols.div_ceil(bc);
    let mut block_kept = vec![false; rows.div_ceil(br) * gc];
    for (i, row) in w.data().chunks_exact(cols.max(1)).enumerate() {
        for (j, v) in row.iter().enumerate() {
            if *v != 0.0 {
                block_kept[(i / br) * gc + j / bc] = true;
            }
        }
    }
    let keep = (0..rows * cols)
        .map(|k| block_kept[(k / cols / br) * gc + (k % cols) / bc])
        .collect();
    Bsr::from_dense_masked(w, &Mask::new(rows, cols, keep)?, br, bc)
}

/// How one 1x1 layer of the f16 model runs.
#[derive(Clone, Debug)]
pub struct F16LayerReport {
    pub name: String,
    /// `(cout, cin, pixels)`.
    pub shape: (usize, usize, usize),
    /// The kernel that runs.
    pub kernel: &'static str,
    /// The weights are pruned (the kernel multiplies the pruned weights).
    pub pruned: bool,
    /// Every candidate with its median GPU ms on this adapter (empty when not
    /// measured: [`KernelPolicy::Sparse`]).
    pub candidates: Vec<(&'static str, f64)>,
}

/// The per-layer report of an f16 model.
#[derive(Clone, Debug, Default)]
pub struct F16Report {
    pub layers: Vec<F16LayerReport>,
}

impl fmt::Display for F16Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:>16} {:<7} {:<14}  candidates (median ms)",
            "layer", "cout x cin x px", "weights", "kernel"
        )?;
        for l in &self.layers {
            let c: Vec<String> = l.candidates.iter().map(|(k, ms)| format!("{k} {ms:.4}")).collect();
            writeln!(
                f,
                "{:<22} {:>16} {:<7} {:<14}  {}",
                l.name,
                format!("{}x{}x{}", l.shape.0, l.shape.1, l.shape.2),
                if l.pruned { "pruned" } else { "dense" },
                l.kernel,
                c.join(", ")
            )?;
        }
        Ok(())
    }
}

/// EfficientNet-Lite0 in f16 storage, resident on the GPU (see the module docs).
pub struct GpuLite0F16 {
    tensors: Vec<GpuMatrixF16>,
    plan: Vec<Dispatch>,
    ranges: Vec<Range<usize>>,
    names: Vec<String>,
    report: F16Report,
}

/// Pruned weights in an f16 sparse format.
enum SparseF16 {
    Bsr(GpuBsrF16),
    Nm(GpuNmF16),
}

/// A candidate kernel of one layer: its name and prepared dispatches.
type Candidate = (&'static str, Vec<Dispatch>);

/// The dense candidates for `w` (f16, the layer's current weights).
fn dense_candidates(
    ctx: &Context,
    w: &GpuMatrixF16,
    x: &GpuMatrixF16,
    y: &GpuMatrixF16,
    ep: &Epilogue,
) -> Result<Vec<Candidate>> {
    let mut v = vec![("gemm_f16", vec![gemm_f16::prepare(ctx, w, x, y, ep)?])];
    // Split-K for long K over few output tiles (the 1x1 projections; the
    // classifier at batch 1 against the skinny kernel).
    let tile = GemmTile::choose(ctx, w.rows(), x.cols());
    let split = gemm_f16::choose_split(w.rows(), w.cols(), x.cols(), tile);
    if split > 1 {
        v.push((
            "gemm_f16_splitk",
            gemm_f16::prepare_split(ctx, w, x, y, ep, tile, split)?,
        ));
    }
    if gemm_coop::coop_support(ctx).is_ok() && x.cols() > 16 {
        // The first tile this device can compile (DEFAULT needs 512 invocations).
        let coop = [CoopTile::DEFAULT, CoopTile::SMALLER]
            .into_iter()
            .find_map(|t| gemm_coop::prepare_with(ctx, w, x, y, ep, t).ok());
        if let Some(d) = coop {
            v.push(("gemm_coop", vec![d]));
        }
    }
    Ok(v)
}

/// Median GPU ms of each candidate alone (a few untimed runs first).
async fn measure(ctx: &Context, cands: &[Candidate]) -> Result<Vec<f64>> {
    let refs: Vec<&Dispatch> = cands.iter().flat_map(|(_, d)| d).collect();
    for _ in 0..3 {
        ctx.submit(&refs);
    }
    let mut out = Vec::with_capacity(cands.len());
    for (_, d) in cands {
        let refs: Vec<&Dispatch> = d.iter().collect();
        out.push(ctx.time(&refs, 0, 15).await?.median_ms());
    }
    Ok(out)
}

/// Fraction of zeros in `w` (the pruned weights as they compute).
fn zero_fraction(w: &Matrix) -> f64 {
    let zeros = w.data().iter().filter(|v| **v == 0.0).count();
    zeros as f64 / w.data().len().max(1) as f64
}

impl GpuLite0 {
    /// This model as it currently computes, in f16 storage (see
    /// [`GpuLite0F16`]); `dispatching` picks each 1x1 layer's kernel.
    pub async fn to_f16(&self, ctx: &Context, dispatching: KernelPolicy) -> Result<GpuLite0F16> {
        ctx.require_f16("the f16 model")?;
        let net = self.net();
        let mut tensors = vec![GpuMatrixF16::new(ctx, net.input.c, net.input.hw(), "f16 tensor 0")?];
        for (i, l) in net.layers.iter().enumerate() {
            tensors.push(GpuMatrixF16::new(
                ctx,
                l.output.c,
                l.output.hw(),
                &format!("f16 tensor {}", i + 1),
            )?);
        }
        // Candidates are timed on the activations the plan so far computes
        // from the input tensor (zeros: buffers start zeroed).
        let mut plan = Vec::new();
        let mut ranges = Vec::new();
        let mut report = F16Report::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let (x, y) = (&tensors[i], &tensors[i + 1]);
            let start = plan.len();
            match layer {
                GpuLayer::Conv {
                    shape,
                    w,
                    b,
                    act,
                    renormed,
                }
                | GpuLayer::Depthwise {
                    shape,
                    w,
                    b,
                    act,
                    renormed,
                } => {
                    let (w, b) = match renormed {
                        Some(r) => (&r.gpu_weight, &r.gpu_bias),
                        None => (w, b),
                    };
                    plan.push(if matches!(layer, GpuLayer::Conv { .. }) {
                        conv::prepare_conv2d(ctx, shape, x, w, b, y, *act)?
                    } else {
                        conv::prepare_depthwise(ctx, shape, x, w, b, y, *act)?
                    });
                }
                GpuLayer::Pool { h, w } => plan.push(conv::prepare_avgpool(ctx, x, *h, *w, y)?),
                GpuLayer::Prunable(p) => {
                    let name = &net.layers[i].name;
                    let ep = Epilogue {
                        bias: Some(p.bias_in_use()),
                        act: p.act,
                    };
                    // The weights as they compute now, in f16: dense, and for
                    // block-pruned layers also as f16 BSR (sharing the indices),
                    // for 2:4 and 1:2 as f16 N:M.
                    let pattern = match &p.current {
                        Current::Dense => Pattern::Dense,
                        Current::MaskedDense(_, pattern) => *pattern,
                        Current::Sparse(op) => op.report.pattern,
                    };
                    let (dense_w, sparse, pruned) = match &p.current {
                        Current::Dense => (p.dense.download(ctx).await?, None, false),
                        Current::MaskedDense(w, pattern) => {
                            // The f32 model found dense faster; in f16 the
                            // sparse kernels compete again.
                            let m = w.download(ctx).await?;
                            let sparse = match *pattern {
                                Pattern::Block { rows, cols } => Some(SparseF16::Bsr(GpuBsrF16::upload(
                                    ctx,
                                    &nonzero_blocks(&m, rows, cols)?,
                                )?)),
                                Pattern::NM { n, m: group } if spmm_nm_coop::supports(n, group) => {
                                    // At most n non-zeros per group: N:M
                                    // pruning keeps every one of them.
                                    match crate::prune::prune(&m, *pattern, 0.0)?.0 {
                                        SparseMatrix::Nm(nm) => Some(SparseF16::Nm(GpuNmF16::upload(ctx, &nm)?)),
                                        _ => None,
                                    }
                                }
                                _ => None,
                            };
                            (m, sparse, true)
                        }
                        Current::Sparse(op) => match &op.weights {
                            GpuWeights::Bsr(b) => {
                                let cpu = b.download(ctx).await?;
                                let f16 = GpuBsrF16::sharing_indices(ctx, b, &cpu)?;
                                (cpu.to_dense(), Some(SparseF16::Bsr(f16)), true)
                            }
                            GpuWeights::Nm(g) if spmm_nm_coop::supports(g.n, g.m) => {
                                let cpu = g.download(ctx).await?;
                                (cpu.to_dense(), Some(SparseF16::Nm(GpuNmF16::upload(ctx, &cpu)?)), true)
                            }
                            _ => (op.to_dense(ctx).await?, None, true),
                        },
                    };
                    let w16 = GpuMatrixF16::upload(ctx, &dense_w, name)?;
                    let mut cands = dense_candidates(ctx, &w16, x, y, &ep)?;
                    if let Some(SparseF16::Nm(nm)) = &sparse {
                        // The sparse kernel goes first: KernelPolicy::Sparse runs it.
                        let coop = match spmm_nm_coop::choose(ctx, nm.rows, nm.cols, x.cols()) {
                            spmm_nm_coop::NmF16Kernel::Coop(tile) => {
                                Some(spmm_nm_coop::prepare_with(ctx, nm, x, y, &ep, tile)?)
                            }
                            spmm_nm_coop::NmF16Kernel::Fallback => None,
                        };
                        let fallback = spmm_nm_coop::prepare_fallback(ctx, nm, x, y, &ep)?;
                        match coop {
                            Some(d) => {
                                cands.insert(0, ("spmm_nm_coop", vec![d]));
                                cands.push(("spmm_nm_f16", vec![fallback]));
                            }
                            None => cands.insert(0, ("spmm_nm_f16", vec![fallback])),
                        }
                    }
                    if let Some(SparseF16::Bsr(b)) = &sparse {
                        let kernel = if spmm_bsr_coop::uses_coop(ctx, b, x.cols()) {
                            "spmm_bsr_coop"
                        } else {
                            "spmm_bsr_f16"
                        };
                        // The sparse kernel goes first: KernelPolicy::Sparse runs it.
                        cands.insert(0, (kernel, vec![spmm_bsr_coop::prepare(ctx, b, x, y, &ep)?]));
                        if kernel == "spmm_bsr_coop" {
                            cands.push(("spmm_bsr_f16", vec![spmm_bsr_f16::prepare(ctx, b, x, y, &ep)?]));
                        }
                    }
                    let (pick, times) = match dispatching {
                        KernelPolicy::Sparse => {
                            // The sparse kernel if there is one, else the dense
                            // kernel gemm_coop::prepare picks.
                            let pick = if sparse.is_some() {
                                0
                            } else {
                                let coop = matches!(
                                    gemm_coop::choose(ctx, w16.rows(), w16.cols(), x.cols()),
                                    gemm_coop::DenseF16Kernel::Coop(_)
                                );
                                cands
                                    .iter()
                                    .position(|(k, _)| *k == if coop { "gemm_coop" } else { "gemm_f16" })
                                    .unwrap_or(0)
                            };
                            (pick, Vec::new())
                        }
                        KernelPolicy::Fastest => {
                            let key = TuneKey::new(
                                Family::ModelLayerF16,
                                w16.rows(),
                                w16.cols(),
                                x.cols(),
                                pattern,
                                zero_fraction(&dense_w),
                            );
                            let names: Vec<&str> = cands.iter().map(|(k, _)| *k).collect();
                            let c = self
                                .tuner()
                                .choose(key, &names, || async {
                                    // The layers before this one compute its input.
                                    let refs: Vec<&Dispatch> = plan.iter().collect();
                                    ctx.submit(&refs);
                                    measure(ctx, &cands).await
                                })
                                .await?;
                            (c.pick, c.times.into_iter().map(|(_, t)| t).collect())
                        }
                    };
                    report.layers.push(F16LayerReport {
                        name: name.clone(),
                        shape: (w16.rows(), w16.cols(), x.cols()),
                        kernel: cands[pick].0,
                        pruned,
                        candidates: cands.iter().map(|(k, _)| *k).zip(times).collect(),
                    });
                    plan.extend(cands.swap_remove(pick).1);
                    if let Some(t) = p.residual {
                        let r = tensors
                            .get(t)
                            .ok_or_else(|| Error::Shape(format!("residual tensor {t} does not exist")))?;
                        plan.push(elementwise::prepare_add_f16(ctx, y.buffer(), r.buffer())?);
                    }
                }
            }
            ranges.push(start..plan.len());
        }
        Ok(GpuLite0F16 {
            tensors,
            plan,
            ranges,
            names: net.layers.iter().map(|l| l.name.clone()).collect(),
            report,
        })
    }
}

impl GpuLite0F16 {
    /// How each 1x1 layer runs, with the measured candidates.
    pub fn report(&self) -> &F16Report {
        &self.report
    }

    /// Writes a preprocessed image `[3, H*W]` (rounded to f16) into the input.
    pub fn set_input(&self, ctx: &Context, x: &[f32]) -> Result<()> {
        let t0 = &self.tensors[0];
        let (cols, stride) = (t0.cols(), t0.stride());
        if x.len() != t0.rows() * cols {
            return Err(Error::Shape(format!(
                "input has {} values, the network takes {}x{}",
                x.len(),
                t0.rows(),
                cols
            )));
        }
        let mut padded = vec![half::f16::ZERO; t0.rows() * stride];
        for (dst, src) in padded.chunks_exact_mut(stride).zip(x.chunks_exact(cols.max(1))) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = half::f16::from_f32(*s);
            }
        }
        ctx.queue()
            .write_buffer(t0.buffer().raw(), 0, bytemuck::cast_slice(&padded));
        Ok(())
    }

    /// Runs the whole network (one submission) on the current input.
    pub fn submit(&self, ctx: &Context) {
        let refs: Vec<&Dispatch> = self.plan.iter().collect();
        ctx.submit(&refs);
    }

    /// Logits (widened to f32) for a preprocessed image.
    pub async fn forward(&self, ctx: &Context, x: &[f32]) -> Result<Vec<f32>> {
        self.set_input(ctx, x)?;
        self.submit(ctx);
        Ok(self
            .tensors
            .last()
            .expect("logits tensor")
            .download(ctx)
            .await?
            .into_data())
    }

    /// Every tensor after a forward pass (index 0 the input), widened to f32.
    pub async fn forward_all(&self, ctx: &Context, x: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.set_input(ctx, x)?;
        self.submit(ctx);
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            out.push(t.download(ctx).await?.into_data());
        }
        Ok(out)
    }

    /// GPU time of the whole forward pass (one pass per run).
    pub async fn latency(&self, ctx: &Context, warmup: usize, runs: usize) -> Result<Timings> {
        let refs: Vec<&Dispatch> = self.plan.iter().collect();
        ctx.time(&refs, warmup, runs).await
    }

    /// GPU time of each layer alone: `(name, timings)`.
    pub async fn layer_latency(&self, ctx: &Context, warmup: usize, runs: usize) -> Result<Vec<(String, Timings)>> {
        let mut out = Vec::new();
        for (name, r) in self.names.iter().zip(&self.ranges) {
            let refs: Vec<&Dispatch> = self.plan[r.clone()].iter().collect();
            out.push((name.clone(), ctx.time(&refs, warmup, runs).await?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_blocks_keeps_exactly_the_blocks_with_a_value() {
        // 5x7 in 2x3 blocks (edge blocks partial): blocks (0,0), (1,2), (2,1) hold values.
        let mut w = Matrix::new(5, 7, vec![0.0; 35]).unwrap();
        for (r, c, v) in [(0, 0, 1.0), (1, 2, -2.0), (2, 6, 3.0), (4, 4, 0.5)] {
            w.data_mut()[r * 7 + c] = v;
        }
        let b = nonzero_blocks(&w, 2, 3).unwrap();
        assert_eq!(b.nnz_blocks(), 3);
        assert_eq!(b.to_dense().data(), w.data());
        let none = nonzero_blocks(&Matrix::new(4, 4, vec![0.0; 16]).unwrap(), 2, 2).unwrap();
        assert_eq!(none.nnz_blocks(), 0);
    }
}
