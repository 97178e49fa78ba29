//! Sparse formats: [`Csr`] (unstructured), [`Bsr`] (block-sparse rows) and
//! [`NmMatrix`] (N:M along the reduction dimension), plus the dense [`Matrix`],
//! the boolean [`Mask`] that pruning produces, and the [`Pattern`] that names them.
//!
//! Every matrix is row-major `W[rows, cols]`; in `Y = W X` the reduction
//! dimension K is `cols`. Constructors validate their invariants and return a
//! typed [`Error`](crate::Error) rather than panicking.

mod bsr;
mod csr;
mod nm;
mod pattern;

pub use bsr::Bsr;
pub use csr::Csr;
pub(crate) use nm::index_bits as nm_index_bits;
pub use nm::NmMatrix;
pub use pattern::Pattern;

use crate::error::{check_finite, checked_mul, Error, Result};

/// A dense row-major f32 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Wraps `data` as a `rows x cols` row-major matrix; the length must match.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        let len = checked_mul(rows, cols, "matrix size")?;
        if data.len() != len {
            return Err(Error::shape(format!(
                "a {rows}x{cols} matrix needs {len} values, got {}",
                data.len()
            )));
        }
        Ok(Matrix { rows, cols, data })
    }

    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Result<Self> {
        let len = checked_mul(rows, cols, "matrix size")?;
        Ok(Matrix {
            rows,
            cols,
            data: vec![0.0; len],
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// Element `(r, c)`. Panics when out of range, like slice indexing.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }
    /// Bytes of the f32 values.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
    /// Errors with [`Error::NonFinite`] when any value is NaN or infinite.
    pub fn check_finite(&self) -> Result<()> {
        check_finite("matrix", &self.data)
    }
    /// A copy with every element whose mask bit is false set to zero.
    pub fn masked(&self, mask: &Mask) -> Result<Matrix> {
        mask.check_shape(self.rows, self.cols)?;
        let data = self
            .data
            .iter()
            .zip(&mask.keep)
            .map(|(&v, &k)| if k { v } else { 0.0 })
            .collect();
        Ok(Matrix {
            rows: self.rows,
            cols: self.cols,
            data,
        })
    }
    /// The mask of the elements that are not exactly zero: of a pruned matrix
    /// read back dense, the weights it keeps (a kept weight that is itself
    /// 0.0 reads as pruned).
    pub fn nonzero_mask(&self) -> Mask {
        Mask {
            rows: self.rows,
            cols: self.cols,
            keep: self.data.iter().map(|v| *v != 0.0).collect(),
        }
    }
    /// Fraction of exactly-zero elements (0 for an empty matrix).
    pub fn zero_fraction(&self) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        self.data.iter().filter(|v| **v == 0.0).count() as f64 / self.data.len() as f64
    }
}

/// Which elements of a `rows x cols` matrix survive pruning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    rows: usize,
    cols: usize,
    keep: Vec<bool>,
}

impl Mask {
    pub fn new(rows: usize, cols: usize, keep: Vec<bool>) -> Result<Self> {
        let len = checked_mul(rows, cols, "mask size")?;
        if keep.len() != len {
            return Err(Error::shape(format!(
                "a {rows}x{cols} mask needs {len} entries, got {}",
                keep.len()
            )));
        }
        Ok(Mask { rows, cols, keep })
    }
    /// A mask that keeps everything.
    pub fn all(rows: usize, cols: usize) -> Result<Self> {
        let len = checked_mul(rows, cols, "mask size")?;
        Ok(Mask {
            rows,
            cols,
            keep: vec![true; len],
        })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn keep(&self) -> &[bool] {
        &self.keep
    }
    pub fn get(&self, r: usize, c: usize) -> bool {
        self.keep[r * self.cols + c]
    }
    pub fn kept(&self) -> usize {
        self.keep.iter().filter(|k| **k).count()
    }
    /// Fraction of pruned (false) entries: the achieved sparsity.
    pub fn sparsity(&self) -> f64 {
        if self.keep.is_empty() {
            return 0.0;
        }
        1.0 - self.kept() as f64 / self.keep.len() as f64
    }
    pub(crate) fn check_shape(&self, rows: usize, cols: usize) -> Result<()> {
        if self.rows != rows || self.cols != cols {
            return Err(Error::shape(format!(
                "mask is {}x{}, matrix is {rows}x{cols}",
                self.rows, self.cols
            )));
        }
        Ok(())
    }
}

/// Any of the formats, as produced by [`crate::prune::prune`].
#[derive(Clone, Debug, PartialEq)]
pub enum SparseMatrix {
    Dense(Matrix),
    Csr(Csr),
    Bsr(Bsr),
    Nm(NmMatrix),
}

impl SparseMatrix {
    pub fn rows(&self) -> usize {
        match self {
            SparseMatrix::Dense(m) => m.rows(),
            SparseMatrix::Csr(m) => m.rows(),
            SparseMatrix::Bsr(m) => m.rows(),
            SparseMatrix::Nm(m) => m.rows(),
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            SparseMatrix::Dense(m) => m.cols(),
            SparseMatrix::Csr(m) => m.cols(),
            SparseMatrix::Bsr(m) => m.cols(),
            SparseMatrix::Nm(m) => m.cols(),
        }
    }
    /// Bytes this format occupies (values plus all index structures).
    pub fn bytes(&self) -> usize {
        match self {
            SparseMatrix::Dense(m) => m.bytes(),
            SparseMatrix::Csr(m) => m.bytes(),
            SparseMatrix::Bsr(m) => m.bytes(),
            SparseMatrix::Nm(m) => m.bytes(),
        }
    }
    pub fn to_dense(&self) -> Matrix {
        match self {
            SparseMatrix::Dense(m) => m.clone(),
            SparseMatrix::Csr(m) => m.to_dense(),
            SparseMatrix::Bsr(m) => m.to_dense(),
            SparseMatrix::Nm(m) => m.to_dense(),
        }
    }
    pub fn pattern(&self) -> Pattern {
        match self {
            SparseMatrix::Dense(_) => Pattern::Dense,
            SparseMatrix::Csr(_) => Pattern::Unstructured,
            SparseMatrix::Bsr(m) => Pattern::Block {
                rows: m.block_rows(),
                cols: m.block_cols(),
            },
            SparseMatrix::Nm(m) => Pattern::NM { n: m.n(), m: m.m() },
        }
    }
    /// Builds the format of `pattern` from `w` and a mask that fits the pattern.
    pub fn from_masked(w: &Matrix, mask: &Mask, pattern: Pattern) -> Result<Self> {
        Ok(match pattern {
            Pattern::Dense => SparseMatrix::Dense(w.masked(mask)?),
            Pattern::Unstructured => SparseMatrix::Csr(Csr::from_dense_masked(w, mask)?),
            Pattern::Block { rows, cols } => SparseMatrix::Bsr(Bsr::from_dense_masked(w, mask, rows, cols)?),
            Pattern::NM { n, m } => SparseMatrix::Nm(NmMatrix::from_dense_masked(w, mask, n, m)?),
        })
    }
}

/// `u32` from `usize`, or an overflow error naming what it was.
pub(crate) fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Overflow(format!("{what} = {v} does not fit in u32")))
}
