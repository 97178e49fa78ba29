//! The one expansion function of the crate's WGSL: a family's `.wgsl` file
//! plus named parameters in, the WGSL text of one variant out (f32 / f16
//! storage, shader cores / cooperative matrices). No template language: every
//! placeholder is itself WGSL (or a WGSL comment), so each file is checked by
//! naga as it stands, together with the snippets it imports (`tests/shaders.rs`
//! does both: every file with its defaults, every generated variant).
//!
//! Placeholders, the only two:
//! - **`alias NAME = default;`** (a whole line): a type parameter, most often
//!   `T`, the storage type. `("T", "f16")` rewrites the line to
//!   `alias T = f16;`. A file written for T converts at every load
//!   (`vec4<f32>(x[i])`) and store (`vec4<T>(v)`), identities when T is f32.
//! - **`// import NAME`** (a whole line, `NAME` a key of [`SNIPPETS`]): the
//!   snippet's text is appended to the module (WGSL declarations are
//!   order-free), each snippet once, its own imports followed. `{P}` in a name
//!   stands for the value of placeholder `P` (its default where not given), so
//!   `// import spmm_bsr_values_{T}` picks the weight accessors of the storage
//!   type.
//!
//! `enable` directives must open a module: those of the imports are hoisted in
//! front, and `enable f16;` is written whenever a parameter's value names f16
//! (WGSL wants it for any use of the type). Anything else is a bug in a static
//! source, not a user error, so it panics, and the shader tests expand every
//! registered variant.
//!
//! Snippets (`src/gpu/common/*.wgsl`, and a family's own ones beside it) are
//! valid WGSL on their own or with the declarations their header names (a
//! snippet that reads `bias` or `p` says so); `tests/shaders.rs` checks each
//! file of [`SNIPPETS`] as imported by a registered kernel.

use std::collections::HashSet;

/// Every importable snippet: its name (the `// import` key) and its text.
pub const SNIPPETS: &[(&str, &str)] = &[
    ("epilogue", include_str!("common/epilogue.wgsl")),
    ("coop_core", include_str!("common/coop_core.wgsl")),
    ("rows", include_str!("common/rows.wgsl")),
    ("spmm_bsr_values_f32", include_str!("spmm_bsr/values_f32.wgsl")),
    ("spmm_bsr_values_f16", include_str!("spmm_bsr/values_f16.wgsl")),
    ("nm16_format", include_str!("spmm_nm/nm16_format.wgsl")),
    ("conv_params", include_str!("conv_gemm/conv_params.wgsl")),
];

/// The text of snippet `name`, if there is one.
pub fn snippet(name: &str) -> Option<&'static str> {
    SNIPPETS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The name of a type placeholder line `alias NAME = ...;`.
fn alias_name(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("alias ")?;
    let (name, value) = rest.split_once('=')?;
    value.trim().ends_with(';').then_some(name.trim())
}

fn import_name(line: &str) -> Option<&str> {
    line.trim().strip_prefix("// import ").map(str::trim)
}

