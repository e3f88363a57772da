//! Tissue detection on a grey low-resolution view of the image.
//!
//! Mirrors steps (1) and (2) of `get_nonbackground_tiles` in OMG-Net's `Utils/TileOps.py`: grey
//! as `0.2989 R + 0.5870 G + 0.1140 B`, the background level as the minimum of the mean of a
//! 30 px border and 240, and tissue as the pixels strictly darker than that level. The fraction
//! of tissue under a tile (step 4 there) is [`TissueMask::fraction`].
//!
//! That level chooses tiles well but measures area badly: on a field that is tissue to its
//! border, the border's mean is the tissue's own grey and only the darker half of the tissue
//! falls below it. The tissue area of a count is measured instead with [`TissueMask::not_glass`]:
//! every pixel darker than the cap (240), i.e. everything but white glass.

use crate::mask::{BinaryMask, Grid, check_rgb};
use crate::settings::ProposalSettings;
use crate::{Error, Result};

/// A grey image, one `f64` per pixel on the 0..=255 scale.
pub type GreyImage = Grid<f64>;

/// Converts interleaved 8-bit RGB (`3 * width * height` bytes, row-major) to grey.
///
/// Uses the reference's weights and order of operations in `f64`, as numpy computes
/// `R * 0.2989 + G * 0.5870 + B * 0.1140` on `uint8` channels, so the values match bit for bit.
///
/// # Errors
///
/// [`Error::EmptyGrid`] or [`Error::TooLarge`] for an unusable size, [`Error::SizeMismatch`]
/// when `rgb` does not hold three bytes per pixel.
pub fn grey_from_rgb(rgb: &[u8], width: u32, height: u32) -> Result<GreyImage> {
    check_rgb(rgb, width, height)?;
    let grey = rgb
        .chunks_exact(3)
        .map(|p| f64::from(p[0]) * 0.2989 + f64::from(p[1]) * 0.5870 + f64::from(p[2]) * 0.1140)
        .collect();
    Grid::new(width, height, grey)
}

/// The background grey level: `min(mean of the border, cap)`.
///
/// The border is taken as the reference concatenates it: the top and bottom `border_px` rows and
/// the left and right `border_px` columns, each over the full image, so the corner pixels count
/// twice. On an image thinner than the border, a side is the whole image (numpy's `a[-30:]`).
/// A `border_px` of 0 has no border pixels and returns `cap`.
///
/// NOTE: numpy's mean sums pairwise; we sum in order, so the level may differ in the last bits.
pub fn background_level(grey: &GreyImage, border_px: u32, cap: f64) -> f64 {
    let (w, h) = (grey.width() as usize, grey.height() as usize);
    let rows = (border_px as usize).min(h);
    let cols = (border_px as usize).min(w);
    let data = grey.data();

    let mut sum = 0.0;
    let mut count = 0u64;
    let mut add_rows = |range: core::ops::Range<usize>| {
        for v in &data[range.start * w..range.end * w] {
            sum += v;
        }
        count += (range.len() * w) as u64;
    };
    add_rows(0..rows);
    add_rows(h - rows..h);
    for row in grey.rows() {
        sum += row[..cols].iter().sum::<f64>() + row[w - cols..].iter().sum::<f64>();
    }
    count += (2 * cols * h) as u64;

    if count == 0 {
        return cap;
    }
    // np.minimum propagates NaN; a NaN grey value is not reachable from 8-bit RGB.
    (sum / count as f64).min(cap)
}

/// Which pixels of a low-resolution view are tissue, and how that view maps to the image.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueMask {
    mask: BinaryMask,
    downsample: f64,
    level: f64,
}

impl TissueMask {
    /// Detects tissue on `grey`, a view `downsample` times smaller than the full image.
    ///
    /// A pixel is tissue when its grey value is strictly below
    /// [`background_level`]`(grey, settings.tissue_border_px, settings.background_cap)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when `downsample` is not finite and positive.
    pub fn detect(grey: &GreyImage, settings: &ProposalSettings, downsample: f64) -> Result<Self> {
        let level = background_level(grey, settings.tissue_border_px, settings.background_cap);
        Self::below(grey, level, downsample)
    }

    /// The pixels of `grey` that are not white glass: darker than `settings.background_cap`,
    /// whatever the border. This is the mask the tissue area of a count is measured on.
    ///
    /// # Errors
    ///
    /// As [`TissueMask::detect`].
    pub fn not_glass(
        grey: &GreyImage,
        settings: &ProposalSettings,
        downsample: f64,
    ) -> Result<Self> {
        Self::below(grey, settings.background_cap, downsample)
    }

