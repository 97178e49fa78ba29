//! The wasm-bindgen adapter: converts JS values to Rust types and back, holds no
//! logic of its own. Every fallible call rejects with an `Error` whose message
//! says what went wrong; options are plain objects whose unknown keys, wrong
//! types and missing required fields are errors (never silently a default).
//! Calls on one `Model` (or `Finetuner`) run one at a time in call order:
//! a call made while another runs waits for it (see [`Queue`]).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::gpu::Context;
use crate::model::{now_ms, Criterion, Dispatching, GpuLite0, LayerReport, PruneSpec};
use crate::ops::SparseOperator;
use crate::sparse::{Matrix, Pattern};

fn js_err(e: crate::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn err(msg: impl AsRef<str>) -> JsValue {
    JsError::new(msg.as_ref()).into()
}

fn set(obj: &Object, key: &str, v: impl Into<JsValue>) {
    // Setting a property on a plain new Object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &v.into());
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** What `Runtime.adapterInfo` reports about the WebGPU adapter. */
export interface AdapterInfo { name: string; backend: string; deviceType: string; driver: string; shaderF16: boolean; timestampQuery: boolean; maxStorageBindingSize: number; }
/** RGBA pixels: an `ImageData`, or anything with its three fields (`data.length === width * height * 4`). */
export interface RgbaImage { readonly width: number; readonly height: number; readonly data: Uint8ClampedArray | Uint8Array; }
/** A block pattern, `rows x cols` weights kept or pruned together. */
export type BlockPattern = `block:${number}x${number}`;
/** An N:M pattern: `n` kept in every `m` consecutive weights along a row. */
export type NmPattern = `${number}:${number}`;
/**
 * A pattern and its sparsity (the fraction of weights pruned, in [0, 1)).
 * `sparsity` is required for "unstructured" and block patterns, fixed by an
 * N:M pattern (leave it out, or give exactly 1 - n/m), and 0 or absent for "dense".
 */
export type PatternOptions =
  | { pattern: "dense"; sparsity?: 0 }
  | { pattern: "unstructured" | BlockPattern; sparsity: number }
  | { pattern: NmPattern; sparsity?: number };
/** `Runtime.sparseMatrix`'s options. */
export type SparseMatrixOptions = PatternOptions;
/** `Model.prune`'s options. */
export type PruneOptions = PatternOptions & {
  /** "sparse" (default): every pruned layer runs its sparse kernel; "fastest": dense or sparse per layer, by measurement (needs timestamp queries). */
  dispatch?: "sparse" | "fastest";
  /** "magnitude" (default) or "activation" (|w| x input-channel norm; needs `calibrate` first). */
  criterion?: "magnitude" | "activation";
  /** Correct each pruned layer's bias for the mean of what was pruned (needs `calibrate`). */
  biasCorrection?: boolean;
  /** Restore each channel's mean and spread layer by layer (needs `calibrate`). */
  renorm?: boolean;
};
/** `Model.classify`'s options. */
export interface ClassifyOptions {
  /** Run the unpruned model instead of the pruned one (default false). */
  dense?: boolean;
  /**
   * true (default): crop the centre square of side min(width, height) * 224 / 256, as the
   * checkpoint was evaluated, and resize it to 224x224 (bicubic). false: the image is the
   * network's view already; it is resized to 224x224 whole (not cropped; a non-square
   * image is stretched), and a 224x224 image is used pixel for pixel.
   */
  crop?: boolean;
}
/** `Model.preprocess`'s and `Model.referenceLogits`' options. */
export interface PreprocessOptions { crop?: boolean; }
/** One class of a top-5. */
export interface Prediction { class: number; name: string; prob: number; }
/** What `classify` resolves to. */
export interface Classification {
  top5: Prediction[];
  /** The 1000 ImageNet logits. */
  logits: Float32Array;
  /** Wall-clock ms from the call to the result: waiting for earlier calls, preprocessing, the forward pass. */
  ms: number;
  /** Of `ms`, the wait for calls on this model made before this one. */
  queuedMs: number;
  /** Of `ms`, the forward pass alone: input upload, GPU work, logits read-back. */
  forwardMs: number;
}
/** A layer that `prune` prunes: its `[rows, cols]` = `[cout, cin]` weight matrix. */
export interface PrunableLayer { index: number; name: string; rows: number; cols: number; pixels: number; }
/** One pruned layer, as `prune` and `info` report it. */
export interface LayerReport { name: string; rows: number; cols: number; pixels: number; pattern: string; target: number; achieved: number; denseBytes: number; sparseBytes: number; kernel: string; }
/** What `prune` resolves to. */
export interface PruneReport {
  layers: LayerReport[];
  /** Wall-clock ms from the call to the result (including `queuedMs`). */
  ms: number;
  /** Of `ms`, the wait for calls on this model made before this one. */
  queuedMs: number;
  /** Of `ms`, the prune itself (GPU pruning, compaction, the kernels' measurements). */
  pruneMs: number;
}
/** What a sparse file holds (`Model.info`). */
export interface SparseFileInfo { pattern: string; sparsity: number; criterion: string; sparseTrained: string | null; layers: LayerReport[]; }
/** The current mask of a prunable layer, row-major, 1 = kept weight. */
export interface LayerMask { index: number; name: string; rows: number; cols: number; kept: number; data: Uint8Array; }
/** `Finetuner.create`'s options; `pattern`/`sparsity` as for `prune`, `steps` required. */
export type FinetuneOptions = PatternOptions & {
  steps: number;
  /** Images per step (default 8). */
  batch?: number;
  /** Square training resolution (default 224, at least 32). */
  resolution?: number;
  /** Peak learning rate (default 3e-4). */
  lr?: number;
  /** Cubic sparsity schedule instead of fixed masks (default false; not for N:M). */
  gradual?: boolean;
  /** Weight of feature matching at the block outputs (default 1). */
  featureWeight?: number;
  /** Distillation temperature (default 1). */
  temperature?: number;
  /** Seed of the augmentation and batch order (default 0). */
  seed?: number;
};
/** `Model.layerTimes`' options. */
export interface LayerTimesOptions { /** Timed runs per layer (default 3). */ runs?: number; }
/** One layer's GPU time (`Model.layerTimes`). */
export interface LayerTime { name: string; ms: number; source: "gpu-timestamps" | "wall-clock"; }
/** One fine-tuning measurement. */
export interface StepMetrics { step: number; kd: number; feature: number; agreement: number; }
"#;

/// An options object: `undefined`/`null` is an empty one; anything else that
/// is not a plain object, and any key not in `allowed`, is an error naming it.
struct Opts {
    obj: JsValue,
    what: &'static str,
}

fn type_name(v: &JsValue) -> String {
    if v.is_null() {
        "null".into()
    } else if Array::is_array(v) {
        "an array".into()
    } else {
        v.js_typeof().as_string().unwrap_or_default()
    }
}

impl Opts {
    fn new(v: &JsValue, what: &'static str, allowed: &[&str], example: &str) -> Result<Opts, JsValue> {
        if v.is_undefined() || v.is_null() {
            return Ok(Opts {
                obj: Object::new().into(),
                what,
            });
        }
        if !v.is_object() || Array::is_array(v) {
            let shown = v.as_bool().map_or_else(|| type_name(v), |b| format!("the boolean {b}"));
            return Err(err(format!("{what} is an options object, e.g. {example}; got {shown}")));
        }
        for k in Object::keys(&Object::from(v.clone())).iter() {
            let k = k.as_string().unwrap_or_default();
            if !allowed.contains(&k.as_str()) {
                return Err(err(format!(
                    "{what}: unknown option \"{k}\" (the options are {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Opts { obj: v.clone(), what })
    }

    /// The value of `k`; `undefined` when absent (a `null` value counts as absent).
    fn get(&self, k: &str) -> Option<JsValue> {
        let v = Reflect::get(&self.obj, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        (!v.is_undefined() && !v.is_null()).then_some(v)
    }

    fn typed<T>(&self, k: &str, ty: &str, f: impl Fn(&JsValue) -> Option<T>) -> Result<Option<T>, JsValue> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => f(&v).map(Some).ok_or_else(|| {
                err(format!(
                    "{}.{k} must be {ty}, got {}",
                    self.what,
                    v.as_string()
                        .map_or_else(|| type_name(&v), |s| format!("the string \"{s}\""))
                ))
            }),
        }
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, JsValue> {
        self.typed(k, "a boolean", |v| v.as_bool())
    }

    fn num(&self, k: &str) -> Result<Option<f64>, JsValue> {
        self.typed(k, "a finite number", |v| v.as_f64().filter(|x| x.is_finite()))
    }

    fn whole(&self, k: &str) -> Result<Option<usize>, JsValue> {
        self.typed(k, "a whole number", |v| {
            v.as_f64()
                .filter(|x| x.is_finite() && x.fract() == 0.0 && *x >= 0.0)
                .map(|x| x as usize)
        })
    }

    fn string(&self, k: &str) -> Result<Option<String>, JsValue> {
        self.typed(k, "a string", |v| v.as_string())
    }

    /// `pattern` (required) and `sparsity`: required for unstructured and
    /// block patterns, fixed by N:M (absent or exactly `1 - n/m`), absent or 0
    /// for dense. Returns the sparsity the core takes (N:M: its own).
    fn pattern_sparsity(&self) -> Result<(Pattern, f64), JsValue> {
        let what = self.what;
        let pattern: Pattern = self
            .string("pattern")?
            .ok_or_else(|| {
                err(format!(
                    "{what}.pattern is required: \"dense\", \"unstructured\", \"block:RxC\" (e.g. \"block:16x16\") or \"N:M\" (e.g. \"2:4\")"
                ))
            })?
            .parse()
            .map_err(js_err)?;
        let sparsity = self.num("sparsity")?;
        match pattern {
            Pattern::Dense => match sparsity {
                None | Some(0.0) => Ok((pattern, 0.0)),
                Some(s) => Err(err(format!(
                    "{what}: pattern \"dense\" prunes nothing, but sparsity is {s}: give a sparse pattern or leave sparsity out"
                ))),
            },
            Pattern::NM { n, m } => {
                let own = 1.0 - n as f64 / m as f64;
                match sparsity {
                    Some(s) if (s - own).abs() > 1e-9 => Err(err(format!(
                        "{what}: pattern \"{pattern}\" fixes the sparsity at {own}, but sparsity is {s}: leave sparsity out"
                    ))),
                    _ => Ok((pattern, own)),
                }
            }
            Pattern::Unstructured | Pattern::Block { .. } => sparsity.map(|s| (pattern, s)).ok_or_else(|| {
                err(format!(
                    "{what}.sparsity is required for \"{pattern}\": the fraction of weights to prune, in [0, 1), e.g. {{ pattern: \"{pattern}\", sparsity: 0.9 }}"
                ))
            }),
        }
    }
}

/// What a page without WebGPU is told, and what to do about it.
const NO_WEBGPU: &str = "WebGPU is not available here: this page has no navigator.gpu. Open it in a browser \
    with WebGPU switched on: Chrome or Edge 113+ (on Linux: chrome://flags/#enable-unsafe-webgpu and \
    chrome://flags/#enable-vulkan), Safari 26+, Firefox 141+ on Windows (elsewhere: dom.webgpu.enabled in about:config). \
    WebGPU needs a secure context: https, or http://localhost. Under Node, a WebGPU implementation (npm \
    `webgpu`) has to be put on navigator.gpu (see the package README)";
const NOT_WINDOW: &str = "navigator.gpu exists, but this global object is neither a window nor a dedicated \
    worker, the only places where the WebGPU backend looks for it: run on the page's main thread or in a \
    dedicated worker (a shared or service worker will not do); under Node, define globalThis.Window (see \
    the package README)";
const NO_ADAPTER: &str = "WebGPU is present, but navigator.gpu.requestAdapter() gave no adapter: the \
    browser has WebGPU switched off for this GPU or driver (blocklisted), or there is no GPU. chrome://gpu \
    says why under \"WebGPU\"; update the GPU driver, or enable chrome://flags/#enable-unsafe-webgpu (on \
    Linux also chrome://flags/#enable-vulkan)";

/// Says why WebGPU cannot be reached from this global, before wgpu tries
/// (whose own message lists the native backends that are not compiled in).
fn webgpu_missing() -> Option<&'static str> {
    let global = js_sys::global();
    let get = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let navigator = get(&global, "navigator");
    let gpu = if navigator.is_object() {
        get(&navigator, "gpu")
    } else {
        JsValue::UNDEFINED
    };
    if gpu.is_undefined() || gpu.is_null() {
        return Some(NO_WEBGPU);
    }
    let has = |k: &str| Reflect::has(&global, &JsValue::from_str(k)).unwrap_or(false);
    if !has("Window") && !has("WorkerGlobalScope") {
        return Some(NOT_WINDOW);
    }
    None
}

/// Runs async calls one at a time, in call order: each waits until every call
/// queued before it has settled (resolved or rejected), so `Promise.all` over
/// many calls works and an error does not stop the calls after it.
#[derive(Clone)]
struct Queue {
    tail: Rc<RefCell<Promise>>,
}

impl Queue {
    fn new() -> Self {
        Queue {
            tail: Rc::new(RefCell::new(Promise::resolve(&JsValue::UNDEFINED))),
        }
    }

    /// `job` gets the ms it waited in the queue.
    fn run<F, Fut>(&self, job: F) -> Promise
    where
        F: FnOnce(f64) -> Fut + 'static,
        Fut: Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        let before = self.tail.borrow().clone();
        let called = now_ms();
        let p = future_to_promise(async move {
            let _ = JsFuture::from(before).await;
            job(now_ms() - called).await
        });
        let settled = p.clone();
        *self.tail.borrow_mut() = future_to_promise(async move {
            let _ = JsFuture::from(settled).await;
            Ok(JsValue::UNDEFINED)
        });
        p
    }
}

/// The GPU runtime: one WebGPU device.
#[wasm_bindgen]
pub struct Runtime {
    ctx: Rc<Context>,
}

#[wasm_bindgen]
impl Runtime {
    /// Requests a WebGPU adapter and device. Rejects with an Error saying
    /// what is missing (no `navigator.gpu`, no adapter) and what to enable.
    pub async fn create() -> Result<Runtime, JsValue> {
        if let Some(why) = webgpu_missing() {
            return Err(err(why));
        }
        let ctx = Context::new().await.map_err(|e| match e {
            crate::Error::NoAdapter(_) => err(NO_ADAPTER),
            e => js_err(e),
        })?;
        Ok(Runtime { ctx: Rc::new(ctx) })
    }

    /// `{ name, backend, deviceType, driver, shaderF16, timestampQuery, maxStorageBindingSize }`.
    #[wasm_bindgen(getter, js_name = adapterInfo, unchecked_return_type = "AdapterInfo")]
    pub fn adapter_info(&self) -> Object {
        let s = self.ctx.summary();
        let o = Object::new();
        set(&o, "name", s.info.name.as_str());
        set(&o, "backend", format!("{:?}", s.info.backend));
        set(&o, "deviceType", format!("{:?}", s.info.device_type));
        set(&o, "driver", format!("{} {}", s.info.driver, s.info.driver_info));
        set(&o, "shaderF16", s.features.shader_f16);
        set(&o, "timestampQuery", s.features.timestamp_query);
        set(
            &o,
            "maxStorageBindingSize",
            s.limits.max_storage_buffer_binding_size as f64,
        );
        o
    }

    /// Prunes a row-major `rows x cols` matrix to `options.pattern`
    /// (`"dense"`, `"unstructured"`, `"block:16x16"`, `"2:4"`, ...) at
    /// `options.sparsity` (required unless the pattern fixes it) and uploads
    /// it in that pattern's format.
    #[wasm_bindgen(js_name = sparseMatrix)]
    pub fn sparse_matrix(
        &self,
        data: Vec<f32>,
        rows: usize,
        cols: usize,
        #[wasm_bindgen(unchecked_param_type = "SparseMatrixOptions")] options: JsValue,
    ) -> Result<SparseMatrix, JsValue> {
        let o = Opts::new(
            &options,
            "sparseMatrix options",
            &["pattern", "sparsity"],
            "{ pattern: \"2:4\" }",
        )?;
        let (pattern, sparsity) = o.pattern_sparsity()?;
        let w = Matrix::new(rows, cols, data).map_err(js_err)?;
        let op = SparseOperator::new(&self.ctx, &w, pattern, sparsity).map_err(js_err)?;
        Ok(SparseMatrix {
            op: Rc::new(op),
            ctx: self.ctx.clone(),
        })
    }
}

/// A pruned matrix resident on the GPU.
#[wasm_bindgen]
pub struct SparseMatrix {
    op: Rc<SparseOperator>,
    ctx: Rc<Context>,
}

#[wasm_bindgen]
impl SparseMatrix {
    #[wasm_bindgen(getter)]
    pub fn rows(&self) -> usize {
        self.op.rows()
    }
    #[wasm_bindgen(getter)]
    pub fn cols(&self) -> usize {
        self.op.cols()
    }
    /// Bytes of the compressed format.
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> usize {
        self.op.bytes
    }
    /// Bytes of the same matrix stored dense.
    #[wasm_bindgen(getter, js_name = denseBytes)]
    pub fn dense_bytes(&self) -> usize {
        self.op.dense_bytes
    }
    #[wasm_bindgen(getter)]
    pub fn pattern(&self) -> String {
        self.op.report.pattern.to_string()
    }
    /// The achieved sparsity (fraction of pruned weights).
    #[wasm_bindgen(getter)]
    pub fn sparsity(&self) -> f64 {
        self.op.report.achieved
    }

    /// The pruned matrix, row-major, read back from its GPU format.
    #[wasm_bindgen(js_name = toDense, unchecked_return_type = "Promise<Float32Array>")]
    pub fn to_dense(&self) -> Promise {
        let (op, ctx) = (self.op.clone(), self.ctx.clone());
        future_to_promise(async move {
            let d = op.to_dense(&ctx).await.map_err(js_err)?;
            Ok(Float32Array::from(d.data()).into())
        })
    }

    /// `W X` for a row-major `cols x n` X; resolves to a `rows x n` Float32Array.
    #[wasm_bindgen(unchecked_return_type = "Promise<Float32Array>")]
    pub fn matmul(&self, x: Vec<f32>, n: usize) -> Promise {
        let (op, ctx) = (self.op.clone(), self.ctx.clone());
        future_to_promise(async move {
            let x = Matrix::new(op.cols(), n, x).map_err(js_err)?;
            let y = op.matmul(&ctx, &x).await.map_err(js_err)?;
            Ok(Float32Array::from(y.data()).into())
        })
    }
}

/// A prunable layer, named for JS: `index` is its place in `prunableLayers`
/// (and in `prune`'s report), `layer` its index in the network.
struct Prunable {
    layer: usize,
    name: String,
    rows: usize,
    cols: usize,
    pixels: usize,
}

/// EfficientNet-Lite0 resident on the GPU, prunable in place.
#[wasm_bindgen]
pub struct Model {
    /// Taken out by the running call; the queue runs one call at a time.
    gpu: Rc<RefCell<Option<GpuLite0>>>,
    queue: Queue,
    ctx: Rc<Context>,
    /// Listed at load, so that it is readable while a call runs.
    prunable: Rc<Vec<Prunable>>,
    /// The network's input side (224).
    input: usize,
    /// For a sparse file: what it holds (see `info`).
    info: Option<Object>,
}

/// Takes the model out for the running call. The queue makes every call wait
/// for the one before, so it is only missing if an earlier call panicked.
fn take(slot: &RefCell<Option<GpuLite0>>) -> Result<GpuLite0, JsValue> {
    slot.borrow_mut()
        .take()
        .ok_or_else(|| err("the model was lost by an earlier call that failed inside wasm: load it again"))
}

fn layer_report(l: &LayerReport) -> Object {
    let o = Object::new();
    set(&o, "name", l.name.as_str());
    set(&o, "rows", l.shape.0 as u32);
    set(&o, "cols", l.shape.1 as u32);
    set(&o, "pixels", l.shape.2 as u32);
    set(&o, "pattern", l.pattern.to_string());
    set(&o, "target", l.target);
    set(&o, "achieved", l.achieved);
    set(&o, "denseBytes", l.dense_bytes as f64);
    set(&o, "sparseBytes", l.sparse_bytes as f64);
    set(&o, "kernel", l.kernel);
    o
}

/// The RGBA bytes, width and height of an `ImageData` (or `{ data, width, height }`).
fn rgba_of(image: &JsValue) -> Result<(Vec<u8>, usize, usize), JsValue> {
    let get = |k: &str| Reflect::get(image, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let bad = || err("expected an ImageData (or { data, width, height } of RGBA bytes)");
    if !image.is_object() {
        return Err(bad());
    }
    let dim = |k: &str| get(k).as_f64().filter(|x| x.fract() == 0.0 && *x >= 0.0);
    let width = dim("width").ok_or_else(bad)? as usize;
    let height = dim("height").ok_or_else(bad)? as usize;
    let data = get("data");
    if !data.is_object() {
        return Err(bad());
    }
    Ok((Uint8Array::new(&data).to_vec(), width, height))
}

/// The network input `[3, size*size]` of RGBA pixels: with `crop`, the
/// checkpoint's centre crop (`preprocess_rgba`); without, the whole image
/// resized to `size x size` (untouched when it already is), same filter and
/// normalisation.
fn input_of(rgba: &[u8], width: usize, height: usize, size: usize, crop: bool) -> Result<Vec<f32>, JsValue> {
    use crate::model::preprocess::{preprocess_rgba, to_tensor, LITE_NORMALIZATION};
    if crop {
        return preprocess_rgba(rgba, width, height, size).map_err(js_err);
    }
    if width == 0 || height == 0 || rgba.len() != width * height * 4 {
        return Err(err(format!(
            "{} RGBA bytes for a {width}x{height} image, expected {}",
            rgba.len(),
            width * height * 4
        )));
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb)
        .ok_or_else(|| err(format!("cannot build a {width}x{height} image")))?;
    let img = if (width, height) == (size, size) {
        img
    } else {
        image::imageops::resize(&img, size as u32, size as u32, image::imageops::FilterType::CatmullRom)
    };
    Ok(to_tensor(&img, &LITE_NORMALIZATION))
}

/// `{ crop }` of `preprocess`/`referenceLogits`/`classify` (default true).
fn crop_of(o: &Opts) -> Result<bool, JsValue> {
    Ok(o.bool("crop")?.unwrap_or(true))
}

#[wasm_bindgen]
impl Model {
    /// Builds the network from `.safetensors` bytes and uploads it: the
    /// original checkpoint (prunable with `prune`), or a sparse file written by
    /// `wgsparse prune` or `wgsparse finetune` (the "sparse-trained" models),
    /// whose layers run from their stored formats with the sparse kernels
    /// (`info` says what it is). Rejects with a readable Error on bytes that
    /// are neither.
    pub async fn load(runtime: &Runtime, bytes: Vec<u8>) -> Result<Model, JsValue> {
        let (gpu, loaded) = GpuLite0::from_safetensors(&runtime.ctx, &bytes, Dispatching::Sparse)
            .await
            .map_err(js_err)?;
        let info = match loaded {
            None => None,
            Some(report) => {
                let w = crate::model::Weights::from_bytes(&bytes).map_err(js_err)?;
                let pi = w
                    .prune_info()
                    .map_err(js_err)?
                    .ok_or_else(|| err("sparse file without its pattern"))?;
                let o = Object::new();
                set(&o, "pattern", pi.pattern.to_string());
                set(&o, "sparsity", pi.sparsity);
                set(&o, "criterion", pi.criterion.as_str());
                set(
                    &o,
                    "sparseTrained",
                    w.metadata()
                        .get("wgsparse.finetune")
                        .map_or(JsValue::NULL, |s| JsValue::from_str(s)),
                );
                let layers = Array::new();
                for l in &report.layers {
                    layers.push(&layer_report(l));
                }
                set(&o, "layers", layers);
                Some(o)
            }
        };
        let prunable = gpu
            .prunable_layers()
            .into_iter()
            .map(|i| {
                let l = &gpu.net().layers[i];
                let (rows, cols) = l
                    .prunable_weight()
                    .map_or((l.output.c, l.input.c), |w| (w.rows(), w.cols()));
                Prunable {
                    layer: i,
                    name: l.name.clone(),
                    rows,
                    cols,
                    pixels: l.output.hw(),
                }
            })
            .collect();
        let input = gpu.net().input.h;
        Ok(Model {
            gpu: Rc::new(RefCell::new(Some(gpu))),
            queue: Queue::new(),
            ctx: runtime.ctx.clone(),
            prunable: Rc::new(prunable),
            input,
            info,
        })
    }

    /// `null` for the original checkpoint; for a sparse file `{ pattern,
    /// sparsity, criterion, sparseTrained, layers }`: `sparseTrained` is the
    /// fine-tuning recipe of a `wgsparse finetune` file (else `null`),
    /// `layers` the per-layer report as `prune` gives it.
    #[wasm_bindgen(getter, unchecked_return_type = "SparseFileInfo | null")]
    pub fn info(&self) -> JsValue {
        self.info.as_ref().map_or(JsValue::NULL, |o| o.clone().into())
    }

    /// The layers `prune` prunes, in the order of its report:
    /// `[{ index, name, rows, cols, pixels }]` (`rows x cols` = cout x cin).
    #[wasm_bindgen(getter, js_name = prunableLayers, unchecked_return_type = "PrunableLayer[]")]
    pub fn prunable_layers(&self) -> Array {
        let out = Array::new();
        for (k, p) in self.prunable.iter().enumerate() {
            let o = Object::new();
            set(&o, "index", k as u32);
            set(&o, "name", p.name.as_str());
            set(&o, "rows", p.rows as u32);
            set(&o, "cols", p.cols as u32);
            set(&o, "pixels", p.pixels as u32);
            out.push(&o);
        }
        out
    }

    /// The current mask of prunable layer `index` (its place in
    /// `prunableLayers`): resolves to `{ index, name, rows, cols, kept, data }`,
    /// `data` a row-major Uint8Array with 1 where the weight is kept (read back
    /// from the GPU; a kept weight that is exactly 0.0 reads as pruned).
    #[wasm_bindgen(js_name = layerMask, unchecked_return_type = "Promise<LayerMask>")]
    pub fn layer_mask(&self, #[wasm_bindgen(unchecked_param_type = "number")] index: JsValue) -> Promise {
        let (slot, ctx, prunable) = (self.gpu.clone(), self.ctx.clone(), self.prunable.clone());
        self.queue.run(move |_| async move {
            let n = prunable.len();
            let k = index
                .as_f64()
                .filter(|k| k.fract() == 0.0 && *k >= 0.0)
                .ok_or_else(|| err(format!("layerMask takes a layer index 0..{}", n - 1)))?;
            let p = prunable.get(k as usize).ok_or_else(|| {
                err(format!(
                    "layerMask({k}): no such layer, the model has {n} prunable layers (0..{})",
                    n - 1
                ))
            })?;
            let gpu = take(&slot)?;
            let w = gpu.current_weights(&ctx, p.layer).await;
            *slot.borrow_mut() = Some(gpu);
            let mask = w.map_err(js_err)?.nonzero_mask();
            let data: Vec<u8> = mask.keep().iter().map(|&b| b as u8).collect();
            let o = Object::new();
            set(&o, "index", k);
            set(&o, "name", p.name.as_str());
            set(&o, "rows", mask.rows() as u32);
            set(&o, "cols", mask.cols() as u32);
            set(&o, "kept", mask.kept() as f64);
            set(&o, "data", Uint8Array::from(&data[..]));
            Ok(o.into())
        })
    }

    /// Prunes every pointwise layer, the head and the classifier on the GPU:
    /// `{ pattern, sparsity, dispatch, criterion, biasCorrection, renorm }`
    /// (`PruneOptions`; `pattern` is required, `sparsity` too unless the
    /// pattern fixes it). The criterion `"activation"`, biasCorrection and
    /// renorm need `calibrate` first; dispatch `"fastest"` measures dense
    /// against sparse per layer. `pattern: "dense"` goes back to the dense
    /// model. Resolves to `{ layers, ms, queuedMs, pruneMs }` (`PruneReport`).
    #[wasm_bindgen(unchecked_return_type = "Promise<PruneReport>")]
    pub fn prune(&self, #[wasm_bindgen(unchecked_param_type = "PruneOptions")] options: JsValue) -> Promise {
        let (slot, ctx) = (self.gpu.clone(), self.ctx.clone());
        let spec = (|| {
            let o = Opts::new(
                &options,
                "prune options",
                &[
                    "pattern",
                    "sparsity",
                    "dispatch",
                    "criterion",
                    "biasCorrection",
                    "renorm",
                ],
                "{ pattern: \"unstructured\", sparsity: 0.9 }",
            )?;
            let (pattern, sparsity) = o.pattern_sparsity()?;
            let mut spec = PruneSpec::new(pattern, sparsity);
            spec.dispatching = match o.string("dispatch")? {
                Some(d) => d.parse().map_err(js_err)?,
                None => Dispatching::Sparse,
            };
            spec.criterion = match o.string("criterion")? {
                Some(c) => c.parse().map_err(js_err)?,
                None => Criterion::Magnitude,
            };
            spec.bias_correction = o.bool("biasCorrection")?.unwrap_or(false);
            spec.renorm = o.bool("renorm")?.unwrap_or(false);
            Ok::<_, JsValue>(spec)
        })();
        let t0 = now_ms();
        self.queue.run(move |queued| async move {
            let spec = spec?;
            let mut gpu = take(&slot)?;
            let report = gpu.prune(&ctx, &spec).await;
            *slot.borrow_mut() = Some(gpu);
            let report = report.map_err(js_err)?;
            let layers = Array::new();
            for l in &report.layers {
                layers.push(&layer_report(l));
            }
            let o = Object::new();
            set(&o, "layers", layers);
            set(&o, "pruneMs", report.prune_ms);
            set(&o, "queuedMs", queued);
            set(&o, "ms", now_ms() - t0);
            Ok(o.into())
        })
    }

    /// Calibrates the activation-aware criterion and bias correction on an
    /// array of `ImageData` (or `{ data, width, height }` RGBA images, centre
    /// cropped as `classify` does): runs the dense model on each on the GPU
    /// and keeps per-channel statistics of every prunable layer. Resolves to
    /// the number of images; re-prune to use it.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn calibrate(&self, #[wasm_bindgen(unchecked_param_type = "RgbaImage[]")] images: JsValue) -> Promise {
        let (slot, ctx, size) = (self.gpu.clone(), self.ctx.clone(), self.input);
        let xs = (|| {
            if !Array::is_array(&images) {
                return Err(err("calibrate takes an array of ImageData"));
            }
            let mut xs = Vec::new();
            for img in Array::from(&images).iter() {
                let (rgba, width, height) = rgba_of(&img)?;
                xs.push(input_of(&rgba, width, height, size, true)?);
            }
            Ok(xs)
        })();
        self.queue.run(move |_| async move {
            let xs = xs?;
            let mut gpu = take(&slot)?;
            let r = gpu.calibrate(&ctx, &xs).await;
            *slot.borrow_mut() = Some(gpu);
            r.map_err(js_err)?;
            Ok(JsValue::from_f64(xs.len() as f64))
        })
    }

    /// Classifies an `ImageData` (or any `{ data, width, height }` of RGBA
    /// bytes) with the pruned model, or the unpruned one with `{ dense: true }`
    /// (`ClassifyOptions`). By default the centre of the image is cropped as
    /// the checkpoint was evaluated; `{ crop: false }` takes the image as the
    /// network's view (resized whole to 224x224). The pixels are copied at the
    /// call. Resolves to `{ top5, logits, ms, queuedMs, forwardMs }`
    /// (`Classification`): `ms` from the call to the result, `forwardMs` the
    /// forward pass alone (upload, GPU, read-back).
    #[wasm_bindgen(unchecked_return_type = "Promise<Classification>")]
    pub fn classify(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RgbaImage")] image: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ClassifyOptions")] options: Option<JsValue>,
    ) -> Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let t0 = now_ms();
        let (slot, ctx, size) = (self.gpu.clone(), self.ctx.clone(), self.input);
        let args = (|| {
            let o = Opts::new(
                &options,
                "classify's second argument",
                &["dense", "crop"],
                "{ dense: true }",
            )?;
            let dense = o.bool("dense")?.unwrap_or(false);
            let crop = crop_of(&o)?;
            Ok::<_, JsValue>((rgba_of(&image)?, dense, crop))
        })();
        self.queue.run(move |queued| async move {
            let ((rgba, width, height), dense, crop) = args?;
            let x = input_of(&rgba, width, height, size, crop)?;
            let gpu = take(&slot)?;
            let t1 = now_ms();
            let logits = if dense {
                gpu.forward_dense(&ctx, &x).await
            } else {
                gpu.forward(&ctx, &x).await
            };
            let forward = now_ms() - t1;
            *slot.borrow_mut() = Some(gpu);
            let logits = logits.map_err(js_err)?;
            let top = Array::new();
            for p in crate::model::top_k(&logits, 5) {
                let o = Object::new();
                set(&o, "class", p.class as u32);
                set(&o, "name", p.name.as_str());
                set(&o, "prob", p.prob);
                top.push(&o);
            }
            let o = Object::new();
            set(&o, "top5", top);
            set(&o, "logits", Float32Array::from(&logits[..]));
            set(&o, "queuedMs", queued);
            set(&o, "forwardMs", forward);
            set(&o, "ms", now_ms() - t0);
            Ok(o.into())
        })
    }

    /// GPU time of every layer of the model as it currently runs (pruned or
    /// dense), each layer submitted alone `runs` times (default 3, after one
    /// warm-up) and timed with timestamp queries where the adapter has them
    /// (else the wall clock around submit and wait: `source` says which).
    /// Resolves to `[{ name, ms, source }]` in network order, `ms` the median.
    /// Slow: about `runs + 1` forward passes.
    #[wasm_bindgen(js_name = layerTimes, unchecked_return_type = "Promise<LayerTime[]>")]
    pub fn layer_times(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "LayerTimesOptions")] options: Option<JsValue>,
    ) -> Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let (slot, ctx) = (self.gpu.clone(), self.ctx.clone());
        let runs = Opts::new(&options, "layerTimes options", &["runs"], "{ runs: 5 }")
            .and_then(|o| o.whole("runs"))
            .and_then(|r| match r.unwrap_or(3) {
                0 => Err(err("layerTimes options.runs must be at least 1")),
                r => Ok(r),
            });
        self.queue.run(move |_| async move {
            let runs = runs?;
            let gpu = take(&slot)?;
            let t = gpu.layer_latency(&ctx, 1, runs).await;
            *slot.borrow_mut() = Some(gpu);
            let out = Array::new();
            for (name, t) in t.map_err(js_err)? {
                let o = Object::new();
                set(&o, "name", name.as_str());
                set(&o, "ms", t.median_ms());
                set(&o, "source", t.source.to_string());
                out.push(&o);
            }
            Ok(out.into())
        })
    }

    /// The network input `classify` builds from an image: `[3, 224, 224]`
    /// channel planes (R, G, B) normalised `(x - 127) / 128`, cropped as
    /// `classify` crops (`{ crop }`, default true). For feeding the same view
    /// to another runtime (ONNX: reshape to `[1, 3, 224, 224]`).
    pub fn preprocess(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RgbaImage")] image: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "PreprocessOptions")] options: Option<JsValue>,
    ) -> Result<Float32Array, JsValue> {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let o = Opts::new(&options, "preprocess options", &["crop"], "{ crop: false }")?;
        let (rgba, width, height) = rgba_of(&image)?;
        let x = input_of(&rgba, width, height, self.input, crop_of(&o)?)?;
        Ok(Float32Array::from(&x[..]))
    }

    /// The logits of the network as loaded (the dense checkpoint; a sparse
    /// file as stored, never the live prune) by the crate's CPU reference
    /// forward pass: plain loops in wasm on the calling thread (about a
    /// second), for checking the GPU or another runtime against.
    #[wasm_bindgen(js_name = referenceLogits, unchecked_return_type = "Promise<Float32Array>")]
    pub fn reference_logits(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RgbaImage")] image: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "PreprocessOptions")] options: Option<JsValue>,
    ) -> Promise {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let (slot, size) = (self.gpu.clone(), self.input);
        let x = (|| {
            let o = Opts::new(&options, "referenceLogits options", &["crop"], "{ crop: false }")?;
            let (rgba, width, height) = rgba_of(&image)?;
            input_of(&rgba, width, height, size, crop_of(&o)?)
        })();
        self.queue.run(move |_| async move {
            let x = x?;
            let gpu = take(&slot)?;
            let logits = crate::model::cpu_forward::forward(gpu.net(), &x);
            *slot.borrow_mut() = Some(gpu);
            Ok(Float32Array::from(&logits.map_err(js_err)?[..]).into())
        })
    }
}

