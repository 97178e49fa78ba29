//! Every WGSL file is validated by naga with WebGPU's capabilities and translated
//! to SPIR-V, MSL and HLSL, so the Vulkan, Metal and DX12 paths are compiled
//! without that hardware. Fails when it finds no shader, so a moved folder
//! cannot pass silently. The cooperative-matrix shaders (`enable
//! wgpu_cooperative_matrix;`, native only) must instead FAIL validation with
//! WebGPU's capabilities (browsers can never get them) and validate with native
//! ones, then translate to SPIR-V with every override set their Rust side uses.

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

fn is_coop(src: &str) -> bool {
    src.contains("enable wgpu_cooperative_matrix;")
}

#[test]
fn every_shader_validates_for_webgpu_and_translates() {
    for path in shader_files() {
        if is_coop(&std::fs::read_to_string(&path).unwrap()) {
            continue;
        }
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

/// Native capabilities the cooperative-matrix kernels need.
fn coop_caps() -> Capabilities {
    webgpu_caps() | Capabilities::COOPERATIVE_MATRIX | Capabilities::SUBGROUP
}

fn coop_sources() -> Vec<(String, String)> {
    let found: Vec<_> = shader_files()
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .filter(|(_, src)| is_coop(src))
        .collect();
    assert!(found.len() >= 2, "expected gemm_coop.wgsl and spmm_bsr_coop.wgsl");
    found
}

#[test]
fn coop_shaders_are_rejected_for_webgpu() {
    for (name, src) in coop_sources() {
        // The parser may already refuse the extension; if not, the validator must.
        if let Ok(module) = naga::front::wgsl::parse_str(&src) {
            let r = Validator::new(ValidationFlags::all(), webgpu_caps()).validate(&module);
            assert!(r.is_err(), "{name} validates with WebGPU's capabilities");
        }
    }
}

/// Validates `src` natively, resolves the overrides to `constants` and writes SPIR-V.
fn coop_spirv(name: &str, src: &str, constants: &[(&'static str, u32)]) {
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), coop_caps())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let consts: naga::back::PipelineConstants = constants.iter().map(|(k, v)| (k.to_string(), *v as f64)).collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &consts)
        .unwrap_or_else(|e| panic!("{name} {constants:?}: overrides: {e}"));
    let opts = spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    for ep in &module.entry_points {
        let pipeline = spv::PipelineOptions {
            shader_stage: ep.stage,
            entry_point: ep.name.clone(),
        };
        spv::write_vec(&module, &info, &opts, Some(&pipeline))
            .unwrap_or_else(|e| panic!("{name} {constants:?}: SPIR-V ({}): {e}", ep.name));
    }
}

#[test]
fn coop_shaders_validate_natively_and_translate_with_every_tile() {
    use wgsparse::gpu::gemm_coop::CoopTile;
    use wgsparse::gpu::spmm_bsr_coop::BsrCoopTile;
    use wgsparse::gpu::{Activation, Epilogue};
    for (name, src) in coop_sources() {
        coop_spirv(&name, &src, &[]);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let gemm = std::fs::read_to_string(dir.join("gemm_coop.wgsl")).unwrap();
    let bsr = std::fs::read_to_string(dir.join("spmm_bsr_coop.wgsl")).unwrap();
    let eps = [
        Epilogue::default(),
        Epilogue {
            bias: None,
            act: Activation::Relu6,
        },
    ];
    let mut translated = 0;
    for ep in &eps {
        for sg in [32, 64] {
            for tile in CoopTile::CANDIDATES {
                if let Ok(c) = tile.constants(sg, 48 * 1024, ep) {
                    coop_spirv("gemm_coop.wgsl", &gemm, &c);
                    translated += 1;
                }
            }
            for block in [16, 32] {
                for tile in BsrCoopTile::candidates(block) {
                    if let Ok(c) = tile.constants(block, sg, 48 * 1024, ep) {
                        coop_spirv("spmm_bsr_coop.wgsl", &bsr, &c);
                        translated += 1;
                    }
                }
            }
        }
    }
    // Every candidate fits with subgroups of 32 (more are refused at 64).
    assert!(translated >= 2 * (10 + 7 + 7), "only {translated} tile sets translated");
}

/// Kernels whose source is not a file as it stands: `conv.wgsl` compiled with
/// f16 activations. Validated for WebGPU (shader-f16 is a WebGPU feature) and
/// translated like the files, and their entry points exist.
#[test]
fn generated_f16_convolutions_validate_for_webgpu_and_translate() {
    use wgsparse::gpu::Kernel;
    for k in [Kernel::Conv2dF16, Kernel::DepthwiseF16, Kernel::AvgPoolF16] {
        let src = k.source();
        assert!(
            src.contains("enable f16;") && src.contains("alias T = f16;"),
            "{}",
            k.name()
        );
        assert!(k.needs_f16(), "{}", k.name());
        let module =
            naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}: {}", k.name(), e.emit_to_string(src)));
        let info = Validator::new(ValidationFlags::all(), webgpu_caps())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", k.name(), e.emit_to_string(src)));
        let (module, info) =
            naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
                .unwrap_or_else(|e| panic!("{}: overrides: {e}", k.name()));
        let ep = module
            .entry_points
            .iter()
            .find(|e| e.name == k.entry_point())
            .unwrap_or_else(|| panic!("{}: no entry point {}", k.name(), k.entry_point()));
        let pipeline = spv::PipelineOptions {
            shader_stage: ep.stage,
            entry_point: ep.name.clone(),
        };
        spv::write_vec(&module, &info, &spv::Options::default(), Some(&pipeline))
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", k.name()));
    }
}
