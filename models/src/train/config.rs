//! The training settings, with OMG-Net's published values as defaults (step 7 of the method).

use mitoscope_core::AugmentSettings;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// How the classifier is trained: optimiser, schedule, loss, sampling and augmentation.
///
/// The defaults are the paper's where it gives one (AdamW with learning rate 1e-3 and weight
/// decay 1e-4, a cosine schedule with 2 warm-up epochs, label smoothing 0.03, 30-50 epochs,
/// flips, brightness and contrast 0.2, stain augmentation); the rest are stated with the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// AdamW's peak learning rate, reached at the end of the warm-up: 1e-3, the paper's.
    ///
    /// NOTE: OMG-Net's code sets 1e-4, for an ImageNet-pretrained backbone; ours starts from
    /// random weights (none are reachable offline), which the larger rate suits.
    pub learning_rate: f64,
    /// The learning rate the cosine ends at: 0, as PyTorch's `CosineAnnealingLR` default.
    pub min_learning_rate: f64,
    /// AdamW's decoupled weight decay: 1e-4. Applied to every parameter (batch norms and biases
    /// included), as `torch.optim.AdamW(model.parameters())` does.
    pub weight_decay: f64,
    /// AdamW's `beta1`: 0.9 (PyTorch's default).
    pub beta1: f64,
    /// AdamW's `beta2`: 0.999 (PyTorch's default).
    pub beta2: f64,
    /// AdamW's `eps`: 1e-8 (PyTorch's default; burn's is 1e-5).
    pub epsilon: f64,
    /// Crops per step: 64. Not published; half are mitotic figures (see
    /// [`super::sampler::BalancedSampler`]).
    pub batch_size: usize,
    /// The share of each batch drawn from the hard negatives (look-alikes), taken out of the
    /// negatives' half: 0, the paper's (they are drawn among the other negatives). Any share
    /// above 0 gives at least one per batch (see [`super::sampler::BalancedSampler`]).
    pub hard_negative_share: f64,
    /// Epochs: 40, inside the paper's 30-50. An epoch is as many steps as it takes to draw as
    /// many crops as the data set holds.
    pub epochs: u64,
    /// Epochs of linear warm-up before the cosine: 2.
    pub warmup_epochs: u64,
    /// Stop after this many steps instead of `epochs` (the schedule is then laid over these
    /// steps): for short runs and tests.
    pub max_steps: Option<u64>,
    /// Cross-entropy label smoothing: 0.03 (PyTorch's `label_smoothing`: the target is
    /// `(1 - s) * one_hot + s / 2`).
    pub label_smoothing: f64,
    /// Seed of the initial weights, the sampling order and the augmentations: 0.
    pub seed: u64,
    /// Augmentation strengths (see [`AugmentSettings`]).
    pub augment: AugmentSettings,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            min_learning_rate: 0.0,
            weight_decay: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            batch_size: 64,
            hard_negative_share: 0.0,
            epochs: 40,
            warmup_epochs: 2,
            max_steps: None,
            label_smoothing: 0.03,
            seed: 0,
            augment: AugmentSettings::default(),
        }
    }
}

impl TrainConfig {
    /// Checks that every value can be used.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] naming the first unusable setting.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |what: &str| Err(ModelError::InvalidInput(format!("training setting {what}")));
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return invalid("`learning_rate` must be in (0, 1]");
        }
        if !(0.0..=self.learning_rate).contains(&self.min_learning_rate) {
            return invalid("`min_learning_rate` must be in [0, learning_rate]");
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return invalid("`weight_decay` must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return invalid("`beta1` and `beta2` must be in [0, 1)");
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return invalid("`epsilon` must be positive");
        }
        if self.batch_size < 2 {
            return invalid("`batch_size` must be at least 2 (a positive and a negative)");
        }
        if !(0.0..=0.5).contains(&self.hard_negative_share) {
            return invalid("`hard_negative_share` must be in [0, 0.5]");
        }
        if self.epochs == 0 || self.max_steps == Some(0) {
            return invalid("`epochs` and `max_steps` must be at least 1");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return invalid("`label_smoothing` must be in [0, 1)");
        }
        self.augment
            .validate()
            .map_err(|err| ModelError::InvalidInput(format!("augmentation setting: {err}")))
    }

    /// Steps in one epoch over `crops` crops: `ceil(crops / batch_size)`, at least 1.
    pub fn steps_per_epoch(&self, crops: usize) -> u64 {
        crops.div_ceil(self.batch_size.max(1)).max(1) as u64
    }

    /// Steps of the whole run over `crops` crops: `max_steps`, or `epochs` epochs.
    pub fn total_steps(&self, crops: usize) -> u64 {
        self.max_steps
            .unwrap_or_else(|| self.epochs.saturating_mul(self.steps_per_epoch(crops)))
    }

    /// Warm-up steps over `crops` crops: `warmup_epochs` epochs, at most the whole run.
    pub fn warmup_steps(&self, crops: usize) -> u64 {
        self.warmup_epochs
            .saturating_mul(self.steps_per_epoch(crops))
            .min(self.total_steps(crops))
    }
}
