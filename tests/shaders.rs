//! Every kernel of the registry (`wgsparse::gpu::registry`), with every
//! specialisation its host code can build, is validated by naga and translated:
//! kernels without cooperative matrices with WebGPU's capabilities to SPIR-V,
//! MSL and HLSL (so the Vulkan, Metal and DX12 paths are compiled without that
//! hardware); the cooperative-matrix kernels (`enable wgpu_cooperative_matrix;`,
//! native only) must instead FAIL validation with WebGPU's capabilities
//! (browsers can never get them) and validate natively, then translate to
//! SPIR-V. Each descriptor's bindings and needs are checked against its WGSL,
//! and every `.wgsl` file in the tree must be used by a registered kernel, so
//! a moved or forgotten file cannot pass silently: as its source (a `File`),
//! as the file a generated source expands with its defaults
//! (`gpu::wgsl::expand(file, &[])`: the file with its declared imports, so the
//! file is checked by naga together with them), or as a snippet of
//! `gpu::wgsl::SNIPPETS` imported by some kernel (the snippets that need no
//! importer are also validated alone).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, GlobalUse, ModuleInfo, ValidationFlags, Validator};
use wgsparse::gpu::wgsl::{expand, SNIPPETS};
use wgsparse::gpu::{registry, Binding, KernelDef, WgslSource};

/// Capabilities a browser's WebGPU offers (f16 is an optional WebGPU feature,
/// enabled per shader with `enable f16;`).
fn webgpu_caps() -> Capabilities {
    Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32
}

/// Native capabilities the cooperative-matrix kernels need.
fn coop_caps() -> Capabilities {
    webgpu_caps() | Capabilities::COOPERATIVE_MATRIX | Capabilities::SUBGROUP
}

fn caps(k: &KernelDef) -> Capabilities {
    if k.needs.coop {
        coop_caps()
    } else {
        webgpu_caps()
    }
}

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            wgsl_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "wgsl") {
            out.push(p);
        }
    }
}

fn parse_and_validate(k: &KernelDef) -> (naga::Module, ModuleInfo) {
    let src = k.source();
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), caps(k))
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(src)));
    (module, info)
}

#[test]
fn registry_is_complete_with_unique_names() {
    let reg = registry();
    assert!(reg.len() >= 50, "the registry lists only {} kernels", reg.len());
    let mut names = HashSet::new();
    for k in &reg {
        assert!(names.insert(k.name), "two kernels are named {}", k.name);
        assert!(!k.bindings.is_empty(), "{} has no bindings", k.name);
    }
    // Every .wgsl file of the tree is used by a registered kernel.
    let mut files = Vec::new();
    wgsl_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() >= 15, "found only {} .wgsl files under src/", files.len());
    let sources: HashSet<&str> = reg.iter().map(|k| k.source()).collect();
    let files_as_is: HashSet<&str> = reg
        .iter()
        .filter_map(|k| match k.source {
            WgslSource::File(s) => Some(s),
            WgslSource::Generated(_) => None,
        })
        .collect();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if files_as_is.contains(text.as_str()) {
            continue;
        }
        if let Some((name, _)) = SNIPPETS.iter().find(|(_, s)| *s == text) {
            assert!(
                sources.iter().any(|src| imports(src, &text)),
                "snippet {name} ({}) is imported by no registered kernel",
                f.display()
            );
            continue;
        }
        let expanded = expand(&text, &[]);
        assert!(
            sources.contains(expanded.as_str()),
            "{} is the source of no registered kernel, neither as it stands nor expanded \
             with its defaults, nor a snippet of gpu::wgsl::SNIPPETS",
            f.display()
        );
    }
}

/// Whether a kernel source holds the snippet `text` (its `enable`s hoisted).
fn imports(source: &str, text: &str) -> bool {
    let body: String = text
        .lines()
        .filter(|l| !l.trim().starts_with("enable "))
        .map(|l| format!("{l}\n"))
        .collect();
    source.contains(body.as_str())
}

/// The snippets that declare everything they use validate on their own too;
/// `epilogue` (reads the importer's `bias`) and `coop_core` (its `p`, `x`,
/// `y`, `bias` and W hooks) only with an importer (checked above).
#[test]
fn self_contained_snippets_validate_alone() {
    let alone = ["spmm_bsr_values_f32", "spmm_bsr_values_f16", "nm16_format"];
    for (name, text) in SNIPPETS {
        let module = naga::front::wgsl::parse_str(text);
        let ok = module
            .as_ref()
            .ok()
            .is_some_and(|m| Validator::new(ValidationFlags::all(), coop_caps()).validate(m).is_ok());
        assert_eq!(
            ok,
            alone.contains(name),
            "snippet {name}: validates alone = {ok}, expected {}",
            alone.contains(name)
        );
    }
}

