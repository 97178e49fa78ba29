//! N:M and CSR SpMM on the GPU against the CPU references, on shapes that are
//! not multiples of any tile, every kernel variant, with and without the fused
//! epilogue. Outputs are poisoned with NaN before every run. These tests FAIL
//! (never skip) when no adapter exists: CI installs lavapipe.

use wgsparse::gpu::{elementwise, spmm_csr, spmm_nm, Activation, Context, Epilogue, GpuBuffer, GpuMatrix, GpuNm};
use wgsparse::prune::prune;
use wgsparse::reference::{rel_error, spmm_csr as ref_csr, spmm_nm as ref_nm};
use wgsparse::{Csr, Error, Matrix, NmMatrix, Pattern, SparseMatrix};

/// Norm-wise relative error allowed between f32 GPU results and the f64 reference.
const F32_REL_TOL: f64 = 1e-5;

fn ctx() -> Context {
    match Context::new_blocking() {
        Ok(c) => c,
        Err(e) => panic!("GPU tests need an adapter (CI installs mesa-vulkan-drivers): {e}"),
    }
}

/// Small deterministic generator (xorshift64*), values uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn matrix(&mut self, rows: usize, cols: usize) -> Matrix {
        Matrix::new(rows, cols, (0..rows * cols).map(|_| self.f32()).collect()).unwrap()
    }
}

const ACTS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Relu6];

/// `act(y + bias[row])` on the CPU.
fn cpu_epilogue(y: &Matrix, bias: Option<&[f32]>, act: Activation) -> Matrix {
    let mut out = y.clone();
    let cols = y.cols();
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let b = bias.map_or(0.0, |b| b[i / cols.max(1)]);
        *v = act.apply(*v + b);
    }
    out
}

fn assert_close(actual: &Matrix, expected: &Matrix, what: &str) {
    assert_eq!((actual.rows(), actual.cols()), (expected.rows(), expected.cols()));
    let (a, e) = (actual.data(), expected.data());
    let err = rel_error(a, e);
    if err.is_nan() || err > F32_REL_TOL {
        let scale = e.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        let bad = a
            .iter()
            .zip(e)
            .position(|(x, y)| !x.is_finite() || (x - y).abs() > 1e-4 * scale)
            .unwrap_or(0);
        panic!(
            "{what}: rel_error {err:e} > {F32_REL_TOL:e}; first bad index {bad} (row {}, col {}): actual {}, expected {}",
            bad / actual.cols().max(1),
            bad % actual.cols().max(1),
            a[bad],
            e[bad]
        );
    }
}

/// Poisons Y, runs `dispatch`, downloads Y.
fn run_poisoned(ctx: &Context, y: &GpuMatrix, d: &wgsparse::gpu::Dispatch) -> Matrix {
    elementwise::fill_f32(ctx, y.buffer(), f32::NAN).unwrap();
    ctx.submit(&[d]);
    y.download_blocking(ctx).unwrap()
}

fn nm_of(w: &Matrix, n: usize, m: usize) -> NmMatrix {
    match prune(w, Pattern::NM { n, m }, 0.0).unwrap().0 {
        SparseMatrix::Nm(nm) => nm,
        other => panic!("prune gave {:?}", other.pattern()),
    }
}

fn csr_of(w: &Matrix, sparsity: f64) -> Csr {
    match prune(w, Pattern::Unstructured, sparsity).unwrap().0 {
        SparseMatrix::Csr(c) => c,
        other => panic!("prune gave {:?}", other.pattern()),
    }
}

// (M, K, N): none a multiple of a tile; K not a multiple of m; N = 1 and tiny.
const SHAPES: [(usize, usize, usize); 8] = [
    (45, 37, 201),
    (37, 53, 29),
    (1, 1, 1),
    (13, 30, 1),
    (9, 7, 6),
    (70, 45, 3),
    (130, 66, 37),
    (300, 500, 70),
];

const NM_PATTERNS: [(usize, usize); 10] = [
    (2, 4),
    (5, 8),
    (1, 4),
    (2, 8),
    (4, 8),
    (1, 2),
    (3, 5),
    (1, 16),
    (7, 16),
    (16, 16),
];

