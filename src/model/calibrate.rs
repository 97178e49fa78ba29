//! Calibration of [`GpuLite0`] on a few images, on the GPU: for every
//! prunable layer, per-channel statistics of its input (mean and L2 norm, for
//! the activation-aware criterion and bias correction) and of its dense
//! pre-activation output (mean and standard deviation, for re-normalization).
//! One submission per image runs the dense network with the statistics kernels
//! recorded between its layers; sums are kept in f64 across images.

use super::gpu::{Criterion, Current, GpuLayer, GpuLite0, PruneSpec};
use crate::error::{Error, Result};
use crate::gpu::calibrate::{prepare_row_stats, prepare_scale_rows, prepare_score_cols};
use crate::gpu::{elementwise, gemm, read_many, Activation, Context, Dispatch, Epilogue, GpuBuffer, GpuMatrix};
use crate::ops::LayerPlan;

/// Re-normalization never scales a channel by more than this (a channel the
/// pruning nearly silenced would otherwise amplify what is left of it).
pub const RENORM_MAX_SCALE: f64 = 10.0;

/// What calibration measured for one prunable layer, with the GPU buffers
/// pruning uses.
#[derive(Debug)]
pub struct LayerCalib {
    /// Mean of each input channel over all pixels of all calibration images.
    pub in_mean: Vec<f32>,
    /// L2 norm of each input channel over all pixels of all calibration images.
    pub in_norm: Vec<f32>,
    /// Mean and standard deviation of each output channel of the DENSE layer
    /// before its activation.
    pub out_mean: Vec<f32>,
    pub out_std: Vec<f32>,
    /// `|W| * in_norm[c]`: the activation-aware scores of the dense weights.
    pub(super) score: GpuMatrix,
    /// `in_mean` as a `[cin, 1]` matrix, and `W * in_mean` (`[cout, 1]`).
    pub(super) mean_x: GpuMatrix,
    pub(super) yd: GpuMatrix,
    /// Scratch for `W' * in_mean`, and the corrected bias.
    pub(super) yp: GpuMatrix,
    pub(super) corrected: GpuBuffer,
}

/// Per-channel mean and second moment from sums over `count` values.
fn moments(sums: &[f64], count: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut mean, mut norm, mut std) = (Vec::new(), Vec::new(), Vec::new());
    for pair in sums.chunks_exact(2) {
        let m = pair[0] / count;
        mean.push(m as f32);
        norm.push(pair[1].max(0.0).sqrt() as f32);
        std.push((pair[1] / count - m * m).max(0.0).sqrt() as f32);
    }
    (mean, norm, std)
}

impl GpuLite0 {
    /// Number of images the current calibration used (0: not calibrated).
    pub fn calibrated_on(&self) -> usize {
        self.calibrated_on
    }