/// Sparse fine-tuning in the browser: distillation from the dense checkpoint
/// on the user's own photos, on WebGPU (the same kernels as `wgsparse
/// finetune`); the result is a sparse file that `Model.load` runs.
#[wasm_bindgen]
pub struct Finetuner {
    /// Taken out by the running call; the queue runs one call at a time.
    trainer: Rc<RefCell<Option<crate::train::Trainer>>>,
    queue: Queue,
    /// Mirrors the trainer's step count, readable while a call runs.
    step: Rc<RefCell<usize>>,
    ctx: Rc<Context>,
    dense: Rc<Vec<u8>>,
    photos: usize,
}

fn take_trainer(slot: &RefCell<Option<crate::train::Trainer>>) -> Result<crate::train::Trainer, JsValue> {
    slot.borrow_mut()
        .take()
        .ok_or_else(|| err("the fine-tuner was lost by an earlier call that failed inside wasm: create it again"))
}

fn metrics(m: &crate::train::StepMetrics) -> Object {
    let o = Object::new();
    set(&o, "step", m.step as u32);
    set(&o, "kd", m.kd);
    set(&o, "feature", m.feature);
    set(&o, "agreement", m.agreement);
    o
}

/// A named RGBA image: `(name, bytes, width, height)`, as `Sources::from_rgba` takes it.
type NamedRgba = (String, Vec<u8>, usize, usize);

