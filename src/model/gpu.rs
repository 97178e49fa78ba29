//! EfficientNet-Lite0 on the GPU: every layer's weights uploaded once, every
//! activation buffer allocated once, and the whole forward pass recorded as one
//! list of dispatches submitted in ONE compute pass. Pruning runs on the GPU
//! from the kept dense weights (so going from 90% back to 50% is exact) and
//! switches each prunable layer to the sparse kernel of its pattern, or keeps
//! the dense kernel where that measured faster on this adapter.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::lite0::{self, Lite0, Op};
use crate::error::{Error, Result};
use crate::gpu::calibrate::prepare_bias_correct;
use crate::gpu::conv::{self, ConvShape};
use crate::gpu::tune::{Family, TuneKey, Tuner};
use crate::gpu::{elementwise, gemm, Activation, Context, Dispatch, Epilogue, GpuBuffer, GpuMatrix, Timings};
use crate::ops::{LayerPlan, SparseOperator};
use crate::sparse::Pattern;

fn conv_shape(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: &lite0::Padding,
    input: &lite0::Shape,
) -> ConvShape {
    ConvShape {
        cin,
        cout,
        h: input.h,
        w: input.w,
        k,
        stride,
        pad_top: pad.top,
        pad_left: pad.left,
        pad_bottom: pad.bottom,
        pad_right: pad.right,
    }
}

/// Which layers a prune touches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every prunable layer at the same sparsity.
    #[default]
    PerLayer,
    /// One magnitude threshold across all prunable layers (unstructured only).
    Global,
}

/// How a pruned layer's kernel is chosen (a policy; a [`Dispatch`] is one
/// recorded kernel launch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelPolicy {
    /// Measure dense and sparse for the layer's shape on this adapter (once,
    /// kept by the model's [`Tuner`]) and run the faster.
    #[default]
    Fastest,
    /// Always the sparse kernel (tests, benchmarks of the kernels themselves).
    Sparse,
}

/// The former name of [`KernelPolicy`], kept while `wasm.rs` still spells it so.
pub type Dispatching = KernelPolicy;

impl std::str::FromStr for KernelPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fastest" => Ok(KernelPolicy::Fastest),
            "sparse" => Ok(KernelPolicy::Sparse),
            _ => Err(Error::Invalid(format!(
                "unknown kernel policy {s:?}: use \"fastest\" or \"sparse\""
            ))),
        }
    }
}

/// What ranks the weights for pruning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Criterion {
    /// `|w|`.
    #[default]
    Magnitude,
    /// `|w|` times the L2 norm of its input channel's activations over the
    /// calibration images (Wanda): needs [`GpuLite0::calibrate`].
    Activation,
}

impl std::str::FromStr for Criterion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "magnitude" => Ok(Criterion::Magnitude),
            "activation" | "wanda" => Ok(Criterion::Activation),
            _ => Err(Error::Invalid(format!(
                "unknown criterion {s:?}: use \"magnitude\" or \"activation\""
            ))),
        }
    }
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Criterion::Magnitude => "magnitude",
            Criterion::Activation => "activation",
        })
    }
}

/// What to prune and how.
#[derive(Clone, Debug)]
pub struct PruneSpec {
    pub pattern: Pattern,
    /// Ignored for N:M (fixed by the pattern).
    pub sparsity: f64,
    pub scope: Scope,
    pub dispatching: KernelPolicy,
    pub criterion: Criterion,
    /// After pruning, add `(W - W') * mean(input)` to each layer's bias so its
    /// outputs keep their mean over the calibration images: needs
    /// [`GpuLite0::calibrate`].
    pub bias_correction: bool,
    /// After pruning (and bias correction), rescale the output channels of each
    /// pruned layer and of every convolution (stem, depthwise) after the first
    /// pruned layer, layer by layer in network order, so their mean and
    /// standard deviation before the activation on the calibration images
    /// match the dense model's (the folded-BatchNorm analogue of re-estimating
    /// every BN layer's statistics): needs [`GpuLite0::calibrate`].
    pub renorm: bool,
    /// Per-layer sparsities (one per prunable layer, in network order; see
    /// [`GpuLite0::prunable_layers`]) overriding `sparsity`, e.g. from
    /// [`GpuLite0::auto_budget`]. A 0 keeps that layer dense; for N:M any
    /// other value prunes the layer to the pattern.
    pub layer_sparsity: Option<Vec<f64>>,
}

impl PruneSpec {
    pub fn new(pattern: Pattern, sparsity: f64) -> Self {
        PruneSpec {
            pattern,
            sparsity,
            scope: Scope::PerLayer,
            dispatching: KernelPolicy::Fastest,
            criterion: Criterion::Magnitude,
            bias_correction: false,
            renorm: false,
            layer_sparsity: None,
        }
    }
}

/// One prunable layer after pruning.
#[derive(Clone, Debug)]
pub struct LayerReport {
    pub name: String,
    /// `(cout, cin, pixels)`.
    pub shape: (usize, usize, usize),
    pub pattern: Pattern,
    pub target: f64,
    pub achieved: f64,
    pub dense_bytes: usize,
    pub sparse_bytes: usize,
    /// Median GPU ms of the layer's dense and sparse kernel (when measured).
    pub dense_ms: Option<f64>,
    pub sparse_ms: Option<f64>,
    /// The kernel that runs: "gemm" or the sparse kernel's name.
    pub kernel: &'static str,
}

