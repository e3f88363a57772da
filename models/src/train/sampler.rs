//! Class-balanced batches: half of every batch are mitotic figures, half are not.
//!
//! Mitotic figures are rare among what the proposal stage segments (one in tens to hundreds of
//! objects), so a uniform sampler would show the classifier a figure every few batches. Two
//! remedies are usual: weights in the loss, or balanced sampling. Balanced sampling is used here:
//! every batch has the same mix, so the batch norms' statistics do not swing with how many
//! figures a batch happened to draw, and the loss keeps its plain form.
//!
//! Each class is drawn without replacement in a shuffled pass over its crops; when a pass runs
//! out, a new one is shuffled. The smaller class is thus repeated more often (with other
//! augmentations each time) and the larger one is seen in full every few epochs.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Draws class-balanced batches of crop indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancedSampler {
    /// The indices of the negatives (0) and of the mitotic figures (1).
    classes: [Vec<u32>; 2],
    /// What is left of each class's current pass, drawn from the end.
    queues: [Vec<u32>; 2],
}

impl BalancedSampler {
    /// A sampler over crops labelled `labels` (true: mitotic figure).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when one of the classes has no crop, or there are more than
    /// `u32::MAX` crops.
    pub fn new(labels: &[bool]) -> Result<Self> {
        if u32::try_from(labels.len()).is_err() {
            return Err(ModelError::InvalidInput(
                "more than 4294967295 training crops".into(),
            ));
        }
        let mut classes = [Vec::new(), Vec::new()];
        for (i, &label) in labels.iter().enumerate() {
            classes[usize::from(label)].push(i as u32);
        }
        if classes.iter().any(Vec::is_empty) {
            return Err(ModelError::InvalidInput(format!(
                "training needs crops of both classes; got {} mitotic figures and {} others",
                classes[1].len(),
                classes[0].len()
            )));
        }
        Ok(Self {
            classes,
            queues: [Vec::new(), Vec::new()],
        })
    }

    /// The next batch of `batch_size` indices: `batch_size / 2` mitotic figures first, then the
    /// others.
    pub fn next_batch(&mut self, batch_size: usize, rng: &mut impl RngCore) -> Vec<usize> {
        let positives = batch_size / 2;
        let mut batch = Vec::with_capacity(batch_size);
        for (class, count) in [(1, positives), (0, batch_size - positives)] {
            for _ in 0..count {
                if self.queues[class].is_empty() {
                    let mut pass = self.classes[class].clone();
                    shuffle(&mut pass, rng);
                    self.queues[class] = pass;
                }
                if let Some(i) = self.queues[class].pop() {
                    batch.push(i as usize);
                }
            }
        }
        batch
    }

    /// Whether the sampler was built from `labels`.
    pub fn matches(&self, labels: &[bool]) -> bool {
        Self::new(labels).is_ok_and(|fresh| fresh.classes == self.classes)
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
        let mut sampler = BalancedSampler::new(&labels).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut seen = [0usize; 10];
        for _ in 0..7 {
            let batch = sampler.next_batch(6, &mut rng);
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
    fn one_class_alone_is_refused() {
        let err = BalancedSampler::new(&[false, false]).unwrap_err();
        assert!(err.to_string().contains("0 mitotic figures"), "{err}");
        assert!(BalancedSampler::new(&[]).is_err());
    }
}
