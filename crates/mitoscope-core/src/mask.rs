//! Masks over a pixel grid: stability score, bounding box and areas.
//!
//! Mirrors `calculate_stability_score` and `batched_mask_to_box` in segment-anything's
//! `utils/amg.py`, and torchvision's `box_area`, one mask at a time.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Values on a `width x height` pixel grid, row-major (`data[y * width + x]`).
///
/// A grid is never empty and holds at most `u32::MAX` pixels, so that every pixel index and every
/// run length fits a `u32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<T> {
    width: u32,
    height: u32,
    data: Vec<T>,
}

/// SAM's mask logits upsampled to the tile: a pixel is in the mask when its logit exceeds the
/// mask threshold.
pub type LogitMask = Grid<f32>;

/// A binary mask.
pub type BinaryMask = Grid<bool>;

/// Number of pixels of a `width x height` grid.
///
/// # Errors
///
/// [`Error::EmptyGrid`] for a zero side, [`Error::TooLarge`] above `u32::MAX` pixels.
pub(crate) fn pixel_count(width: u32, height: u32) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(Error::EmptyGrid { width, height });
    }
    let count = u64::from(width) * u64::from(height);
    if count > u64::from(u32::MAX) {
        return Err(Error::TooLarge("a grid holds at most u32::MAX pixels"));
    }
    usize::try_from(count).map_err(|_| Error::TooLarge("grid larger than the address space"))
}

/// Checks that `rgb` holds three bytes per pixel of a `width x height` image; returns the pixel
/// count.
///
/// # Errors
///
/// As [`pixel_count`], and [`Error::SizeMismatch`] for a wrong byte count.
pub(crate) fn check_rgb(rgb: &[u8], width: u32, height: u32) -> Result<usize> {
    let count = pixel_count(width, height)?;
    // At most u32::MAX pixels: three bytes each fit a u64.
    let expected = 3 * count as u64;
    if rgb.len() as u64 != expected {
        return Err(Error::SizeMismatch {
            width,
            height,
            expected,
            actual: rgb.len() as u64,
        });
    }
    Ok(count)
}

