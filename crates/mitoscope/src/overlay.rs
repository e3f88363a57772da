//! Mask outlines drawn over an image, for a quick look at what was found.

use mitoscope_core::BoxRle;

/// Colour of the outlines, `(r, g, b)`: a saturated yellow that stands out on H&E.
pub const OUTLINE: [u8; 3] = [255, 230, 0];

/// Draws the outline of each mask (its pixels with a 4-neighbour outside the mask) onto `rgb`,
/// an interleaved `width x height` image. Masks that do not fit the image are skipped.
pub fn draw_outlines(rgb: &mut [u8], width: u32, height: u32, masks: &[&BoxRle], colour: [u8; 3]) {
    for mask in masks {
        let b = mask.bbox;
        if b.x1() >= width || b.y1() >= height {
            continue;
        }
        let (bw, bh) = (b.width_px() as usize, b.height_px() as usize);
        let Some(inside) = box_pixels(mask, bw * bh) else {
            continue;
        };
        let at = |x: i64, y: i64| {
            x >= 0
                && y >= 0
                && (x as usize) < bw
                && (y as usize) < bh
                && inside[y as usize * bw + x as usize]
        };
        for y in 0..bh as i64 {
            for x in 0..bw as i64 {
                if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                    let px = (b.y0() as usize + y as usize) * width as usize
                        + b.x0() as usize
                        + x as usize;
                    rgb[3 * px..3 * px + 3].copy_from_slice(&colour);
                }
            }
        }
    }
}

/// The mask's pixels inside its box, row-major; `None` when the runs do not cover the box.
fn box_pixels(mask: &BoxRle, pixels: usize) -> Option<Vec<bool>> {
    let mut inside = Vec::with_capacity(pixels);
    for (k, &run) in mask.counts.iter().enumerate() {
        inside.extend(std::iter::repeat_n(k % 2 == 1, run as usize));
    }
    (inside.len() == pixels).then_some(inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mitoscope_core::{Grid, rle};

    #[test]
    fn outlines_leave_the_inside_alone() {
        let mut mask = Grid::filled(8, 8, false).unwrap();
        for y in 2..7 {
            for x in 1..6 {
                mask.data_mut()[y * 8 + x] = true;
            }
        }
        let rle = rle::encode(&mask).unwrap();
        let mut rgb = vec![0u8; 8 * 8 * 3];
        draw_outlines(&mut rgb, 8, 8, &[&rle], [9, 9, 9]);
        let drawn = |x: usize, y: usize| rgb[3 * (y * 8 + x)] == 9;
        assert!(drawn(1, 2) && drawn(5, 6) && drawn(3, 2) && drawn(1, 4));
        assert!(!drawn(3, 4) && !drawn(0, 0) && !drawn(6, 4));
        assert_eq!(rgb.iter().filter(|&&v| v == 9).count(), 3 * 16);
        // A mask beyond the image is skipped, not drawn out of bounds.
        let mut small = vec![0u8; 4 * 4 * 3];
        draw_outlines(&mut small, 4, 4, &[&rle], [9, 9, 9]);
        assert!(small.iter().all(|&v| v == 0));
    }
}
