//! ONNX import: `ModelProto` bytes (decoded by `prost` from the message
//! declarations in [`proto`]) to a [`Graph`] with typed ops.
//!
//! Accepted: the default domain at opsets 11..=21 (configurable, see
//! [`ImportOptions::opsets`]), initializers inline, in `raw_data` or in
//! external files next to the model, sparse initializers (densified here; the
//! weight analysis then finds their zeros), and the op set of
//! [`SUPPORTED_OPS`]. Everything else is a clear [`Error`], never a panic.

mod ops;
pub mod proto;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::path::{Component, Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};
use crate::graph::tensor::numel;
use crate::graph::{DType, Dim, Graph, GraphInput, Node, PrepareOptions, Tensor, TensorData};
use proto::{data_type as dt, ModelProto, TensorProto};

pub use ops::SUPPORTED_OPS;

/// How a model is imported.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Default-domain opset versions accepted (11..=21 unless changed).
    pub opsets: RangeInclusive<i64>,
    /// Fixed shapes for inputs with dynamic dimensions (`"N"`, `"batch"`).
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Where external data files are looked up (the model's directory for
    /// [`load_file`]). `None` for bytes without a file: external data is then an error.
    pub base_dir: Option<PathBuf>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            opsets: 11..=21,
            input_shapes: HashMap::new(),
            base_dir: None,
        }
    }
}

impl ImportOptions {
    /// Gives input `name` a fixed shape.
    pub fn input_shape(mut self, name: &str, shape: impl Into<Vec<usize>>) -> Self {
        self.input_shapes.insert(name.to_string(), shape.into());
        self
    }

    /// Accepts another range of default-domain opsets.
    pub fn opsets(mut self, range: RangeInclusive<i64>) -> Self {
        self.opsets = range;
        self
    }

    /// Directory that external data paths are relative to.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }
}

/// Decodes model bytes into an unprepared graph (ops typed, shapes not yet
/// inferred): for callers that bind some inputs first ([`Graph::bind_input`]).
pub fn parse(bytes: &[u8], opts: &ImportOptions) -> Result<Graph> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        Error::OnnxDecode(format!(
            "protobuf does not decode ({e}); the file is truncated or not ONNX"
        ))
    })?;
    if model.ir_version <= 0 {
        return Err(Error::OnnxDecode("no ir_version: not an ONNX ModelProto".into()));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::OnnxDecode("the model has no graph (truncated?)".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| Error::OnnxDecode("the model imports no default-domain opset (truncated?)".into()))?;
    if !opts.opsets.contains(&opset) {
        return Err(Error::OpsetOutOfRange {
            domain: "ai.onnx".into(),
            version: opset,
            min: *opts.opsets.start(),
            max: *opts.opsets.end(),
        });
    }
    let base = opts.base_dir.as_deref();

    let mut constants = BTreeMap::new();
    for t in &graph.initializer {
        if t.name.is_empty() {
            return Err(Error::OnnxDecode("an initializer has no name".into()));
        }
        constants.insert(t.name.clone(), tensor_from_proto(t, base)?);
    }
    for st in &graph.sparse_initializer {
        let (name, t) = sparse_to_dense(st, base)?;
        constants.insert(name, t);
    }

    let mut inputs = Vec::new();
    for vi in &graph.input {
        if constants.contains_key(&vi.name) {
            continue; // IR < 4 lists initializers as inputs too
        }
        let tt = vi
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or_else(|| Error::UnsupportedDtype {
                what: format!("graph input '{}'", vi.name),
                dtype: "a non-tensor type (sequence, map or optional)".into(),
            })?;
        let dtype = dtype_of(tt.elem_type, &format!("graph input '{}'", vi.name))?;
        let dims = tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(proto::DimValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                    Some(proto::DimValue::DimParam(p)) if !p.is_empty() => Dim::Param(p.clone()),
                    _ => Dim::Param("?".into()),
                })
                .collect()
        });
        inputs.push(GraphInput {
            name: vi.name.clone(),
            dtype,
            dims,
        });
    }

    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut names = HashSet::new();
    for (index, np) in graph.node.iter().enumerate() {
        let mut name = if np.name.is_empty() {
            format!("{}_{index}", np.op_type)
        } else {
            np.name.clone()
        };
        while !names.insert(name.clone()) {
            name = format!("{name}_{index}");
        }
        if !(np.domain.is_empty() || np.domain == "ai.onnx") {
            return Err(Error::UnsupportedOp {
                op: np.op_type.clone(),
                domain: np.domain.clone(),
                node: name,
                supported: SUPPORTED_OPS.join(", "),
            });
        }
        if np.op_type == "Constant" {
            let out = np
                .output
                .first()
                .filter(|o| !o.is_empty())
                .ok_or_else(|| bad(&name, "Constant", "has no output"))?;
            constants.insert(out.clone(), ops::constant_value(np, &name, base)?);
            continue;
        }
        let op = ops::parse_op(np, &name, opset, base)?;
        nodes.push(Node {
            name,
            op,
            inputs: np.input.clone(),
            outputs: np.output.clone(),
            epilogue: Default::default(),
        });
    }

    Ok(Graph {
        name: graph.name.clone(),
        opset,
        inputs,
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        constants,
        nodes,
        values: HashMap::new(),
    })
}