fn images_of(images: &JsValue) -> Result<Vec<NamedRgba>, JsValue> {
    if !Array::is_array(images) {
        return Err(err("expected an array of ImageData"));
    }
    Array::from(images)
        .iter()
        .enumerate()
        .map(|(i, im)| rgba_of(&im).map(|(d, w, h)| (format!("image {i}"), d, w, h)))
        .collect()
}

#[wasm_bindgen]
impl Finetuner {
    /// `checkpoint`: the dense Lite0 `.safetensors` bytes (the teacher);
    /// `images`: ImageData of the training photos; `options`
    /// (`FinetuneOptions`): `{ pattern, sparsity, steps, batch (8), resolution
    /// (224), lr (3e-4), gradual (false), featureWeight (1), temperature (1),
    /// seed (0) }`. Rejects with a readable Error on a bad option, a sparse
    /// file as teacher, or no images.
    pub async fn create(
        runtime: &Runtime,
        checkpoint: Vec<u8>,
        #[wasm_bindgen(unchecked_param_type = "RgbaImage[]")] images: JsValue,
        #[wasm_bindgen(unchecked_param_type = "FinetuneOptions")] options: JsValue,
    ) -> Result<Finetuner, JsValue> {
        let o = Opts::new(
            &options,
            "Finetuner options",
            &[
                "pattern",
                "sparsity",
                "steps",
                "batch",
                "resolution",
                "lr",
                "gradual",
                "featureWeight",
                "temperature",
                "seed",
            ],
            "{ pattern: \"2:4\", steps: 200 }",
        )?;
        let (pattern, sparsity) = o.pattern_sparsity()?;
        let steps = o
            .whole("steps")?
            .ok_or_else(|| err("Finetuner options.steps is required: how many training steps"))?;
        let mut cfg = crate::train::TrainConfig::new(pattern, sparsity, steps);
        cfg.batch = o.whole("batch")?.unwrap_or(8);
        cfg.resolution = o.whole("resolution")?.unwrap_or(224);
        cfg.lr = o.num("lr")?.unwrap_or(3e-4);
        cfg.gradual = o.bool("gradual")?.unwrap_or(false);
        cfg.feature_weight = o.num("featureWeight")?.unwrap_or(1.0);
        cfg.temperature = o.num("temperature")?.unwrap_or(1.0);
        cfg.seed = o.whole("seed")?.unwrap_or(0) as u64;
        cfg.validate().map_err(js_err)?;
        let wts = crate::model::Weights::from_bytes(&checkpoint).map_err(js_err)?;
        if wts.prune_info().map_err(js_err)?.is_some() {
            return Err(err(
                "that is a pruned sparse file: fine-tune from the dense checkpoint (the teacher)",
            ));
        }
        let net = crate::model::Lite0::from_weights(&wts, cfg.resolution, cfg.resolution).map_err(js_err)?;
        let imgs = images_of(&images)?;
        let sources =
            crate::train::Sources::from_rgba(&imgs, crate::train::data::source_side(cfg.resolution)).map_err(js_err)?;
        let trainer = crate::train::Trainer::new(&runtime.ctx, &net, &sources, cfg).map_err(js_err)?;
        Ok(Finetuner {
            trainer: Rc::new(RefCell::new(Some(trainer))),
            queue: Queue::new(),
            step: Rc::new(RefCell::new(0)),
            ctx: runtime.ctx.clone(),
            dense: Rc::new(checkpoint),
            photos: sources.len(),
        })
    }

