//! The tuner without a GPU: key bucketing, reuse of a decision without
//! measuring again, and what it does with cache files (its own, another
//! adapter's, corrupt ones).

use std::cell::Cell;
use std::path::PathBuf;

use wgsparse::gpu::tune::{bucket_dim, bucket_sparsity, Family, TuneKey, Tuner, FILE_NAME};
use wgsparse::Pattern;

const ADAPTER: &str = "wgpu: test adapter | Vulkan | test 1 | 0000:0000 | checks Bounds";

/// A fresh folder under the temp dir for one test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsparse-tune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key(m: usize, k: usize, n: usize, s: f64) -> TuneKey {
    TuneKey::new(Family::ModelLayer, m, k, n, Pattern::Block { rows: 16, cols: 16 }, s)
}

/// Runs `choose_blocking` with fixed times, counting how often it measured.
fn choose(t: &Tuner, key: TuneKey, cands: &[&str], times: &[f64], calls: &Cell<usize>) -> wgsparse::gpu::tune::Choice {
    t.choose_blocking(key, cands, || {
        calls.set(calls.get() + 1);
        Ok(times.to_vec())
    })
    .unwrap()
}

#[test]
fn dimensions_bucket_exactly_when_small_and_within_a_sixteenth_above() {
    for x in 0..=16 {
        assert_eq!(bucket_dim(x), x);
    }
    assert_eq!(bucket_dim(17), 18);
    assert_eq!(bucket_dim(196), 208);
    assert_eq!(bucket_dim(1000), 1024);
    assert_eq!(bucket_dim(1010), 1024);
    assert_eq!(bucket_dim(1025), 1152);
    assert_eq!(bucket_dim(12544), 13312);
    for x in [17, 100, 196, 999, 4097, 1 << 20] {
        let b = bucket_dim(x);
        assert!(b >= x && (b - x) as f64 <= x as f64 / 8.0, "{x} -> {b}");
        assert_eq!(bucket_dim(b), b, "a bucket is its own bucket");
    }
    // Every distinct channel count and pixel count of EfficientNet-Lite0 at
    // 224 keeps a bucket of its own, so its layers are decided one by one.
    let lite0 = [
        1, 16, 24, 32, 40, 49, 80, 96, 112, 144, 192, 196, 240, 320, 480, 672, 784, 1000, 1152, 1280, 3136, 12544,
    ];
    let mut buckets: Vec<usize> = lite0.iter().map(|&x| bucket_dim(x)).collect();
    buckets.dedup();
    assert_eq!(buckets.len(), lite0.len(), "{buckets:?}");
}

#[test]
fn sparsities_bucket_in_twentieths() {
    assert_eq!(bucket_sparsity(0.5), 10);
    assert_eq!(bucket_sparsity(0.52), 10);
    assert_eq!(bucket_sparsity(0.53), 11);
    assert_eq!(bucket_sparsity(-1.0), 0);
    assert_eq!(bucket_sparsity(f64::NAN), 0);
    assert_eq!(bucket_sparsity(2.0), 20);
    assert_eq!(key(64, 64, 64, 0.5), key(64, 64, 64, 0.51));
    assert_ne!(key(64, 64, 64, 0.5), key(64, 64, 64, 0.6));
    assert_eq!(key(1000, 1280, 1, 0.5), key(1010, 1280, 1, 0.5));
    assert_ne!(key(1000, 1280, 1, 0.5), key(1000, 1280, 2, 0.5));
    assert_ne!(
        key(64, 64, 64, 0.5),
        TuneKey::new(
            Family::ModelLayerF16,
            64,
            64,
            64,
            Pattern::Block { rows: 16, cols: 16 },
            0.5
        )
    );
}

