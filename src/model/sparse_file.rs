//! Pruned Lite0 on disk: a safetensors file of the BatchNorm-folded network in
//! which every pruned layer's weights are stored in the compressed format of
//! the pattern, the layout the GPU kernels consume, so loading it skips
//! pruning (and calibration: corrected biases are stored as they are).
//!
//! Keys follow the checkpoint (`_blocks.N._expand_conv`, `_conv_head`, `_fc`, ...).
//! For each layer `K`: `K.bias` (f32, the folded bias) and either `K.weight`
//! (f32, dense, the checkpoint's shape) or, for a pruned layer, with
//! `W = K.weight`:
//!
//! | pattern | tensors |
//! |---|---|
//! | unstructured (CSR) | `W.csr.row_ptr` u32 `[rows+1]`, `W.csr.col_idx` u32 `[nnz]`, `W.csr.values` f32 `[nnz]` |
//! | block RxC (BSR, zero-padded edge blocks) | `W.bsr.row_ptr` u32, `W.bsr.col_idx` u32, `W.bsr.values` f32 `[blocks, R, C]` |
//! | N:M | `W.nm.values` f32 `[rows, ceil(cols/M)*N]`, `W.nm.indices` u32 (packed, see [`crate::sparse::NmMatrix`]) |
//!
//! Metadata: `wgsparse.format` = [`FORMAT`], `wgsparse.pattern`,
//! `wgsparse.sparsity`, `wgsparse.criterion`, `wgsparse.bias_correction`,
//! `wgsparse.calibration_images`, and the source checkpoint's `pth_sha256`.
//! Every array is validated on load (a malformed file is an error, never a
//! wrong answer).

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype};

use super::lite0::{Lite0, Op};
use crate::error::{Error, Result};
use crate::sparse::{Pattern, SparseMatrix};

/// The value of the `wgsparse.format` metadata key.
pub const FORMAT: &str = "lite0-folded-sparse-v1";
pub const META_FORMAT: &str = "wgsparse.format";
pub const META_PATTERN: &str = "wgsparse.pattern";
pub const META_SPARSITY: &str = "wgsparse.sparsity";

/// How the file's network was pruned (stored as metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct PruneInfo {
    pub pattern: Pattern,
    pub sparsity: f64,
    pub criterion: String,
    pub bias_correction: bool,
    pub calibration_images: usize,
}

