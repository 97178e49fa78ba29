//! Bad input to the ONNX importer and the executor gets a clear error that
//! names what is wrong, never a panic. Models are built here as ONNX
//! protobuf (through the importer's own message declarations) and encoded
//! to bytes, so every path from bytes to a run is exercised.

use prost::Message;
use wgsparse::graph::{reference, Tensor};
use wgsparse::import::onnx::proto::{
    self, AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use wgsparse::import::onnx::{self, ImportOptions};
use wgsparse::Error;

fn value(name: &str, elem: i32, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Ok(v) => DimValue::DimValue(*v),
                                Err(p) => DimValue::DimParam(p.to_string()),
                            }),
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

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: proto::data_type::FLOAT,
        float_data: data,
        ..Default::default()
    }
}

fn model(graph: GraphProto, opset: i64) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// x [1, 2, 3, 3] -> Conv(W [2, 2, 1, 1], B) -> Relu -> y
fn conv_relu(w: Vec<f32>) -> GraphProto {
    GraphProto {
        name: "g".into(),
        node: vec![
            node("Conv", "conv0", &["x", "W", "B"], &["c"]),
            node("Relu", "relu0", &["c"], &["y"]),
        ],
        initializer: vec![
            f32_tensor("W", &[2, 2, 1, 1], w),
            f32_tensor("B", &[2], vec![0.5, -0.5]),
        ],
        input: vec![value("x", proto::data_type::FLOAT, &[Ok(1), Ok(2), Ok(3), Ok(3)])],
        output: vec![value("y", proto::data_type::FLOAT, &[])],
        ..Default::default()
    }
}

fn good_model() -> Vec<u8> {
    model(conv_relu(vec![1.0, 2.0, -1.0, 0.5]), 17)
}

#[test]
fn a_good_model_loads_and_runs() {
    let g = onnx::load(&good_model(), &ImportOptions::default()).unwrap();
    let x = Tensor::from_f32(vec![1, 2, 3, 3], (0..18).map(|v| v as f32).collect()).unwrap();
    let y = reference::run(&g, vec![("x".into(), x)]).unwrap();
    let v = y[0].1.f32s("y").unwrap();
    // channel 0 at pixel 0: 1*x0 + 2*x9 + 0.5 = 18.5; channel 1: -0 + 0.5*9 - 0.5 = 4
    assert_eq!((v[0], v[9]), (18.5, 4.0));
}

#[test]
fn truncated_and_foreign_bytes() {
    let bytes = good_model();
    for cut in [1, 7, bytes.len() / 3, bytes.len() / 2, bytes.len() - 3] {
        let err = onnx::load(&bytes[..cut], &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::OnnxDecode(_) | Error::UndefinedValue { .. }),
            "cut at {cut}: {err}"
        );
    }
    for foreign in [
        &b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..],
        b"hello world, not a model",
        b"",
        &[0xff; 64],
    ] {
        let err = onnx::load(foreign, &ImportOptions::default()).unwrap_err();
        assert!(matches!(err, Error::OnnxDecode(_)), "{foreign:?}: {err}");
    }
}

#[test]
fn opset_out_of_range() {
    for opset in [7, 22] {
        let err = onnx::load(&model(conv_relu(vec![1.0; 4]), opset), &ImportOptions::default()).unwrap_err();
        match err {
            Error::OpsetOutOfRange { version, min, max, .. } => assert_eq!((version, min, max), (opset, 11, 21)),
            other => panic!("opset {opset}: {other}"),
        }
    }
}

#[test]
fn unsupported_op_names_op_node_and_the_supported_set() {
    let mut g = conv_relu(vec![1.0; 4]);
    g.node[1] = node("Einsum", "mix", &["c"], &["y"]);
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnsupportedOp { .. }), "{msg}");
    assert!(
        msg.contains("Einsum") && msg.contains("'mix'") && msg.contains("Conv") && msg.contains("Softmax"),
        "{msg}"
    );
    let mut g = conv_relu(vec![1.0; 4]);
    g.node[1].domain = "com.microsoft".into();
    let msg = onnx::load(&model(g, 17), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("com.microsoft"), "{msg}");
}

