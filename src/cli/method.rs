//! How to prune beyond the pattern: the options `classify`, `prune` and
//! `eval` share, calibration and the per-layer budget.

use super::common::{read, sample_images};

/// How to prune beyond the pattern (shared by classify, prune and eval).
#[derive(clap::Args)]
pub(super) struct MethodArgs {
    /// What ranks the weights: magnitude, or activation (|w| times the input
    /// channel's activation norm on calibration images, as Wanda does).
    #[arg(long, default_value = "magnitude")]
    criterion: String,
    /// Correct each pruned layer's bias by the removed weights times the mean
    /// input on calibration images.
    #[arg(long)]
    bias_correction: bool,
    /// Re-normalize the output channels of every layer after the first pruned
    /// one to the dense model's mean and standard deviation on the calibration
    /// images.
    #[arg(long)]
    renorm: bool,
    /// Per-layer sparsity: uniform (every layer at --sparsity), or auto (from
    /// each layer's measured sensitivity, reaching --sparsity of the budget
    /// cost at the least loss; needs calibration images).
    #[arg(long, default_value = "uniform")]
    pub(super) budget: String,
    /// What --budget auto's target counts: weights or flops.
    #[arg(long, default_value = "weights")]
    budget_cost: String,
    /// Calibration images: the first N sample images of the cache (never the
    /// classified image itself).
    #[arg(long, default_value_t = 8)]
    calibration: usize,
}

impl MethodArgs {
    /// The spec for `pattern` at `sparsity` with these options.
    pub(super) fn spec(
        &self,
        pattern: wgsparse::Pattern,
        sparsity: f64,
    ) -> wgsparse::Result<wgsparse::model::PruneSpec> {
        let mut spec = wgsparse::model::PruneSpec::new(pattern, sparsity);
        spec.criterion = self.criterion.parse()?;
        spec.bias_correction = self.bias_correction;
        spec.renorm = self.renorm;
        Ok(spec)
    }

    /// Calibrates (when an option needs it) and applies the budget to `spec`.
    pub(super) fn prepare(
        &self,
        ctx: &wgsparse::gpu::Context,
        gpu: &mut wgsparse::model::GpuLite0,
        spec: &mut wgsparse::model::PruneSpec,
        cache: &std::path::Path,
        exclude: Option<&std::path::Path>,
    ) -> wgsparse::Result<()> {
        if spec.criterion != wgsparse::model::Criterion::Magnitude
            || spec.bias_correction
            || spec.renorm
            || self.budget != "uniform"
        {
            calibrate(ctx, gpu, cache, self.calibration, exclude)?;
        }
        apply_budget(ctx, gpu, spec, &self.budget, &self.budget_cost)
    }
}

/// Sets `spec.layer_sparsity` from `--budget auto` (sensitivity measured on
/// the model's calibration images); `uniform` leaves it unset.
fn apply_budget(
    ctx: &wgsparse::gpu::Context,
    gpu: &mut wgsparse::model::GpuLite0,
    spec: &mut wgsparse::model::PruneSpec,
    budget: &str,
    cost: &str,
) -> wgsparse::Result<()> {
    match budget {
        "uniform" => Ok(()),
        "auto" => {
            let cost: wgsparse::model::budget::Cost = cost.parse()?;
            let target = spec.sparsity;
            if target == 0.0 {
                return Err(wgsparse::Error::Invalid(
                    "--budget auto needs --sparsity: the share of the budget cost to remove \
                     (for N:M at most 1 - n/m, reached by pruning a subset of the layers)"
                        .into(),
                ));
            }
            let t = std::time::Instant::now();
            let per = pollster::block_on(gpu.auto_budget(ctx, spec.pattern, spec.criterion, target, cost))?;
            eprintln!(
                "auto budget: sensitivity of {} layers measured in {:.1} s",
                per.len(),
                t.elapsed().as_secs_f64()
            );
            spec.layer_sparsity = Some(per);
            Ok(())
        }
        other => Err(wgsparse::Error::Invalid(format!(
            "unknown --budget {other:?}: use uniform or auto"
        ))),
    }
}

/// Calibrates on the first `n` sample images of the cache other than `exclude`.
fn calibrate(
    ctx: &wgsparse::gpu::Context,
    gpu: &mut wgsparse::model::GpuLite0,
    cache: &std::path::Path,
    n: usize,
    exclude: Option<&std::path::Path>,
) -> wgsparse::Result<()> {
    use wgsparse::model::{preprocess, INPUT_SIZE};
    let own = exclude.and_then(|p| std::fs::canonicalize(p).ok());
    let calib: Vec<Vec<f32>> = sample_images(cache)?
        .into_iter()
        .filter(|f| std::fs::canonicalize(f).ok() != own)
        .take(n)
        .map(|f| preprocess::preprocess(&read(&f)?, INPUT_SIZE))
        .collect::<wgsparse::Result<_>>()?;
    if calib.is_empty() {
        return Err(wgsparse::Error::Invalid(format!(
            "the activation criterion and bias correction need calibration images in {}",
            cache.join("images").display()
        )));
    }
    pollster::block_on(gpu.calibrate(ctx, &calib))
}
