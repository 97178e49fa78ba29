//! Sensitivity-aware per-layer budgets: how much each prunable layer hurts
//! the network when it ALONE is pruned (mean KL divergence of the class
//! probabilities from the dense model's on the calibration images, measured
//! on the GPU at a few sparsities), and a per-layer allocation that reaches a
//! global target (a fraction of the prunable weights or of their
//! multiply-accumulates) at the least summed loss.

use super::classes::softmax;
use super::gpu::{Criterion, GpuLite0, KernelPolicy, PruneSpec};
use super::sweep::kl;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::sparse::Pattern;

/// What a budget's target counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cost {
    /// Prunable weights.
    #[default]
    Weights,
    /// Multiply-accumulates of the prunable layers (weights times output pixels).
    Flops,
}

impl std::str::FromStr for Cost {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "weights" => Ok(Cost::Weights),
            "flops" | "macs" => Ok(Cost::Flops),
            _ => Err(Error::Invalid(format!(
                "unknown budget cost {s:?}: use weights or flops"
            ))),
        }
    }
}

/// One prunable layer's sensitivity.
#[derive(Clone, Debug)]
pub struct LayerSensitivity {
    pub name: String,
    pub weights: usize,
    pub macs: usize,
    /// Mean KL(dense || this layer alone pruned) at each level.
    pub kl: Vec<f64>,
}

/// The sensitivity profile of the model for one pattern and criterion.
#[derive(Clone, Debug)]
pub struct Sensitivity {
    pub pattern: Pattern,
    pub criterion: Criterion,
    pub levels: Vec<f64>,
    pub layers: Vec<LayerSensitivity>,
    pub calibration_images: usize,
}

