//! Training images and their augmentation: the photos are decoded once on the
//! CPU, each resized so its shorter side is `side` and center-cropped square,
//! packed RGBA8 and uploaded; every step the CPU draws 16 numbers per sample
//! (which photos, crop boxes, flips, jitter, mixup weight) and the GPU
//! resamples the batch from the packed photos (`tr_augment`).

use image::imageops::FilterType;

use crate::error::{Error, Result};
use crate::model::preprocess::{decode, CROP_PADDING};

use super::kernels::AUG_FLOATS;

/// Photos packed for the GPU: `count` squares of `side x side` RGBA8 pixels.
#[derive(Clone, Debug)]
pub struct Sources {
    pub side: usize,
    pub pixels: Vec<u32>,
    pub names: Vec<String>,
}

impl Sources {
    /// Decodes and packs encoded images (PNG or JPEG); `(name, bytes)` each.
    pub fn from_encoded(images: &[(String, Vec<u8>)], side: usize) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::Invalid("no training images".into()));
        }
        if side < 8 {
            return Err(Error::Invalid(format!("source side {side} is too small")));
        }
        let decoded = images
            .iter()
            .map(|(name, bytes)| {
                decode(bytes)
                    .map(|img| (name.clone(), img))
                    .map_err(|e| Error::Image(format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_images(&decoded, side))
    }

    /// Packs RGBA pixel arrays (a browser's `ImageData`s): `(name, rgba,
    /// width, height)` each.
    pub fn from_rgba(images: &[(String, Vec<u8>, usize, usize)], side: usize) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::Invalid("no training images".into()));
        }
        if side < 8 {
            return Err(Error::Invalid(format!("source side {side} is too small")));
        }
        let mut decoded = Vec::with_capacity(images.len());
        for (name, rgba, w, h) in images {
            if *w == 0 || *h == 0 || rgba.len() != w * h * 4 {
                return Err(Error::Image(format!(
                    "{name}: {} RGBA bytes for a {w}x{h} image",
                    rgba.len()
                )));
            }
            let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            let img = image::RgbImage::from_raw(*w as u32, *h as u32, rgb)
                .ok_or_else(|| Error::Image(format!("{name}: cannot build a {w}x{h} image")))?;
            decoded.push((name.clone(), img));
        }
        Ok(Self::from_images(&decoded, side))
    }

    fn from_images(images: &[(String, image::RgbImage)], side: usize) -> Self {
        let mut pixels = Vec::with_capacity(images.len() * side * side);
        let mut names = Vec::with_capacity(images.len());
        for (name, img) in images {
            let (w, h) = (img.width() as usize, img.height() as usize);
            let short = w.min(h);
            let (x0, y0) = ((w - short) / 2, (h - short) / 2);
            let sq = image::imageops::crop_imm(img, x0 as u32, y0 as u32, short as u32, short as u32).to_image();
            let sq = image::imageops::resize(&sq, side as u32, side as u32, FilterType::Triangle);
            pixels.extend(
                sq.pixels()
                    .map(|p| p.0[0] as u32 | (p.0[1] as u32) << 8 | (p.0[2] as u32) << 16 | 0xff00_0000),
            );
            names.push(name.clone());
        }
        Sources { side, pixels, names }
    }

    /// Reads every PNG/JPEG file of a folder (sorted by name; not recursive).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path, side: usize) -> Result<Self> {
        let files = image_files(dir)?;
        let mut images = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| Error::Io {
                path: f.display().to_string(),
                source: e,
            })?;
            images.push((f.file_name().unwrap_or_default().to_string_lossy().into_owned(), bytes));
        }
        if images.is_empty() {
            return Err(Error::Invalid(format!("{} holds no PNG or JPEG images", dir.display())));
        }
        Self::from_encoded(&images, side)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The side of the packed photos for a `resolution` input: the crops have
/// some room to zoom (the standard crop keeps 224/256 of the shorter side).
pub fn source_side(resolution: usize) -> usize {
    (resolution * 256).div_ceil(224)
}

/// The PNG and JPEG files of a folder, sorted.
#[cfg(not(target_arch = "wasm32"))]
pub fn image_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A small, seedable PRNG (xoshiro256**, seeded by splitmix64): reproducible
/// augmentation, and its state is saved in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    pub s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 boosted).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform().max(1e-300);
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, a).
    pub fn beta(&mut self, a: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(a);
        if x + y == 0.0 {
            0.5
        } else {
            x / (x + y)
        }
    }
}