#[test]
fn external_data_found_and_missing() {
    let dir = std::env::temp_dir().join(format!("wgsparse-onnx-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = conv_relu(vec![]);
    let w = [3.0f32, -2.0, 0.25, 1.0];
    let mut blob = vec![0u8; 8]; // 8 bytes of something else first: the offset is honoured
    for v in w {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.join("weights.bin"), &blob).unwrap();
    g.initializer[0] = TensorProto {
        name: "W".into(),
        dims: vec![2, 2, 1, 1],
        data_type: proto::data_type::FLOAT,
        data_location: proto::DATA_LOCATION_EXTERNAL,
        external_data: [("location", "weights.bin"), ("offset", "8"), ("length", "16")]
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    };
    let path = dir.join("model.onnx");
    std::fs::write(&path, model(g.clone(), 17)).unwrap();
    let loaded = onnx::load_file(&path, &ImportOptions::default()).unwrap();
    assert_eq!(loaded.constants["W"].f32s("W").unwrap(), w);
    // Bytes without a directory, then the file gone.
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ExternalData { .. }), "{err}");
    std::fs::remove_file(dir.join("weights.bin")).unwrap();
    let err = onnx::load_file(&path, &ImportOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::ExternalData { .. }) && msg.contains("weights.bin") && msg.contains("'W'"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn external_data_outside_the_model_directory_is_refused() {
    let mut g = conv_relu(vec![]);
    g.initializer[0] = TensorProto {
        name: "W".into(),
        dims: vec![2, 2, 1, 1],
        data_type: proto::data_type::FLOAT,
        data_location: proto::DATA_LOCATION_EXTERNAL,
        external_data: vec![StringStringEntryProto {
            key: "location".into(),
            value: "../../etc/passwd".into(),
        }],
        ..Default::default()
    };
    let opts = ImportOptions::default().base_dir(std::env::temp_dir());
    let err = onnx::load(&model(g, 17), &opts).unwrap_err();
    assert!(matches!(err, Error::ExternalData { .. }), "{err}");
}

#[test]
fn dynamic_dimension_needs_a_shape() {
    let mut g = conv_relu(vec![1.0; 4]);
    g.input[0] = value("x", proto::data_type::FLOAT, &[Err("batch"), Ok(2), Ok(3), Ok(3)]);
    let bytes = model(g, 17);
    match onnx::load(&bytes, &ImportOptions::default()).unwrap_err() {
        Error::DynamicDim { input, axis, param } => {
            assert_eq!((input.as_str(), axis, param.as_str()), ("x", 0, "batch"))
        }
        other => panic!("{other}"),
    }
    let g = onnx::load(&bytes, &ImportOptions::default().input_shape("x", [4, 2, 3, 3])).unwrap();
    assert_eq!(g.info("y").unwrap().shape, [4, 2, 3, 3]);
    // A given shape that contradicts a fixed dimension, and one for an unknown input.
    let err = onnx::load(&bytes, &ImportOptions::default().input_shape("x", [4, 3, 3, 3])).unwrap_err();
    assert!(matches!(err, Error::InputShape { .. }), "{err}");
    let err = onnx::load(
        &bytes,
        &ImportOptions::default()
            .input_shape("x", [1, 2, 3, 3])
            .input_shape("z", [1]),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InputName { .. }), "{err}");
}

#[test]
fn cycle_and_undefined_value() {
    let mut g = conv_relu(vec![1.0; 4]);
    // relu0 reads y2, which a new node makes from y: a loop through three nodes.
    g.node[0].input[0] = "y2".into();
    g.node.push(node("Relu", "back", &["y"], &["y2"]));
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    match &err {
        Error::Cycle { nodes } => assert!(
            nodes.contains(&"back".to_string()) && nodes.contains(&"conv0".to_string()),
            "{err}"
        ),
        other => panic!("{other}"),
    }
    let mut g = conv_relu(vec![1.0; 4]);
    g.node[1].input[0] = "nothing".into();
    let msg = onnx::load(&model(g, 17), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nothing") && msg.contains("relu0"), "{msg}");
}

#[test]
fn nan_weights_are_refused() {
    let err = onnx::load(
        &model(conv_relu(vec![1.0, f32::NAN, 0.0, 1.0]), 17),
        &ImportOptions::default(),
    )
    .unwrap_err();
    match err {
        Error::NonFiniteWeight { tensor, index, .. } => assert_eq!((tensor.as_str(), index), ("W", 1)),
        other => panic!("{other}"),
    }
}

#[test]
fn wrong_inputs_at_run() {
    let g = onnx::load(&good_model(), &ImportOptions::default()).unwrap();
    let ok = Tensor::from_f32(vec![1, 2, 3, 3], vec![0.0; 18]).unwrap();
    let err = reference::run(&g, vec![("X".into(), ok.clone())]).unwrap_err();
    assert!(
        matches!(err, Error::InputName { .. }) && err.to_string().contains("'X'"),
        "{err}"
    );
    let err = reference::run(&g, vec![]).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let bad_shape = Tensor::from_f32(vec![1, 2, 3, 4], vec![0.0; 24]).unwrap();
    let err = reference::run(&g, vec![("x".into(), bad_shape)]).unwrap_err();
    assert!(matches!(err, Error::InputShape { .. }), "{err}");
    let bad_type = Tensor::from_i64(vec![1, 2, 3, 3], vec![0; 18]).unwrap();
    let err = reference::run(&g, vec![("x".into(), bad_type)]).unwrap_err();
    assert!(matches!(err, Error::InputDtype { .. }), "{err}");
    let err = reference::run(&g, vec![("x".into(), ok.clone()), ("x".into(), ok)]).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn shape_decided_at_run_time_is_refused() {
    // Reshape whose target is computed from the float input (Cast to int64).
    let g = GraphProto {
        node: vec![
            NodeProto {
                attribute: vec![AttributeProto {
                    name: "to".into(),
                    r#type: proto::attribute_type::INT,
                    i: proto::data_type::INT64 as i64,
                    ..Default::default()
                }],
                ..node("Cast", "cast", &["s"], &["si"])
            },
            node("Reshape", "reshape", &["x", "si"], &["y"]),
        ],
        input: vec![
            value("x", proto::data_type::FLOAT, &[Ok(2), Ok(3)]),
            value("s", proto::data_type::FLOAT, &[Ok(2)]),
        ],
        output: vec![value("y", proto::data_type::FLOAT, &[])],
        ..Default::default()
    };
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    match err {
        Error::NotConstant { node, input, .. } => assert_eq!((node.as_str(), input.as_str()), ("reshape", "si")),
        other => panic!("{other}"),
    }
}

#[test]
fn malformed_attributes_and_tensors() {
    // Conv group that does not divide the channels.
    let mut g = conv_relu(vec![1.0; 4]);
    g.node[0].attribute.push(AttributeProto {
        name: "group".into(),
        r#type: proto::attribute_type::INT,
        i: 3,
        ..Default::default()
    });
    let msg = onnx::load(&model(g, 17), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("conv0") && msg.contains("group"), "{msg}");
    // An attribute of the wrong type.
    let mut g = conv_relu(vec![1.0; 4]);
    g.node[0].attribute.push(AttributeProto {
        name: "strides".into(),
        r#type: proto::attribute_type::FLOAT,
        f: 2.0,
        ..Default::default()
    });
    let msg = onnx::load(&model(g, 17), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("strides"), "{msg}");
    // A weight whose data does not fill its shape.
    let msg = onnx::load(&model(conv_relu(vec![1.0; 3]), 17), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'W'"), "{msg}");
    // A bfloat16 input (not a claimed type).
    let mut g = conv_relu(vec![1.0; 4]);
    g.input[0] = value("x", proto::data_type::BFLOAT16, &[Ok(1), Ok(2), Ok(3), Ok(3)]);
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedDtype { .. }) && err.to_string().contains("BFLOAT16"),
        "{err}"
    );
    // A float16 input imports, and Conv says it computes in f32 only.
    let mut g = conv_relu(vec![1.0; 4]);
    g.input[0] = value("x", proto::data_type::FLOAT16, &[Ok(1), Ok(2), Ok(3), Ok(3)]);
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::UnsupportedDtype { .. }) && msg.contains("float16") && msg.contains("conv0"),
        "{msg}"
    );
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    // ConstantOfShape asking for 10^14 floats: folded at load, refused, no abort.
    let g = GraphProto {
        node: vec![node("ConstantOfShape", "huge", &["shape"], &["y"])],
        initializer: vec![TensorProto {
            name: "shape".into(),
            dims: vec![2],
            data_type: proto::data_type::INT64,
            int64_data: vec![10_000_000, 10_000_000],
            ..Default::default()
        }],
        output: vec![value("y", proto::data_type::FLOAT, &[])],
        ..Default::default()
    };
    let err = onnx::load(&model(g, 17), &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
}
