//! Magnitude pruning on the CPU: the exact reference every GPU pruning kernel is
//! checked against.
//!
//! # The tie rule (shared by every pattern and by the GPU kernels)
//!
//! Elements are ranked by *importance*: `a` is more important than `b` when
//! `|a| > |b|`, or when `|a| == |b|` and `a` comes first (lower flat row-major
//! index; for global pruning, lower tensor position, then lower index). Pruning
//! removes the least important elements. Magnitudes are compared as the bit
//! patterns of `|w|`, which orders finite floats exactly (so `-0.0 == 0.0`, and
//! denormals order correctly).
//!
//! # How many are pruned
//!
//! Unstructured and block pruning remove exactly `round(sparsity * count)`
//! elements (blocks), with `f64::round` (halves away from zero). N:M keeps the
//! `n` most important of each group of `m` along K (a short last group of length
//! `L` keeps `min(n, L)`).
//!
//! NaN or infinite weights are rejected with [`Error::NonFinite`](crate::Error).

use std::cmp::Ordering;
use std::fmt;

use crate::error::{check_sparsity, Error, Result};
use crate::sparse::{Mask, Matrix, Pattern, SparseMatrix};

/// How a block is scored for block pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlockNorm {
    /// Sum of squares (the squared L2 norm; same order as L2), accumulated in
    /// row-major order within the block with fused multiply-adds.
    #[default]
    L2,
    /// Sum of absolute values, accumulated in row-major order.
    L1,
}

/// What pruning one tensor achieved.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub pattern: Pattern,
    /// Requested sparsity (for N:M, the pattern's `1 - n/m`).
    pub target: f64,
    /// Fraction of elements pruned.
    pub achieved: f64,
    /// Elements kept.
    pub kept: usize,
}

impl TensorReport {
    fn new(name: &str, mask: &Mask, pattern: Pattern, target: f64) -> Self {
        TensorReport {
            name: name.to_string(),
            rows: mask.rows(),
            cols: mask.cols(),
            pattern,
            target,
            achieved: mask.sparsity(),
            kept: mask.kept(),
        }
    }
}

/// Per-tensor reports of one pruning call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    pub tensors: Vec<TensorReport>,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>12} {:<14} {:>8} {:>9} {:>10}",
            "tensor", "shape", "pattern", "target", "achieved", "kept"
        )?;
        for t in &self.tensors {
            writeln!(
                f,
                "{:<24} {:>12} {:<14} {:>7.2}% {:>8.2}% {:>10}",
                t.name,
                format!("{}x{}", t.rows, t.cols),
                t.pattern.to_string(),
                100.0 * t.target,
                100.0 * t.achieved,
                t.kept
            )?;
        }
        Ok(())
    }
}

/// The mask one pruning call produced, with its report.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    pub mask: Mask,
    pub report: TensorReport,
}

/// Magnitude key: the bit pattern of `|w|`, which orders finite floats.
#[inline]
pub fn magnitude_key(w: f32) -> u32 {
    w.to_bits() & 0x7fff_ffff
}

/// Ordering by importance, least important first: smaller magnitude first, then
/// (among equal magnitudes) the later position first.
#[inline]
fn least_important_first(a: (u32, usize), b: (u32, usize)) -> Ordering {
    a.0.cmp(&b.0).then(b.1.cmp(&a.1))
}

/// Number of elements to prune for `sparsity` of `count`.
pub fn prune_count(sparsity: f64, count: usize) -> usize {
    ((sparsity * count as f64).round() as usize).min(count)
}