#[test]
fn a_decision_is_measured_once_and_reused() {
    let t = Tuner::new(ADAPTER);
    let calls = Cell::new(0);
    let cands = ["gemm", "spmm_bsr"];
    let c = choose(&t, key(96, 16, 12544, 0.7), &cands, &[2.0, 1.0], &calls);
    assert_eq!((c.pick, c.kernel(), c.reused), (1, "spmm_bsr", false));
    // Same bucket (another sparsity within 1/40, another N within ~6%): reused,
    // whatever a new measurement would say.
    let c = choose(&t, key(96, 16, 12500, 0.71), &cands, &[1.0, 2.0], &calls);
    assert_eq!((c.pick, c.reused, calls.get(), t.measurements()), (1, true, 1, 1));
    assert_eq!(c.times, vec![("gemm".to_string(), 2.0), ("spmm_bsr".to_string(), 1.0)]);
    // Another shape, or other candidates for the same key: measured.
    let c = choose(&t, key(144, 24, 3136, 0.7), &cands, &[1.0, 3.0], &calls);
    assert_eq!((c.pick, calls.get()), (0, 2));
    let c = choose(&t, key(96, 16, 12544, 0.7), &["gemm", "spmm_csr"], &[1.0, 3.0], &calls);
    assert_eq!((c.pick, calls.get(), t.measurements(), t.len()), (0, 3, 3, 2));
}

#[test]
fn the_first_candidate_wins_a_tie_and_one_that_cannot_run_never_wins() {
    let t = Tuner::new(ADAPTER);
    let calls = Cell::new(0);
    let c = choose(&t, key(8, 8, 8, 0.5), &["gemm", "spmm_bsr"], &[1.0, 1.0], &calls);
    assert_eq!(c.pick, 0);
    let c = choose(
        &t,
        key(9, 9, 9, 0.5),
        &["a", "b", "c"],
        &[f64::INFINITY, 3.0, 2.0],
        &calls,
    );
    assert_eq!((c.pick, c.ms(0), c.ms(2)), (2, None, Some(2.0)));
    // A measurement that fails is not recorded.
    let r = t.choose_blocking(key(10, 10, 10, 0.5), &["a"], || {
        Err(wgsparse::Error::Gpu("lost".into()))
    });
    assert!(r.is_err());
    assert_eq!(t.get(&key(10, 10, 10, 0.5), &["a"]), None);
    // Times that are not durations are refused.
    assert!(t.insert(key(11, 11, 11, 0.5), &["a", "b"], &[1.0]).is_err());
    assert!(t.insert(key(11, 11, 11, 0.5), &["a"], &[f64::NAN]).is_err());
}

