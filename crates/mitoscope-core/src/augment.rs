//! Training augmentations of the classifier's crops (step 7 of the method): flips, brightness
//! and contrast, and H&E stain augmentation.
//!
//! OMG-Net trains its classifier with horizontal flips, brightness and contrast jitter of 0.2
//! (torchvision's `ColorJitter`) and a stain augmentation after Tellez et al. 2018 ("H&E stain
//! augmentation improves generalization of convolutional networks for histopathological mitosis
//! detection"): each pixel is unmixed into haematoxylin, eosin and DAB concentrations with Ruifrok
//! and Johnston's colour deconvolution, each stain's concentration is scaled and shifted by a
//! random amount, and the result is mixed back to RGB.
//!
//! Everything is a pure function of the crop and of draws from a caller-supplied [`RngCore`]
//! (seed a `rand_chacha::ChaCha8Rng`, say): the same generator state gives the same crop on every
//! platform, the browser build included, and no operating-system entropy is read.
//! [`AugmentSettings::draw`] takes a fixed number of draws whatever the settings, so changing one
//! strength does not shift the random stream of the others.
//!
//! The stain unmixing is scikit-image's `rgb2hed` / `hed2rgb` (the matrix of
//! [`crate::seeds`]): optical density `ln(max(c / 255, 1e-6)) / ln(1e-6)` per channel, times
//! `hed_from_rgb`. The concentrations are not clipped at zero here (`rgb2hed` clips them), so
//! that unmixing and mixing back returns the same bytes.
//!
//! NOTE: pixels whose channels are all at most [`NO_DATA_MAX`] are the zero padding of a crop cut
//! beyond the image's edge; the colour augmentations leave them black (torchvision's would lift
//! them with the contrast), and the contrast's mean grey is taken over the other pixels only.
//! OMG-Net's training crops never had padding (its loader moved crops inside the patch, see
//! [`crate::crop`](mod@crate::crop)); ours do, as at inference.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::crop::Crop;
use crate::seeds::NO_DATA_MAX;
use crate::{Error, Result};

// scikit-image's `rgb_from_hed` (Ruifrok and Johnston 2001) and its light floor, as the seeds use
// them.
use crate::seeds::{MIN_LIGHT, RGB_FROM_HED};

/// How strongly crops are augmented, with OMG-Net's published values as defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentSettings {
    /// Mirror left-right with probability 1/2 (OMG-Net: yes).
    pub horizontal_flip: bool,
    /// Mirror top-bottom with probability 1/2.
    ///
    /// NOTE: not in OMG-Net's list of augmentations; on by default because a section has no
    /// up or down, so the flip only adds views the scanner could have produced.
    pub vertical_flip: bool,
    /// Brightness jitter: the RGB values are multiplied by a factor drawn from
    /// `U(1 - brightness, 1 + brightness)` (torchvision's `ColorJitter(brightness=0.2)`).
    pub brightness: f64,
    /// Contrast jitter: each value moves away from (or towards) the crop's mean grey by a factor
    /// drawn from `U(1 - contrast, 1 + contrast)` (torchvision's `ColorJitter(contrast=0.2)`).
    pub contrast: f64,
    /// Stain jitter `s` after Tellez et al. 2018: each stain concentration `c` becomes
    /// `c * alpha + beta` with `alpha ~ U(1 - s, 1 + s)` and `beta ~ U(-s, s)` drawn per stain
    /// (haematoxylin, eosin and the DAB residual), in scikit-image's `rgb2hed` units.
    ///
    /// The default 0.05 is Tellez's "HED-light"; "HED-strong" is 0.2. OMG-Net does not publish
    /// its value: the light setting keeps the colours plausible for H&E from any scanner.
    pub stain: f64,
}

impl Default for AugmentSettings {
    fn default() -> Self {
        Self {
            horizontal_flip: true,
            vertical_flip: true,
            brightness: 0.2,
            contrast: 0.2,
            stain: 0.05,
        }
    }
}

/// One draw of the random augmentation: what [`Augmentation::apply`] does to a crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Mirror left-right.
    pub flip_horizontal: bool,
    /// Mirror top-bottom.
    pub flip_vertical: bool,
    /// Scale of the haematoxylin, eosin and DAB concentrations (Tellez's `alpha`).
    pub stain_scale: [f64; 3],
    /// Shift of the haematoxylin, eosin and DAB concentrations (Tellez's `beta`).
    pub stain_shift: [f64; 3],
    /// Brightness factor (1 leaves the crop as it is).
    pub brightness: f64,
    /// Contrast factor (1 leaves the crop as it is).
    pub contrast: f64,
}

