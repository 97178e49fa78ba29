use super::Context;

/// Which of wgpu's runtime shader checks are compiled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShaderChecks {
    /// wgpu's defaults: bounds checks and forced loop bounding (always in browsers).
    All,
    /// Bounds checks, no loop bounding (native default: on an H100 the bounds
    /// checks cost nothing measurable, loop bounding cost 20x).
    Bounds,
    /// Neither.
    None,
}

impl ShaderChecks {
    /// The native default (`Bounds`), or `WGSPARSE_SHADER_CHECKS=all|bounds|none`.
    pub fn from_env() -> Self {
        if cfg!(target_arch = "wasm32") {
            return ShaderChecks::All;
        }
        match std::env::var("WGSPARSE_SHADER_CHECKS").as_deref() {
            Ok("all") => ShaderChecks::All,
            Ok("none") => ShaderChecks::None,
            _ => ShaderChecks::Bounds,
        }
    }
}

/// How a kernel uses one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    Storage { read_only: bool },
}

/// Every compute kernel of the crate: its WGSL file, entry point and bindings.
/// The bind-group layout is written out here, not inferred, so a shader edit
/// that changes bindings fails loudly in the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `elementwise.wgsl`: fill a buffer with one value (poisoning, zeroing).
    Fill,
    /// `elementwise.wgsl`: `dst += src` (residual connections).
    Add,
    /// `elementwise.wgsl`, entry `add_f16`: [`Kernel::Add`] over f16 activations.
    AddF16,
    /// `gemm.wgsl`: dense `Y = act(W X + bias)`.
    Gemm,
    /// `gemm.wgsl`, entry `gemm_reduce`: sums the split-K partials of
    /// [`Kernel::Gemm`], epilogue.
    GemmReduce,
    /// `gemm.wgsl`, entry `gemm_skinny`: the same for X with at most 16 columns.
    GemmSkinny,
    /// `spmm_bsr.wgsl`: block-sparse `Y = act(W_bsr X + bias)`.
    SpmmBsr,
    /// `gemm_f16.wgsl`: [`Kernel::Gemm`] with f16 storage, f32 accumulation.
    GemmF16,
    /// `gemm_f16.wgsl`, entry `gemm_f16_reduce`: sums the split-K partials of
    /// [`Kernel::GemmF16`], epilogue, f16 output.
    GemmF16Reduce,
    /// `gemm_f16.wgsl`, entry `gemm_skinny_f16`: [`Kernel::GemmSkinny`] in f16 storage.
    GemmSkinnyF16,
    /// `spmm_bsr_f16.wgsl`: [`Kernel::SpmmBsr`] with f16 storage, f32 accumulation.
    SpmmBsrF16,
    /// `conv.wgsl`: dense convolution (the stem).
    Conv2d,
    /// `conv.wgsl`: depthwise convolution.
    Depthwise,
    /// `conv.wgsl`: global average pooling.
    AvgPool,
    /// `conv.wgsl` with f16 activations (f32 weights, bias and sums): the stem.
    Conv2dF16,
    /// `conv.wgsl` with f16 activations: depthwise convolution.
    DepthwiseF16,
    /// `conv.wgsl` with f16 activations: global average pooling.
    AvgPoolF16,
    /// `spmm_nm.wgsl`: N:M SpMM, X staged per K chunk, register-tiled (large N).
    SpmmNmTiled,
    /// `spmm_nm.wgsl`: N:M SpMM, threads of a row split its slots (small N).
    SpmmNmRows,
    /// `spmm_csr.wgsl`: CSR SpMM, threads of a row split its non-zeros (small N).
    SpmmCsrRows,
    /// `prune_nm.wgsl`: N:M selection and packing in one pass.
    PruneNm,
    /// `prune_block.wgsl`: block scores (L2/L1).
    BlockScores,
    /// `prune_block.wgsl`: copy the kept blocks (zero-padded) into BSR values.
    BlockValues,
    /// `prune_block.wgsl`: block rows longest first.
    BlockRowOrder,
    /// `prune_select.wgsl`: per-workgroup radix histograms of |w| digits.
    RadixHistogram,
    /// `prune_select.wgsl`: pick the digit bin holding the k-th key.
    RadixScan,
    /// `prune_select.wgsl`: per-chunk counts of keys equal to / above the threshold.
    SelectCount,
    /// `prune_select.wgsl`: scan of the chunk counts (equal ranks, output offsets).
    SelectChunkScan,
    /// `prune_select.wgsl`: tie rule and CSR compaction.
    SelectScatter,
    /// `spmm_csr_rowwise.wgsl`: CSR SpMM, rows in lock step per thread, X read
    /// straight from memory (large N).
    SpmmCsrRowwise,
    /// `spmm_csr_pack.wgsl`: the row-wise kernel's packed non-zeros.
    SpmmCsrPack,
    /// `spmm_nm.wgsl`: N:M SpMM, X in registers, one subgroup-uniform branch per
    /// row and group on the group's pattern (large N, n <= 2, m <= 8).
    SpmmNmSwitch,
    /// `calibrate.wgsl`: per-row sum and sum of squares, accumulated.
    RowStats,
    /// `calibrate.wgsl`: |w| times a per-column norm (activation-aware scores).
    ScoreCols,
    /// `calibrate.wgsl`: bias + W * mean - W' * mean.
    BiasCorrect,
    /// `calibrate.wgsl`: each row times its scale.
    ScaleRows,
    /// `gemm_coop.wgsl`: [`Kernel::GemmF16`] on cooperative matrices (native only).
    GemmCoop,
    /// `spmm_bsr_coop.wgsl`: [`Kernel::SpmmBsrF16`] on cooperative matrices, 16x16
    /// and 32x32 blocks (native only).
    SpmmBsrCoop,
    /// `spmm_nm_coop.wgsl`: 2:4 and 1:2 SpMM in f16 storage on cooperative matrices, W
    /// expanded to dense tiles in workgroup memory (native only).
    SpmmNmCoop,
    /// `spmm_nm_f16.wgsl`: the same on shader cores (its fallback, portable).
    SpmmNmF16,
    /// `train.wgsl`: general strided GEMM with split-K and epilogue (training).
    TrGemm,
    /// `train.wgsl`: sum of split-K slices.
    TrReduce,
    /// `train.wgsl`: scaled row sums (bias gradients, average pooling).
    TrRowsum,
    /// `train.wgsl`: backward of average pooling, with the ReLU6 gate.
    TrBcast,
    /// `train.wgsl`: backward of ReLU6 from its output, in place.
    TrGate,
    /// `train.wgsl`: batched dense/depthwise convolution.
    TrConv,
    /// `train.wgsl`: input gradient of a depthwise convolution.
    TrDwBwdX,
    /// `train.wgsl`: weight and bias gradients of a convolution (per slice).
    TrConvBwdW,
    /// `train.wgsl`: sum of the slices of [`Kernel::TrConvBwdW`] into the gradients.
    TrConvReduce,
    /// `train.wgsl`: distillation loss (KL to the teacher) and its gradient.
    TrKd,
    /// `train.wgsl`: feature-matching loss and its gradient.
    TrFeat,
    /// `train.wgsl`: masked AdamW step.
    TrAdam,
    /// `train.wgsl`: dense mask from CSR.
    TrMaskCsr,
    /// `train.wgsl`: dense mask from BSR.
    TrMaskBsr,
    /// `train.wgsl`: dense mask from N:M.
    TrMaskNm,
    /// `train.wgsl`: weights and Adam moments times a mask.
    TrMaskApply,
    /// `train.wgsl`: augmented training batch from packed RGBA sources.
    TrAugment,
}