/// The forced tilings every N:M shape also runs with (besides the automatic
/// one); [`spmm_nm::Tiling::Switch`] only where the pattern allows it.
fn nm_tilings() -> [spmm_nm::Tiling; 5] {
    [
        spmm_nm::Tiling::Tiled {
            col_threads: 8,
            row_threads: 16,
            rows_per_thread: 3,
            groups_per_chunk: 3,
        },
        spmm_nm::Tiling::Rows {
            col_threads: 2,
            split: 4,
            rows: 8,
        },
        spmm_nm::Tiling::Rows {
            col_threads: 1,
            split: 1,
            rows: 64,
        },
        spmm_nm::Tiling::Switch {
            col_threads: 4,
            vec4s: 2,
            row_threads: 8,
            rows_per_thread: 3,
            groups_per_chunk: 3,
        },
        spmm_nm::Tiling::Switch {
            col_threads: 32,
            vec4s: 1,
            row_threads: 4,
            rows_per_thread: 16,
            groups_per_chunk: 2,
        },
    ]
}

#[test]
fn nm_every_pattern_shape_and_tiling_matches_the_reference() {
    let ctx = ctx();
    let mut rng = Rng(0x1234_5678);
    for &(n, m) in &NM_PATTERNS {
        for &(rows, k, cols) in &SHAPES {
            let w = rng.matrix(rows, k);
            let nm = nm_of(&w, n, m);
            let x = rng.matrix(k, cols);
            let expected = ref_nm(&nm, &x).unwrap();
            let gw = GpuNm::upload(&ctx, &nm).unwrap();
            let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
            let gy = GpuMatrix::new(&ctx, rows, cols, "y").unwrap();
            let epi = Epilogue::default();
            let auto = spmm_nm::Tiling::auto(&ctx, &gw, cols);
            for t in std::iter::once(auto).chain(nm_tilings()) {
                let unsupported = matches!(t, spmm_nm::Tiling::Switch { .. }) && (m > 8 || n > 2);
                if unsupported {
                    assert!(matches!(
                        spmm_nm::prepare_with(&ctx, &gw, &gx, &gy, &epi, t),
                        Err(Error::Limit(_))
                    ));
                    continue;
                }
                let d = spmm_nm::prepare_with(&ctx, &gw, &gx, &gy, &epi, t).unwrap();
                let got = run_poisoned(&ctx, &gy, &d);
                assert_close(&got, &expected, &format!("{n}:{m} {rows}x{k}x{cols} {t:?}"));
            }
        }
    }
}

#[test]
fn nm_bias_and_activations_are_fused() {
    let ctx = ctx();
    let mut rng = Rng(42);
    let (rows, k, cols) = (37, 53, 29);
    let w = rng.matrix(rows, k);
    let nm = nm_of(&w, 2, 4);
    let x = rng.matrix(k, cols);
    let plain = ref_nm(&nm, &x).unwrap();
    let bias: Vec<f32> = (0..rows).map(|_| 2.0 * rng.f32()).collect();
    let gb = GpuBuffer::from_slice(&ctx, &bias, "bias").unwrap();
    let gw = GpuNm::upload(&ctx, &nm).unwrap();
    let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
    let gy = GpuMatrix::new(&ctx, rows, cols, "y").unwrap();
    for with_bias in [false, true] {
        for act in ACTS {
            let epi = Epilogue {
                bias: with_bias.then_some(&gb),
                act,
            };
            let expected = cpu_epilogue(&plain, with_bias.then_some(&bias[..]), act);
            for t in [
                spmm_nm::Tiling::auto(&ctx, &gw, cols),
                nm_tilings()[0],
                nm_tilings()[1],
                nm_tilings()[3],
            ] {
                let d = spmm_nm::prepare_with(&ctx, &gw, &gx, &gy, &epi, t).unwrap();
                let got = run_poisoned(&ctx, &gy, &d);
                assert_close(&got, &expected, &format!("bias {with_bias} {act:?} {t:?}"));
            }
            // The convenience entry point too.
            elementwise::fill_f32(&ctx, gy.buffer(), f32::NAN).unwrap();
            spmm_nm::run(&ctx, &gw, &gx, &gy, &epi).unwrap();
            let got = gy.download_blocking(&ctx).unwrap();
            assert_close(&got, &expected, &format!("run: bias {with_bias} {act:?}"));
        }
    }
}

