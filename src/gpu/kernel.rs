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

pub(crate) const UNIFORM: Binding = Binding::Uniform;
pub(crate) const RO: Binding = Binding::Storage { read_only: true };
pub(crate) const RW: Binding = Binding::Storage { read_only: false };

/// Where a kernel's WGSL comes from.
#[derive(Clone, Copy, Debug)]
pub enum WgslSource {
    /// A `.wgsl` file as it stands (beside its Rust module), `include_str!`ed.
    File(&'static str),
    /// Generated once from a family's file (storage type, MMA path): the text
    /// the pipeline and the shader tests compile.
    Generated(fn() -> &'static str),
}

/// What an adapter must offer for a kernel. Checked against the `enable`s of
/// the source by the shader tests, so a declaration cannot drift from the WGSL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `enable f16;`: the adapter's shader-f16 feature.
    pub f16: bool,
    /// `enable wgpu_cooperative_matrix;`: cooperative matrices and subgroups
    /// (native only; browsers can never get them).
    pub coop: bool,
}

impl Needs {
    pub const NONE: Needs = Needs {
        f16: false,
        coop: false,
    };
    pub const F16: Needs = Needs { f16: true, coop: false };
    pub const COOP: Needs = Needs { f16: true, coop: true };
}

/// The `override` constants of one specialisation.
pub type Constants = Vec<(&'static str, u32)>;

/// One compute kernel: its WGSL, entry point, bindings and capabilities, and
/// every specialisation its host code can build. Each kernel family declares
/// its descriptors next to its host code (`gpu/<family>/`) and lists them in a
/// `KERNELS` slice; [`registry`] gathers the slices. The bind-group layout is
/// written out here, not inferred, so a shader edit that changes bindings
/// fails loudly in the tests.
#[derive(Debug)]
pub struct KernelDef {
    /// Unique over the registry: the cache key, and the label of every wgpu
    /// object made for the kernel.
    pub name: &'static str,
    pub entry: &'static str,
    pub source: WgslSource,
    pub bindings: &'static [Binding],
    pub needs: Needs,
    /// Every set of `override` constants the host code may compile this kernel
    /// with (tiles x epilogues x ...), for the shader tests: each is validated
    /// and translated for every backend.
    pub specialisations: fn() -> Vec<Constants>,
}

/// [`KernelDef::specialisations`] of kernels compiled with their defaults only.
pub fn defaults_only() -> Vec<Constants> {
    vec![Vec::new()]
}

/// Every `(HAS_BIAS, ACT)` pair of the product epilogue.
pub fn epilogue_variants() -> Vec<[(&'static str, u32); 2]> {
    use super::Activation;
    let mut v = Vec::new();
    for bias in [false, true] {
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            v.push([("HAS_BIAS", bias as u32), ("ACT", act.code())]);
        }
    }
    v
}

/// [`KernelDef::specialisations`] of kernels whose only overrides are the
/// product epilogue's (`HAS_BIAS`, `ACT`).
pub fn epilogues_only() -> Vec<Constants> {
    across_epilogues(Vec::new())
}

/// `base` once per epilogue of [`epilogue_variants`] (its own `HAS_BIAS` and
/// `ACT`, if any, replaced).
pub fn across_epilogues(base: Constants) -> Vec<Constants> {
    epilogue_variants()
        .into_iter()
        .map(|ep| {
            let mut c: Constants = base
                .iter()
                .copied()
                .filter(|(k, _)| *k != "HAS_BIAS" && *k != "ACT")
                .collect();
            c.extend(ep);
            c
        })
        .collect()
}

impl KernelDef {
    /// A kernel whose entry point is `name`, compiled with its defaults only,
    /// needing no optional feature; the builder methods below say otherwise.
    pub const fn new(name: &'static str, source: WgslSource, bindings: &'static [Binding]) -> Self {
        KernelDef {
            name,
            entry: name,
            source,
            bindings,
            needs: Needs::NONE,
            specialisations: defaults_only,
        }
    }

    /// The entry point, where it is not the kernel's name.
    pub const fn entry(mut self, entry: &'static str) -> Self {
        self.entry = entry;
        self
    }

    pub const fn needs(mut self, needs: Needs) -> Self {
        self.needs = needs;
        self
    }

    /// Every specialisation the host code builds (see [`KernelDef::specialisations`]).
    pub const fn specialised(mut self, specialisations: fn() -> Vec<Constants>) -> Self {
        self.specialisations = specialisations;
        self
    }

    /// The f16 twin of a kernel of a family source (its `alias T = f32;` set
    /// to f16 by `gpu::wgsl::expand`): the same entry point, bindings and
    /// specialisations, compiled from `source`, needing shader-f16.
    pub const fn f16_twin(&self, name: &'static str, source: fn() -> &'static str) -> KernelDef {
        KernelDef {
            name,
            entry: self.entry,
            source: WgslSource::Generated(source),
            bindings: self.bindings,
            needs: Needs::F16,
            specialisations: self.specialisations,
        }
    }

    /// The WGSL text compiled for this kernel.
    pub fn source(&self) -> &'static str {
        match self.source {
            WgslSource::File(s) => s,
            WgslSource::Generated(f) => f(),
        }
    }

    pub(crate) fn build(
        &'static self,
        ctx: &Context,
        constants: &[(&'static str, u32)],
    ) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let device = ctx.device();
        let name = self.name;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = self
            .bindings
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
        let checks = match (self.needs.coop, ctx.shader_checks()) {
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
            entry_point: Some(self.entry),
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

/// Cache key: the kernel and the values of its `override` constants. Kernels
/// are compared by name (unique over the [`registry`], checked by a test).
#[derive(Clone, Debug)]
pub struct PipelineKey {
    pub kernel: &'static KernelDef,
    pub constants: Constants,
}

impl PipelineKey {
    pub fn new(kernel: &'static KernelDef, constants: &[(&'static str, u32)]) -> Self {
        PipelineKey {
            kernel,
            constants: constants.to_vec(),
        }
    }
}

impl PartialEq for PipelineKey {
    fn eq(&self, other: &Self) -> bool {
        self.kernel.name == other.kernel.name && self.constants == other.constants
    }
}

impl Eq for PipelineKey {}

impl std::hash::Hash for PipelineKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kernel.name.hash(state);
        self.constants.hash(state);
    }
}

/// Every kernel of the crate, family by family (each family lists its own in
/// a `KERNELS` slice beside its host code). The shader tests walk it.
pub fn registry() -> Vec<&'static KernelDef> {
    use super::*;
    [
        elementwise::KERNELS,
        gemm::KERNELS,
        gemm::f16::KERNELS,
        gemm::coop::KERNELS,
        spmm_bsr::KERNELS,
        spmm_bsr::f16::KERNELS,
        spmm_bsr::coop::KERNELS,
        spmm_nm::KERNELS,
        spmm_nm::coop::KERNELS,
        spmm_csr::KERNELS,
        conv::KERNELS,
        conv_gemm::KERNELS,
        prune::KERNELS,
        calibrate::KERNELS,
        crate::train::kernels::KERNELS,
    ]
    .concat()
}
