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

/// `--tune-cache FILE` (classify, eval, sweep, bench).
#[derive(clap::Args)]
pub(super) struct TuneArgs {
    /// Keep the measured kernel choices in this JSON file: classify, eval and
    /// sweep reuse those measured before on this adapter (by this wgsparse
    /// version) and add new ones; bench records the dense-or-sparse choice of
    /// every shape it times. A file of another adapter or version, or a
    /// corrupt one, is ignored with a warning and rewritten.
    #[arg(long)]
    tune_cache: Option<std::path::PathBuf>,
}

impl TuneArgs {
    /// The tuner of the file, when one was asked for.
    pub(super) fn open(&self, ctx: &wgsparse::gpu::Context) -> Option<TuneFile> {
        let path = self.tune_cache.clone()?;
        let (tuner, warning) = wgsparse::gpu::tune::Tuner::open(wgsparse::gpu::tune::adapter_id(ctx), &path);
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        Some(TuneFile {
            path,
            tuner: std::sync::Arc::new(tuner),
        })
    }
}

/// A tuner kept in a file: written back when the command ends (also on an
/// error: its measurements hold either way); a failed write is a warning,
/// since the file only saves time.
pub(super) struct TuneFile {
    path: std::path::PathBuf,
    tuner: std::sync::Arc<wgsparse::gpu::tune::Tuner>,
}

impl TuneFile {
    pub(super) fn tuner(&self) -> std::sync::Arc<wgsparse::gpu::tune::Tuner> {
        std::sync::Arc::clone(&self.tuner)
    }

    /// Makes `gpu` choose its kernels by this file's tuner.
    pub(super) fn attach(
        &self,
        ctx: &wgsparse::gpu::Context,
        gpu: &mut wgsparse::model::GpuLite0,
    ) -> wgsparse::Result<()> {
        gpu.set_tuner(ctx, std::sync::Arc::clone(&self.tuner))
    }
}

impl Drop for TuneFile {
    fn drop(&mut self) {
        match self.tuner.save(&self.path) {
            Ok(()) => eprintln!(
                "tuner: {} kernel choices measured this run, {} kept in {}",
                self.tuner.measurements(),
                self.tuner.len(),
                self.path.display()
            ),
            Err(e) => eprintln!("warning: the kernel choices were not saved: {e}"),
        }
    }
}
