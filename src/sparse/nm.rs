use super::{to_u32, Mask, Matrix, Pattern};
use crate::error::{check_finite, checked_mul, Error, Result};

/// N:M sparsity along the reduction dimension K (= `cols`): in every group of `m`
/// consecutive columns of a row, exactly `n` slots are stored.
///
/// Layout (row-major, chosen so that a workgroup that owns a tile of rows and a
/// range of K reads, for each row, one contiguous run of values and one
/// contiguous run of index words):
///
/// - `groups = ceil(cols / m)`; a `cols` that is not a multiple of `m` leaves a
///   short last group, treated as padded with zeros to `m`.
/// - `values[(r * groups + g) * n + s]`: slot `s` of group `g` of row `r`.
/// - Each slot has an in-group index in `0..m` stored in `bits = ceil(log2 m)`
///   bits. Indices do not straddle words: a u32 word holds `per_word = 32 / bits`
///   of them (32, 16, 10 or 8 for m = 2, 3..4, 5..8, 9..16). Each row starts on a
///   word boundary, with `words_per_row = ceil(groups * n / per_word)` words; slot
///   `j = g * n + s` of row `r` lives in word `r * words_per_row + j / per_word`
///   at bit `(j % per_word) * bits`.
/// - Inside a group the slot indices are strictly increasing. A group with fewer
///   than `n` kept values fills the remaining slots with unused positions and the
///   value 0. A slot whose column `g * m + idx` lies past `cols` (padding) must
///   hold 0; kernels treat the padded columns of X as zeros.
#[derive(Clone, Debug, PartialEq)]
pub struct NmMatrix {
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
    values: Vec<f32>,
    indices: Vec<u32>,
}

/// Bits per in-group index for groups of `m`.
pub(crate) fn index_bits(m: usize) -> usize {
    (usize::BITS - (m - 1).leading_zeros()) as usize
}

impl NmMatrix {
    /// Bits per in-group index: `ceil(log2 m)`.
    pub fn index_bits(&self) -> usize {
        index_bits(self.m)
    }
    /// In-group indices per u32 word.
    pub fn indices_per_word(&self) -> usize {
        32 / self.index_bits()
    }
    /// Groups per row: `ceil(cols / m)`.
    pub fn groups(&self) -> usize {
        self.cols.div_ceil(self.m)
    }
    /// Index words per row.
    pub fn words_per_row(&self) -> usize {
        (self.groups() * self.n).div_ceil(self.indices_per_word())
    }

    /// Builds an N:M matrix from its arrays, checking every invariant.
    pub fn new(rows: usize, cols: usize, n: usize, m: usize, values: Vec<f32>, indices: Vec<u32>) -> Result<Self> {
        Pattern::NM { n, m }.validate()?;
        to_u32(cols, "N:M column count")?;
        let me = NmMatrix {
            rows,
            cols,
            n,
            m,
            values,
            indices,
        };
        let slots = checked_mul(checked_mul(rows, me.groups(), "N:M groups")?, n, "N:M slots")?;
        if me.values.len() != slots {
            return Err(Error::format(format!(
                "N:M {n}:{m} {rows}x{cols} needs {slots} values, got {}",
                me.values.len()
            )));
        }
        let words = checked_mul(rows, me.words_per_row(), "N:M index words")?;
        if me.indices.len() != words {
            return Err(Error::format(format!(
                "N:M {n}:{m} {rows}x{cols} needs {words} index words, got {}",
                me.indices.len()
            )));
        }
        check_finite("N:M values", &me.values)?;
        for r in 0..rows {
            for g in 0..me.groups() {
                let mut prev: Option<usize> = None;
                for s in 0..n {
                    let idx = me.slot_index(r, g * n + s);
                    if idx >= m {
                        return Err(Error::format(format!(
                            "N:M index {idx} >= m = {m} at row {r}, group {g}"
                        )));
                    }
                    if prev.is_some_and(|p| idx <= p) {
                        return Err(Error::format(format!(
                            "N:M indices of row {r}, group {g} are not strictly increasing"
                        )));
                    }
                    prev = Some(idx);
                    if g * m + idx >= cols && me.values[(r * me.groups() + g) * n + s] != 0.0 {
                        return Err(Error::format(format!(
                            "N:M slot of row {r}, group {g} points past the last column and is not zero"
                        )));
                    }
                }
            }
        }
        Ok(me)
    }

