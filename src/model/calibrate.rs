//! Calibration of [`GpuLite0`] on a few images, on the GPU: for every
//! prunable layer, per-channel statistics of its input (mean and L2 norm, for
//! the activation-aware criterion and bias correction) and of its dense
//! pre-activation output (mean and standard deviation, for re-normalization).
//! One submission per image runs the dense network with the statistics kernels
//! recorded between its layers; sums are kept in f64 across images.

use super::gpu::{GpuLayer, GpuLite0};
use crate::error::{Error, Result};
use crate::gpu::calibrate::{prepare_row_stats, prepare_score_cols};
use crate::gpu::{elementwise, gemm, Activation, Context, Dispatch, Epilogue, GpuBuffer, GpuMatrix};

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
        let refs: Vec<&Dispatch> = setup.iter().collect();
        ctx.submit(&refs);
        for (i, c) in calibs {
            if let GpuLayer::Prunable(p) = &mut self.layers[i] {
                p.calib = Some(Box::new(c));
            }
        }
        self.calibrated_on = images.len();
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
