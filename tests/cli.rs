//! The `wgsparse` command line on the real model (lavapipe in CI): prune to a
//! sparse file, classify from it, eval a folder (JSON, synset labels), and
//! clear errors for bad requests.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::model::{cache_dir, fixture};

fn wgsparse(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgsparse"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsparse-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn prune_classify_and_eval_from_the_command_line() {
    let f = fixture();
    let cache = cache_dir();
    let cache = cache.to_str().unwrap();
    let dir = scratch("eval");
    let out = dir.join("lite0-2x4.safetensors");
    let (ok, stdout, stderr) = wgsparse(&[
        "prune",
        "--cache",
        cache,
        "--pattern",
        "2:4",
        "--bias-correction",
        "--calibration",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "prune failed: {stderr}");
    assert!(stdout.contains("bias correction on"), "{stdout}");
    let size = std::fs::metadata(&out).unwrap().len() as usize;
    assert!(
        size < f.bytes.len(),
        "the sparse file ({size} B) is smaller than the checkpoint"
    );

    let img = f.fetched.images_dir.join("chelsea.png");
    let (ok, stdout, stderr) = wgsparse(&[
        "classify",
        img.to_str().unwrap(),
        "--cache",
        cache,
        "--weights",
        out.to_str().unwrap(),
        "--runs",
        "3",
    ]);
    assert!(ok, "classify --weights failed: {stderr}");
    assert!(stdout.contains("pruned (from the file)"), "{stdout}");

    // A folder with a synset-named copy of chelsea (tabby, class 281) and one
    // undecodable file: the JSON has both views and the true accuracy.
    let images = scratch("images");
    std::fs::copy(&img, images.join("n02123045_chelsea.png")).unwrap();
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    // The kernel choices kept in a file: a corrupt one is a warning and is
    // rewritten; the same eval again measures nothing.
    let tune = dir.join("tune.json");
    std::fs::write(&tune, b"{\"format\": \"wgsparse-tune\", \"entr").unwrap();
    let eval = [
        "eval",
        images.to_str().unwrap(),
        "--cache",
        cache,
        "--pattern",
        "unstructured",
        "--sparsity",
        "0.3",
        "--json",
        "--tune-cache",
        tune.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = wgsparse(&eval);
    assert!(ok, "eval failed: {stderr}");
    assert!(
        stderr.contains("warning: ignoring") && stderr.contains("not JSON"),
        "{stderr}"
    );
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&tune).unwrap()).unwrap();
    let entries = kept["entries"].as_array().unwrap().len();
    assert!(entries > 0, "no kernel choice kept: {kept}");
    assert!(!stderr.contains("tuner: 0 kernel choices measured"), "{stderr}");
    let (ok, again, stderr2) = wgsparse(&eval);
    assert!(ok, "eval failed: {stderr2}");
    assert!(
        stderr2.contains(&format!("tuner: 0 kernel choices measured this run, {entries} kept")),
        "{stderr2}"
    );
    assert!(!stderr2.contains("warning"), "{stderr2}");
    let v2: serde_json::Value = serde_json::from_str(&again).expect("JSON on stdout");
    assert!(stderr.contains("broken.png"), "the bad image is reported: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert_eq!(v["labelled"], 1);
    assert_eq!(v["images"][0]["label"], 281);
    let top5 = v["images"][0]["dense_top5"].as_array().unwrap();
    assert!(top5.iter().any(|c| c == 281), "the dense top-5 holds tabby: {top5:?}");
    assert_eq!(v["dense_top5"], 1.0);
    assert_eq!(v2["images"], v["images"], "the reused kernel choices compute the same");

    // Bad requests: clear messages and a failing exit status.
    let empty = scratch("empty");
    for (args, says) in [
        (
            vec!["eval", empty.to_str().unwrap(), "--cache", cache],
            "no JPEG or PNG",
        ),
        (
            vec!["classify", img.to_str().unwrap(), "--cache", cache, "--pattern", "3:2"],
            "invalid N:M",
        ),
        (
            vec![
                "prune",
                "--cache",
                cache,
                "--pattern",
                "2:4",
                "--budget",
                "auto",
                "--out",
                "/dev/null",
            ],
            "--budget auto needs --sparsity",
        ),
        (
            vec![
                "classify",
                img.to_str().unwrap(),
                "--cache",
                cache,
                "--weights",
                out.to_str().unwrap(),
                "--pattern",
                "2:4",
            ],
            "already pruned",
        ),
    ] {
        let (ok, _, stderr) = wgsparse(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `wgsparse finetune` end to end at a small resolution: photos from a folder,
/// held-out agreement, a curve, a checkpoint that resumes, the sparse file
/// out (which classify loads); and its errors.
#[test]
fn finetune_from_the_command_line() {
    let f = fixture();
    let cache = cache_dir();
    let cache = cache.to_str().unwrap();
    let data = scratch("ft-data");
    for n in ["coffee.png", "chelsea.png"] {
        std::fs::copy(f.fetched.images_dir.join(n), data.join(n)).unwrap();
    }
    let held = scratch("ft-held");
    std::fs::copy(f.fetched.images_dir.join("astronaut.png"), held.join("astronaut.png")).unwrap();
    let dir = scratch("ft-out");
    let out = dir.join("ft.safetensors");
    let curve = dir.join("curve.svg");
    let base = [
        "finetune",
        "--cache",
        cache,
        "--data",
        data.to_str().unwrap(),
        "--pattern",
        "2:4",
        "--batch",
        "2",
        "--resolution",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    // Three steps with a time limit of 0 s: stops after the first, checkpointed.
    let mut args = base.to_vec();
    args.extend(["--steps", "3", "--time-limit", "0", "--heldout", held.to_str().unwrap()]);
    let (ok, stdout, stderr) = wgsparse(&args);
    assert!(ok, "finetune failed: {stderr}");
    assert!(stdout.contains("stopped by --time-limit"), "{stdout}\n{stderr}");
    let ckpt = dir.join("ft.ckpt.safetensors");
    assert!(ckpt.is_file(), "no checkpoint: {stderr}");
    // Resume to the end: the file, the curve and the held-out figures.
    let mut args = base.to_vec();
    args.extend([
        "--steps",
        "3",
        "--resume",
        "--log-every",
        "1",
        "--heldout",
        held.to_str().unwrap(),
        "--curve",
        curve.to_str().unwrap(),
    ]);
    let (ok, stdout, stderr) = wgsparse(&args);
    assert!(ok, "finetune --resume failed: {stderr}");
    assert!(stderr.contains("resumed") && stderr.contains("at step 1"), "{stderr}");
    assert!(stdout.contains("held-out agreement with dense"), "{stdout}");
    assert!(std::fs::read_to_string(&curve).unwrap().contains("<svg"));
    let img = f.fetched.images_dir.join("chelsea.png");
    let (ok, stdout, stderr) = wgsparse(&[
        "classify",
        img.to_str().unwrap(),
        "--cache",
        cache,
        "--weights",
        out.to_str().unwrap(),
        "--runs",
        "2",
    ]);
    assert!(ok && stdout.contains("pruned (from the file)"), "{stdout}{stderr}");

    // Errors: --steps 0, another recipe than the checkpoint's, a sparse file as teacher.
    let mut args = base.to_vec();
    args.extend(["--steps", "0"]);
    let (ok, _, stderr) = wgsparse(&args);
    assert!(!ok && stderr.contains("--steps must be at least 1"), "{stderr}");
    let mut args = base.to_vec();
    args.extend(["--steps", "5", "--resume"]);
    let (ok, _, stderr) = wgsparse(&args);
    assert!(!ok && stderr.contains("another recipe"), "{stderr}");
    let mut args = base.to_vec();
    args.extend(["--steps", "2", "--weights", out.to_str().unwrap()]);
    let (ok, _, stderr) = wgsparse(&args);
    assert!(
        !ok && stderr.contains("fine-tune from the dense checkpoint"),
        "{stderr}"
    );
    let empty = scratch("ft-empty");
    let (ok, _, stderr) = wgsparse(&[
        "finetune",
        "--cache",
        cache,
        "--data",
        empty.to_str().unwrap(),
        "--pattern",
        "2:4",
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("no PNG or JPEG"), "{stderr}");
}

/// `bench --tune-cache` keeps each shape's dense-or-sparse choice, with the
/// times of the benchmark's own rows, where a model's layer would look it up.
#[test]
fn bench_records_its_dense_or_sparse_choices() {
    let dir = scratch("bench");
    let (tune, json) = (dir.join("tune.json"), dir.join("bench.json"));
    let (ok, _, stderr) = wgsparse(&[
        "bench",
        "--shapes",
        "24x40x18",
        "--patterns",
        "2:4,block:4x4",
        "--sparsities",
        "0.5",
        "--runs",
        "20",
        "--warmup",
        "1",
        "--no-prune",
        "--json",
        json.to_str().unwrap(),
        "--tune-cache",
        tune.to_str().unwrap(),
    ]);
    assert!(ok, "bench failed: {stderr}");
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let ms = |kernel: &str, pattern: &str| {
        let r = rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kernel"] == kernel && r["pattern"] == pattern);
        r.unwrap_or_else(|| panic!("no {kernel} {pattern} row: {rows}"))["median_ms"].clone()
    };
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&tune).unwrap()).unwrap();
    let entries = kept["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{kept}");
    for (pattern, kernel, bucket) in [("2:4", "spmm_nm", 10), ("block:4x4", "spmm_bsr", 10)] {
        let e = entries
            .iter()
            .find(|e| e["pattern"] == pattern)
            .unwrap_or_else(|| panic!("{kept}"));
        assert_eq!(
            (&e["family"], &e["m"], &e["k"], &e["n"]),
            (&"model_layer".into(), &24.into(), &40.into(), &18.into())
        );
        assert_eq!(e["sparsity_bucket"], bucket);
        assert_eq!(e["candidates"][0]["kernel"], "gemm");
        assert_eq!(e["candidates"][0]["ms"], ms("gemm", "dense"));
        assert_eq!(e["candidates"][1]["kernel"], kernel);
        assert_eq!(e["candidates"][1]["ms"], ms(kernel, pattern));
    }
}

/// `bench --backend cuda` with the feature off says so; with it on and no
/// NVIDIA driver (CI) it names what is missing; on a machine with an sm_80+ GPU
/// it runs a small shape and prints the comparison table.
#[test]
fn bench_backend_cuda_reports_what_it_needs() {
    let (ok, stdout, stderr) = wgsparse(&["bench", "--backend", "cuda", "--shapes", "64x64x64", "--runs", "5"]);
    if cfg!(feature = "cuda") {
        if ok {
            assert!(stdout.contains("ours vs dense"), "{stdout}");
        } else {
            assert!(stderr.contains("error: CUDA:"), "{stderr}");
        }
    } else {
        assert!(!ok);
        assert!(stderr.contains("built without the `cuda` feature"), "{stderr}");
    }
    let (ok, _, stderr) = wgsparse(&["bench", "--backend", "cuda", "--dtype", "f32"]);
    assert!(!ok);
    if cfg!(feature = "cuda") {
        assert!(stderr.contains("--dtype f32"), "{stderr}");
    }
}
