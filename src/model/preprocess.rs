//! Image preprocessing for EfficientNet-Lite0, as the TensorFlow evaluation
//! pipeline that produced the checkpoint does it:
//!
//! 1. decode (PNG or JPEG, any size; grey and alpha become RGB),
//! 2. center crop a square of side `min(h, w) * 224 / (224 + 32)`, i.e. the
//!    224 center of the image resized so its shorter side is 256 (the usual
//!    "resize 256, crop 224", done in the other order so only one resample),
//! 3. resize that square to 224x224 with a bicubic (Catmull-Rom) filter,
//! 4. normalise `(x - 127) / 128` per channel, x in 0..=255: the Lite models'
//!    own convention (TF `efficientnet_lite_builder`: MEAN_RGB 127, STDDEV_RGB
//!    128), not the ImageNet mean/std of the B0-B7 ports,
//! 5. lay out channel-major `[3, 224*224]` (R plane, G plane, B plane).

use image::{imageops::FilterType, DynamicImage, RgbImage};

use crate::error::{Error, Result};

/// Per-channel normalisation `(x - mean) / std` on 0..=255 pixel values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// What this checkpoint expects (verified: see the module docs).
pub const LITE_NORMALIZATION: Normalization = Normalization {
    mean: [127.0; 3],
    std: [128.0; 3],
};

/// The torchvision ImageNet statistics, for comparison and other checkpoints.
pub const IMAGENET_NORMALIZATION: Normalization = Normalization {
    mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
    std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
};

/// The crop keeps `size / (size + CROP_PADDING)` of the shorter side.
pub const CROP_PADDING: usize = 32;

/// Decodes PNG or JPEG bytes to RGB. Anything else is an [`Error::Image`].
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| Error::Image(format!("cannot decode the image ({} bytes): {e}", bytes.len())))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::Image("the image is empty".into()));
    }
    Ok(DynamicImage::to_rgb8(&img))
}

/// Center crop and resize to `size x size` (steps 2-3 of the module docs).
pub fn crop_resize(img: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = ((h.min(w) * size) as f64 / (size + CROP_PADDING) as f64)
        .round()
        .max(1.0) as usize;
    // TensorFlow's offsets: (h - side + 1) / 2.
    let (y0, x0) = ((h - side).div_ceil(2), (w - side).div_ceil(2));
    let crop = image::imageops::crop_imm(img, x0 as u32, y0 as u32, side as u32, side as u32).to_image();
    image::imageops::resize(&crop, size as u32, size as u32, FilterType::CatmullRom)
}

/// Normalises and lays out an RGB image channel-major `[3, H*W]`.
pub fn to_tensor(img: &RgbImage, norm: &Normalization) -> Vec<f32> {
    let hw = (img.width() * img.height()) as usize;
    let mut out = vec![0.0f32; 3 * hw];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * hw + i] = (p.0[c] as f32 - norm.mean[c]) / norm.std[c];
        }
    }
    out
}

/// RGBA pixels (a browser `ImageData`: `width * height * 4` bytes, row-major)
/// to the network input `[3, size*size]`: the same crop, resize and Lite
/// normalisation as [`preprocess`]; alpha is ignored.
pub fn preprocess_rgba(rgba: &[u8], width: usize, height: usize, size: usize) -> Result<Vec<f32>> {
    if width == 0 || height == 0 || size == 0 {
        return Err(Error::Image(format!("the image is empty ({width}x{height})")));
    }
    if rgba.len() != width * height * 4 {
        return Err(Error::Image(format!(
            "{} RGBA bytes for a {width}x{height} image, expected {}",
            rgba.len(),
            width * height * 4
        )));
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let img = RgbImage::from_raw(width as u32, height as u32, rgb)
        .ok_or_else(|| Error::Image(format!("cannot build a {width}x{height} image")))?;
    Ok(to_tensor(&crop_resize(&img, size), &LITE_NORMALIZATION))
}

/// Encoded image bytes to the network input `[3, size*size]` with the Lite normalisation.
pub fn preprocess(bytes: &[u8], size: usize) -> Result<Vec<f32>> {
    preprocess_with(bytes, size, &LITE_NORMALIZATION)
}

/// [`preprocess`] with another normalisation.
pub fn preprocess_with(bytes: &[u8], size: usize, norm: &Normalization) -> Result<Vec<f32>> {
    if size == 0 {
        return Err(Error::shape("the input size must be positive"));
    }
    Ok(to_tensor(&crop_resize(&decode(bytes)?, size), norm))
}

/// The evaluation views of one image: the standard crop, its mirror image, and
/// a tighter crop (the central 70% of the standard crop's square, zoomed in)
/// with its mirror image. Each is `(view name, [3, size*size])`.
pub fn views(bytes: &[u8], size: usize) -> Result<Vec<(&'static str, Vec<f32>)>> {
    if size == 0 {
        return Err(Error::shape("the input size must be positive"));
    }
    let img = decode(bytes)?;
    let base = crop_resize(&img, size);
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = ((h.min(w) * size) as f64 / (size + CROP_PADDING) as f64 * 0.7)
        .round()
        .max(1.0) as usize;
    let (y0, x0) = ((h - side).div_ceil(2), (w - side).div_ceil(2));
    let tight = image::imageops::crop_imm(&img, x0 as u32, y0 as u32, side as u32, side as u32).to_image();
    let tight = image::imageops::resize(&tight, size as u32, size as u32, FilterType::CatmullRom);
    let n = &LITE_NORMALIZATION;
    Ok(vec![
        ("center", to_tensor(&base, n)),
        ("flip", to_tensor(&image::imageops::flip_horizontal(&base), n)),
        ("zoom", to_tensor(&tight, n)),
        ("zoom+flip", to_tensor(&image::imageops::flip_horizontal(&tight), n)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgba_matches_the_rgb_path() {
        let (w, h) = (47usize, 31usize);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let img = RgbImage::from_raw(w as u32, h as u32, rgb.clone()).unwrap();
        let rgba: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 9]).collect();
        let want = to_tensor(&crop_resize(&img, 32), &LITE_NORMALIZATION);
        assert_eq!(preprocess_rgba(&rgba, w, h, 32).unwrap(), want);
        assert!(preprocess_rgba(&rgba[1..], w, h, 32).is_err());
        assert!(preprocess_rgba(&[], 0, 0, 32).is_err());
    }
}
