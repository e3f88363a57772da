//! One detection per figure: the detections that repeat a surer one close by are dropped.
//!
//! The proposal stage can segment one mitotic figure as several objects: the two chromosome
//! sets of an anaphase or a telophase, the pieces of a clumped metaphase, a figure and the
//! figure with its halo. Their boxes barely overlap, so the box NMS of the proposal stage (IoU
//! 0.1) keeps them all; each can look like a figure to the classifier, and the MIDOG count
//! scores every detection after the first on a figure as a false positive. With the default
//! classifier 43 of the 84 false positives on the validation split were such repeats
//! (`docs/classifier.md`).
//!
//! [`repeats`] is a greedy suppression, as box NMS but on the detection points: detections in
//! order of decreasing probability (then in input order), each one within [`REPEAT_RADIUS_UM`]
//! of a detection already kept is a repeat. It runs on the detections above the threshold, so
//! what it drops depends on the threshold, as the count does.
//!
//! NOTE: This step is not in OMG-Net's code, which reports every proposal above 0.5; see
//! `docs/deviations.md`. Two real figures closer than the radius are counted once.

use std::collections::HashMap;

use crate::matching::Detection;

/// Detections closer than this (um) to a surer one are repeats of it: the MIDOG matching
/// radius, the distance within which the count takes two points for one figure.
pub const REPEAT_RADIUS_UM: f64 = 7.5;

/// For each of `detections`, whether it lies within `radius` (pixels, inclusive) of a detection
/// with a higher score (or the same score, earlier in the input) that is itself kept.
///
/// A radius that is not a positive number marks nothing.
pub fn repeats(detections: &[Detection], radius: f64) -> Vec<bool> {
    let mut repeat = vec![false; detections.len()];
    if !(radius > 0.0 && radius.is_finite()) {
        return repeat;
    }
    let mut order: Vec<usize> = (0..detections.len()).collect();
    order.sort_by(|&a, &b| {
        detections[b]
            .score
            .total_cmp(&detections[a].score)
            .then(a.cmp(&b))
    });
    // The kept detections by grid cell of the radius's size: a repeat is in one of the nine
    // cells around its own.
    let cell = |d: &Detection| ((d.x / radius).floor() as i64, (d.y / radius).floor() as i64);
    let mut kept: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for i in order {
        let d = &detections[i];
        let (cx, cy) = cell(d);
        let near = (-1..=1).any(|dx| {
            (-1..=1).any(|dy| {
                kept.get(&(cx + dx, cy + dy)).is_some_and(|cell| {
                    cell.iter().any(|&k| {
                        let other = &detections[k];
                        (other.x - d.x).hypot(other.y - d.y) <= radius
                    })
                })
            })
        });
        if near {
            repeat[i] = true;
        } else {
            kept.entry((cx, cy)).or_default().push(i);
        }
    }
    repeat
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f64, y: f64, score: f64) -> Detection {
        Detection { x, y, score }
    }

    #[test]
    fn the_surer_detection_stays_and_its_neighbours_go() {
        let detections = [
            det(100.0, 100.0, 0.6),
            det(120.0, 100.0, 0.9), // the surest
            det(150.0, 100.0, 0.8), // exactly 30 px from the surest: a repeat
            det(175.0, 100.0, 0.7), // 55 px from the surest, 25 from a repeat: kept
            det(400.0, 400.0, 0.55),
        ];
        assert_eq!(
            repeats(&detections, 30.0),
            [true, false, true, false, false]
        );
        // Just beyond the radius nothing is a repeat of the surest.
        assert_eq!(
            repeats(&detections, 19.9),
            [false, false, false, false, false]
        );
    }

    #[test]
    fn ties_keep_the_first_and_the_order_of_input_does_not_matter_otherwise() {
        let a = [det(0.0, 0.0, 0.7), det(5.0, 0.0, 0.7)];
        assert_eq!(repeats(&a, 10.0), [false, true]);
        let b = [det(5.0, 0.0, 0.9), det(0.0, 0.0, 0.7)];
        let c = [det(0.0, 0.0, 0.7), det(5.0, 0.0, 0.9)];
        assert_eq!(repeats(&b, 10.0), [false, true]);
        assert_eq!(repeats(&c, 10.0), [true, false]);
    }

    #[test]
    fn neighbours_across_grid_cells_and_odd_input_are_handled() {
        // Across a cell border (cells of 10 px: 9.5 and 10.5 are in different cells), and at
        // negative coordinates.
        let d = [
            det(9.5, 9.5, 0.9),
            det(10.5, 10.5, 0.8),
            det(-3.0, -3.0, 0.7),
        ];
        assert_eq!(repeats(&d, 10.0), [false, true, false]);
        assert_eq!(repeats(&d, 0.0), [false, false, false]);
        assert_eq!(repeats(&d, f64::NAN), [false, false, false]);
        assert!(repeats(&[], 10.0).is_empty());
        let odd = [det(f64::NAN, 0.0, 0.9), det(0.0, 0.0, f64::NAN)];
        assert_eq!(repeats(&odd, 10.0).len(), 2);
    }

    #[test]
    fn a_brute_force_suppression_agrees() {
        // Seeded random points in a 200 px square, radius 17.
        use rand_chacha::ChaCha8Rng;
        use rand_core::{RngCore, SeedableRng};
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut next = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let detections: Vec<Detection> = (0..300)
            .map(|_| det(200.0 * next(), 200.0 * next(), next()))
            .collect();
        let mut order: Vec<usize> = (0..detections.len()).collect();
        order.sort_by(|&a, &b| detections[b].score.total_cmp(&detections[a].score));
        let mut expected = vec![false; detections.len()];
        let mut kept: Vec<usize> = Vec::new();
        for i in order {
            let d = &detections[i];
            if kept
                .iter()
                .any(|&k| (detections[k].x - d.x).hypot(detections[k].y - d.y) <= 17.0)
            {
                expected[i] = true;
            } else {
                kept.push(i);
            }
        }
        assert_eq!(repeats(&detections, 17.0), expected);
        assert!(expected.iter().any(|&r| r) && expected.iter().any(|&r| !r));
    }
}