#[test]
fn a_saved_file_is_reused_on_the_same_adapter_only() {
    let dir = temp_dir("roundtrip");
    let path = dir.join(FILE_NAME);
    let t = Tuner::new(ADAPTER);
    let calls = Cell::new(0);
    choose(&t, key(96, 16, 12544, 0.7), &["gemm", "spmm_bsr"], &[2.0, 1.0], &calls);
    choose(&t, key(40, 40, 40, 0.0), &["a", "b"], &[f64::INFINITY, 1.0], &calls);
    t.save(&path).unwrap();

    let (same, warning) = Tuner::open(ADAPTER, &path);
    assert_eq!(warning, None);
    assert_eq!(same.len(), 2);
    let c = choose(
        &same,
        key(96, 16, 12544, 0.7),
        &["gemm", "spmm_bsr"],
        &[1.0, 2.0],
        &calls,
    );
    assert_eq!((c.pick, c.reused, same.measurements(), calls.get()), (1, true, 0, 2));
    // A candidate that could not run stays one (null in the file).
    assert_eq!(
        same.get(&key(40, 40, 40, 0.0), &["a", "b"]),
        Some(vec![f64::INFINITY, 1.0])
    );
    // The string form is the file's.
    let s = Tuner::new(ADAPTER);
    assert_eq!(s.load_str(&t.to_json_string()).unwrap(), 2);

    let (other, warning) = Tuner::open("wgpu: another adapter", &path);
    let warning = warning.expect("a file of another adapter is reported");
    assert!(warning.contains("another adapter"), "{warning}");
    assert!(other.is_empty());
    let c = choose(
        &other,
        key(96, 16, 12544, 0.7),
        &["gemm", "spmm_bsr"],
        &[1.0, 2.0],
        &calls,
    );
    assert_eq!((c.pick, c.reused, other.measurements()), (0, false, 1));

    // Not UTF-8 text: unreadable as a cache, said so.
    std::fs::write(dir.join("binary.json"), [0xff, 0xfe, 0x00]).unwrap();
    let (none, warning) = Tuner::open(ADAPTER, &dir.join("binary.json"));
    let warning = warning.expect("an unreadable file is reported");
    assert!(
        none.is_empty() && warning.contains("tuning cache unreadable"),
        "{warning}"
    );
    // No file: an empty tuner and nothing to say.
    let (none, warning) = Tuner::open(ADAPTER, &dir.join("absent.json"));
    assert!(none.is_empty() && warning.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_or_stale_file_is_a_warning_and_an_empty_tuner() {
    let dir = temp_dir("corrupt");
    let path = dir.join(FILE_NAME);
    let t = Tuner::new(ADAPTER);
    t.insert(key(96, 16, 12544, 0.7), &["gemm", "spmm_bsr"], &[2.0, 1.0])
        .unwrap();
    t.insert(key(24, 24, 24, 0.7), &["gemm", "spmm_bsr"], &[2.0, 1.0])
        .unwrap();
    let good = t.to_json_string();
    let version = format!("\"crate_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    let cases = [
        ("not JSON", "{\"format\": \"wgsparse-tune\", \"entr".to_string()),
        ("binary", "\u{0}\u{1}\u{2}".to_string()),
        ("a list", "[1, 2]".to_string()),
        ("another format", good.replace("wgsparse-tune", "something-else")),
        (
            "another crate version",
            good.replace(&version, "\"crate_version\": \"0.0.0-old\""),
        ),
        ("a negative time", good.replacen("\"ms\": 2.0", "\"ms\": -2.0", 1)),
        ("a time as text", good.replacen("\"ms\": 2.0", "\"ms\": \"fast\"", 1)),
        ("a shape that is no bucket", good.replacen("\"m\": 96", "\"m\": 97", 1)),
        ("an unknown family", good.replacen("\"model_layer\"", "\"tpu\"", 1)),
        (
            "no candidates",
            good.replacen("\"kernel\": \"gemm\"", "\"name\": \"gemm\"", 1),
        ),
    ];
    for (what, text) in cases {
        assert_ne!(text, good, "{what}: the corruption changed nothing");
        std::fs::write(&path, &text).unwrap();
        let (got, warning) = Tuner::open(ADAPTER, &path);
        let warning = warning.unwrap_or_else(|| panic!("{what}: no warning"));
        assert!(
            warning.contains(FILE_NAME) && warning.contains("tuning cache"),
            "{what}: {warning}"
        );
        // All or nothing: a file with one bad entry gives none of its entries.
        assert!(got.is_empty(), "{what}: {} entries trusted", got.len());
        assert!(Tuner::new(ADAPTER).load_str(&text).is_err(), "{what}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn absorbing_adds_only_missing_decisions_of_the_same_adapter() {
    let (a, b) = (Tuner::new(ADAPTER), Tuner::new(ADAPTER));
    a.insert(key(8, 8, 8, 0.5), &["gemm", "spmm_bsr"], &[1.0, 2.0]).unwrap();
    b.insert(key(8, 8, 8, 0.5), &["gemm", "spmm_bsr"], &[3.0, 2.0]).unwrap();
    b.insert(key(9, 9, 9, 0.5), &["gemm", "spmm_bsr"], &[3.0, 2.0]).unwrap();
    assert_eq!(a.absorb(&b).unwrap(), 1);
    assert_eq!(
        a.get(&key(8, 8, 8, 0.5), &["gemm", "spmm_bsr"]),
        Some(vec![1.0, 2.0]),
        "its own stays"
    );
    assert_eq!(a.get(&key(9, 9, 9, 0.5), &["gemm", "spmm_bsr"]), Some(vec![3.0, 2.0]));
    assert_eq!(a.absorb(&a).unwrap(), 0);
    assert!(a.absorb(&Tuner::new("wgpu: another adapter")).is_err());
}
