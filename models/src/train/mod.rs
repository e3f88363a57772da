//! Training OMG-Net's mask-aware ResNet18 classifier (step 7 of the method) from scratch.
//!
//! - [`network`]: the classifier with real batch norms ([`TrainableClassifier`]), seeded
//!   torchvision initialisation.
//! - [`config`]: the settings ([`TrainConfig`]) with the paper's values as defaults.
//! - [`optim`]: smoothed cross-entropy, AdamW, and the warm-up + cosine schedule.
//! - [`sampler`]: class-balanced batches, with a share for the look-alikes.
//! - [`trainer`]: one training step ([`Trainer::step`]) and checkpoints a run resumes from bit
//!   for bit.
//! - [`export`]: the trained network as a safetensors file with OMG-Net's Lightning key names,
//!   which [`crate::classifier::Classifier::load`] reads; and back.
//!
//! The augmentations are in [`mitoscope_core::augment`], pure Rust, so the same code could run
//! wherever crops are cut.
//!
//! ```no_run
//! use burn::prelude::Device;
//! use mitoscope_models::train::{ExportDtype, LabelledCrop, TrainConfig, Trainer};
//!
//! # fn examples() -> Vec<LabelledCrop> { Vec::new() }
//! let mut trainer = Trainer::new(TrainConfig::default(), examples(), &Device::flex())?;
//! while !trainer.is_done() {
//!     let report = trainer.step()?;
//!     if report.step % 100 == 0 {
//!         trainer.save("run/checkpoint".as_ref())?;
//!     }
//! }
//! trainer
//!     .network()
//!     .export("classifier.safetensors".as_ref(), ExportDtype::F32)?;
//! # Ok::<(), mitoscope_models::ModelError>(())
//! ```

pub mod config;
pub mod export;
pub mod network;
pub mod optim;
pub mod sampler;
pub mod trainer;

pub use config::TrainConfig;
pub use export::ExportDtype;
pub use network::TrainableClassifier;
pub use optim::Schedule;
pub use sampler::{BalancedSampler, Stratum};
pub use trainer::{LabelledCrop, StepReport, Trainer};
