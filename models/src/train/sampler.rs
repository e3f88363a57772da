//! Class-balanced batches: half of every batch are mitotic figures, half are not; of the second
//! half, a set share can be look-alikes (hard negatives).
//!
//! Mitotic figures are rare among what the proposal stage segments (one in tens to hundreds of
//! objects), so a uniform sampler would show the classifier a figure every few batches. Two
//! remedies are usual: weights in the loss, or balanced sampling. Balanced sampling is used here:
//! every batch has the same mix, so the batch norms' statistics do not swing with how many
//! figures a batch happened to draw, and the loss keeps its plain form.
//!
//! Look-alikes (TUPAC-16's non-mitosis candidates, MIDOG's imposters) are the negatives that
//! matter most and the rarest: 65 of some 6,000 training negatives. Drawn with the others, each
//! is seen a few times in a whole run. [`TrainConfig::hard_negative_share`] gives them their own
//! share of every batch instead.
//!
//! Each stratum is drawn without replacement in a shuffled pass over its crops; when a pass runs
//! out, a new one is shuffled. The smaller strata are thus repeated more often (with other
//! augmentations each time) and the larger one is seen in full every few epochs.
//!
//! [`TrainConfig::hard_negative_share`]: super::TrainConfig::hard_negative_share

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// What a training crop is, for sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stratum {
    /// A mitotic figure (class 1).
    Figure,
    /// A look-alike (class 0), drawn in its own share of each batch.
    HardNegative,
    /// Any other object (class 0).
    Other,
}

/// Draws class-balanced batches of crop indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancedSampler {
    /// The indices of the mitotic figures, the hard negatives and the others, in
    /// [`Stratum`] order.
    strata: [Vec<u32>; 3],
    /// How many of each stratum a batch holds.
    per_batch: [usize; 3],
    /// What is left of each stratum's current pass, drawn from the end.
    queues: [Vec<u32>; 3],
}

impl BalancedSampler {
    /// A sampler over crops of the strata `strata`, with batches of `batch_size`:
    /// `batch_size / 2` figures, `round(hard_share * batch_size)` hard negatives (none when there
    /// are none, and at most the rest of the batch) and others for the rest. With `hard_share`
    /// 0 the hard negatives are drawn among the others.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when there is no mitotic figure or no other crop, or more
    /// than `u32::MAX` crops.
    pub fn new(strata: &[Stratum], batch_size: usize, hard_share: f64) -> Result<Self> {
        if u32::try_from(strata.len()).is_err() {
            return Err(ModelError::InvalidInput(
                "more than 4294967295 training crops".into(),
            ));
        }
        let separate = hard_share > 0.0;
        let mut lists = [Vec::new(), Vec::new(), Vec::new()];
        for (i, &stratum) in strata.iter().enumerate() {
            let slot = match stratum {
                Stratum::Figure => 0,
                Stratum::HardNegative if separate => 1,
                Stratum::HardNegative | Stratum::Other => 2,
            };
            lists[slot].push(i as u32);
        }
        if lists[0].is_empty() || lists[1].len() + lists[2].len() == 0 {
            return Err(ModelError::InvalidInput(format!(
                "training needs crops of both classes; got {} mitotic figures and {} others",
                lists[0].len(),
                lists[1].len() + lists[2].len()
            )));
        }
        let figures = batch_size / 2;
        let rest = batch_size - figures;
        let mut hard = if lists[1].is_empty() {
            0
        } else {
            ((hard_share * batch_size as f64).round() as usize).clamp(1, rest)
        };
        if lists[2].is_empty() {
            hard = rest;
        }
        Ok(Self {
            strata: lists,
            per_batch: [figures, hard, rest - hard],
            queues: [Vec::new(), Vec::new(), Vec::new()],
        })
    }

    /// The next batch: its mitotic figures first, then the hard negatives, then the others.
    pub fn next_batch(&mut self, rng: &mut impl RngCore) -> Vec<usize> {
        let mut batch = Vec::with_capacity(self.per_batch.iter().sum());
        for stratum in 0..3 {
            for _ in 0..self.per_batch[stratum] {
                if self.queues[stratum].is_empty() {
                    let mut pass = self.strata[stratum].clone();
                    shuffle(&mut pass, rng);
                    self.queues[stratum] = pass;
                }
                if let Some(i) = self.queues[stratum].pop() {
                    batch.push(i as usize);
                }
            }
        }
        batch
    }