impl Augmentation {
    /// The augmentation that changes nothing (up to the rounding of the stain round trip, which
    /// returns the same bytes).
    pub const IDENTITY: Self = Self {
        flip_horizontal: false,
        flip_vertical: false,
        stain_scale: [1.0; 3],
        stain_shift: [0.0; 3],
        brightness: 1.0,
        contrast: 1.0,
    };

    /// The augmented copy of `crop`: flips (RGB and mask together), then the stain jitter, then
    /// brightness and then contrast on the RGB.
    ///
    /// NOTE: torchvision's `ColorJitter` applies brightness and contrast in a random order; here
    /// the order is fixed, which keeps the number of random draws constant.
    ///
    /// # Errors
    ///
    /// As [`crop_side`], for a crop whose buffers are not a square of RGB and mask pixels.
    pub fn apply(&self, crop: &Crop) -> Result<Crop> {
        crop_side(crop)?;
        let mut out = crop.clone();
        if self.flip_horizontal {
            flip_horizontal(&mut out)?;
        }
        if self.flip_vertical {
            flip_vertical(&mut out)?;
        }
        perturb_stains(&mut out.rgb, self.stain_scale, self.stain_shift)?;
        adjust_brightness(&mut out.rgb, self.brightness)?;
        adjust_contrast(&mut out.rgb, self.contrast)?;
        Ok(out)
    }
}

impl AugmentSettings {
    /// No augmentation at all: [`AugmentSettings::draw`] then always gives
    /// [`Augmentation::IDENTITY`].
    pub fn none() -> Self {
        Self {
            horizontal_flip: false,
            vertical_flip: false,
            brightness: 0.0,
            contrast: 0.0,
            stain: 0.0,
        }
    }

    /// Checks that every strength is a number in `[0, 1]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] naming the first strength out of range.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("stain", self.stain),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::InvalidSetting {
                    name,
                    reason: "must be a number between 0 and 1",
                });
            }
        }
        Ok(())
    }

    /// Draws one augmentation from `rng`: always ten 64-bit draws, in the order flips,
    /// stain scales, stain shifts, brightness, contrast.
    pub fn draw(&self, rng: &mut impl RngCore) -> Augmentation {
        let flip_horizontal = coin(rng) && self.horizontal_flip;
        let flip_vertical = coin(rng) && self.vertical_flip;
        let s = self.stain;
        let stain_scale = [(); 3].map(|()| uniform(rng, 1.0 - s, 1.0 + s));
        let stain_shift = [(); 3].map(|()| uniform(rng, -s, s));
        let brightness = uniform(rng, 1.0 - self.brightness, 1.0 + self.brightness);
        let contrast = uniform(rng, 1.0 - self.contrast, 1.0 + self.contrast);
        Augmentation {
            flip_horizontal,
            flip_vertical,
            stain_scale,
            stain_shift,
            brightness,
            contrast,
        }
    }

    /// Draws an augmentation from `rng` and applies it to `crop`.
    ///
    /// # Errors
    ///
    /// As [`Augmentation::apply`].
    pub fn apply(&self, crop: &Crop, rng: &mut impl RngCore) -> Result<Crop> {
        self.draw(rng).apply(crop)
    }
}

/// A fair coin.
fn coin(rng: &mut impl RngCore) -> bool {
    rng.next_u64() >> 63 == 1
}

/// A uniform draw in `[low, high)` from the top 53 bits of one 64-bit draw.
fn uniform(rng: &mut impl RngCore, low: f64, high: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    low + (high - low) * unit
}

/// The side of a square crop, from its mask's length.
///
/// # Errors
///
/// [`Error::SizeMismatch`] when the mask is not a square of pixels or the RGB does not hold
/// three bytes for each of them; [`Error::EmptyGrid`] for an empty crop.
pub fn crop_side(crop: &Crop) -> Result<u32> {
    let pixels = crop.mask.len();
    let side = pixels.isqrt();
    let side32 = u32::try_from(side).map_err(|_| Error::TooLarge("a crop side above u32"))?;
    if side * side != pixels || crop.rgb.len() != 3 * pixels {
        return Err(Error::SizeMismatch {
            width: side32,
            height: side32,
            expected: 4 * (side * side) as u64,
            actual: (crop.rgb.len() + pixels) as u64,
        });
    }
    if side == 0 {
        return Err(Error::EmptyGrid {
            width: 0,
            height: 0,
        });
    }
    Ok(side32)
}

