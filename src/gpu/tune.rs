//! The tuner: which of a kernel family's candidates runs one product on this
//! adapter, measured once and remembered.
//!
//! A decision is keyed by [`TuneKey`]: the [`Family`] of the decision, the
//! product's `M x K x N` rounded into buckets ([`bucket_dim`]), the weights'
//! pattern and their sparsity in 1/[`SPARSITY_BUCKETS`] steps. A [`Tuner`]
//! belongs to one adapter ([`adapter_id`]: name, backend, driver, PCI ids,
//! shader checks): every time it holds was measured there. The first
//! [`Tuner::choose`] of a key runs the caller's measurement (medians of
//! GPU-timed runs, [`Context::time`]) over the candidates; later ones reuse
//! it. The pick is the argmin of the times, the first candidate on a tie,
//! so callers list their default (dense, or the kernel they run without
//! measuring) first.
//!
//! The times can be written out and read back ([`Tuner::to_json_string`],
//! [`Tuner::load_str`]): natively to a JSON file ([`Tuner::open`],
//! [`Tuner::save`]), in a browser wherever the page keeps strings. A file is
//! trusted only when it names this crate version and this very adapter and
//! every entry is well formed; otherwise it is ignored as a whole, with the
//! reason as a warning (the tuner then measures afresh).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::Context;
use crate::error::{Error, Result};

/// What the tuner chooses between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A 1x1 convolution or the classifier of the f32 model: the dense GEMM
    /// on the pruned weights, or the layer's sparse kernel.
    ModelLayer,
    /// The same layer in f16 storage: the dense f16 kernels (shader cores,
    /// split-K, cooperative matrices) and the f16 sparse ones.
    ModelLayerF16,
    /// [`crate::backend::Sparse24Gemm`] on CUDA: our `mma.sp` SpMM or cuBLAS
    /// dense on the masked weights.
    Sparse24Cuda,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::ModelLayer, Family::ModelLayerF16, Family::Sparse24Cuda];

    /// The name in cache files.
    pub fn name(self) -> &'static str {
        match self {
            Family::ModelLayer => "model_layer",
            Family::ModelLayerF16 => "model_layer_f16",
            Family::Sparse24Cuda => "sparse24_cuda",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Family {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| Error::Invalid(format!("unknown tuner family '{s}'")))
    }
}

/// Sparsities within `1 / (2 * SPARSITY_BUCKETS)` of each other share one
/// decision, so moving the demo's slider by a percent reuses it instead of
/// timing every layer again.
pub const SPARSITY_BUCKETS: f64 = 20.0;

/// Sizes up to this are their own bucket.
const EXACT_UP_TO: usize = 16;
/// Above [`EXACT_UP_TO`], a bucket is 1/DIM_STEPS of the power of two at or
/// above the size (at most ~6% apart): fine enough that no two distinct
/// sizes of EfficientNet-Lite0 share one, coarse enough that nearby batch
/// widths do.
const DIM_STEPS: usize = 16;

/// The bucket of one dimension: the size itself up to 16, else the size
/// rounded up to a multiple of 1/16 of the next power of two (1000 -> 1024,
/// 196 -> 208, 12544 -> 13312).
pub fn bucket_dim(x: usize) -> usize {
    if x <= EXACT_UP_TO {
        return x;
    }
    match x.checked_next_power_of_two() {
        Some(p) => x.div_ceil((p / DIM_STEPS).max(1)) * (p / DIM_STEPS).max(1),
        None => x,
    }
}

/// The bucket of a sparsity in `[0, 1]` (clamped; NaN counts as 0).
pub fn bucket_sparsity(s: f64) -> u32 {
    let s = if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) };
    (s * SPARSITY_BUCKETS).round() as u32
}

/// What one decision depends on besides the adapter (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TuneKey {
    pub family: Family,
    /// [`bucket_dim`] of M, K and N.
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The weights' pattern as it prints (`dense`, `block:16x16`, `2:4`, ...).
    pub pattern: String,
    /// [`bucket_sparsity`] of the weights' sparsity.
    pub sparsity: u32,
}

impl TuneKey {
    /// The key of a product `Y[m, n] = W[m, k] X[k, n]` with `W` of `pattern`
    /// at `sparsity` (fraction of zeros): dimensions and sparsity bucketed.
    pub fn new(family: Family, m: usize, k: usize, n: usize, pattern: impl fmt::Display, sparsity: f64) -> Self {
        TuneKey {
            family,
            m: bucket_dim(m),
            k: bucket_dim(k),
            n: bucket_dim(n),
            pattern: pattern.to_string(),
            sparsity: bucket_sparsity(sparsity),
        }
    }
}