/// The per-layer report of one prune.
#[derive(Clone, Debug, Default)]
pub struct ModelReport {
    pub layers: Vec<LayerReport>,
    /// Wall-clock ms of the prune itself (GPU pruning + compression + plan).
    pub prune_ms: f64,
    /// Layers that are never pruned, said once.
    pub untouched: String,
    pub criterion: Criterion,
    pub bias_correction: bool,
    pub renorm: bool,
    /// Calibration images behind the criterion / bias correction (0: none used).
    pub calibration_images: usize,
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:>16} {:<12} {:>7} {:>8} {:>10} {:>10} {:>9} {:>9}  kernel",
            "layer", "cout x cin x px", "pattern", "target", "achieved", "dense B", "sparse B", "dense ms", "sparse ms"
        )?;
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for l in &self.layers {
            writeln!(
                f,
                "{:<22} {:>16} {:<12} {:>6.1}% {:>7.1}% {:>10} {:>10} {:>9} {:>9}  {}",
                l.name,
                format!("{}x{}x{}", l.shape.0, l.shape.1, l.shape.2),
                l.pattern,
                100.0 * l.target,
                100.0 * l.achieved,
                l.dense_bytes,
                l.sparse_bytes,
                ms(l.dense_ms),
                ms(l.sparse_ms),
                l.kernel
            )?;
        }
        let (d, s): (usize, usize) = self
            .layers
            .iter()
            .fold((0, 0), |a, l| (a.0 + l.dense_bytes, a.1 + l.sparse_bytes));
        writeln!(
            f,
            "pruned layers: {d} bytes dense, {s} bytes sparse ({:.2}x smaller)",
            d as f64 / s.max(1) as f64
        )?;
        if self.calibration_images > 0 {
            writeln!(
                f,
                "criterion: {}, bias correction {}, re-normalization {} (statistics of {} calibration images)",
                self.criterion,
                if self.bias_correction { "on" } else { "off" },
                if self.renorm { "on" } else { "off" },
                self.calibration_images
            )?;
        } else {
            writeln!(f, "criterion: {}", self.criterion)?;
        }
        write!(f, "{}; prune took {:.1} ms", self.untouched, self.prune_ms)
    }
}

/// What a prunable layer currently runs.
pub(super) enum Current {
    /// The original dense weights (not pruned).
    Dense,
    /// The pruned weights in their sparse format, with the sparse kernel.
    Sparse(Box<SparseOperator>),
    /// The pruned weights stored dense (pruned entries zero), with the dense
    /// kernel: chosen where dense measured faster for this layer's shape. The
    /// pattern they were pruned to (other precisions may pick differently).
    MaskedDense(GpuMatrix, Pattern),
}

/// A prunable layer on the GPU: the dense weights (always kept, so un-pruning
/// is exact) and what currently runs.
pub(super) struct Prunable {
    pub(super) dense: GpuMatrix,
    pub(super) bias: GpuBuffer,
    pub(super) act: Activation,
    pub(super) residual: Option<usize>,
    pub(super) current: Current,
    /// What calibration measured for this layer (with its GPU buffers).
    pub(super) calib: Option<Box<super::calibrate::LayerCalib>>,
    /// The pruned layer runs with the corrected bias of `calib`.
    pub(super) bias_corrected: bool,
}

impl Prunable {
    /// The bias the current weights run with.
    pub(super) fn bias_in_use(&self) -> &GpuBuffer {
        match (&self.calib, self.bias_corrected, &self.current) {
            (Some(c), true, Current::Sparse(_) | Current::MaskedDense(..)) => &c.corrected,
            _ => &self.bias,
        }
    }
}

pub(super) enum GpuLayer {
    Conv {
        shape: ConvShape,
        w: GpuBuffer,
        b: GpuBuffer,
        act: Activation,
        renormed: Option<Box<Renormed>>,
    },
    Depthwise {
        shape: ConvShape,
        w: GpuBuffer,
        b: GpuBuffer,
        act: Activation,
        renormed: Option<Box<Renormed>>,
    },
    Prunable(Box<Prunable>),
    Pool {
        h: usize,
        w: usize,
    },
}

/// A convolution (stem or depthwise) re-normalized after pruning: its weights
/// and bias with each output channel's affine folded in, on the CPU and the GPU.
pub(super) struct Renormed {
    pub(super) weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) gpu_weight: GpuBuffer,
    pub(super) gpu_bias: GpuBuffer,
}

/// The result of [`GpuLite0::classify_rgba`].
#[derive(Clone, Debug)]
pub struct Classification {
    pub top: Vec<super::Prediction>,
    /// Wall-clock ms of the forward pass.
    pub ms: f64,
}

/// Milliseconds on a monotonic clock (`performance.now()` in the browser).
pub fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        use js_sys::{Function, Reflect};
        use wasm_bindgen::{JsCast, JsValue};
        let perf = Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).ok();
        let now = perf
            .as_ref()
            .and_then(|p| Reflect::get(p, &JsValue::from_str("now")).ok())
            .and_then(|f| f.dyn_into::<Function>().ok());
        match (perf, now) {
            (Some(p), Some(f)) => f
                .call0(&p)
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or_else(js_sys::Date::now),
            _ => js_sys::Date::now(),
        }
    }
}

