use super::{to_u32, Mask, Matrix};
use crate::error::{check_finite, Error, Result};

/// Compressed sparse rows: the format for unstructured sparsity.
///
/// Row `r` holds the values `values[row_ptr[r]..row_ptr[r+1]]` at the columns
/// `col_idx[...]`, strictly increasing within a row. Indices are `u32` so the
/// arrays upload to the GPU unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// Builds a CSR matrix from its arrays, checking every invariant.
    pub fn new(rows: usize, cols: usize, row_ptr: Vec<u32>, col_idx: Vec<u32>, values: Vec<f32>) -> Result<Self> {
        to_u32(cols, "CSR column count")?;
        if row_ptr.len() != rows + 1 {
            return Err(Error::format(format!(
                "CSR row_ptr has {} entries, expected rows + 1 = {}",
                row_ptr.len(),
                rows + 1
            )));
        }
        if col_idx.len() != values.len() {
            return Err(Error::format(format!(
                "CSR has {} column indices but {} values",
                col_idx.len(),
                values.len()
            )));
        }
        if row_ptr[0] != 0 || row_ptr[rows] as usize != values.len() {
            return Err(Error::format(format!(
                "CSR row_ptr must start at 0 and end at nnz = {}, got {}..{}",
                values.len(),
                row_ptr[0],
                row_ptr[rows]
            )));
        }
        for r in 0..rows {
            let (a, b) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
            if a > b {
                return Err(Error::format(format!("CSR row_ptr decreases at row {r}")));
            }
            let row = &col_idx[a..b];
            if let Some(&c) = row.iter().find(|&&c| c as usize >= cols) {
                return Err(Error::format(format!(
                    "CSR column index {c} in row {r} is out of range (cols = {cols})"
                )));
            }
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::format(format!(
                    "CSR column indices of row {r} are not strictly increasing"
                )));
            }
        }
        check_finite("CSR values", &values)?;
        Ok(Csr {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// Keeps the elements of `w` whose mask bit is set (zeros that are kept stay
    /// stored, so the structure is exactly the mask).
    pub fn from_dense_masked(w: &Matrix, mask: &Mask) -> Result<Self> {
        mask.check_shape(w.rows(), w.cols())?;
        w.check_finite()?;
        to_u32(w.cols(), "CSR column count")?;
        let nnz = mask.kept();
        to_u32(nnz, "CSR non-zero count")?;
        let mut row_ptr = Vec::with_capacity(w.rows() + 1);
        let mut col_idx = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        row_ptr.push(0u32);
        for r in 0..w.rows() {
            for c in 0..w.cols() {
                if mask.get(r, c) {
                    col_idx.push(c as u32);
                    values.push(w.get(r, c));
                }
            }
            row_ptr.push(values.len() as u32);
        }
        Ok(Csr {
            rows: w.rows(),
            cols: w.cols(),
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
    pub fn nnz(&self) -> usize {
        self.values.len()
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
    /// Fraction of elements not stored.
    pub fn sparsity(&self) -> f64 {
        let len = self.rows * self.cols;
        if len == 0 {
            0.0
        } else {
            1.0 - self.nnz() as f64 / len as f64
        }
    }
    /// Bytes of row pointers, column indices and values.
    pub fn bytes(&self) -> usize {
        4 * (self.row_ptr.len() + self.col_idx.len() + self.values.len())
    }
    pub fn to_dense(&self) -> Matrix {
        let mut d = vec![0.0f32; self.rows * self.cols];
        for r in 0..self.rows {
            for i in self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize {
                d[r * self.cols + self.col_idx[i] as usize] = self.values[i];
            }
        }
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: d,
        }
    }
    /// The structure as a mask.
    pub fn mask(&self) -> Mask {
        let mut keep = vec![false; self.rows * self.cols];
        for r in 0..self.rows {
            for i in self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize {
                keep[r * self.cols + self.col_idx[i] as usize] = true;
            }
        }
        Mask {
            rows: self.rows,
            cols: self.cols,
            keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_broken_structure() {
        let ok = Csr::new(2, 3, vec![0, 1, 2], vec![2, 0], vec![1.0, 2.0]);
        assert!(ok.is_ok());
        assert!(Csr::new(2, 3, vec![0, 1], vec![2], vec![1.0]).is_err()); // short row_ptr
        assert!(Csr::new(2, 3, vec![0, 2, 1], vec![0, 1], vec![1.0, 2.0]).is_err()); // decreasing
        assert!(Csr::new(1, 3, vec![0, 1], vec![3], vec![1.0]).is_err()); // col out of range
        assert!(Csr::new(1, 3, vec![0, 2], vec![1, 1], vec![1.0, 2.0]).is_err()); // duplicate
        assert!(Csr::new(1, 3, vec![0, 1], vec![1], vec![f32::NAN]).is_err()); // NaN
        assert!(Csr::new(1, 3, vec![0, 1], vec![1, 2], vec![1.0]).is_err()); // len mismatch
    }

    #[test]
    fn bytes_counts_every_array() {
        let c = Csr::new(2, 3, vec![0, 1, 2], vec![2, 0], vec![1.0, 2.0]).unwrap();
        assert_eq!(c.bytes(), 4 * (3 + 2 + 2));
        assert_eq!(c.to_dense().data(), &[0.0, 0.0, 1.0, 2.0, 0.0, 0.0]);
    }
}
