//! The classifier's input: a square RGB crop and the matching binary mask crop around an object.
//!
//! Mirrors OMG-Net's crops (step 5 of the method): `MaskGenerator.forward` in
//! `Models/SAM_Masking.py` cuts the 64 x 64 mask crop out of the tile's mask padded by 32 zero
//! pixels, and `DataGeneratorInf` in `Dataloader/SAM.py` reads the 64 x 64 RGB crop at the same
//! place. Training, the command-line program, the server and the browser all cut crops here, so
//! the classifier sees the same pixels wherever it runs.
//!
//! The crop's centre pixel is the box centre rounded down, `cx = (x0 + x1) / 2` and
//! `cy = (y0 + y1) / 2` in integer division on the box's inclusive pixel indices (the reference
//! assigns `(x0 + x1) / 2` to an integer tensor, which truncates). The crop covers columns
//! `[cx - side / 2, cx - side / 2 + side)` and the rows likewise: `[cx - 32, cx + 32)` for the
//! published side of 64. For a box of odd width the centre is the middle pixel; for an even
//! width it is the left one of the two middle pixels (the top one for an even height). Put
//! another way: the pixel that holds the corner-origin box centre of
//! [`crate::export::box_centre`], `(x0 + x1 + 1) / 2`, or the pixel before it when that centre
//! falls on a pixel edge.
//!
//! Where the crop leaves the image, its RGB and mask are 0. Mask pixels outside the crop are
//! dropped.
//!
//! NOTE: OMG-Net's training loader (`DataGenerator` in `Dataloader/SAM.py`) moves the centre
//! inwards so that the crop stays inside its 256 x 256 training patch, where inference pads
//! with zeros. We always pad, in training too, so that the classifier learns the crops it
//! will see.

use crate::mask::{BBox, check_rgb};
use crate::rle::BoxRle;
use crate::{Error, Result};

/// Side of the classifier's crops in pixels (OMG-Net's `Input_Size`, 64 x 64).
pub const CROP: u32 = 64;

/// The pixel size the method works at, um/px: 40x scans, where a [`CROP`] of 64 px is 16 um
/// wide (the classifier's training data are at 0.23 to 0.25 um/px).
pub const METHOD_MPP: f64 = 0.25;

/// A warning for the user when `mpp` is far enough from [`METHOD_MPP`] (beyond 0.8 to 1.25
/// times it) that the classifier sees figures at another size than it learnt them. The crop
/// stays [`CROP`] pixels whatever the pixel size, as in OMG-Net.
pub fn scale_warning(mpp: f64) -> Option<String> {
    let scale = mpp / METHOD_MPP;
    (!(0.8..=1.25).contains(&scale)).then(|| {
        format!(
            "{mpp} um/px is far from the {METHOD_MPP} um/px (40x) the classifier works at: each \
             {CROP} px crop covers {scale:.1} times the width it learnt from, so the counts are less \
             reliable; analyse a 40x scan where there is one"
        )
    })
}

/// Largest side [`crop_with_side`] accepts: far above any classifier input, small enough that a
/// crop's buffers stay in the tens of megabytes.
const MAX_SIDE: u32 = 4096;

/// An object's crop: the image around it and its mask, both `side x side`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crop {
    /// RGB, three bytes a pixel, row-major (`rgb[(y * side + x) * 3 + c]`); 0 outside the image.
    pub rgb: Vec<u8>,
    /// The object's mask, one byte a pixel, row-major: 1 in the mask, 0 elsewhere.
    pub mask: Vec<u8>,
}

/// The centre pixel of a crop around `bbox`: `[(x0 + x1) / 2, (y0 + y1) / 2]`, rounded down.
pub fn crop_centre(bbox: &BBox) -> [u32; 2] {
    // The sum of two u32 fits a u64, and its half fits a u32 again.
    let half = |a: u32, b: u32| ((u64::from(a) + u64::from(b)) / 2) as u32;
    [half(bbox.x0(), bbox.x1()), half(bbox.y0(), bbox.y1())]
}