    /// Compresses `w` under a mask with at most `n` kept entries per group of `m`.
    pub fn from_dense_masked(w: &Matrix, mask: &Mask, n: usize, m: usize) -> Result<Self> {
        Pattern::NM { n, m }.validate()?;
        mask.check_shape(w.rows(), w.cols())?;
        w.check_finite()?;
        to_u32(w.cols(), "N:M column count")?;
        let (rows, cols) = (w.rows(), w.cols());
        let mut me = NmMatrix {
            rows,
            cols,
            n,
            m,
            values: Vec::new(),
            indices: Vec::new(),
        };
        let groups = me.groups();
        let (bits, per_word, wpr) = (me.index_bits(), me.indices_per_word(), me.words_per_row());
        me.values = vec![0.0; checked_mul(checked_mul(rows, groups, "N:M")?, n, "N:M")?];
        me.indices = vec![0; checked_mul(rows, wpr, "N:M")?];
        let mut chosen = Vec::with_capacity(m);
        for r in 0..rows {
            for g in 0..groups {
                chosen.clear();
                for i in 0..m {
                    let c = g * m + i;
                    if c < cols && mask.get(r, c) {
                        chosen.push(i);
                    }
                }
                if chosen.len() > n {
                    return Err(Error::format(format!(
                        "mask keeps {} of the group of {m} at row {r}, columns {}.., more than n = {n}",
                        chosen.len(),
                        g * m
                    )));
                }
                let kept = chosen.len();
                // Fill with unused positions (value 0) so every group has n slots.
                for i in 0..m {
                    if chosen.len() == n {
                        break;
                    }
                    let c = g * m + i;
                    if !(c < cols && mask.get(r, c)) {
                        chosen.push(i);
                    }
                }
                let kept_pos: Vec<usize> = chosen[..kept].to_vec();
                chosen.sort_unstable();
                for (s, &i) in chosen.iter().enumerate() {
                    let c = g * m + i;
                    let v = if kept_pos.contains(&i) { w.get(r, c) } else { 0.0 };
                    me.values[(r * groups + g) * n + s] = v;
                    let j = g * n + s;
                    me.indices[r * wpr + j / per_word] |= (i as u32) << ((j % per_word) * bits);
                }
            }
        }
        Ok(me)
    }

    /// In-group index of slot `j` (= group * n + slot) of row `r`.
    pub fn slot_index(&self, r: usize, j: usize) -> usize {
        let (bits, per_word) = (self.index_bits(), self.indices_per_word());
        let word = self.indices[r * self.words_per_row() + j / per_word];
        ((word >> ((j % per_word) * bits)) & ((1u32 << bits) - 1)) as usize
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn m(&self) -> usize {
        self.m
    }
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    /// Bytes of values and packed index words.
    pub fn bytes(&self) -> usize {
        4 * (self.values.len() + self.indices.len())
    }
    pub fn to_dense(&self) -> Matrix {
        let groups = self.groups();
        let mut d = vec![0.0f32; self.rows * self.cols];
        for r in 0..self.rows {
            for g in 0..groups {
                for s in 0..self.n {
                    let c = g * self.m + self.slot_index(r, g * self.n + s);
                    if c < self.cols {
                        d[r * self.cols + c] = self.values[(r * groups + g) * self.n + s];
                    }
                }
            }
        }
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bits_are_ceil_log2() {
        let want = [(2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (16, 4)];
        for (m, b) in want {
            assert_eq!(index_bits(m), b, "m = {m}");
        }
    }

    #[test]
    fn two_four_layout_is_as_documented() {
        // One row, K = 8: keep columns 1,3 and 4,6.
        let w = Matrix::new(1, 8, (1..=8).map(|v| v as f32).collect()).unwrap();
        let keep = vec![false, true, false, true, true, false, true, false];
        let nm = NmMatrix::from_dense_masked(&w, &Mask::new(1, 8, keep).unwrap(), 2, 4).unwrap();
        assert_eq!(nm.values(), &[2.0, 4.0, 5.0, 7.0]);
        // Slots 0..4 hold 1, 3, 0, 2 at 2 bits each.
        assert_eq!(nm.indices(), &[1 | (3 << 2) | (2 << 6)]);
        assert_eq!(nm.to_dense().data(), &[0., 2., 0., 4., 5., 0., 7., 0.]);
    }

    #[test]
    fn short_last_group_and_underfull_groups() {
        // K = 5 with 2:4: the second group has one real column.
        let w = Matrix::new(1, 5, vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let keep = vec![true, false, false, false, true];
        let nm = NmMatrix::from_dense_masked(&w, &Mask::new(1, 5, keep).unwrap(), 2, 4).unwrap();
        assert_eq!(nm.to_dense().data(), &[1.0, 0.0, 0.0, 0.0, 5.0]);
        let again = NmMatrix::new(1, 5, 2, 4, nm.values.clone(), nm.indices.clone()).unwrap();
        assert_eq!(again, nm);
    }

    #[test]
    fn rejects_overfull_groups_and_bad_arrays() {
        let w = Matrix::new(1, 4, vec![1.0; 4]).unwrap();
        assert!(NmMatrix::from_dense_masked(&w, &Mask::all(1, 4).unwrap(), 2, 4).is_err());
        // Indices not increasing: slots 2, 1.
        assert!(NmMatrix::new(1, 4, 2, 4, vec![1.0, 1.0], vec![2 | (1 << 2)]).is_err());
        // Padding slot (column 5 of K = 5) with a value.
        assert!(NmMatrix::new(1, 5, 2, 4, vec![1.0, 1.0, 1.0, 1.0], vec![1 | (2 << 2) | (1 << 6)]).is_err());
        // The same arrays with a zero in the padding slot are fine.
        assert!(NmMatrix::new(1, 5, 2, 4, vec![1.0, 1.0, 1.0, 0.0], vec![1 | (2 << 2) | (1 << 6)]).is_ok());
        assert!(NmMatrix::new(1, 4, 2, 4, vec![1.0], vec![0]).is_err());
        assert!(NmMatrix::new(1, 4, 5, 4, vec![], vec![]).is_err());
    }
}