    /// The pixels of `grey` strictly darker than `level`.
    fn below(grey: &GreyImage, level: f64, downsample: f64) -> Result<Self> {
        if !downsample.is_finite() || downsample <= 0.0 {
            return Err(Error::InvalidSetting {
                name: "downsample",
                reason: "must be finite and positive",
            });
        }
        let data = grey.data().iter().map(|&v| v < level).collect();
        let mask = Grid::new(grey.width(), grey.height(), data)?;
        Ok(Self {
            mask,
            downsample,
            level,
        })
    }

    /// Whether the full-resolution point `(x, y)` falls on a tissue pixel of the view; points
    /// outside the view are not tissue.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (col, row) = (x / self.downsample, y / self.downsample);
        if !(col >= 0.0 && row >= 0.0) {
            return false;
        }
        // Float-to-int casts saturate: far points land outside the view.
        let (col, row) = (col.floor() as u32, row.floor() as u32);
        self.mask.get(col, row).is_some_and(|&v| v)
    }

    /// The tissue mask on the low-resolution view.
    pub fn mask(&self) -> &BinaryMask {
        &self.mask
    }

    /// Full-resolution pixels per low-resolution pixel.
    pub fn downsample(&self) -> f64 {
        self.downsample
    }

    /// The background grey level used.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Fraction of tissue under a full-resolution region `[x, x + width) x [y, y + height)`.
    ///
    /// The region covers every low-resolution pixel it touches
    /// (`floor(x / downsample)..ceil((x + width) / downsample)`), clipped to the view; a region
    /// that covers none has fraction 0.
    ///
    /// NOTE: the reference only scores tiles aligned on a grid of the tile size inside the
    /// view; this scores any region, so that overlapping and edge tiles get a fraction too.
    pub fn fraction(&self, x: u32, y: u32, width: u32, height: u32) -> f64 {
        let span = |start: u32, len: u32, limit: u32| {
            let lo = (f64::from(start) / self.downsample).floor();
            let hi = ((f64::from(start) + f64::from(len)) / self.downsample).ceil();
            // Float-to-int casts saturate, so huge values clip to the view.
            let lo = (lo as u64).min(u64::from(limit));
            let hi = (hi as u64).min(u64::from(limit));
            (lo, hi)
        };
        let (x0, x1) = span(x, width, self.mask.width());
        let (y0, y1) = span(y, height, self.mask.height());
        if x0 >= x1 || y0 >= y1 {
            return 0.0;
        }
        let mut tissue = 0u64;
        for row in self.mask.rows().skip(y0 as usize).take((y1 - y0) as usize) {
            tissue += row[x0 as usize..x1 as usize].iter().filter(|&&v| v).count() as u64;
        }
        tissue as f64 / ((x1 - x0) * (y1 - y0)) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_area_mask_keeps_everything_but_glass() {
        // A field that is tissue to its border: grey 150 and 200, no glass. The background
        // rule puts the level at the border's mean and keeps only the darker half; the area
        // mask keeps all of it, and drops only a glass-white pixel.
        let mut values = vec![150.0; 100 * 100];
        for (i, v) in values.iter_mut().enumerate() {
            if (i / 100 + i % 100) % 2 == 0 {
                *v = 200.0;
            }
        }
        values[0] = 250.0;
        let grey = Grid::new(100, 100, values).unwrap();
        let settings = ProposalSettings::default();
        let rule = TissueMask::detect(&grey, &settings, 4.0).unwrap();
        assert!(rule.fraction(0, 0, 400, 400) < 0.51);
        let area = TissueMask::not_glass(&grey, &settings, 4.0).unwrap();
        assert_eq!(area.fraction(0, 0, 400, 400), 9999.0 / 10000.0);
        assert_eq!(area.level(), 240.0);
        // `contains` in full-resolution pixels: the glass pixel covers [0, 4) x [0, 4).
        assert!(!area.contains(3.9, 3.9));
        assert!(area.contains(4.0, 0.0));
        assert!(area.contains(399.9, 399.9));
        assert!(!area.contains(400.0, 10.0));
        assert!(!area.contains(-0.1, 10.0));
        assert!(!area.contains(f64::NAN, 10.0));
        assert!(!area.contains(1e30, 10.0));
    }

    #[test]
    fn grey_uses_the_reference_weights() {
        let grey = grey_from_rgb(&[255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255], 2, 2).unwrap();
        // 255 * (0.2989 + 0.5870 + 0.1140) in numpy float64 is 254.97449999999998.
        assert_eq!(
            grey.data()[0],
            255.0 * 0.2989 + 255.0 * 0.5870 + 255.0 * 0.1140
        );
        assert_eq!(grey.data()[1], 255.0 * 0.2989);
        assert_eq!(grey.data()[2], 255.0 * 0.5870);
        assert_eq!(grey.data()[3], 255.0 * 0.1140);
        assert!(matches!(
            grey_from_rgb(&[1, 2], 1, 1),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(matches!(
            grey_from_rgb(&[], 0, 1),
            Err(Error::EmptyGrid { .. })
        ));
    }

    #[test]
    fn border_counts_corners_twice() {
        // A 3 x 3 image with a border of 1: 12 top/bottom + left/right values where each
        // corner appears twice. Only the top-left corner is 100, the rest 0: mean 200 / 12.
        let mut grey = Grid::filled(3, 3, 0.0).unwrap();
        grey.data_mut()[0] = 100.0;
        assert_eq!(background_level(&grey, 1, 240.0), 200.0 / 12.0);
        // A border wider than the image takes the whole image from each side.
        assert_eq!(background_level(&grey, 30, 240.0), 100.0 / 9.0);
        assert_eq!(background_level(&grey, 0, 240.0), 240.0);
        assert_eq!(
            background_level(&Grid::filled(5, 5, 250.0).unwrap(), 2, 240.0),
            240.0
        );
    }

    #[test]
    fn tissue_is_darker_than_the_background() {
        // 8 x 8 white slide (grey 250) with a dark 4 x 4 block of tissue at (2..6, 2..6); a
        // border of 2 is all white, so the level is min(250, 240) = 240.
        let mut grey = Grid::filled(8, 8, 250.0).unwrap();
        for y in 2..6 {
            for x in 2..6 {
                grey.data_mut()[y * 8 + x] = 120.0;
            }
        }
        let settings = ProposalSettings {
            tissue_border_px: 2,
            ..Default::default()
        };
        let tissue = TissueMask::detect(&grey, &settings, 4.0).unwrap();
        assert_eq!(tissue.level(), 240.0);
        assert_eq!(crate::mask::mask_area(tissue.mask()), 16);
        // Full resolution is 32 x 32; the whole image is 16 / 64 tissue.
        assert_eq!(tissue.fraction(0, 0, 32, 32), 0.25);
        // The top-left 16 x 16 covers view pixels 0..4: 4 of 16 are tissue.
        assert_eq!(tissue.fraction(0, 0, 16, 16), 0.25);
        assert_eq!(tissue.fraction(8, 8, 16, 16), 1.0);
        // A region that starts inside a view pixel covers that pixel.
        assert_eq!(tissue.fraction(9, 9, 1, 1), 1.0);
        assert_eq!(tissue.fraction(100, 100, 16, 16), 0.0);
        assert_eq!(tissue.fraction(u32::MAX, 0, u32::MAX, 16), 0.0);
        assert!(TissueMask::detect(&grey, &settings, 0.0).is_err());
        assert!(TissueMask::detect(&grey, &settings, f64::NAN).is_err());
    }

    #[test]
    fn equal_to_the_level_is_background() {
        let grey = Grid::new(3, 1, vec![240.0, 240.0, 239.0]).unwrap();
        let settings = ProposalSettings {
            tissue_border_px: 5,
            background_cap: 239.0,
            ..Default::default()
        };
        let tissue = TissueMask::detect(&grey, &settings, 1.0).unwrap();
        assert_eq!(tissue.mask().data(), &[false, false, false]);
    }

    proptest! {
        #[test]
        fn fraction_lies_in_unit_interval(
            values in proptest::collection::vec(0.0f64..255.0, 1..100),
            x in 0u32..200, y in 0u32..200, w in 0u32..200, h in 0u32..200,
            d in 0.5f64..8.0,
        ) {
            let n = values.len() as u32;
            let grey = Grid::new(n, 1, values).unwrap();
            let tissue = TissueMask::detect(&grey, &ProposalSettings::default(), d).unwrap();
            let f = tissue.fraction(x, y, w, h);
            prop_assert!((0.0..=1.0).contains(&f));
        }
    }
}