/// Mirrors a crop left-right, its RGB and its mask together.
///
/// # Errors
///
/// As [`crop_side`].
pub fn flip_horizontal(crop: &mut Crop) -> Result<()> {
    let side = crop_side(crop)? as usize;
    for row in crop.mask.chunks_exact_mut(side) {
        row.reverse();
    }
    for row in crop.rgb.chunks_exact_mut(3 * side) {
        for x in 0..side / 2 {
            let (left, right) = row.split_at_mut(3 * (side - 1 - x));
            left[3 * x..3 * x + 3].swap_with_slice(&mut right[..3]);
        }
    }
    Ok(())
}

/// Mirrors a crop top-bottom, its RGB and its mask together.
///
/// # Errors
///
/// As [`crop_side`].
pub fn flip_vertical(crop: &mut Crop) -> Result<()> {
    let side = crop_side(crop)? as usize;
    swap_rows(&mut crop.mask, side);
    swap_rows(&mut crop.rgb, 3 * side);
    Ok(())
}

/// Swaps row `y` with row `rows - 1 - y` of a buffer of rows `width` long.
fn swap_rows(data: &mut [u8], width: usize) {
    let rows = data.len() / width;
    for y in 0..rows / 2 {
        let (top, bottom) = data.split_at_mut((rows - 1 - y) * width);
        top[y * width..(y + 1) * width].swap_with_slice(&mut bottom[..width]);
    }
}

/// Whether a pixel is the black padding of a crop cut beyond the image ("no data").
fn is_padding(pixel: &[u8]) -> bool {
    pixel.iter().all(|&c| c <= NO_DATA_MAX)
}

/// `hed_from_rgb`: the inverse of [`RGB_FROM_HED`], by cofactors in `f64`.
fn hed_from_rgb() -> [[f64; 3]; 3] {
    let m = RGB_FROM_HED;
    let cofactor = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let det: f64 = (0..3).map(|c| m[0][c] * cofactor(0, c)).sum();
    // The inverse is the transposed cofactor matrix over the determinant.
    let mut inverse = [[0.0; 3]; 3];
    for (r, row) in inverse.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            *value = cofactor(c, r) / det;
        }
    }
    inverse
}

/// The optical density of each byte value, `ln(max(c / 255, 1e-6)) / ln(1e-6)`.
fn density_table() -> [f64; 256] {
    let log_min = MIN_LIGHT.ln();
    std::array::from_fn(|c| (c as f64 / 255.0).max(MIN_LIGHT).ln() / log_min)
}

/// Ruifrok and Johnston's colour deconvolution of interleaved 8-bit RGB: the haematoxylin,
/// eosin and DAB concentrations of each pixel, as scikit-image's `rgb2hed` without its clipping
/// at zero.
///
/// # Errors
///
/// [`Error::SizeMismatch`] when `rgb` is not a whole number of pixels.
pub fn rgb_to_hed(rgb: &[u8]) -> Result<Vec<[f64; 3]>> {
    check_pixels(rgb)?;
    let density = density_table();
    let unmix = hed_from_rgb();
    Ok(rgb
        .chunks_exact(3)
        .map(|p| {
            let od = [0, 1, 2].map(|i| density[usize::from(p[i])]);
            [0, 1, 2].map(|j| (0..3).map(|i| od[i] * unmix[i][j]).sum())
        })
        .collect())
}

/// Mixes haematoxylin, eosin and DAB concentrations back to interleaved 8-bit RGB, as
/// scikit-image's `hed2rgb`, rounded to the nearest byte.
pub fn hed_to_rgb(hed: &[[f64; 3]]) -> Vec<u8> {
    hed.iter().flat_map(|&c| mix(c)).collect()
}

/// The RGB bytes of one pixel's stain concentrations.
fn mix(c: [f64; 3]) -> [u8; 3] {
    let log_min = MIN_LIGHT.ln();
    [0, 1, 2].map(|i| {
        let od: f64 = (0..3).map(|j| c[j] * RGB_FROM_HED[j][i]).sum();
        to_byte((od * log_min).exp() * 255.0)
    })
}

/// A value on the 0..255 scale as the nearest byte, saturating.
fn to_byte(value: f64) -> u8 {
    // NaN cannot arise from finite settings; it would map to 0.
    value.round().clamp(0.0, 255.0) as u8
}

