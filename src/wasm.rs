//! The wasm-bindgen adapter: converts JS values to Rust types and back, holds no
//! logic of its own. Every fallible call rejects with an `Error` whose message
//! says what went wrong.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::gpu::Context;
use crate::model::{Classification, Criterion, Dispatching, GpuLite0, LayerReport, PruneSpec};
use crate::ops::SparseOperator;
use crate::sparse::{Matrix, Pattern};

fn js_err(e: crate::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn set(obj: &Object, key: &str, v: impl Into<JsValue>) {
    // Setting a property on a plain new Object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &v.into());
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The GPU runtime: one WebGPU device.
#[wasm_bindgen]
pub struct Runtime {
    ctx: Rc<Context>,
}

#[wasm_bindgen]
impl Runtime {
    /// Requests a WebGPU adapter and device. Rejects when the browser has no WebGPU.
    pub async fn create() -> Result<Runtime, JsValue> {
        let ctx = Context::new().await.map_err(js_err)?;
        Ok(Runtime { ctx: Rc::new(ctx) })
    }

    /// `{ name, backend, deviceType, driver, shaderF16, timestampQuery, maxStorageBindingSize }`.
    #[wasm_bindgen(getter, js_name = adapterInfo)]
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
    /// `options.sparsity` and uploads it in that pattern's format.
    #[wasm_bindgen(js_name = sparseMatrix)]
    pub fn sparse_matrix(
        &self,
        data: Vec<f32>,
        rows: usize,
        cols: usize,
        options: JsValue,
    ) -> Result<SparseMatrix, JsValue> {
        let get = |k: &str| Reflect::get(&options, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        let pattern: Pattern = match get("pattern").as_string() {
            Some(p) => p.parse().map_err(js_err)?,
            None => Pattern::Dense,
        };
        let sparsity = match get("sparsity") {
            v if v.is_undefined() => 0.0,
            v => v
                .as_f64()
                .ok_or_else(|| JsError::new("options.sparsity must be a number"))?,
        };
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
    #[wasm_bindgen(js_name = toDense)]
    pub fn to_dense(&self) -> Promise {
        let (op, ctx) = (self.op.clone(), self.ctx.clone());
        future_to_promise(async move {
            let d = op.to_dense(&ctx).await.map_err(js_err)?;
            Ok(Float32Array::from(d.data()).into())
        })
    }

    /// `W X` for a row-major `cols x n` X; resolves to a `rows x n` Float32Array.
    pub fn matmul(&self, x: Vec<f32>, n: usize) -> Promise {
        let (op, ctx) = (self.op.clone(), self.ctx.clone());
        future_to_promise(async move {
            let x = Matrix::new(op.cols(), n, x).map_err(js_err)?;
            let y = op.matmul(&ctx, &x).await.map_err(js_err)?;
            Ok(Float32Array::from(y.data()).into())
        })
    }
}

#[wasm_bindgen(typescript_custom_section)]
const MODEL_TYPES: &str = r#"
/** A layer that `prune` prunes: its `[rows, cols]` = `[cout, cin]` weight matrix. */
export interface PrunableLayer { index: number; name: string; rows: number; cols: number; pixels: number; }
/** One pruned layer, as `prune` and `info` report it. */
export interface LayerReport { name: string; rows: number; cols: number; pixels: number; pattern: string; target: number; achieved: number; denseBytes: number; sparseBytes: number; kernel: string; }
/** What a sparse file holds (`Model.info`). */
export interface SparseFileInfo { pattern: string; sparsity: number; criterion: string; sparseTrained: string | null; layers: LayerReport[]; }
/** The current mask of a prunable layer, row-major, 1 = kept weight. */
export interface LayerMask { index: number; name: string; rows: number; cols: number; kept: number; data: Uint8Array; }
"#;

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
    /// `None` while a prune or classify is running: one at a time.
    gpu: Rc<RefCell<Option<GpuLite0>>>,
    ctx: Rc<Context>,
    /// Listed at load, so that it is readable while the model is busy.
    prunable: Rc<Vec<Prunable>>,
    /// For a sparse file: what it holds (see `info`).
    info: Option<Object>,
}

/// Takes the model out for one operation, or says it is busy.
fn take(slot: &RefCell<Option<GpuLite0>>) -> Result<GpuLite0, JsValue> {
    slot.borrow_mut()
        .take()
        .ok_or_else(|| JsError::new("the model is busy: wait for the running prune or classify").into())
}

fn predictions(c: &Classification) -> Object {
    let top = Array::new();
    for p in &c.top {
        let o = Object::new();
        set(&o, "class", p.class as u32);
        set(&o, "name", p.name.as_str());
        set(&o, "prob", p.prob);
        top.push(&o);
    }
    let o = Object::new();
    set(&o, "top5", top);
    set(&o, "ms", c.ms);
    o
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
    let bad = || JsError::new("expected an ImageData (or { data, width, height } of RGBA bytes)");
    let width = get("width").as_f64().ok_or_else(bad)? as usize;
    let height = get("height").as_f64().ok_or_else(bad)? as usize;
    let data = get("data");
    if !data.is_object() {
        return Err(bad().into());
    }
    Ok((Uint8Array::new(&data).to_vec(), width, height))
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
                    .ok_or_else(|| JsError::new("sparse file without its pattern"))?;
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
        Ok(Model {
            gpu: Rc::new(RefCell::new(Some(gpu))),
            ctx: runtime.ctx.clone(),
            prunable: Rc::new(prunable),
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
        future_to_promise(async move {
            let n = prunable.len();
            let k = index
                .as_f64()
                .filter(|k| k.fract() == 0.0 && *k >= 0.0)
                .ok_or_else(|| JsError::new(&format!("layerMask takes a layer index 0..{}", n - 1)))?;
            let p = prunable.get(k as usize).ok_or_else(|| {
                JsError::new(&format!(
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
    /// `{ pattern, sparsity, dispatch, criterion, biasCorrection, renorm }` with
    /// criterion `"magnitude"` (default) or `"activation"`, biasCorrection and
    /// renorm booleans (all three need `calibrate` first), dispatch `"sparse"` (default:
    /// every pruned layer runs its sparse kernel) or `"fastest"` (dense or
    /// sparse per layer by measurement; needs timestamp queries in the
    /// browser). `pattern: "dense"` or sparsity 0 goes back to the dense model.
    /// Resolves to `{ layers: [{ name, rows, cols, pixels, pattern, target,
    /// achieved, denseBytes, sparseBytes, kernel }], ms }`, ms the wall-clock
    /// time of the prune.
    pub fn prune(&self, options: JsValue) -> Promise {
        let (slot, ctx) = (self.gpu.clone(), self.ctx.clone());
        future_to_promise(async move {
            let get = |k: &str| Reflect::get(&options, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
            let pattern: Pattern = match get("pattern").as_string() {
                Some(p) => p.parse().map_err(js_err)?,
                None => Pattern::Unstructured,
            };
            let sparsity = match get("sparsity") {
                v if v.is_undefined() => 0.0,
                v => v
                    .as_f64()
                    .ok_or_else(|| JsError::new("options.sparsity must be a number"))?,
            };
            let mut spec = PruneSpec::new(pattern, sparsity);
            spec.dispatching = match get("dispatch").as_string() {
                Some(d) => d.parse().map_err(js_err)?,
                None => Dispatching::Sparse,
            };
            spec.criterion = match get("criterion") {
                v if v.is_undefined() || v.is_null() => Criterion::Magnitude,
                v => v
                    .as_string()
                    .ok_or_else(|| JsError::new("options.criterion must be \"magnitude\" or \"activation\""))?
                    .parse()
                    .map_err(js_err)?,
            };
            let flag = |k: &str| -> Result<bool, JsValue> {
                match get(k) {
                    v if v.is_undefined() || v.is_null() => Ok(false),
                    v => v
                        .as_bool()
                        .ok_or_else(|| JsError::new(&format!("options.{k} must be a boolean")).into()),
                }
            };
            spec.bias_correction = flag("biasCorrection")?;
            spec.renorm = flag("renorm")?;
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
            set(&o, "ms", report.prune_ms);
            Ok(o.into())
        })
    }

    /// Calibrates the activation-aware criterion and bias correction on an
    /// array of `ImageData` (or `{ data, width, height }` RGBA images): runs
    /// the dense model on each on the GPU and keeps per-channel statistics of
    /// every prunable layer. Resolves to the number of images; re-prune to use it.
    pub fn calibrate(&self, images: JsValue) -> Promise {
        let (slot, ctx) = (self.gpu.clone(), self.ctx.clone());
        future_to_promise(async move {
            if !Array::is_array(&images) {
                return Err(JsError::new("calibrate takes an array of ImageData").into());
            }
            let mut xs = Vec::new();
            for img in Array::from(&images).iter() {
                let (rgba, width, height) = rgba_of(&img)?;
                xs.push(
                    crate::model::preprocess::preprocess_rgba(&rgba, width, height, crate::model::INPUT_SIZE)
                        .map_err(js_err)?,
                );
            }
            let mut gpu = take(&slot)?;
            let r = gpu.calibrate(&ctx, &xs).await;
            *slot.borrow_mut() = Some(gpu);
            r.map_err(js_err)?;
            Ok(JsValue::from_f64(xs.len() as f64))
        })
    }

    /// Classifies an `ImageData` (or any `{ data, width, height }` of RGBA
    /// bytes) with the pruned model, or the unpruned one when `dense` is true.
    /// Resolves to `{ top5: [{ class, name, prob }], ms }`, ms the wall-clock
    /// time of the forward pass measured in wasm with `performance.now()`
    /// (input upload, GPU, logits read-back; not the preprocessing).
    pub fn classify(&self, image: JsValue, dense: Option<bool>) -> Promise {
        let (slot, ctx) = (self.gpu.clone(), self.ctx.clone());
        future_to_promise(async move {
            let (rgba, width, height) = rgba_of(&image)?;
            let gpu = take(&slot)?;
            let c = gpu
                .classify_rgba(&ctx, &rgba, width, height, 5, dense.unwrap_or(false))
                .await;
            *slot.borrow_mut() = Some(gpu);
            Ok(predictions(&c.map_err(js_err)?).into())
        })
    }
}

/// Sparse fine-tuning in the browser: distillation from the dense checkpoint
/// on the user's own photos, on WebGPU (the same kernels as `wgsparse
/// finetune`); the result is a sparse file that `Model.load` runs.
#[wasm_bindgen]
pub struct Finetuner {
    /// `None` while a call is running: one at a time.
    trainer: Rc<RefCell<Option<crate::train::Trainer>>>,
    ctx: Rc<Context>,
    dense: Rc<Vec<u8>>,
    photos: usize,
}

fn take_trainer(slot: &RefCell<Option<crate::train::Trainer>>) -> Result<crate::train::Trainer, JsValue> {
    slot.borrow_mut()
        .take()
        .ok_or_else(|| JsError::new("the fine-tuner is busy: wait for the running call").into())
}

fn metrics(m: &crate::train::StepMetrics) -> Object {
    let o = Object::new();
    set(&o, "step", m.step as u32);
    set(&o, "kd", m.kd);
    set(&o, "feature", m.feature);
    set(&o, "agreement", m.agreement);
    o
}

fn images_of(images: &JsValue) -> Result<Vec<(String, Vec<u8>, usize, usize)>, JsValue> {
    if !Array::is_array(images) {
        return Err(JsError::new("expected an array of ImageData").into());
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
    /// `images`: ImageData of the training photos; `options`: `{ pattern,
    /// sparsity, steps, batch (8), resolution (224), lr (3e-4), gradual
    /// (false), featureWeight (1), temperature (1), seed (0) }`. Rejects with
    /// a readable Error on a bad option, a sparse file as teacher, or no images.
    pub async fn create(
        runtime: &Runtime,
        checkpoint: Vec<u8>,
        images: JsValue,
        options: JsValue,
    ) -> Result<Finetuner, JsValue> {
        let get = |k: &str| Reflect::get(&options, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        let num = |k: &str, d: f64| get(k).as_f64().unwrap_or(d);
        let pattern: Pattern = get("pattern")
            .as_string()
            .ok_or_else(|| JsError::new("options.pattern is required (unstructured, block:RxC or N:M)"))?
            .parse()
            .map_err(js_err)?;
        let steps = num("steps", 0.0);
        if steps.fract() != 0.0 || steps < 0.0 {
            return Err(JsError::new("options.steps must be a whole number").into());
        }
        let mut cfg = crate::train::TrainConfig::new(pattern, num("sparsity", 0.0), steps as usize);
        cfg.batch = num("batch", 8.0) as usize;
        cfg.resolution = num("resolution", 224.0) as usize;
        cfg.lr = num("lr", 3e-4);
        cfg.gradual = get("gradual").as_bool().unwrap_or(false);
        cfg.feature_weight = num("featureWeight", 1.0);
        cfg.temperature = num("temperature", 1.0);
        cfg.seed = num("seed", 0.0) as u64;
        cfg.validate().map_err(js_err)?;
        let wts = crate::model::Weights::from_bytes(&checkpoint).map_err(js_err)?;
        if wts.prune_info().map_err(js_err)?.is_some() {
            return Err(JsError::new(
                "that is a pruned sparse file: fine-tune from the dense checkpoint (the teacher)",
            )
            .into());
        }
        let net = crate::model::Lite0::from_weights(&wts, cfg.resolution, cfg.resolution).map_err(js_err)?;
        let imgs = images_of(&images)?;
        let sources =
            crate::train::Sources::from_rgba(&imgs, crate::train::data::source_side(cfg.resolution)).map_err(js_err)?;
        let trainer = crate::train::Trainer::new(&runtime.ctx, &net, &sources, cfg).map_err(js_err)?;
        Ok(Finetuner {
            trainer: Rc::new(RefCell::new(Some(trainer))),
            ctx: runtime.ctx.clone(),
            dense: Rc::new(checkpoint),
            photos: sources.len(),
        })
    }

    /// Runs up to `steps` training steps (fewer when the recipe ends) and
    /// resolves to the last step's `{ step, kd, feature, agreement }`.
    pub fn train(&self, steps: u32) -> Promise {
        let (slot, ctx) = (self.trainer.clone(), self.ctx.clone());
        future_to_promise(async move {
            let mut t = take_trainer(&slot)?;
            let mut r = Ok(());
            for _ in 0..steps {
                if t.finished() {
                    break;
                }
                r = t.train_step(&ctx).await;
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
    pub fn evaluate(&self, images: JsValue) -> Promise {
        let (slot, ctx) = (self.trainer.clone(), self.ctx.clone());
        future_to_promise(async move {
            let imgs = images_of(&images)?;
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

    /// Steps taken.
    #[wasm_bindgen(getter)]
    pub fn step(&self) -> Result<u32, JsValue> {
        let b = self.trainer.borrow();
        Ok(b.as_ref().ok_or_else(|| JsError::new("the fine-tuner is busy"))?.step() as u32)
    }

    /// The recovered network as a sparse `.safetensors` file (`Model.load`
    /// runs it; `info.sparseTrained` tells the recipe). Rejects until the
    /// masks reach their target.
    #[wasm_bindgen(js_name = toSafetensors)]
    pub fn to_safetensors(&self) -> Promise {
        let (slot, ctx, dense, photos) = (self.trainer.clone(), self.ctx.clone(), self.dense.clone(), self.photos);
        future_to_promise(async move {
            let t = take_trainer(&slot)?;
            let r = t.sparse_file(&ctx, &dense, "the browser", photos).await;
            *slot.borrow_mut() = Some(t);
            Ok(Uint8Array::from(&r.map_err(js_err)?[..]).into())
        })
    }
}
