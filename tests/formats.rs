//! Property tests of the formats, CPU pruning and CPU SpMM on random shapes that
//! are multiples of nothing in particular.

use proptest::prelude::*;
use wgsparse::prune::{self, BlockNorm};
use wgsparse::reference::{self, rel_error};
use wgsparse::{Bsr, Csr, Mask, Matrix, NmMatrix, Pattern, SparseMatrix};

/// Products of the same masked matrix agree to this norm-wise relative error
/// (both accumulate in f64; only the final rounding to f32 differs).
const F32_REL_TOL: f64 = 1e-6;

/// A matrix with many equal magnitudes, zeros of both signs and denormals, so
/// the tie rules are exercised.
fn matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 10 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::from_bits(1 + (s >> 40) as u32 % 5), // denormal
                3 | 4 => {
                    if s & 1 == 0 {
                        0.5
                    } else {
                        -0.5
                    }
                } // ties
                _ => ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32,
            }
        })
        .collect();
    Matrix::new(rows, cols, data).unwrap()
}

fn patterns() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just(Pattern::Unstructured),
        (1usize..=16, 1usize..=16).prop_map(|(r, c)| Pattern::Block { rows: r, cols: c }),
        (2usize..=16)
            .prop_flat_map(|m| (1..=m, Just(m)))
            .prop_map(|(n, m)| Pattern::NM { n, m }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn format_round_trips_and_products(rows in 1usize..70, cols in 1usize..70, n in 1usize..9,
                                       sparsity in 0.0f64..0.99, seed in any::<u64>(), pattern in patterns()) {
        let w = matrix(rows, cols, seed);
        let pruned = prune::mask(&w, pattern, sparsity).unwrap();
        let masked = w.masked(&pruned.mask).unwrap();
        let sp = SparseMatrix::from_masked(&w, &pruned.mask, pattern).unwrap();
        // dense -> format -> dense is exactly the masked matrix.
        prop_assert_eq!(sp.to_dense(), masked.clone());
        prop_assert_eq!(sp.pattern(), pattern);
        // SpMM equals dense GEMM of the masked matrix.
        let x = matrix(cols, n, seed ^ 0xABCD);
        let want = reference::gemm(&masked, &x).unwrap();
        let got = reference::spmm(&sp, &x).unwrap();
        prop_assert!(rel_error(got.data(), want.data()) <= F32_REL_TOL);
        // Sparse formats are smaller than dense once sparse enough.
        if let SparseMatrix::Csr(c) = &sp {
            prop_assert_eq!(c.bytes(), 4 * (rows + 1 + 2 * c.nnz()));
        }
    }

    #[test]
    fn unstructured_hits_the_target_exactly(rows in 1usize..60, cols in 1usize..60,
                                            sparsity in 0.0f64..1.0, seed in any::<u64>()) {
        let w = matrix(rows, cols, seed);
        let p = prune::unstructured(&w, sparsity).unwrap();
        let len = rows * cols;
        let pruned = len - p.mask.kept();
        prop_assert_eq!(pruned, (sparsity * len as f64).round() as usize);
        // Every kept magnitude is >= every pruned magnitude.
        let kept_min = w.data().iter().zip(p.mask.keep()).filter(|(_, k)| **k).map(|(v, _)| v.abs()).fold(f32::INFINITY, f32::min);
        let pruned_max = w.data().iter().zip(p.mask.keep()).filter(|(_, k)| !**k).map(|(v, _)| v.abs()).fold(0.0f32, f32::max);
        prop_assert!(kept_min >= pruned_max || pruned == 0 || pruned == len);
        prop_assert!((p.report.achieved - pruned as f64 / len as f64).abs() < 1e-12);
    }

    #[test]
    fn global_prunes_exactly_across_tensors(a in 1usize..30, b in 1usize..30, sparsity in 0.0f64..1.0, seed in any::<u64>()) {
        let w1 = matrix(a, 7, seed);
        let w2 = matrix(b, 5, seed.wrapping_add(1));
        let ps = prune::global(&[&w1, &w2], sparsity).unwrap();
        let total = a * 7 + b * 5;
        let pruned: usize = ps.iter().map(|p| p.mask.rows() * p.mask.cols() - p.mask.kept()).sum();
        prop_assert_eq!(pruned, (sparsity * total as f64).round() as usize);
    }

    #[test]
    fn nm_groups_keep_at_most_n(rows in 1usize..40, cols in 1usize..70, m in 2usize..=16, seed in any::<u64>()) {
        let n = 1 + (seed as usize % m);
        let w = matrix(rows, cols, seed);
        let p = prune::nm(&w, n, m).unwrap();
        for r in 0..rows {
            for g in (0..cols).step_by(m) {
                let end = (g + m).min(cols);
                let kept = (g..end).filter(|&c| p.mask.get(r, c)).count();
                prop_assert_eq!(kept, n.min(end - g));
            }
        }
        let nm = NmMatrix::from_dense_masked(&w, &p.mask, n, m).unwrap();
        let again = NmMatrix::new(rows, cols, n, m, nm.values().to_vec(), nm.indices().to_vec()).unwrap();
        prop_assert_eq!(again, nm);
    }

    #[test]
    fn block_hits_the_block_target(rows in 1usize..50, cols in 1usize..50, br in 1usize..9, bc in 1usize..9,
                                   sparsity in 0.0f64..1.0, seed in any::<u64>(), l1 in any::<bool>()) {
        let w = matrix(rows, cols, seed);
        let norm = if l1 { BlockNorm::L1 } else { BlockNorm::L2 };
        let p = prune::block(&w, br, bc, sparsity, norm).unwrap();
        let b = Bsr::from_dense_masked(&w, &p.mask, br, bc).unwrap();
        let blocks = rows.div_ceil(br) * cols.div_ceil(bc);
        prop_assert_eq!(blocks - b.nnz_blocks(), (sparsity * blocks as f64).round() as usize);
        let again = Bsr::new(rows, cols, br, bc, b.row_ptr().to_vec(), b.col_idx().to_vec(), b.values().to_vec()).unwrap();
        prop_assert_eq!(again, b);
    }

    #[test]
    fn csr_arrays_revalidate(rows in 1usize..40, cols in 1usize..40, sparsity in 0.0f64..1.0, seed in any::<u64>()) {
        let w = matrix(rows, cols, seed);
        let p = prune::unstructured(&w, sparsity).unwrap();
        let c = Csr::from_dense_masked(&w, &p.mask).unwrap();
        prop_assert_eq!(c.mask(), p.mask.clone());
        let again = Csr::new(rows, cols, c.row_ptr().to_vec(), c.col_idx().to_vec(), c.values().to_vec()).unwrap();
        prop_assert_eq!(again, c);
    }
}