fn check_pixels(rgb: &[u8]) -> Result<()> {
    if !rgb.len().is_multiple_of(3) {
        return Err(Error::SizeMismatch {
            width: (rgb.len() / 3) as u32,
            height: 1,
            expected: (rgb.len() / 3 * 3) as u64,
            actual: rgb.len() as u64,
        });
    }
    Ok(())
}

/// Tellez's stain jitter on interleaved 8-bit RGB: each concentration `c` of stain `j`
/// (haematoxylin, eosin, DAB) becomes `c * scale[j] + shift[j]`. Padding pixels are kept.
///
/// # Errors
///
/// [`Error::SizeMismatch`] when `rgb` is not a whole number of pixels;
/// [`Error::NotFinite`] for a scale or shift that is not a finite number.
pub fn perturb_stains(rgb: &mut [u8], scale: [f64; 3], shift: [f64; 3]) -> Result<()> {
    check_pixels(rgb)?;
    if scale.iter().chain(&shift).any(|v| !v.is_finite()) {
        return Err(Error::NotFinite("stain scale or shift"));
    }
    let density = density_table();
    let unmix = hed_from_rgb();
    for p in rgb.chunks_exact_mut(3) {
        if is_padding(p) {
            continue;
        }
        let od = [0, 1, 2].map(|i| density[usize::from(p[i])]);
        let c = [0, 1, 2].map(|j| {
            let c: f64 = (0..3).map(|i| od[i] * unmix[i][j]).sum();
            c * scale[j] + shift[j]
        });
        p.copy_from_slice(&mix(c));
    }
    Ok(())
}

/// Multiplies every value by `factor` (torchvision's `adjust_brightness`, rounded and
/// saturated). Padding pixels are kept.
///
/// # Errors
///
/// [`Error::SizeMismatch`] when `rgb` is not a whole number of pixels;
/// [`Error::NotFinite`] for a factor that is not a finite number.
pub fn adjust_brightness(rgb: &mut [u8], factor: f64) -> Result<()> {
    check_pixels(rgb)?;
    if !factor.is_finite() {
        return Err(Error::NotFinite("brightness factor"));
    }
    for p in rgb.chunks_exact_mut(3) {
        if !is_padding(p) {
            for c in p {
                *c = to_byte(f64::from(*c) * factor);
            }
        }
    }
    Ok(())
}