/// Unstructured magnitude pruning of one tensor: exactly
/// `round(sparsity * len)` elements are pruned.
pub fn unstructured(w: &Matrix, sparsity: f64) -> Result<Pruned> {
    check_sparsity(sparsity)?;
    w.check_finite()?;
    let len = w.data().len();
    let k = prune_count(sparsity, len);
    let mut keys: Vec<(u32, usize)> = w
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| (magnitude_key(v), i))
        .collect();
    let mut keep = vec![true; len];
    if k > 0 {
        keys.select_nth_unstable_by(k - 1, |a, b| least_important_first(*a, *b));
        for &(_, i) in &keys[..k] {
            keep[i] = false;
        }
    }
    let mask = Mask::new(w.rows(), w.cols(), keep)?;
    let report = TensorReport::new("", &mask, Pattern::Unstructured, sparsity);
    Ok(Pruned { mask, report })
}

/// Unstructured magnitude pruning with one threshold across several tensors:
/// exactly `round(sparsity * total)` elements are pruned in all, the least
/// important first (ties: earlier tensor, then lower index, is kept).
pub fn global(ws: &[&Matrix], sparsity: f64) -> Result<Vec<Pruned>> {
    check_sparsity(sparsity)?;
    let mut offsets = Vec::with_capacity(ws.len() + 1);
    let mut total = 0usize;
    for w in ws {
        w.check_finite()?;
        offsets.push(total);
        total = total
            .checked_add(w.data().len())
            .ok_or_else(|| Error::Overflow("total element count".into()))?;
    }
    offsets.push(total);
    let k = prune_count(sparsity, total);
    let mut keys: Vec<(u32, usize)> = Vec::with_capacity(total);
    for (t, w) in ws.iter().enumerate() {
        keys.extend(
            w.data()
                .iter()
                .enumerate()
                .map(|(i, &v)| (magnitude_key(v), offsets[t] + i)),
        );
    }
    let mut keep = vec![true; total];
    if k > 0 {
        keys.select_nth_unstable_by(k - 1, |a, b| least_important_first(*a, *b));
        for &(_, i) in &keys[..k] {
            keep[i] = false;
        }
    }
    ws.iter()
        .enumerate()
        .map(|(t, w)| {
            let mask = Mask::new(w.rows(), w.cols(), keep[offsets[t]..offsets[t + 1]].to_vec())?;
            let report = TensorReport::new(&format!("#{t}"), &mask, Pattern::Unstructured, sparsity);
            Ok(Pruned { mask, report })
        })
        .collect()
}

/// N:M magnitude pruning along K (the columns): in every group of `m`
/// consecutive columns of a row, keep the `n` most important.
pub fn nm(w: &Matrix, n: usize, m: usize) -> Result<Pruned> {
    let pattern = Pattern::NM { n, m }.validate()?;
    w.check_finite()?;
    let (rows, cols) = (w.rows(), w.cols());
    let mut keep = vec![false; rows * cols];
    let mut group: Vec<(u32, usize)> = Vec::with_capacity(m);
    for r in 0..rows {
        for g0 in (0..cols).step_by(m) {
            group.clear();
            for c in g0..(g0 + m).min(cols) {
                group.push((magnitude_key(w.get(r, c)), c));
            }
            // Most important first.
            group.sort_unstable_by(|a, b| least_important_first(*b, *a));
            for &(_, c) in group.iter().take(n) {
                keep[r * cols + c] = true;
            }
        }
    }
    let mask = Mask::new(rows, cols, keep)?;
    let report = TensorReport::new("", &mask, pattern, 1.0 - n as f64 / m as f64);
    Ok(Pruned { mask, report })
}

/// Score of every block of the (zero-padded) block grid, row-major over the grid.
pub fn block_scores(w: &Matrix, br: usize, bc: usize, norm: BlockNorm) -> Result<Vec<f32>> {
    Pattern::Block { rows: br, cols: bc }.validate()?;
    let (rows, cols) = (w.rows(), w.cols());
    let (gr, gc) = (rows.div_ceil(br), cols.div_ceil(bc));
    let mut scores = vec![0.0f32; gr * gc];
    for b in 0..gr {
        for c in 0..gc {
            let mut s = 0.0f32;
            for r in b * br..((b + 1) * br).min(rows) {
                for k in c * bc..((c + 1) * bc).min(cols) {
                    let v = w.get(r, k);
                    s = match norm {
                        BlockNorm::L2 => v.mul_add(v, s),
                        BlockNorm::L1 => s + v.abs(),
                    };
                }
            }
            scores[b * gc + c] = s;
        }
    }
    Ok(scores)
}