/// Decodes and prepares a model: shapes inferred, shape sub-graphs folded.
pub fn load(bytes: &[u8], opts: &ImportOptions) -> Result<Graph> {
    let mut g = parse(bytes, opts)?;
    g.prepare(&PrepareOptions {
        input_shapes: opts.input_shapes.clone(),
    })?;
    Ok(g)
}

/// [`load`] of a file; external data is looked up next to it.
pub fn load_file(path: impl AsRef<Path>, opts: &ImportOptions) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut opts = opts.clone();
    if opts.base_dir.is_none() {
        opts.base_dir = Some(path.parent().unwrap_or(Path::new(".")).to_path_buf());
    }
    load(&bytes, &opts)
}

/// Decodes a serialized `TensorProto` (the `input_0.pb` files of ONNX's test
/// data): its name and value.
pub fn decode_tensor(bytes: &[u8], base_dir: Option<&Path>) -> Result<(String, Tensor)> {
    let t = TensorProto::decode(bytes).map_err(|e| Error::OnnxDecode(format!("TensorProto does not decode: {e}")))?;
    Ok((t.name.clone(), tensor_from_proto(&t, base_dir)?))
}

fn bad(node: &str, op: &str, detail: impl Into<String>) -> Error {
    Error::BadNode {
        node: node.to_string(),
        op: op.to_string(),
        detail: detail.into(),
    }
}

/// The graph's element type of an ONNX data type number.
pub fn dtype_of(t: i32, what: &str) -> Result<DType> {
    Ok(match t {
        dt::FLOAT => DType::F32,
        dt::DOUBLE => DType::F64,
        dt::INT64 => DType::I64,
        dt::INT32 => DType::I32,
        dt::INT8 => DType::I8,
        dt::UINT8 => DType::U8,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::F16,
        other => {
            return Err(Error::UnsupportedDtype {
                what: what.to_string(),
                dtype: dt::name(other),
            })
        }
    })
}

/// A `TensorProto` as a tensor: inline typed fields, `raw_data`
/// (little-endian) or an external file relative to `base_dir`.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    let what = format!("tensor '{}'", t.name);
    let dtype = dtype_of(t.data_type, &what)?;
    if t.segment.is_some() {
        return Err(Error::OnnxDecode(format!(
            "{what}: segmented tensors are not supported"
        )));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::OnnxDecode(format!("{what}: negative dimension {d}"))))
        .collect::<Result<Vec<_>>>()?;
    let n = numel(&shape)?;
    let external;
    let raw: Option<&[u8]> = if t.data_location == proto::DATA_LOCATION_EXTERNAL {
        external = read_external(t, base_dir)?;
        Some(&external)
    } else if !t.raw_data.is_empty() {
        Some(&t.raw_data)
    } else {
        None
    };
    let data = match raw {
        Some(raw) => decode_raw(raw, dtype, n, &what)?,
        None => match dtype {
            DType::F32 => TensorData::F32(t.float_data.clone()),
            DType::F64 => TensorData::F64(t.double_data.clone()),
            DType::I64 => TensorData::I64(t.int64_data.clone()),
            DType::I32 => TensorData::I32(t.int32_data.clone()),
            DType::I8 => TensorData::I8(t.int32_data.iter().map(|&v| v as i8).collect()),
            DType::U8 => TensorData::U8(t.int32_data.iter().map(|&v| v as u8).collect()),
            DType::Bool => TensorData::Bool(t.int32_data.iter().map(|&v| v != 0).collect()),
            // float16 travels as its bit pattern in int32_data.
            DType::F16 => TensorData::F16(t.int32_data.iter().map(|&v| half::f16::from_bits(v as u16)).collect()),
        },
    };
    if data.len() != n {
        return Err(Error::OnnxDecode(format!(
            "{what}: shape {shape:?} holds {n} elements but {} are stored",
            data.len()
        )));
    }
    Tensor::new(shape, data)
}

