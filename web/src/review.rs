//! What the pathologist reviews: the proposals of one image with the classifier's probabilities,
//! the threshold, their accept / reject decisions, the counts and densities, and the exports.
//!
//! Pure Rust (no browser types), so that it is unit-tested natively. The exports are exactly
//! those of `mitoscope detect`: [`detections_geojson`] with [`GeometryKind::Polygon`] and
//! [`detections_csv`].
//!
//! As `mitoscope detect` does, a proposal above the threshold within
//! [`REPEAT_RADIUS_UM`] of a surer one is a repeat of the same figure
//! ([`mitoscope_core::repeats`](mod@mitoscope_core::repeats)): it is neither counted nor listed.
//! A decision covers the spot: a rejected proposal still hides its repeats (rejecting a false
//! detection takes it out of the count without another taking its place), and an accepted one
//! hides its undecided neighbours and always counts.

use std::collections::HashSet;

use mitoscope_core::BoxRle;
use mitoscope_core::density::{DEFAULT_HPF_AREA_MM2, DEFAULT_THRESHOLD, Densities};
use mitoscope_core::export::{
    Detection, GeometryKind, box_centre, detections_csv, detections_geojson,
};
use mitoscope_core::wire::WireProposal;
use mitoscope_core::{REPEAT_RADIUS_UM, repeats};
use serde::Serialize;

/// The pathologist's decision on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Not reviewed: counted when its probability is above the threshold.
    #[default]
    Undecided,
    /// Confirmed a mitotic figure: counted whatever the threshold.
    Accepted,
    /// Not a mitotic figure: never counted.
    Rejected,
}

/// One proposal under review.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The proposal's id in the job.
    pub id: u64,
    /// Its mask, box in full-resolution pixels.
    pub mask: BoxRle,
    /// The classifier's probability of a mitotic figure, once classified.
    pub probability: Option<f32>,
    /// The pathologist's decision.
    pub decision: Decision,
}

impl Item {
    /// The box centre in full-resolution pixels, as the CSV export writes it.
    pub fn centre(&self) -> [f64; 2] {
        box_centre(&self.mask.bbox)
    }
}

/// The review of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// Every proposal received, in the order the server sent them.
    pub items: Vec<Item>,
    /// A proposal whose probability is above this counts (strictly, as `mitoscope detect`).
    pub threshold: f64,
    /// The pixel size the server used (from its `started` event).
    pub microns_per_pixel: Option<f64>,
    /// The analysed tissue area (from the `done` event).
    pub analysed_mm2: Option<f64>,
}

impl Default for Review {
    fn default() -> Self {
        Self::new(DEFAULT_THRESHOLD)
    }
}

impl Review {
    /// An empty review with `threshold`.
    pub fn new(threshold: f64) -> Self {
        Self {
            items: Vec::new(),
            threshold,
            microns_per_pixel: None,
            analysed_mm2: None,
        }
    }

    /// Adds the proposals of one tile, not yet classified; returns the index of the first new
    /// item.
    ///
    /// # Errors
    ///
    /// A message when a proposal's mask is inconsistent (its counts do not fill its box).
    pub fn add(&mut self, proposals: &[WireProposal]) -> Result<usize, String> {
        let first = self.items.len();
        let mut new = Vec::with_capacity(proposals.len());
        for p in proposals {
            let mask = p
                .rle()
                .map_err(|err| format!("proposal {} has an invalid mask: {err}", p.id))?;
            new.push(Item {
                id: p.id,
                mask,
                probability: None,
                decision: Decision::Undecided,
            });
        }
        self.items.extend(new);
        Ok(first)
    }

    /// Sets the probabilities of the items from index `first` on, in order.
    pub fn set_probabilities(&mut self, first: usize, probabilities: &[f32]) {
        for (item, &p) in self.items[first..].iter_mut().zip(probabilities) {
            item.probability = Some(p);
        }
    }

    /// Whether every item has its probability.
    pub fn all_classified(&self) -> bool {
        self.items.iter().all(|item| item.probability.is_some())
    }

    /// How many items are classified.
    pub fn classified(&self) -> usize {
        self.items
            .iter()
            .filter(|item| item.probability.is_some())
            .count()
    }

    /// Whether the classifier calls `item` a mitotic figure at the current threshold.
    pub fn above_threshold(&self, item: &Item) -> bool {
        item.probability
            .is_some_and(|p| f64::from(p) > self.threshold)
    }

