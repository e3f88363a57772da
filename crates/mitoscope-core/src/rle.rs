//! Run-length encodings of binary masks.
//!
//! Two forms. [`BoxRle`], for the wire between server and browser: the mask's bounding box and
//! the runs inside it, row-major. [`CocoRle`], for export: the uncompressed COCO form of
//! `mask_to_rle_pytorch`, `rle_to_mask` and `area_from_rle` in segment-anything's `utils/amg.py`
//! (column-major over the whole image). Both alternate runs of unset and set pixels, starting
//! with unset pixels (a first count of 0 when the first pixel is set).

use serde::{Deserialize, Serialize};

use crate::mask::{BBox, BinaryMask, Grid, mask_to_box, pixel_count};
use crate::{Error, Result};

/// Runs of equal values in `pixels`, starting with a run of `false` (possibly of length 0).
fn runs(pixels: impl Iterator<Item = bool>) -> Vec<u32> {
    let mut counts = Vec::new();
    let mut current = false;
    let mut length = 0u32;
    for p in pixels {
        if p != current {
            counts.push(length);
            current = p;
            length = 0;
        }
        // A grid holds at most u32::MAX pixels, so a run fits.
        length += 1;
    }
    counts.push(length);
    counts
}

/// Checks that `counts` add up to `expected` pixels.
fn check_total(counts: &[u32], expected: u64) -> Result<()> {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != expected {
        return Err(Error::InvalidRle(
            "the counts do not add up to the pixels they cover",
        ));
    }
    Ok(())
}

/// Set pixels of an encoding: the sum of the odd-indexed counts (`area_from_rle`).
fn set_pixels(counts: &[u32]) -> u64 {
    counts
        .iter()
        .skip(1)
        .step_by(2)
        .map(|&c| u64::from(c))
        .sum()
}

/// A mask as its bounding box and the runs inside the box, row-major over the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxRle {
    /// The mask's bounding box in the coordinates of the grid it came from.
    pub bbox: BBox,
    /// Run lengths over the box's `width_px * height_px` pixels, row-major, alternating unset
    /// and set, starting with unset.
    pub counts: Vec<u32>,
}

impl BoxRle {
    /// Number of set pixels.
    pub fn area(&self) -> u64 {
        set_pixels(&self.counts)
    }

    /// Checks that the runs cover the box's pixels exactly.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRle`] when they do not.
    pub fn check(&self) -> Result<()> {
        check_total(&self.counts, self.bbox.width_px() * self.bbox.height_px())
    }
}

/// Encodes `mask` relative to its bounding box; `None` for an empty mask.
pub fn encode(mask: &BinaryMask) -> Option<BoxRle> {
    let bbox = mask_to_box(mask)?;
    let (x0, x1) = (bbox.x0() as usize, bbox.x1() as usize);
    let rows = mask
        .rows()
        .skip(bbox.y0() as usize)
        .take(bbox.height_px() as usize);
    let pixels = rows.flat_map(|row| row[x0..=x1].iter().copied());
    Some(BoxRle {
        bbox,
        counts: runs(pixels),
    })
}

/// Decodes `rle` into a `width x height` mask (the grid its box refers to).
///
/// The box is taken as given: a decoder does not check that the set pixels touch every side.
///
/// # Errors
///
/// [`Error::EmptyGrid`] or [`Error::TooLarge`] for an unusable size, [`Error::BoxOutOfBounds`]
/// when the box does not fit in the grid, [`Error::InvalidRle`] when the counts do not add up to
/// the box's pixel count.
pub fn decode(rle: &BoxRle, width: u32, height: u32) -> Result<BinaryMask> {
    let count = pixel_count(width, height)?;
    let b = rle.bbox;
    if b.x1() >= width || b.y1() >= height {
        return Err(Error::BoxOutOfBounds { width, height });
    }
    let box_width = b.width_px();
    check_total(&rle.counts, box_width * b.height_px())?;

    let mut data = vec![false; count];
    let mut offset = 0u64;
    for (k, &run) in rle.counts.iter().enumerate() {
        if k % 2 == 1 {
            for i in offset..offset + u64::from(run) {
                // Inside the box, itself inside the grid: the index is below `count`.
                let (x, y) = (
                    u64::from(b.x0()) + i % box_width,
                    u64::from(b.y0()) + i / box_width,
                );
                data[(y * u64::from(width) + x) as usize] = true;
            }
        }
        offset += u64::from(run);
    }
    Grid::new(width, height, data)
}

/// The uncompressed COCO run-length encoding that segment-anything exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CocoRle {
    /// `[height, width]`, in COCO's order.
    pub size: [u32; 2],
    /// Run lengths over the whole grid in column-major (Fortran) order, alternating unset and
    /// set, starting with unset.
    pub counts: Vec<u32>,
}

impl CocoRle {
    /// Number of set pixels, as `area_from_rle`.
    pub fn area(&self) -> u64 {
        set_pixels(&self.counts)
    }
}