fn decode_raw(raw: &[u8], dtype: DType, n: usize, what: &str) -> Result<TensorData> {
    let width = match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::F16 => 2,
        DType::I8 | DType::U8 | DType::Bool => 1,
    };
    if raw.len() != n.saturating_mul(width) {
        return Err(Error::OnnxDecode(format!(
            "{what}: raw data has {} bytes, the shape needs {n} x {width}",
            raw.len()
        )));
    }
    macro_rules! le {
        ($t:ty, $w:expr) => {
            raw.chunks_exact($w)
                .map(|c| {
                    let mut b = [0u8; $w];
                    b.copy_from_slice(c);
                    <$t>::from_le_bytes(b)
                })
                .collect()
        };
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(le!(f32, 4)),
        DType::F64 => TensorData::F64(le!(f64, 8)),
        DType::I64 => TensorData::I64(le!(i64, 8)),
        DType::I32 => TensorData::I32(le!(i32, 4)),
        DType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
        DType::U8 => TensorData::U8(raw.to_vec()),
        DType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DType::F16 => TensorData::F16(
            raw.chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
    })
}

fn read_external(t: &TensorProto, base_dir: Option<&Path>) -> Result<Vec<u8>> {
    let key = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.as_str());
    let location = key("location").unwrap_or("");
    let err = |reason: String| Error::ExternalData {
        tensor: t.name.clone(),
        path: location.to_string(),
        reason,
    };
    if location.is_empty() {
        return Err(err("no 'location' key".into()));
    }
    let rel = Path::new(location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(err(
            "the location must be a relative path inside the model's directory".into()
        ));
    }
    let base = base_dir
        .ok_or_else(|| err("the model was given as bytes; load it from its file so its directory is known".into()))?;
    let parse_num = |k: &str| -> Result<Option<u64>> {
        key(k)
            .map(|v| v.parse::<u64>().map_err(|_| err(format!("'{k}' is not a number: {v}"))))
            .transpose()
    };
    let offset = parse_num("offset")?.unwrap_or(0);
    let length = parse_num("length")?;
    let path = base.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| err(format!("{e} (looked for {})", path.display())))?;
    let start = usize::try_from(offset).map_err(|_| err("offset too large".into()))?;
    let end = match length {
        Some(l) => start
            .checked_add(usize::try_from(l).map_err(|_| err("length too large".into()))?)
            .ok_or_else(|| err("offset + length overflows".into()))?,
        None => bytes.len(),
    };
    if start > end || end > bytes.len() {
        return Err(err(format!(
            "bytes {start}..{end} requested but the file has {}",
            bytes.len()
        )));
    }
    Ok(bytes[start..end].to_vec())
}

/// A `SparseTensorProto` as a dense tensor (zeros where no value is stored).
pub fn sparse_to_dense(st: &proto::SparseTensorProto, base_dir: Option<&Path>) -> Result<(String, Tensor)> {
    let values = st
        .values
        .as_ref()
        .ok_or_else(|| Error::OnnxDecode("a sparse tensor has no values".into()))?;
    let name = values.name.clone();
    let what = format!("sparse tensor '{name}'");
    let v = tensor_from_proto(values, base_dir)?;
    let shape = st
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::OnnxDecode(format!("{what}: negative dimension"))))
        .collect::<Result<Vec<_>>>()?;
    let n = numel(&shape)?;
    let nnz = v.len();
    let idx = match &st.indices {
        Some(i) => tensor_from_proto(i, base_dir)?.to_i64s(&what)?,
        None => Vec::new(),
    };
    let strides = crate::graph::tensor::strides(&shape);
    let linear: Vec<usize> = if idx.len() == nnz {
        idx.iter().map(|&i| i as usize).collect()
    } else if idx.len() == nnz * shape.len() {
        idx.chunks_exact(shape.len().max(1))
            .map(|c| c.iter().zip(&strides).map(|(&i, &s)| i as usize * s).sum())
            .collect()
    } else {
        return Err(Error::OnnxDecode(format!(
            "{what}: {} indices for {nnz} values",
            idx.len()
        )));
    };
    if let Some(&bad) = linear.iter().find(|&&i| i >= n) {
        return Err(Error::OnnxDecode(format!("{what}: index {bad} outside {shape:?}")));
    }
    let data = match v.data() {
        TensorData::F32(vals) => {
            let mut d = vec![0f32; n];
            for (&i, &x) in linear.iter().zip(vals) {
                d[i] = x;
            }
            TensorData::F32(d)
        }
        TensorData::I64(vals) => {
            let mut d = vec![0i64; n];
            for (&i, &x) in linear.iter().zip(vals) {
                d[i] = x;
            }
            TensorData::I64(d)
        }
        other => {
            return Err(Error::UnsupportedDtype {
                what,
                dtype: other.dtype().name().into(),
            })
        }
    };
    Ok((name, Tensor::new(shape, data)?))
}