/// EfficientNet-Lite0 resident on the GPU.
pub struct GpuLite0 {
    net: Lite0,
    pub(super) tensors: Vec<GpuMatrix>,
    pub(super) layers: Vec<GpuLayer>,
    plan: Vec<Dispatch>,
    /// The plan of the unpruned model, kept so the dense model can run beside a pruned one.
    dense_plan: Vec<Dispatch>,
    ranges: Vec<Range<usize>>,
    /// Measured kernel choices (dense or sparse per layer shape, and the f16
    /// model's candidates), shared with other models on the same adapter
    /// through [`GpuLite0::set_tuner`].
    tuner: Arc<Tuner>,
    /// Calibration images the statistics of the prunable layers come from (0: none).
    pub(super) calibrated_on: usize,
    /// The calibration images (preprocessed), for re-normalization.
    pub(super) calib_images: Vec<Vec<f32>>,
    /// One activation set per calibration image (allocated by the first
    /// re-normalization).
    pub(super) renorm_sets: Vec<Vec<GpuMatrix>>,
    /// Dense pre-activation (mean, std) per output channel of the stem and
    /// depthwise layers on the calibration images (by layer index).
    pub(super) conv_stats: HashMap<usize, (Vec<f32>, Vec<f32>)>,
    /// Sensitivity profiles measured so far, per (pattern, criterion).
    pub(super) sensitivities: HashMap<(String, Criterion), super::budget::Sensitivity>,
}

impl GpuLite0 {
    /// Uploads the network and allocates every activation.
    pub fn new(ctx: &Context, net: Lite0) -> Result<Self> {
        let mut tensors = vec![GpuMatrix::new(ctx, net.input.c, net.input.hw(), "tensor 0")?];
        let mut layers = Vec::with_capacity(net.layers.len());
        for (i, l) in net.layers.iter().enumerate() {
            tensors.push(GpuMatrix::new(
                ctx,
                l.output.c,
                l.output.hw(),
                &format!("tensor {}", i + 1),
            )?);
            layers.push(match &l.op {
                Op::Conv(c) => GpuLayer::Conv {
                    shape: conv_shape(c.cin, c.cout, c.k, c.stride, &c.pad, &l.input),
                    w: GpuBuffer::from_slice(ctx, c.weight.data(), &l.name)?,
                    b: GpuBuffer::from_slice(ctx, &c.bias, &l.name)?,
                    act: c.act,
                    renormed: None,
                },
                Op::Depthwise(d) => GpuLayer::Depthwise {
                    shape: conv_shape(d.c, d.c, d.k, d.stride, &d.pad, &l.input),
                    w: GpuBuffer::from_slice(ctx, d.weight.data(), &l.name)?,
                    b: GpuBuffer::from_slice(ctx, &d.bias, &l.name)?,
                    act: d.act,
                    renormed: None,
                },
                Op::Pointwise(p) => GpuLayer::Prunable(Box::new(Prunable {
                    dense: GpuMatrix::upload(ctx, &p.weight, &l.name)?,
                    bias: GpuBuffer::from_slice(ctx, &p.bias, &l.name)?,
                    act: p.act,
                    residual: p.residual_from,
                    current: Current::Dense,
                    calib: None,
                    bias_corrected: false,
                })),
                Op::Classifier(c) => GpuLayer::Prunable(Box::new(Prunable {
                    dense: GpuMatrix::upload(ctx, &c.weight, &l.name)?,
                    bias: GpuBuffer::from_slice(ctx, &c.bias, &l.name)?,
                    act: Activation::None,
                    residual: None,
                    current: Current::Dense,
                    calib: None,
                    bias_corrected: false,
                })),
                Op::Pool => GpuLayer::Pool {
                    h: l.input.h,
                    w: l.input.w,
                },
            });
        }
        let mut me = GpuLite0 {
            net,
            tensors,
            layers,
            plan: Vec::new(),
            dense_plan: Vec::new(),
            ranges: Vec::new(),
            tuner: Arc::new(Tuner::for_context(ctx)),
            calibrated_on: 0,
            calib_images: Vec::new(),
            renorm_sets: Vec::new(),
            sensitivities: HashMap::new(),
            conv_stats: HashMap::new(),
        };
        me.rebuild(ctx)?;
        me.dense_plan = me.plan.clone();
        Ok(me)
    }

    /// The measured kernel choices this model dispatches by.
    pub fn tuner(&self) -> &Tuner {
        &self.tuner
    }

    /// The tuner, to share with another model on the same adapter.
    pub fn shared_tuner(&self) -> Arc<Tuner> {
        Arc::clone(&self.tuner)
    }

