//! The regular grid of point prompts.
//!
//! Mirrors `build_point_grid` in segment-anything's `utils/amg.py`, and its scaling to the image
//! (`_process_crop` in `automatic_mask_generator.py`, `build_point_grid(n) * 1024` in OMG-Net's
//! `Models/SAM_Masking.py`).

use crate::settings::MAX_POINTS_PER_SIDE;
use crate::{Error, Result};

/// `n` evenly spaced values from `start` to `stop` inclusive, computed as `numpy.linspace`.
///
/// numpy multiplies the index by the step, adds the start and then sets the last value to `stop`
/// exactly; the same order of operations gives the same bits.
fn linspace(start: f64, stop: f64, n: u32) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / f64::from(n - 1);
    let mut values: Vec<f64> = (0..n).map(|i| f64::from(i) * step + start).collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// The `n x n` grid of points in `[0, 1]^2`, as `[x, y]`, x varying fastest.
///
/// The points sit at the centres of an `n x n` partition of the unit square: the first at
/// `1 / (2n)`, the last at `1 - 1 / (2n)`.
///
/// # Errors
///
/// [`Error::InvalidSetting`] if `n_per_side` is 0 or above [`MAX_POINTS_PER_SIDE`].
pub fn build_point_grid(n_per_side: u32) -> Result<Vec<[f64; 2]>> {
    if n_per_side == 0 || n_per_side > MAX_POINTS_PER_SIDE {
        return Err(Error::InvalidSetting {
            name: "points_per_side",
            reason: "must lie in 1..=1024",
        });
    }
    let offset = 1.0 / (2.0 * f64::from(n_per_side));
    let one_side = linspace(offset, 1.0 - offset, n_per_side);
    let points = one_side
        .iter()
        .flat_map(|&y| one_side.iter().map(move |&x| [x, y]))
        .collect();
    Ok(points)
}

/// The grid of [`build_point_grid`] in pixel coordinates of a `width x height` tile.
///
/// x is scaled by the width and y by the height, as segment-anything scales the grid by the
/// crop size; OMG-Net's tiles are square (1024), where both are the tile size.
///
/// # Errors
///
/// As [`build_point_grid`].
pub fn build_tile_point_grid(n_per_side: u32, width: u32, height: u32) -> Result<Vec<[f64; 2]>> {
    let (w, h) = (f64::from(width), f64::from(height));
    let points = build_point_grid(n_per_side)?;
    Ok(points.into_iter().map(|[x, y]| [x * w, y * h]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_segment_anything() {
        // Expected values printed by segment_anything.utils.amg.build_point_grid (numpy float64,
        // repr) in tests/reference/.venv.
        assert_eq!(build_point_grid(1).unwrap(), vec![[0.5, 0.5]]);
        assert_eq!(
            build_point_grid(2).unwrap(),
            vec![[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
        );
        let g3 = build_point_grid(3).unwrap();
        let (a, b, c) = (0.16666666666666666, 0.5, 0.8333333333333334);
        assert_eq!(
            g3,
            vec![
                [a, a],
                [b, a],
                [c, a],
                [a, b],
                [b, b],
                [c, b],
                [a, c],
                [b, c],
                [c, c]
            ]
        );

        let g32 = build_point_grid(32).unwrap();
        assert_eq!(g32.len(), 1024);
        assert_eq!(g32[1][0], 0.046875);
        assert_eq!(g32[31][0], 0.984375);
        assert_eq!(g32[32][1], 0.046875);

        // build_point_grid(32) * 1024, as SAM_Masking.py.
        let tile = build_tile_point_grid(32, 1024, 1024).unwrap();
        assert_eq!(tile[5][0], 176.0);
        assert_eq!(tile[1023][1], 1008.0);
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(build_point_grid(0).is_err());
        assert!(build_point_grid(MAX_POINTS_PER_SIDE + 1).is_err());
        assert!(build_tile_point_grid(0, 1024, 1024).is_err());
    }

    proptest! {
        #[test]
        fn grid_is_centred_and_inside(n in 1u32..=128) {
            let g = build_point_grid(n).unwrap();
            prop_assert_eq!(g.len() as u64, u64::from(n) * u64::from(n));
            for (i, p) in g.iter().enumerate() {
                prop_assert!(p[0] > 0.0 && p[0] < 1.0 && p[1] > 0.0 && p[1] < 1.0);
                // x varies fastest.
                prop_assert_eq!(p[0], g[i % n as usize][0]);
                prop_assert_eq!(p[1], g[(i / n as usize) * n as usize][1]);
            }
            // Symmetric about the centre.
            for k in 0..n as usize {
                let (lo, hi) = (g[k][0], g[n as usize - 1 - k][0]);
                prop_assert!((lo + hi - 1.0).abs() < 1e-12);
            }
        }
    }
}
