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
    /// `gemm.wgsl`: dense `Y = act(W X + bias)`.
    Gemm,
    /// `gemm.wgsl`, entry `gemm_skinny`: the same for X with at most 16 columns.
    GemmSkinny,
    /// `spmm_bsr.wgsl`: block-sparse `Y = act(W_bsr X + bias)`.
    SpmmBsr,
    /// `gemm_f16.wgsl`: [`Kernel::Gemm`] with f16 storage, f32 accumulation.
    GemmF16,
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
}

const RO: Binding = Binding::Storage { read_only: true };
const RW: Binding = Binding::Storage { read_only: false };

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Fill => "fill",
            Kernel::Add => "add",
            Kernel::Gemm => "gemm",
            Kernel::GemmSkinny => "gemm_skinny",
            Kernel::SpmmBsr => "spmm_bsr",
            Kernel::GemmF16 => "gemm_f16",
            Kernel::GemmSkinnyF16 => "gemm_skinny_f16",
            Kernel::SpmmBsrF16 => "spmm_bsr_f16",
            Kernel::Conv2d => "conv2d",
            Kernel::Depthwise => "depthwise",
            Kernel::AvgPool => "avgpool",
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
        }
    }
    /// The WGSL source (one file per kernel family under `shaders/`).
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Fill | Kernel::Add => include_str!("../../shaders/elementwise.wgsl"),
            Kernel::Gemm | Kernel::GemmSkinny => include_str!("../../shaders/gemm.wgsl"),
            Kernel::SpmmBsr => include_str!("../../shaders/spmm_bsr.wgsl"),
            Kernel::GemmF16 | Kernel::GemmSkinnyF16 => include_str!("../../shaders/gemm_f16.wgsl"),
            Kernel::SpmmBsrF16 => include_str!("../../shaders/spmm_bsr_f16.wgsl"),
            Kernel::Conv2d | Kernel::Depthwise | Kernel::AvgPool => include_str!("../../shaders/conv.wgsl"),
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
            Kernel::RowStats | Kernel::ScoreCols | Kernel::BiasCorrect => include_str!("../../shaders/calibrate.wgsl"),
        }
    }
    /// The entry point: every kernel's entry point is its name.
    pub fn entry_point(self) -> &'static str {
        self.name()
    }
    /// True for the kernels whose WGSL says `enable f16;` (they need the
    /// adapter's shader-f16 feature).
    pub fn needs_f16(self) -> bool {
        matches!(self, Kernel::GemmF16 | Kernel::GemmSkinnyF16 | Kernel::SpmmBsrF16)
    }
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::Fill => &[Binding::Uniform, RW],
            Kernel::Add => &[Binding::Uniform, RW, RO],
            Kernel::Gemm | Kernel::GemmSkinny | Kernel::GemmF16 | Kernel::GemmSkinnyF16 => {
                &[Binding::Uniform, RO, RO, RW, RO]
            }
            Kernel::SpmmBsr | Kernel::SpmmBsrF16 => &[Binding::Uniform, RO, RO, RO, RO, RO, RW, RO],
            Kernel::Conv2d | Kernel::Depthwise | Kernel::AvgPool => &[Binding::Uniform, RO, RO, RO, RW],
            // params, values, indices, x, y, bias
            Kernel::SpmmNmTiled | Kernel::SpmmNmRows | Kernel::SpmmNmSwitch => &[Binding::Uniform, RO, RO, RO, RW, RO],
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
        let module = match ctx.shader_checks() {
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