impl<T> Grid<T> {
    /// Wraps row-major `data` as a `width x height` grid.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyGrid`] for a zero side, [`Error::TooLarge`] above `u32::MAX` pixels,
    /// [`Error::SizeMismatch`] when `data` does not hold `width * height` values.
    pub fn new(width: u32, height: u32, data: Vec<T>) -> Result<Self> {
        let expected = pixel_count(width, height)?;
        if data.len() != expected {
            return Err(Error::SizeMismatch {
                width,
                height,
                expected: expected as u64,
                actual: data.len() as u64,
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A `width x height` grid with every value set to `value`.
    ///
    /// # Errors
    ///
    /// As [`Grid::new`].
    pub fn filled(width: u32, height: u32, value: T) -> Result<Self>
    where
        T: Clone,
    {
        let count = pixel_count(width, height)?;
        Ok(Self {
            width,
            height,
            data: vec![value; count],
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The values, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The values, row-major, mutable (the size cannot change).
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Gives back the values, row-major.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// The value at column `x`, row `y`, or `None` outside the grid.
    pub fn get(&self, x: u32, y: u32) -> Option<&T> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.data.get(y as usize * self.width as usize + x as usize)
    }

    /// The rows, top to bottom.
    pub fn rows(&self) -> impl Iterator<Item = &[T]> {
        self.data.chunks_exact(self.width as usize)
    }
}

impl LogitMask {
    /// The binary mask of pixels whose logit is strictly above `mask_threshold`.
    ///
    /// The threshold is rounded to `f32` first, as torch compares a float32 tensor with a Python
    /// float.
    pub fn threshold(&self, mask_threshold: f64) -> BinaryMask {
        let t = mask_threshold as f32;
        let data = self.data.iter().map(|&v| v > t).collect();
        Grid {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// The stability score of a mask: the IoU of the masks thresholded at `mask_threshold + offset`
/// and at `mask_threshold - offset`.
///
/// As `calculate_stability_score`: the count of logits strictly above the high threshold divided
/// by the count strictly above the low one (the first mask lies inside the second, so this is
/// their IoU), each threshold rounded to `f32` as torch does, the division in `f32`. NaN logits
/// count in neither mask.
///
/// NOTE: where no logit exceeds the low threshold the reference divides 0 by 0 and returns NaN,
/// which fails every `>` filter. We return 0.0 instead: it fails the same filters and keeps the
/// score in `[0, 1]`.
///
/// # Errors
///
/// [`Error::NotFinite`] for a non-finite threshold or offset, [`Error::InvalidSetting`] for a
/// negative offset (the score would exceed 1).
pub fn stability_score(logits: &LogitMask, mask_threshold: f64, offset: f64) -> Result<f32> {
    if !mask_threshold.is_finite() {
        return Err(Error::NotFinite("mask_threshold"));
    }
    if !offset.is_finite() {
        return Err(Error::NotFinite("stability_score_offset"));
    }
    if offset < 0.0 {
        return Err(Error::InvalidSetting {
            name: "stability_score_offset",
            reason: "must be non-negative",
        });
    }
    let high = (mask_threshold + offset) as f32;
    let low = (mask_threshold - offset) as f32;
    let (mut intersections, mut unions) = (0u32, 0u32);
    for &v in logits.data() {
        intersections += u32::from(v > high);
        unions += u32::from(v > low);
    }
    if unions == 0 {
        return Ok(0.0);
    }
    Ok(intersections as f32 / unions as f32)
}

/// An axis-aligned box on pixel indices, `(x0, y0, x1, y1)` with inclusive maxima, as
/// `batched_mask_to_box` returns it: a one-pixel mask at `(x, y)` has the box `(x, y, x, y)`.
///
/// On the wire it is the array `[x0, y0, x1, y1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u32; 4]", into = "[u32; 4]")]
pub struct BBox {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

impl BBox {
    /// The box from column `x0` to `x1` and row `y0` to `y1`, all inclusive.
    ///
    /// # Errors
    ///
    /// [`Error::InvertedBox`] when `x0 > x1` or `y0 > y1`.
    pub fn new(x0: u32, y0: u32, x1: u32, y1: u32) -> Result<Self> {
        if x0 > x1 || y0 > y1 {
            return Err(Error::InvertedBox { x0, y0, x1, y1 });
        }
        Ok(Self { x0, y0, x1, y1 })
    }

    /// Left column.
    pub fn x0(&self) -> u32 {
        self.x0
    }

    /// Top row.
    pub fn y0(&self) -> u32 {
        self.y0
    }

    /// Right column (inclusive).
    pub fn x1(&self) -> u32 {
        self.x1
    }

    /// Bottom row (inclusive).
    pub fn y1(&self) -> u32 {
        self.y1
    }

    /// Number of pixel columns the box spans, `x1 - x0 + 1`.
    pub fn width_px(&self) -> u64 {
        u64::from(self.x1 - self.x0) + 1
    }

    /// Number of pixel rows the box spans, `y1 - y0 + 1`.
    pub fn height_px(&self) -> u64 {
        u64::from(self.y1 - self.y0) + 1
    }

    /// Whether pixel `(x, y)` lies in the box.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.x0..=self.x1).contains(&x) && (self.y0..=self.y1).contains(&y)
    }

    /// The box moved by `(dx, dy)` (from tile to image coordinates).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if a coordinate overflows `u32`.
    pub fn translated(&self, dx: u32, dy: u32) -> Result<Self> {
        let add = |a: u32, d: u32| a.checked_add(d).ok_or(Error::TooLarge("box coordinate"));
        Ok(Self {
            x0: add(self.x0, dx)?,
            y0: add(self.y0, dy)?,
            x1: add(self.x1, dx)?,
            y1: add(self.y1, dy)?,
        })
    }
}

impl TryFrom<[u32; 4]> for BBox {
    type Error = Error;

    fn try_from([x0, y0, x1, y1]: [u32; 4]) -> Result<Self> {
        Self::new(x0, y0, x1, y1)
    }
}

impl From<BBox> for [u32; 4] {
    fn from(b: BBox) -> Self {
        [b.x0, b.y0, b.x1, b.y1]
    }
}

/// The tightest box around the set pixels of `mask`, or `None` for an empty mask.
///
/// NOTE: `batched_mask_to_box` returns `[0, 0, 0, 0]` for an empty mask, which cannot be told
/// from a one-pixel mask at the origin; `None` says it plainly.
pub fn mask_to_box(mask: &BinaryMask) -> Option<BBox> {
    let mut found: Option<BBox> = None;
    for (y, row) in mask.rows().enumerate() {
        let Some(first) = row.iter().position(|&v| v) else {
            continue;
        };
        let last = row.iter().rposition(|&v| v).unwrap_or(first);
        // Indices are below the grid side, itself a u32.
        let (y, first, last) = (y as u32, first as u32, last as u32);
        found = Some(match found {
            None => BBox {
                x0: first,
                y0: y,
                x1: last,
                y1: y,
            },
            Some(b) => BBox {
                x0: b.x0.min(first),
                y0: b.y0,
                x1: b.x1.max(last),
                y1: y,
            },
        });
    }
    found
}

/// Number of set pixels of `mask`.
pub fn mask_area(mask: &BinaryMask) -> u64 {
    mask.data().iter().filter(|&&v| v).count() as u64
}

/// The box area as torchvision's `box_area`: `(x1 - x0) * (y1 - y0)` on the inclusive maxima,
/// with no `+ 1`.
///
/// This is the size OMG-Net filters on: a one-pixel mask has area 0, a `w x h` pixel block
/// `(w - 1) * (h - 1)`.
pub fn box_area(b: &BBox) -> u64 {
    u64::from(b.x1 - b.x0) * u64::from(b.y1 - b.y0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grid_refuses_bad_sizes() {
        assert_eq!(
            Grid::new(0, 3, Vec::<bool>::new()),
            Err(Error::EmptyGrid {
                width: 0,
                height: 3
            })
        );
        assert!(matches!(
            Grid::new(2, 2, vec![true; 3]),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(matches!(
            Grid::filled(u32::MAX, 2, false),
            Err(Error::TooLarge(_))
        ));
        let g = Grid::new(2, 2, vec![1, 2, 3, 4]).unwrap();
        assert_eq!(g.get(1, 0), Some(&2));
        assert_eq!(g.get(0, 1), Some(&3));
        assert_eq!(g.get(2, 0), None);
    }

    #[test]
    fn stability_score_matches_segment_anything() {
        // Expected values printed by segment_anything.utils.amg.calculate_stability_score on this
        // float32 tensor (torch 2.x, tests/reference/.venv): 3 logits > 1.0 over 9 > -1.0, and
        // with threshold 0.5, 1 logit > 1.5 over 7 > -0.5. Logits equal to a threshold are out.
        let logits = Grid::new(
            4,
            3,
            vec![
                -2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0, -0.99, 1.01, 0.25, -3.0,
            ],
        )
        .unwrap();
        assert_eq!(
            stability_score(&logits, 0.0, 1.0).unwrap(),
            0.333_333_34_f32
        );
        assert_eq!(
            stability_score(&logits, 0.0, 1.0).unwrap().to_bits(),
            (1.0f32 / 3.0).to_bits()
        );
        assert_eq!(
            stability_score(&logits, 0.5, 1.0).unwrap(),
            0.142_857_15_f32
        );
    }

    #[test]
    fn stability_score_of_nothing_is_zero() {
        // The reference returns NaN here (0 / 0).
        let logits = Grid::filled(2, 2, -5.0f32).unwrap();
        assert_eq!(stability_score(&logits, 0.0, 1.0).unwrap(), 0.0);
        let nan = Grid::filled(2, 2, f32::NAN).unwrap();
        assert_eq!(stability_score(&nan, 0.0, 1.0).unwrap(), 0.0);
    }

    #[test]
    fn stability_score_refuses_bad_arguments() {
        let logits = Grid::filled(2, 2, 5.0f32).unwrap();
        assert!(stability_score(&logits, f64::NAN, 1.0).is_err());
        assert!(stability_score(&logits, 0.0, f64::INFINITY).is_err());
        assert!(stability_score(&logits, 0.0, -1.0).is_err());
        assert_eq!(stability_score(&logits, 0.0, 0.0).unwrap(), 1.0);
    }

    #[test]
    fn mask_to_box_matches_segment_anything() {
        // batched_mask_to_box on a 5 x 6 mask with pixels (x, y) = (2, 1), (3, 2), (4, 3) gave
        // [[2, 1, 4, 3]]; on an empty mask [[0, 0, 0, 0]] (None here).
        let mut m = Grid::filled(6, 5, false).unwrap();
        for (x, y) in [(2, 1), (3, 2), (4, 3)] {
            m.data_mut()[y * 6 + x] = true;
        }
        let b = mask_to_box(&m).unwrap();
        assert_eq!(<[u32; 4]>::from(b), [2, 1, 4, 3]);
        assert_eq!(box_area(&b), 4);
        assert_eq!(mask_area(&m), 3);
        assert_eq!((b.width_px(), b.height_px()), (3, 3));
        assert_eq!(mask_to_box(&Grid::filled(3, 3, false).unwrap()), None);
    }

    #[test]
    fn box_area_has_no_plus_one() {
        // torchvision.ops.box_area([[0, 0, 10, 10], [21, 21, 29, 29], [100, 100, 100, 100]])
        // gave [100, 64, 0].
        assert_eq!(box_area(&BBox::new(0, 0, 10, 10).unwrap()), 100);
        assert_eq!(box_area(&BBox::new(21, 21, 29, 29).unwrap()), 64);
        assert_eq!(box_area(&BBox::new(100, 100, 100, 100).unwrap()), 0);
    }

    #[test]
    fn bbox_wire_form_is_validated() {
        let b: BBox = serde_json::from_str("[1, 2, 3, 4]").unwrap();
        assert_eq!(serde_json::to_string(&b).unwrap(), "[1,2,3,4]");
        assert!(serde_json::from_str::<BBox>("[3, 2, 1, 4]").is_err());
        assert!(BBox::new(0, 5, 0, 4).is_err());
        assert!(b.translated(u32::MAX, 0).is_err());
        assert_eq!(
            b.translated(10, 20).unwrap(),
            BBox::new(11, 22, 13, 24).unwrap()
        );
    }

    fn arb_mask() -> impl Strategy<Value = BinaryMask> {
        (1u32..24, 1u32..24).prop_flat_map(|(w, h)| {
            proptest::collection::vec(proptest::bool::weighted(0.2), (w * h) as usize)
                .prop_map(move |data| Grid::new(w, h, data).unwrap())
        })
    }

    proptest! {
        #[test]
        fn mask_to_box_contains_every_set_pixel_and_is_tight(m in arb_mask()) {
            match mask_to_box(&m) {
                None => prop_assert_eq!(mask_area(&m), 0),
                Some(b) => {
                    let mut touches = [false; 4];
                    for y in 0..m.height() {
                        for x in 0..m.width() {
                            if m.get(x, y) == Some(&true) {
                                prop_assert!(b.contains(x, y));
                                touches[0] |= x == b.x0();
                                touches[1] |= y == b.y0();
                                touches[2] |= x == b.x1();
                                touches[3] |= y == b.y1();
                            }
                        }
                    }
                    prop_assert_eq!(touches, [true; 4]);
                    prop_assert!(b.x1() < m.width() && b.y1() < m.height());
                    prop_assert!(mask_area(&m) <= b.width_px() * b.height_px());
                }
            }
        }

        #[test]
        fn stability_score_lies_in_unit_interval(
            logits in proptest::collection::vec(-4.0f32..4.0, 1..64),
            t in -2.0f64..2.0,
            offset in 0.0f64..3.0,
        ) {
            let n = logits.len() as u32;
            let s = stability_score(&Grid::new(n, 1, logits).unwrap(), t, offset).unwrap();
            prop_assert!((0.0..=1.0).contains(&s));
        }

        #[test]
        fn sharp_logit_step_is_perfectly_stable(
            inside in proptest::collection::vec(any::<bool>(), 1..64),
            height in 1.01f32..50.0,
        ) {
            prop_assume!(inside.iter().any(|&v| v));
            let n = inside.len() as u32;
            let logits = inside.iter().map(|&v| if v { height } else { -height }).collect();
            let s = stability_score(&Grid::new(n, 1, logits).unwrap(), 0.0, 1.0).unwrap();
            prop_assert_eq!(s, 1.0);
        }
    }
}
