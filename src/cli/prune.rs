//! `wgsparse prune`: prune on the GPU and write the sparse safetensors file.

use super::common::{read, weights_path};
use super::method::MethodArgs;

#[derive(clap::Args)]
pub(super) struct PruneArgs {
    /// The checkpoint to prune (default: CACHE/lite0.safetensors).
    weights: Option<std::path::PathBuf>,
    /// Cache folder (see `wgsparse fetch`): weights and calibration images.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Pattern: unstructured, block:RxC, N:M.
    #[arg(long)]
    pattern: String,
    /// Sparsity (ignored for N:M).
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    #[command(flatten)]
    method: MethodArgs,
    /// The sparse safetensors file to write.
    #[arg(long)]
    out: std::path::PathBuf,
}

pub(super) fn run(a: PruneArgs) -> wgsparse::Result<()> {
    use wgsparse::model::{sparse_file, GpuLite0, KernelPolicy};
    let src = weights_path(&a.cache, a.weights.as_deref())?;
    let bytes = read(&src)?;
    let meta = wgsparse::model::Weights::from_bytes(&bytes)?.metadata().clone();
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let (mut gpu, loaded) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &bytes, KernelPolicy::Sparse))?;
    if loaded.is_some() {
        return Err(wgsparse::Error::Invalid(format!(
            "{} is already a pruned sparse file: prune the original checkpoint",
            src.display()
        )));
    }
    let mut spec = a.method.spec(a.pattern.parse()?, a.sparsity)?;
    spec.dispatching = KernelPolicy::Sparse;
    a.method.prepare(&ctx, &mut gpu, &mut spec, &a.cache, None)?;
    let report = pollster::block_on(gpu.prune(&ctx, &spec))?;
    if report.layers.is_empty() {
        return Err(wgsparse::Error::Invalid(
            "nothing to write: the pattern is dense or the sparsity 0".into(),
        ));
    }
    let net = pollster::block_on(gpu.current_net(&ctx))?;
    let keep: std::collections::HashMap<String, String> = meta
        .into_iter()
        .filter(|(k, _)| k == wgsparse::model::weights::META_PTH_SHA256)
        .collect();
    let info = sparse_file::PruneInfo {
        pattern: spec.pattern,
        sparsity: a.sparsity,
        criterion: spec.criterion.to_string(),
        bias_correction: spec.bias_correction,
        renorm: spec.renorm,
        calibration_images: report.calibration_images,
    };
    let out = sparse_file::write(&net, &info, &keep)?;
    std::fs::write(&a.out, &out).map_err(|e| wgsparse::Error::Io {
        path: a.out.display().to_string(),
        source: e,
    })?;
    println!("{report}");
    println!(
        "wrote {}: {} bytes ({} bytes the checkpoint, {:.2}x smaller)",
        a.out.display(),
        out.len(),
        bytes.len(),
        bytes.len() as f64 / out.len() as f64
    );
    Ok(())
}
