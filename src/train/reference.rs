//! CPU references of the training kernels, in f64, written for clarity: the
//! GPU kernels are tested against these, and these against finite
//! differences of their own forward functions (unit tests below).
//!
//! Layouts are those of the kernels: activations `[C, B, H*W]`, weights
//! row-major `[cout, cols]`.

use super::kernels::ConvGeom;

/// `y = act(conv(x, w) + b)` (dense or depthwise, TF-style explicit padding).
pub fn conv(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], relu6: bool) -> Vec<f32> {
    let cols = g.weight_cols();
    let mut y = vec![0.0f32; g.output_len()];
    let cin = if g.depthwise { 1 } else { g.cin };
    for co in 0..g.cout {
        for bb in 0..g.batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = b[co] as f64;
                    for ci in 0..cin {
                        let xc = if g.depthwise { co } else { ci };
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[(xc * g.batch + bb) * g.h * g.w + iy as usize * g.w + ix as usize];
                                s += w[co * cols + (ci * g.k + ky) * g.k + kx] as f64 * xv as f64;
                            }
                        }
                    }
                    let v = if relu6 { s.clamp(0.0, 6.0) } else { s };
                    y[((co * g.batch + bb) * g.oh + oy) * g.ow + ox] = v as f32;
                }
            }
        }
    }
    y
}

/// Gradients of `sum(dz * conv(x, w) + b)` (no activation): `(dx, dw, db)`.
pub fn conv_backward(g: &ConvGeom, x: &[f32], w: &[f32], dz: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cols = g.weight_cols();
    let mut dx = vec![0.0f64; g.input_len()];
    let mut dw = vec![0.0f64; g.cout * cols];
    let mut db = vec![0.0f64; g.cout];
    let cin = if g.depthwise { 1 } else { g.cin };
    for co in 0..g.cout {
        for bb in 0..g.batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let d = dz[((co * g.batch + bb) * g.oh + oy) * g.ow + ox] as f64;
                    db[co] += d;
                    for ci in 0..cin {
                        let xc = if g.depthwise { co } else { ci };
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = (xc * g.batch + bb) * g.h * g.w + iy as usize * g.w + ix as usize;
                                let wi = co * cols + (ci * g.k + ky) * g.k + kx;
                                dw[wi] += d * x[xi] as f64;
                                dx[xi] += d * w[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dx), f(dw), f(db))
}

/// `C = A B` for row-major `A[m, k]`, `B[k, n]`, in f64.
pub fn matmul(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for j in 0..n {
                c[i * n + j] += av * b[p * n + j] as f64;
            }
        }
    }
    c
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let mx = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - mx).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// Distillation on logits `[classes, batch]`: per-sample `T^2 KL(p_t || p_s)`
/// and the gradient of `weight / batch * sum_b loss_b` with respect to `s`.
pub fn kd(s: &[f32], t: &[f32], classes: usize, batch: usize, temp: f64, weight: f64) -> (Vec<f64>, Vec<f32>) {
    let mut loss = vec![0.0; batch];
    let mut ds = vec![0.0f32; classes * batch];
    for b in 0..batch {
        let col = |x: &[f32]| (0..classes).map(|c| x[c * batch + b] as f64 / temp).collect::<Vec<_>>();
        let ps = softmax(&col(s));
        let pt = softmax(&col(t));
        loss[b] = temp
            * temp
            * pt.iter()
                .zip(&ps)
                .map(|(&q, &p)| if q > 0.0 { q * (q.ln() - p.ln()) } else { 0.0 })
                .sum::<f64>();
        for c in 0..classes {
            // d/ds (T^2 KL) = T (p_s - p_t); times weight / batch.
            ds[c * batch + b] = (weight / batch as f64 * temp * (ps[c] - pt[c])) as f32;
        }
    }
    (loss, ds)
}

