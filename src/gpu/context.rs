use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::kernel::{PipelineKey, ShaderChecks};

/// A kernel with its bindings and grid, ready to record into a compute pass.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    label: &'static str,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
    pub fn label(&self) -> &'static str {
        self.label
    }
}

/// The adapter features this crate uses, as found on an adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureSet {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
    pub timestamp_inside_passes: bool,
    /// wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX` (native Vulkan/Metal only;
    /// never in browsers): tensor-core tiles from WGSL.
    pub coop_matrix: bool,
}

impl FeatureSet {
    fn from_features(f: wgpu::Features) -> Self {
        FeatureSet {
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_inside_passes: f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            coop_matrix: f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        }
    }
    fn to_features(self) -> wgpu::Features {
        let mut f = wgpu::Features::empty();
        if self.shader_f16 {
            f |= wgpu::Features::SHADER_F16;
        }
        if self.subgroups {
            f |= wgpu::Features::SUBGROUP;
        }
        if self.timestamp_query {
            f |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if self.timestamp_inside_passes {
            f |= wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        }
        if self.coop_matrix {
            f |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        f
    }
}

/// What `wgsparse info` prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub info: wgpu::AdapterInfo,
    pub features: FeatureSet,
    pub limits: wgpu::Limits,
    /// The adapter's cooperative-matrix configurations (empty without the feature).
    pub coop: Vec<CoopConfig>,
}

/// One cooperative-matrix configuration of an adapter: `C[M,N] += A[M,K] B[K,N]`
/// with A and B of `ab` and C of `cr` (wgpu's `CooperativeMatrixProperties`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopConfig {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub ab: wgpu::CooperativeScalarType,
    pub cr: wgpu::CooperativeScalarType,
}

impl CoopConfig {
    fn list(adapter: &wgpu::Adapter) -> Vec<CoopConfig> {
        if !adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        {
            return Vec::new();
        }
        adapter
            .cooperative_matrix_properties()
            .iter()
            .map(|p| CoopConfig {
                m: p.m_size,
                n: p.n_size,
                k: p.k_size,
                ab: p.ab_type,
                cr: p.cr_type,
            })
            .collect()
    }
}

impl std::fmt::Display for CoopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
        write!(f, "{}x{}x{} {}->{}", self.m, self.n, self.k, t(self.ab), t(self.cr))
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.info;
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "{} ({:?}, {:?})", i.name, i.backend, i.device_type)?;
        writeln!(f, "  driver                 {} {}", i.driver, i.driver_info)?;
        writeln!(f, "  shader-f16             {}", yes(self.features.shader_f16))?;
        writeln!(f, "  subgroups              {}", yes(self.features.subgroups))?;
        writeln!(
            f,
            "  cooperative matrix     {}{}",
            yes(self.features.coop_matrix),
            if self.coop.is_empty() {
                String::new()
            } else {
                let v: Vec<String> = self.coop.iter().map(|c| c.to_string()).collect();
                format!(
                    " ({}; subgroup {}..{})",
                    v.join(", "),
                    self.info.subgroup_min_size,
                    self.info.subgroup_max_size
                )
            }
        )?;
        writeln!(
            f,
            "  timestamp-query        {}{}",
            yes(self.features.timestamp_query),
            if self.features.timestamp_inside_passes {
                " (inside passes too)"
            } else {
                ""
            }
        )?;
        let l = &self.limits;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "  max storage binding    {:.0} MiB ({} bytes)",
            mib(l.max_storage_buffer_binding_size),
            l.max_storage_buffer_binding_size
        )?;
        writeln!(
            f,
            "  max buffer size        {:.0} MiB ({} bytes)",
            mib(l.max_buffer_size),
            l.max_buffer_size
        )?;
        writeln!(
            f,
            "  workgroup memory       {} KiB",
            l.max_compute_workgroup_storage_size / 1024
        )?;
        writeln!(
            f,
            "  workgroup size         {} invocations (x {}, y {}, z {})",
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z
        )?;
        write!(
            f,
            "  workgroups / dimension {}\n  storage buffers/stage  {}",
            l.max_compute_workgroups_per_dimension, l.max_storage_buffers_per_shader_stage
        )
    }
}

