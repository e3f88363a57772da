//! The overlay PNG: the detections drawn over the image (their mask outlines) or over a
//! slide's thumbnail (a ring at each), coloured by probability, with the hotspot circle and the
//! analysed region.

use anyhow::{Context, Result};
use mitoscope_core::BoxRle;

use crate::overlay::draw_outlines;

/// Colour of a detection at the threshold: yellow.
const LOW: [u8; 3] = [255, 235, 0];

/// Colour of a detection of probability 1: red.
const HIGH: [u8; 3] = [255, 0, 0];

/// Colour of the hotspot circle: cyan, apart from the detections' yellow to red.
pub const HOTSPOT: [u8; 3] = [0, 200, 255];

/// Colour of the outline of an analysed region smaller than the image: blue.
pub const REGION: [u8; 3] = [40, 80, 255];

/// Radius of the ring that marks a detection on a slide's thumbnail, pixels.
const RING_PX: f64 = 3.0;

/// The colour of a detection of `probability` above `threshold`: yellow at the threshold to red
/// at 1.
pub fn colour(probability: f64, threshold: f64) -> [u8; 3] {
    let t = if threshold < 1.0 {
        ((probability - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    std::array::from_fn(|c| {
        (f64::from(LOW[c]) + t * (f64::from(HIGH[c]) - f64::from(LOW[c]))).round() as u8
    })
}

/// An RGB picture being drawn on.
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// Sets pixel `(x, y)` when it lies in the picture.
    fn set(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if x >= 0 && y >= 0 && x < i64::from(self.width) && y < i64::from(self.height) {
            let at = 3 * (y as usize * self.width as usize + x as usize);
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// The outline of each mask (full-resolution pixels, the canvas at full resolution).
    pub fn outlines(&mut self, masks: &[(&BoxRle, [u8; 3])]) {
        for (mask, colour) in masks {
            draw_outlines(&mut self.rgb, self.width, self.height, &[mask], *colour);
        }
    }

    /// A circle outline of `radius` around `(cx, cy)`, `thickness` pixels wide inwards.
    pub fn circle(&mut self, [cx, cy]: [f64; 2], radius: f64, thickness: f64, colour: [u8; 3]) {
        if !(radius.is_finite() && cx.is_finite() && cy.is_finite()) || radius <= 0.0 {
            return;
        }
        let inner = (radius - thickness).max(0.0);
        // Only the rows and columns the circle can touch, clipped to the picture.
        let lo = |c: f64| (c - radius).floor().max(0.0) as i64;
        let hi = |c: f64, limit: u32| (c + radius).ceil().min(f64::from(limit) - 1.0) as i64;
        for y in lo(cy)..=hi(cy, self.height) {
            for x in lo(cx)..=hi(cx, self.width) {
                let d = (x as f64 + 0.5 - cx).hypot(y as f64 + 0.5 - cy);
                if d <= radius && d >= inner {
                    self.set(x, y, colour);
                }
            }
        }
    }

    /// A rectangle outline `[x, y, width, height]`, `thickness` pixels wide inwards.
    pub fn rectangle(&mut self, [x, y, w, h]: [f64; 4], thickness: i64, colour: [u8; 3]) {
        let (x0, y0) = (x.floor() as i64, y.floor() as i64);
        let (x1, y1) = ((x + w).ceil() as i64 - 1, (y + h).ceil() as i64 - 1);
        for t in 0..thickness {
            for px in x0..=x1 {
                self.set(px, y0 + t, colour);
                self.set(px, y1 - t, colour);
            }
            for py in y0..=y1 {
                self.set(x0 + t, py, colour);
                self.set(x1 - t, py, colour);
            }
        }
    }

    /// A ring marking a detection at `(cx, cy)` on a thumbnail.
    pub fn ring(&mut self, centre: [f64; 2], colour: [u8; 3]) {
        self.circle(centre, RING_PX, 1.5, colour);
    }

    /// The picture as PNG bytes.
    ///
    /// # Errors
    ///
    /// The buffer does not match the size, or the encoder fails.
    pub fn png(self) -> Result<Vec<u8>> {
        let buffer = image::RgbImage::from_raw(self.width, self.height, self.rgb)
            .context("overlay buffer size")?;
        let mut png = std::io::Cursor::new(Vec::new());
        buffer
            .write_to(&mut png, image::ImageFormat::Png)
            .context("cannot encode the overlay")?;
        Ok(png.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_run_from_yellow_at_the_threshold_to_red_at_one() {
        assert_eq!(colour(0.5, 0.5), LOW);
        assert_eq!(colour(1.0, 0.5), HIGH);
        assert_eq!(colour(0.75, 0.5), [255, 118, 0]);
        assert_eq!(colour(0.2, 0.5), LOW);
        assert_eq!(colour(0.9, 1.0), HIGH);
    }

    #[test]
    fn shapes_stay_inside_the_picture() {
        let mut canvas = Canvas {
            width: 20,
            height: 10,
            rgb: vec![0; 20 * 10 * 3],
        };
        canvas.circle([10.0, 5.0], 4.0, 1.0, [1, 2, 3]);
        let lit = |c: &Canvas| c.rgb.chunks(3).filter(|p| p == &[1, 2, 3]).count();
        let ring = lit(&canvas);
        assert!(ring > 10, "{ring}");
        // The centre stays untouched; a circle mostly outside draws only its part inside.
        assert_eq!(&canvas.rgb[3 * (5 * 20 + 10)..][..3], &[0, 0, 0]);
        canvas.circle([-100.0, -100.0], 50.0, 2.0, [1, 2, 3]);
        canvas.circle([0.0, 0.0], 1e9, 2.0, [1, 2, 3]);
        canvas.rectangle([-5.0, -5.0, 100.0, 100.0], 2, [4, 5, 6]);
        canvas.rectangle([2.0, 2.0, 4.0, 3.0], 1, [4, 5, 6]);
        let png = canvas.png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
