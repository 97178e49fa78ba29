//! The weights file: safetensors, f32, with the checkpoint's own key names
//! (`_conv_stem.weight`, `_blocks.3._bn0.running_var`, ...), BatchNorm tensors
//! included. Loading works from bytes so the browser can hand over what it
//! fetched; BatchNorm is folded into the convolutions when the network is built.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use super::pth::PthTensor;
use crate::error::{Error, Result};

/// The BatchNorm epsilon of this checkpoint. The file stores no epsilon: it is
/// the model code's, and the lukemelas/ml-illustrated port (like the TensorFlow
/// original it was converted from) builds every BatchNorm with `eps=1e-3`.
pub const BN_EPS: f32 = 1e-3;

/// Metadata key under which the converter records the SHA-256 of the `.pth` it read.
pub const META_PTH_SHA256: &str = "pth_sha256";
/// Metadata key naming where the weights came from.
pub const META_SOURCE: &str = "source";

/// A parsed safetensors file, borrowing its bytes.
pub struct Weights<'a> {
    st: SafeTensors<'a>,
    metadata: HashMap<String, String>,
}

impl<'a> Weights<'a> {
    /// Parses a safetensors file. A truncated or foreign file is an
    /// [`Error::Weights`] that says so.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Weights(format!(
                "not a valid safetensors file ({} bytes; truncated or another format?): {e}",
                bytes.len()
            ))
        })?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Weights(format!("unreadable safetensors header: {e}")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(Weights { st, metadata })
    }

    /// The free-form metadata of the header (`source`, `pth_sha256`, ...).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.st.names().into_iter().map(str::to_string).collect();
        n.sort();
        n
    }

    fn view(&self, name: &str) -> Result<TensorView<'a>> {
        self.st
            .tensor(name)
            .map_err(|_| Error::Weights(format!("tensor '{name}' is missing from the weights file")))
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    /// Tensor `name` as f32, checked to have exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if self.st.tensor(name).is_err() && self.prune_info()?.is_some() {
            let rows = shape.first().copied().unwrap_or(1);
            let cols = shape.iter().skip(1).product();
            if let Some(sp) = self.sparse(name, rows, cols)? {
                return Ok(sp.to_dense().into_data());
            }
        }
        let v = self.view(name)?;
        if v.dtype() != Dtype::F32 {
            return Err(Error::Weights(format!(
                "tensor '{name}' is {:?}, expected F32",
                v.dtype()
            )));
        }
        if v.shape() != shape {
            return Err(Error::Weights(format!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                v.shape()
            )));
        }
        // safetensors gives no alignment guarantee: decode bytes, do not cast.
        let data: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::Weights(format!(
                "tensor '{name}' holds a non-finite value {} at index {i}",
                data[i]
            )));
        }
        Ok(data)
    }

    /// Folds BatchNorm `bn` (prefix such as `_blocks.3._bn0`) into the
    /// convolution weight `conv` (prefix such as `_blocks.3._expand_conv`, no
    /// bias of its own) whose first axis is the output channel:
    /// `W' = W * g / sqrt(v + eps)`, `b' = beta - mean * g / sqrt(v + eps)`.
    /// Returns `(weight [cout, per_out], bias [cout])`.
    /// How the file was pruned, when it is a sparse file written by
    /// [`super::sparse_file::write`] (`None` for a checkpoint).
    pub fn prune_info(&self) -> Result<Option<super::sparse_file::PruneInfo>> {
        super::sparse_file::info(&self.metadata)
    }

    /// A u32 tensor of any length.
    fn u32s(&self, name: &str) -> Result<Vec<u32>> {
        let v = self.view(name)?;
        if v.dtype() != Dtype::U32 || v.shape().len() != 1 {
            return Err(Error::Weights(format!(
                "tensor '{name}' is {:?} {:?}, expected a 1-D U32 array",
                v.dtype(),
                v.shape()
            )));
        }
        Ok(v.data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// An f32 tensor of any shape, flattened, finite.
    fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        let shape = self.shape(name)?;
        self.tensor(name, &shape)
    }

    /// The compressed form of weight `name` (`rows x cols`) in a sparse file,
    /// validated; `None` when the file stores it dense.
    pub fn sparse(&self, name: &str, rows: usize, cols: usize) -> Result<Option<crate::sparse::SparseMatrix>> {
        use crate::sparse::{Bsr, Csr, NmMatrix, Pattern, SparseMatrix};
        let Some(info) = self.prune_info()? else {
            return Ok(None);
        };
        let has = |suffix: &str| self.st.tensor(&format!("{name}.{suffix}")).is_ok();
        let bad = |e: Error| Error::Weights(format!("compressed tensor '{name}': {e}"));
        let sp = match info.pattern {
            Pattern::Unstructured if has("csr.values") => SparseMatrix::Csr(
                Csr::new(
                    rows,
                    cols,
                    self.u32s(&format!("{name}.csr.row_ptr"))?,
                    self.u32s(&format!("{name}.csr.col_idx"))?,
                    self.f32s(&format!("{name}.csr.values"))?,
                )
                .map_err(bad)?,
            ),
            Pattern::Block { rows: br, cols: bc } if has("bsr.values") => SparseMatrix::Bsr(
                Bsr::new(
                    rows,
                    cols,
                    br,
                    bc,
                    self.u32s(&format!("{name}.bsr.row_ptr"))?,
                    self.u32s(&format!("{name}.bsr.col_idx"))?,
                    self.f32s(&format!("{name}.bsr.values"))?,
                )
                .map_err(bad)?,
            ),
            Pattern::NM { n, m } if has("nm.values") => SparseMatrix::Nm(
                NmMatrix::new(
                    rows,
                    cols,
                    n,
                    m,
                    self.f32s(&format!("{name}.nm.values"))?,
                    self.u32s(&format!("{name}.nm.indices"))?,
                )
                .map_err(bad)?,
            ),
            _ => return Ok(None),
        };
        Ok(Some(sp))
    }

    pub fn folded(&self, conv: &str, conv_shape: &[usize], bn: &str) -> Result<(Vec<f32>, Vec<f32>)> {
        if self.prune_info()?.is_some() {
            // A sparse file stores the network with BatchNorm already folded.
            let w = self.tensor(&format!("{conv}.weight"), conv_shape)?;
            let b = self.tensor(&format!("{conv}.bias"), &conv_shape[..1])?;
            return Ok((w, b));
        }
        let mut w = self.tensor(&format!("{conv}.weight"), conv_shape)?;
        let cout = conv_shape[0];
        let per_out = w.len() / cout;
        let gamma = self.tensor(&format!("{bn}.weight"), &[cout])?;
        let beta = self.tensor(&format!("{bn}.bias"), &[cout])?;
        let mean = self.tensor(&format!("{bn}.running_mean"), &[cout])?;
        let var = self.tensor(&format!("{bn}.running_var"), &[cout])?;
        let mut bias = vec![0.0f32; cout];
        for c in 0..cout {
            if var[c] < 0.0 {
                return Err(Error::Weights(format!(
                    "{bn}.running_var[{c}] is negative ({})",
                    var[c]
                )));
            }
            let scale = gamma[c] as f64 / (var[c] as f64 + BN_EPS as f64).sqrt();
            for x in &mut w[c * per_out..(c + 1) * per_out] {
                *x = (*x as f64 * scale) as f32;
            }
            bias[c] = (beta[c] as f64 - mean[c] as f64 * scale) as f32;
        }
        Ok((w, bias))
    }
}

/// Serializes tensors as an f32 safetensors file with `metadata` in its header.
pub fn to_safetensors(tensors: &[PthTensor], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Weights(format!("tensor '{}': {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Weights(format!("serializing safetensors: {e}")))
}

/// Converts a legacy PyTorch checkpoint to safetensors bytes (f32, original
/// names), recording `metadata` in the header.
pub fn pth_to_safetensors(pth: &[u8], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let tensors = super::pth::read_state_dict(pth)?;
    if tensors.is_empty() {
        return Err(Error::Weights("the checkpoint holds no floating-point tensor".into()));
    }
    to_safetensors(&tensors, metadata)
}
