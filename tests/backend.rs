//! The backend choice of 2:4 work ([`wgsparse::backend`]): parsing, the wgpu path
//! against the CPU reference, `Auto` and a forced `Cuda` on a machine without
//! CUDA (and, where CUDA works, the CUDA path against the reference), errors.
//!
//! The wgpu tests need an adapter (lavapipe in CI) and fail without one.

mod common;

use common::random;
use wgsparse::backend::{cuda_available, Backend, Sparse24Gemm, KERNEL_WGPU_NM};
use wgsparse::{prune, Error, Matrix};

/// `prune::nm(w, 2, 4)`-masked `W` times `X`, accumulated in f64.
fn reference(w: &Matrix, x: &Matrix) -> Vec<f64> {
    let mask = prune::nm(w, 2, 4).unwrap().mask;
    let (m, k, n) = (w.rows(), w.cols(), x.cols());
    let mut y = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            if !mask.get(i, p) {
                continue;
            }
            let a = w.get(i, p) as f64;
            for j in 0..n {
                y[i * n + j] += a * x.get(p, j) as f64;
            }
        }
    }
    y
}

/// Norm-wise relative error of `y` against the f64 reference.
fn rel_error(y: &Matrix, want: &[f64]) -> f64 {
    assert_eq!(y.data().len(), want.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &e) in y.data().iter().zip(want) {
        num += (a as f64 - e) * (a as f64 - e);
        den += e * e;
    }
    num.sqrt() / den.sqrt().max(1e-30)
}

fn check(g: &mut Sparse24Gemm, w: &Matrix, x: &Matrix, tol: f64, what: &str) {
    let y = g.run(x).unwrap();
    assert_eq!((y.rows(), y.cols()), (w.rows(), x.cols()), "{what}: shape");
    let err = rel_error(&y, &reference(w, x));
    assert!(
        err < tol,
        "{what}: relative error {err:e} >= {tol:e} ({})",
        g.describe()
    );
}

/// Shapes that are multiples of no tile, with K of every remainder mod 4.
const SHAPES: [(usize, usize, usize); 4] = [(37, 70, 23), (5, 9, 1), (16, 64, 8), (3, 7, 5)];

#[test]
fn backend_parses_and_displays() {
    for b in [Backend::Auto, Backend::Wgpu, Backend::Cuda] {
        assert_eq!(b.to_string().parse::<Backend>().unwrap(), b);
        assert_eq!(b.to_string().to_uppercase().parse::<Backend>().unwrap(), b);
    }
    assert_eq!("CUDA".parse::<Backend>().unwrap(), Backend::Cuda);
    assert_eq!("Wgpu".parse::<Backend>().unwrap(), Backend::Wgpu);
    assert_eq!(Backend::Auto.to_string(), "auto");
    assert_eq!(Backend::Wgpu.to_string(), "wgpu");
    assert_eq!(Backend::Cuda.to_string(), "cuda");
    assert_eq!(Backend::default(), Backend::Auto);
    match "metal".parse::<Backend>() {
        Err(Error::Invalid(msg)) => {
            assert!(msg.contains("'metal'"), "{msg}");
            for name in ["auto", "wgpu", "cuda"] {
                assert!(msg.contains(name), "the error names the accepted values: {msg}");
            }
        }
        other => panic!("'metal' must be Error::Invalid, got {other:?}"),
    }
    assert!("".parse::<Backend>().is_err());
}

#[test]
fn wgpu_matches_the_masked_cpu_reference() {
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        let w = random(m, k, 11 + i as u64);
        let x = random(k, n, 101 + i as u64);
        let mut g = Sparse24Gemm::new(&w, Backend::Wgpu).unwrap();
        assert_eq!(g.backend(), Backend::Wgpu);
        assert_eq!(g.last_kernel(), None);
        assert_eq!((g.rows(), g.cols()), (m, k));
        assert!(g.describe().starts_with("wgpu: "), "{}", g.describe());
        assert_eq!(g.fallback(), None, "a requested backend is no fallback");
        assert!(g.choices().is_empty());
        check(&mut g, &w, &x, 1e-4, &format!("wgpu {m}x{k} * {k}x{n}"));
        assert_eq!(g.last_kernel(), Some(KERNEL_WGPU_NM));
        // The same operator again, with another N.
        check(
            &mut g,
            &w,
            &random(k, n + 3, 7),
            1e-4,
            &format!("wgpu {m}x{k} * {k}x{}", n + 3),
        );
    }
}

/// A matrix of few distinct magnitudes, so most chunks of 4 hold ties.
fn tied(rows: usize, cols: usize, seed: u64) -> Matrix {
    let levels = [0.0f32, 0.5, -0.5, 1.0, -1.0];
    let r = random(rows, cols, seed);
    let data = r
        .data()
        .iter()
        .map(|v| levels[((v + 1.0) * 2.5) as usize % 5])
        .collect();
    Matrix::new(rows, cols, data).unwrap()
}

#[test]
fn wgpu_follows_the_tie_rule() {
    let w = tied(29, 46, 3);
    let x = random(46, 13, 4);
    let mut g = Sparse24Gemm::new(&w, Backend::Wgpu).unwrap();
    check(&mut g, &w, &x, 1e-4, "ties");
}