    /// The ids of the undecided items above the threshold that repeat a surer item within
    /// [`REPEAT_RADIUS_UM`]: accepted items first, then the others above the threshold (rejected
    /// ones included) by probability. None before the pixel size is known.
    pub fn repeats(&self) -> HashSet<u64> {
        let Some(mpp) = self.microns_per_pixel else {
            return HashSet::new();
        };
        let candidates: Vec<&Item> = self
            .items
            .iter()
            .filter(|item| item.decision == Decision::Accepted || self.above_threshold(item))
            .collect();
        let points: Vec<mitoscope_core::Detection> = candidates
            .iter()
            .map(|item| {
                let [x, y] = item.centre();
                let p = f64::from(item.probability.unwrap_or(1.0));
                let score = if item.decision == Decision::Accepted {
                    2.0 + p
                } else {
                    p
                };
                mitoscope_core::Detection { x, y, score }
            })
            .collect();
        candidates
            .iter()
            .zip(repeats(&points, REPEAT_RADIUS_UM / mpp))
            .filter(|(item, repeat)| *repeat && item.decision == Decision::Undecided)
            .map(|(item, _)| item.id)
            .collect()
    }

    /// Whether `item` counts, given the [`Review::repeats`]: accepted, or above the threshold,
    /// undecided and not a repeat.
    fn counts_given(&self, item: &Item, repeats: &HashSet<u64>) -> bool {
        match item.decision {
            Decision::Accepted => true,
            Decision::Rejected => false,
            Decision::Undecided => self.above_threshold(item) && !repeats.contains(&item.id),
        }
    }

    /// The items the review list shows and the viewer outlines: those that count and those
    /// decided on.
    pub fn listed(&self) -> impl Iterator<Item = &Item> {
        let repeats = self.repeats();
        self.items.iter().filter(move |item| {
            self.counts_given(item, &repeats) || item.decision != Decision::Undecided
        })
    }

    /// The number of mitotic figures.
    pub fn count(&self) -> usize {
        let repeats = self.repeats();
        self.items
            .iter()
            .filter(|item| self.counts_given(item, &repeats))
            .count()
    }

    /// The count's densities in the analysed tissue, with fields of [`DEFAULT_HPF_AREA_MM2`]
    /// (as `mitoscope detect` computes them), once the area is known.
    fn densities(&self) -> Option<Densities> {
        let area = self.analysed_mm2?;
        Some(Densities::new(self.count(), area, DEFAULT_HPF_AREA_MM2))
    }

    /// Mitotic figures per mm^2 of analysed tissue, once the area is known and not zero.
    pub fn per_mm2(&self) -> Option<f64> {
        self.densities()?.per_mm2
    }

    /// Mitotic figures per 10 high-power fields ([`DEFAULT_HPF_AREA_MM2`] each).
    pub fn per_10_hpf(&self) -> Option<f64> {
        self.densities()?.per_10_hpf
    }

    /// Records the decision on item `id`; false when there is no such item.
    pub fn decide(&mut self, id: u64, decision: Decision) -> bool {
        match self.items.iter_mut().find(|item| item.id == id) {
            Some(item) => {
                item.decision = decision;
                true
            }
            None => false,
        }
    }

    /// The counted items as the exports take them, in the server's order. An accepted item not
    /// yet classified is exported with probability 1.
    pub fn detections(&self) -> Vec<Detection> {
        let repeats = self.repeats();
        self.items
            .iter()
            .filter(|item| self.counts_given(item, &repeats))
            .map(|item| Detection {
                mask: item.mask.clone(),
                probability: item.probability.unwrap_or(1.0),
            })
            .collect()
    }

    /// The reviewed detections as QuPath GeoJSON, the file `mitoscope detect` writes.
    ///
    /// # Errors
    ///
    /// A message when the pixel size is not known yet or a mask cannot be exported.
    pub fn geojson(&self) -> Result<String, String> {
        let mpp = self.mpp()?;
        detections_geojson(&self.detections(), mpp, GeometryKind::Polygon)
            .map_err(|err| format!("the GeoJSON export failed: {err}"))
    }

