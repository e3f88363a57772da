//! Nucleus seeds: where to put the box prompts of the embedded default model.
//!
//! LiteMedSAM, the default proposal model, was fine-tuned with box prompts, and scores the
//! OMG-Net point grid too low for any threshold to separate nuclei from the rest (see
//! `docs/research/litemedsam-prompts.md`). Instead, one box prompt is centred on each nucleus
//! seed: a local maximum of the haematoxylin stain.
//!
//! 1. [`haematoxylin`]: Ruifrok and Johnston's colour deconvolution with the H&E-DAB matrix of
//!    scikit-image's `rgb2hed`, keeping the haematoxylin concentration.
//! 2. [`gaussian_blur`]: a separable Gaussian (radius `floor(3 sigma)`, mirror padding as
//!    PyTorch's `reflect`).
//! 3. [`otsu_threshold`] of the smoothed channel over the non-white pixels (mean of R, G, B
//!    below `seed_tissue_max_grey`), with numpy's 256-bin histogram.
//! 4. [`local_maxima`]: pixels equal to the maximum of their `(2 r + 1)^2` window and strictly
//!    above the threshold (PyTorch's `max_pool2d` with `-inf` padding, then `==`).
//!
//! The reference is `seeds` in `tests/reference/explore_prompts.py`; the parity fixture is
//! written by `tests/reference/make_seed_fixture.py`. The lengths there are pixels at
//! 0.25 um/px; here they are micrometres (see [`SeedParams::new`]), so the same nuclei are found
//! at any pixel size.

use crate::mask::{Grid, check_rgb};
use crate::settings::ProposalSettings;
use crate::{Error, Result};

/// scikit-image's `hed_from_rgb`: the inverse of `rgb_from_hed` =
/// `[[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]`; only its first column (the
/// haematoxylin weights of the R, G and B optical densities) is needed, computed once by
/// [`haematoxylin_weights`]. Shared with [`crate::augment`].
pub(crate) const RGB_FROM_HED: [[f64; 3]; 3] =
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Smallest light fraction before the logarithm, as scikit-image (`np.maximum(rgb, 1e-6)`).
pub(crate) const MIN_LIGHT: f64 = 1e-6;

/// Bins of the Otsu histogram (numpy's `np.histogram(values, 256)`).
const OTSU_BINS: usize = 256;

/// A pixel whose channels are all at most this is "no data" (the black padding of a crop cut
/// beyond a slide's edge), not stain.
pub const NO_DATA_MAX: u8 = 10;

/// Fewest non-white pixels for a threshold; below, a tile has no seeds (as the reference's
/// `tissue.sum() > 100`).
const MIN_TISSUE_PIXELS: usize = 101;

