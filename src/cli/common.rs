//! What several commands share: reading files, finding the weights, the
//! cache's sample images.

pub(super) fn read(path: &std::path::Path) -> wgsparse::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| wgsparse::Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

pub(super) fn weights_path(
    cache: &std::path::Path,
    weights: Option<&std::path::Path>,
) -> wgsparse::Result<std::path::PathBuf> {
    let p = weights.map_or_else(|| cache.join(wgsparse::model::fetch::WEIGHTS_FILE), |w| w.to_path_buf());
    if !p.is_file() {
        return Err(wgsparse::Error::Weights(format!(
            "{} not found: run `wgsparse fetch --cache {}` first",
            p.display(),
            cache.display()
        )));
    }
    Ok(p)
}

/// The sample images of a cache (`images/`), sorted by name.
pub(super) fn sample_images(cache: &std::path::Path) -> wgsparse::Result<Vec<std::path::PathBuf>> {
    let dir = cache.join("images");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| wgsparse::Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