    /// The reviewed detections as CSV (`x,y,probability,area_um2`), as `mitoscope detect`.
    ///
    /// # Errors
    ///
    /// As [`Review::geojson`].
    pub fn csv(&self) -> Result<String, String> {
        let mpp = self.mpp()?;
        detections_csv(&self.detections(), mpp)
            .map_err(|err| format!("the CSV export failed: {err}"))
    }

    fn mpp(&self) -> Result<f64, String> {
        self.microns_per_pixel
            .ok_or_else(|| "the pixel size is not known before the server starts the job".into())
    }

    /// A summary for tests and scripts: every classified item with its position and
    /// probability, and the counts.
    pub fn summary(&self) -> Summary {
        let repeats = self.repeats();
        Summary {
            count: self.count(),
            threshold: self.threshold,
            microns_per_pixel: self.microns_per_pixel,
            analysed_mm2: self.analysed_mm2,
            per_mm2: self.per_mm2(),
            per_10_hpf: self.per_10_hpf(),
            proposals: self.items.len(),
            detections: self
                .items
                .iter()
                .filter_map(|item| {
                    let probability = item.probability?;
                    let [x, y] = item.centre();
                    Some(SummaryItem {
                        id: item.id,
                        x,
                        y,
                        probability,
                        counted: self.counts_given(item, &repeats),
                        decision: item.decision,
                    })
                })
                .collect(),
        }
    }
}

/// The review as the page exposes it to tests (`data-testid="results"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The number of mitotic figures.
    pub count: usize,
    /// The threshold in use.
    pub threshold: f64,
    /// The pixel size the server used.
    pub microns_per_pixel: Option<f64>,
    /// The analysed tissue area.
    pub analysed_mm2: Option<f64>,
    /// Mitotic figures per mm^2.
    pub per_mm2: Option<f64>,
    /// Mitotic figures per 10 HPF.
    pub per_10_hpf: Option<f64>,
    /// Proposals received.
    pub proposals: usize,
    /// Every classified proposal.
    pub detections: Vec<SummaryItem>,
}

/// One classified proposal in a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryItem {
    /// The proposal's id.
    pub id: u64,
    /// Box centre x in full-resolution pixels.
    pub x: f64,
    /// Box centre y in full-resolution pixels.
    pub y: f64,
    /// The probability of a mitotic figure.
    pub probability: f32,
    /// Whether it counts.
    pub counted: bool,
    /// The pathologist's decision.
    pub decision: Decision,
}

#[cfg(test)]
mod tests {
    use mitoscope_core::BBox;

    use super::*;

    /// A proposal whose 3 x 2 box is filled except its first pixel.
    fn proposal(id: u64, x0: u32, y0: u32) -> WireProposal {
        let mask = BoxRle {
            bbox: BBox::new(x0, y0, x0 + 2, y0 + 1).unwrap(),
            counts: vec![1, 5],
        };
        WireProposal::new(id, &mask, 0.9, 0.9, 0.25)
    }

    fn review(probabilities: &[f32]) -> Review {
        let mut review = Review::new(0.5);
        let proposals: Vec<_> = (0..probabilities.len() as u64)
            .map(|id| proposal(id, 100 * id as u32, 20))
            .collect();
        let first = review.add(&proposals).unwrap();
        review.set_probabilities(first, probabilities);
        review.microns_per_pixel = Some(0.25);
        review
    }