/// Block magnitude pruning: blocks of `br x bc` (edge blocks padded with zeros)
/// scored by `norm`; exactly `round(sparsity * blocks)` blocks are pruned, the
/// lowest scores first, ties pruning the later block (row-major over the grid).
pub fn block(w: &Matrix, br: usize, bc: usize, sparsity: f64, norm: BlockNorm) -> Result<Pruned> {
    check_sparsity(sparsity)?;
    w.check_finite()?;
    let scores = block_scores(w, br, bc, norm)?;
    let (rows, cols) = (w.rows(), w.cols());
    let gc = cols.div_ceil(bc);
    let k = prune_count(sparsity, scores.len());
    let mut keys: Vec<(u32, usize)> = scores.iter().enumerate().map(|(i, &s)| (magnitude_key(s), i)).collect();
    let mut keep_block = vec![true; scores.len()];
    if k > 0 {
        keys.select_nth_unstable_by(k - 1, |a, b| least_important_first(*a, *b));
        for &(_, i) in &keys[..k] {
            keep_block[i] = false;
        }
    }
    let mut keep = vec![false; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            keep[r * cols + c] = keep_block[(r / br) * gc + c / bc];
        }
    }
    let mask = Mask::new(rows, cols, keep)?;
    let pattern = Pattern::Block { rows: br, cols: bc };
    let report = TensorReport::new("", &mask, pattern, sparsity);
    Ok(Pruned { mask, report })
}

/// The mask for `pattern` at `sparsity` (ignored for N:M, whose sparsity is
/// fixed by the pattern; must be 0 for `Dense`).
pub fn mask(w: &Matrix, pattern: Pattern, sparsity: f64) -> Result<Pruned> {
    match pattern.validate()? {
        Pattern::Dense => {
            if sparsity != 0.0 {
                return Err(Error::InvalidSparsity(sparsity));
            }
            let mask = Mask::all(w.rows(), w.cols())?;
            let report = TensorReport::new("", &mask, pattern, 0.0);
            Ok(Pruned { mask, report })
        }
        Pattern::Unstructured => unstructured(w, sparsity),
        Pattern::Block { rows, cols } => block(w, rows, cols, sparsity, BlockNorm::L2),
        Pattern::NM { n, m } => nm(w, n, m),
    }
}

/// Prunes `w` and compresses it to the format of `pattern`.
pub fn prune(w: &Matrix, pattern: Pattern, sparsity: f64) -> Result<(SparseMatrix, TensorReport)> {
    let p = mask(w, pattern, sparsity)?;
    Ok((SparseMatrix::from_masked(w, &p.mask, pattern)?, p.report))
}

/// The activation-aware score of every weight: `|w[r, c]| * norm[c]`, where
/// `norm[c]` is the L2 norm of input channel `c`'s activations over some
/// calibration data (the criterion of Wanda, Sun et al. 2023). The f32 product
/// is the one the GPU computes (`calibrate.wgsl`), so both rank alike.
pub fn activation_scores(w: &Matrix, norm: &[f32]) -> Result<Matrix> {
    if norm.len() != w.cols() {
        return Err(Error::Shape(format!(
            "{} channel norms for a matrix of {} columns",
            norm.len(),
            w.cols()
        )));
    }
    let data = w
        .data()
        .chunks_exact(w.cols().max(1))
        .flat_map(|row| row.iter().zip(norm).map(|(v, n)| v.abs() * n))
        .collect();
    Matrix::new(w.rows(), w.cols(), data)
}