#[test]
fn nm_rejects_mismatched_shapes_and_impossible_tilings() {
    let ctx = ctx();
    let mut rng = Rng(7);
    let nm = nm_of(&rng.matrix(8, 12), 2, 4);
    let gw = GpuNm::upload(&ctx, &nm).unwrap();
    let x = GpuMatrix::upload(&ctx, &rng.matrix(12, 5), "x").unwrap();
    let y = GpuMatrix::new(&ctx, 8, 5, "y").unwrap();
    let epi = Epilogue::default();
    let bad_x = GpuMatrix::upload(&ctx, &rng.matrix(11, 5), "x").unwrap();
    let bad_y = GpuMatrix::new(&ctx, 8, 6, "y").unwrap();
    let bad_y2 = GpuMatrix::new(&ctx, 7, 5, "y").unwrap();
    for (xx, yy) in [(&bad_x, &y), (&x, &bad_y), (&x, &bad_y2)] {
        match spmm_nm::prepare(&ctx, &gw, xx, yy, &epi) {
            Err(Error::Shape(_)) => {}
            other => panic!("expected a shape error, got {:?}", other.map(|_| ())),
        }
    }
    let short_bias = GpuBuffer::from_slice(&ctx, &[1.0f32; 3], "bias").unwrap();
    let epi_bad = Epilogue {
        bias: Some(&short_bias),
        act: Activation::None,
    };
    assert!(matches!(
        spmm_nm::prepare(&ctx, &gw, &x, &y, &epi_bad),
        Err(Error::Shape(_))
    ));
    let huge = spmm_nm::Tiling::Rows {
        col_threads: 64,
        split: 64,
        rows: 64,
    };
    assert!(matches!(
        spmm_nm::prepare_with(&ctx, &gw, &x, &y, &epi, huge),
        Err(Error::Limit(_))
    ));
    let zero = spmm_nm::Tiling::Tiled {
        col_threads: 0,
        row_threads: 16,
        rows_per_thread: 1,
        groups_per_chunk: 1,
    };
    assert!(matches!(
        spmm_nm::prepare_with(&ctx, &gw, &x, &y, &epi, zero),
        Err(Error::Limit(_))
    ));
    let too_many_rows = spmm_nm::Tiling::Tiled {
        col_threads: 16,
        row_threads: 16,
        rows_per_thread: 9,
        groups_per_chunk: 1,
    };
    assert!(matches!(
        spmm_nm::prepare_with(&ctx, &gw, &x, &y, &epi, too_many_rows),
        Err(Error::Limit(_))
    ));
    ctx.take_errors().unwrap();
}

const SPARSITIES: [f64; 4] = [0.0, 0.5, 0.9, 0.99];

/// The forced tilings every CSR case also runs with (besides the automatic one).
fn csr_tilings() -> [spmm_csr::Tiling; 6] {
    [
        spmm_csr::Tiling::Rowwise {
            col_threads: 4,
            vec4s: 2,
            split: 2,
            row_threads: 8,
            rows_per_thread: 3,
            unroll: 2,
            sync: false,
        },
        spmm_csr::Tiling::Rows {
            col_threads: 2,
            split: 4,
            rows: 8,
        },
        spmm_csr::Tiling::Rows {
            col_threads: 1,
            split: 1,
            rows: 64,
        },
        spmm_csr::Tiling::Rowwise {
            col_threads: 1,
            vec4s: 1,
            split: 8,
            row_threads: 4,
            rows_per_thread: 3,
            unroll: 3,
            sync: true,
        },
        spmm_csr::Tiling::Rowwise {
            col_threads: 16,
            vec4s: 1,
            split: 2,
            row_threads: 8,
            rows_per_thread: 2,
            unroll: 4,
            sync: false,
        },
        spmm_csr::Tiling::Rowwise {
            col_threads: 8,
            vec4s: 3,
            split: 1,
            row_threads: 16,
            rows_per_thread: 5,
            unroll: 3,
            sync: true,
        },
    ]
}