#[test]
fn nonzero_mask_is_the_mask_of_a_pruned_matrix() {
    let w = Matrix::new(2, 3, vec![1.0, 0.0, -2.0, -0.0, 3.5, 1e-40]).unwrap();
    let m = w.nonzero_mask();
    assert_eq!((m.rows(), m.cols()), (2, 3));
    // Both zeros (+0 and -0) are pruned; a denormal is kept.
    assert_eq!(m.keep(), &[true, false, true, false, true, true]);
    // Of a matrix pruned to a mask (no zero weights in it), it is that mask.
    let w = matrix(13, 29, 5);
    let w = Matrix::new(
        13,
        29,
        w.data().iter().map(|v| if *v == 0.0 { 1.0 } else { *v }).collect(),
    )
    .unwrap();
    let p = prune::unstructured(&w, 0.7).unwrap();
    assert_eq!(w.masked(&p.mask).unwrap().nonzero_mask(), p.mask);
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let w = matrix(3, 4, 1);
    let x = matrix(5, 2, 2);
    assert!(reference::gemm(&w, &x).is_err());
    let (sp, _) = prune::prune(&w, Pattern::Unstructured, 0.5).unwrap();
    assert!(reference::spmm(&sp, &x).is_err());
    assert!(Matrix::new(2, 2, vec![1.0; 3]).is_err());
    assert!(Mask::new(2, 2, vec![true; 5]).is_err());
    assert!(w.masked(&Mask::all(4, 3).unwrap()).is_err());
    assert!(Matrix::zeros(usize::MAX, 2).is_err());
}

/// The byte sizes quoted in the foundation issue's closing note: 4096 x 4096 f32
/// at 90% (2:4 at its fixed 50%).
#[test]
fn byte_sizes_of_a_4096_square() {
    let n = 4096;
    let w = matrix(n, n, 7);
    let dense = w.bytes();
    let sizes: Vec<(String, usize)> = [("unstructured", 0.9), ("block:8x8", 0.9), ("2:4", 0.5)]
        .iter()
        .map(|(p, s)| {
            let (sp, _) = prune::prune(&w, p.parse().unwrap(), *s).unwrap();
            (p.to_string(), sp.bytes())
        })
        .collect();
    for (p, b) in &sizes {
        println!(
            "{p:<14} {b:>10} bytes = {:.3} of dense ({dense} bytes)",
            *b as f64 / dense as f64
        );
    }
    assert_eq!(dense, 64 << 20);
    // CSR at 90%: 10% of values and of column indices, plus row pointers.
    assert_eq!(
        sizes[0].1,
        4 * (n + 1) + 8 * (n * n - (0.9 * (n * n) as f64).round() as usize)
    );
    // 2:4: half the values plus 2 bits per kept value.
    assert_eq!(sizes[2].1, 4 * (n * n / 2) + n * n / 2 / 4);
    assert!(sizes[1].1 < dense / 9);
}