/// The first column of the inverse of [`RGB_FROM_HED`], by cofactors in `f64`.
fn haematoxylin_weights() -> [f64; 3] {
    let m = RGB_FROM_HED;
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    // Column 0 of the inverse is row 0 of the cofactor matrix over the determinant.
    [
        (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det,
        -(m[1][0] * m[2][2] - m[1][2] * m[2][0]) / det,
        (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det,
    ]
}

/// The haematoxylin concentration of each pixel of interleaved 8-bit RGB.
///
/// As scikit-image's `rgb2hed`: optical density `log(max(c / 255, 1e-6)) / log(1e-6)` per
/// channel, times `hed_from_rgb`, clipped at 0; channel H.
///
/// NOTE: a "no data" pixel (every channel at most [`NO_DATA_MAX`]) gets 0, like white glass.
/// `rgb2hed` gives pure black the largest haematoxylin of all (about 1.21), so the black band of
/// a crop cut beyond a slide's edge would take every seed and lift the Otsu threshold above the
/// real nuclei. No stained tissue is that dark.
///
/// # Errors
///
/// [`Error::EmptyGrid`], [`Error::TooLarge`] or [`Error::SizeMismatch`] for an unusable size.
pub fn haematoxylin(rgb: &[u8], width: u32, height: u32) -> Result<Grid<f64>> {
    check_rgb(rgb, width, height)?;
    let weights = haematoxylin_weights();
    let log_min = MIN_LIGHT.ln();
    // 256 possible values per channel: the optical densities are a lookup.
    let density: Vec<f64> = (0..=255u8)
        .map(|c| (f64::from(c) / 255.0).max(MIN_LIGHT).ln() / log_min)
        .collect();
    let data = rgb
        .chunks_exact(3)
        .map(|p| {
            if p.iter().all(|&c| c <= NO_DATA_MAX) {
                return 0.0;
            }
            let od = |i: usize| density[usize::from(p[i])];
            (od(0) * weights[0] + od(1) * weights[1] + od(2) * weights[2]).max(0.0)
        })
        .collect();
    Grid::new(width, height, data)
}

/// Index `i` (which may lie up to any distance outside `0..len`) mirrored into `0..len` without
/// repeating the edge (`-1 -> 1`, `len -> len - 2`), as PyTorch's and numpy's `reflect`.
fn reflect(i: i64, len: usize) -> usize {
    let len = len as i64;
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let m = i.rem_euclid(period);
    // In 0..len after folding the second half of the period back.
    (if m < len { m } else { period - m }) as usize
}

/// The normalised 1-D Gaussian kernel of `sigma` with radius `floor(3 sigma)`.
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma) as i64;
    let raw: Vec<f64> = (-radius..=radius)
        .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|v| v / total).collect()
}

/// Separable Gaussian smoothing, rows then columns, with mirror padding.
///
/// # Errors
///
/// [`Error::InvalidSetting`] for a `sigma` that is not finite and positive.
pub fn gaussian_blur(grid: &Grid<f64>, sigma: f64) -> Result<Grid<f64>> {
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(Error::InvalidSetting {
            name: "seed_sigma_um",
            reason: "must be finite and positive",
        });
    }
    let kernel = gaussian_kernel(sigma);
    let radius = (kernel.len() / 2) as i64;
    let (w, h) = (grid.width() as usize, grid.height() as usize);
    let src = grid.data();

    let mut rows = vec![0.0; w * h];
    for y in 0..h {
        let line = &src[y * w..(y + 1) * w];
        for x in 0..w {
            rows[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, g)| g * line[reflect(x as i64 + k as i64 - radius, w)])
                .sum();
        }
    }
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, g)| g * rows[reflect(y as i64 + k as i64 - radius, h) * w + x])
                .sum();
        }
    }
    Grid::new(grid.width(), grid.height(), out)
}

/// Otsu's threshold of `values` on numpy's 256-bin histogram between their minimum and maximum:
/// the centre of the bin that maximises the between-class variance (the first such bin).
///
/// `None` for no values or a non-finite one.
pub fn otsu_threshold(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo == hi {
        // numpy widens an empty range by 0.5 on each side.
        lo -= 0.5;
        hi += 0.5;
    }
    let edges: Vec<f64> = (0..=OTSU_BINS)
        .map(|i| lo + (hi - lo) * i as f64 / OTSU_BINS as f64)
        .collect();
    let mut hist = [0u64; OTSU_BINS];
    for &v in values {
        // numpy: scaled index, then corrected against the edges; the maximum goes in the last bin.
        let mut bin = (((v - lo) * (OTSU_BINS as f64 / (hi - lo))) as usize).min(OTSU_BINS - 1);
        if v < edges[bin] {
            bin = bin.saturating_sub(1);
        } else if bin + 1 < OTSU_BINS && v >= edges[bin + 1] {
            bin += 1;
        }
        hist[bin] += 1;
    }
    let total = values.len() as f64;
    let mids: Vec<f64> = edges.windows(2).map(|e| (e[0] + e[1]) / 2.0).collect();
    let mean_total: f64 = hist
        .iter()
        .zip(&mids)
        .map(|(&n, m)| n as f64 / total * m)
        .sum();
    let (mut weight, mut mean) = (0.0, 0.0);
    let mut best = (f64::NEG_INFINITY, mids[0]);
    for (&n, &m) in hist.iter().zip(&mids) {
        let p = n as f64 / total;
        weight += p;
        mean += p * m;
        let between = (mean_total * weight - mean).powi(2) / (weight * (1.0 - weight)).max(1e-12);
        if between > best.0 {
            best = (between, m);
        }
    }
    Some(best.1)
}