impl BoxRle {
    /// The mask moved by `(dx, dy)` (from tile to image coordinates); the runs are unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if a coordinate overflows `u32`.
    pub fn translated(&self, dx: u32, dy: u32) -> Result<Self> {
        Ok(Self {
            bbox: self.bbox.translated(dx, dy)?,
            counts: self.counts.clone(),
        })
    }

    /// The part of the mask inside `[0, width) x [0, height)`, re-encoded on its own box;
    /// `None` when nothing is left.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRle`] when the counts do not add up to the box's pixel count.
    pub fn clipped(&self, width: u32, height: u32) -> Result<Option<Self>> {
        let b = self.bbox;
        check_total(&self.counts, b.width_px() * b.height_px())?;
        if b.x1() < width && b.y1() < height {
            return Ok(Some(self.clone()));
        }
        if b.x0() >= width || b.y0() >= height {
            return Ok(None);
        }
        // The kept part of the box: columns x0..min(x1 + 1, width), rows likewise.
        let keep_w = width.min(b.x1().saturating_add(1)) - b.x0();
        let keep_h = height.min(b.y1().saturating_add(1)) - b.y0();
        let box_w = b.width_px();
        let mut data = vec![false; keep_w as usize * keep_h as usize];
        let mut offset = 0u64;
        for (k, &run) in self.counts.iter().enumerate() {
            if k % 2 == 1 {
                for i in offset..offset + u64::from(run) {
                    let (x, y) = (i % box_w, i / box_w);
                    if x < u64::from(keep_w) && y < u64::from(keep_h) {
                        data[(y * u64::from(keep_w) + x) as usize] = true;
                    }
                }
            }
            offset += u64::from(run);
        }
        let kept = Grid::new(keep_w, keep_h, data)?;
        encode(&kept)
            .map(|rle| rle.translated(b.x0(), b.y0()))
            .transpose()
    }
}

/// Encodes `mask` as `mask_to_rle_pytorch`: column-major, starting with unset pixels.
pub fn mask_to_rle(mask: &BinaryMask) -> CocoRle {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let data = mask.data();
    let column_major = (0..w).flat_map(|x| (0..h).map(move |y| data[y * w + x]));
    CocoRle {
        size: [mask.height(), mask.width()],
        counts: runs(column_major),
    }
}

