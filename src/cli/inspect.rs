//! `wgsparse inspect MODEL.onnx`: inputs and outputs, ops, parameters, and the
//! sparsity already in each weight-bearing layer (text, or JSON with `--json`).

use std::path::PathBuf;

use wgsparse::graph::inspect::inspect;
use wgsparse::import::onnx::{load_file, ImportOptions};

#[derive(clap::Args)]
pub(super) struct InspectArgs {
    /// The ONNX model (external data files are looked up next to it).
    model: PathBuf,
    /// A fixed shape for an input with dynamic dimensions, `NAME=1x3x224x224`
    /// (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shapes: Vec<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `NAME=D0xD1x...` into the name and its dimensions.
fn parse_shape(spec: &str) -> wgsparse::Result<(String, Vec<usize>)> {
    let bad = || {
        wgsparse::Error::Invalid(format!(
            "--input-shape {spec:?}: expected NAME=DIMS with DIMS like 1x3x224x224"
        ))
    };
    let (name, dims) = spec.split_once('=').ok_or_else(bad)?;
    let dims = dims
        .split('x')
        .map(|d| d.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<wgsparse::Result<Vec<_>>>()?;
    if name.is_empty() || dims.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), dims))
}

pub(super) fn run(a: InspectArgs) -> wgsparse::Result<()> {
    let mut opts = ImportOptions::default();
    for s in &a.input_shapes {
        let (name, dims) = parse_shape(s)?;
        opts = opts.input_shape(&name, dims);
    }
    let graph = load_file(&a.model, &opts)?;
    let report = inspect(&graph)?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(())
}