/// Moves every value away from the mean grey by `factor`: `mean + (value - mean) * factor`,
/// with the mean of torchvision's grey `0.2989 R + 0.587 G + 0.114 B` over the non-padding
/// pixels (torchvision's `adjust_contrast`, rounded and saturated). Padding pixels are kept.
///
/// # Errors
///
/// [`Error::SizeMismatch`] when `rgb` is not a whole number of pixels;
/// [`Error::NotFinite`] for a factor that is not a finite number.
pub fn adjust_contrast(rgb: &mut [u8], factor: f64) -> Result<()> {
    check_pixels(rgb)?;
    if !factor.is_finite() {
        return Err(Error::NotFinite("contrast factor"));
    }
    let (sum, count) =
        rgb.chunks_exact(3)
            .filter(|p| !is_padding(p))
            .fold((0.0, 0usize), |(sum, count), p| {
                let grey =
                    0.2989 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
                (sum + grey, count + 1)
            });
    if count == 0 {
        return Ok(());
    }
    let mean = sum / count as f64;
    for p in rgb.chunks_exact_mut(3) {
        if !is_padding(p) {
            for c in p {
                *c = to_byte(mean + (f64::from(*c) - mean) * factor);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    /// The 16 real H&E crops (64 x 64, RGB and mask) of the classifier's golden fixture, read
    /// from its safetensors file with a minimal parser (the format: an 8-byte little-endian
    /// header length, a JSON header, the data).
    fn real_crops() -> Vec<Crop> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/classifier/outputs.safetensors"
        );
        let bytes = std::fs::read(path).expect("the classifier fixture");
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let data = &bytes[8 + n..];
        let tensor = |key: &str| {
            let info = &header[key];
            assert_eq!(info["dtype"], "U8", "{key}");
            let offsets = info["data_offsets"].as_array().unwrap();
            let (a, b) = (offsets[0].as_u64().unwrap(), offsets[1].as_u64().unwrap());
            data[a as usize..b as usize].to_vec()
        };
        let (rgb, mask) = (tensor("rgb"), tensor("mask"));
        let plane = 64 * 64;
        assert_eq!(rgb.len(), 16 * 3 * plane);
        (0..16)
            .map(|i| Crop {
                rgb: rgb[i * 3 * plane..(i + 1) * 3 * plane].to_vec(),
                mask: mask[i * plane..(i + 1) * plane].to_vec(),
            })
            .collect()
    }

    /// A 5 x 5 crop whose pixels and mask values all differ, to see where each one goes.
    fn numbered_crop() -> Crop {
        Crop {
            rgb: (0..75).map(|i| i as u8 + 20).collect(),
            mask: (0..25).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn flips_are_involutions_and_move_rgb_with_the_mask() {
        for crop in real_crops().into_iter().take(4).chain([numbered_crop()]) {
            let side = crop_side(&crop).unwrap() as usize;
            for flip in [flip_horizontal, flip_vertical] {
                let mut once = crop.clone();
                flip(&mut once).unwrap();
                assert_ne!(once, crop, "a real crop is not symmetric");
                let mut twice = once.clone();
                flip(&mut twice).unwrap();
                assert_eq!(twice, crop);
            }
            // Pixel (x, y) goes to (side - 1 - x, y) and (x, side - 1 - y), with its mask.
            let mut h = crop.clone();
            flip_horizontal(&mut h).unwrap();
            let mut v = crop.clone();
            flip_vertical(&mut v).unwrap();
            for y in 0..side {
                for x in 0..side {
                    let from = y * side + x;
                    for (to, flipped) in [
                        (y * side + side - 1 - x, &h),
                        ((side - 1 - y) * side + x, &v),
                    ] {
                        assert_eq!(flipped.mask[to], crop.mask[from]);
                        assert_eq!(
                            flipped.rgb[3 * to..3 * to + 3],
                            crop.rgb[3 * from..3 * from + 3]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_identity_keeps_every_byte() {
        for crop in real_crops() {
            assert_eq!(Augmentation::IDENTITY.apply(&crop).unwrap(), crop);
        }
        // Zero strengths draw the identity.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(
                AugmentSettings::none().draw(&mut rng),
                Augmentation::IDENTITY
            );
        }
    }

    #[test]
    fn deconvolution_round_trips_every_colour() {
        // Every 3rd level of every channel (86^3 colours), and the real crops' pixels.
        let levels: Vec<u8> = (0..=255).step_by(3).collect();
        let mut colours = Vec::new();
        for &r in &levels {
            for &g in &levels {
                for &b in &levels {
                    colours.extend([r, g, b]);
                }
            }
        }
        colours.extend(real_crops().into_iter().flat_map(|c| c.rgb));
        let back = hed_to_rgb(&rgb_to_hed(&colours).unwrap());
        let worst = colours
            .iter()
            .zip(&back)
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert!(worst <= 1, "largest round-trip error {worst} grey levels");
    }

    #[test]
    fn haematoxylin_matches_the_seed_channel() {
        // The matrix here and in `seeds` must stay the same one.
        for crop in real_crops().into_iter().take(4) {
            let hed = rgb_to_hed(&crop.rgb).unwrap();
            let seeds = crate::seeds::haematoxylin(&crop.rgb, 64, 64).unwrap();
            for ((c, &h), p) in hed.iter().zip(seeds.data()).zip(crop.rgb.chunks_exact(3)) {
                let expected = if is_padding(p) { 0.0 } else { c[0].max(0.0) };
                assert!((expected - h).abs() < 1e-12, "{c:?} vs {h}");
            }
        }
    }

    #[test]
    fn the_stain_jitter_moves_haematoxylin_as_asked() {
        // A haematoxylin scale of 1.3, the other stains untouched: on the clearly stained
        // pixels of real crops, H grows by about 30 % and E stays, up to the rounding to bytes.
        let (mut h_ratio, mut e_change, mut n) = (0.0, 0.0, 0usize);
        for crop in real_crops() {
            let mut rgb = crop.rgb.clone();
            perturb_stains(&mut rgb, [1.3, 1.0, 1.0], [0.0; 3]).unwrap();
            let (before, after) = (rgb_to_hed(&crop.rgb).unwrap(), rgb_to_hed(&rgb).unwrap());
            for ((b, a), p) in before.iter().zip(&after).zip(crop.rgb.chunks_exact(3)) {
                if b[0] > 0.05 && !is_padding(p) {
                    h_ratio += a[0] / b[0];
                    e_change += (a[1] - b[1]).abs();
                    n += 1;
                }
            }
        }
        assert!(n > 1000, "{n} stained pixels");
        let (h_ratio, e_change) = (h_ratio / n as f64, e_change / n as f64);
        assert!((h_ratio - 1.3).abs() < 0.02, "H scaled by {h_ratio}");
        assert!(e_change < 0.005, "E moved by {e_change}");

        // A shift adds to every pixel's concentration.
        let crop = &real_crops()[1];
        let mut rgb = crop.rgb.clone();
        perturb_stains(&mut rgb, [1.0; 3], [0.0, 0.04, 0.0]).unwrap();
        let (before, after) = (rgb_to_hed(&crop.rgb).unwrap(), rgb_to_hed(&rgb).unwrap());
        let shift: Vec<f64> = before
            .iter()
            .zip(&after)
            .zip(crop.rgb.chunks_exact(3))
            .filter(|(_, p)| !is_padding(p))
            .map(|((b, a), _)| a[1] - b[1])
            .collect();
        let mean = shift.iter().sum::<f64>() / shift.len() as f64;
        assert!((mean - 0.04).abs() < 0.004, "E shifted by {mean}");
    }

    #[test]
    fn brightness_and_contrast_follow_torchvision() {
        let mut rgb = vec![100, 50, 200, 0, 0, 0, 20, 40, 60];
        adjust_brightness(&mut rgb, 1.1).unwrap();
        assert_eq!(rgb, [110, 55, 220, 0, 0, 0, 22, 44, 66]);
        adjust_brightness(&mut rgb, 3.0).unwrap();
        assert_eq!(rgb, [255, 165, 255, 0, 0, 0, 66, 132, 198]);

        // Mean grey of the two tissue pixels, the black padding left out.
        let mut rgb = vec![100, 100, 100, 0, 0, 0, 200, 200, 200];
        adjust_contrast(&mut rgb, 0.5).unwrap();
        let mean = 0.9999 * 150.0;
        let expected = |v: f64| (mean + (v - mean) * 0.5).round() as u8;
        assert_eq!(
            rgb,
            [
                expected(100.0),
                expected(100.0),
                expected(100.0),
                0,
                0,
                0,
                expected(200.0),
                expected(200.0),
                expected(200.0)
            ]
        );
        assert!(adjust_contrast(&mut rgb, f64::NAN).is_err());
        assert!(adjust_brightness(&mut [0, 0], 1.0).is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_crops() {
        let crops = real_crops();
        let settings = AugmentSettings::default();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            crops
                .iter()
                .map(|c| settings.apply(c, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The augmentation changes the crops, and keeps each mask a flip of the original.
        assert!(a.iter().zip(&crops).all(|(x, y)| x.rgb != y.rgb));
        for (augmented, original) in a.iter().zip(&crops) {
            let mut sum = [augmented.mask.iter(), original.mask.iter()]
                .map(|m| m.map(|&v| u32::from(v)).sum::<u32>());
            sum.sort();
            assert_eq!(sum[0], sum[1]);
        }
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let settings = AugmentSettings::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut h, mut v) = (0, 0);
        for _ in 0..1000 {
            let a = settings.draw(&mut rng);
            h += usize::from(a.flip_horizontal);
            v += usize::from(a.flip_vertical);
            assert!(a.stain_scale.iter().all(|s| (0.95..1.05).contains(s)));
            assert!(a.stain_shift.iter().all(|s| (-0.05..0.05).contains(s)));
            assert!((0.8..1.2).contains(&a.brightness) && (0.8..1.2).contains(&a.contrast));
        }
        assert!(
            (400..600).contains(&h) && (400..600).contains(&v),
            "{h} {v}"
        );
    }

    #[test]
    fn bad_settings_and_crops_are_refused() {
        for bad in [-0.1, 1.5, f64::NAN] {
            let settings = AugmentSettings {
                contrast: bad,
                ..AugmentSettings::default()
            };
            assert!(matches!(
                settings.validate(),
                Err(Error::InvalidSetting {
                    name: "contrast",
                    ..
                })
            ));
        }
        AugmentSettings::default().validate().unwrap();
        let crop = Crop {
            rgb: vec![0; 3 * 10],
            mask: vec![0; 10],
        };
        assert!(matches!(
            Augmentation::IDENTITY.apply(&crop),
            Err(Error::SizeMismatch { .. })
        ));
        let empty = Crop {
            rgb: Vec::new(),
            mask: Vec::new(),
        };
        assert!(matches!(
            flip_vertical(&mut empty.clone()),
            Err(Error::EmptyGrid { .. })
        ));
    }
}
