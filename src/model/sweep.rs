//! Accuracy and latency against sparsity: the model pruned over a grid of
//! patterns and sparsities, each point compared with the dense model on a set
//! of images (top-1 agreement, mean KL divergence of the probabilities) and
//! timed on the GPU.

use super::classes::softmax;
use super::gpu::{Criterion, GpuLite0, PruneSpec};
use crate::error::Result;
use crate::gpu::Context;
use crate::sparse::Pattern;

/// How a sweep point was pruned: the criterion and whether biases were corrected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Method {
    pub criterion: Criterion,
    pub bias_correction: bool,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.criterion)?;
        if self.bias_correction {
            f.write_str("+bc")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Method {
    type Err = crate::Error;
    /// `magnitude`, `activation`, either with `+bc` (bias correction).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (c, bc) = match s.strip_suffix("+bc") {
            Some(c) => (c, true),
            None => (s, false),
        };
        Ok(Method {
            criterion: c.parse()?,
            bias_correction: bc,
        })
    }
}

/// One point of a sweep.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    pub pattern: Pattern,
    pub method: Method,
    /// Target sparsity (for N:M, the pattern's).
    pub sparsity: f64,
    /// Fraction of images whose top-1 class equals the dense model's.
    pub agreement: f64,
    /// Mean KL(dense || pruned) of the class probabilities, in nats.
    pub mean_kl: f64,
    /// Median GPU ms of the whole forward pass.
    pub latency_ms: f64,
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// KL(p || q) in nats for probability vectors.
pub fn kl(p: &[f32], q: &[f32]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(&a, &b)| a as f64 * ((a as f64) / (b as f64).max(1e-30)).ln())
        .sum()
}

/// Runs `images` (preprocessed) through the dense model and every point of
/// `grid` (pattern, sparsity, method; methods other than plain magnitude need
/// a calibrated model); `progress` is called after each point. Leaves the
/// model dense.
pub async fn sweep(
    ctx: &Context,
    gpu: &mut GpuLite0,
    images: &[Vec<f32>],
    grid: &[(Pattern, f64, Method)],
    runs: usize,
    mut progress: impl FnMut(&SweepPoint),
) -> Result<Vec<SweepPoint>> {
    gpu.reset(ctx)?;
    let mut dense = Vec::with_capacity(images.len());
    for x in images {
        dense.push(softmax(&gpu.forward(ctx, x).await?));
    }
    let dense_ms = gpu.latency(ctx, 3, runs).await?.median_ms();
    let mut points = vec![SweepPoint {
        pattern: Pattern::Dense,
        method: Method::default(),
        sparsity: 0.0,
        agreement: 1.0,
        mean_kl: 0.0,
        latency_ms: dense_ms,
    }];
    progress(&points[0]);
    for &(pattern, sparsity, method) in grid {
        let mut spec = PruneSpec::new(pattern, sparsity);
        spec.criterion = method.criterion;
        spec.bias_correction = method.bias_correction;
        gpu.prune(ctx, &spec).await?;
        let (mut agree, mut kl_sum) = (0usize, 0.0f64);
        for (x, p) in images.iter().zip(&dense) {
            let q = softmax(&gpu.forward(ctx, x).await?);
            agree += (argmax(p) == argmax(&q)) as usize;
            kl_sum += kl(p, &q);
        }
        let n = images.len().max(1) as f64;
        let point = SweepPoint {
            pattern,
            method,
            sparsity: match pattern {
                Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
                _ => sparsity,
            },
            agreement: agree as f64 / n,
            mean_kl: kl_sum / n,
            latency_ms: gpu.latency(ctx, 3, runs).await?.median_ms(),
        };
        progress(&point);
        points.push(point);
    }
    gpu.reset(ctx)?;
    Ok(points)
}

/// Draws latency and top-1 agreement against sparsity, one line per pattern.
#[cfg(not(target_arch = "wasm32"))]
pub fn plot_svg(points: &[SweepPoint], title: &str, path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let gerr = |e: &dyn std::fmt::Display| crate::Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| gerr(&e))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| gerr(&e))?;
    let (left, right) = root.split_horizontally(600);
    let dense_ms = points
        .iter()
        .find(|p| p.pattern == Pattern::Dense)
        .map_or(0.0, |p| p.latency_ms);
    let max_ms = points.iter().map(|p| p.latency_ms).fold(dense_ms, f64::max) * 1.15;
    let mut patterns: Vec<(Pattern, Method)> = Vec::new();
    for p in points.iter().filter(|p| p.pattern != Pattern::Dense) {
        if !patterns.contains(&(p.pattern, p.method)) {
            patterns.push((p.pattern, p.method));
        }
    }
    for (area, is_latency) in [(left, true), (right, false)] {
        let (ymax, ydesc) = if is_latency {
            (max_ms, "latency (ms, median GPU time)")
        } else {
            (100.0, "top-1 agreement with dense (%)")
        };
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0f64..100.0, 0.0f64..ymax)
            .map_err(|e| gerr(&e))?;
        chart
            .configure_mesh()
            .x_desc("sparsity (%)")
            .y_desc(ydesc)
            .draw()
            .map_err(|e| gerr(&e))?;
        for (i, pat) in patterns.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| (p.pattern, p.method) == *pat || p.pattern == Pattern::Dense)
                .map(|p| {
                    (
                        100.0 * p.sparsity,
                        if is_latency { p.latency_ms } else { 100.0 * p.agreement },
                    )
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| gerr(&e))?
                .label(format!("{} {}", pat.0, pat.1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| gerr(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(if is_latency {
                SeriesLabelPosition::LowerLeft
            } else {
                SeriesLabelPosition::UpperRight
            })
            .draw()
            .map_err(|e| gerr(&e))?;
    }
    root.present().map_err(|e| gerr(&e))?;
    Ok(())
}
