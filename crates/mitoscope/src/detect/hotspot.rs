//! The hotspot: the circle of a given area that holds the most detections.
//!
//! Exact, by an angular sweep (the classic solution of "the most points a circle of radius r can
//! cover"). If some circle of radius `r` holds a set of points, it can be moved until one of them
//! lies on its boundary without losing any: so for each point `p` it is enough to turn a circle
//! whose boundary passes through `p` around it. A point `q` at distance `d <= 2r` from `p` lies
//! in that circle while the circle's centre, at angle `theta` from `p`, is within
//! `acos(d / 2r)` of the direction from `p` to `q`; sorting these intervals' ends and sweeping
//! over them gives the best angle for `p`. The best over all `p` is the hotspot. Points farther
//! than `2r` from `p` are never in such a circle, so only the neighbours in a grid of cells of
//! side `2r` are visited: `O(n k log k)` for `n` points with at most `k` neighbours each.
//!
//! Points on the boundary count as inside (within a relative tolerance of 1e-9). The centre the
//! sweep finds lies on a boundary; it is then moved to the mean of the points inside when the
//! circle there holds at least as many, which puts it in the middle of the cluster. The count
//! reported is always a direct count at the centre reported.
//!
//! The centre must lie on tissue: `allowed(centre)` says where it may go. The sweep then keeps
//! the best angle whose centre is allowed (the angles tried are the intervals' ends), and the
//! circles centred on the points themselves are candidates too, so that a detection on tissue
//! always gives a hotspot. Where nothing is allowed, the hotspot is the unrestricted one.

use std::collections::HashMap;
use std::f64::consts::TAU;

/// The densest circle of [`densest_circle`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hotspot {
    /// The circle's centre, in the units of the points.
    pub centre: [f64; 2],
    /// The points inside the circle (boundary included).
    pub count: usize,
}

/// Relative tolerance on the radius: points this close to the boundary count as inside.
const TOLERANCE: f64 = 1e-9;

/// The circle of `radius` that holds the most of `points`; `None` without points or for a
/// radius that is not a positive finite number. Points that are not finite are ignored.
///
/// Ties go to the circle found first: through the earliest point in `points`, at the smallest
/// angle from it. The centre is one where `allowed` holds, where there is such a candidate.
pub fn densest_circle(
    points: &[[f64; 2]],
    radius: f64,
    allowed: impl Fn([f64; 2]) -> bool,
) -> Option<Hotspot> {
    let restricted = densest(points, radius, &allowed);
    match restricted {
        Some(_) => restricted,
        None => densest(points, radius, &|_| true),
    }
}

/// [`densest_circle`] among the allowed centres; `None` where no candidate is allowed.
fn densest(
    points: &[[f64; 2]],
    radius: f64,
    allowed: &dyn Fn([f64; 2]) -> bool,
) -> Option<Hotspot> {
    if !(radius.is_finite() && radius > 0.0) {
        return None;
    }
    let points: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .collect();
    if points.is_empty() {
        return None;
    }
    let reach = radius * (1.0 + TOLERANCE);
    let cell = 2.0 * radius;
    let key = |p: [f64; 2]| ((p[0] / cell).floor() as i64, (p[1] / cell).floor() as i64);
    let mut cells: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (i, &p) in points.iter().enumerate() {
        cells.entry(key(p)).or_default().push(i);
    }

    let mut best: Option<(usize, [f64; 2])> = None;
    let mut events: Vec<(f64, i32)> = Vec::new();
    for &p in &points {
        events.clear();
        // The points inside whatever the angle: `p` itself and any at the same place.
        let mut inside_at_zero = 0usize;
        let (cx, cy) = key(p);
        for dy in -1..=1 {
            for dx in -1..=1 {
                for &j in cells
                    .get(&(cx + dx, cy + dy))
                    .map_or(&[][..], Vec::as_slice)
                {
                    let q = points[j];
                    let (vx, vy) = (q[0] - p[0], q[1] - p[1]);
                    let d = vx.hypot(vy);
                    if d <= radius * TOLERANCE {
                        inside_at_zero += 1;
                        continue;
                    }
                    if d > 2.0 * reach {
                        continue;
                    }
                    let half = (d / (2.0 * radius)).min(1.0).acos();
                    let start = (vy.atan2(vx) - half).rem_euclid(TAU);
                    let end = start + 2.0 * half;
                    if end >= TAU {
                        // Wraps past angle 0: inside at 0, leaves at `end - TAU`, back at `start`.
                        inside_at_zero += 1;
                        events.push((end - TAU, -1));
                    } else {
                        events.push((end, -1));
                    }
                    events.push((start, 1));
                }
            }
        }
        // By angle; at the same angle, entries before exits, so touching intervals overlap.
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        let at_angle = |angle: f64| [p[0] + radius * angle.cos(), p[1] + radius * angle.sin()];
        let mut count = inside_at_zero as i64;
        let mut top: Option<(i64, [f64; 2])> = None;
        if allowed(at_angle(0.0)) {
            top = Some((count, at_angle(0.0)));
        }
        for &(at, change) in &events {
            count += i64::from(change);
            if top.is_none_or(|(n, _)| count > n) && allowed(at_angle(at)) {
                top = Some((count, at_angle(at)));
            }
        }
        // The circle centred on `p` itself.
        if allowed(p) {
            let n = count_within(&points, p, reach) as i64;
            if top.is_none_or(|(t, _)| n > t) {
                top = Some((n, p));
            }
        }
        if let Some((n, centre)) = top {
            let n = n.max(0) as usize;
            if best.is_none_or(|(b, _)| n > b) {
                best = Some((n, centre));
            }
        }
    }

    let (_, centre) = best?;
    let count = count_within(&points, centre, reach);
    let hotspot = Hotspot { centre, count };
    Some(recentred(&points, hotspot, reach, allowed))
}