    /// Runs up to `steps` training steps (fewer when the recipe ends) and
    /// resolves to the last step's `{ step, kd, feature, agreement }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<StepMetrics>")]
    pub fn train(&self, steps: u32) -> Promise {
        let (slot, ctx, step) = (self.trainer.clone(), self.ctx.clone(), self.step.clone());
        self.queue.run(move |_| async move {
            let mut t = take_trainer(&slot)?;
            let mut r = Ok(());
            for _ in 0..steps {
                if t.finished() {
                    break;
                }
                r = t.train_step(&ctx).await;
                *step.borrow_mut() = t.step();
                if r.is_err() {
                    break;
                }
            }
            let m = match r {
                Ok(()) => t.metrics(&ctx).await,
                Err(e) => Err(e),
            };
            *slot.borrow_mut() = Some(t);
            Ok(metrics(&m.map_err(js_err)?).into())
        })
    }

    /// Agreement with the dense model and mean KL on the standard crops of
    /// `images` (ImageData[]): `{ step, kd, feature, agreement }`. Before the
    /// first step it measures the pruned, untrained start.
    #[wasm_bindgen(unchecked_return_type = "Promise<StepMetrics>")]
    pub fn evaluate(&self, #[wasm_bindgen(unchecked_param_type = "RgbaImage[]")] images: JsValue) -> Promise {
        let (slot, ctx) = (self.trainer.clone(), self.ctx.clone());
        let imgs = images_of(&images);
        self.queue.run(move |_| async move {
            let imgs = imgs?;
            let mut t = take_trainer(&slot)?;
            let r = async {
                let side = crate::train::data::source_side(t.config().resolution);
                let s = crate::train::Sources::from_rgba(&imgs, side)?;
                if t.step() == 0 {
                    t.prune_now(&ctx).await?;
                }
                t.evaluate(&ctx, &s).await
            }
            .await;
            *slot.borrow_mut() = Some(t);
            Ok(metrics(&r.map_err(js_err)?).into())
        })
    }

    /// Steps taken (by the calls that have finished or are running).
    #[wasm_bindgen(getter)]
    pub fn step(&self) -> u32 {
        *self.step.borrow() as u32
    }

    /// The recovered network as a sparse `.safetensors` file (`Model.load`
    /// runs it; `info.sparseTrained` tells the recipe). Rejects until the
    /// masks reach their target.
    #[wasm_bindgen(js_name = toSafetensors, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn to_safetensors(&self) -> Promise {
        let (slot, ctx, dense, photos) = (self.trainer.clone(), self.ctx.clone(), self.dense.clone(), self.photos);
        self.queue.run(move |_| async move {
            let t = take_trainer(&slot)?;
            let r = t.sparse_file(&ctx, &dense, "the browser", photos).await;
            *slot.borrow_mut() = Some(t);
            Ok(Uint8Array::from(&r.map_err(js_err)?[..]).into())
        })
    }
}