/// Pixels `(x, y)` that equal the maximum of their `(2 radius + 1)^2` window (clipped to the
/// grid) and lie strictly above `threshold`, row by row.
///
/// On a plateau every pixel equal to the window maximum is a seed, as in the reference.
pub fn local_maxima(grid: &Grid<f64>, radius: u32, threshold: f64) -> Vec<[u32; 2]> {
    let (w, h) = (grid.width() as usize, grid.height() as usize);
    let r = radius as usize;
    let data = grid.data();
    // Separable running maximum: over rows, then over columns.
    let mut row_max = vec![f64::NEG_INFINITY; w * h];
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            row_max[y * w + x] = data[y * w + a..=y * w + b]
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        }
    }
    let mut seeds = Vec::new();
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            let v = data[y * w + x];
            if v <= threshold {
                continue;
            }
            let peak = (a..=b).fold(f64::NEG_INFINITY, |m, yy| m.max(row_max[yy * w + x]));
            if v == peak {
                // x < width and y < height, both u32.
                seeds.push([x as u32, y as u32]);
            }
        }
    }
    seeds
}

/// Seed detection lengths in pixels of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedParams {
    /// Gaussian sigma, pixels.
    pub sigma_px: f64,
    /// Half-width of the local-maximum window, pixels.
    pub radius_px: u32,
    /// Side of the box prompt centred on each seed, pixels.
    pub box_px: f64,
    /// A pixel whose mean of R, G and B is at least this is white (not tissue) for the Otsu
    /// threshold.
    pub tissue_max_grey: f64,
}

impl SeedParams {
    /// The settings' lengths in um converted with the pixel size; the window radius is rounded
    /// to the nearest pixel.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for a pixel size that is not finite and positive, or lengths
    /// that become unusable (a sigma or box below a tenth of a pixel, a radius above 1024 px).
    pub fn new(settings: &ProposalSettings, microns_per_pixel: f64) -> Result<Self> {
        if !microns_per_pixel.is_finite() || microns_per_pixel <= 0.0 {
            return Err(Error::InvalidSetting {
                name: "microns_per_pixel",
                reason: "must be finite and positive",
            });
        }
        let sigma_px = settings.seed_sigma_um / microns_per_pixel;
        let radius = (settings.seed_radius_um / microns_per_pixel).round();
        let box_px = settings.seed_box_um / microns_per_pixel;
        if sigma_px.is_nan() || sigma_px < 0.1 {
            return Err(Error::InvalidSetting {
                name: "seed_sigma_um",
                reason: "must be at least a tenth of a pixel",
            });
        }
        if !(0.0..=1024.0).contains(&radius) {
            return Err(Error::InvalidSetting {
                name: "seed_radius_um",
                reason: "must be between 0 and 1024 pixels",
            });
        }
        if box_px.is_nan() || box_px < 0.1 {
            return Err(Error::InvalidSetting {
                name: "seed_box_um",
                reason: "must be at least a tenth of a pixel",
            });
        }
        Ok(Self {
            sigma_px,
            radius_px: radius as u32,
            box_px,
            tissue_max_grey: settings.seed_tissue_max_grey,
        })
    }
}

/// The seeds of one image and the threshold they passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Seeds {
    /// Seed pixels `(x, y)`, row by row.
    pub points: Vec<[u32; 2]>,
    /// The Otsu threshold on the smoothed haematoxylin, `None` when the image has too few
    /// non-white pixels for one (then there are no seeds).
    pub threshold: Option<f64>,
}

