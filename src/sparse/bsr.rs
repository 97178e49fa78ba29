use super::{to_u32, Mask, Matrix, Pattern};
use crate::error::{check_finite, checked_mul, Error, Result};

/// Block-sparse rows: the matrix is cut into `block_rows x block_cols` blocks and
/// only non-zero blocks are stored.
///
/// Layout: `row_ptr` has one entry per block row plus one; block row `br` owns the
/// blocks `row_ptr[br]..row_ptr[br+1]`, whose block-column indices `col_idx[...]`
/// are strictly increasing. Block `i` occupies
/// `values[i * bs .. (i + 1) * bs]` (`bs = block_rows * block_cols`), row-major
/// inside the block.
///
/// Padding: a matrix whose sides are not multiples of the block is treated as
/// padded with zeros to the next multiple. The grid is
/// `ceil(rows / block_rows) x ceil(cols / block_cols)`; the part of an edge block
/// that lies outside the matrix is stored and must be zero. Kernels can therefore
/// read whole blocks without bounds checks on W, and only guard the outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Bsr {
    rows: usize,
    cols: usize,
    block_rows: usize,
    block_cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
}

impl Bsr {
    /// Builds a BSR matrix from its arrays, checking every invariant.
    pub fn new(
        rows: usize,
        cols: usize,
        block_rows: usize,
        block_cols: usize,
        row_ptr: Vec<u32>,
        col_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        Pattern::Block {
            rows: block_rows,
            cols: block_cols,
        }
        .validate()?;
        let (gr, gc) = (rows.div_ceil(block_rows), cols.div_ceil(block_cols));
        to_u32(gc, "BSR block-column count")?;
        let bs = block_rows * block_cols;
        if row_ptr.len() != gr + 1 {
            return Err(Error::format(format!(
                "BSR row_ptr has {} entries, expected block rows + 1 = {}",
                row_ptr.len(),
                gr + 1
            )));
        }
        let nnzb = col_idx.len();
        if values.len() != checked_mul(nnzb, bs, "BSR values")? {
            return Err(Error::format(format!(
                "BSR has {nnzb} blocks of {bs} values but {} values",
                values.len()
            )));
        }
        if row_ptr[0] != 0 || row_ptr[gr] as usize != nnzb {
            return Err(Error::format(format!(
                "BSR row_ptr must start at 0 and end at the block count {nnzb}"
            )));
        }
        for b in 0..gr {
            let (s, e) = (row_ptr[b] as usize, row_ptr[b + 1] as usize);
            if s > e {
                return Err(Error::format(format!("BSR row_ptr decreases at block row {b}")));
            }
            let idx = &col_idx[s..e];
            if let Some(&c) = idx.iter().find(|&&c| c as usize >= gc) {
                return Err(Error::format(format!(
                    "BSR block column {c} in block row {b} is out of range ({gc} block columns)"
                )));
            }
            if idx.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::format(format!(
                    "BSR block columns of block row {b} are not strictly increasing"
                )));
            }
            // Padding outside the matrix must be zero.
            for (i, &bc) in idx.iter().enumerate() {
                let blk = &values[(s + i) * bs..(s + i + 1) * bs];
                for rr in 0..block_rows {
                    for cc in 0..block_cols {
                        let (r, c) = (b * block_rows + rr, bc as usize * block_cols + cc);
                        if (r >= rows || c >= cols) && blk[rr * block_cols + cc] != 0.0 {
                            return Err(Error::format(format!(
                                "BSR padding element ({r}, {c}) outside the {rows}x{cols} matrix is not zero"
                            )));
                        }
                    }
                }
            }
        }
        check_finite("BSR values", &values)?;
        Ok(Bsr {
            rows,
            cols,
            block_rows,
            block_cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// Stores the blocks of `w` that the mask keeps. The mask must be uniform over
    /// each block (all kept or all pruned), as block pruning produces.
    pub fn from_dense_masked(w: &Matrix, mask: &Mask, block_rows: usize, block_cols: usize) -> Result<Self> {
        Pattern::Block {
            rows: block_rows,
            cols: block_cols,
        }
        .validate()?;
        mask.check_shape(w.rows(), w.cols())?;
        w.check_finite()?;
        let (rows, cols) = (w.rows(), w.cols());
        let (gr, gc) = (rows.div_ceil(block_rows), cols.div_ceil(block_cols));
        to_u32(gc, "BSR block-column count")?;
        let bs = block_rows * block_cols;
        let mut row_ptr = vec![0u32];
        let mut col_idx = Vec::new();
        let mut values = Vec::new();
        for b in 0..gr {
            for bc in 0..gc {
                let first = mask.get(b * block_rows, bc * block_cols);
                for r in b * block_rows..((b + 1) * block_rows).min(rows) {
                    for c in bc * block_cols..((bc + 1) * block_cols).min(cols) {
                        if mask.get(r, c) != first {
                            return Err(Error::format(format!(
                                "mask is not uniform over the {block_rows}x{block_cols} block at block ({b}, {bc})"
                            )));
                        }
                    }
                }
                if first {
                    col_idx.push(bc as u32);
                    let start = values.len();
                    values.resize(start + bs, 0.0);
                    for rr in 0..block_rows {
                        for cc in 0..block_cols {
                            let (r, c) = (b * block_rows + rr, bc * block_cols + cc);
                            if r < rows && c < cols {
                                values[start + rr * block_cols + cc] = w.get(r, c);
                            }
                        }
                    }
                }
            }
            row_ptr.push(to_u32(col_idx.len(), "BSR block count")?);
        }
        Ok(Bsr {
            rows,
            cols,
            block_rows,
            block_cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }
    pub fn block_cols(&self) -> usize {
        self.block_cols
    }
    /// Number of block rows in the (padded) grid.
    pub fn grid_rows(&self) -> usize {
        self.row_ptr.len() - 1
    }
    /// Number of block columns in the (padded) grid.
    pub fn grid_cols(&self) -> usize {
        self.cols.div_ceil(self.block_cols)
    }
    /// Number of stored blocks.
    pub fn nnz_blocks(&self) -> usize {
        self.col_idx.len()
    }
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    /// Fraction of blocks of the grid not stored.
    pub fn block_sparsity(&self) -> f64 {
        let n = self.grid_rows() * self.grid_cols();
        if n == 0 {
            0.0
        } else {
            1.0 - self.nnz_blocks() as f64 / n as f64
        }
    }
    /// Bytes of row pointers, block-column indices and block values.
    pub fn bytes(&self) -> usize {
        4 * (self.row_ptr.len() + self.col_idx.len() + self.values.len())
    }
    pub fn to_dense(&self) -> Matrix {
        let (br, bc) = (self.block_rows, self.block_cols);
        let mut d = vec![0.0f32; self.rows * self.cols];
        for b in 0..self.grid_rows() {
            for i in self.row_ptr[b] as usize..self.row_ptr[b + 1] as usize {
                let c0 = self.col_idx[i] as usize * bc;
                for rr in 0..br {
                    for cc in 0..bc {
                        let (r, c) = (b * br + rr, c0 + cc);
                        if r < self.rows && c < self.cols {
                            d[r * self.cols + c] = self.values[i * br * bc + rr * bc + cc];
                        }
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
    fn padded_edge_blocks_round_trip() {
        // 3x5 with 2x2 blocks: grid 2x3, edge blocks padded.
        let w = Matrix::new(3, 5, (1..=15).map(|v| v as f32).collect()).unwrap();
        let b = Bsr::from_dense_masked(&w, &Mask::all(3, 5).unwrap(), 2, 2).unwrap();
        assert_eq!((b.grid_rows(), b.grid_cols(), b.nnz_blocks()), (2, 3, 6));
        assert_eq!(b.to_dense(), w);
        // The arrays re-validate.
        let again = Bsr::new(3, 5, 2, 2, b.row_ptr.clone(), b.col_idx.clone(), b.values.clone());
        assert_eq!(again.unwrap(), b);
    }

    #[test]
    fn rejects_nonzero_padding_and_mixed_masks() {
        // 1x1 matrix, 2x2 block: three padding slots must be zero.
        assert!(Bsr::new(1, 1, 2, 2, vec![0, 1], vec![0], vec![1.0, 0.0, 0.0, 0.0]).is_ok());
        assert!(Bsr::new(1, 1, 2, 2, vec![0, 1], vec![0], vec![1.0, 5.0, 0.0, 0.0]).is_err());
        let w = Matrix::new(2, 2, vec![1.0; 4]).unwrap();
        let m = Mask::new(2, 2, vec![true, false, true, true]).unwrap();
        assert!(Bsr::from_dense_masked(&w, &m, 2, 2).is_err());
        assert!(Bsr::from_dense_masked(&w, &m, 0, 2).is_err());
    }
}
