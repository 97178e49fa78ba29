//! A reader for PyTorch's legacy (pre-1.6, non-zip) checkpoint format, so the
//! pretrained weights convert to safetensors without PyTorch or Python.
//!
//! The file is five things back to back:
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`,
//! 2. a pickle of the protocol version (1001),
//! 3. a pickle of a dict of system information (`little_endian`, type sizes),
//! 4. the pickled object (here an `OrderedDict` state dict) whose tensors are
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
//!    calls and whose storages are persistent ids
//!    `('storage', torch.FloatStorage, key, location, numel, None)`,
//! 5. a pickle of the list of storage keys, then for each key in that order the
//!    storage itself: a little-endian u64 element count, then the raw elements.
//!
//! Only the pickle opcodes such files use are interpreted (protocol 2, with a
//! few later ones that cost nothing); anything else is an error naming the
//! opcode, never a guess. Calls other than the tensor/`OrderedDict` rebuilders
//! become opaque values: they cannot execute anything.

use crate::error::{Error, Result};

/// One floating-point tensor of the state dict, converted to f32 and made
/// contiguous (row-major in `shape`).
#[derive(Clone, Debug, PartialEq)]
pub struct PthTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The magic number that opens every legacy checkpoint, little-endian as
/// pickle's LONG1 stores it.
const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const PROTOCOL_VERSION: i128 = 1001;

fn bad(msg: impl Into<String>) -> Error {
    Error::Weights(format!("legacy PyTorch checkpoint: {}", msg.into()))
}

/// Reads every floating-point tensor of a legacy checkpoint's state dict, in the
/// dict's order. Integer tensors (BatchNorm's `num_batches_tracked`) are skipped:
/// inference never reads them.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<PthTensor>> {
    let mut cur = Cursor { bytes, pos: 0 };
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(bad(
            "this is the zip-based format of PyTorch >= 1.6, not the legacy one this reader handles",
        ));
    }
    match unpickle(&mut cur)? {
        Value::Int(MAGIC) => {}
        _ => return Err(bad("wrong magic number: not a legacy PyTorch checkpoint")),
    }
    match unpickle(&mut cur)? {
        Value::Int(PROTOCOL_VERSION) => {}
        v => return Err(bad(format!("unsupported protocol version {v:?}"))),
    }
    if let Value::Dict(info) = unpickle(&mut cur)? {
        let little = info
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == "little_endian"))
            .map(|(_, v)| v);
        if let Some(Value::Bool(false)) = little {
            return Err(bad("big-endian checkpoints are not supported"));
        }
    } else {
        return Err(bad("system information is not a dict"));
    }
    let root = unpickle(&mut cur)?;
    let keys = match unpickle(&mut cur)? {
        Value::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s),
                v => Err(bad(format!("storage key {v:?} is not a string"))),
            })
            .collect::<Result<Vec<_>>>()?,
        v => return Err(bad(format!("storage key list expected, found {v:?}"))),
    };

    // The raw storages follow, in the order of `keys`.
    let mut storages: Vec<(String, usize, &[u8])> = Vec::with_capacity(keys.len());
    for key in keys {
        let numel = u64::from_le_bytes(cur.array::<8>()?);
        let numel = usize::try_from(numel).map_err(|_| bad(format!("storage {key} is too large")))?;
        // The element size comes from the tensors that use it; take the bytes
        // lazily by remembering where the storage starts. All storages that a
        // tensor references carry their dtype in the persistent id.
        storages.push((key, numel, &cur.bytes[cur.pos..]));
        // Skip the data: we need the element size, found in the root object.
        let elem = storage_elem_size(&root, &storages.last().expect("just pushed").0)?;
        let len = numel.checked_mul(elem).ok_or_else(|| bad("storage size overflows"))?;
        cur.take(len)?;
    }

    let Value::Dict(items) = root else {
        return Err(bad("the checkpoint does not hold a state dict"));
    };
    let mut out = Vec::new();
    for (k, v) in items {
        let Value::Str(name) = k else {
            return Err(bad(format!("state-dict key {k:?} is not a string")));
        };
        let Value::Tensor(t) = v else {
            return Err(bad(format!("state-dict entry {name} is not a tensor")));
        };
        if !t.storage.dtype.is_float() {
            continue;
        }
        let (_, numel, data) = storages
            .iter()
            .find(|(key, _, _)| *key == t.storage.key)
            .ok_or_else(|| bad(format!("{name}: storage {} is not in the file", t.storage.key)))?;
        if *numel != t.storage.numel {
            return Err(bad(format!(
                "{name}: storage {} has {numel} elements, the tensor expects {}",
                t.storage.key, t.storage.numel
            )));
        }
        let data = gather(&name, &t, data)?;
        out.push(PthTensor {
            name,
            shape: t.shape,
            data,
        });
    }
    Ok(out)
}

/// The element size of storage `key`, from the first tensor that uses it.
fn storage_elem_size(root: &Value, key: &str) -> Result<usize> {
    if let Value::Dict(items) = root {
        for (_, v) in items {
            if let Value::Tensor(t) = v {
                if t.storage.key == key {
                    return Ok(t.storage.dtype.size());
                }
            }
        }
    }
    Err(bad(format!("storage {key} is used by no tensor of the state dict")))
}

/// Copies a (possibly strided) tensor out of its storage as contiguous f32.
fn gather(name: &str, t: &TensorRef, data: &[u8]) -> Result<Vec<f32>> {
    let dtype = t.storage.dtype;
    let elem = dtype.size();
    let numel: usize = t.shape.iter().product();
    let read = |i: usize| -> Result<f32> {
        if i >= t.storage.numel {
            return Err(bad(format!("{name}: element {i} lies outside its storage")));
        }
        let b = &data[i * elem..(i + 1) * elem];
        Ok(match dtype {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => unreachable!("only float tensors are gathered"),
        })
    };
    let mut out = Vec::with_capacity(numel);
    if numel == 0 {
        return Ok(out);
    }
    // Walk the indices in row-major order like an odometer.
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(read(off)?);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F32,
    F64,
    F16,
    Bf16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage(name: &str) -> Option<Dtype> {
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::Bf16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::Bf16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }
    fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::Bf16)
    }
}

#[derive(Clone, Debug, PartialEq)]
struct StorageRef {
    key: String,
    dtype: Dtype,
    numel: usize,
}

#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// The values a checkpoint pickle builds. Containers are plain values: the memo
/// keeps copies, which is exact for what checkpoints memoize and reuse (classes,
/// strings, tuples) and merely stale for a container mutated after memoization.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The result of a call this reader does not model.
    Opaque(String),
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "truncated: needed {n} bytes at offset {} of {}",
                    self.pos,
                    self.bytes.len()
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.array::<4>()?) as usize)
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("truncated: unterminated GLOBAL"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| bad("GLOBAL name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s.to_string())
    }
}

fn as_usize(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| bad(format!("{what} {i} is out of range"))),
        v => Err(bad(format!("{what} must be an integer, found {v:?}"))),
    }
}

fn as_usizes(v: &Value, what: &str) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| as_usize(i, what)).collect(),
        v => Err(bad(format!("{what} must be a tuple, found {v:?}"))),
    }
}

/// `persistent_load` for legacy storages.
fn persistent(pid: Value) -> Result<Value> {
    let Value::Tuple(t) = pid else {
        return Err(bad(format!("persistent id {pid:?} is not a tuple")));
    };
    match t.as_slice() {
        [Value::Str(kind), Value::Global(_, ty), Value::Str(key), _location, numel, view] if kind == "storage" => {
            if *view != Value::None {
                return Err(bad(format!("storage {key} is a view: not supported")));
            }
            let dtype = Dtype::from_storage(ty).ok_or_else(|| bad(format!("unknown storage type {ty}")))?;
            Ok(Value::Storage(StorageRef {
                key: key.clone(),
                dtype,
                numel: as_usize(numel, "storage size")?,
            }))
        }
        _ => Err(bad(format!("unsupported persistent id {t:?}"))),
    }
}

/// `find_class` + call: only the rebuilders a state dict needs do anything.
fn call(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = func else {
        return Ok(Value::Opaque(format!("call of {func:?}")));
    };
    let args = match args {
        Value::Tuple(a) => a,
        other => return Err(bad(format!("{module}.{name} called with {other:?}"))),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Storage(storage)), Some(offset), Some(size), Some(stride)) =
                (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                return Err(bad(format!("{name} with unexpected arguments {args:?}")));
            };
            let shape = as_usizes(size, "tensor size")?;
            let stride = as_usizes(stride, "tensor stride")?;
            if shape.len() != stride.len() {
                return Err(bad("tensor size and stride differ in rank"));
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: as_usize(offset, "storage offset")?,
                shape,
                stride,
            }))
        }
        // A pickled nn.Parameter wraps its tensor.
        ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            other => Err(bad(format!("_rebuild_parameter of {other:?}"))),
        },
        _ => Ok(Value::Opaque(format!("{module}.{name}"))),
    }
}

/// Runs one pickle from the cursor up to and including its STOP.
fn unpickle(cur: &mut Cursor) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: std::collections::HashMap<usize, Value> = std::collections::HashMap::new();

    fn pop(stack: &mut Vec<Value>) -> Result<Value> {
        stack.pop().ok_or_else(|| bad("pickle stack underflow"))
    }
    fn pop_mark(stack: &mut Vec<Value>, marks: &mut Vec<usize>) -> Result<Vec<Value>> {
        let m = marks.pop().ok_or_else(|| bad("pickle MARK missing"))?;
        if m > stack.len() {
            return Err(bad("pickle MARK beyond the stack"));
        }
        Ok(stack.split_off(m))
    }
    fn top(stack: &mut [Value]) -> Result<&mut Value> {
        stack.last_mut().ok_or_else(|| bad("pickle stack underflow"))
    }
    fn set_items(target: &mut Value, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(bad("SETITEMS with an odd number of values"));
        }
        match target {
            Value::Dict(d) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if let Some(slot) = d.iter_mut().find(|(key, _)| *key == k) {
                        slot.1 = v;
                    } else {
                        d.push((k, v));
                    }
                }
                Ok(())
            }
            // Items set on an object we do not model are dropped.
            Value::Opaque(_) => Ok(()),
            v => Err(bad(format!("SETITEM on {v:?}"))),
        }
    }
    fn append(target: &mut Value, items: Vec<Value>) -> Result<()> {
        match target {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            Value::Opaque(_) => Ok(()),
            v => Err(bad(format!("APPEND on {v:?}"))),
        }
    }

    loop {
        let op = cur.u8()?;
        match op {
            0x80 => {
                cur.u8()?; // PROTO
            }
            0x95 => {
                cur.take(8)?; // FRAME: a length hint only
            }
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(bad("pickle stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b']' => stack.push(Value::List(Vec::new())),
            b'a' => {
                let v = pop(&mut stack)?;
                append(top(&mut stack)?, vec![v])?;
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                append(top(&mut stack)?, items)?;
            }
            b'}' => stack.push(Value::Dict(Vec::new())),
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                set_items(top(&mut stack)?, vec![k, v])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                set_items(top(&mut stack)?, items)?;
            }
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(cur.array::<4>()?) as i128)),
            b'K' => stack.push(Value::Int(cur.u8()? as i128)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(cur.array::<2>()?) as i128)),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = cur.u8()? as usize;
                let b = cur.take(n)?;
                if n > 16 {
                    return Err(bad(format!("integer of {n} bytes is too large")));
                }
                let mut v: i128 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i128) << (8 * i);
                }
                if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                    v -= 1i128 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(cur.array::<8>()?))),
            b'X' | 0x8c => {
                let n = if op == b'X' { cur.u32()? } else { cur.u8()? as usize };
                let s = std::str::from_utf8(cur.take(n)?).map_err(|_| bad("string is not UTF-8"))?;
                stack.push(Value::Str(s.to_string()));
            }
            b'U' | b'T' | b'C' | b'B' => {
                let n = match op {
                    b'U' | b'C' => cur.u8()? as usize,
                    _ => cur.u32()?,
                };
                stack.push(Value::Bytes(cur.take(n)?.to_vec()));
            }
            b'c' => {
                let module = cur.line()?;
                let name = cur.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err(bad("STACK_GLOBAL needs two strings")),
                }
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(call(func, args)?);
            }
            b'b' => {
                // BUILD sets state (e.g. OrderedDict._metadata): not needed.
                pop(&mut stack)?;
                top(&mut stack)?;
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'q' | b'r' | 0x94 => {
                let idx = match op {
                    b'q' => cur.u8()? as usize,
                    b'r' => cur.u32()?,
                    _ => memo.len(),
                };
                let v = top(&mut stack)?.clone();
                memo.insert(idx, v);
            }
            b'h' | b'j' => {
                let idx = if op == b'h' { cur.u8()? as usize } else { cur.u32()? };
                let v = memo.get(&idx).ok_or_else(|| bad(format!("memo {idx} is empty")))?;
                stack.push(v.clone());
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack, &mut marks)?;
            }
            b'2' => {
                let v = top(&mut stack)?.clone();
                stack.push(v);
            }
            _ => {
                return Err(bad(format!(
                    "unsupported pickle opcode 0x{op:02x} at offset {}",
                    cur.pos - 1
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made legacy checkpoint: `{'w': FloatTensor [2, 3] (transposed view
    /// of a 3x2 storage), 'n': LongTensor []}`.
    fn tiny_checkpoint() -> Vec<u8> {
        let mut f = Vec::new();
        // magic: LONG1 of 10 bytes
        f.extend([0x80, 2, 0x8a, 10]);
        f.extend(&MAGIC.to_le_bytes()[..10]);
        f.push(b'.');
        f.extend([0x80, 2, b'M']);
        f.extend(1001u16.to_le_bytes());
        f.push(b'.');
        f.extend([0x80, 2, b'}', b'.']);
        // state dict
        let s = |f: &mut Vec<u8>, t: &str| {
            f.push(b'X');
            f.extend((t.len() as u32).to_le_bytes());
            f.extend(t.as_bytes());
        };
        f.extend([0x80, 2]);
        f.extend(b"ccollections\nOrderedDict\nq\x00)R(");
        // 'w'
        s(&mut f, "w");
        f.extend(b"ctorch._utils\n_rebuild_tensor_v2\nq\x01((");
        s(&mut f, "storage");
        f.extend(b"ctorch\nFloatStorage\n");
        s(&mut f, "k0");
        s(&mut f, "cpu");
        f.extend([b'K', 6, b'N', b't', b'Q']);
        f.extend([
            b'K', 0, b'K', 2, b'K', 3, 0x86, b'K', 1, b'K', 2, 0x86, 0x89, b'h', 0, b')', b'R', b't', b'R',
        ]);
        // 'n'
        s(&mut f, "n");
        f.extend([b'h', 1, b'(', b'(']);
        s(&mut f, "storage");
        f.extend(b"ctorch\nLongStorage\n");
        s(&mut f, "k1");
        s(&mut f, "cpu");
        f.extend([
            b'K', 1, b'N', b't', b'Q', b'K', 0, b')', b')', 0x89, b'h', 0, b')', b'R', b't', b'R',
        ]);
        f.extend([b'u', b'.']);
        // keys
        f.extend([0x80, 2, b']', b'(']);
        s(&mut f, "k0");
        s(&mut f, "k1");
        f.extend([b'e', b'.']);
        f.extend(6u64.to_le_bytes());
        for v in [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0] {
            f.extend(v.to_le_bytes());
        }
        f.extend(1u64.to_le_bytes());
        f.extend(7i64.to_le_bytes());
        f
    }

    #[test]
    fn reads_strided_float_tensor_and_skips_integers() {
        let t = read_state_dict(&tiny_checkpoint()).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "w");
        assert_eq!(t[0].shape, vec![2, 3]);
        // storage 3x2 row-major read with strides (1, 2): the transpose.
        assert_eq!(t[0].data, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let f = tiny_checkpoint();
        for cut in [0, 1, 5, 20, 100, f.len() - 30, f.len() - 1] {
            let e = read_state_dict(&f[..cut]).unwrap_err();
            assert!(matches!(e, Error::Weights(_)), "cut {cut}: {e}");
        }
    }

    #[test]
    fn foreign_bytes_are_rejected() {
        assert!(read_state_dict(b"PK\x03\x04 zip").is_err());
        assert!(read_state_dict(b"\x89PNG\r\n\x1a\n").is_err());
        assert!(read_state_dict(&[0x80, 2, b'K', 1, b'.']).is_err());
    }
}
