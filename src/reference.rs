//! CPU reference products, plain loops with f64 accumulation: the oracle every
//! GPU kernel is compared with. `Y[M, N] = W[M, K] * X[K, N]`, all row-major.

use crate::error::{Error, Result};
use crate::gpu::conv::ConvShape;
use crate::gpu::Activation;
use crate::sparse::{Bsr, Csr, Matrix, NmMatrix, SparseMatrix};

fn check(w_rows: usize, w_cols: usize, x: &Matrix) -> Result<()> {
    if w_cols != x.rows() {
        return Err(Error::shape(format!(
            "W is {w_rows}x{w_cols} but X is {}x{}: K must match",
            x.rows(),
            x.cols()
        )));
    }
    Ok(())
}

fn finish(rows: usize, cols: usize, acc: Vec<f64>) -> Result<Matrix> {
    Matrix::new(rows, cols, acc.into_iter().map(|v| v as f32).collect())
}

/// Dense `W X`.
pub fn gemm(w: &Matrix, x: &Matrix) -> Result<Matrix> {
    check(w.rows(), w.cols(), x)?;
    let (m, k, n) = (w.rows(), w.cols(), x.cols());
    let mut acc = vec![0.0f64; m * n];
    for i in 0..m {
        let out = &mut acc[i * n..(i + 1) * n];
        for p in 0..k {
            let a = w.get(i, p) as f64;
            for (o, &b) in out.iter_mut().zip(&x.data()[p * n..(p + 1) * n]) {
                *o += a * b as f64;
            }
        }
    }
    finish(m, n, acc)
}

/// `W X` with W in CSR.
pub fn spmm_csr(w: &Csr, x: &Matrix) -> Result<Matrix> {
    check(w.rows(), w.cols(), x)?;
    let n = x.cols();
    let mut acc = vec![0.0f64; w.rows() * n];
    for r in 0..w.rows() {
        let out = &mut acc[r * n..(r + 1) * n];
        for i in w.row_ptr()[r] as usize..w.row_ptr()[r + 1] as usize {
            let (a, p) = (w.values()[i] as f64, w.col_idx()[i] as usize);
            for (o, &b) in out.iter_mut().zip(&x.data()[p * n..(p + 1) * n]) {
                *o += a * b as f64;
            }
        }
    }
    finish(w.rows(), n, acc)
}

/// `W X` with W in BSR (padding outside the matrix is skipped).
pub fn spmm_bsr(w: &Bsr, x: &Matrix) -> Result<Matrix> {
    check(w.rows(), w.cols(), x)?;
    let (br, bc, n) = (w.block_rows(), w.block_cols(), x.cols());
    let mut acc = vec![0.0f64; w.rows() * n];
    for b in 0..w.grid_rows() {
        for i in w.row_ptr()[b] as usize..w.row_ptr()[b + 1] as usize {
            let c0 = w.col_idx()[i] as usize * bc;
            let blk = &w.values()[i * br * bc..(i + 1) * br * bc];
            for rr in 0..br {
                let r = b * br + rr;
                if r >= w.rows() {
                    break;
                }
                for cc in 0..bc {
                    let p = c0 + cc;
                    if p >= w.cols() {
                        break;
                    }
                    let a = blk[rr * bc + cc] as f64;
                    let out = &mut acc[r * n..(r + 1) * n];
                    for (o, &v) in out.iter_mut().zip(&x.data()[p * n..(p + 1) * n]) {
                        *o += a * v as f64;
                    }
                }
            }
        }
    }
    finish(w.rows(), n, acc)
}