/// `source` with its placeholders set to `params` (`(name, value)`) and its
/// imports appended: see the module docs. Panics on a parameter that names
/// no placeholder of the module, or an unknown import.
pub fn expand(source: &str, params: &[(&str, &str)]) -> String {
    // The module's texts: the source, then every import (breadth first, once).
    let mut texts = vec![source.to_string()];
    let mut seen = HashSet::new();
    let mut i = 0;
    while i < texts.len() {
        let imports: Vec<String> = texts[i].lines().filter_map(import_name).map(str::to_string).collect();
        for name in imports {
            let name = resolve(&name, &texts, params);
            if seen.insert(name.clone()) {
                let text = snippet(&name).unwrap_or_else(|| panic!("WGSL import of unknown snippet {name:?}"));
                texts.push(text.to_string());
            }
        }
        i += 1;
    }
    let mut used = HashSet::new();
    let mut enables: Vec<String> = Vec::new();
    let mut body = String::new();
    for (n, text) in texts.iter().enumerate() {
        if n > 0 {
            body.push('\n');
        }
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("enable ") {
                if !enables.iter().any(|e| e == trimmed) {
                    enables.push(trimmed.to_string());
                }
                continue;
            }
            if let Some(name) = alias_name(line) {
                if let Some((_, v)) = params.iter().find(|(k, _)| *k == name) {
                    used.insert(name.to_string());
                    body.push_str(&format!("alias {name} = {v};\n"));
                    continue;
                }
            }
            body.push_str(line);
            body.push('\n');
        }
    }
    for (k, _) in params {
        assert!(
            used.contains(*k),
            "WGSL placeholder {k:?} is in none of the module's texts"
        );
    }
    if params.iter().any(|(_, v)| names_f16(v)) && !enables.iter().any(|e| e == "enable f16;") {
        enables.insert(0, "enable f16;".to_string());
    }
    let mut out = String::new();
    for e in &enables {
        out.push_str(e);
        out.push('\n');
    }
    out.push_str(&body);
    out
}

/// An import name with `{P}` replaced by placeholder P's value: the parameter,
/// else the default of its alias line.
fn resolve(name: &str, texts: &[String], params: &[(&str, &str)]) -> String {
    let Some(open) = name.find('{') else {
        return name.to_string();
    };
    let close = name[open..]
        .find('}')
        .map(|c| open + c)
        .unwrap_or_else(|| panic!("unclosed {{ in import {name:?}"));
    let key = &name[open + 1..close];
    let value = params
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .or_else(|| {
            texts.iter().flat_map(|t| t.lines()).find_map(|l| {
                (alias_name(l) == Some(key)).then(|| {
                    l.split_once('=')
                        .unwrap()
                        .1
                        .trim()
                        .trim_end_matches(';')
                        .trim()
                        .to_string()
                })
            })
        })
        .unwrap_or_else(|| panic!("import {name:?}: no placeholder {key}"));
    resolve(
        &format!("{}{}{}", &name[..open], value, &name[close + 1..]),
        texts,
        params,
    )
}

fn names_f16(v: &str) -> bool {
    v.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == "f16")
}

/// A generated source, computed once: `generated!(name, SOURCE, &[("T", "f16")])`
/// defines `fn name() -> &'static str`, what [`super::WgslSource::Generated`]
/// takes, expanding `SOURCE` on the first call.
macro_rules! generated {
    ($vis:vis $name:ident, $source:expr, $params:expr) => {
        $vis fn $name() -> &'static str {
            static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            SRC.get_or_init(|| $crate::gpu::wgsl::expand($source, $params))
        }
    };
}
pub(crate) use generated;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_aliases_hoists_enables_and_imports_once() {
        let src = "// import epilogue\n// import epilogue\nalias T = f32;\nfn f(v: T) -> T { return v; }\n";
        let out = expand(src, &[("T", "f16")]);
        assert!(out.starts_with("enable f16;\n"), "{out}");
        assert!(out.contains("alias T = f16;\n"));
        assert!(!out.contains("alias T = f32;"));
        assert_eq!(out.matches("fn act(").count(), 1, "{out}");
        // No parameters: the text as it stands plus its imports.
        let same = expand(src, &[]);
        assert!(same.starts_with("// import epilogue\n"));
        assert!(same.contains("alias T = f32;\n"));
    }

    #[test]
    fn import_names_follow_placeholders() {
        let src = "alias T = f32;\n// import spmm_bsr_values_{T}\n";
        assert!(expand(src, &[]).contains(snippet("spmm_bsr_values_f32").unwrap().lines().next().unwrap()));
        assert!(expand(src, &[("T", "f16")]).contains(snippet("spmm_bsr_values_f16").unwrap().lines().next().unwrap()));
    }

    #[test]
    #[should_panic(expected = "placeholder \"U\"")]
    fn an_unknown_placeholder_is_a_bug() {
        expand("alias T = f32;\n", &[("U", "f16")]);
    }
}
