//! The pixel size a file states, in micrometres per pixel (mpp), and where it came from.
//!
//! Only values in [`PLAUSIBLE_MPP`] are kept: resolution tags are often a software default
//! (72 or 96 dpi, i.e. 353 or 265 um/px) rather than a measurement, and a caller that trusted
//! one would rescale the image by a factor of a thousand.

use std::ops::RangeInclusive;

/// Pixel sizes kept, in um/px: from 0.01 (beyond any optical microscope) to 10 (a 1x scan).
///
/// Desktop resolutions fall outside and are dropped: 72, 96, 300 and 1200 dpi are 353, 265,
/// 84.7 and 21.2 um/px. A file that states one has no pixel size, so the caller asks for it.
pub const PLAUSIBLE_MPP: RangeInclusive<f64> = 0.01..=10.0;

/// Largest relative difference between the horizontal and vertical pixel size for the pixels
/// to count as square; non-square pixels give no single pixel size.
const SQUARE_TOLERANCE: f64 = 0.01;

/// Micrometres per inch.
const UM_PER_INCH: f64 = 25_400.0;

/// Micrometres per centimetre.
const UM_PER_CM: f64 = 10_000.0;

/// Micrometres per metre.
const UM_PER_M: f64 = 1_000_000.0;

/// Where a pixel size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MppSource {
    /// The `MPP = ...` field of an Aperio SVS `ImageDescription`; preferred over the
    /// resolution tags of the same file.
    AperioDescription,
    /// TIFF `XResolution` / `YResolution` in pixels per centimetre or inch.
    TiffResolution,
    /// The PNG `pHYs` chunk in pixels per metre.
    PngPhys,
    /// OpenSlide's `openslide.mpp-x` / `openslide.mpp-y` properties of a whole-slide image
    /// (which OpenSlide takes from the vendor's metadata).
    OpenSlideProperties,
}

/// A pixel size with its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Mpp {
    /// Micrometres per pixel.
    pub(crate) value: f64,
    /// Where it was read.
    pub(crate) source: MppSource,
}

/// The length unit of a resolution in pixels per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResolutionUnit {
    /// Pixels per inch (TIFF `ResolutionUnit` 2, also its default).
    Inch,
    /// Pixels per centimetre (TIFF `ResolutionUnit` 3).
    Centimetre,
    /// Pixels per metre (PNG `pHYs` unit 1).
    Metre,
}

impl ResolutionUnit {
    fn micrometres(self) -> f64 {
        match self {
            Self::Inch => UM_PER_INCH,
            Self::Centimetre => UM_PER_CM,
            Self::Metre => UM_PER_M,
        }
    }
}

/// `value` if it is a plausible microscope pixel size.
fn plausible(value: f64) -> Option<f64> {
    PLAUSIBLE_MPP.contains(&value).then_some(value)
}

/// The pixel size given by resolutions in pixels per `unit`, if the pixels are square and the
/// size is plausible. A missing vertical resolution counts as equal to the horizontal one.
pub(crate) fn from_resolution(x: f64, y: Option<f64>, unit: ResolutionUnit) -> Option<f64> {
    let to_mpp = |pixels_per_unit: f64| {
        (pixels_per_unit.is_finite() && pixels_per_unit > 0.0)
            .then(|| unit.micrometres() / pixels_per_unit)
    };
    let mpp_x = to_mpp(x)?;
    let mpp_y = match y {
        Some(y) => to_mpp(y)?,
        None => mpp_x,
    };
    // NOTE: non-square pixels are dropped rather than averaged; scanners write square pixels.
    if (mpp_x - mpp_y).abs() > SQUARE_TOLERANCE * mpp_x.max(mpp_y) {
        return None;
    }
    plausible(mpp_x)
}

/// The pixel size given in micrometres per pixel for each axis, if the pixels are square and
/// the size is plausible. A missing vertical size counts as equal to the horizontal one.
#[cfg_attr(not(feature = "openslide"), allow(dead_code))]
pub(crate) fn from_microns(x: f64, y: Option<f64>) -> Option<f64> {
    let y = y.unwrap_or(x);
    if !(x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0) {
        return None;
    }
    if (x - y).abs() > SQUARE_TOLERANCE * x.max(y) {
        return None;
    }
    plausible(x)
}

/// The `MPP` field of an Aperio `ImageDescription`, e.g.
/// `Aperio Image Library v10.0.51\r\n46920x33014 ... |AppMag = 20|MPP = 0.4990|...`.
pub(crate) fn from_aperio_description(description: &str) -> Option<f64> {
    if !description.starts_with("Aperio") {
        return None;
    }
    description
        .split('|')
        .filter_map(|field| field.split_once('='))
        .find(|(key, _)| key.trim() == "MPP")
        .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        .and_then(plausible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_units_convert_to_micrometres() {
        // 20 000 px/cm = 0.5 um/px; 50 800 px/inch = 0.5 um/px; 4 000 000 px/m = 0.25 um/px.
        assert_eq!(
            from_resolution(20_000.0, Some(20_000.0), ResolutionUnit::Centimetre),
            Some(0.5)
        );
        assert_eq!(
            from_resolution(50_800.0, None, ResolutionUnit::Inch),
            Some(0.5)
        );
        assert_eq!(
            from_resolution(4e6, Some(4e6), ResolutionUnit::Metre),
            Some(0.25)
        );
    }

    #[test]
    fn microns_per_pixel_need_square_plausible_pixels() {
        assert_eq!(from_microns(0.499, Some(0.499)), Some(0.499));
        assert_eq!(from_microns(0.25, None), Some(0.25));
        assert_eq!(from_microns(0.25, Some(0.5)), None);
        assert_eq!(from_microns(0.0, None), None);
        assert_eq!(from_microns(f64::NAN, Some(0.25)), None);
        assert_eq!(from_microns(353.0, None), None);
    }

    #[test]
    fn software_defaults_and_nonsense_are_ignored() {
        // 72 dpi = 352.8 um/px: not a microscope.
        assert_eq!(
            from_resolution(72.0, Some(72.0), ResolutionUnit::Inch),
            None
        );
        assert_eq!(from_resolution(0.0, None, ResolutionUnit::Inch), None);
        assert_eq!(from_resolution(f64::NAN, None, ResolutionUnit::Inch), None);
        assert_eq!(
            from_resolution(1e12, None, ResolutionUnit::Centimetre),
            None
        );
        // Non-square pixels.
        assert_eq!(
            from_resolution(20_000.0, Some(40_000.0), ResolutionUnit::Centimetre),
            None
        );
    }

    #[test]
    fn aperio_mpp_is_read_from_the_description() {
        let description = "Aperio Image Library v11.2.1 \r\n46000x32914 [42673,5576 2220x2967] \
                           (240x240) JPEG/RGB Q=30;Aperio Image Library v10.0.51\r\n46920x33014 \
                           [0,100 46000x32914] (256x256) JPEG/RGB Q=30|AppMag = 20|StripeWidth \
                           = 2040|MPP = 0.4990|Left = 25.691574";
        assert_eq!(from_aperio_description(description), Some(0.499));
        assert_eq!(from_aperio_description("Aperio|MPP = abc"), None);
        assert_eq!(from_aperio_description("Aperio|MPP = 0"), None);
        assert_eq!(
            from_aperio_description("Made by something else|MPP = 0.25"),
            None
        );
    }
}
