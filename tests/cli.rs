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
    let (ok, stdout, stderr) = wgsparse(&[
        "eval",
        images.to_str().unwrap(),
        "--cache",
        cache,
        "--pattern",
        "unstructured",
        "--sparsity",
        "0.3",
        "--json",
    ]);
    assert!(ok, "eval failed: {stderr}");
    assert!(stderr.contains("broken.png"), "the bad image is reported: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert_eq!(v["labelled"], 1);
    assert_eq!(v["images"][0]["label"], 281);
    let top5 = v["images"][0]["dense_top5"].as_array().unwrap();
    assert!(top5.iter().any(|c| c == 281), "the dense top-5 holds tabby: {top5:?}");
    assert_eq!(v["dense_top5"], 1.0);

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