enum Data {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

struct Entry {
    name: String,
    shape: Vec<usize>,
    data: Data,
}

fn f32s(name: String, shape: Vec<usize>, v: &[f32]) -> Entry {
    Entry {
        name,
        shape,
        data: Data::F32(v.to_vec()),
    }
}

fn u32s(name: String, v: &[u32]) -> Entry {
    Entry {
        name,
        shape: vec![v.len()],
        data: Data::U32(v.to_vec()),
    }
}

/// The compressed tensors of one pruned weight matrix.
fn compressed(w: &str, sp: &SparseMatrix) -> Result<Vec<Entry>> {
    Ok(match sp {
        SparseMatrix::Csr(c) => vec![
            u32s(format!("{w}.csr.row_ptr"), c.row_ptr()),
            u32s(format!("{w}.csr.col_idx"), c.col_idx()),
            f32s(format!("{w}.csr.values"), vec![c.nnz()], c.values()),
        ],
        SparseMatrix::Bsr(b) => vec![
            u32s(format!("{w}.bsr.row_ptr"), b.row_ptr()),
            u32s(format!("{w}.bsr.col_idx"), b.col_idx()),
            f32s(
                format!("{w}.bsr.values"),
                vec![b.nnz_blocks(), b.block_rows(), b.block_cols()],
                b.values(),
            ),
        ],
        SparseMatrix::Nm(n) => vec![
            f32s(format!("{w}.nm.values"), vec![n.values().len()], n.values()),
            u32s(format!("{w}.nm.indices"), n.indices()),
        ],
        SparseMatrix::Dense(_) => return Err(Error::Invalid("a dense matrix has no compressed form".into())),
    })
}

/// Serialises `net` (BatchNorm folded, prunable layers already pruned to
/// `info.pattern`: zeros where pruned) with every prunable layer compressed.
/// `source_meta` (e.g. the checkpoint's `pth_sha256`) is carried over.
pub fn write(net: &Lite0, info: &PruneInfo, source_meta: &HashMap<String, String>) -> Result<Vec<u8>> {
    if info.pattern == Pattern::Dense {
        return Err(Error::Invalid("a sparse file needs a sparse pattern, not dense".into()));
    }
    let mut entries = Vec::new();
    for l in &net.layers {
        let (w, b, shape) = match &l.op {
            Op::Conv(c) => (&c.weight, &c.bias, vec![c.cout, c.cin, c.k, c.k]),
            Op::Depthwise(d) => (&d.weight, &d.bias, vec![d.c, 1, d.k, d.k]),
            Op::Pointwise(p) => (&p.weight, &p.bias, vec![p.cout, p.cin, 1, 1]),
            Op::Classifier(c) => (&c.weight, &c.bias, vec![c.weight.rows(), c.weight.cols()]),
            Op::Pool => continue,
        };
        let wname = format!("{}.weight", l.key);
        if l.prunable_weight().is_some() {
            // The zeros of the pruned weights are the mask: magnitude pruning
            // of the pruned matrix at its own target keeps every non-zero.
            let target = match info.pattern {
                Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
                _ => info.sparsity,
            };
            let (sp, _) = crate::prune::prune(w, info.pattern, target)?;
            if sp.to_dense().data() != w.data() {
                return Err(Error::Invalid(format!(
                    "layer {} is not pruned to {} at {:.1}%: its non-zeros do not fit the pattern",
                    l.name,
                    info.pattern,
                    100.0 * target
                )));
            }
            entries.extend(compressed(&wname, &sp)?);
        } else {
            entries.push(f32s(wname, shape, w.data()));
        }
        entries.push(f32s(format!("{}.bias", l.key), vec![b.len()], b));
    }
    let bytes: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| match &e.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views = entries
        .iter()
        .zip(&bytes)
        .map(|(e, b)| {
            let dt = match e.data {
                Data::F32(_) => Dtype::F32,
                Data::U32(_) => Dtype::U32,
            };
            TensorView::new(dt, e.shape.clone(), b)
                .map(|v| (e.name.clone(), v))
                .map_err(|err| Error::Weights(format!("tensor '{}': {err}", e.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta: HashMap<String, String> = source_meta.clone();
    meta.insert(META_FORMAT.into(), FORMAT.into());
    meta.insert(META_PATTERN.into(), info.pattern.to_string());
    meta.insert(META_SPARSITY.into(), info.sparsity.to_string());
    meta.insert("wgsparse.criterion".into(), info.criterion.clone());
    meta.insert("wgsparse.bias_correction".into(), info.bias_correction.to_string());
    meta.insert(
        "wgsparse.calibration_images".into(),
        info.calibration_images.to_string(),
    );
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Weights(format!("cannot serialise: {e}")))
}

/// The pruning metadata of a sparse file (`None` for a dense checkpoint).
pub fn info(meta: &HashMap<String, String>) -> Result<Option<PruneInfo>> {
    match meta.get(META_FORMAT) {
        None => return Ok(None),
        Some(f) if f == FORMAT => {}
        Some(f) => {
            return Err(Error::Weights(format!(
                "unsupported sparse file format {f:?} (this build reads {FORMAT:?})"
            )))
        }
    }
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| Error::Weights(format!("sparse file without the {k} metadata")))
    };
    let pattern: Pattern = get(META_PATTERN)?.parse()?;
    let sparsity: f64 = get(META_SPARSITY)?
        .parse()
        .map_err(|_| Error::Weights(format!("bad {META_SPARSITY} {:?}", meta.get(META_SPARSITY))))?;
    crate::error::check_sparsity(sparsity)?;
    Ok(Some(PruneInfo {
        pattern: pattern.validate()?,
        sparsity,
        criterion: meta.get("wgsparse.criterion").cloned().unwrap_or_default(),
        bias_correction: meta.get("wgsparse.bias_correction").is_some_and(|v| v == "true"),
        calibration_images: meta
            .get("wgsparse.calibration_images")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }))
}