const RO: Binding = Binding::Storage { read_only: true };
const RW: Binding = Binding::Storage { read_only: false };

const CONV_SOURCE: &str = include_str!("../../shaders/conv.wgsl");
/// The line of `conv.wgsl` that makes its activations f32.
const CONV_F32_LINE: &str = "alias T = f32;";

/// `conv.wgsl` with f16 activations: its storage-type line replaced (the
/// first declaration of the file, so the `enable` stays in front).
fn conv_f16_source() -> &'static str {
    static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SRC.get_or_init(|| {
        assert!(
            CONV_SOURCE.contains(CONV_F32_LINE),
            "conv.wgsl lost its storage-type line {CONV_F32_LINE:?}"
        );
        CONV_SOURCE.replacen(CONV_F32_LINE, "enable f16;\nalias T = f16;", 1)
    })
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Fill => "fill",
            Kernel::Add => "add",
            Kernel::AddF16 => "add_f16",
            Kernel::Gemm => "gemm",
            Kernel::GemmReduce => "gemm_reduce",
            Kernel::GemmSkinny => "gemm_skinny",
            Kernel::SpmmBsr => "spmm_bsr",
            Kernel::GemmF16 => "gemm_f16",
            Kernel::GemmF16Reduce => "gemm_f16_reduce",
            Kernel::GemmSkinnyF16 => "gemm_skinny_f16",
            Kernel::SpmmBsrF16 => "spmm_bsr_f16",
            Kernel::Conv2d => "conv2d",
            Kernel::Depthwise => "depthwise",
            Kernel::AvgPool => "avgpool",
            Kernel::Conv2dF16 => "conv2d_f16",
            Kernel::DepthwiseF16 => "depthwise_f16",
            Kernel::AvgPoolF16 => "avgpool_f16",
            Kernel::SpmmNmTiled => "spmm_nm_tiled",
            Kernel::SpmmNmRows => "spmm_nm_rows",
            Kernel::SpmmCsrRows => "spmm_csr_rows",
            Kernel::PruneNm => "prune_nm",
            Kernel::BlockScores => "block_scores",
            Kernel::BlockValues => "block_values",
            Kernel::BlockRowOrder => "block_row_order",
            Kernel::RadixHistogram => "radix_histogram",
            Kernel::RadixScan => "radix_scan",
            Kernel::SelectCount => "select_count",
            Kernel::SelectChunkScan => "select_chunk_scan",
            Kernel::SelectScatter => "select_scatter",
            Kernel::SpmmCsrRowwise => "spmm_csr_rowwise",
            Kernel::SpmmCsrPack => "spmm_csr_pack",
            Kernel::SpmmNmSwitch => "spmm_nm_switch",
            Kernel::RowStats => "row_stats",
            Kernel::ScoreCols => "score_cols",
            Kernel::BiasCorrect => "bias_correct",
            Kernel::ScaleRows => "scale_rows",
            Kernel::GemmCoop => "gemm_coop",
            Kernel::SpmmBsrCoop => "spmm_bsr_coop",
            Kernel::SpmmNmCoop => "spmm_nm_coop",
            Kernel::SpmmNmF16 => "spmm_nm_f16",
            Kernel::TrGemm => "tr_gemm",
            Kernel::TrReduce => "tr_reduce",
            Kernel::TrRowsum => "tr_rowsum",
            Kernel::TrBcast => "tr_bcast",
            Kernel::TrGate => "tr_gate",
            Kernel::TrConv => "tr_conv",
            Kernel::TrDwBwdX => "tr_dw_bwd_x",
            Kernel::TrConvBwdW => "tr_conv_bwd_w",
            Kernel::TrConvReduce => "tr_conv_reduce",
            Kernel::TrKd => "tr_kd",
            Kernel::TrFeat => "tr_feat",
            Kernel::TrAdam => "tr_adam",
            Kernel::TrMaskCsr => "tr_mask_csr",
            Kernel::TrMaskBsr => "tr_mask_bsr",
            Kernel::TrMaskNm => "tr_mask_nm",
            Kernel::TrMaskApply => "tr_mask_apply",
            Kernel::TrAugment => "tr_augment",
        }
    }
    /// The WGSL source (one file per kernel family under `shaders/`).
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Fill | Kernel::Add | Kernel::AddF16 => include_str!("../../shaders/elementwise.wgsl"),
            Kernel::Gemm | Kernel::GemmReduce | Kernel::GemmSkinny => include_str!("../../shaders/gemm.wgsl"),
            Kernel::SpmmBsr => include_str!("../../shaders/spmm_bsr.wgsl"),
            Kernel::GemmF16 | Kernel::GemmF16Reduce | Kernel::GemmSkinnyF16 => {
                include_str!("../../shaders/gemm_f16.wgsl")
            }
            Kernel::SpmmBsrF16 => include_str!("../../shaders/spmm_bsr_f16.wgsl"),
            Kernel::Conv2d | Kernel::Depthwise | Kernel::AvgPool => CONV_SOURCE,
            Kernel::Conv2dF16 | Kernel::DepthwiseF16 | Kernel::AvgPoolF16 => conv_f16_source(),
            Kernel::SpmmNmTiled | Kernel::SpmmNmRows | Kernel::SpmmNmSwitch => {
                include_str!("../../shaders/spmm_nm.wgsl")
            }
            Kernel::PruneNm => include_str!("../../shaders/prune_nm.wgsl"),
            Kernel::BlockScores | Kernel::BlockValues | Kernel::BlockRowOrder => {
                include_str!("../../shaders/prune_block.wgsl")
            }
            Kernel::RadixHistogram
            | Kernel::RadixScan
            | Kernel::SelectCount
            | Kernel::SelectChunkScan
            | Kernel::SelectScatter => include_str!("../../shaders/prune_select.wgsl"),
            Kernel::SpmmCsrRows => include_str!("../../shaders/spmm_csr.wgsl"),
            Kernel::SpmmCsrRowwise => include_str!("../../shaders/spmm_csr_rowwise.wgsl"),
            Kernel::SpmmCsrPack => include_str!("../../shaders/spmm_csr_pack.wgsl"),
            Kernel::RowStats | Kernel::ScoreCols | Kernel::BiasCorrect | Kernel::ScaleRows => {
                include_str!("../../shaders/calibrate.wgsl")
            }
            Kernel::GemmCoop => include_str!("../../shaders/gemm_coop.wgsl"),
            Kernel::SpmmBsrCoop => include_str!("../../shaders/spmm_bsr_coop.wgsl"),
            Kernel::SpmmNmCoop => include_str!("../../shaders/spmm_nm_coop.wgsl"),
            Kernel::SpmmNmF16 => include_str!("../../shaders/spmm_nm_f16.wgsl"),
            Kernel::TrGemm
            | Kernel::TrReduce
            | Kernel::TrRowsum
            | Kernel::TrBcast
            | Kernel::TrGate
            | Kernel::TrConv
            | Kernel::TrDwBwdX
            | Kernel::TrConvBwdW
            | Kernel::TrConvReduce
            | Kernel::TrKd
            | Kernel::TrFeat
            | Kernel::TrAdam
            | Kernel::TrMaskCsr
            | Kernel::TrMaskBsr
            | Kernel::TrMaskNm
            | Kernel::TrMaskApply
            | Kernel::TrAugment => include_str!("../../shaders/train.wgsl"),
        }
    }
    /// The entry point: the kernel's name, except for the f16 convolutions
    /// (the same entry points of `conv.wgsl` compiled with f16 activations).
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::Conv2dF16 => "conv2d",
            Kernel::DepthwiseF16 => "depthwise",
            Kernel::AvgPoolF16 => "avgpool",
            k => k.name(),
        }
    }
    /// True for the kernels whose WGSL says `enable f16;` (they need the
    /// adapter's shader-f16 feature).
    pub fn needs_f16(self) -> bool {
        matches!(
            self,
            Kernel::GemmF16
                | Kernel::GemmF16Reduce
                | Kernel::GemmSkinnyF16
                | Kernel::SpmmBsrF16
                | Kernel::GemmCoop
                | Kernel::SpmmBsrCoop
                | Kernel::Conv2dF16
                | Kernel::DepthwiseF16
                | Kernel::AvgPoolF16
        ) || matches!(self, Kernel::SpmmNmCoop | Kernel::SpmmNmF16)
    }
    /// True for the kernels whose WGSL says `enable wgpu_cooperative_matrix;`
    /// (native only: they need the adapter's cooperative matrices and subgroups).
    pub fn needs_coop(self) -> bool {
        matches!(self, Kernel::GemmCoop | Kernel::SpmmBsrCoop | Kernel::SpmmNmCoop)
    }
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::Fill => &[Binding::Uniform, RW],
            Kernel::Add | Kernel::AddF16 => &[Binding::Uniform, RW, RO],
            Kernel::GemmSkinny | Kernel::GemmSkinnyF16 | Kernel::GemmCoop => &[Binding::Uniform, RO, RO, RW, RO],
            // params, w, x, y, bias, split-K partials
            Kernel::Gemm | Kernel::GemmReduce | Kernel::GemmF16 | Kernel::GemmF16Reduce => {
                &[Binding::Uniform, RO, RO, RW, RO, RW]
            }
            Kernel::SpmmBsr | Kernel::SpmmBsrF16 | Kernel::SpmmBsrCoop => {
                &[Binding::Uniform, RO, RO, RO, RO, RO, RW, RO]
            }
            Kernel::Conv2d
            | Kernel::Depthwise
            | Kernel::AvgPool
            | Kernel::Conv2dF16
            | Kernel::DepthwiseF16
            | Kernel::AvgPoolF16 => &[Binding::Uniform, RO, RO, RO, RW],
            // params, values, indices, x, y, bias
            Kernel::SpmmNmTiled | Kernel::SpmmNmRows | Kernel::SpmmNmSwitch => &[Binding::Uniform, RO, RO, RO, RW, RO],
            // params, values, masks, x, y, bias
            Kernel::SpmmNmCoop | Kernel::SpmmNmF16 => &[Binding::Uniform, RO, RO, RO, RW, RO],
            // params, row_ptr, col_idx, values, row_order, x, y, bias
            // params, keys (w or scores), values, indices, status, w
            Kernel::PruneNm => &[Binding::Uniform, RO, RW, RW, RW, RO],
            // params, w, scores, status
            Kernel::BlockScores => &[Binding::Uniform, RO, RW, RW],
            // params, w, col_idx, block_row, values
            Kernel::BlockValues => &[Binding::Uniform, RO, RO, RO, RW],
            // params, row_ptr, row_order
            Kernel::BlockRowOrder => &[Binding::Uniform, RO, RW],
            // params, keys, state, histograms
            Kernel::RadixHistogram => &[Binding::Uniform, RO, RO, RW],
            // params, histograms, state
            Kernel::RadixScan => &[Binding::Uniform, RO, RW],
            // params, keys, state, chunk counts, status
            Kernel::SelectCount => &[Binding::Uniform, RO, RO, RW, RW],
            // params, chunk counts, state, chunk bases
            Kernel::SelectChunkScan => &[Binding::Uniform, RO, RO, RW],
            // params, keys, state, chunk bases, row_ptr, col_idx, values/rows, status, value source
            Kernel::SelectScatter => &[Binding::Uniform, RO, RO, RO, RW, RW, RW, RW, RO],
            Kernel::SpmmCsrRows => &[Binding::Uniform, RO, RO, RO, RO, RO, RW, RO],
            // params, row_ptr, packed non-zeros, row_order, x, y, bias
            Kernel::SpmmCsrRowwise => &[Binding::Uniform, RO, RO, RO, RO, RW, RO],
            // params, col_idx, values, packed non-zeros
            Kernel::SpmmCsrPack => &[Binding::Uniform, RO, RO, RW],
            // params, x, stats
            Kernel::RowStats => &[Binding::Uniform, RO, RW],
            // params, w, norm, scores
            Kernel::ScoreCols => &[Binding::Uniform, RO, RO, RW],
            // params, bias, W * mean, W' * mean, corrected bias
            Kernel::BiasCorrect => &[Binding::Uniform, RO, RO, RO, RW],
            // params, w, per-row scale, scaled copy
            Kernel::ScaleRows => &[Binding::Uniform, RO, RO, RW],
            // params, a, b, c, bias, residual
            Kernel::TrGemm => &[Binding::Uniform, RO, RO, RW, RO, RO],
            // params, source, destination
            Kernel::TrReduce | Kernel::TrRowsum => &[Binding::Uniform, RO, RW],
            // params, source, destination, gate output
            Kernel::TrBcast => &[Binding::Uniform, RO, RW, RO],
            // params, gradient (in place), output
            Kernel::TrGate => &[Binding::Uniform, RW, RO],
            // params, x, w, y, bias
            Kernel::TrConv => &[Binding::Uniform, RO, RO, RW, RO],
            // params, dz, w, dx
            Kernel::TrDwBwdX => &[Binding::Uniform, RO, RO, RW],
            // params, dz, x, partial sums
            Kernel::TrConvBwdW => &[Binding::Uniform, RO, RO, RW],
            // params, partial sums, dw, db
            Kernel::TrConvReduce => &[Binding::Uniform, RO, RW, RW],
            // params, student, teacher, gradient, metrics
            Kernel::TrKd | Kernel::TrFeat => &[Binding::Uniform, RO, RO, RW, RW],
            // params, w, g, m, v, mask, hyper
            Kernel::TrAdam => &[Binding::Uniform, RW, RO, RW, RW, RO, RO],
            // params, row_ptr, col_idx / indices, values, mask
            Kernel::TrMaskCsr | Kernel::TrMaskBsr | Kernel::TrMaskNm => &[Binding::Uniform, RO, RO, RO, RW],
            // params, mask, w, m, v
            Kernel::TrMaskApply => &[Binding::Uniform, RO, RW, RW, RW],
            // params, sources, per-sample parameters, batch
            Kernel::TrAugment => &[Binding::Uniform, RO, RO, RW],
        }
    }

    pub(crate) fn build(
        self,
        ctx: &Context,
        constants: &[(&'static str, u32)],
    ) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let device = ctx.device();
        let name = self.name();
        let entries: Vec<wgpu::BindGroupLayoutEntry> = self
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        Binding::Storage { read_only } => wgpu::BufferBindingType::Storage { read_only: *read_only },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(self.source().into()),
        };
        // The cooperative kernels guard every global access against their
        // uniform and index workgroup memory only with override-bounded loop
        // counters: they drop the index clamping unless all checks are asked
        // for (the clamps sit on every staged element store).
        let checks = match (self.needs_coop(), ctx.shader_checks()) {
            (true, ShaderChecks::Bounds) => ShaderChecks::None,
            (_, c) => c,
        };
        let module = match checks {
            ShaderChecks::All => device.create_shader_module(desc),
            level => {
                let checks = wgpu::ShaderRuntimeChecks {
                    bounds_checks: level == ShaderChecks::Bounds,
                    ..wgpu::ShaderRuntimeChecks::unchecked()
                };
                // SAFETY: every kernel guards its buffer accesses against the
                // shapes in its uniform, and indexes workgroup and private arrays
                // with loop counters bounded by its override constants; the GPU
                // tests run the same modules on lavapipe against CPU references.
                // Loops all terminate (bounded by uniforms), so loop bounding,
                // which costs up to 100x on some drivers (gfx-rs/wgpu#7698), is
                // not needed.
                unsafe { device.create_shader_module_trusted(desc, checks) }
            }
        };
        let consts: Vec<(&str, f64)> = constants.iter().map(|(k, v)| (*k, *v as f64)).collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(self.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &consts,
                // Kernels initialise the workgroup memory they read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        (pipeline, bgl)
    }
}

/// Cache key: the kernel and the values of its `override` constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub constants: Vec<(&'static str, u32)>,
}

impl PipelineKey {
    pub fn new(kernel: Kernel, constants: &[(&'static str, u32)]) -> Self {
        PipelineKey {
            kernel,
            constants: constants.to_vec(),
        }
    }
}
