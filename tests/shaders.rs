//! Every WGSL file is validated by naga with WebGPU's capabilities and translated
//! to SPIR-V, MSL and HLSL, so the Vulkan, Metal and DX12 paths are compiled
//! without that hardware. Fails when it finds no shader, so a moved folder
//! cannot pass silently.

use std::path::Path;

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn shader_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .wgsl files under {}", dir.display());
    files
}

/// Capabilities a browser's WebGPU offers (f16 is an optional WebGPU feature,
/// enabled per shader with `enable f16;`).
fn webgpu_caps() -> Capabilities {
    Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32
}

#[test]
fn every_shader_validates_for_webgpu_and_translates() {
    for path in shader_files() {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        let info = Validator::new(ValidationFlags::all(), webgpu_caps())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        // Overrides must be resolved before the backends run; use their defaults.
        let (module, info) =
            naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
                .unwrap_or_else(|e| panic!("{name}: overrides: {e}"));
        for ep in &module.entry_points {
            let pipeline = spv::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
            };
            spv::write_vec(&module, &info, &spv::Options::default(), Some(&pipeline))
                .unwrap_or_else(|e| panic!("{name}: SPIR-V ({}): {e}", ep.name));
        }
        let pipeline = msl::PipelineOptions::default();
        msl::write_string(&module, &info, &msl::Options::default(), &pipeline)
            .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
        let mut out = String::new();
        hlsl::Writer::new(&mut out, &hlsl::Options::default(), &hlsl::PipelineOptions::default())
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
    }
}