/// `W X` with W in N:M (padding slots past K are skipped).
pub fn spmm_nm(w: &NmMatrix, x: &Matrix) -> Result<Matrix> {
    check(w.rows(), w.cols(), x)?;
    let (n_keep, m, n) = (w.n(), w.m(), x.cols());
    let groups = w.groups();
    let mut acc = vec![0.0f64; w.rows() * n];
    for r in 0..w.rows() {
        let out = &mut acc[r * n..(r + 1) * n];
        for g in 0..groups {
            for s in 0..n_keep {
                let p = g * m + w.slot_index(r, g * n_keep + s);
                if p >= w.cols() {
                    continue;
                }
                let a = w.values()[(r * groups + g) * n_keep + s] as f64;
                for (o, &v) in out.iter_mut().zip(&x.data()[p * n..(p + 1) * n]) {
                    *o += a * v as f64;
                }
            }
        }
    }
    finish(w.rows(), n, acc)
}

/// `W X` for any format.
pub fn spmm(w: &SparseMatrix, x: &Matrix) -> Result<Matrix> {
    match w {
        SparseMatrix::Dense(d) => gemm(d, x),
        SparseMatrix::Csr(c) => spmm_csr(c, x),
        SparseMatrix::Bsr(b) => spmm_bsr(b, x),
        SparseMatrix::Nm(nm) => spmm_nm(nm, x),
    }
}

/// Norm-wise relative error `||a - b|| / max(||b||, tiny)`, in f64.
pub fn rel_error(actual: &[f32], expected: &[f32]) -> f64 {
    if actual.len() != expected.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &e) in actual.iter().zip(expected) {
        let d = a as f64 - e as f64;
        num += d * d;
        den += (e as f64) * (e as f64);
    }
    if !num.is_finite() {
        return f64::INFINITY;
    }
    num.sqrt() / den.sqrt().max(1e-30)
}

/// Dense convolution of channel-major `x` (`[cin, h*w]`), weight
/// `[cout][cin][k][k]`, then bias and activation; returns `[cout, oh*ow]`.
pub fn conv2d(x: &Matrix, s: &ConvShape, weight: &[f32], bias: &[f32], act: Activation) -> Result<Matrix> {
    conv_any(x, s, weight, bias, act, false)
}

/// Depthwise convolution (`cin == cout`), weight `[c][k][k]`.
pub fn depthwise(x: &Matrix, s: &ConvShape, weight: &[f32], bias: &[f32], act: Activation) -> Result<Matrix> {
    if s.cin != s.cout {
        return Err(Error::shape("depthwise needs cin == cout"));
    }
    conv_any(x, s, weight, bias, act, true)
}

fn conv_any(x: &Matrix, s: &ConvShape, weight: &[f32], bias: &[f32], act: Activation, dw: bool) -> Result<Matrix> {
    let (oh, ow) = s.out_hw()?;
    let taps_in = if dw { 1 } else { s.cin };
    if x.rows() != s.cin
        || x.cols() != s.h * s.w
        || weight.len() != s.cout * taps_in * s.k * s.k
        || bias.len() != s.cout
    {
        return Err(Error::shape(format!(
            "convolution {s:?} got input {}x{}",
            x.rows(),
            x.cols()
        )));
    }
    let mut out = vec![0.0f32; s.cout * oh * ow];
    for co in 0..s.cout {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0.0f64;
                for t in 0..taps_in {
                    let ci = if dw { co } else { t };
                    for ky in 0..s.k {
                        let iy = (oy * s.stride + ky) as isize - s.pad_top as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..s.k {
                            let ix = (ox * s.stride + kx) as isize - s.pad_left as isize;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            let wv = weight[((co * taps_in + t) * s.k + ky) * s.k + kx] as f64;
                            acc += wv * x.get(ci, iy as usize * s.w + ix as usize) as f64;
                        }
                    }
                }
                out[co * oh * ow + oy * ow + ox] = act.apply((acc + bias[co] as f64) as f32);
            }
        }
    }
    Matrix::new(s.cout, oh * ow, out)
}

/// Global average pooling of `[c, h*w]` into `[c, 1]`.
pub fn avgpool(x: &Matrix) -> Result<Matrix> {
    let n = x.cols().max(1) as f64;
    let data = (0..x.rows())
        .map(|c| {
            (x.data()[c * x.cols()..(c + 1) * x.cols()]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / n) as f32
        })
        .collect();
    Matrix::new(x.rows(), 1, data)
}