impl fmt::Display for TuneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{}x{} {} {}/{}",
            self.family, self.m, self.k, self.n, self.pattern, self.sparsity, SPARSITY_BUCKETS
        )
    }
}

/// A decision: every candidate with its median ms (infinite where it could
/// not run), and the one picked.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Index into the candidates as the caller listed them.
    pub pick: usize,
    pub times: Vec<(String, f64)>,
    /// Taken from an earlier measurement (this run or a loaded cache).
    pub reused: bool,
}

impl Choice {
    /// The picked candidate's name.
    pub fn kernel(&self) -> &str {
        &self.times[self.pick].0
    }

    /// The median ms of candidate `i`, `None` where it could not run.
    pub fn ms(&self, i: usize) -> Option<f64> {
        self.times.get(i).map(|t| t.1).filter(|t| t.is_finite())
    }
}

/// The index of the least time, the first on a tie; NaN never wins.
pub fn argmin(times: &[f64]) -> usize {
    let key = |t: f64| if t.is_nan() { f64::INFINITY } else { t };
    (0..times.len())
        .min_by(|&a, &b| key(times[a]).total_cmp(&key(times[b])))
        .unwrap_or(0)
}

/// The identity of a wgpu adapter as the tuner keys it: everything that
/// changes what a kernel costs there (name, backend, driver and its version,
/// PCI vendor and device, and the shader checks compiled in).
pub fn adapter_id(ctx: &Context) -> String {
    let i = ctx.info();
    format!(
        "wgpu: {} | {:?} | {} {} | {:04x}:{:04x} | checks {:?}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        i.vendor,
        i.device,
        ctx.shader_checks()
    )
}

/// The `format` field of a cache file.
pub const FILE_FORMAT: &str = "wgsparse-tune";
/// The layout of a cache file; a file of another layout is ignored.
pub const FILE_VERSION: u64 = 1;

/// Measured kernel choices for one adapter (see the module docs). Shared by
/// reference (`&Tuner`, or an `Arc` between models): it locks internally.
#[derive(Debug)]
pub struct Tuner {
    adapter: String,
    entries: Mutex<BTreeMap<TuneKey, Vec<(String, f64)>>>,
    measurements: AtomicUsize,
}

impl Tuner {
    /// An empty tuner for the adapter named `adapter` (e.g. [`adapter_id`]).
    pub fn new(adapter: impl Into<String>) -> Self {
        Tuner {
            adapter: adapter.into(),
            entries: Mutex::new(BTreeMap::new()),
            measurements: AtomicUsize::new(0),
        }
    }

