//! EfficientNet-Lite0 through the library API: load the fetched checkpoint,
//! calibrate on two sample images, prune every 1x1 layer to 30% on the GPU
//! with the activation-aware criterion and bias correction, and classify.
//!
//!     cargo run --release -- fetch            # once: cache/lite0.safetensors + cache/images/
//!     cargo run --release --example classify [IMAGE]

use wgsparse::model::{classes, preprocess, Criterion, Dispatching, GpuLite0, PruneSpec, INPUT_SIZE};
use wgsparse::Pattern;

fn main() -> wgsparse::Result<()> {
    let read = |p: &str| {
        std::fs::read(p).map_err(|e| wgsparse::Error::Io {
            path: p.into(),
            source: e,
        })
    };
    let image = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cache/images/chelsea.png".into());
    let ctx = wgsparse::gpu::Context::new_blocking()?;
    let bytes = read("cache/lite0.safetensors")?;
    let (mut model, _) = pollster::block_on(GpuLite0::from_safetensors(&ctx, &bytes, Dispatching::Fastest))?;
    let x = preprocess::preprocess(&read(&image)?, INPUT_SIZE)?;
    let calib = ["cache/images/coffee.png", "cache/images/astronaut.png"]
        .iter()
        .map(|p| preprocess::preprocess(&read(p)?, INPUT_SIZE))
        .collect::<wgsparse::Result<Vec<_>>>()?;
    pollster::block_on(model.calibrate(&ctx, &calib))?;

    let mut spec = PruneSpec::new(Pattern::Unstructured, 0.3);
    spec.criterion = Criterion::Activation;
    spec.bias_correction = true;
    let report = pollster::block_on(model.prune(&ctx, &spec))?;
    println!("{report}\n");
    for (title, logits) in [
        ("dense", pollster::block_on(model.forward_dense(&ctx, &x))?),
        ("pruned", pollster::block_on(model.forward(&ctx, &x))?),
    ] {
        println!("{title}:");
        for p in classes::top_k(&logits, 5) {
            println!("  {:>6.2}%  {}", 100.0 * p.prob, p.name);
        }
    }
    Ok(())
}