fn check_csr(ctx: &Context, csr: &Csr, x: &Matrix, what: &str) {
    let expected = ref_csr(csr, x).unwrap();
    let gw = spmm_csr::CsrWeights::upload(ctx, csr).unwrap();
    let gx = GpuMatrix::upload(ctx, x, "x").unwrap();
    let gy = GpuMatrix::new(ctx, csr.rows(), x.cols(), "y").unwrap();
    let epi = Epilogue::default();
    let auto = spmm_csr::Tiling::auto(ctx, &gw, x.cols());
    for t in std::iter::once(auto).chain(csr_tilings()) {
        let d = spmm_csr::prepare_with(ctx, &gw, &gx, &gy, &epi, t).unwrap();
        let got = run_poisoned(ctx, &gy, &d);
        assert_close(&got, &expected, &format!("{what} {t:?}"));
    }
}

#[test]
fn csr_every_sparsity_shape_and_tiling_matches_the_reference() {
    let ctx = ctx();
    let mut rng = Rng(0xdead_beef);
    for &s in &SPARSITIES {
        for &(rows, k, cols) in &SHAPES {
            let csr = csr_of(&rng.matrix(rows, k), s);
            let x = rng.matrix(k, cols);
            check_csr(&ctx, &csr, &x, &format!("{s} {rows}x{k}x{cols}"));
        }
    }
}

/// Empty rows (also a run of them, and the first and last row) and one row with
/// every column, next to short random rows.
#[test]
fn csr_empty_rows_and_one_very_long_row() {
    let ctx = ctx();
    let mut rng = Rng(99);
    let (rows, k) = (150, 700);
    let mut row_ptr = vec![0u32];
    let (mut col_idx, mut values) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let cols: Vec<u32> = match r {
            0 | 149 | 40..=70 => vec![],
            77 => (0..k as u32).collect(),
            _ => (0..k as u32).filter(|_| rng.below(100) < 3).collect(),
        };
        for c in cols {
            col_idx.push(c);
            values.push(rng.f32());
        }
        row_ptr.push(col_idx.len() as u32);
    }
    let csr = Csr::new(rows, k, row_ptr, col_idx, values).unwrap();
    for cols in [1, 2, 33, 70] {
        let x = rng.matrix(k, cols);
        check_csr(&ctx, &csr, &x, &format!("long row, N = {cols}"));
    }
}

#[test]
fn csr_bias_and_activations_are_fused() {
    let ctx = ctx();
    let mut rng = Rng(4242);
    let (rows, k) = (37, 53);
    let csr = csr_of(&rng.matrix(rows, k), 0.9);
    let bias: Vec<f32> = (0..rows).map(|_| 2.0 * rng.f32()).collect();
    let gb = GpuBuffer::from_slice(&ctx, &bias, "bias").unwrap();
    let gw = spmm_csr::CsrWeights::upload(&ctx, &csr).unwrap();
    for cols in [29, 1] {
        let x = rng.matrix(k, cols);
        let plain = ref_csr(&csr, &x).unwrap();
        let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
        let gy = GpuMatrix::new(&ctx, rows, cols, "y").unwrap();
        for with_bias in [false, true] {
            for act in ACTS {
                let epi = Epilogue {
                    bias: with_bias.then_some(&gb),
                    act,
                };
                let expected = cpu_epilogue(&plain, with_bias.then_some(&bias[..]), act);
                for t in [csr_tilings()[0], csr_tilings()[1], csr_tilings()[3]] {
                    let d = spmm_csr::prepare_with(&ctx, &gw, &gx, &gy, &epi, t).unwrap();
                    let got = run_poisoned(&ctx, &gy, &d);
                    assert_close(&got, &expected, &format!("N {cols} bias {with_bias} {act:?} {t:?}"));
                }
                elementwise::fill_f32(&ctx, gy.buffer(), f32::NAN).unwrap();
                spmm_csr::run(&ctx, &gw, &gx, &gy, &epi).unwrap();
                let got = gy.download_blocking(&ctx).unwrap();
                assert_close(&got, &expected, &format!("run: N {cols} bias {with_bias} {act:?}"));
            }
        }
    }
}