    /// Calibrates on preprocessed images (`[3, H*W]` each, see
    /// [`super::preprocess`]): runs the DENSE network on each and records the
    /// statistics of every prunable layer. Replaces an earlier calibration; the
    /// current prune is kept (re-prune to use the new statistics).
    pub async fn calibrate(&mut self, ctx: &Context, images: &[Vec<f32>]) -> Result<()> {
        if images.is_empty() {
            return Err(Error::Invalid("calibration needs at least one image".into()));
        }
        let idx = self.prunable_layers();
        // Word offsets of each prunable layer's input and output statistics.
        let mut offsets = Vec::with_capacity(idx.len());
        let mut words = 0usize;
        for &i in &idx {
            let (cin, cout) = (self.tensors[i].rows(), self.tensors[i + 1].rows());
            offsets.push((words, words + 2 * cin));
            words += 2 * (cin + cout);
        }
        // And of each convolution's (stem, depthwise) output statistics.
        let mut conv_offsets = std::collections::HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            if matches!(l, GpuLayer::Conv { .. } | GpuLayer::Depthwise { .. }) {
                conv_offsets.insert(i, words);
                words += 2 * self.tensors[i + 1].rows();
            }
        }
        let stats = GpuBuffer::new(ctx, 4 * words.max(1) as u64, "calibration statistics")?;
        let zero = elementwise::prepare_fill(ctx, &stats, 0)?;
        let mut plan: Vec<Dispatch> = vec![zero];
        let mut k = 0;
        for i in 0..self.layers.len() {
            if let GpuLayer::Prunable(p) = &self.layers[i] {
                let (x, y) = (&self.tensors[i], &self.tensors[i + 1]);
                let (in_off, out_off) = offsets[k];
                k += 1;
                plan.push(prepare_row_stats(ctx, x, &stats, in_off)?);
                let pre = Epilogue {
                    bias: Some(&p.bias),
                    act: Activation::None,
                };
                plan.push(gemm::prepare(ctx, &p.dense, x, y, &pre)?);
                plan.push(prepare_row_stats(ctx, y, &stats, out_off)?);
            }
            if let Some(&off) = conv_offsets.get(&i) {
                plan.extend(self.layer_dispatches_on(ctx, i, &self.tensors, true, true)?);
                plan.push(prepare_row_stats(ctx, &self.tensors[i + 1], &stats, off)?);
            }
            plan.extend(self.dense_layer_dispatches(ctx, i)?);
        }
        let mut sums = vec![0f64; words];
        for x in images {
            self.set_input(ctx, x)?;
            let refs: Vec<&Dispatch> = plan.iter().collect();
            ctx.submit(&refs);
            let got: Vec<f32> = stats.read(ctx).await?;
            for (s, g) in sums.iter_mut().zip(&got) {
                *s += *g as f64;
            }
        }
        let n = images.len() as f64;
        let mut setup = Vec::new();
        let mut calibs = Vec::with_capacity(idx.len());
        for (&i, &(in_off, out_off)) in idx.iter().zip(&offsets) {
            let GpuLayer::Prunable(p) = &self.layers[i] else {
                continue;
            };
            let (cout, cin) = (p.dense.rows(), p.dense.cols());
            let (x, y) = (&self.tensors[i], &self.tensors[i + 1]);
            let (in_mean, in_norm, _) = moments(&sums[in_off..in_off + 2 * cin], n * x.cols() as f64);
            let (out_mean, _, out_std) = moments(&sums[out_off..out_off + 2 * cout], n * y.cols() as f64);
            let name = &self.net().layers[i].name;
            let norm = GpuBuffer::from_slice(ctx, &in_norm, name)?;
            let score = GpuMatrix::new(ctx, cout, cin, name)?;
            let mean_x = GpuMatrix::upload(ctx, &crate::sparse::Matrix::new(cin, 1, in_mean.clone())?, name)?;
            let yd = GpuMatrix::new(ctx, cout, 1, name)?;
            let yp = GpuMatrix::new(ctx, cout, 1, name)?;
            let corrected = GpuBuffer::new(ctx, 4 * cout as u64, name)?;
            setup.push(prepare_score_cols(ctx, &p.dense, &norm, &score)?);
            setup.push(gemm::prepare(ctx, &p.dense, &mean_x, &yd, &Epilogue::default())?);
            // The buffers the dispatches use stay alive in the dispatches.
            calibs.push((
                i,
                LayerCalib {
                    in_mean,
                    in_norm,
                    out_mean,
                    out_std,
                    score,
                    mean_x,
                    yd,
                    yp,
                    corrected,
                },
            ));
        }
        self.conv_stats.clear();
        for (&i, &off) in &conv_offsets {
            let c = self.tensors[i + 1].rows();
            let (mean, _, std) = moments(&sums[off..off + 2 * c], n * self.tensors[i + 1].cols() as f64);
            self.conv_stats.insert(i, (mean, std));
        }
        let refs: Vec<&Dispatch> = setup.iter().collect();
        ctx.submit(&refs);
        for (i, c) in calibs {
            if let GpuLayer::Prunable(p) = &mut self.layers[i] {
                p.calib = Some(Box::new(c));
            }
        }
        self.calibrated_on = images.len();
        self.calib_images = images.to_vec();
        self.renorm_sets.clear();
        self.sensitivities.clear();
        Ok(())
    }
}

impl GpuLite0 {
    /// The calibration statistics of layer `i` (an index into `net().layers`),
    /// when it is prunable and the model was calibrated.
    pub fn calibration(&self, i: usize) -> Option<&LayerCalib> {
        match self.layers.get(i) {
            Some(GpuLayer::Prunable(p)) => p.calib.as_deref(),
            _ => None,
        }
    }
}

