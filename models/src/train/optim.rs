//! Loss, optimiser and learning-rate schedule of the classifier's training.
//!
//! - Cross-entropy on the two logits with label smoothing (burn's `CrossEntropyLoss`, the same
//!   smoothed target as PyTorch's `label_smoothing`). The classes are balanced by the sampler,
//!   not by weights in the loss: see [`super::sampler`].
//! - AdamW (burn's, decoupled weight decay `lr * weight_decay` as PyTorch's), with PyTorch's
//!   defaults for the betas and epsilon.
//! - A linear warm-up to the peak rate, then a half cosine down to the minimum, as a closed form
//!   of the step: nothing to save, and a resumed run takes the same rates.

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;

use super::config::TrainConfig;

/// The learning rate of each step: linear warm-up, then cosine annealing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The rate at the end of the warm-up.
    pub peak: f64,
    /// The rate at the end of the run.
    pub min: f64,
    /// Steps of warm-up.
    pub warmup_steps: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
}

impl Schedule {
    /// The schedule of `config` over a data set of `crops` crops.
    pub fn new(config: &TrainConfig, crops: usize) -> Self {
        Self {
            peak: config.learning_rate,
            min: config.min_learning_rate,
            warmup_steps: config.warmup_steps(crops),
            total_steps: config.total_steps(crops),
        }
    }

    /// The learning rate of step `step` (0-based).
    ///
    /// During the warm-up, `peak * (step + 1) / warmup_steps`: the first step already moves,
    /// the last one is at the peak. Then `min + (peak - min) * (1 + cos(pi * t)) / 2` with `t`
    /// going from 0 to 1 over the remaining steps; past the end, `min`.
    pub fn learning_rate(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let cosine_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / cosine_steps as f64).min(1.0);
        self.min + (self.peak - self.min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// AdamW as `config` sets it.
pub fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_beta_2(config.beta2 as f32)
        .with_epsilon(config.epsilon as f32)
        .with_weight_decay(config.weight_decay as f32)
        .init()
}

/// The cross-entropy with `config`'s label smoothing, on `device`.
pub fn loss(config: &TrainConfig, device: &Device) -> CrossEntropyLoss {
    let smoothing = (config.label_smoothing > 0.0).then_some(config.label_smoothing as f32);
    CrossEntropyLossConfig::new()
        .with_smoothing(smoothing)
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_follows_the_cosine() {
        let s = Schedule {
            peak: 1e-3,
            min: 1e-5,
            warmup_steps: 4,
            total_steps: 14,
        };
        let lr: Vec<f64> = (0..16).map(|step| s.learning_rate(step)).collect();
        assert_eq!(lr[0], 2.5e-4);
        assert_eq!(lr[3], 1e-3);
        assert_eq!(lr[4], 1e-3);
        // Half-way through the cosine, half-way between peak and minimum.
        assert!((lr[9] - (1e-3 + 1e-5) / 2.0).abs() < 1e-12);
        assert!((lr[14] - 1e-5).abs() < 1e-15 && (lr[15] - 1e-5).abs() < 1e-15);
        assert!(lr[4..15].windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn the_smoothed_loss_is_pytorchs() {
        // PyTorch's cross_entropy(logits, targets, label_smoothing=0.03), by hand: the mean over
        // rows of -sum_c q_c log softmax_c with q = (1 - 0.03) one_hot + 0.03 / 2.
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[2.0, -1.0], [0.5, 0.25]], &device);
        let targets = Tensor::<1, Int>::from_ints([0, 1], &device);
        let config = TrainConfig::default();
        let value: f32 = loss(&config, &device)
            .forward(logits, targets)
            .into_scalar();
        let expected = {
            let row = |a: f64, b: f64, target: usize| {
                let norm = (a.exp() + b.exp()).ln();
                let (la, lb) = (a - norm, b - norm);
                let q = |c: usize| if c == target { 0.985 } else { 0.015 };
                -(q(0) * la + q(1) * lb)
            };
            (row(2.0, -1.0, 0) + row(0.5, 0.25, 1)) / 2.0
        };
        assert!(
            (f64::from(value) - expected).abs() < 1e-6,
            "{value} vs {expected}"
        );
    }
}