/// One AdamW step on `w` (as `tr_adam`): returns the new `(w, m, v)`.
#[allow(clippy::too_many_arguments)]
pub fn adam(
    w: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    hyper: [f32; 8],
    decay: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [lr, b1, b2, eps, c1, c2, wd, scale] = hyper.map(|x| x as f64);
    let (mut wo, mut mo, mut vo) = (vec![0.0; w.len()], vec![0.0; w.len()], vec![0.0; w.len()]);
    for i in 0..w.len() {
        let keep = mask.map_or(1.0, |k| k[i] as f64);
        let gi = g[i] as f64 * scale * keep;
        let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
        let mut wi = w[i] as f64;
        if decay {
            wi -= lr * wd * wi;
        }
        wi -= lr * (mi / c1) / ((vi / c2).sqrt() + eps);
        wo[i] = (wi * keep) as f32;
        mo[i] = mi as f32;
        vo[i] = vi as f32;
    }
    (wo, mo, vo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::train::Rng::new(seed);
        (0..n).map(|_| r.range(-1.0, 1.0) as f32).collect()
    }

    fn geoms() -> Vec<ConvGeom> {
        let mut v = Vec::new();
        for (depthwise, cin, cout, k, stride, h, w) in [
            (true, 3, 3, 3, 1, 5, 6),
            (true, 2, 2, 5, 2, 7, 6),
            (false, 2, 3, 3, 2, 6, 5),
        ] {
            v.push(ConvGeom::same(cin, cout, 2, k, stride, h, w, depthwise));
        }
        v
    }

    /// The conv backward matches central differences of `sum(dz * conv)`,
    /// within 1e-3 relative (f32 forward, step 1e-2 on a linear function).
    #[test]
    fn conv_backward_matches_finite_differences() {
        for g in geoms() {
            let x = rand(g.input_len(), 1);
            let w = rand(g.cout * g.weight_cols(), 2);
            let b = rand(g.cout, 3);
            let dz = rand(g.output_len(), 4);
            let (dx, dw, db) = conv_backward(&g, &x, &w, &dz);
            let f = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                conv(&g, x, w, b, false)
                    .iter()
                    .zip(&dz)
                    .map(|(&y, &d)| y as f64 * d as f64)
                    .sum()
            };
            let h = 1e-2f32;
            let check = |num: f64, ana: f32, what: &str| {
                assert!(
                    (num - ana as f64).abs() <= 1e-3 * (1.0 + num.abs()),
                    "{g:?} {what}: numeric {num}, analytic {ana}"
                );
            };
            for i in (0..x.len()).step_by(3) {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                check((f(&xp, &w, &b) - f(&xm, &w, &b)) / (2.0 * h as f64), dx[i], "dx");
            }
            for i in 0..w.len() {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[i] += h;
                wm[i] -= h;
                check((f(&x, &wp, &b) - f(&x, &wm, &b)) / (2.0 * h as f64), dw[i], "dw");
            }
            for i in 0..b.len() {
                let (mut bp, mut bm) = (b.clone(), b.clone());
                bp[i] += h;
                bm[i] -= h;
                check((f(&x, &w, &bp) - f(&x, &w, &bm)) / (2.0 * h as f64), db[i], "db");
            }
        }
    }

    /// The distillation gradient matches central differences of the loss.
    #[test]
    fn kd_gradient_matches_finite_differences() {
        let (classes, batch) = (7, 3);
        let s = rand(classes * batch, 5).iter().map(|v| v * 3.0).collect::<Vec<_>>();
        let t = rand(classes * batch, 6).iter().map(|v| v * 3.0).collect::<Vec<_>>();
        for temp in [1.0, 2.5] {
            let (loss, ds) = kd(&s, &t, classes, batch, temp, 1.0);
            assert!(loss.iter().all(|&l| l >= 0.0));
            let total = |s: &[f32]| kd(s, &t, classes, batch, temp, 1.0).0.iter().sum::<f64>() / batch as f64;
            for i in 0..s.len() {
                let h = 1e-3f32;
                let (mut sp, mut sm) = (s.clone(), s.clone());
                sp[i] += h;
                sm[i] -= h;
                let num = (total(&sp) - total(&sm)) / (2.0 * h as f64);
                assert!((num - ds[i] as f64).abs() < 2e-4, "T={temp} [{i}]: {num} vs {}", ds[i]);
            }
        }
        // Identical logits: zero loss, zero gradient.
        let (loss, ds) = kd(&t, &t, classes, batch, 1.0, 1.0);
        assert!(loss.iter().all(|&l| l.abs() < 1e-12) && ds.iter().all(|&d| d.abs() < 1e-7));
    }
}
