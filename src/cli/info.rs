//! `wgsparse info`: every adapter wgpu finds, and whether CUDA is usable.

pub(super) fn run() -> wgsparse::Result<()> {
    let adapters = wgsparse::gpu::Context::enumerate();
    if adapters.is_empty() {
        return Err(wgsparse::Error::NoAdapter(
            "wgpu found no adapter; on Debian without a GPU: apt-get install mesa-vulkan-drivers".into(),
        ));
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("adapter {i}: {a}");
    }
    // The 2:4 sparse tensor cores (`cuda` feature): the device, or why not.
    if cfg!(feature = "cuda") {
        match wgsparse::backend::cuda_available() {
            Ok(d) => println!("cuda: {d}: 2:4 on sparse tensor cores available"),
            Err(e) => println!("cuda: not available ({e})"),
        }
    }
    Ok(())
}