    /// Dispatches by `tuner`'s choices from now on (one loaded from disk, or
    /// another model's): layers it already holds a decision for are not
    /// measured again, and the decisions this model measured so far join it.
    /// A tuner of another adapter is an error.
    pub fn set_tuner(&mut self, ctx: &Context, tuner: Arc<Tuner>) -> Result<()> {
        let here = crate::gpu::tune::adapter_id(ctx);
        if tuner.adapter() != here {
            return Err(Error::Invalid(format!(
                "the tuner was measured on {:?}, this model runs on {here:?}",
                tuner.adapter()
            )));
        }
        tuner.absorb(&self.tuner)?;
        self.tuner = tuner;
        Ok(())
    }

    pub fn net(&self) -> &Lite0 {
        &self.net
    }

    /// The dispatches of layer `i` as it currently runs (its kernel, then its residual add).
    fn layer_dispatches(&self, ctx: &Context, i: usize) -> Result<Vec<Dispatch>> {
        self.layer_dispatches_as(ctx, i, false)
    }

    /// The dispatches of layer `i` of the DENSE model, whatever the current prune.
    pub(super) fn dense_layer_dispatches(&self, ctx: &Context, i: usize) -> Result<Vec<Dispatch>> {
        self.layer_dispatches_as(ctx, i, true)
    }

    fn layer_dispatches_as(&self, ctx: &Context, i: usize, dense: bool) -> Result<Vec<Dispatch>> {
        self.layer_dispatches_on(ctx, i, &self.tensors, dense, false)
    }

    /// The dispatches of layer `i` over the activation set `tensors` (the
    /// model's own or a copy of the same shapes): the dense or the current
    /// layer; with `pre_activation`, a prunable layer writes its output before
    /// the activation and without its residual add.
    pub(super) fn layer_dispatches_on(
        &self,
        ctx: &Context,
        i: usize,
        tensors: &[GpuMatrix],
        dense: bool,
        pre_activation: bool,
    ) -> Result<Vec<Dispatch>> {
        let (x, y) = (&tensors[i], &tensors[i + 1]);
        Ok(match &self.layers[i] {
            GpuLayer::Conv {
                shape,
                w,
                b,
                act,
                renormed,
            }
            | GpuLayer::Depthwise {
                shape,
                w,
                b,
                act,
                renormed,
            } => {
                let (w, b) = match renormed {
                    Some(r) if !dense => (&r.gpu_weight, &r.gpu_bias),
                    _ => (w, b),
                };
                let a = if pre_activation { Activation::None } else { *act };
                if matches!(self.layers[i], GpuLayer::Conv { .. }) {
                    vec![conv::prepare_conv2d(ctx, shape, x, w, b, y, a)?]
                } else {
                    vec![conv::prepare_depthwise(ctx, shape, x, w, b, y, a)?]
                }
            }
            GpuLayer::Pool { h, w } => vec![conv::prepare_avgpool(ctx, x, *h, *w, y)?],
            GpuLayer::Prunable(p) => {
                let ep = Epilogue {
                    bias: Some(if dense { &p.bias } else { p.bias_in_use() }),
                    act: if pre_activation { Activation::None } else { p.act },
                };
                // Dense layers run gemm::prepare_layer (K split on GPUs
                // where the output is small and K long).
                let mut v = match &p.current {
                    _ if dense => gemm::prepare_layer(ctx, &p.dense, x, y, &ep)?,
                    Current::Sparse(op) => vec![op.prepare(ctx, x, y, &ep)?],
                    Current::MaskedDense(w, _) => gemm::prepare_layer(ctx, w, x, y, &ep)?,
                    Current::Dense => gemm::prepare_layer(ctx, &p.dense, x, y, &ep)?,
                };
                if let (Some(t), false) = (p.residual, pre_activation) {
                    let r = tensors
                        .get(t)
                        .ok_or_else(|| Error::Shape(format!("residual tensor {t} does not exist")))?;
                    v.push(elementwise::prepare_add(ctx, y.buffer(), r.buffer())?);
                }
                v
            }
        })
    }

    pub(super) fn rebuild(&mut self, ctx: &Context) -> Result<()> {
        let mut plan = Vec::new();
        let mut ranges = Vec::new();
        for i in 0..self.layers.len() {
            let start = plan.len();
            plan.extend(self.layer_dispatches(ctx, i)?);
            ranges.push(start..plan.len());
        }
        self.plan = plan;
        self.ranges = ranges;
        Ok(())
    }

    /// Writes a preprocessed image `[3, H*W]` into the input tensor.
    pub fn set_input(&self, ctx: &Context, x: &[f32]) -> Result<()> {
        self.write_input(ctx, &self.tensors[0], x)
    }

    /// Writes a preprocessed image into `t0` (an input tensor of the model's shape).
    pub(super) fn write_input(&self, ctx: &Context, t0: &GpuMatrix, x: &[f32]) -> Result<()> {
        if x.len() != t0.rows() * t0.cols() {
            return Err(Error::Shape(format!(
                "input has {} values, the network takes {} ({})",
                x.len(),
                t0.rows() * t0.cols(),
                self.net.input
            )));
        }
        // Written straight into the input tensor in its padded row layout: no
        // staging buffer per forward pass.
        let (cols, stride) = (t0.cols(), t0.stride());
        let mut padded = vec![0.0f32; t0.rows() * stride];
        for (dst, src) in padded.chunks_exact_mut(stride).zip(x.chunks_exact(cols.max(1))) {
            dst[..cols].copy_from_slice(src);
        }
        ctx.queue()
            .write_buffer(t0.buffer().raw(), 0, bytemuck::cast_slice(&padded));
        Ok(())
    }

