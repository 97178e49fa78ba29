//! Sparse safetensors files: the pruned model written by `sparse_file::write`
//! and loaded back runs its stored compressed weights (no pruning) and gives
//! the logits of the model that wrote it; malformed files are clear errors.

mod common;

use std::collections::HashMap;

use common::ctx;
use common::model::{fixture, image};
use wgsparse::model::sparse_file::{self, PruneInfo};
use wgsparse::model::{cpu_forward, Criterion, GpuLite0, KernelPolicy, Lite0, PruneSpec};
use wgsparse::reference::rel_error;
use wgsparse::{Error, Pattern};

#[test]
fn written_sparse_files_load_and_compute_the_same_logits() {
    let ctx = ctx();
    let f = fixture();
    let x = image("chelsea.png");
    let (mut gpu, loaded) =
        pollster::block_on(GpuLite0::from_safetensors(&ctx, &f.bytes, KernelPolicy::Sparse)).unwrap();
    assert!(loaded.is_none(), "the checkpoint is not a sparse file");
    pollster::block_on(gpu.calibrate(&ctx, &[image("coffee.png")])).unwrap();
    for (p, s, criterion, bc) in [
        ("unstructured", 0.8, Criterion::Magnitude, false),
        ("2:4", 0.5, Criterion::Activation, true),
        ("block:8x8", 0.6, Criterion::Magnitude, true),
    ] {
        let pattern: Pattern = p.parse().unwrap();
        let mut spec = PruneSpec::new(pattern, s);
        spec.criterion = criterion;
        spec.bias_correction = bc;
        spec.dispatching = KernelPolicy::Sparse;
        pollster::block_on(gpu.prune(&ctx, &spec)).unwrap();
        let want = pollster::block_on(gpu.forward(&ctx, &x)).unwrap();
        let net = pollster::block_on(gpu.current_net(&ctx)).unwrap();
        let info = PruneInfo {
            pattern,
            sparsity: s,
            criterion: criterion.to_string(),
            bias_correction: bc,
            renorm: false,
            calibration_images: 1,
        };
        let bytes = sparse_file::write(&net, &info, &HashMap::new()).unwrap();
        assert!(bytes.len() < f.bytes.len(), "{p}: {} bytes", bytes.len());
        let (loaded, report) =
            pollster::block_on(GpuLite0::from_safetensors(&ctx, &bytes, KernelPolicy::Sparse)).unwrap();
        let report = report.expect("a sparse file reports its layers");
        assert_eq!(report.layers.len(), gpu.prunable_layers().len(), "{p}");
        assert!(
            report.layers.iter().all(|l| l.kernel != "gemm"),
            "{p}: sparse kernels run"
        );
        assert_eq!(report.bias_correction, bc);
        let got = pollster::block_on(loaded.forward(&ctx, &x)).unwrap();
        assert!(
            rel_error(&got, &want) <= 1e-6,
            "{p}: loaded logits differ by {:e}",
            rel_error(&got, &want)
        );
        // The CPU reads the same file to the same network.
        let cpu: Lite0 = Lite0::from_safetensors(&bytes).unwrap();
        let r = cpu_forward::forward(&cpu, &x).unwrap();
        assert!(rel_error(&got, &r) <= 1e-4, "{p}: CPU reference of the file differs");
    }

    // Bad files: truncated, a pattern that does not match the stored tensors,
    // an unknown format version, indices out of range.
    let net = pollster::block_on(gpu.current_net(&ctx)).unwrap();
    let info = PruneInfo {
        pattern: "block:8x8".parse().unwrap(),
        sparsity: 0.6,
        criterion: "magnitude".into(),
        bias_correction: true,
        renorm: false,
        calibration_images: 1,
    };
    let good = sparse_file::write(&net, &info, &HashMap::new()).unwrap();
    assert!(matches!(
        Lite0::from_safetensors(&good[..good.len() / 2]),
        Err(Error::Weights(_))
    ));
    let mut wrong = info.clone();
    wrong.pattern = "2:4".parse().unwrap();
    // Writing a network that is not pruned to the stated pattern is refused.
    assert!(sparse_file::write(&net, &wrong, &HashMap::new()).is_err());
    let retag = |from: &str, to: &str| -> Vec<u8> {
        // Same-length edits of the JSON header keep the file well formed.
        assert_eq!(from.len(), to.len());
        let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(good[8..8 + n].to_vec()).unwrap();
        assert!(header.contains(from), "{from} in the header");
        let mut out = good[..8].to_vec();
        out.extend(header.replacen(from, to, 1).into_bytes());
        out.extend(&good[8 + n..]);
        out
    };
    for (from, to, what) in [
        ("\"block:8x8\"", "\"block:4x8\"", "pattern"),
        ("sparse-v1", "sparse-v9", "format"),
    ] {
        let bad = retag(from, to);
        match Lite0::from_safetensors(&bad) {
            Err(Error::Weights(m)) => eprintln!("{what}: {m}"),
            other => panic!("{what}: expected a weights error, got {:?}", other.map(|_| ())),
        }
    }
    // A column index out of range in a BSR array.
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&good[8..8 + n]).unwrap();
    let off = header["_conv_head.weight.bsr.col_idx"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    let mut bad = good.clone();
    bad[8 + n + off..8 + n + off + 4].copy_from_slice(&999_999u32.to_le_bytes());
    match Lite0::from_safetensors(&bad) {
        Err(Error::Weights(m)) => assert!(m.contains("_conv_head"), "{m}"),
        other => panic!("bad column index: {:?}", other.map(|_| ())),
    }
}
