//! Turning decoded 8-bit samples (grey, RGB, YCbCr, with or without alpha) into RGB.
//!
//! Transparent pixels are composited over white, the colour of an empty glass slide, so that
//! tissue detection reads them as background.

/// The colour model of the first samples of a pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Colour {
    /// One sample, replicated to R, G and B.
    Grey,
    /// Red, green, blue.
    Rgb,
    /// Full-range BT.601 luma and chroma (JPEG and TIFF default `ReferenceBlackWhite`).
    YCbCr,
}

impl Colour {
    fn samples(self) -> usize {
        match self {
            Self::Grey => 1,
            Self::Rgb | Self::YCbCr => 3,
        }
    }
}

/// Whether and how the sample after the colour samples holds opacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpha {
    /// No alpha sample (further samples, if any, are ignored).
    None,
    /// Unassociated alpha: the colour samples are not premultiplied (PNG, TIFF ExtraSamples 2).
    Straight,
    /// Associated alpha: the colour samples are premultiplied (TIFF ExtraSamples 1).
    Premultiplied,
}

/// How the samples of one decoded pixel are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Colour model of the leading samples.
    pub(crate) colour: Colour,
    /// Meaning of the sample after them.
    pub(crate) alpha: Alpha,
    /// Samples per pixel in the decoded buffer, at least the colour and alpha samples.
    pub(crate) channels: usize,
}

impl Layout {
    /// A layout whose channel count is exactly its colour and alpha samples.
    pub(crate) fn packed(colour: Colour, alpha: Alpha) -> Self {
        let alpha_samples = usize::from(alpha != Alpha::None);
        Self {
            colour,
            alpha,
            channels: colour.samples() + alpha_samples,
        }
    }

    /// The RGB value of one pixel's samples (`channels` of them; missing ones read as 0).
    fn to_rgb(self, pixel: &[u8]) -> [u8; 3] {
        let sample = |index: usize| pixel.get(index).copied().unwrap_or(0);
        let rgb = match self.colour {
            Colour::Grey => [sample(0); 3],
            Colour::Rgb => [sample(0), sample(1), sample(2)],
            Colour::YCbCr => ycbcr_to_rgb(sample(0), sample(1), sample(2)),
        };
        let alpha = sample(self.colour.samples());
        match self.alpha {
            Alpha::None => rgb,
            Alpha::Straight => rgb.map(|c| over_white_straight(c, alpha)),
            Alpha::Premultiplied => rgb.map(|c| c.saturating_add(255 - alpha)),
        }
    }

    /// Converts one row of `width` pixels from `src` into RGB in `dst` (3 bytes per pixel).
    pub(crate) fn convert_row(self, src: &[u8], dst: &mut [u8]) {
        for (pixel, out) in src.chunks_exact(self.channels).zip(dst.chunks_exact_mut(3)) {
            out.copy_from_slice(&self.to_rgb(pixel));
        }
    }

    /// Converts a whole decoded buffer of `pixels` pixels into RGB, reusing its memory.
    pub(crate) fn into_rgb(self, mut buffer: Vec<u8>, pixels: usize) -> Vec<u8> {
        let channels = self.channels;
        let rgb_len = pixels * 3;
        if self.colour == Colour::Rgb && self.alpha == Alpha::None && channels == 3 {
            buffer.truncate(rgb_len);
            return buffer;
        }
        if channels >= 3 {
            // Shrinking: each pixel is written at or before where it was read.
            for i in 0..pixels {
                let rgb = buffer
                    .get(i * channels..(i + 1) * channels)
                    .map(|pixel| self.to_rgb(pixel));
                if let (Some(rgb), Some(out)) = (rgb, buffer.get_mut(i * 3..i * 3 + 3)) {
                    out.copy_from_slice(&rgb);
                }
            }
            buffer.truncate(rgb_len);
        } else {
            // Growing: go backwards so that no pixel is overwritten before it is read.
            buffer.resize(rgb_len.max(buffer.len()), 0);
            for i in (0..pixels).rev() {
                let rgb = buffer
                    .get(i * channels..(i + 1) * channels)
                    .map(|pixel| self.to_rgb(pixel));
                if let (Some(rgb), Some(out)) = (rgb, buffer.get_mut(i * 3..i * 3 + 3)) {
                    out.copy_from_slice(&rgb);
                }
            }
            buffer.truncate(rgb_len);
        }
        buffer
    }
}

/// Why samples of `bits` bits are refused, and what to do instead.
pub(crate) fn depth_refusal(bits: u8) -> String {
    format!("{bits}-bit images are not supported: convert to 8 bits per channel")
}

/// Why floating-point samples are refused, and what to do instead.
pub(crate) const FLOAT_REFUSAL: &str =
    "floating-point images are not supported: convert to 8-bit RGB";

/// `colour * alpha + 255 * (1 - alpha)`, rounded, for 8-bit alpha.
fn over_white_straight(colour: u8, alpha: u8) -> u8 {
    let (c, a) = (u32::from(colour), u32::from(alpha));
    let blended = (c * a + 255 * (255 - a) + 127) / 255;
    u8::try_from(blended).unwrap_or(u8::MAX)
}

/// Full-range BT.601 (JFIF) YCbCr to RGB.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = f32::from(y);
    let cb = f32::from(cb) - 128.0;
    let cr = f32::from(cr) - 128.0;
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        to_u8(y + 1.402 * cr),
        to_u8(y - 0.344_136 * cb - 0.714_136 * cr),
        to_u8(y + 1.772 * cb),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_is_replicated() {
        let layout = Layout::packed(Colour::Grey, Alpha::None);
        assert_eq!(
            layout.into_rgb(vec![0, 128, 255], 3),
            [0, 0, 0, 128, 128, 128, 255, 255, 255]
        );
    }

    #[test]
    fn alpha_is_composited_over_white() {
        let straight = Layout::packed(Colour::Rgb, Alpha::Straight);
        // Opaque, fully transparent, half transparent black.
        let rgba = vec![10, 20, 30, 255, 10, 20, 30, 0, 0, 0, 0, 128];
        assert_eq!(
            straight.into_rgb(rgba, 3),
            [10, 20, 30, 255, 255, 255, 127, 127, 127]
        );
        let grey_alpha = Layout::packed(Colour::Grey, Alpha::Straight);
        assert_eq!(
            grey_alpha.into_rgb(vec![0, 255, 0, 0], 2),
            [0, 0, 0, 255, 255, 255]
        );
        // Premultiplied: half transparent black is (0, 128) and gives 127.
        let premultiplied = Layout::packed(Colour::Rgb, Alpha::Premultiplied);
        assert_eq!(
            premultiplied.into_rgb(vec![0, 0, 0, 128], 1),
            [127, 127, 127]
        );
    }

    #[test]
    fn extra_samples_are_ignored() {
        let layout = Layout {
            colour: Colour::Rgb,
            alpha: Alpha::None,
            channels: 4,
        };
        let mut out = [0; 6];
        layout.convert_row(&[1, 2, 3, 99, 4, 5, 6, 99], &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn ycbcr_converts_like_jfif() {
        assert_eq!(ycbcr_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycbcr_to_rgb(255, 128, 128), [255, 255, 255]);
        // Pure red in JFIF is (76, 85, 255).
        let [r, g, b] = ycbcr_to_rgb(76, 85, 255);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }
}