/// Prunes `w` to `pattern` ranking its elements by `score` (same shape,
/// e.g. [`activation_scores`]) instead of `|w|`; same counts and tie rule.
pub fn prune_scored(
    w: &Matrix,
    score: &Matrix,
    pattern: Pattern,
    sparsity: f64,
) -> Result<(SparseMatrix, TensorReport)> {
    if (score.rows(), score.cols()) != (w.rows(), w.cols()) {
        return Err(Error::Shape(format!(
            "scores are {}x{}, the weights {}x{}",
            score.rows(),
            score.cols(),
            w.rows(),
            w.cols()
        )));
    }
    let p = mask(score, pattern, sparsity)?;
    Ok((SparseMatrix::from_masked(w, &p.mask, pattern)?, p.report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: usize, cols: usize, v: &[f32]) -> Matrix {
        Matrix::new(rows, cols, v.to_vec()).unwrap()
    }

    #[test]
    fn ties_prune_the_later_element() {
        let w = m(1, 4, &[1.0, -1.0, 1.0, 2.0]);
        let p = unstructured(&w, 0.5).unwrap();
        assert_eq!(p.mask.keep(), &[true, false, false, true]);
    }

    #[test]
    fn zero_signs_and_denormals_order_by_magnitude() {
        let d = f32::from_bits(1); // smallest denormal
        let w = m(1, 5, &[-0.0, d, 0.0, -d, 1e-30]);
        let p = unstructured(&w, 0.4).unwrap(); // prune 2: the two zeros
        assert_eq!(p.mask.keep(), &[false, true, false, true, true]);
        let p = unstructured(&w, 0.8).unwrap(); // prune 4: keep 1e-30
        assert_eq!(p.mask.keep(), &[false, false, false, false, true]);
    }

    #[test]
    fn nm_keeps_n_per_group_with_ties_to_the_first() {
        let w = m(1, 6, &[3.0, 3.0, 3.0, 1.0, 5.0, -6.0]);
        let p = nm(&w, 2, 4).unwrap();
        // Group 0: three 3s tie, the first two kept. Group 1 (short): both kept.
        assert_eq!(p.mask.keep(), &[true, true, false, false, true, true]);
    }

    #[test]
    fn block_prunes_lowest_norm_blocks() {
        #[rustfmt::skip]
        let w = m(2, 4, &[1.0, 1.0, 0.1, 0.1,
                          1.0, 1.0, 0.1, 0.1]);
        let p = block(&w, 2, 2, 0.5, BlockNorm::L2).unwrap();
        assert_eq!(p.mask.keep(), &[true, true, false, false, true, true, false, false]);
        let p = block(&w, 2, 2, 0.5, BlockNorm::L1).unwrap();
        assert_eq!(p.mask.keep(), &[true, true, false, false, true, true, false, false]);
    }

    #[test]
    fn global_uses_one_threshold() {
        let a = m(1, 2, &[1.0, 2.0]);
        let b = m(1, 2, &[10.0, 20.0]);
        let p = global(&[&a, &b], 0.5).unwrap();
        assert_eq!(p[0].mask.keep(), &[false, false]);
        assert_eq!(p[1].mask.keep(), &[true, true]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let w = m(1, 2, &[1.0, f32::NAN]);
        assert!(matches!(unstructured(&w, 0.5), Err(Error::NonFinite { index: 1, .. })));
        let w = m(1, 2, &[1.0, f32::INFINITY]);
        assert!(nm(&w, 1, 2).is_err());
        let w = m(1, 2, &[1.0, 2.0]);
        for s in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(unstructured(&w, s), Err(Error::InvalidSparsity(_))));
            assert!(block(&w, 1, 1, s, BlockNorm::L2).is_err());
        }
        assert!(nm(&w, 0, 4).is_err());
        assert!(nm(&w, 2, 1).is_err());
        assert!(nm(&w, 2, 17).is_err());
        assert!(block(&w, 0, 1, 0.5, BlockNorm::L2).is_err());
        assert!(mask(&w, Pattern::Dense, 0.5).is_err());
    }
}