/// Cuts the [`CROP`] x [`CROP`] crop of the object `mask` out of an RGB image.
///
/// `rgb` holds `width * height` pixels, three bytes each, row-major; the mask's box is in the
/// image's pixel coordinates. See the module documentation for where the crop lies.
///
/// # Errors
///
/// As [`crop_with_side`].
pub fn crop(rgb: &[u8], width: u32, height: u32, mask: &BoxRle) -> Result<Crop> {
    crop_with_side(rgb, width, height, mask, CROP)
}

/// Cuts a `side x side` crop of the object `mask` out of an RGB image, as [`crop`].
///
/// The crop covers `[cx - side / 2, cx - side / 2 + side)` on each axis, `cx` from
/// [`crop_centre`].
///
/// # Errors
///
/// [`Error::EmptyGrid`] or [`Error::TooLarge`] for an unusable image size,
/// [`Error::SizeMismatch`] when `rgb` does not hold `width * height * 3` bytes,
/// [`Error::BoxOutOfBounds`] when the mask's box does not lie in the image,
/// [`Error::InvalidRle`] when the runs do not add up to the box's pixels,
/// [`Error::InvalidSetting`] for a side of 0 and [`Error::TooLarge`] above 4096.
pub fn crop_with_side(
    rgb: &[u8],
    width: u32,
    height: u32,
    mask: &BoxRle,
    side: u32,
) -> Result<Crop> {
    if side == 0 {
        return Err(Error::InvalidSetting {
            name: "crop side",
            reason: "must be at least 1",
        });
    }
    if side > MAX_SIDE {
        return Err(Error::TooLarge("a crop side is at most 4096 pixels"));
    }
    check_rgb(rgb, width, height)?;
    let b = mask.bbox;
    if b.x1() >= width || b.y1() >= height {
        return Err(Error::BoxOutOfBounds { width, height });
    }
    let box_width = b.width_px();
    let total: u64 = mask.counts.iter().map(|&c| u64::from(c)).sum();
    if total != box_width * b.height_px() {
        return Err(Error::InvalidRle(
            "the counts do not add up to the box's pixels",
        ));
    }

    let [cx, cy] = crop_centre(&b);
    let window = Window {
        x: i64::from(cx) - i64::from(side / 2),
        y: i64::from(cy) - i64::from(side / 2),
        side: i64::from(side),
    };
    let rgb = window.cut_rgb(rgb, width, height);

    // Each run of set pixels, split into its rows; only rows and columns in the window count.
    // This touches at most `side` rows per run, however large the box.
    let mut crop_mask = vec![0u8; rgb.len() / 3];
    let (x0, y0) = (i64::from(b.x0()), i64::from(b.y0()));
    let mut offset = 0u64;
    for (k, &run) in mask.counts.iter().enumerate() {
        let (start, end) = (offset, offset + u64::from(run));
        offset = end;
        if k % 2 == 0 || run == 0 {
            continue;
        }
        let (first_row, last_row) = (start / box_width, (end - 1) / box_width);
        // Box rows whose image row lies in the window: y0 + r in [window.y, window.y + side).
        let lowest = (window.y - y0).max(first_row as i64);
        let highest = (window.y + window.side - 1 - y0).min(last_row as i64);
        for r in lowest..=highest {
            let row = r as u64;
            let from = if row == first_row {
                start % box_width
            } else {
                0
            };
            let to = if row == last_row {
                (end - 1) % box_width + 1
            } else {
                box_width
            };
            window.fill_row(&mut crop_mask, y0 + r, x0 + from as i64, x0 + to as i64);
        }
    }
    Ok(Crop {
        rgb,
        mask: crop_mask,
    })
}