#[test]
fn needs_match_the_enables_of_each_source() {
    for k in registry() {
        let enables = |what: &str| k.source().lines().any(|l| l.trim() == what);
        assert_eq!(
            k.needs.f16,
            enables("enable f16;"),
            "{}: needs.f16 disagrees with its WGSL",
            k.name
        );
        assert_eq!(
            k.needs.coop,
            enables("enable wgpu_cooperative_matrix;"),
            "{}: needs.coop disagrees with its WGSL",
            k.name
        );
    }
}

/// The bind-group layout a descriptor declares is the one its entry point
/// uses: every resource the entry point touches is declared with the same
/// kind (uniform, read-only or read-write storage), and every declared
/// binding exists in the module.
#[test]
fn bindings_match_each_entry_point() {
    for k in registry() {
        let (module, info) = parse_and_validate(k);
        let (ep_index, _) = module
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == k.entry)
            .unwrap_or_else(|| panic!("{}: no entry point {}", k.name, k.entry));
        let uses = info.get_entry_point(ep_index);
        // Files with several entry points declare one global per (entry
        // point, binding): check the ones this entry point uses.
        let mut used = HashMap::new();
        let mut declared = HashSet::new();
        for (h, g) in module.global_variables.iter() {
            let Some(rb) = &g.binding else { continue };
            assert_eq!(rb.group, 0, "{}: binding in group {}", k.name, rb.group);
            declared.insert(rb.binding);
            if uses[h] == GlobalUse::empty() {
                continue;
            }
            let kind = match g.space {
                naga::AddressSpace::Uniform => Binding::Uniform,
                naga::AddressSpace::Storage { access } => Binding::Storage {
                    read_only: !access.contains(naga::StorageAccess::STORE),
                },
                other => panic!("{}: binding {} in address space {other:?}", k.name, rb.binding),
            };
            assert!(
                used.insert(rb.binding, kind).is_none(),
                "{}: entry point uses two globals at binding {}",
                k.name,
                rb.binding
            );
        }
        for (&i, kind) in &used {
            let want = k.bindings.get(i as usize).unwrap_or_else(|| {
                panic!(
                    "{}: entry point uses binding {i} beyond the {} declared",
                    k.name,
                    k.bindings.len()
                )
            });
            assert_eq!(want, kind, "{}: binding {i} kind", k.name);
        }
        for i in 0..k.bindings.len() as u32 {
            assert!(
                declared.contains(&i),
                "{}: binding {i} is not declared in its WGSL",
                k.name
            );
        }
    }
}

#[test]
fn coop_kernels_are_rejected_for_webgpu() {
    let mut coop = 0;
    for k in registry().into_iter().filter(|k| k.needs.coop) {
        coop += 1;
        let src = k.source();
        // The parser may already refuse the extension; if not, the validator must.
        if let Ok(module) = naga::front::wgsl::parse_str(src) {
            let r = Validator::new(ValidationFlags::all(), webgpu_caps()).validate(&module);
            assert!(r.is_err(), "{} validates with WebGPU's capabilities", k.name);
        }
    }
    assert!(
        coop >= 3,
        "expected gemm_coop, spmm_bsr_coop and spmm_nm_coop, found {coop}"
    );
}

/// Every kernel x every specialisation: overrides resolved, the entry point
/// written as SPIR-V; kernels browsers can run also as MSL and HLSL.
#[test]
fn every_specialisation_validates_and_translates() {
    let mut translated = 0;
    for k in registry() {
        let (module, info) = parse_and_validate(k);
        let specs = (k.specialisations)();
        assert!(!specs.is_empty(), "{} lists no specialisation", k.name);
        let mut seen = HashSet::new();
        for c in specs {
            assert!(seen.insert(c.clone()), "{}: specialisation {c:?} listed twice", k.name);
            let consts: naga::back::PipelineConstants = c.iter().map(|(n, v)| (n.to_string(), *v as f64)).collect();
            let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &consts)
                .unwrap_or_else(|e| panic!("{} {c:?}: overrides: {e}", k.name));
            let ep = module
                .entry_points
                .iter()
                .find(|e| e.name == k.entry)
                .unwrap_or_else(|| panic!("{}: no entry point {}", k.name, k.entry));
            let opts = spv::Options {
                lang_version: if k.needs.coop { (1, 3) } else { (1, 0) },
                ..Default::default()
            };
            let pipeline = spv::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
            };
            spv::write_vec(&module, &info, &opts, Some(&pipeline))
                .unwrap_or_else(|e| panic!("{} {c:?}: SPIR-V: {e}", k.name));
            if !k.needs.coop {
                msl::write_string(
                    &module,
                    &info,
                    &msl::Options::default(),
                    &msl::PipelineOptions::default(),
                )
                .unwrap_or_else(|e| panic!("{} {c:?}: MSL: {e}", k.name));
                let mut out = String::new();
                hlsl::Writer::new(&mut out, &hlsl::Options::default(), &hlsl::PipelineOptions::default())
                    .write(&module, &info, None)
                    .unwrap_or_else(|e| panic!("{} {c:?}: HLSL: {e}", k.name));
            }
            translated += 1;
        }
    }
    println!("{translated} (kernel, specialisation) pairs translated");
    assert!(translated >= 500, "only {translated} specialisations translated");
}
