//! Box IoU and greedy box non-maximum suppression.
//!
//! Mirrors torchvision's `ops.box_iou` and `ops.nms` (its CPU kernel, `nms_kernel.cpp`), which
//! OMG-Net's `Models/SAM_Masking.py` calls as `batched_nms` with a single category, on boxes
//! converted to float32 and ranked by SAM's predicted IoU.

use crate::mask::BBox;
use crate::{Error, Result};

/// The box as torchvision sees it after `.float()`: `[x0, y0, x1, y1]` in `f32`.
fn as_f32(b: &BBox) -> [f32; 4] {
    [b.x0() as f32, b.y0() as f32, b.x1() as f32, b.y1() as f32]
}

/// `(x1 - x0) * (y1 - y0)` in `f32`.
fn area_f32(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// Intersection over union in `f32`, operation by operation as torchvision; NaN for 0 / 0.
fn raw_iou(a: &[f32; 4], area_a: f32, b: &[f32; 4], area_b: f32) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area_a + area_b - inter)
}

/// Intersection over union of two boxes, with areas `(x1 - x0) * (y1 - y0)` as torchvision.
///
/// Computed in `f32` in torchvision's order of operations, so it matches `box_iou` bit for bit.
///
/// NOTE: two boxes of zero area (one-pixel lines or points) have a union of 0, where torchvision
/// returns NaN; we return 0.0. NMS uses torchvision's NaN internally and so keeps both boxes,
/// exactly as torchvision does.
pub fn box_iou(a: &BBox, b: &BBox) -> f32 {
    let (a, b) = (as_f32(a), as_f32(b));
    let iou = raw_iou(&a, area_f32(&a), &b, area_f32(&b));
    if iou.is_nan() { 0.0 } else { iou }
}