/// Decodes a COCO run-length encoding as `rle_to_mask`.
///
/// # Errors
///
/// [`Error::EmptyGrid`] or [`Error::TooLarge`] for an unusable size, [`Error::InvalidRle`] when
/// the counts do not add up to `height * width` (the reference silently truncates or leaves
/// pixels unset there).
pub fn rle_to_mask(rle: &CocoRle) -> Result<BinaryMask> {
    let [height, width] = rle.size;
    let count = pixel_count(width, height)?;
    check_total(&rle.counts, count as u64)?;

    let (w, h) = (width as usize, height as usize);
    let mut data = vec![false; count];
    let mut offset = 0usize;
    for (k, &run) in rle.counts.iter().enumerate() {
        let run = run as usize;
        if k % 2 == 1 {
            for i in offset..offset + run {
                // Column-major index i is pixel (x, y) = (i / h, i % h).
                data[(i % h) * w + i / h] = true;
            }
        }
        offset += run;
    }
    Grid::new(width, height, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mask(width: u32, height: u32, set: &[(usize, usize)]) -> BinaryMask {
        let mut m = Grid::filled(width, height, false).unwrap();
        for &(x, y) in set {
            m.data_mut()[y * width as usize + x] = true;
        }
        m
    }

    #[test]
    fn coco_rle_matches_segment_anything() {
        // Printed by segment_anything.utils.amg.mask_to_rle_pytorch in tests/reference/.venv:
        // a 5 x 6 (h x w) mask with (x, y) = (2, 1), (3, 2), (4, 3) set gives
        // {'size': [5, 6], 'counts': [11, 1, 5, 1, 5, 1, 6]}.
        let m = mask(6, 5, &[(2, 1), (3, 2), (4, 3)]);
        let rle = mask_to_rle(&m);
        assert_eq!(
            rle,
            CocoRle {
                size: [5, 6],
                counts: vec![11, 1, 5, 1, 5, 1, 6]
            }
        );
        assert_eq!(rle.area(), 3);
        assert_eq!(rle_to_mask(&rle).unwrap(), m);

        // A 2 x 3 mask of ones but (0, 0) and (2, 1): [1, 4, 1]. A full 2 x 2 mask: [0, 4].
        let ones = Grid::new(3, 2, vec![false, true, true, true, true, false]).unwrap();
        assert_eq!(mask_to_rle(&ones).counts, vec![1, 4, 1]);
        assert_eq!(
            mask_to_rle(&Grid::filled(2, 2, true).unwrap()).counts,
            vec![0, 4]
        );
    }

    #[test]
    fn box_rle_is_row_major_over_the_box() {
        let m = mask(6, 5, &[(2, 1), (3, 2), (4, 3)]);
        let rle = encode(&m).unwrap();
        assert_eq!(<[u32; 4]>::from(rle.bbox), [2, 1, 4, 3]);
        // The 3 x 3 box holds the diagonal: set, 3 unset, set, 3 unset, set.
        assert_eq!(rle.counts, vec![0, 1, 3, 1, 3, 1]);
        assert_eq!(rle.area(), 3);
        assert_eq!(decode(&rle, 6, 5).unwrap(), m);
        assert_eq!(encode(&Grid::filled(4, 4, false).unwrap()), None);
        let json = serde_json::to_string(&rle).unwrap();
        assert_eq!(json, r#"{"bbox":[2,1,4,3],"counts":[0,1,3,1,3,1]}"#);
    }

    #[test]
    fn decoders_refuse_malformed_input() {
        let rle = BoxRle {
            bbox: BBox::new(2, 1, 4, 3).unwrap(),
            counts: vec![0, 1, 3, 1, 3],
        };
        assert!(matches!(decode(&rle, 6, 5), Err(Error::InvalidRle(_))));
        let rle = BoxRle {
            bbox: BBox::new(2, 1, 4, 3).unwrap(),
            counts: vec![9],
        };
        assert!(matches!(
            decode(&rle, 4, 5),
            Err(Error::BoxOutOfBounds { .. })
        ));
        assert!(matches!(decode(&rle, 0, 5), Err(Error::EmptyGrid { .. })));
        let huge = BoxRle {
            bbox: BBox::new(0, 0, 0, 0).unwrap(),
            counts: vec![u32::MAX, 2],
        };
        assert!(matches!(decode(&huge, 1, 1), Err(Error::InvalidRle(_))));

        let coco = CocoRle {
            size: [2, 2],
            counts: vec![1, 1, 1, 2],
        };
        assert!(matches!(rle_to_mask(&coco), Err(Error::InvalidRle(_))));
        let coco = CocoRle {
            size: [0, 2],
            counts: vec![],
        };
        assert!(matches!(rle_to_mask(&coco), Err(Error::EmptyGrid { .. })));
        let coco = CocoRle {
            size: [u32::MAX, u32::MAX],
            counts: vec![u32::MAX],
        };
        assert!(matches!(rle_to_mask(&coco), Err(Error::TooLarge(_))));
    }

    fn arb_mask() -> impl Strategy<Value = BinaryMask> {
        (1u32..20, 1u32..20, 0.0f64..1.0).prop_flat_map(|(w, h, p)| {
            proptest::collection::vec(proptest::bool::weighted(p), (w * h) as usize)
                .prop_map(move |data| Grid::new(w, h, data).unwrap())
        })
    }

    proptest! {
        #[test]
        fn box_rle_round_trips(m in arb_mask()) {
            match encode(&m) {
                None => prop_assert!(m.data().iter().all(|&v| !v)),
                Some(rle) => {
                    let total: u64 = rle.counts.iter().map(|&c| u64::from(c)).sum();
                    prop_assert_eq!(total, rle.bbox.width_px() * rle.bbox.height_px());
                    prop_assert!(rle.counts.iter().skip(1).all(|&c| c > 0));
                    prop_assert_eq!(rle.area(), crate::mask::mask_area(&m));
                    prop_assert_eq!(decode(&rle, m.width(), m.height()).unwrap(), m);
                }
            }
        }

        #[test]
        fn coco_rle_round_trips(m in arb_mask()) {
            let rle = mask_to_rle(&m);
            prop_assert_eq!(rle.counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
                u64::from(m.width()) * u64::from(m.height()));
            prop_assert!(rle.counts.iter().skip(1).all(|&c| c > 0));
            prop_assert_eq!(rle.area(), crate::mask::mask_area(&m));
            prop_assert_eq!(rle_to_mask(&rle).unwrap(), m);
        }
    }

    #[test]
    fn clipping_keeps_the_inside_part() {
        // A 4 x 3 block at (6, 7)..=(9, 9) in a 10 x 10 grid, clipped to 8 x 9.
        let mut grid = Grid::filled(10, 10, false).unwrap();
        for y in 7..10 {
            for x in 6..10 {
                grid.data_mut()[y * 10 + x] = true;
            }
        }
        let rle = encode(&grid).unwrap();
        assert_eq!(rle.clipped(10, 10).unwrap(), Some(rle.clone()));
        let clipped = rle.clipped(8, 9).unwrap().unwrap();
        assert_eq!(<[u32; 4]>::from(clipped.bbox), [6, 7, 7, 8]);
        assert_eq!(clipped.area(), 4);
        assert_eq!(rle.clipped(6, 10).unwrap(), None);
        let moved = clipped.translated(100, 1).unwrap();
        assert_eq!(<[u32; 4]>::from(moved.bbox), [106, 8, 107, 9]);
        assert_eq!(moved.counts, clipped.counts);
        let bad = BoxRle {
            bbox: rle.bbox,
            counts: vec![1, 2],
        };
        assert!(bad.clipped(8, 8).is_err());
    }
}
