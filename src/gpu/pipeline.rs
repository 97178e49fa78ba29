use super::Context;

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
}

const RO: Binding = Binding::Storage { read_only: true };
const RW: Binding = Binding::Storage { read_only: false };

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Fill => "fill",
            Kernel::PruneNm => "prune_nm",
            Kernel::BlockScores => "block_scores",
            Kernel::BlockValues => "block_values",
            Kernel::BlockRowOrder => "block_row_order",
            Kernel::RadixHistogram => "radix_histogram",
            Kernel::RadixScan => "radix_scan",
            Kernel::SelectCount => "select_count",
            Kernel::SelectChunkScan => "select_chunk_scan",
            Kernel::SelectScatter => "select_scatter",
        }
    }
    /// The WGSL source (one file per kernel family under `shaders/`).
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Fill => include_str!("../../shaders/elementwise.wgsl"),
            Kernel::PruneNm => include_str!("../../shaders/prune_nm.wgsl"),
            Kernel::BlockScores | Kernel::BlockValues | Kernel::BlockRowOrder => {
                include_str!("../../shaders/prune_block.wgsl")
            }
            Kernel::RadixHistogram
            | Kernel::RadixScan
            | Kernel::SelectCount
            | Kernel::SelectChunkScan
            | Kernel::SelectScatter => include_str!("../../shaders/prune_select.wgsl"),
        }
    }
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::Fill => "fill",
            Kernel::PruneNm => "prune_nm",
            Kernel::BlockScores => "block_scores",
            Kernel::BlockValues => "block_values",
            Kernel::BlockRowOrder => "block_row_order",
            Kernel::RadixHistogram => "radix_histogram",
            Kernel::RadixScan => "radix_scan",
            Kernel::SelectCount => "select_count",
            Kernel::SelectChunkScan => "select_chunk_scan",
            Kernel::SelectScatter => "select_scatter",
        }
    }
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::Fill => &[Binding::Uniform, RW],
            // params, w, values, indices, status
            Kernel::PruneNm => &[Binding::Uniform, RO, RW, RW, RW],
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
            // params, keys, state, chunk bases, row_ptr, col_idx, values/rows, status
            Kernel::SelectScatter => &[Binding::Uniform, RO, RO, RO, RW, RW, RW, RW],
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
                        Binding::Storage { read_only } => wgpu::BufferBindingType::Storage {
                            read_only: *read_only,
                        },
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
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(self.source().into()),
        });
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
