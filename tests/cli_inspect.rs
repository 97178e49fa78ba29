//! `wgsparse inspect MODEL.onnx` end to end: a model written here as ONNX
//! protobuf (through the importer's own message declarations), with a Conv
//! whose weight is exactly 2:4 along Cin*KH*KW and a Gemm with random zeros;
//! the report (text and JSON) names the structure found in each. A dynamic
//! batch needs --input-shape, and bad files are clear errors.

use std::path::PathBuf;
use std::process::Command;

use prost::Message;
use wgsparse::import::onnx::proto::{
    self, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};

fn wgsparse(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgsparse"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn value(name: &str, dims: &[DimValue]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: proto::data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(d.clone()),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: proto::data_type::FLOAT,
        float_data: data,
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// x [batch, 4, 6, 6] -> Conv(W 8x4x3x3, 2:4 along 36) -> Flatten -> Gemm(W 10 x 1152, ~60% zeros) -> y
fn model() -> Vec<u8> {
    let mut s = 12345u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    // In every group of 4 along K keep slots (i + r) % 4 and (i + r + 1) % 4: exact 2:4.
    let conv_w: Vec<f32> = (0..8 * 36)
        .map(|i| {
            let (r, k) = (i / 36, i % 36);
            let slot = (k % 4 + 4 - r % 4) % 4;
            if slot < 2 {
                0.1 + rnd().abs()
            } else {
                0.0
            }
        })
        .collect();
    let gemm_w: Vec<f32> = (0..10 * 8 * 16)
        .map(|_| {
            let v = rnd();
            if v.abs() < 0.3 {
                0.0
            } else {
                v
            }
        })
        .collect();
    let conv = NodeProto {
        attribute: vec![proto::AttributeProto {
            name: "kernel_shape".into(),
            r#type: proto::attribute_type::INTS,
            ints: vec![3, 3],
            ..Default::default()
        }],
        ..node("Conv", "conv0", &["x", "Wc"], &["c"])
    };
    let graph = GraphProto {
        name: "inspect-me".into(),
        node: vec![
            conv,
            node("Flatten", "flat0", &["c"], &["f"]),
            NodeProto {
                attribute: vec![proto::AttributeProto {
                    name: "transB".into(),
                    r#type: proto::attribute_type::INT,
                    i: 1,
                    ..Default::default()
                }],
                ..node("Gemm", "fc0", &["f", "Wg"], &["y"])
            },
        ],
        initializer: vec![tensor("Wc", &[8, 4, 3, 3], conv_w), tensor("Wg", &[10, 128], gemm_w)],
        input: vec![value(
            "x",
            &[
                DimValue::DimParam("batch".into()),
                DimValue::DimValue(4),
                DimValue::DimValue(6),
                DimValue::DimValue(6),
            ],
        )],
        output: vec![value("y", &[])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsparse-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn inspect_reports_the_sparsity_already_in_the_weights() {
    let dir = scratch();
    let path = dir.join("m.onnx");
    std::fs::write(&path, model()).unwrap();
    let p = path.to_str().unwrap();

    // The batch is dynamic: without a shape the error says which input needs one.
    let (ok, _, stderr) = wgsparse(&["inspect", p]);
    assert!(!ok, "a dynamic batch was accepted");
    assert!(stderr.contains('x') && stderr.contains("shape"), "{stderr}");

    let (ok, stdout, stderr) = wgsparse(&["inspect", p, "--input-shape", "x=2x4x6x6", "--json"]);
    assert!(ok, "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["inputs"][0]["shape"], serde_json::json!([2, 4, 6, 6]), "{r}");
    assert_eq!(r["outputs"][0]["shape"], serde_json::json!([2, 10]), "{r}");
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{r}");
    let conv = layers.iter().find(|l| l["op"] == "Conv").unwrap();
    assert_eq!(
        (conv["rows"].as_u64(), conv["reduction"].as_u64()),
        (Some(8), Some(36)),
        "{conv}"
    );
    assert_eq!(conv["structure"], "nm", "{conv}");
    assert_eq!((conv["n"].as_u64(), conv["m"].as_u64()), (Some(2), Some(4)), "{conv}");
    let fc = layers.iter().find(|l| l["op"] == "Gemm").unwrap();
    assert_eq!(fc["structure"], "unstructured", "{fc}");
    let density = fc["density"].as_f64().unwrap();
    assert!((0.3..0.55).contains(&density), "{fc}");

    // The text form names the same.
    let (ok, stdout, stderr) = wgsparse(&["inspect", p, "--input-shape", "x=1x4x6x6"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("conv0") && stdout.contains("2:4"), "{stdout}");

    // A truncated file and a bad --input-shape are clear errors.
    let bytes = model();
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, stderr) = wgsparse(&["inspect", cut.to_str().unwrap(), "--input-shape", "x=1x4x6x6"]);
    assert!(!ok && stderr.contains("ONNX"), "{stderr}");
    let (ok, _, stderr) = wgsparse(&["inspect", p, "--input-shape", "x=1xfour"]);
    assert!(!ok && stderr.contains("--input-shape"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