/// Augmentation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Random-resized crops keep between this fraction of the photo's area and all of it.
    pub min_scale: f64,
    /// Aspect ratios of the crops, log-uniform in [1/max_ratio, max_ratio].
    pub max_ratio: f64,
    pub flip: bool,
    /// Brightness, contrast and saturation factors drawn from [1 - j, 1 + j].
    pub jitter: f64,
    /// Probability of mixing a sample with another photo.
    pub mixup_prob: f64,
    /// Mixup weights from Beta(alpha, alpha).
    pub mixup_alpha: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            min_scale: 0.25,
            max_ratio: 4.0 / 3.0,
            flip: true,
            jitter: 0.3,
            mixup_prob: 0.5,
            mixup_alpha: 0.4,
        }
    }
}

impl Augment {
    /// No augmentation (every option off).
    pub fn none() -> Self {
        Augment {
            min_scale: 1.0,
            max_ratio: 1.0,
            flip: false,
            jitter: 0.0,
            mixup_prob: 0.0,
            mixup_alpha: 0.4,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let ok = (0.01..=1.0).contains(&self.min_scale)
            && self.max_ratio >= 1.0
            && self.max_ratio.is_finite()
            && (0.0..1.0).contains(&self.jitter)
            && (0.0..=1.0).contains(&self.mixup_prob)
            && self.mixup_alpha > 0.0
            && self.mixup_alpha.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "augmentation out of range: {self:?} (min scale in [0.01, 1], ratio >= 1, jitter in [0, 1), mixup probability in [0, 1], alpha > 0)"
            )))
        }
    }

    fn crop(&self, rng: &mut Rng, side: f64) -> [f32; 4] {
        let area = side * side * rng.range(self.min_scale, 1.0);
        let lr = self.max_ratio.ln();
        let ratio = rng.range(-lr, lr).exp();
        let w = (area * ratio).sqrt().min(side);
        let h = (area / ratio).sqrt().min(side);
        let x0 = rng.range(0.0, side - w);
        let y0 = rng.range(0.0, side - h);
        [x0 as f32, y0 as f32, w as f32, h as f32]
    }

    /// The 16 per-sample floats of `tr_augment` for a random training sample.
    pub fn sample(&self, rng: &mut Rng, sources: usize, side: usize) -> [f32; AUG_FLOATS] {
        let s = side as f64;
        let a = rng.below(sources);
        let ca = self.crop(rng, s);
        let fa = self.flip && rng.uniform() < 0.5;
        let mut lam = 1.0f64;
        let mut b = a;
        let mut cb = ca;
        let mut fb = false;
        if sources > 1 && rng.uniform() < self.mixup_prob {
            let l = rng.beta(self.mixup_alpha);
            lam = l.max(1.0 - l);
            b = rng.below(sources);
            cb = self.crop(rng, s);
            fb = self.flip && rng.uniform() < 0.5;
        }
        let j = self.jitter;
        let (br, co, sa) = (
            rng.range(1.0 - j, 1.0 + j),
            rng.range(1.0 - j, 1.0 + j),
            rng.range(1.0 - j, 1.0 + j),
        );
        [
            a as f32,
            b as f32,
            lam as f32,
            fa as u32 as f32,
            ca[0],
            ca[1],
            ca[2],
            ca[3],
            cb[0],
            cb[1],
            cb[2],
            cb[3],
            br as f32,
            co as f32,
            sa as f32,
            fb as u32 as f32,
        ]
    }
}

/// The evaluation view of photo `i`: the standard center crop (the shorter
/// side's central `r / (r + 32)`), no flip, no jitter, no mixup.
pub fn center_view(i: usize, side: usize, r: usize) -> [f32; AUG_FLOATS] {
    let s = side as f32;
    let c = s * r as f32 / (r + CROP_PADDING) as f32;
    let o = (s - c) / 2.0;
    [i as f32, i as f32, 1.0, 0.0, o, o, c, c, o, o, c, c, 1.0, 1.0, 1.0, 0.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_beta_is_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut mean = 0.0;
        for _ in 0..4000 {
            let x = a.beta(0.4);
            assert!((0.0..=1.0).contains(&x));
            mean += x / 4000.0;
        }
        assert!((mean - 0.5).abs() < 0.05, "Beta(0.4, 0.4) mean {mean}");
        let g: f64 = (0..4000).map(|_| a.gamma(2.5)).sum::<f64>() / 4000.0;
        assert!((g - 2.5).abs() < 0.15, "Gamma(2.5) mean {g}");
    }

    #[test]
    fn crops_stay_inside_the_photo() {
        let aug = Augment::default();
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let p = aug.sample(&mut rng, 5, 100);
            assert!(p[0] < 5.0 && p[1] < 5.0 && (0.5..=1.0).contains(&p[2]));
            for c in [&p[4..8], &p[8..12]] {
                assert!(c[0] >= 0.0 && c[1] >= 0.0 && c[2] > 0.0 && c[3] > 0.0);
                assert!(c[0] + c[2] <= 100.0 + 1e-3 && c[1] + c[3] <= 100.0 + 1e-3);
            }
        }
    }
}
