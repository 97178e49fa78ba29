//! The `wgsparse` command line.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wgsparse",
    version,
    about = "Sparse neural-network kernels on wgpu/WebGPU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every GPU adapter wgpu finds, with the features and limits wgsparse uses.
    Info,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Info => info(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn info() -> wgsparse::Result<()> {
    let adapters = wgsparse::gpu::Context::enumerate();
    if adapters.is_empty() {
        return Err(wgsparse::Error::NoAdapter(
            "wgpu found no adapter; on Debian without a GPU: apt-get install mesa-vulkan-drivers"
                .into(),
        ));
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("adapter {i}: {a}");
    }
    Ok(())
}