impl GpuLite0 {
    /// Re-normalization (see [`PruneSpec::renorm`]): for each pruned layer in
    /// network order, runs the calibration images through the pruned network
    /// up to it (earlier layers already corrected), measures the mean `mp` and
    /// standard deviation `sp` of each output channel before the activation,
    /// and folds `y' = a (y - mp) + md`, `a = sd / sp` (`md`, `sd`: the dense
    /// model's), into the layer: weights scaled by `a` (re-pruned from the
    /// scaled dense weights with the original ranking, so the mask does not
    /// change) and bias `a (b - mp) + md`. Two GPU round trips per layer.
    pub(super) async fn renormalize(&mut self, ctx: &Context, spec: &PruneSpec) -> Result<()> {
        let n = self.calib_images.len();
        if n == 0 {
            return Err(Error::Invalid("re-normalization needs calibration images".into()));
        }
        let mut sets = std::mem::take(&mut self.renorm_sets);
        if sets.len() != n {
            sets = (0..n)
                .map(|k| {
                    self.tensors
                        .iter()
                        .map(|t| GpuMatrix::new(ctx, t.rows(), t.cols(), &format!("renorm image {k}")))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<_>>()?;
        }
        let result = self.renormalize_on(ctx, spec, &sets).await;
        self.renorm_sets = sets;
        result
    }

    /// Runs `pending` and then layer `i` before its activation on every
    /// activation set, measures each output channel's mean `mp` and standard
    /// deviation `sp` over all of them, and returns the per-channel scale
    /// `a = sd / sp` (at most [`RENORM_MAX_SCALE`]; 1 for a constant channel)
    /// and bias `a (b - mp) + md` that give the channels mean `md` and
    /// deviation `sd`, for the layer's current bias `b` (read from `bias`).
    #[allow(clippy::too_many_arguments)]
    async fn renorm_affine(
        &self,
        ctx: &Context,
        i: usize,
        sets: &[Vec<GpuMatrix>],
        pending: &mut Vec<Dispatch>,
        bias: &GpuBuffer,
        md: &[f32],
        sd: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let cout = self.tensors[i + 1].rows();
        let stats = GpuBuffer::new(ctx, 8 * cout as u64, "renorm statistics")?;
        pending.push(elementwise::prepare_fill(ctx, &stats, 0)?);
        for set in sets {
            pending.extend(self.layer_dispatches_on(ctx, i, set, false, true)?);
            pending.push(prepare_row_stats(ctx, &set[i + 1], &stats, 0)?);
        }
        let refs: Vec<&Dispatch> = pending.iter().collect();
        ctx.submit(&refs);
        pending.clear();
        let words = read_many(ctx, &[&stats, bias]).await?;
        let count = sets.len() as f64 * self.tensors[i + 1].cols() as f64;
        let (mut scale, mut out) = (Vec::with_capacity(cout), Vec::with_capacity(cout));
        for r in 0..cout {
            let mp = f32::from_bits(words[0][2 * r]) as f64 / count;
            let sq = f32::from_bits(words[0][2 * r + 1]) as f64 / count;
            let sp = (sq - mp * mp).max(0.0).sqrt();
            let a = if sp > 1e-12 {
                (sd[r] as f64 / sp).min(RENORM_MAX_SCALE)
            } else {
                1.0
            };
            let b = f32::from_bits(words[1][r]) as f64;
            scale.push(a as f32);
            out.push((a * (b - mp) + md[r] as f64) as f32);
        }
        Ok((scale, out))
    }

    async fn renormalize_on(&mut self, ctx: &Context, spec: &PruneSpec, sets: &[Vec<GpuMatrix>]) -> Result<()> {
        for (set, x) in sets.iter().zip(&self.calib_images) {
            self.write_input(ctx, &set[0], x)?;
        }
        let submit = |d: &[Dispatch]| {
            let refs: Vec<&Dispatch> = d.iter().collect();
            ctx.submit(&refs);
        };
        let mut pending: Vec<Dispatch> = Vec::new();
        let mut seen_pruned = false;
        for i in 0..self.layers.len() {
            let pruned = matches!(&self.layers[i], GpuLayer::Prunable(p) if !matches!(p.current, Current::Dense));
            seen_pruned |= pruned;
            let conv = matches!(&self.layers[i], GpuLayer::Conv { .. } | GpuLayer::Depthwise { .. });
            if conv && seen_pruned {
                // A convolution downstream of pruning: its (unpruned) output
                // channels drift too; re-normalize them the same way, on the
                // CPU copy of its weights (small), uploaded as a variant.
                let (md, sd) = self
                    .conv_stats
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| Error::Invalid(format!("layer {i} has no calibration statistics")))?;
                let (GpuLayer::Conv { b, .. } | GpuLayer::Depthwise { b, .. }) = &self.layers[i] else {
                    unreachable!("a convolution")
                };
                let (scale, bias) = self.renorm_affine(ctx, i, sets, &mut pending, b, &md, &sd).await?;
                let w0 = match &self.net().layers[i].op {
                    super::lite0::Op::Conv(c) => &c.weight,
                    super::lite0::Op::Depthwise(d) => &d.weight,
                    _ => unreachable!("a convolution"),
                };
                let per = w0.cols();
                let mut weight = w0.data().to_vec();
                for (row, a) in weight.chunks_mut(per.max(1)).zip(&scale) {
                    for v in row {
                        *v = (*v as f64 * *a as f64) as f32;
                    }
                }
                let name = self.net().layers[i].name.clone();
                let r = super::gpu::Renormed {
                    gpu_weight: GpuBuffer::from_slice(ctx, &weight, &name)?,
                    gpu_bias: GpuBuffer::from_slice(ctx, &bias, &name)?,
                    weight,
                    bias,
                };
                if let GpuLayer::Conv { renormed, .. } | GpuLayer::Depthwise { renormed, .. } = &mut self.layers[i] {
                    *renormed = Some(Box::new(r));
                }
            }
            if pruned {
                let GpuLayer::Prunable(p) = &self.layers[i] else {
                    unreachable!("checked above")
                };
                let calib = p
                    .calib
                    .as_ref()
                    .ok_or_else(|| Error::Invalid(format!("layer {i} has no calibration statistics")))?;
                let (scale, bias) = self
                    .renorm_affine(
                        ctx,
                        i,
                        sets,
                        &mut pending,
                        p.bias_in_use(),
                        &calib.out_mean,
                        &calib.out_std,
                    )
                    .await?;
                ctx.queue()
                    .write_buffer(calib.corrected.raw(), 0, bytemuck::cast_slice(&bias));
                let scale = GpuBuffer::from_slice(ctx, &scale, "renorm scale")?;
                let (rows, cols) = (p.dense.rows(), p.dense.cols());
                let name = self.net().layers[i].name.clone();
                let new = match &p.current {
                    Current::MaskedDense(w, pattern) => {
                        let out = GpuMatrix::new(ctx, rows, cols, &name)?;
                        submit(&[prepare_scale_rows(ctx, w, &scale, &out)?]);
                        Current::MaskedDense(out, *pattern)
                    }
                    Current::Sparse(op) => {
                        let v = GpuMatrix::new(ctx, rows, cols, &name)?;
                        submit(&[prepare_scale_rows(ctx, &p.dense, &scale, &v)?]);
                        // Ranked as the prune ranked (the unscaled weights or
                        // their activation scores), so the mask is the same.
                        let rank = match spec.criterion {
                            Criterion::Activation => &calib.score,
                            Criterion::Magnitude => &p.dense,
                        };
                        // A global prune's per-layer share, as a per-layer count.
                        let s = match spec.scope {
                            super::gpu::Scope::Global => op.report.achieved,
                            super::gpu::Scope::PerLayer => op.report.target,
                        };
                        let plan = LayerPlan::new(ctx, &v, Some(rank), spec.pattern, s)?;
                        let mut enc = ctx
                            .device()
                            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("renorm") });
                        plan.encode(&mut enc);
                        ctx.queue().submit([enc.finish()]);
                        let words = read_many(ctx, &plan.readbacks()).await?;
                        let new_op = plan.finish_read(ctx, &words, rows, cols, spec.pattern, s).await?;
                        Current::Sparse(Box::new(new_op))
                    }
                    Current::Dense => unreachable!("checked above"),
                };
                if let GpuLayer::Prunable(p) = &mut self.layers[i] {
                    p.current = new;
                    p.bias_corrected = true;
                }
            }
            for set in sets {
                pending.extend(self.layer_dispatches_on(ctx, i, set, false, false)?);
            }
        }
        Ok(())
    }
}