    /// Runs the whole network (one submission) on the current input.
    pub fn submit(&self, ctx: &Context) {
        let refs: Vec<&Dispatch> = self.plan.iter().collect();
        ctx.submit(&refs);
    }

    /// Logits for a preprocessed image.
    pub async fn forward(&self, ctx: &Context, x: &[f32]) -> Result<Vec<f32>> {
        self.set_input(ctx, x)?;
        self.submit(ctx);
        Ok(self
            .tensors
            .last()
            .expect("logits tensor")
            .download(ctx)
            .await?
            .into_data())
    }

    /// Logits of the DENSE model for a preprocessed image, whatever the current
    /// prune (the activations are shared, so this and [`Self::forward`] run one at a time).
    pub async fn forward_dense(&self, ctx: &Context, x: &[f32]) -> Result<Vec<f32>> {
        self.set_input(ctx, x)?;
        let refs: Vec<&Dispatch> = self.dense_plan.iter().collect();
        ctx.submit(&refs);
        Ok(self
            .tensors
            .last()
            .expect("logits tensor")
            .download(ctx)
            .await?
            .into_data())
    }

    /// Top-`k` classes of RGBA pixels (a browser `ImageData`), with the
    /// pruned model or, when `dense`, the unpruned one. The time is wall-clock
    /// ms of the forward pass alone (upload, GPU, read-back of the logits).
    pub async fn classify_rgba(
        &self,
        ctx: &Context,
        rgba: &[u8],
        width: usize,
        height: usize,
        k: usize,
        dense: bool,
    ) -> Result<Classification> {
        let x = super::preprocess::preprocess_rgba(rgba, width, height, self.net.input.h)?;
        let t0 = now_ms();
        let logits = if dense {
            self.forward_dense(ctx, &x).await?
        } else {
            self.forward(ctx, &x).await?
        };
        let ms = now_ms() - t0;
        Ok(Classification {
            top: super::classes::top_k(&logits, k),
            ms,
        })
    }