    /// How many mitotic figures, hard negatives and others a batch holds.
    pub fn per_batch(&self) -> [usize; 3] {
        self.per_batch
    }

    /// Whether the sampler was built from `strata`, `batch_size` and `hard_share`.
    pub fn matches(&self, strata: &[Stratum], batch_size: usize, hard_share: f64) -> bool {
        Self::new(strata, batch_size, hard_share)
            .is_ok_and(|fresh| fresh.strata == self.strata && fresh.per_batch == self.per_batch)
    }
}

/// Fisher-Yates shuffle, each index drawn by Lemire's multiply-shift (unbiased enough at these
/// sizes: the bias is below `n / 2^64`).
fn shuffle(items: &mut [u32], rng: &mut impl RngCore) {
    for i in (1..items.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    #[test]
    fn batches_are_balanced_and_passes_complete() {
        // 3 figures, 7 others.
        let labels = [
            true, false, false, true, false, false, false, true, false, false,
        ];
        let strata: Vec<Stratum> = labels
            .iter()
            .map(|&l| if l { Stratum::Figure } else { Stratum::Other })
            .collect();
        let mut sampler = BalancedSampler::new(&strata, 6, 0.0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut seen = [0usize; 10];
        for _ in 0..7 {
            let batch = sampler.next_batch(&mut rng);
            assert_eq!(batch.len(), 6);
            assert!(batch[..3].iter().all(|&i| labels[i]));
            assert!(batch[3..].iter().all(|&i| !labels[i]));
            for i in batch {
                seen[i] += 1;
            }
        }
        // 21 draws of each class: every figure 7 times, every other crop 3 times.
        for (i, &count) in seen.iter().enumerate() {
            assert_eq!(count, if labels[i] { 7 } else { 3 }, "crop {i}");
        }
    }

    #[test]
    fn hard_negatives_get_their_share_or_go_with_the_others() {
        use Stratum::{Figure, HardNegative, Other};
        // 2 figures, 2 hard negatives (indices 2 and 3), 6 others.
        let strata = [
            Figure,
            Figure,
            HardNegative,
            HardNegative,
            Other,
            Other,
            Other,
            Other,
            Other,
            Other,
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);

        // A quarter of 8: 2 hard negatives in every batch, each of them in every batch.
        let mut sampler = BalancedSampler::new(&strata, 8, 0.25).unwrap();
        assert_eq!(sampler.per_batch(), [4, 2, 2]);
        for _ in 0..5 {
            let mut batch = sampler.next_batch(&mut rng);
            assert!(batch[..4].iter().all(|&i| i < 2));
            batch[4..6].sort_unstable();
            assert_eq!(batch[4..6], [2, 3]);
            assert!(batch[6..].iter().all(|&i| i >= 4));
        }
        // A small share still gives one per batch.
        assert_eq!(
            BalancedSampler::new(&strata, 8, 0.01).unwrap().per_batch(),
            [4, 1, 3]
        );

        // Share 0: the hard negatives are drawn with the others, in full passes of all 8.
        let mut sampler = BalancedSampler::new(&strata, 8, 0.0).unwrap();
        assert_eq!(sampler.per_batch(), [4, 0, 4]);
        let mut seen = [0usize; 10];
        for _ in 0..4 {
            for i in sampler.next_batch(&mut rng).split_off(4) {
                seen[i] += 1;
            }
        }
        assert!(seen[2..].iter().all(|&count| count == 2), "{seen:?}");
        assert!(sampler.matches(&strata, 8, 0.0));
        assert!(!sampler.matches(&strata, 8, 0.25));
    }

    #[test]
    fn one_class_alone_is_refused() {
        let err = BalancedSampler::new(&[Stratum::Other, Stratum::Other], 4, 0.0).unwrap_err();
        assert!(err.to_string().contains("0 mitotic figures"), "{err}");
        assert!(BalancedSampler::new(&[], 4, 0.0).is_err());
        let err = BalancedSampler::new(&[Stratum::Figure], 4, 0.5).unwrap_err();
        assert!(err.to_string().contains("0 others"), "{err}");
    }
}