/// Greedy NMS: the indices of the boxes kept, highest score first.
///
/// As torchvision's `nms`: boxes are visited by descending score (a stable sort, so equal scores
/// keep their input order); a visited box that is not yet suppressed is kept and suppresses every
/// later box whose IoU with it is strictly above `iou_threshold`. The comparison is made in `f64`
/// on the `f32` IoU, as the C++ kernel compares a float with a double.
///
/// # Errors
///
/// [`Error::LengthMismatch`] when `boxes` and `scores` differ in length, [`Error::NotFinite`] for
/// a NaN score or threshold (infinite scores rank as expected).
pub fn nms(boxes: &[BBox], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    if boxes.len() != scores.len() {
        return Err(Error::LengthMismatch {
            what: "nms boxes and scores",
            left: boxes.len(),
            right: scores.len(),
        });
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(Error::NotFinite("nms score"));
    }
    if iou_threshold.is_nan() {
        return Err(Error::NotFinite("iou_threshold"));
    }

    // Rank by descending score; `sort_by` is stable.
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&i, &j| {
        scores[j]
            .partial_cmp(&scores[i])
            .unwrap_or(core::cmp::Ordering::Equal)
    });

    let coords: Vec<[f32; 4]> = boxes.iter().map(as_f32).collect();
    let areas: Vec<f32> = coords.iter().map(area_f32).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();

    // Visit by rank; each kept box suppresses the overlapping boxes ranked after it.
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[rank + 1..] {
            if suppressed[j] {
                continue;
            }
            let iou = raw_iou(&coords[i], areas[i], &coords[j], areas[j]);
            if f64::from(iou) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(x0: u32, y0: u32, x1: u32, y1: u32) -> BBox {
        BBox::new(x0, y0, x1, y1).unwrap()
    }

    /// The boxes and scores of the torchvision comparison below.
    fn example() -> (Vec<BBox>, Vec<f32>) {
        let boxes = vec![
            b(0, 0, 10, 10),
            b(1, 1, 11, 11),
            b(20, 20, 30, 30),
            b(0, 0, 10, 10),
            b(5, 0, 15, 10),
            b(21, 21, 29, 29),
            b(100, 100, 100, 100),
        ];
        (boxes, vec![0.9, 0.95, 0.8, 0.9, 0.85, 0.8, 0.99])
    }

    #[test]
    fn nms_matches_torchvision() {
        // Expected indices printed by torchvision.ops.nms (and batched_nms with one category,
        // as SAM_Masking.py calls it) on these boxes as float32, torchvision 0.29 CPU,
        // tests/reference/.venv. The zero-area box 6 ranks first and suppresses nothing.
        let (boxes, scores) = example();
        assert_eq!(nms(&boxes, &scores, 0.1).unwrap(), vec![6, 1, 2]);
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![6, 1, 4, 2]);
        assert_eq!(nms(&boxes, &scores, 0.7).unwrap(), vec![6, 1, 0, 4, 2, 5]);
    }

    #[test]
    fn box_iou_matches_torchvision() {
        // torchvision.ops.box_iou on the same boxes: iou[0, 1] = 0.680672287940979,
        // iou[0, 4] = 0.3333333432674408, iou[2, 5] = 0.6399999856948853 (float32 printed as
        // Python floats), iou[6, 6] = nan (0 here).
        let (boxes, _) = example();
        assert_eq!(f64::from(box_iou(&boxes[0], &boxes[1])), 0.680672287940979);
        assert_eq!(f64::from(box_iou(&boxes[0], &boxes[4])), 0.3333333432674408);
        assert_eq!(f64::from(box_iou(&boxes[2], &boxes[5])), 0.6399999856948853);
        assert_eq!(box_iou(&boxes[6], &boxes[6]), 0.0);
        assert_eq!(box_iou(&boxes[0], &boxes[3]), 1.0);
    }

    #[test]
    fn ties_keep_input_order() {
        // torchvision.ops.nms: five identical boxes with scores [0.5, 0.7, 0.7, 0.5, 0.7] keep
        // [1]; four disjoint boxes with scores [0.5, 0.7, 0.7, 0.5] keep [1, 2, 0, 3].
        let same = vec![b(0, 0, 10, 10); 5];
        assert_eq!(
            nms(&same, &[0.5, 0.7, 0.7, 0.5, 0.7], 0.5).unwrap(),
            vec![1]
        );
        let apart = vec![
            b(0, 0, 10, 10),
            b(50, 0, 60, 10),
            b(0, 50, 10, 60),
            b(50, 50, 60, 60),
        ];
        assert_eq!(
            nms(&apart, &[0.5, 0.7, 0.7, 0.5], 0.5).unwrap(),
            vec![1, 2, 0, 3]
        );
    }

    #[test]
    fn nms_refuses_bad_input() {
        let boxes = vec![b(0, 0, 1, 1)];
        assert!(matches!(
            nms(&boxes, &[], 0.5),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            nms(&boxes, &[f32::NAN], 0.5),
            Err(Error::NotFinite(_))
        ));
        assert!(matches!(
            nms(&boxes, &[1.0], f64::NAN),
            Err(Error::NotFinite(_))
        ));
        assert_eq!(nms(&[], &[], 0.5).unwrap(), Vec::<usize>::new());
        assert_eq!(nms(&boxes, &[f32::INFINITY], 0.5).unwrap(), vec![0]);
    }

    fn arb_boxes() -> impl Strategy<Value = (Vec<BBox>, Vec<f32>)> {
        proptest::collection::vec((0u32..60, 0u32..60, 0u32..25, 0u32..25, 0u32..8), 0..40)
            .prop_map(|raw| {
                // Few distinct scores, so that ties are common.
                let boxes = raw
                    .iter()
                    .map(|&(x, y, w, h, _)| b(x, y, x + w, y + h))
                    .collect();
                let scores = raw.iter().map(|&(.., s)| s as f32 / 8.0).collect();
                (boxes, scores)
            })
    }

    proptest! {
        #[test]
        fn box_iou_is_symmetric_and_bounded((boxes, _) in arb_boxes()) {
            for a in &boxes {
                for c in &boxes {
                    let iou = box_iou(a, c);
                    prop_assert_eq!(iou.to_bits(), box_iou(c, a).to_bits());
                    prop_assert!((0.0..=1.0).contains(&iou));
                }
            }
        }

        #[test]
        fn nms_is_idempotent_and_separates((boxes, scores) in arb_boxes(), t in 0.0f64..1.0) {
            let keep = nms(&boxes, &scores, t).unwrap();

            // Kept boxes pairwise overlap no more than the threshold.
            for (n, &i) in keep.iter().enumerate() {
                for &j in &keep[n + 1..] {
                    prop_assert!(f64::from(box_iou(&boxes[i], &boxes[j])) <= t);
                }
            }

            // Kept indices are distinct, ranked by score.
            for w in keep.windows(2) {
                prop_assert!(scores[w[0]] >= scores[w[1]]);
            }

            // Running NMS again on what was kept keeps all of it, in the same order.
            let kept_boxes: Vec<BBox> = keep.iter().map(|&i| boxes[i]).collect();
            let kept_scores: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
            let again = nms(&kept_boxes, &kept_scores, t).unwrap();
            prop_assert_eq!(again, (0..keep.len()).collect::<Vec<_>>());

            // Every removed box overlaps some kept box by more than the threshold.
            for i in 0..boxes.len() {
                if !keep.contains(&i) {
                    let overlaps = |&k: &usize| f64::from(box_iou(&boxes[k], &boxes[i])) > t;
                    prop_assert!(keep.iter().any(overlaps));
                }
            }
        }
    }
}
