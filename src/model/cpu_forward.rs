//! The CPU reference forward pass of [`Lite0`]: plain loops with f64
//! accumulation, the oracle for the GPU plan. Activations are channel-major
//! `[C, H*W]`, as everywhere in the crate.

use super::lite0::{Activation, Layer, Lite0, Op, Padding, Shape};
use crate::error::{Error, Result};

/// Logits `[1000]` for one preprocessed image `[3, H*W]`.
pub fn forward(net: &Lite0, input: &[f32]) -> Result<Vec<f32>> {
    let mut tensors = forward_all(net, input)?;
    Ok(tensors.pop().expect("forward_all returns at least the input"))
}

/// Every tensor of the forward pass: index 0 is the input, index `i + 1` the
/// output of layer `i` (so the last is the logits). For comparing a GPU plan
/// layer by layer.
pub fn forward_all(net: &Lite0, input: &[f32]) -> Result<Vec<Vec<f32>>> {
    if input.len() != net.input.len() {
        return Err(Error::shape(format!(
            "the network was built for a {} input ({} values), got {} values",
            net.input,
            net.input.len(),
            input.len()
        )));
    }
    let mut tensors: Vec<Vec<f32>> = Vec::with_capacity(net.layers.len() + 1);
    tensors.push(input.to_vec());
    for layer in &net.layers {
        let x = tensors.last().expect("at least the input");
        let mut y = run_layer(layer, x)?;
        if let Op::Pointwise(p) = &layer.op {
            if let Some(t) = p.residual_from {
                let r = tensors
                    .get(t)
                    .filter(|r| r.len() == y.len())
                    .ok_or_else(|| Error::shape(format!("{}: residual tensor {t} does not fit", layer.name)))?;
                for (o, &a) in y.iter_mut().zip(r) {
                    *o += a;
                }
            }
        }
        tensors.push(y);
    }
    Ok(tensors)
}

/// One layer without its residual (see [`forward_all`]).
pub fn run_layer(layer: &Layer, x: &[f32]) -> Result<Vec<f32>> {
    if x.len() != layer.input.len() {
        return Err(Error::shape(format!(
            "{}: input has {} values, expected {}",
            layer.name,
            x.len(),
            layer.input
        )));
    }
    let (i, o) = (layer.input, layer.output);
    Ok(match &layer.op {
        Op::Conv(c) => {
            let w = c.weight.data();
            let kk = c.k * c.k;
            conv(
                i,
                o,
                c.k,
                c.stride,
                c.pad,
                c.act,
                &c.bias,
                x,
                |co, ci| &w[(co * c.cin + ci) * kk..(co * c.cin + ci + 1) * kk],
                false,
            )
        }
        Op::Depthwise(d) => {
            let w = d.weight.data();
            let kk = d.k * d.k;
            conv(
                i,
                o,
                d.k,
                d.stride,
                d.pad,
                d.act,
                &d.bias,
                x,
                |c, _| &w[c * kk..(c + 1) * kk],
                true,
            )
        }
        Op::Pointwise(p) => pointwise(p.weight.data(), &p.bias, p.act, p.cin, i.hw(), x),
        Op::Pool => {
            let hw = i.hw();
            x.chunks_exact(hw)
                .map(|row| (row.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32)
                .collect()
        }
        Op::Classifier(c) => pointwise(c.weight.data(), &c.bias, Activation::None, c.weight.cols(), 1, x),
    })
}

/// `act(W[cout, cin] X[cin, hw] + b)`.
fn pointwise(w: &[f32], bias: &[f32], act: Activation, cin: usize, hw: usize, x: &[f32]) -> Vec<f32> {
    let cout = bias.len();
    let mut y = vec![0.0f32; cout * hw];
    let mut acc = vec![0.0f64; hw];
    for co in 0..cout {
        acc.fill(bias[co] as f64);
        for (ci, &a) in w[co * cin..(co + 1) * cin].iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            let a = a as f64;
            for (s, &v) in acc.iter_mut().zip(&x[ci * hw..(ci + 1) * hw]) {
                *s += a * v as f64;
            }
        }
        for (o, &s) in y[co * hw..(co + 1) * hw].iter_mut().zip(&acc) {
            *o = act.apply(s as f32);
        }
    }
    y
}

/// A dense (`depthwise == false`) or depthwise spatial convolution with zero
/// padding; `kernel(co, ci)` returns the `k*k` taps.
#[allow(clippy::too_many_arguments)]
fn conv<'w>(
    i: Shape,
    o: Shape,
    k: usize,
    stride: usize,
    pad: Padding,
    act: Activation,
    bias: &[f32],
    x: &[f32],
    kernel: impl Fn(usize, usize) -> &'w [f32],
    depthwise: bool,
) -> Vec<f32> {
    let mut y = vec![0.0f32; o.len()];
    let mut acc = vec![0.0f64; o.hw()];
    for co in 0..o.c {
        acc.fill(bias[co] as f64);
        let inputs = if depthwise { co..co + 1 } else { 0..i.c };
        for ci in inputs {
            let taps = kernel(co, ci);
            let plane = &x[ci * i.hw()..(ci + 1) * i.hw()];
            for ky in 0..k {
                for kx in 0..k {
                    let wv = taps[ky * k + kx] as f64;
                    for oy in 0..o.h {
                        // Input row oy*stride + ky - top, skipped when in the padding.
                        let iy = (oy * stride + ky) as isize - pad.top as isize;
                        if iy < 0 || iy >= i.h as isize {
                            continue;
                        }
                        let row = &plane[iy as usize * i.w..(iy as usize + 1) * i.w];
                        let out = &mut acc[oy * o.w..(oy + 1) * o.w];
                        for (ox, s) in out.iter_mut().enumerate() {
                            let ix = (ox * stride + kx) as isize - pad.left as isize;
                            if ix >= 0 && ix < i.w as isize {
                                *s += wv * row[ix as usize] as f64;
                            }
                        }
                    }
                }
            }
        }
        for (v, &s) in y[co * o.hw()..(co + 1) * o.hw()].iter_mut().zip(&acc) {
            *v = act.apply(s as f32);
        }
    }
    y
}