    #[test]
    fn the_threshold_is_strict_and_moves_the_count_at_once() {
        let mut r = review(&[0.2, 0.5, 0.51, 0.9]);
        assert_eq!(r.count(), 2);
        r.threshold = 0.1;
        assert_eq!(r.count(), 4);
        r.threshold = 0.95;
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn rejected_leave_the_count_and_accepted_stay_in_it() {
        let mut r = review(&[0.2, 0.9, 0.8]);
        assert_eq!(r.count(), 2);
        assert!(r.decide(1, Decision::Rejected));
        assert_eq!(r.count(), 1);
        assert!(r.decide(0, Decision::Accepted));
        assert_eq!(r.count(), 2);
        r.threshold = 0.99;
        assert_eq!(
            r.count(),
            1,
            "the accepted one counts whatever the threshold"
        );
        assert!(!r.decide(42, Decision::Accepted));
        let listed: Vec<u64> = r.listed().map(|item| item.id).collect();
        assert_eq!(listed, [0, 1]);
    }

    #[test]
    fn densities_use_the_analysed_area() {
        let mut r = review(&[0.9, 0.9, 0.9]);
        assert_eq!(r.per_mm2(), None);
        r.analysed_mm2 = Some(0.5);
        assert_eq!(r.per_mm2(), Some(6.0));
        let per_10_hpf = r.per_10_hpf().unwrap();
        assert!((per_10_hpf - 6.0 * 2.37).abs() < 1e-12);
        r.analysed_mm2 = Some(0.0);
        assert_eq!(r.per_mm2(), None);
    }

    #[test]
    fn exports_are_those_of_mitoscope_detect_for_the_counted_items() {
        let mut r = review(&[0.2, 0.9, 0.8]);
        r.decide(2, Decision::Rejected);
        let expected = vec![Detection {
            mask: r.items[1].mask.clone(),
            probability: 0.9,
        }];
        assert_eq!(r.detections(), expected);
        assert_eq!(
            r.geojson().unwrap(),
            detections_geojson(&expected, 0.25, GeometryKind::Polygon).unwrap()
        );
        assert_eq!(r.csv().unwrap(), detections_csv(&expected, 0.25).unwrap());
        assert!(
            r.csv()
                .unwrap()
                .starts_with("x,y,probability,area_um2\n101.5,21,")
        );
    }

    #[test]
    fn exports_need_the_pixel_size() {
        let mut r = review(&[0.9]);
        r.microns_per_pixel = None;
        assert!(r.csv().is_err());
        assert!(r.geojson().is_err());
    }

    #[test]
    fn classification_arrives_tile_by_tile() {
        let mut r = Review::new(0.5);
        let first = r.add(&[proposal(0, 0, 0), proposal(1, 5, 5)]).unwrap();
        assert_eq!(first, 0);
        assert!(!r.all_classified());
        r.set_probabilities(first, &[0.7, 0.1]);
        let second = r.add(&[proposal(2, 9, 9)]).unwrap();
        assert_eq!((second, r.classified()), (2, 2));
        r.set_probabilities(second, &[0.6]);
        assert!(r.all_classified());
        let summary = r.summary();
        assert_eq!(summary.count, 2);
        assert_eq!(summary.detections.len(), 3);
        assert_eq!(
            (summary.detections[1].x, summary.detections[1].y),
            (6.5, 6.0)
        );
    }

    #[test]
    fn repeats_of_a_surer_proposal_stay_hidden_and_decisions_win() {
        // At 0.25 um/px the radius is 30 px: ids 0-2 lie within 30 px of each other (box
        // centres 1.5, 21.5 and 31.5), id 3 far away.
        let mut r = Review::new(0.5);
        let proposals = [
            proposal(0, 0, 20),
            proposal(1, 20, 20),
            proposal(2, 30, 20),
            proposal(3, 300, 20),
        ];
        let first = r.add(&proposals).unwrap();
        r.set_probabilities(first, &[0.7, 0.9, 0.6, 0.8]);
        assert_eq!(r.count(), 4, "no repeats before the pixel size is known");
        r.microns_per_pixel = Some(0.25);
        assert_eq!(r.repeats(), HashSet::from([0, 2]));
        assert_eq!(r.count(), 2);
        let listed: Vec<u64> = r.listed().map(|item| item.id).collect();
        assert_eq!(listed, [1, 3]);
        assert_eq!(r.detections().len(), 2);
        assert!(!r.summary().detections[0].counted);

        // Rejecting the surest takes the spot out of the count; its repeats stay hidden.
        r.decide(1, Decision::Rejected);
        assert_eq!(r.repeats(), HashSet::from([0, 2]));
        assert_eq!(r.count(), 1);
        assert_eq!(r.listed().map(|item| item.id).collect::<Vec<_>>(), [1, 3]);
        // An accepted one counts and hides its undecided neighbours.
        r.decide(2, Decision::Accepted);
        assert_eq!(r.repeats(), HashSet::from([0]));
        assert_eq!(r.count(), 2);
        // Below the threshold nothing is a repeat.
        r.decide(2, Decision::Undecided);
        r.threshold = 0.75;
        assert_eq!(r.repeats(), HashSet::new());
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn an_inconsistent_mask_is_refused_in_words() {
        let mut bad = proposal(3, 0, 0);
        bad.mask = vec![1, 2];
        let mut r = Review::default();
        let err = r.add(&[bad]).unwrap_err();
        assert!(err.contains("proposal 3"), "{err}");
        assert!(r.items.is_empty());
    }
}