/// The square a crop covers, in image pixels: columns `[x, x + side)`, rows `[y, y + side)`.
struct Window {
    x: i64,
    y: i64,
    side: i64,
}

impl Window {
    /// The window's RGB, zero outside the image.
    fn cut_rgb(&self, rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
        let side = self.side as usize;
        let mut out = vec![0u8; side * side * 3];
        let (width, height) = (i64::from(width), i64::from(height));
        // The columns of the window inside the image, as window columns.
        let (from, to) = (self.x.max(0), (self.x + self.side).min(width));
        if from >= to {
            return out;
        }
        for row in 0..self.side {
            let y = self.y + row;
            if !(0..height).contains(&y) {
                continue;
            }
            let source = ((y * width + from) * 3) as usize..((y * width + to) * 3) as usize;
            let target = ((row * self.side + from - self.x) * 3) as usize;
            out[target..target + source.len()].copy_from_slice(&rgb[source]);
        }
        out
    }

    /// Sets the window's pixels on image row `y` (inside the window) from column `x_from` to
    /// `x_to`, exclusive, where they fall in the window.
    fn fill_row(&self, mask: &mut [u8], y: i64, x_from: i64, x_to: i64) {
        let (from, to) = (x_from.max(self.x), x_to.min(self.x + self.side));
        if from >= to {
            return;
        }
        let row = (y - self.y) * self.side;
        let range = (row + from - self.x) as usize..(row + to - self.x) as usize;
        mask[range].fill(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Grid;
    use crate::rle::{decode, encode};
    use proptest::prelude::*;

    #[test]
    fn pixel_sizes_far_from_40x_are_warned_about() {
        for mpp in [0.23, 0.2456, 0.25, 0.3] {
            assert_eq!(scale_warning(mpp), None, "{mpp}");
        }
        let warning = scale_warning(0.499).unwrap();
        assert!(warning.contains("2.0 times"), "{warning}");
        assert!(scale_warning(0.1).unwrap().contains("0.4 times"));
    }

    /// An image whose pixel `(x, y)` is `[x, y, 7]` (modulo 256): each byte tells where it came
    /// from.
    fn coded_image(width: u32, height: u32) -> Vec<u8> {
        let mut rgb = Vec::new();
        for y in 0..height {
            for x in 0..width {
                rgb.extend_from_slice(&[x as u8, y as u8, 7]);
            }
        }
        rgb
    }

    /// The mask of the pixels `set` on a `width x height` grid, encoded on its box.
    fn rle(width: u32, height: u32, set: &[(u32, u32)]) -> BoxRle {
        let mut m = Grid::filled(width, height, false).unwrap();
        for &(x, y) in set {
            m.data_mut()[(y * width + x) as usize] = true;
        }
        encode(&m).unwrap()
    }

    /// A filled rectangle from `(x0, y0)` to `(x1, y1)` inclusive, as a mask on its own box.
    fn block(x0: u32, y0: u32, x1: u32, y1: u32) -> BoxRle {
        let b = BBox::new(x0, y0, x1, y1).unwrap();
        let area = b.width_px() * b.height_px();
        BoxRle {
            bbox: b,
            counts: vec![0, area as u32],
        }
    }

    fn px(c: &Crop, side: u32, x: u32, y: u32) -> ([u8; 3], u8) {
        let i = (y * side + x) as usize;
        (
            [c.rgb[3 * i], c.rgb[3 * i + 1], c.rgb[3 * i + 2]],
            c.mask[i],
        )
    }

    #[test]
    fn a_mask_in_the_middle_lands_at_the_crop_centre() {
        // A 3 x 3 plus sign centred on (100, 60) in a 200 x 120 image.
        let (w, h) = (200, 120);
        let image = coded_image(w, h);
        let plus = rle(
            w,
            h,
            &[(100, 59), (99, 60), (100, 60), (101, 60), (100, 61)],
        );
        assert_eq!(crop_centre(&plus.bbox), [100, 60]);
        let c = crop(&image, w, h, &plus).unwrap();
        assert_eq!(c.rgb.len(), 64 * 64 * 3);
        assert_eq!(c.mask.len(), 64 * 64);

        // The crop starts at (100 - 32, 60 - 32) = (68, 28): crop (32, 32) is image (100, 60).
        assert_eq!(px(&c, 64, 0, 0), ([68, 28, 7], 0));
        assert_eq!(px(&c, 64, 63, 63), ([131, 91, 7], 0));
        assert_eq!(px(&c, 64, 32, 32), ([100, 60, 7], 1));
        let set: Vec<usize> = (0..c.mask.len()).filter(|&i| c.mask[i] == 1).collect();
        let expected: Vec<usize> = [(32, 31), (31, 32), (32, 32), (33, 32), (32, 33)]
            .iter()
            .map(|&(x, y)| y * 64 + x)
            .collect();
        assert_eq!(set, expected);
        assert!(c.mask.iter().all(|&v| v <= 1));
    }

    #[test]
    fn the_centre_rounds_down_for_even_box_sizes() {
        // Odd sizes: the middle pixel. 5 x 3 box at (10..=14, 20..=22): centre (12, 21).
        assert_eq!(crop_centre(&BBox::new(10, 20, 14, 22).unwrap()), [12, 21]);
        // Even sizes: the left / top of the two middle pixels. 4 x 2 box: (10..=13, 20..=21).
        assert_eq!(crop_centre(&BBox::new(10, 20, 13, 21).unwrap()), [11, 20]);
        // One pixel: itself. The far corner of the coordinate range does not overflow.
        assert_eq!(crop_centre(&BBox::new(7, 9, 7, 9).unwrap()), [7, 9]);
        let far = BBox::new(u32::MAX - 1, u32::MAX, u32::MAX, u32::MAX).unwrap();
        assert_eq!(crop_centre(&far), [u32::MAX - 1, u32::MAX]);

        // The crop follows: an even 4 x 4 block at (50..=53, 40..=43) has centre (51, 41), so it
        // starts at (19, 9) and the block covers crop columns and rows 31..=34.
        let image = coded_image(120, 100);
        let c = crop(&image, 120, 100, &block(50, 40, 53, 43)).unwrap();
        assert_eq!(px(&c, 64, 0, 0).0, [19, 9, 7]);
        for y in 0..64 {
            for x in 0..64 {
                let inside = (31..=34).contains(&x) && (31..=34).contains(&y);
                assert_eq!(px(&c, 64, x, y).1, u8::from(inside), "({x}, {y})");
            }
        }
        // An odd 5 x 5 block at (50..=54, 40..=44): centre (52, 42), block at 30..=34.
        let c = crop(&image, 120, 100, &block(50, 40, 54, 44)).unwrap();
        assert_eq!(px(&c, 64, 0, 0).0, [20, 10, 7]);
        assert_eq!(px(&c, 64, 30, 30).1, 1);
        assert_eq!(px(&c, 64, 34, 34).1, 1);
        assert_eq!(px(&c, 64, 29, 30).1, 0);
        assert_eq!(px(&c, 64, 35, 34).1, 0);
        assert_eq!(c.mask.iter().filter(|&&v| v == 1).count(), 25);
    }

    #[test]
    fn crops_at_the_corners_are_zero_padded() {
        let (w, h) = (90, 70);
        let image = coded_image(w, h);
        // A 2 x 2 block in each corner; the crop's centre is the block's top-left pixel.
        let cases = [
            ((0, 0), (32, 32)),
            ((w - 2, 0), (32, 32)),
            ((0, h - 2), (32, 32)),
            ((w - 2, h - 2), (32, 32)),
        ];
        for ((bx, by), (mx, my)) in cases {
            let c = crop(&image, w, h, &block(bx, by, bx + 1, by + 1)).unwrap();
            let (ox, oy) = (i64::from(bx) - 32, i64::from(by) - 32);
            for y in 0..64u32 {
                for x in 0..64u32 {
                    let (ix, iy) = (ox + i64::from(x), oy + i64::from(y));
                    let inside = (0..i64::from(w)).contains(&ix) && (0..i64::from(h)).contains(&iy);
                    let (rgb, m) = px(&c, 64, x, y);
                    let expected = if inside {
                        [ix as u8, iy as u8, 7]
                    } else {
                        [0, 0, 0]
                    };
                    assert_eq!(rgb, expected, "corner ({bx}, {by}), crop ({x}, {y})");
                    let in_block = (mx..mx + 2).contains(&x) && (my..my + 2).contains(&y);
                    assert_eq!(
                        m,
                        u8::from(in_block),
                        "corner ({bx}, {by}), crop ({x}, {y})"
                    );
                }
            }
        }

        // An image smaller than the crop: all of it lies inside, the rest is zero.
        let tiny = coded_image(3, 2);
        let c = crop(&tiny, 3, 2, &block(1, 0, 1, 1)).unwrap();
        // Centre (1, 0): the image starts at crop (31, 32).
        assert_eq!(px(&c, 64, 31, 32), ([0, 0, 7], 0));
        assert_eq!(px(&c, 64, 32, 33), ([1, 1, 7], 1));
        assert_eq!(px(&c, 64, 33, 33), ([2, 1, 7], 0));
        assert_eq!(c.rgb.iter().filter(|&&v| v == 7).count(), 6);
        assert_eq!(c.mask.iter().filter(|&&v| v == 1).count(), 2);
    }

    #[test]
    fn masks_larger_than_the_crop_are_clipped() {
        // A 100 x 80 block at (10..=109, 20..=99) in a 150 x 120 image: centre (59, 59), crop
        // [27, 91) x [27, 91). The block covers every crop column, and rows from 20, so all.
        let image = coded_image(150, 120);
        let c = crop(&image, 150, 120, &block(10, 20, 109, 99)).unwrap();
        assert!(c.mask.iter().all(|&v| v == 1));
        assert_eq!(px(&c, 64, 0, 0).0, [27, 27, 7]);

        // A ring (a hollow square) of side 101 around (60, 60): crop [28, 92) lies inside the
        // hole, so the crop's mask is empty; a ring of side 61 shows its border.
        let ring = |half: u32| {
            let mut set = Vec::new();
            for i in 60 - half..=60 + half {
                set.extend([
                    (i, 60 - half),
                    (i, 60 + half),
                    (60 - half, i),
                    (60 + half, i),
                ]);
            }
            rle(150, 120, &set)
        };
        let c = crop(&image, 150, 120, &ring(50)).unwrap();
        assert_eq!(c.mask.iter().filter(|&&v| v == 1).count(), 0);
        let c = crop(&image, 150, 120, &ring(30)).unwrap();
        // Border rows 30 and 90 map to crop rows 2 and 62, columns 30..=90 to 2..=62.
        assert_eq!(c.mask.iter().filter(|&&v| v == 1).count(), 4 * 60);
        assert_eq!(px(&c, 64, 2, 2).1, 1);
        assert_eq!(px(&c, 64, 62, 40).1, 1);
        assert_eq!(px(&c, 64, 1, 2).1, 0);
    }

    #[test]
    fn other_sides_follow_the_same_rule() {
        let image = coded_image(10, 10);
        // Side 3: [cx - 1, cx + 2). Side 4: [cx - 2, cx + 2).
        let c = crop_with_side(&image, 10, 10, &block(5, 5, 5, 5), 3).unwrap();
        assert_eq!(c.mask, vec![0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(px(&c, 3, 0, 0).0, [4, 4, 7]);
        let c = crop_with_side(&image, 10, 10, &block(5, 5, 5, 5), 4).unwrap();
        assert_eq!(px(&c, 4, 2, 2), ([5, 5, 7], 1));
        let c = crop_with_side(&image, 10, 10, &block(0, 9, 0, 9), 1).unwrap();
        assert_eq!(
            c,
            Crop {
                rgb: vec![0, 9, 7],
                mask: vec![1]
            }
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let image = coded_image(20, 10);
        let ok = block(2, 2, 4, 4);
        assert!(matches!(
            crop(&image[1..], 20, 10, &ok),
            Err(Error::SizeMismatch {
                expected: 600,
                actual: 599,
                ..
            })
        ));
        assert!(matches!(
            crop(&[], 0, 10, &ok),
            Err(Error::EmptyGrid { .. })
        ));
        assert!(matches!(
            crop(&image, 20, 10, &block(18, 2, 20, 4)),
            Err(Error::BoxOutOfBounds {
                width: 20,
                height: 10
            })
        ));
        assert!(matches!(
            crop(&image, 20, 10, &block(2, 9, 3, 10)),
            Err(Error::BoxOutOfBounds { .. })
        ));
        let short = BoxRle {
            bbox: ok.bbox,
            counts: vec![0, 8],
        };
        assert!(matches!(
            crop(&image, 20, 10, &short),
            Err(Error::InvalidRle(_))
        ));
        let long = BoxRle {
            bbox: ok.bbox,
            counts: vec![u32::MAX, u32::MAX],
        };
        assert!(matches!(
            crop(&image, 20, 10, &long),
            Err(Error::InvalidRle(_))
        ));
        assert!(matches!(
            crop_with_side(&image, 20, 10, &ok, 0),
            Err(Error::InvalidSetting { .. })
        ));
        assert!(matches!(
            crop_with_side(&image, 20, 10, &ok, 4097),
            Err(Error::TooLarge(_))
        ));
    }

    fn arb_case() -> impl Strategy<Value = (u32, u32, BoxRle, u32)> {
        (1u32..90, 1u32..90, 0.0f64..1.0, 1u32..70).prop_flat_map(|(w, h, p, side)| {
            let pixels = proptest::collection::vec(proptest::bool::weighted(p), (w * h) as usize);
            (Just(w), Just(h), pixels, Just(side)).prop_filter_map(
                "an empty mask has no box",
                |(w, h, data, side)| {
                    let rle = encode(&Grid::new(w, h, data).unwrap())?;
                    Some((w, h, rle, side))
                },
            )
        })
    }

    proptest! {
        #[test]
        fn crop_holds_exactly_the_mask_and_image_in_its_window(
            (w, h, mask, side) in arb_case()
        ) {
            let image = coded_image(w, h);
            for side in [side, CROP] {
                let c = crop_with_side(&image, w, h, &mask, side).unwrap();
                let full = decode(&mask, w, h).unwrap();
                let [cx, cy] = crop_centre(&mask.bbox);
                let half = i64::from(side / 2);
                let (ox, oy) = (i64::from(cx) - half, i64::from(cy) - half);
                let mut in_window = 0;
                for y in 0..side {
                    for x in 0..side {
                        let (ix, iy) = (ox + i64::from(x), oy + i64::from(y));
                        let inside = (0..i64::from(w)).contains(&ix)
                            && (0..i64::from(h)).contains(&iy);
                        let set = inside && full.get(ix as u32, iy as u32) == Some(&true);
                        in_window += usize::from(set);
                        let (rgb, m) = px(&c, side, x, y);
                        prop_assert_eq!(m, u8::from(set));
                        let expected = if inside { [ix as u8, iy as u8, 7] } else { [0; 3] };
                        prop_assert_eq!(rgb, expected);
                    }
                }
                prop_assert_eq!(c.mask.iter().filter(|&&v| v == 1).count(), in_window);
                prop_assert!(c.mask.iter().all(|&v| v <= 1));
            }
        }
    }
}