/// `hotspot` moved to the mean of its points when the circle there holds at least as many.
fn recentred(
    points: &[[f64; 2]],
    hotspot: Hotspot,
    reach: f64,
    allowed: &dyn Fn([f64; 2]) -> bool,
) -> Hotspot {
    let inside: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|&p| distance(p, hotspot.centre) <= reach)
        .collect();
    if inside.is_empty() {
        return hotspot;
    }
    let n = inside.len() as f64;
    let mean = [
        inside.iter().map(|p| p[0]).sum::<f64>() / n,
        inside.iter().map(|p| p[1]).sum::<f64>() / n,
    ];
    let count = count_within(points, mean, reach);
    if count >= hotspot.count && allowed(mean) {
        Hotspot {
            centre: mean,
            count,
        }
    } else {
        hotspot
    }
}

/// How many of `points` lie within `reach` of `centre`.
pub fn count_within(points: &[[f64; 2]], centre: [f64; 2], reach: f64) -> usize {
    points
        .iter()
        .filter(|&&p| distance(p, centre) <= reach)
        .count()
}

fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hotspot with its centre anywhere.
    fn anywhere(points: &[[f64; 2]], radius: f64) -> Option<Hotspot> {
        densest_circle(points, radius, |_| true)
    }

    /// Three points around (0, 0) and five around (100, 100).
    fn two_clusters() -> Vec<[f64; 2]> {
        let mut points = vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        points.extend([
            [100.0, 100.0],
            [102.0, 100.0],
            [98.0, 100.0],
            [100.0, 103.0],
            [100.0, 97.0],
        ]);
        points
    }

    #[test]
    fn the_centre_stays_on_tissue() {
        // The cluster of five lies on glass (x > 90 is not allowed).
        let points = two_clusters();
        let on_tissue = |c: [f64; 2]| c[0] <= 90.0;
        let h = densest_circle(&points, 5.0, on_tissue).unwrap();
        assert_eq!(h.count, 3);
        assert!(on_tissue(h.centre), "{:?}", h.centre);
        // A centre at the edge of the allowed area reaches into the dense cluster.
        let edge = |c: [f64; 2]| c[0] <= 96.0;
        let h = densest_circle(&points, 5.0, edge).unwrap();
        assert!(edge(h.centre) && h.count >= 3, "{h:?}");
        // Where nothing is allowed, the hotspot is the unrestricted one.
        let h = densest_circle(&points, 5.0, |_| false).unwrap();
        assert_eq!(h.count, 5);
    }

    #[test]
    fn nothing_to_count_gives_no_hotspot() {
        assert_eq!(anywhere(&[], 10.0), None);
        assert_eq!(anywhere(&[[0.0, 0.0]], 0.0), None);
        assert_eq!(anywhere(&[[0.0, 0.0]], f64::NAN), None);
        assert_eq!(anywhere(&[[f64::NAN, 0.0]], 1.0), None);
    }

    #[test]
    fn a_single_detection_is_its_own_hotspot() {
        let h = anywhere(&[[5.0, 7.0]], 3.0).unwrap();
        assert_eq!(h.count, 1);
        assert_eq!(h.centre, [5.0, 7.0]);
    }

    #[test]
    fn the_larger_of_two_clusters_wins() {
        let points = two_clusters();
        let h = anywhere(&points, 5.0).unwrap();
        assert_eq!(h.count, 5);
        // Recentred on the cluster's mean.
        assert!((h.centre[0] - 100.0).abs() < 1e-9 && (h.centre[1] - 100.0).abs() < 1e-9);
    }

    #[test]
    fn points_a_diameter_apart_fit_and_farther_ones_do_not() {
        // Radius 1: two points 2 apart touch the circle centred between them.
        let h = anywhere(&[[0.0, 0.0], [2.0, 0.0]], 1.0).unwrap();
        assert_eq!(h.count, 2);
        assert!((h.centre[0] - 1.0).abs() < 1e-9 && h.centre[1].abs() < 1e-9);
        let h = anywhere(&[[0.0, 0.0], [2.001, 0.0]], 1.0).unwrap();
        assert_eq!(h.count, 1);
    }

    #[test]
    fn a_row_of_points_counts_those_within_a_diameter() {
        // Points every 1.0 along x; radius 2.5 covers a diameter of 5: six points (0..=5).
        let points: Vec<[f64; 2]> = (0..20).map(|i| [f64::from(i), 0.0]).collect();
        assert_eq!(anywhere(&points, 2.5).unwrap().count, 6);
        // Radius 2.4: a diameter of 4.8 covers five.
        assert_eq!(anywhere(&points, 2.4).unwrap().count, 5);
    }

    #[test]
    fn three_points_on_a_circle_are_found_by_their_circumcircle() {
        // An equilateral triangle of side sqrt(3): its circumradius is 1, so radius 1 holds all
        // three only at the circumcentre (0, 0), which no point and no pair's midpoint is.
        let points = [
            [1.0, 0.0],
            [-0.5, 3f64.sqrt() / 2.0],
            [-0.5, -(3f64.sqrt()) / 2.0],
        ];
        let h = anywhere(&points, 1.0).unwrap();
        assert_eq!(h.count, 3);
        assert!(
            h.centre[0].abs() < 1e-6 && h.centre[1].abs() < 1e-6,
            "{h:?}"
        );
        // A hair smaller, two at most.
        assert_eq!(anywhere(&points, 0.999).unwrap().count, 2);
    }

    #[test]
    fn coincident_points_all_count() {
        let h = anywhere(&[[3.0, 3.0], [3.0, 3.0], [3.0, 3.0], [50.0, 50.0]], 1.0).unwrap();
        assert_eq!(h.count, 3);
    }

    /// The most points a circle of `radius` holds, by brute force: every circle through two
    /// points (both centres) and every circle centred on a point.
    fn brute_force(points: &[[f64; 2]], radius: f64) -> usize {
        let reach = radius * (1.0 + TOLERANCE);
        let mut best = 0;
        for (i, &a) in points.iter().enumerate() {
            best = best.max(count_within(points, a, reach));
            for &b in &points[i + 1..] {
                let d = distance(a, b);
                if d == 0.0 || d > 2.0 * radius {
                    continue;
                }
                let mid = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
                let h = (radius * radius - d * d / 4.0).max(0.0).sqrt();
                let (ux, uy) = ((b[1] - a[1]) / d, (a[0] - b[0]) / d);
                for s in [-1.0, 1.0] {
                    let c = [mid[0] + s * h * ux, mid[1] + s * h * uy];
                    best = best.max(count_within(points, c, reach));
                }
            }
        }
        best
    }

    #[test]
    fn equals_brute_force_on_random_points() {
        // A fixed linear congruential generator: the same points on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..60 {
            let n = 2 + case % 40;
            let points: Vec<[f64; 2]> = (0..n).map(|_| [next() * 100.0, next() * 60.0]).collect();
            let radius = 3.0 + next() * 25.0;
            let h = anywhere(&points, radius).unwrap();
            assert_eq!(
                h.count,
                brute_force(&points, radius),
                "case {case}: {n} points, radius {radius}"
            );
            assert_eq!(
                h.count,
                count_within(&points, h.centre, radius * (1.0 + TOLERANCE))
            );
        }
    }
}