/// Finds the nucleus seeds of interleaved 8-bit RGB (steps 1 to 4 of the module).
///
/// # Errors
///
/// As [`haematoxylin`] and [`gaussian_blur`].
pub fn nucleus_seeds(rgb: &[u8], width: u32, height: u32, params: &SeedParams) -> Result<Seeds> {
    let h = haematoxylin(rgb, width, height)?;
    let smooth = gaussian_blur(&h, params.sigma_px)?;
    let tissue: Vec<f64> = rgb
        .chunks_exact(3)
        .zip(smooth.data())
        .filter(|(p, _)| {
            (f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2])) / 3.0 < params.tissue_max_grey
                && p.iter().any(|&c| c > NO_DATA_MAX)
        })
        .map(|(_, &v)| v)
        .collect();
    if tissue.len() < MIN_TISSUE_PIXELS {
        return Ok(Seeds {
            points: Vec::new(),
            threshold: None,
        });
    }
    let threshold = otsu_threshold(&tissue);
    let points = match threshold {
        Some(t) => local_maxima(&smooth, params.radius_px, t),
        None => Vec::new(),
    };
    Ok(Seeds { points, threshold })
}

/// The box prompt `[x0, y0, x1, y1]` of side `box_px` centred on each seed, clipped to the
/// image (`0..=width - 1`, `0..=height - 1`), as the reference.
pub fn seed_boxes(seeds: &[[u32; 2]], box_px: f64, width: u32, height: u32) -> Vec<[f64; 4]> {
    let half = box_px / 2.0;
    let (xmax, ymax) = (f64::from(width) - 1.0, f64::from(height) - 1.0);
    seeds
        .iter()
        .map(|&[x, y]| {
            let (x, y) = (f64::from(x), f64::from(y));
            [
                (x - half).max(0.0),
                (y - half).max(0.0),
                (x + half).min(xmax),
                (y + half).min(ymax),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn weights_are_the_inverse_matrix_column() {
        let w = haematoxylin_weights();
        // hed_from_rgb[:, 0] from numpy.linalg.inv(rgb_from_hed).
        let expected = [1.877_982_76, -0.065_908_06, -0.601_907_44];
        for (a, b) in w.iter().zip(expected) {
            assert!((a - b).abs() < 1e-7, "{w:?}");
        }
        // rgb_from_hed[0] . column 0 = 1, rows 1 and 2 . column 0 = 0.
        for (row, target) in RGB_FROM_HED.iter().zip([1.0, 0.0, 0.0]) {
            let dot: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
            assert!((dot - target).abs() < 1e-12);
        }
    }

    #[test]
    fn white_has_no_haematoxylin_and_blue_has_some() {
        let h = haematoxylin(&[255, 255, 255, 60, 40, 140], 2, 1).unwrap();
        assert_eq!(h.data()[0], 0.0);
        assert!(h.data()[1] > 0.1);
        assert!(matches!(
            haematoxylin(&[0; 5], 2, 1),
            Err(Error::SizeMismatch { .. })
        ));
    }

    #[test]
    fn black_padding_is_no_data() {
        let h = haematoxylin(&[0, 0, 0, 10, 10, 10, 11, 11, 11], 3, 1).unwrap();
        assert_eq!(&h.data()[..2], &[0.0, 0.0]);
        assert!(h.data()[2] > 0.0);
        // A tile of tissue-coloured noise with a black band: no seed in the band.
        let (w, h) = (64u32, 64u32);
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let dark = (x / 16 + y / 16) % 2 == 0 && x % 16 > 4 && y % 16 > 4;
                let pixel = if y >= 48 {
                    [0, 0, 0]
                } else if dark {
                    [80, 40, 130]
                } else {
                    [230, 170, 210]
                };
                rgb.extend_from_slice(&pixel);
            }
        }
        let p = SeedParams::new(&ProposalSettings::lite_medsam(), 0.25).unwrap();
        let seeds = nucleus_seeds(&rgb, w, h, &p).unwrap();
        assert!(!seeds.points.is_empty());
        assert!(
            seeds.points.iter().all(|&[_, y]| y < 48),
            "{:?}",
            seeds.points
        );
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]);
        assert_eq!(reflect(-7, 1), 0);
    }

    #[test]
    fn blur_keeps_constants_and_mass() {
        let flat = Grid::filled(9, 5, 3.0).unwrap();
        let out = gaussian_blur(&flat, 2.0).unwrap();
        assert!(out.data().iter().all(|v| (v - 3.0).abs() < 1e-12));
        let mut spike = Grid::filled(31, 31, 0.0).unwrap();
        spike.data_mut()[15 * 31 + 15] = 1.0;
        let out = gaussian_blur(&spike, 2.0).unwrap();
        let total: f64 = out.data().iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(local_maxima(&out, 8, 0.0), vec![[15, 15]]);
        assert!(gaussian_blur(&flat, 0.0).is_err());
        assert!(gaussian_blur(&flat, f64::NAN).is_err());
    }

    #[test]
    fn otsu_splits_two_groups() {
        let mut values = vec![1.0; 50];
        values.extend(vec![5.0; 50]);
        let t = otsu_threshold(&values).unwrap();
        assert!(t > 1.0 && t < 5.0, "{t}");
        assert_eq!(otsu_threshold(&[]), None);
        assert_eq!(otsu_threshold(&[1.0, f64::NAN]), None);
        // A constant: numpy's widened range, first bin wins.
        assert!(otsu_threshold(&[2.0; 10]).is_some());
    }

    #[test]
    fn maxima_respect_the_window_and_threshold() {
        let mut g = Grid::filled(20, 1, 0.0).unwrap();
        g.data_mut()[2] = 5.0;
        g.data_mut()[6] = 4.0; // within radius 4 of the 5.0: suppressed
        g.data_mut()[12] = 3.0;
        g.data_mut()[18] = 1.0; // not above the threshold
        assert_eq!(local_maxima(&g, 4, 2.0), vec![[2, 0], [12, 0]]);
        assert_eq!(local_maxima(&g, 3, 2.0), vec![[2, 0], [6, 0], [12, 0]]);
    }

    #[test]
    fn params_scale_with_the_pixel_size() {
        let s = ProposalSettings::lite_medsam();
        let p = SeedParams::new(&s, 0.25).unwrap();
        assert_eq!((p.sigma_px, p.radius_px, p.box_px), (2.0, 8, 32.0));
        let p = SeedParams::new(&s, 0.5).unwrap();
        assert_eq!((p.sigma_px, p.radius_px, p.box_px), (1.0, 4, 16.0));
        assert!(SeedParams::new(&s, 0.0).is_err());
        assert!(SeedParams::new(&s, f64::NAN).is_err());
    }

    #[test]
    fn boxes_are_clipped_to_the_image() {
        let b = seed_boxes(&[[2, 100], [50, 50]], 32.0, 64, 120);
        assert_eq!(b[0], [0.0, 84.0, 18.0, 116.0]);
        assert_eq!(b[1], [34.0, 34.0, 63.0, 66.0]);
    }

    #[test]
    fn a_white_image_has_no_seeds() {
        let p = SeedParams::new(&ProposalSettings::lite_medsam(), 0.25).unwrap();
        let seeds = nucleus_seeds(&vec![255; 3 * 64 * 64], 64, 64, &p).unwrap();
        assert_eq!(seeds.points, Vec::<[u32; 2]>::new());
        assert_eq!(seeds.threshold, None);
    }

    proptest! {
        #[test]
        fn seeds_never_panic_and_lie_inside(
            w in 1u32..24, h in 1u32..24, seed in any::<u64>(),
        ) {
            let mut state = seed;
            let rgb: Vec<u8> = (0..3 * w * h)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let p = SeedParams::new(&ProposalSettings::lite_medsam(), 0.25).unwrap();
            let seeds = nucleus_seeds(&rgb, w, h, &p).unwrap();
            for [x, y] in seeds.points {
                prop_assert!(x < w && y < h);
            }
        }
    }
}