/// Owns the adapter, device and queue, the enabled features and limits, and the
/// pipeline cache. Create one and pass it by reference.
pub struct Context {
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    pipelines: Mutex<HashMap<PipelineKey, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>>,
    errors: Arc<Mutex<Vec<String>>>,
    dummy: wgpu::Buffer,
    dummy_rw: wgpu::Buffer,
    checks: ShaderChecks,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    })
}

impl Context {
    /// Lists every adapter wgpu finds (native only; the browser offers one).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn enumerate() -> Vec<AdapterSummary> {
        let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
        adapters
            .iter()
            .map(|a| AdapterSummary {
                info: a.get_info(),
                features: FeatureSet::from_features(a.features()),
                limits: a.limits(),
                coop: CoopConfig::list(a),
            })
            .collect()
    }

    /// Picks the high-performance adapter and creates a device with every
    /// feature of [`FeatureSet`] the adapter has and the adapter's own limits.
    pub async fn new() -> Result<Self> {
        let adapter = instance()
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::NoAdapter(format!(
                    "{e}. Natively, install a Vulkan/Metal/DX12 driver (on Debian without a GPU: \
                     apt-get install mesa-vulkan-drivers); in a browser, use one with WebGPU enabled"
                ))
            })?;
        Self::from_adapter(adapter).await
    }

    /// [`Context::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// Creates the device on a given adapter.
    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let all = FeatureSet::from_features(adapter.features());
        Self::from_adapter_with(adapter, all).await
    }

    /// Creates the device on a given adapter with at most the features in
    /// `wanted` (those the adapter lacks are dropped), e.g. without shader-f16
    /// to run the f32 kernels only, or to test the paths for adapters without it.
    pub async fn from_adapter_with(adapter: wgpu::Adapter, wanted: FeatureSet) -> Result<Self> {
        let has = FeatureSet::from_features(adapter.features());
        let features = FeatureSet {
            shader_f16: has.shader_f16 && wanted.shader_f16,
            subgroups: has.subgroups && wanted.subgroups,
            timestamp_query: has.timestamp_query && wanted.timestamp_query,
            timestamp_inside_passes: has.timestamp_inside_passes && wanted.timestamp_inside_passes,
            coop_matrix: has.coop_matrix && wanted.coop_matrix,
        };
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgsparse"),
                required_features: features.to_features(),
                required_limits: limits.clone(),
                // SAFETY: experimental features are only requested with the
                // cooperative-matrix feature, which needs them; its kernels are
                // validated by naga and checked against CPU references.
                experimental_features: if features.coop_matrix {
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let summary = AdapterSummary {
            info: adapter.get_info(),
            features,
            limits,
            coop: if features.coop_matrix {
                CoopConfig::list(&adapter)
            } else {
                Vec::new()
            },
        };
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        // A second one for absent read-write bindings: one buffer may not be
        // bound read-only and read-write in the same dispatch.
        let dummy_rw = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy read-write"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Context {
            dummy,
            dummy_rw,
            checks: ShaderChecks::from_env(),
            adapter,
            device,
            queue,
            summary,
            pipelines: Mutex::new(HashMap::new()),
            errors,
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.summary.info
    }
    pub fn features(&self) -> FeatureSet {
        self.summary.features
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.summary.limits
    }
    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }
    /// The adapter's cooperative-matrix configurations (empty unless the
    /// device has the feature).
    pub fn coop_configs(&self) -> &[CoopConfig] {
        &self.summary.coop
    }
    /// True for CPU adapters (lavapipe, SwiftShader, WARP), which want other tiles.
    pub fn is_cpu(&self) -> bool {
        self.summary.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Returns (and clears) the GPU errors recorded since the last call, as an
    /// [`Error::Gpu`]. Called after every readback so no error goes unseen.
    pub fn take_errors(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error log poisoned".into()))?;
        if v.is_empty() {
            Ok(())
        } else {
            let msg = v.join("; ");
            v.clear();
            Err(Error::Gpu(msg))
        }
    }

    /// Fails with [`Error::Gpu`] naming `what` when the device was created
    /// without shader-f16 (the f16 kernels cannot be compiled there).
    pub fn require_f16(&self, what: &str) -> Result<()> {
        if self.features().shader_f16 {
            return Ok(());
        }
        Err(Error::Gpu(format!(
            "{what} needs the shader-f16 feature, which the adapter '{}' ({:?}) does not offer \
             (or the device was created without it); use the f32 kernels",
            self.summary.info.name, self.summary.info.backend
        )))
    }

    /// The pipeline and bind-group layout for `key`, compiled once and cached.
    /// An f16 kernel on a device without shader-f16 is an [`Error::Gpu`].
    pub fn pipeline(&self, key: &PipelineKey) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        if key.kernel.needs.f16 {
            self.require_f16(key.kernel.name)?;
        }
        if key.kernel.needs.coop && !(self.features().coop_matrix && self.features().subgroups) {
            return Err(Error::Gpu(format!(
                "{} needs cooperative matrices and subgroups, which the adapter '{}' ({:?}) does not offer",
                key.kernel.name, self.summary.info.name, self.summary.info.backend
            )));
        }
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?;
        if let Some(p) = cache.get(key) {
            return Ok(p.clone());
        }
        let made = key.kernel.build(self, &key.constants);
        cache.insert(key.clone(), made.clone());
        Ok(made)
    }

    /// Number of compiled pipelines (for tests of the cache).
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// A uniform buffer holding `value`.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, value: &T, label: &str) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(value);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.len() as u64).next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytes);
        buf
    }

    /// Which runtime checks the kernels are compiled with.
    pub fn shader_checks(&self) -> ShaderChecks {
        self.checks
    }

    /// A one-word storage buffer to bind where a kernel's optional input is absent.
    pub(crate) fn dummy_buffer(&self) -> wgpu::Buffer {
        self.dummy.clone()
    }

    /// A one-word storage buffer for an absent read-write binding (never the
    /// same buffer as [`Self::dummy_buffer`], which may be bound read-only in
    /// the same dispatch).
    pub(crate) fn dummy_rw_buffer(&self) -> wgpu::Buffer {
        self.dummy_rw.clone()
    }

    /// Splits a 1-D grid of `groups` workgroups into `[x, y, 1]` with `x * y >=
    /// groups` and both within `max_compute_workgroups_per_dimension`; kernels
    /// rebuild the flat index as `wid.y * num_workgroups.x + wid.x` and bound-check.
    pub(crate) fn fold_groups(&self, groups: u32) -> Result<[u32; 3]> {
        let max = self.summary.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            return Ok([groups.max(1), 1, 1]);
        }
        let y = groups.div_ceil(max);
        self.check_dispatch([groups.div_ceil(y), y, 1])
    }

    /// Binds `resources` at 0, 1, 2, ... in order for `key` and returns a
    /// dispatch that can be recorded any number of times.
    pub fn prepare(&self, key: &PipelineKey, resources: &[&wgpu::Buffer], groups: [u32; 3]) -> Result<Dispatch> {
        let groups = self.check_dispatch(groups)?;
        let (pipeline, layout) = self.pipeline(key)?;
        let name = key.kernel.name;
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &layout,
            entries: &entries,
        });
        Ok(Dispatch {
            pipeline,
            bind_group,
            groups,
            label: name,
        })
    }

    /// Records one dispatch of `key` into `enc`, in a pass of its own.
    pub(crate) fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        key: &PipelineKey,
        resources: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let d = self.prepare(key, resources, groups)?;
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(d.label),
            timestamp_writes: None,
        });
        d.record(&mut pass);
        Ok(())
    }

    /// Submits `dispatches` in one compute pass, in order.
    pub fn submit(&self, dispatches: &[&Dispatch]) {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("submit") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("submit"),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
    }

    /// Checks a dispatch size against `max_compute_workgroups_per_dimension`;
    /// kernels that can exceed it fold their grid before calling this.
    pub(crate) fn check_dispatch(&self, groups: [u32; 3]) -> Result<[u32; 3]> {
        let max = self.summary.limits.max_compute_workgroups_per_dimension;
        let [x, y, z] = groups;
        if x <= max && y <= max && z <= max {
            return Ok(groups);
        }
        Err(Error::Limit(format!(
            "dispatch of {x}x{y}x{z} workgroups exceeds max_compute_workgroups_per_dimension = {max}"
        )))
    }
}