    /// Every tensor after a forward pass (index 0 the input), for comparisons
    /// with the CPU reference layer by layer.
    pub async fn forward_all(&self, ctx: &Context, x: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.set_input(ctx, x)?;
        self.submit(ctx);
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            out.push(t.download(ctx).await?.into_data());
        }
        Ok(out)
    }

    /// GPU time of the whole forward pass (one pass per run).
    pub async fn latency(&self, ctx: &Context, warmup: usize, runs: usize) -> Result<Timings> {
        let refs: Vec<&Dispatch> = self.plan.iter().collect();
        ctx.time(&refs, warmup, runs).await
    }

    /// GPU time of each layer alone: `(name, kernel, timings)`.
    pub async fn layer_latency(&self, ctx: &Context, warmup: usize, runs: usize) -> Result<Vec<(String, Timings)>> {
        let mut out = Vec::new();
        for (i, r) in self.ranges.iter().enumerate() {
            let refs: Vec<&Dispatch> = self.plan[r.clone()].iter().collect();
            out.push((self.net.layers[i].name.clone(), ctx.time(&refs, warmup, runs).await?));
        }
        Ok(out)
    }

    /// Indices (into `net().layers`) of the prunable layers, in network order.
    pub fn prunable_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| matches!(self.layers[i], GpuLayer::Prunable(_)))
            .collect()
    }

    /// The weights layer `i` currently multiplies by, as a dense `[cout, cin]`
    /// matrix (pruned entries zero): for views of the mask. Errors for a layer
    /// that is not prunable.
    pub async fn current_weights(&self, ctx: &Context, i: usize) -> Result<crate::sparse::Matrix> {
        match self.layers.get(i) {
            Some(GpuLayer::Prunable(p)) => match &p.current {
                Current::Dense => p.dense.download(ctx).await,
                Current::MaskedDense(w, _) => w.download(ctx).await,
                Current::Sparse(op) => op.to_dense(ctx).await,
            },
            Some(_) => Err(Error::Shape(format!(
                "layer {i} ({}) is not prunable",
                self.net.layers[i].name
            ))),
            None => Err(Error::Shape(format!(
                "layer {i} does not exist (the model has {})",
                self.layers.len()
            ))),
        }
    }

    /// Builds the model from safetensors bytes: the original checkpoint, or a
    /// sparse file ([`super::sparse_file`]) whose pruned layers are uploaded in
    /// their stored compressed format (no pruning, no calibration) and run by
    /// `dispatching`. The second value is the per-layer report of a sparse file.
    /// For a sparse file the "dense" model is the pruned network run densely.
    pub async fn from_safetensors(
        ctx: &Context,
        bytes: &[u8],
        dispatching: KernelPolicy,
    ) -> Result<(Self, Option<ModelReport>)> {
        let t0 = now_ms();
        let weights = super::Weights::from_bytes(bytes)?;
        let net = Lite0::from_weights(&weights, super::INPUT_SIZE, super::INPUT_SIZE)?;
        let mut me = Self::new(ctx, net)?;
        let Some(info) = weights.prune_info()? else {
            return Ok((me, None));
        };
        let mut reports = Vec::new();
        for i in me.prunable_layers() {
            let (key, rows, cols) = {
                let GpuLayer::Prunable(p) = &me.layers[i] else {
                    continue;
                };
                (me.net.layers[i].key.clone(), p.dense.rows(), p.dense.cols())
            };
            let Some(sp) = weights.sparse(&format!("{key}.weight"), rows, cols)? else {
                return Err(Error::Weights(format!(
                    "sparse file without the compressed weights of {key} ({})",
                    info.pattern
                )));
            };
            let kept = match &sp {
                crate::sparse::SparseMatrix::Csr(c) => c.nnz(),
                crate::sparse::SparseMatrix::Bsr(b) => b.nnz_blocks() * b.block_rows() * b.block_cols(),
                crate::sparse::SparseMatrix::Nm(n) => n.values().len(),
                crate::sparse::SparseMatrix::Dense(_) => rows * cols,
            }
            .min(rows * cols);
            let report = crate::prune::TensorReport {
                name: key,
                rows,
                cols,
                pattern: info.pattern,
                target: match info.pattern {
                    Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
                    _ => info.sparsity,
                },
                achieved: 1.0 - kept as f64 / (rows * cols).max(1) as f64,
                kept,
            };
            let op = SparseOperator::from_sparse(ctx, &sp, report)?;
            reports.push(me.install(ctx, i, op, info.pattern, dispatching).await?);
        }
        me.rebuild(ctx)?;
        let report = ModelReport {
            layers: reports,
            prune_ms: now_ms() - t0,
            untouched: "loaded pruned from the file (stem and depthwise layers dense)".into(),
            criterion: info.criterion.parse().unwrap_or_default(),
            bias_correction: info.bias_correction,
            renorm: info.renorm,
            calibration_images: info.calibration_images,
        };
        Ok((me, Some(report)))
    }

    /// The network as it currently computes, on the CPU: each prunable layer's
    /// current (pruned) weights and the bias it runs with. For the CPU
    /// reference and for writing sparse files.
    pub async fn current_net(&self, ctx: &Context) -> Result<Lite0> {
        let mut net = self.net.clone();
        for (l, g) in net.layers.iter_mut().zip(&self.layers) {
            if let GpuLayer::Conv { renormed: Some(r), .. } | GpuLayer::Depthwise { renormed: Some(r), .. } = g {
                match &mut l.op {
                    Op::Conv(c) => {
                        c.weight = crate::sparse::Matrix::new(c.weight.rows(), c.weight.cols(), r.weight.clone())?;
                        c.bias = r.bias.clone();
                    }
                    Op::Depthwise(d) => {
                        d.weight = crate::sparse::Matrix::new(d.weight.rows(), d.weight.cols(), r.weight.clone())?;
                        d.bias = r.bias.clone();
                    }
                    _ => {}
                }
            }
        }
        for i in self.prunable_layers() {
            let w = self.current_weights(ctx, i).await?;
            let GpuLayer::Prunable(p) = &self.layers[i] else {
                continue;
            };
            let bias: Vec<f32> = p.bias_in_use().read(ctx).await?;
            let layer = &mut net.layers[i];
            match &mut layer.op {
                Op::Pointwise(pw) => {
                    pw.weight = w;
                    pw.bias = bias[..pw.cout].to_vec();
                }
                Op::Classifier(c) => {
                    let n = c.bias.len();
                    c.weight = w;
                    c.bias = bias[..n].to_vec();
                }
                _ => {}
            }
        }
        Ok(net)
    }

    /// Back to the dense model (exact: the dense weights never change).
    pub fn reset(&mut self, ctx: &Context) -> Result<()> {
        for l in &mut self.layers {
            match l {
                GpuLayer::Prunable(p) => {
                    p.current = Current::Dense;
                    p.bias_corrected = false;
                }
                GpuLayer::Conv { renormed, .. } | GpuLayer::Depthwise { renormed, .. } => *renormed = None,
                GpuLayer::Pool { .. } => {}
            }
        }
        self.rebuild(ctx)
    }

    /// Prunes every pointwise layer, the head and the classifier on the GPU
    /// (the stem and the depthwise layers stay dense) and re-plans.
    pub async fn prune(&mut self, ctx: &Context, spec: &PruneSpec) -> Result<ModelReport> {
        let t0 = now_ms();
        let idx = self.prunable_layers();
        if let Some(v) = &spec.layer_sparsity {
            if v.len() != idx.len() {
                return Err(Error::Invalid(format!(
                    "{} per-layer sparsities for {} prunable layers",
                    v.len(),
                    idx.len()
                )));
            }
            for &x in v {
                crate::error::check_sparsity(x)?;
            }
            if spec.scope == Scope::Global {
                return Err(Error::Invalid(
                    "per-layer sparsities and the global scope exclude each other".into(),
                ));
            }
        }
        let sparsity_of = |k: usize| spec.layer_sparsity.as_ref().map_or(spec.sparsity, |v| v[k]);
        let nothing = match &spec.layer_sparsity {
            Some(v) => v.iter().all(|&x| x == 0.0),
            None => spec.sparsity == 0.0 && !matches!(spec.pattern, Pattern::NM { .. }),
        };
        if spec.pattern == Pattern::Dense || nothing {
            crate::error::check_sparsity(spec.sparsity)?;
            self.reset(ctx)?;
            return Ok(ModelReport {
                untouched: "dense: nothing pruned".into(),
                ..Default::default()
            });
        }
        crate::error::check_sparsity(spec.sparsity)?;
        if spec.scope == Scope::Global && spec.pattern != Pattern::Unstructured {
            return Err(Error::Invalid(format!(
                "global scope needs the unstructured pattern, not {}",
                spec.pattern
            )));
        }
        if (spec.criterion == Criterion::Activation || spec.bias_correction || spec.renorm) && self.calibrated_on == 0 {
            return Err(Error::Invalid(
                "the activation criterion, bias correction and re-normalization need calibration images: \
                 calibrate the model first"
                    .into(),
            ));
        }
        // A re-normalization of the convolutions belongs to the prune that made it.
        for l in &mut self.layers {
            if let GpuLayer::Conv { renormed, .. } | GpuLayer::Depthwise { renormed, .. } = l {
                *renormed = None;
            }
        }
        let scored = spec.criterion == Criterion::Activation;
        // The layers this prune touches (per-layer sparsity 0: stays dense).
        let all = idx;
        let idx: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|&(k, _)| spec.layer_sparsity.is_none() || sparsity_of(k) > 0.0)
            .map(|(_, &i)| i)
            .collect();
        for (k, &i) in all.iter().enumerate() {
            if spec.layer_sparsity.is_some() && sparsity_of(k) == 0.0 {
                if let GpuLayer::Prunable(p) = &mut self.layers[i] {
                    p.current = Current::Dense;
                    p.bias_corrected = false;
                }
            }
        }
        let layer_target = |i: usize| {
            let k = all.iter().position(|&j| j == i).unwrap_or(0);
            sparsity_of(k)
        };
        fn score_of(p: &Prunable, scored: bool) -> Option<&GpuMatrix> {
            match (&p.calib, scored) {
                (Some(c), true) => Some(&c.score),
                _ => None,
            }
        }
        // Global: one threshold over all prunable layers, then per-layer CSR.
        let mut global = if spec.scope == Scope::Global {
            let ps: Vec<&Prunable> = idx
                .iter()
                .filter_map(|&i| match &self.layers[i] {
                    GpuLayer::Prunable(p) => Some(p.as_ref()),
                    _ => None,
                })
                .collect();
            let ws: Vec<&GpuMatrix> = ps.iter().map(|p| &p.dense).collect();
            let scores: Option<Vec<&GpuMatrix>> = ps.iter().map(|p| score_of(p, scored)).collect();
            let plan = crate::gpu::PrunePlan::global_scored(ctx, &ws, scores.as_deref(), spec.sparsity)?;
            let csrs = plan.run(ctx).await?;
            let ptrs: Vec<&crate::gpu::GpuBuffer> = csrs.iter().map(|c| &c.row_ptr).collect();
            let words = crate::gpu::read_many(ctx, &ptrs).await?;
            Some(csrs.into_iter().zip(words))
        } else {
            None
        };
        // Per layer: every layer's pruning plan recorded into ONE submission,
        // then the results collected (no GPU round trip per layer).
        let mut plans = if global.is_none() {
            let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("prune model"),
            });
            let mut plans = Vec::with_capacity(idx.len());
            for &i in &idx {
                let GpuLayer::Prunable(p) = &self.layers[i] else {
                    continue;
                };
                let plan = LayerPlan::new(ctx, &p.dense, score_of(p, scored), spec.pattern, layer_target(i))?;
                plan.encode(&mut enc);
                plans.push(plan);
            }
            ctx.queue().submit([enc.finish()]);
            // Every layer's status (and CSR row pointers) in ONE read-back.
            let bufs: Vec<&crate::gpu::GpuBuffer> = plans.iter().flat_map(|p| p.readbacks()).collect();
            let mut words = crate::gpu::read_many(ctx, &bufs).await?.into_iter();
            let per_plan: Vec<Vec<Vec<u32>>> = plans
                .iter()
                .map(|p| words.by_ref().take(p.readbacks().len()).collect())
                .collect();
            Some(plans.into_iter().zip(per_plan))
        } else {
            None
        };
        let mut reports = Vec::with_capacity(idx.len());
        let mut corrections = Vec::new();
        for &i in &idx {
            let GpuLayer::Prunable(p) = &self.layers[i] else {
                continue;
            };
            let op = match (global.as_mut(), plans.as_mut()) {
                (Some(it), _) => {
                    let (csr, row_ptr) = it
                        .next()
                        .ok_or_else(|| Error::Gpu("global pruning returned too few tensors".into()))?;
                    let (rows, cols) = (csr.rows, csr.cols);
                    let w = crate::gpu::spmm_csr::CsrWeights::from_gpu(ctx, csr, &row_ptr)?;
                    SparseOperator::from_gpu_weights(
                        crate::ops::GpuWeights::Csr(w),
                        rows,
                        cols,
                        Pattern::Unstructured,
                        spec.sparsity,
                    )
                }
                (None, Some(it)) => {
                    let (plan, words) = it
                        .next()
                        .ok_or_else(|| Error::Gpu("a layer has no pruning plan".into()))?;
                    plan.finish_read(
                        ctx,
                        &words,
                        p.dense.rows(),
                        p.dense.cols(),
                        spec.pattern,
                        layer_target(i),
                    )
                    .await?
                }
                (None, None) => unreachable!("either global or per-layer plans exist"),
            };
            if spec.bias_correction {
                let c = p
                    .calib
                    .as_ref()
                    .ok_or_else(|| Error::Invalid(format!("layer {i} has no calibration statistics")))?;
                corrections.push(op.prepare(ctx, &c.mean_x, &c.yp, &Epilogue::default())?);
                corrections.push(prepare_bias_correct(ctx, &p.bias, &c.yd, &c.yp, &c.corrected)?);
            }
            reports.push(self.install(ctx, i, op, spec.pattern, spec.dispatching).await?);
            if let GpuLayer::Prunable(p) = &mut self.layers[i] {
                p.bias_corrected = spec.bias_correction;
            }
        }
        if !corrections.is_empty() {
            let refs: Vec<&Dispatch> = corrections.iter().collect();
            ctx.submit(&refs);
        }
        if spec.renorm {
            self.renormalize(ctx, spec).await?;
        }
        self.rebuild(ctx)?;
        let prune_ms = now_ms() - t0;
        Ok(ModelReport {
            layers: reports,
            prune_ms,
            untouched: "stem and depthwise layers stay dense".into(),
            criterion: spec.criterion,
            bias_correction: spec.bias_correction,
            renorm: spec.renorm,
            calibration_images: if scored || spec.bias_correction || spec.renorm {
                self.calibrated_on
            } else {
                0
            },
        })
    }

    /// Makes prunable layer `i` run `op` (its sparse kernel, or the dense
    /// kernel on the pruned weights where that measured faster) and reports it.
    async fn install(
        &mut self,
        ctx: &Context,
        i: usize,
        op: SparseOperator,
        pattern: Pattern,
        dispatching: KernelPolicy,
    ) -> Result<LayerReport> {
        let GpuLayer::Prunable(p) = &self.layers[i] else {
            return Err(Error::Invalid(format!("layer {i} is not prunable")));
        };
        let layer = &self.net.layers[i];
        let (cout, cin, px) = (p.dense.rows(), p.dense.cols(), layer.output.hw());
        let (dense_ms, sparse_ms, use_sparse) = match dispatching {
            KernelPolicy::Sparse => (None, None, true),
            KernelPolicy::Fastest => {
                // Dense first: it runs on a tie.
                let key = TuneKey::new(Family::ModelLayer, cout, cin, px, pattern, op.report.achieved);
                let candidates = ["gemm", op.weights.kernel_name()];
                let c = self
                    .tuner
                    .choose(key, &candidates, || async {
                        let (d, s) = self.measure_layer(ctx, i, &op).await?;
                        Ok(vec![d, s])
                    })
                    .await?;
                (c.ms(0), c.ms(1), c.pick == 1)
            }
        };
        let report = LayerReport {
            name: layer.name.clone(),
            shape: (cout, cin, px),
            pattern,
            target: op.report.target,
            achieved: op.report.achieved,
            dense_bytes: op.dense_bytes,
            sparse_bytes: op.bytes,
            dense_ms,
            sparse_ms,
            kernel: if use_sparse { op.weights.kernel_name() } else { "gemm" },
        };
        let current = if use_sparse {
            Current::Sparse(Box::new(op))
        } else {
            // Dense is faster here: run it on the PRUNED weights.
            let masked = op.to_dense(ctx).await?;
            Current::MaskedDense(GpuMatrix::upload(ctx, &masked, &layer.name)?, pattern)
        };
        if let GpuLayer::Prunable(p) = &mut self.layers[i] {
            p.current = current;
        }
        Ok(report)
    }

    /// Median GPU ms of layer `i` with its dense kernel and with `op`.
    async fn measure_layer(&self, ctx: &Context, i: usize, op: &SparseOperator) -> Result<(f64, f64)> {
        let GpuLayer::Prunable(p) = &self.layers[i] else {
            return Err(Error::Shape("not a prunable layer".into()));
        };
        let (x, y) = (&self.tensors[i], &self.tensors[i + 1]);
        let ep = Epilogue {
            bias: Some(&p.bias),
            act: p.act,
        };
        let dense = gemm::prepare_layer(ctx, &p.dense, x, y, &ep)?;
        let sparse = op.prepare(ctx, x, y, &ep)?;
        // A few untimed runs of each, without the long warm-up of `time`: the
        // model has just run, so the GPU is at speed, and a re-prune must stay fast.
        let runs = 15;
        let dense: Vec<&Dispatch> = dense.iter().collect();
        let mut both = dense.clone();
        both.push(&sparse);
        for _ in 0..3 {
            ctx.submit(&both);
        }
        let d = ctx.time(&dense, 0, runs).await?.median_ms();
        let s = ctx.time(&[&sparse], 0, runs).await?.median_ms();
        Ok((d, s))
    }
}