#[test]
fn auto_without_a_cuda_driver_is_wgpu_and_correct() {
    let w = random(37, 70, 21);
    let x = random(70, 23, 22);
    let mut g = Sparse24Gemm::new(&w, Backend::Auto).unwrap();
    if cuda_available().is_ok() {
        // A CUDA machine: Auto must pick it (checked in forced_cuda_*).
        assert_eq!(g.backend(), Backend::Cuda);
        assert_eq!(g.fallback(), None);
        check(&mut g, &w, &x, 1e-2, "auto on CUDA");
        return;
    }
    assert_eq!(g.backend(), Backend::Wgpu, "{}", g.describe());
    let why = g.fallback().expect("Auto says why it did not pick CUDA");
    assert!(why.to_lowercase().contains("cuda"), "{why}");
    check(&mut g, &w, &x, 1e-4, "auto");
    assert_eq!(g.last_kernel(), Some(KERNEL_WGPU_NM));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn forced_cuda_without_the_feature_is_not_compiled_with_cuda() {
    let w = random(8, 16, 1);
    assert!(matches!(cuda_available(), Err(Error::NotCompiledWithCuda)));
    match Sparse24Gemm::new(&w, Backend::Cuda) {
        Err(Error::NotCompiledWithCuda) => {}
        other => panic!("expected NotCompiledWithCuda, got {other:?}"),
    }
}

/// Whether the NVIDIA driver library can be loaded on this machine.
#[cfg(feature = "cuda")]
fn driver_present() -> bool {
    ["libcuda.so", "libcuda.so.1"].iter().any(|name| {
        // SAFETY: loading the driver library runs only its initialisers.
        unsafe { libloading::Library::new(name) }.is_ok()
    })
}

#[cfg(feature = "cuda")]
#[test]
fn forced_cuda_with_the_feature_is_the_runtime_or_its_error() {
    use wgsparse::backend::{KERNEL_CUBLAS_DENSE, KERNEL_MMA_SP};
    match cuda_available() {
        Ok(desc) => {
            assert!(desc.contains("(sm_"), "{desc}");
            for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
                let w = random(m, k, 31 + i as u64);
                let x = random(k, n, 131 + i as u64);
                let mut g = Sparse24Gemm::new(&w, Backend::Cuda).unwrap();
                assert_eq!(g.backend(), Backend::Cuda);
                assert!(g.describe().starts_with("cuda: "), "{}", g.describe());
                let what = format!("cuda {m}x{k} * {k}x{n}");
                check(&mut g, &w, &x, 1e-2, &what);
                let first = g.last_kernel().unwrap();
                assert!([KERNEL_MMA_SP, KERNEL_CUBLAS_DENSE].contains(&first), "{first}");
                let c = g.choices();
                assert_eq!(c.len(), 1);
                assert_eq!((c[0].n, c[0].kernel), (n, first));
                // The measured choice sticks for this N.
                check(&mut g, &w, &x, 1e-2, &what);
                assert_eq!(g.last_kernel(), Some(first));
                assert_eq!(g.choices().len(), 1);
                eprintln!("{what} on {}: {:?}", g.describe(), g.choices());
            }
            // Ties, and a shape large enough for the measured dispatch to matter.
            for (m, k, n) in [(29, 46, 13), (1000, 1030, 70)] {
                let w = tied(m, k, 5);
                let x = random(k, n, 6);
                let mut g = Sparse24Gemm::new(&w, Backend::Cuda).unwrap();
                check(&mut g, &w, &x, 1e-2, &format!("cuda ties {m}x{k} * {k}x{n}"));
                eprintln!("ties {m}x{k} * {k}x{n}: {:?}", g.choices());
            }
        }
        Err(Error::Cuda(why)) => {
            let w = random(8, 16, 1);
            match Sparse24Gemm::new(&w, Backend::Cuda) {
                Err(Error::Cuda(msg)) => {
                    assert_eq!(msg, why, "the forced backend reports the runtime's error");
                    if !driver_present() {
                        assert!(msg.contains("libcuda"), "{msg}");
                    }
                }
                other => panic!("expected Error::Cuda, got {other:?}"),
            }
        }
        Err(e) => panic!("cuda_available with the feature: expected Ok or Error::Cuda, got {e:?}"),
    }
}

#[test]
fn wrong_shapes_and_bad_values_are_errors() {
    let w = random(12, 20, 5);
    let mut g = Sparse24Gemm::new(&w, Backend::Wgpu).unwrap();
    match g.run(&random(19, 4, 6)) {
        Err(Error::Shape(msg)) => assert!(msg.contains("20"), "{msg}"),
        other => panic!("expected Error::Shape, got {other:?}"),
    }
    let mut x = random(20, 4, 6);
    x.data_mut()[5] = f32::NAN;
    assert!(matches!(g.run(&x), Err(Error::Invalid(_))));
    // N = 0 is an empty product, not an error.
    let y = g.run(&Matrix::zeros(20, 0).unwrap()).unwrap();
    assert_eq!((y.rows(), y.cols()), (12, 0));

    let mut bad = w.clone();
    bad.data_mut()[7] = f32::NAN;
    for b in [Backend::Wgpu, Backend::Auto, Backend::Cuda] {
        assert!(Sparse24Gemm::new(&bad, b).is_err(), "NaN weight on {b}");
    }
    assert!(matches!(
        Sparse24Gemm::new(&bad, Backend::Wgpu),
        Err(Error::NonFinite { index: 7, .. })
    ));
    bad.data_mut()[7] = f32::INFINITY;
    assert!(Sparse24Gemm::new(&bad, Backend::Wgpu).is_err());
    for (r, c) in [(0, 4), (4, 0), (0, 0)] {
        let empty = Matrix::zeros(r, c).unwrap();
        for b in [Backend::Wgpu, Backend::Auto, Backend::Cuda] {
            assert!(
                matches!(Sparse24Gemm::new(&empty, b), Err(Error::Shape(_))),
                "empty {r}x{c} on {b}"
            );
        }
    }
}