#[test]
fn csr_rejects_mismatched_shapes_and_impossible_tilings() {
    let ctx = ctx();
    let mut rng = Rng(8);
    let csr = csr_of(&rng.matrix(8, 12), 0.5);
    let gw = spmm_csr::CsrWeights::upload(&ctx, &csr).unwrap();
    let x = GpuMatrix::upload(&ctx, &rng.matrix(12, 5), "x").unwrap();
    let y = GpuMatrix::new(&ctx, 8, 5, "y").unwrap();
    let epi = Epilogue::default();
    let bad_x = GpuMatrix::upload(&ctx, &rng.matrix(13, 5), "x").unwrap();
    let bad_y = GpuMatrix::new(&ctx, 8, 9, "y").unwrap();
    let bad_y2 = GpuMatrix::new(&ctx, 9, 5, "y").unwrap();
    for (xx, yy) in [(&bad_x, &y), (&x, &bad_y), (&x, &bad_y2)] {
        match spmm_csr::prepare(&ctx, &gw, xx, yy, &epi) {
            Err(Error::Shape(_)) => {}
            other => panic!("expected a shape error, got {:?}", other.map(|_| ())),
        }
    }
    let huge = spmm_csr::Tiling::Rowwise {
        col_threads: 64,
        vec4s: 1,
        split: 1,
        row_threads: 64,
        rows_per_thread: 1,
        unroll: 1,
        sync: false,
    };
    assert!(matches!(
        spmm_csr::prepare_with(&ctx, &gw, &x, &y, &epi, huge),
        Err(Error::Limit(_))
    ));
    let too_many_rows = spmm_csr::Tiling::Rowwise {
        col_threads: 16,
        vec4s: 1,
        split: 1,
        row_threads: 16,
        rows_per_thread: 9,
        unroll: 1,
        sync: false,
    };
    assert!(matches!(
        spmm_csr::prepare_with(&ctx, &gw, &x, &y, &epi, too_many_rows),
        Err(Error::Limit(_))
    ));
    assert!(matches!(
        spmm_csr::prepare_with(
            &ctx,
            &gw,
            &x,
            &y,
            &epi,
            spmm_csr::Tiling::Rows {
                col_threads: 1,
                split: 0,
                rows: 1
            }
        ),
        Err(Error::Limit(_))
    ));
    // A row_ptr that does not fit the GPU arrays is refused.
    assert!(spmm_csr::CsrWeights::from_gpu(&ctx, gw.csr.clone(), &[0, 1]).is_err());
    ctx.take_errors().unwrap();
}

