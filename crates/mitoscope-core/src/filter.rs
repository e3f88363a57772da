//! The keep rules of step 4: predicted IoU, stability score and object size.
//!
//! Mirrors the filters in `MaskGenerator.forward` of OMG-Net's `Models/SAM_Masking.py`, in its
//! order: `iou_predictions > pred_iou_thresh`, then `stability > stability_score_thresh`, then
//! `min_mask_region_area < box_area(batched_mask_to_box(masks > 0)) < max_mask_region_area`,
//! all strict. The reference's area bounds are pixels (36 and 3600); ours are um^2 and become
//! pixels through the image's pixel size.

use crate::mask::{BBox, BinaryMask, box_area, mask_area};
use crate::settings::{AreaMeasure, ProposalSettings};
use crate::{Error, Result};

/// The object-size bounds in square pixels, both exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AreaLimits {
    /// Smallest size, exclusive, in px^2.
    pub min_px: f64,
    /// Largest size, exclusive, in px^2.
    pub max_px: f64,
    /// What is measured.
    pub measure: AreaMeasure,
}

impl AreaLimits {
    /// The bounds of `settings` for an image of `microns_per_pixel` um per pixel.
    ///
    /// At 0.25 um/px the defaults give exactly 36 and 3600 px^2, the reference's values.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] when the pixel size is not finite and positive, or when the
    /// bounds overflow to infinity.
    pub fn new(settings: &ProposalSettings, microns_per_pixel: f64) -> Result<Self> {
        if !microns_per_pixel.is_finite() || microns_per_pixel <= 0.0 {
            return Err(Error::InvalidSetting {
                name: "microns_per_pixel",
                reason: "must be finite and positive",
            });
        }
        let pixel_area = microns_per_pixel * microns_per_pixel;
        let (min_px, max_px) = (
            settings.min_area_um2 / pixel_area,
            settings.max_area_um2 / pixel_area,
        );
        if !min_px.is_finite() || !max_px.is_finite() {
            return Err(Error::InvalidSetting {
                name: "microns_per_pixel",
                reason: "too small for the area bounds",
            });
        }
        Ok(Self {
            min_px,
            max_px,
            measure: settings.area_measure,
        })
    }

    /// The size of a mask with box `bbox`, as [`AreaLimits::measure`] says.
    pub fn area_of(&self, mask: &BinaryMask, bbox: &BBox) -> u64 {
        match self.measure {
            AreaMeasure::BoundingBox => box_area(bbox),
            AreaMeasure::MaskPixels => mask_area(mask),
        }
    }

    /// Whether `area` (px^2) lies strictly between the bounds.
    pub fn contains(&self, area: u64) -> bool {
        let area = area as f64;
        area > self.min_px && area < self.max_px
    }
}

/// Whether a mask's predicted IoU passes: strictly above the threshold, rounded to `f32` as torch
/// compares a float32 tensor with a Python float.
pub fn keep_by_pred_iou(pred_iou: f32, pred_iou_thresh: f64) -> bool {
    pred_iou > pred_iou_thresh as f32
}

/// Whether a mask's stability score passes: strictly above the threshold (OMG-Net; SAM's
/// automatic generator uses `>=`), the threshold rounded to `f32`.
pub fn keep_by_stability(stability: f32, stability_score_thresh: f64) -> bool {
    stability > stability_score_thresh as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Grid;

    #[test]
    fn defaults_at_quarter_micron_are_the_reference_pixels() {
        let limits = AreaLimits::new(&ProposalSettings::default(), 0.25).unwrap();
        assert_eq!((limits.min_px, limits.max_px), (36.0, 3600.0));
        assert!(!limits.contains(36));
        assert!(limits.contains(37));
        assert!(limits.contains(3599));
        assert!(!limits.contains(3600));
        assert!(AreaLimits::new(&ProposalSettings::default(), 0.0).is_err());
        assert!(AreaLimits::new(&ProposalSettings::default(), f64::NAN).is_err());
        assert!(AreaLimits::new(&ProposalSettings::default(), 1e-300).is_err());
    }

    #[test]
    fn area_measures() {
        // A 7 x 7 block of pixels: box area 6 * 6 = 36 (rejected, as in the reference), 49 mask
        // pixels (kept when measuring pixels).
        let mask = Grid::filled(7, 7, true).unwrap();
        let bbox = crate::mask::mask_to_box(&mask).unwrap();
        let by_box = AreaLimits::new(&ProposalSettings::default(), 0.25).unwrap();
        assert_eq!(by_box.area_of(&mask, &bbox), 36);
        assert!(!by_box.contains(by_box.area_of(&mask, &bbox)));
        let settings = ProposalSettings {
            area_measure: AreaMeasure::MaskPixels,
            ..Default::default()
        };
        let by_pixels = AreaLimits::new(&settings, 0.25).unwrap();
        assert_eq!(by_pixels.area_of(&mask, &bbox), 49);
        assert!(by_pixels.contains(49));
    }

    #[test]
    fn score_filters_are_strict() {
        assert!(!keep_by_pred_iou(0.8, 0.8));
        assert!(keep_by_pred_iou(0.800_001, 0.8));
        assert!(!keep_by_stability(0.8, 0.8));
        assert!(keep_by_stability(1.0, 0.8));
        assert!(!keep_by_stability(f32::NAN, 0.8));
    }
}