/// The sparsity levels a profile measures for `pattern`.
pub fn default_levels(pattern: Pattern) -> Vec<f64> {
    match pattern {
        Pattern::NM { n, m } => vec![1.0 - n as f64 / m as f64],
        _ => vec![0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
    }
}

/// Per-layer sparsities reaching `target` (a fraction of the total `cost`) at
/// the least summed loss, greedily: every step moves the layer whose next
/// level costs the least loss per unit of cost removed; the last step is cut
/// to land on the target where the pattern allows fractional sparsity (not
/// N:M, whose layers are either dense or pruned).
pub fn allocate(s: &Sensitivity, target: f64, cost: Cost) -> Result<Vec<f64>> {
    crate::error::check_sparsity(target)?;
    let costs: Vec<f64> = s
        .layers
        .iter()
        .map(|l| match cost {
            Cost::Weights => l.weights as f64,
            Cost::Flops => l.macs as f64,
        })
        .collect();
    let total: f64 = costs.iter().sum();
    let goal = target * total;
    let nm = matches!(s.pattern, Pattern::NM { .. });
    let mut step = vec![0usize; s.layers.len()];
    let mut sparsity = vec![0.0f64; s.layers.len()];
    let mut removed = 0.0;
    while removed < goal {
        let mut best: Option<(usize, f64)> = None;
        for (k, l) in s.layers.iter().enumerate() {
            let j = step[k];
            if j >= s.levels.len() || costs[k] == 0.0 {
                continue;
            }
            let (prev_s, prev_kl) = if j == 0 {
                (0.0, 0.0)
            } else {
                (s.levels[j - 1], l.kl[j - 1])
            };
            let d_cost = costs[k] * (s.levels[j] - prev_s);
            let d_loss = l.kl[j] - prev_kl;
            let rate = d_loss / d_cost.max(1e-30);
            if best.is_none_or(|(_, r)| rate < r) {
                best = Some((k, rate));
            }
        }
        let Some((k, _)) = best else {
            break; // every layer at its highest level
        };
        let j = step[k];
        let prev_s = if j == 0 { 0.0 } else { s.levels[j - 1] };
        let full = costs[k] * (s.levels[j] - prev_s);
        if removed + full > goal && !nm {
            sparsity[k] = prev_s + (goal - removed) / costs[k];
            removed = goal;
        } else {
            sparsity[k] = s.levels[j];
            removed += full;
            step[k] += 1;
        }
    }
    Ok(sparsity)
}

impl GpuLite0 {
    /// Measures (or returns the cached) sensitivity profile for `pattern` and
    /// `criterion`: each prunable layer pruned alone at each of
    /// [`default_levels`], the calibration images run, KL to the dense
    /// probabilities. Needs [`GpuLite0::calibrate`]; leaves the model dense.
    pub async fn sensitivity(&mut self, ctx: &Context, pattern: Pattern, criterion: Criterion) -> Result<Sensitivity> {
        let key = (pattern.to_string(), criterion);
        if let Some(s) = self.sensitivities.get(&key) {
            return Ok(s.clone());
        }
        if self.calib_images.is_empty() {
            return Err(Error::Invalid(
                "sensitivity needs calibration images: calibrate the model first".into(),
            ));
        }
        if pattern == Pattern::Dense {
            return Err(Error::Invalid("the dense pattern has no sensitivity".into()));
        }
        let images = self.calib_images.clone();
        self.reset(ctx)?;
        let mut dense = Vec::with_capacity(images.len());
        for x in &images {
            dense.push(softmax(&self.forward(ctx, x).await?));
        }
        let idx = self.prunable_layers();
        let levels = default_levels(pattern);
        let mut layers = Vec::with_capacity(idx.len());
        for (k, &i) in idx.iter().enumerate() {
            let layer = &self.net().layers[i];
            let w = layer.prunable_weight().map_or(0, |w| w.rows() * w.cols());
            let (name, macs) = (layer.name.clone(), w * layer.output.hw());
            let mut kls = Vec::with_capacity(levels.len());
            for &level in &levels {
                let mut per = vec![0.0; idx.len()];
                per[k] = level;
                let mut spec = PruneSpec::new(pattern, level);
                spec.criterion = criterion;
                spec.dispatching = KernelPolicy::Sparse;
                spec.layer_sparsity = Some(per);
                self.prune(ctx, &spec).await?;
                let mut sum = 0.0;
                for (x, p) in images.iter().zip(&dense) {
                    sum += kl(p, &softmax(&self.forward(ctx, x).await?));
                }
                kls.push(sum / images.len() as f64);
            }
            layers.push(LayerSensitivity {
                name,
                weights: w,
                macs,
                kl: kls,
            });
        }
        self.reset(ctx)?;
        let s = Sensitivity {
            pattern,
            criterion,
            levels,
            layers,
            calibration_images: images.len(),
        };
        self.sensitivities.insert(key, s.clone());
        Ok(s)
    }

    /// Per-layer sparsities for `spec.pattern` reaching `target` of `cost` at
    /// the least measured loss (see [`allocate`]); measures the sensitivity
    /// profile the first time.
    pub async fn auto_budget(
        &mut self,
        ctx: &Context,
        pattern: Pattern,
        criterion: Criterion,
        target: f64,
        cost: Cost,
    ) -> Result<Vec<f64>> {
        let s = self.sensitivity(ctx, pattern, criterion).await?;
        allocate(&s, target, cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(pattern: Pattern, levels: Vec<f64>, layers: &[(usize, &[f64])]) -> Sensitivity {
        Sensitivity {
            pattern,
            criterion: Criterion::Magnitude,
            levels,
            layers: layers
                .iter()
                .enumerate()
                .map(|(k, (w, kl))| LayerSensitivity {
                    name: format!("l{k}"),
                    weights: *w,
                    macs: *w * (k + 1),
                    kl: kl.to_vec(),
                })
                .collect(),
            calibration_images: 1,
        }
    }

    #[test]
    fn allocation_hits_the_target_and_spares_sensitive_layers() {
        let s = profile(
            Pattern::Unstructured,
            vec![0.5, 0.9],
            &[(1000, &[0.01, 0.02]), (1000, &[1.0, 5.0]), (2000, &[0.05, 0.5])],
        );
        for target in [0.1, 0.3, 0.5, 0.7] {
            let a = allocate(&s, target, Cost::Weights).unwrap();
            let removed: f64 = a.iter().zip([1000.0, 1000.0, 2000.0]).map(|(s, w)| s * w).sum();
            assert!((removed - target * 4000.0).abs() < 1e-6, "{target}: {a:?}");
            assert!(
                a[1] <= a[0] && a[1] <= a[2],
                "{target}: the sensitive layer pruned most: {a:?}"
            );
            assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
        }
        // FLOPs weigh later layers more (macs = weights * (k + 1) here).
        let f = allocate(&s, 0.3, Cost::Flops).unwrap();
        assert!(f.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert!(allocate(&s, 1.5, Cost::Weights).is_err());
    }

    #[test]
    fn nm_budgets_choose_whole_layers() {
        let s = profile(
            Pattern::NM { n: 2, m: 4 },
            vec![0.5],
            &[(1000, &[0.3]), (1000, &[0.01]), (1000, &[2.0])],
        );
        let a = allocate(&s, 0.15, Cost::Weights).unwrap();
        assert_eq!(a, vec![0.0, 0.5, 0.0]);
        let a = allocate(&s, 0.3, Cost::Weights).unwrap();
        assert_eq!(a, vec![0.5, 0.5, 0.0]);
        // Unreachable targets stop at every layer pruned.
        assert_eq!(allocate(&s, 0.9, Cost::Weights).unwrap(), vec![0.5; 3]);
    }
}