    /// An empty tuner for `ctx`'s adapter.
    pub fn for_context(ctx: &Context) -> Self {
        Self::new(adapter_id(ctx))
    }

    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Decisions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many measurements [`choose`](Self::choose) has run (not reused).
    pub fn measurements(&self) -> usize {
        self.measurements.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TuneKey, Vec<(String, f64)>>> {
        // A panic while holding the lock leaves a whole map behind (inserts
        // are single calls), so the data stays usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The times held for `key`, when they are for exactly these candidates
    /// in this order (a layer whose candidates changed is measured again).
    pub fn get(&self, key: &TuneKey, candidates: &[&str]) -> Option<Vec<f64>> {
        let map = self.lock();
        let e = map.get(key)?;
        (e.len() == candidates.len() && e.iter().zip(candidates).all(|((a, _), b)| a == b))
            .then(|| e.iter().map(|(_, t)| *t).collect())
    }

    /// Records `times` (median ms, infinite where a candidate could not run)
    /// of `candidates` for `key`, replacing what was there.
    pub fn insert(&self, key: TuneKey, candidates: &[&str], times: &[f64]) -> Result<()> {
        check_times(&key, candidates, times)?;
        let e = candidates
            .iter()
            .map(|c| c.to_string())
            .zip(times.iter().copied())
            .collect();
        self.lock().insert(key, e);
        Ok(())
    }

    /// The argmin of `times` (the first candidate, the caller's default,
    /// when none has a time).
    fn decided(candidates: &[&str], times: Vec<f64>, reused: bool) -> Result<Choice> {
        Ok(Choice {
            pick: argmin(&times),
            times: candidates.iter().map(|c| c.to_string()).zip(times).collect(),
            reused,
        })
    }

    /// The decision for `key` among `candidates`: the held times when there
    /// are some for these candidates, else `measure()`'s (one median ms per
    /// candidate, in order; infinite for one that cannot run), recorded.
    pub async fn choose<F, Fut>(&self, key: TuneKey, candidates: &[&str], measure: F) -> Result<Choice>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<f64>>>,
    {
        if let Some(t) = self.get(&key, candidates) {
            return Self::decided(candidates, t, true);
        }
        let t = measure().await?;
        self.measurements.fetch_add(1, Ordering::Relaxed);
        self.insert(key.clone(), candidates, &t)?;
        Self::decided(candidates, t, false)
    }

    /// [`choose`](Self::choose) with a measurement that blocks (CUDA).
    pub fn choose_blocking<F>(&self, key: TuneKey, candidates: &[&str], measure: F) -> Result<Choice>
    where
        F: FnOnce() -> Result<Vec<f64>>,
    {
        if let Some(t) = self.get(&key, candidates) {
            return Self::decided(candidates, t, true);
        }
        let t = measure()?;
        self.measurements.fetch_add(1, Ordering::Relaxed);
        self.insert(key.clone(), candidates, &t)?;
        Self::decided(candidates, t, false)
    }

    /// Adds `other`'s decisions for keys this tuner has none for (both must
    /// be of one adapter); returns how many.
    pub fn absorb(&self, other: &Tuner) -> Result<usize> {
        if other.adapter != self.adapter {
            return Err(Error::Invalid(format!(
                "decisions measured on {:?} cannot join a tuner of {:?}",
                other.adapter, self.adapter
            )));
        }
        if std::ptr::eq(self, other) {
            return Ok(0);
        }
        let theirs = other.lock().clone();
        let mut map = self.lock();
        let before = map.len();
        for (k, c) in theirs {
            map.entry(k).or_insert(c);
        }
        Ok(map.len() - before)
    }

    /// Every decision, with the adapter and crate version, as JSON text
    /// (what [`load_str`](Self::load_str) reads back).
    pub fn to_json_string(&self) -> String {
        let entries: Vec<serde_json::Value> = self
            .lock()
            .iter()
            .map(|(k, c)| {
                serde_json::json!({
                    "family": k.family.name(),
                    "m": k.m, "k": k.k, "n": k.n,
                    "pattern": k.pattern,
                    "sparsity_bucket": k.sparsity,
                    // JSON has no infinity: a candidate that could not run is null.
                    "candidates": c.iter().map(|(name, ms)| serde_json::json!({
                        "kernel": name,
                        "ms": if ms.is_finite() { serde_json::json!(ms) } else { serde_json::Value::Null },
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "crate_version": env!("CARGO_PKG_VERSION"),
            "adapter": self.adapter,
            "sparsity_buckets": SPARSITY_BUCKETS,
            "entries": entries,
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// Adds the decisions of `text` (from [`to_json_string`](Self::to_json_string))
    /// and returns how many. All or nothing: text of another format, crate
    /// version or adapter, or with any malformed entry, is an error naming
    /// what is wrong, and nothing is added.
    pub fn load_str(&self, text: &str) -> Result<usize> {
        let bad = |what: String| Error::Invalid(format!("tuning cache: {what}"));
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let field = |name: &str| v.get(name).ok_or_else(|| bad(format!("no \"{name}\" field")));
        if field("format")?.as_str() != Some(FILE_FORMAT) {
            return Err(bad(format!("\"format\" is not \"{FILE_FORMAT}\"")));
        }
        if field("version")?.as_u64() != Some(FILE_VERSION) {
            return Err(bad(format!(
                "layout version {} is not {FILE_VERSION}",
                field("version")?
            )));
        }
        let version = field("crate_version")?.as_str().unwrap_or_default();
        if version != env!("CARGO_PKG_VERSION") {
            return Err(bad(format!(
                "written by wgsparse {version:?}, this is {}",
                env!("CARGO_PKG_VERSION")
            )));
        }
        let adapter = field("adapter")?.as_str().unwrap_or_default();
        if adapter != self.adapter {
            return Err(bad(format!(
                "measured on another adapter ({adapter:?}; this is {:?})",
                self.adapter
            )));
        }
        if field("sparsity_buckets")?.as_f64() != Some(SPARSITY_BUCKETS) {
            return Err(bad("another sparsity bucketing".into()));
        }
        let entries = field("entries")?
            .as_array()
            .ok_or_else(|| bad("\"entries\" is not a list".into()))?;
        let mut parsed = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            parsed.push(parse_entry(e).map_err(|what| bad(format!("entry {i}: {what}")))?);
        }
        let n = parsed.len();
        let mut map = self.lock();
        for (k, c) in parsed {
            map.insert(k, c);
        }
        Ok(n)
    }

    /// A tuner for `adapter` with the decisions of the file at `path` when it
    /// holds valid ones for this adapter and crate version. A missing file is
    /// an empty tuner; an unreadable, corrupt or foreign one is an empty tuner
    /// and the returned warning says why.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(adapter: impl Into<String>, path: &std::path::Path) -> (Self, Option<String>) {
        let t = Self::new(adapter);
        let warning = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!("ignoring {}: tuning cache unreadable ({e})", path.display())),
            Ok(text) => t
                .load_str(&text)
                .err()
                .map(|e| format!("ignoring {}: {e}", path.display())),
        };
        (t, warning)
    }

    /// Writes every decision to `path` (through a temporary file beside it,
    /// so a reader never sees half a file).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let io = |p: &std::path::Path, e| Error::Io {
            path: p.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json_string()).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    }
}

/// The cache file of a cache folder.
pub const FILE_NAME: &str = "tune.json";

fn check_times(key: &TuneKey, candidates: &[&str], times: &[f64]) -> Result<()> {
    if candidates.is_empty() || candidates.len() != times.len() {
        return Err(Error::Invalid(format!(
            "{key}: {} times for {} candidates",
            times.len(),
            candidates.len()
        )));
    }
    if let Some(t) = times.iter().find(|t| t.is_nan() || **t < 0.0) {
        return Err(Error::Invalid(format!("{key}: time {t} is not a duration")));
    }
    Ok(())
}

/// Largest dimension a cache file may name (a larger one is corrupt).
const MAX_DIM: u64 = 1 << 40;

type Entry = (TuneKey, Vec<(String, f64)>);

fn parse_entry(e: &serde_json::Value) -> std::result::Result<Entry, String> {
    let dim = |name: &str| -> std::result::Result<usize, String> {
        match e.get(name).and_then(|v| v.as_u64()) {
            Some(d) if d > 0 && d <= MAX_DIM => usize::try_from(d).map_err(|_| format!("\"{name}\" {d} is too large")),
            _ => Err(format!("\"{name}\" is not a positive integer")),
        }
    };
    let family: Family = e
        .get("family")
        .and_then(|v| v.as_str())
        .ok_or("no \"family\"")?
        .parse()
        .map_err(|e: Error| e.to_string())?;
    let pattern = e.get("pattern").and_then(|v| v.as_str()).ok_or("no \"pattern\"")?;
    let sparsity = e
        .get("sparsity_bucket")
        .and_then(|v| v.as_u64())
        .filter(|&s| s as f64 <= SPARSITY_BUCKETS)
        .ok_or("\"sparsity_bucket\" is not an integer in 0..=20")? as u32;
    let key = TuneKey {
        family,
        m: dim("m")?,
        k: dim("k")?,
        n: dim("n")?,
        pattern: pattern.to_string(),
        sparsity,
    };
    if (key.m, key.k, key.n) != (bucket_dim(key.m), bucket_dim(key.k), bucket_dim(key.n)) {
        return Err(format!("{}x{}x{} is not a shape bucket", key.m, key.k, key.n));
    }
    let cands = e
        .get("candidates")
        .and_then(|v| v.as_array())
        .filter(|c| !c.is_empty())
        .ok_or("\"candidates\" is not a non-empty list")?;
    let mut out = Vec::with_capacity(cands.len());
    for c in cands {
        let name = c
            .get("kernel")
            .and_then(|v| v.as_str())
            .ok_or("a candidate has no \"kernel\"")?;
        let ms = match c.get("ms") {
            Some(serde_json::Value::Null) => f64::INFINITY,
            Some(v) => v
                .as_f64()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| format!("{name}: \"ms\" is not a duration"))?,
            None => return Err(format!("{name}: no \"ms\"")),
        };
        out.push((name.to_string(), ms));
    }
    Ok((key, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmin_takes_the_first_of_equal_times_and_never_nan() {
        assert_eq!(argmin(&[2.0, 1.0, 1.0]), 1);
        assert_eq!(argmin(&[1.0, 1.0]), 0);
        assert_eq!(argmin(&[f64::NAN, 3.0]), 1);
        assert_eq!(argmin(&[f64::INFINITY, 3.0]), 1);
    }
}