/// The automatic choice for the shapes the kernels are designed for: it fits
/// WebGPU's default 16 KiB of workgroup memory and uses the kernel meant for
/// the shape (only sizes matter here, so the buffers are placeholders).
#[test]
fn auto_tilings_for_the_target_shapes() {
    use spmm_csr::Tiling as C;
    use spmm_nm::Tiling as T;
    let ctx = ctx();
    let buf = GpuBuffer::new(&ctx, 16, "placeholder").unwrap();
    let nm = |rows, cols, n, m| GpuNm {
        rows,
        cols,
        n,
        m,
        values: buf.clone(),
        indices: buf.clone(),
    };
    // (M, K, N, n, m, expected kernel)
    let nm_cases = [
        (4096, 4096, 4096, 2, 4, "Switch"),
        (4096, 4096, 4096, 1, 4, "Switch"),
        (4096, 4096, 4096, 2, 8, "Tiled"),
        (4096, 4096, 4096, 4, 8, "Tiled"),
        (4096, 4096, 4096, 1, 16, "Tiled"),
        (1280, 320, 49, 2, 4, "Rows"),
        (1280, 320, 49, 1, 4, "Rows"),
        (480, 80, 196, 2, 8, "Rows"),
        (192, 32, 3136, 1, 4, "Tiled"),
        (96, 16, 12544, 2, 4, "Tiled"),
        (1000, 1280, 1, 2, 4, "Rows"),
    ];
    for (rows, k, cols, n, m, want) in nm_cases {
        let w = nm(rows, k, n, m);
        let t = T::auto(&ctx, &w, cols);
        let kind = match t {
            T::Tiled { .. } => "Tiled",
            T::Rows { .. } => "Rows",
            T::Switch { .. } => "Switch",
        };
        assert_eq!(kind, want, "{n}:{m} {rows}x{k}x{cols}: {t:?}");
        assert!(t.workgroup_bytes(n as u32, m as u32) <= spmm_nm::PORTABLE_WORKGROUP_BYTES);
    }
    // (M, K, N, density, expected kernel)
    let csr_cases = [
        (4096, 4096, 4096, 0.10, "Rowwise"),
        (4096, 4096, 4096, 0.02, "Rowwise"),
        (1280, 320, 49, 0.25, "Rows"),
        (192, 32, 3136, 0.25, "Rows"),
        (96, 16, 12544, 0.25, "Rowwise"),
        (1000, 1280, 1, 0.25, "Rows"),
    ];
    for (rows, k, cols, density, want) in csr_cases {
        let nnz = (rows as f64 * k as f64 * density) as usize;
        let w = spmm_csr::CsrWeights {
            csr: wgsparse::gpu::GpuCsr {
                rows,
                cols: k,
                nnz,
                row_ptr: buf.clone(),
                col_idx: buf.clone(),
                values: buf.clone(),
            },
            row_order: buf.clone(),
            max_row_nnz: nnz / rows,
        };
        let t = C::auto(&ctx, &w, cols);
        let kind = match t {
            C::Rows { .. } => "Rows",
            C::Rowwise { .. } => "Rowwise",
        };
        assert_eq!(kind, want, "{density} {rows}x{k}x{cols}: {t:?}");
        assert!(t.workgroup_bytes() <= spmm_nm::PORTABLE_WORKGROUP_BYTES);
    }
}

/// More than 65535 workgroups: the grid is folded into 2-D and every row is
/// still computed exactly once.
#[test]
fn grids_past_65535_workgroups_are_folded() {
    let ctx = ctx();
    let mut rng = Rng(65536);
    let (rows, k, cols) = (70_001, 6, 2);
    let w = rng.matrix(rows, k);
    let x = rng.matrix(k, cols);
    let gx = GpuMatrix::upload(&ctx, &x, "x").unwrap();
    let gy = GpuMatrix::new(&ctx, rows, cols, "y").unwrap();
    let epi = Epilogue::default();

    let nm = nm_of(&w, 2, 4);
    let gw = GpuNm::upload(&ctx, &nm).unwrap();
    let one_row = spmm_nm::Tiling::Rows {
        col_threads: 1,
        split: 1,
        rows: 1,
    };
    let d = spmm_nm::prepare_with(&ctx, &gw, &gx, &gy, &epi, one_row).unwrap();
    let got = run_poisoned(&ctx, &gy, &d);
    assert_close(&got, &ref_nm(&nm, &x).unwrap(), "N:M, 70001 workgroups");

    let csr = csr_of(&w, 0.5);
    let gw = spmm_csr::CsrWeights::upload(&ctx, &csr).unwrap();
    let one_row = spmm_csr::Tiling::Rows {
        col_threads: 1,
        split: 1,
        rows: 1,
    };
    let d = spmm_csr::prepare_with(&ctx, &gw, &gx, &gy, &epi, one_row).unwrap();
    let got = run_poisoned(&ctx, &gy, &d);
    assert_close(&got, &ref_csr(&csr, &x).unwrap(), "CSR, 70001 workgroups");
}
