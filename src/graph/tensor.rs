//! Host tensors of the graph: a shape and a typed, row-major buffer.
//!
//! f32 is the compute type; the integer and bool types exist for shape
//! sub-graphs, indices and masks (they fold to constants at load), f64 for
//! Cast and the few models that carry doubles.

use crate::error::{Error, Result};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    /// IEEE half: stored and cast (f16 weights import as data), not computed.
    F16,
    I64,
    I32,
    I8,
    U8,
    Bool,
}

impl DType {
    /// The ONNX `TensorProto.DataType` name, for messages and reports.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Whether values of this type are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The typed buffer of a [`Tensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<half::f16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

/// Applies one generic expression to whichever vector a [`TensorData`] holds,
/// producing a `TensorData` of the same variant.
macro_rules! map_data {
    ($data:expr, $v:ident => $e:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($e),
            TensorData::F64($v) => TensorData::F64($e),
            TensorData::F16($v) => TensorData::F16($e),
            TensorData::I64($v) => TensorData::I64($e),
            TensorData::I32($v) => TensorData::I32($e),
            TensorData::I8($v) => TensorData::I8($e),
            TensorData::U8($v) => TensorData::U8($e),
            TensorData::Bool($v) => TensorData::Bool($e),
        }
    };
}
pub(crate) use map_data;

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// A new buffer with `out[i] = self[index[i]]`; every index must be in
    /// range (callers compute them from validated shapes).
    pub(crate) fn gather(&self, index: &[usize]) -> TensorData {
        map_data!(self, v => index.iter().map(|&i| v[i]).collect())
    }

    /// `n` copies of the first element (ConstantOfShape, Expand of scalars).
    pub(crate) fn repeat_first(&self, n: usize) -> Result<TensorData> {
        if self.is_empty() {
            return Err(Error::shape("cannot repeat the value of an empty tensor"));
        }
        Ok(map_data!(self, v => vec![v[0]; n]))
    }

    /// Concatenation of buffers of one type.
    pub(crate) fn concat(parts: &[&TensorData]) -> Result<TensorData> {
        let first = parts
            .first()
            .ok_or_else(|| Error::shape("concatenation of no tensors"))?;
        let dtype = first.dtype();
        if let Some(p) = parts.iter().find(|p| p.dtype() != dtype) {
            return Err(Error::shape(format!("cannot concatenate {} with {}", dtype, p.dtype())));
        }
        macro_rules! cat {
            ($var:ident) => {{
                let mut out = Vec::new();
                for p in parts {
                    if let TensorData::$var(v) = p {
                        out.extend_from_slice(v);
                    }
                }
                TensorData::$var(out)
            }};
        }
        Ok(match dtype {
            DType::F32 => cat!(F32),
            DType::F64 => cat!(F64),
            DType::F16 => cat!(F16),
            DType::I64 => cat!(I64),
            DType::I32 => cat!(I32),
            DType::I8 => cat!(I8),
            DType::U8 => cat!(U8),
            DType::Bool => cat!(Bool),
        })
    }

    /// Every element as f64 (Cast and comparisons).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }
}

/// A shape and its row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// The most elements one tensor may hold (16 GiB of f32 on 64-bit targets,
/// 1 GiB in a 32-bit wasm address space): a model asking for more (a
/// ConstantOfShape or Pad of absurd size) is refused before any allocation
/// instead of aborting the process.
#[cfg(target_pointer_width = "64")]
pub const MAX_ELEMENTS: usize = 1 << 32;
/// See the 64-bit definition.
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_ELEMENTS: usize = 1 << 28;

/// [`numel`], refused above [`MAX_ELEMENTS`].
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    let n = numel(shape)?;
    if n > MAX_ELEMENTS {
        return Err(Error::Limit(format!(
            "a tensor of shape {shape:?} ({n} elements) exceeds the {MAX_ELEMENTS}-element limit"
        )));
    }
    Ok(n)
}

/// Number of elements of a shape, checked for overflow.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::Overflow(format!("the element count of shape {shape:?}")))
    })
}

impl Tensor {
    /// A tensor from a shape and data whose length must match.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor> {
        let n = numel(&shape)?;
        if n != data.len() {
            return Err(Error::shape(format!(
                "shape {shape:?} holds {n} elements but the data has {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(data))
    }

    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::I64(data))
    }

    /// A 0-d tensor.
    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor {
            shape: vec![],
            data: TensorData::F32(vec![v]),
        }
    }

    /// A 1-d int64 tensor (shapes, axes).
    pub fn vec_i64(v: Vec<i64>) -> Tensor {
        Tensor {
            shape: vec![v.len()],
            data: TensorData::I64(v),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The f32 data, or an error naming `what` when the tensor holds another type.
    pub fn f32s(&self, what: &str) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            other => Err(Error::UnsupportedDtype {
                what: what.to_string(),
                dtype: other.dtype().name().to_string(),
            }),
        }
    }

    /// Integer data (int64/int32/int8/uint8) widened to i64: shapes, axes, pads, indices.
    pub fn to_i64s(&self, what: &str) -> Result<Vec<i64>> {
        match &self.data {
            TensorData::I64(v) => Ok(v.clone()),
            TensorData::I32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            TensorData::I8(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            TensorData::U8(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            other => Err(Error::UnsupportedDtype {
                what: format!("{what} (an integer tensor is needed)"),
                dtype: other.dtype().name().to_string(),
            }),
        }
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::new(shape, self.data)
    }
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Normalises Flatten's axis, which lies in `[-rank, rank]`.
pub(crate) fn flatten_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        return Err(Error::shape(format!(
            "Flatten axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Normalises a possibly negative axis against a rank (`-1` is the last),
/// with `extra` allowing the positions one past the end (Unsqueeze).
pub(crate) fn norm_axis(axis: i64, rank: usize, extra: usize) -> Result<usize> {
    let r = (rank + extra) as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(Error::shape(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}
