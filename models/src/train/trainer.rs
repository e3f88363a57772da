//! The training loop's state and one step of it, and checkpoints a run resumes from exactly.
//!
//! A step: draw a balanced batch ([`BalancedSampler`]), augment each crop
//! ([`mitoscope_core::augment`]), run the network in training mode, take the smoothed
//! cross-entropy, back-propagate, and let AdamW move the weights at the step's learning rate
//! ([`Schedule`]). One ChaCha8 generator, seeded by [`TrainConfig::seed`], drives the sampling and
//! the augmentations in a fixed order.
//!
//! A checkpoint is a folder:
//!
//! - `network.bpk`: the network (weights, running statistics, parameter identities) as a burn
//!   record in the burnpack format;
//! - `optimizer.bpk`: AdamW's moments and step counts, keyed by those parameter identities;
//! - `state.json`: the step, the settings, the generator's position, the sampler's remaining
//!   passes and a fingerprint of the training crops.
//!
//! With all of it restored, the run continues as if it had never stopped: on the CPU the losses
//! and weights are bit for bit those of an uninterrupted run (`models/tests/training.rs`).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use mitoscope_core::Crop;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::TrainConfig;
use super::network::TrainableClassifier;
use super::optim::{Schedule, loss, optimizer};
use super::sampler::{BalancedSampler, Stratum};
use crate::error::{ModelError, Result};

/// A training crop and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledCrop {
    /// The 64 x 64 crop and its mask, as [`mitoscope_core::crop()`] cuts them.
    pub crop: Crop,
    /// Whether the object is a mitotic figure (class 1).
    pub mitotic_figure: bool,
    /// Whether the object is a look-alike (a hard negative, class 0); sampled apart when
    /// [`TrainConfig::hard_negative_share`] is above 0.
    pub hard_negative: bool,
}

impl LabelledCrop {
    /// How the sampler draws it.
    pub fn stratum(&self) -> Stratum {
        match (self.mitotic_figure, self.hard_negative) {
            (true, _) => Stratum::Figure,
            (false, true) => Stratum::HardNegative,
            (false, false) => Stratum::Other,
        }
    }
}

/// What one training step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The step's index, from 0.
    pub step: u64,
    /// The epoch it belongs to, from 0.
    pub epoch: u64,
    /// The learning rate it used.
    pub learning_rate: f64,
    /// The batch's mean loss, before the update.
    pub loss: f32,
}

/// The files of a checkpoint folder.
const NETWORK_FILE: &str = "network.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";
/// `format` of `state.json`, with its version.
const STATE_FORMAT: &str = "mitoscope-classifier-training";
const STATE_VERSION: u32 = 2;

/// The position of a ChaCha8 generator: seed, stream and word position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RngState {
    /// The 32-byte key, hexadecimal.
    seed: String,
    stream: u64,
    /// The word position, a `u128` written as decimal text (JSON numbers stop at 2^53).
    word_pos: String,
}

impl RngState {
    fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    fn restore(&self) -> Option<ChaCha8Rng> {
        if self.seed.len() != 64 || !self.seed.is_ascii() {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).ok()?;
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

/// The fingerprint of the training crops a run was started on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DatasetFingerprint {
    crops: usize,
    /// SHA-256 over every crop's RGB, mask and label, in order.
    sha256: String,
}

impl DatasetFingerprint {
    fn of(examples: &[LabelledCrop]) -> Self {
        let mut hash = Sha256::new();
        for e in examples {
            hash.update((e.crop.rgb.len() as u64).to_le_bytes());
            hash.update(&e.crop.rgb);
            hash.update(&e.crop.mask);
            hash.update([u8::from(e.mitotic_figure) | u8::from(e.hard_negative) << 1]);
        }
        Self {
            crops: examples.len(),
            sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    format: String,
    version: u32,
    step: u64,
    config: TrainConfig,
    rng: RngState,
    sampler: BalancedSampler,
    dataset: DatasetFingerprint,
}

/// A training run of the classifier: the network, AdamW's state, the schedule, the sampler and
/// the random generator, and the crops it trains on.
pub struct Trainer {
    config: TrainConfig,
    examples: Vec<LabelledCrop>,
    /// Always present between steps; taken while AdamW replaces it.
    network: Option<TrainableClassifier>,
    optimizer: ModuleOptimizer,
    loss: CrossEntropyLoss,
    schedule: Schedule,
    sampler: BalancedSampler,
    rng: ChaCha8Rng,
    step: u64,
    device: Device,
}

impl Trainer {
    /// A new run on `examples` with a freshly initialised network (seeded by `config.seed`) on
    /// `device`, which gets autodiff if it has none (`Device::flex()` trains on the CPU).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] for unusable settings, crops that are not 64 x 64, or
    /// examples without both classes.
    pub fn new(config: TrainConfig, examples: Vec<LabelledCrop>, device: &Device) -> Result<Self> {
        let device = device.clone().autodiff();
        let network = TrainableClassifier::new(config.seed, &device);
        Self::assemble(config, examples, network, &device)
    }

    /// A new run on `examples` that starts from `network` (an imported classifier, say) rather
    /// than from random weights; otherwise as [`Trainer::new`].
    ///
    /// # Errors
    ///
    /// As [`Trainer::new`].
    pub fn from_network(
        config: TrainConfig,
        examples: Vec<LabelledCrop>,
        network: TrainableClassifier,
    ) -> Result<Self> {
        let device = network.device().autodiff();
        let network = network.to_device(&device).train();
        Self::assemble(config, examples, network, &device)
    }

    fn assemble(
        config: TrainConfig,
        examples: Vec<LabelledCrop>,
        network: TrainableClassifier,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        check_crops(&examples)?;
        let strata: Vec<Stratum> = examples.iter().map(LabelledCrop::stratum).collect();
        let sampler = BalancedSampler::new(&strata, config.batch_size, config.hard_negative_share)?;
        let schedule = Schedule::new(&config, examples.len());
        tracing::info!(
            crops = examples.len(),
            mitotic_figures = examples.iter().filter(|e| e.mitotic_figure).count(),
            per_batch = ?sampler.per_batch(),
            steps = schedule.total_steps,
            "training set up"
        );
        Ok(Self {
            loss: loss(&config, device),
            optimizer: optimizer(&config),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            network: Some(network),
            config,
            examples,
            schedule,
            sampler,
            step: 0,
            device: device.clone(),
        })
    }

    /// The settings of the run.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The epoch the next step belongs to, from 0.
    pub fn epoch(&self) -> u64 {
        self.step / self.config.steps_per_epoch(self.examples.len())
    }

    /// The learning-rate schedule of the run.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Whether the run has taken all its steps.
    pub fn is_done(&self) -> bool {
        self.step >= self.schedule.total_steps
    }

    /// The network being trained (on the autodiff device; [`Module::valid`] gives the
    /// evaluation network, [`TrainableClassifier::export`] writes it).
    pub fn network(&self) -> &TrainableClassifier {
        self.network
            .as_ref()
            .expect("the network is only taken inside a step")
    }

    /// Takes one training step and reports its loss.
    ///
    /// # Errors
    ///
    /// [`ModelError::Readback`] if the loss cannot be read back from the device;
    /// [`ModelError::InvalidInput`] should a crop fail to augment (it cannot: crops are
    /// checked at the start).
    pub fn step(&mut self) -> Result<StepReport> {
        let step = self.step;
        let epoch = self.epoch();
        let learning_rate = self.schedule.learning_rate(step);

        // A balanced batch, augmented: [figures..., hard negatives..., others...].
        let indices = self.sampler.next_batch(&mut self.rng);
        let mut crops = Vec::with_capacity(indices.len());
        let mut targets = Vec::with_capacity(indices.len());
        for &i in &indices {
            let example = &self.examples[i];
            let crop = self
                .config
                .augment
                .apply(&example.crop, &mut self.rng)
                .map_err(|err| ModelError::InvalidInput(format!("training crop {i}: {err}")))?;
            crops.push(crop);
            targets.push(i64::from(example.mitotic_figure));
        }

        // Forward in training mode, loss, gradients, AdamW.
        let network = self
            .network
            .take()
            .expect("the network is only taken inside a step");
        let (rgb, mask) = network.input(&crops)?;
        let targets =
            Tensor::<1, Int>::from_data(TensorData::from(targets.as_slice()), &self.device);
        let loss = self.loss.forward(network.forward(rgb, mask), targets);
        let value = loss
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|err| ModelError::Readback(format!("{err:?}")));
        let grads = GradientsParams::from_grads(loss.backward(), &network);
        self.network = Some(self.optimizer.step(learning_rate, network, grads));
        let loss = value?.first().copied().unwrap_or(f32::NAN);

        self.step += 1;
        tracing::debug!(step, epoch, learning_rate, loss, "training step");
        Ok(StepReport {
            step,
            epoch,
            learning_rate,
            loss,
        })
    }

    /// Writes a checkpoint of the run to the folder `dir` (created, or replaced whole): see the
    /// module documentation for what it holds.
    ///
    /// The new checkpoint is written next to `dir` and moved into place once complete, so an
    /// interruption leaves the previous checkpoint readable.
    ///
    /// # Errors
    ///
    /// [`ModelError::Io`] when the files cannot be written or moved.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let partial = sibling(dir, "partial");
        let old = sibling(dir, "old");
        let io = |context: String| move |source| ModelError::Io { context, source };
        let record_io = |what: &str| {
            let context = format!("cannot write the {what} to {}", partial.display());
            move |err: burn::store::RecordError| ModelError::Io {
                context,
                source: std::io::Error::other(err.to_string()),
            }
        };
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .map_err(io(format!("cannot remove {}", partial.display())))?;
        }
        std::fs::create_dir_all(&partial)
            .map_err(io(format!("cannot create {}", partial.display())))?;

        // `valid` folds the running statistics' latest updates in; the identities are kept.
        self.network()
            .valid()
            .into_record()
            .save(partial.join(NETWORK_FILE))
            .map_err(record_io("network"))?;
        self.optimizer
            .save(partial.join(OPTIMIZER_FILE))
            .map_err(record_io("optimizer state"))?;
        let state = TrainState {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            step: self.step,
            config: self.config.clone(),
            rng: RngState::of(&self.rng),
            sampler: self.sampler.clone(),
            dataset: DatasetFingerprint::of(&self.examples),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|err| ModelError::Io {
            context: "cannot encode the training state".into(),
            source: std::io::Error::other(err),
        })?;
        std::fs::write(partial.join(STATE_FILE), json).map_err(io(format!(
            "cannot write {}",
            partial.join(STATE_FILE).display()
        )))?;

        // Swap the complete checkpoint in.
        if dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old)
                    .map_err(io(format!("cannot remove {}", old.display())))?;
            }
            std::fs::rename(dir, &old).map_err(io(format!("cannot move {}", dir.display())))?;
        }
        std::fs::rename(&partial, dir).map_err(io(format!("cannot move {}", partial.display())))?;
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .map_err(io(format!("cannot remove {}", old.display())))?;
        }
        tracing::info!(step = self.step, "training checkpoint saved");
        Ok(())
    }

    /// Resumes the run saved in the folder `dir` on the same `examples`, on `device` (given
    /// autodiff as in [`Trainer::new`]).
    ///
    /// # Errors
    ///
    /// [`ModelError::Unreadable`] when a file of the checkpoint is missing or damaged;
    /// [`ModelError::InvalidInput`] when `examples` are not the crops the run was started on.
    pub fn resume(dir: &Path, examples: Vec<LabelledCrop>, device: &Device) -> Result<Self> {
        let unreadable = |file: &str, reason: String| ModelError::Unreadable {
            path: dir.join(file),
            reason,
        };
        let text = std::fs::read(dir.join(STATE_FILE))
            .map_err(|err| unreadable(STATE_FILE, err.to_string()))?;
        let state: TrainState =
            serde_json::from_slice(&text).map_err(|err| unreadable(STATE_FILE, err.to_string()))?;
        if state.format != STATE_FORMAT || state.version != STATE_VERSION {
            return Err(unreadable(
                STATE_FILE,
                format!(
                    "a {} version {} file, expected {STATE_FORMAT} version {STATE_VERSION}",
                    state.format, state.version
                ),
            ));
        }
        if DatasetFingerprint::of(&examples) != state.dataset {
            return Err(ModelError::InvalidInput(format!(
                "the checkpoint {} was trained on other crops ({} crops, sha256 {}) than the {} \
                 given",
                dir.display(),
                state.dataset.crops,
                state.dataset.sha256,
                examples.len()
            )));
        }
        let rng = state
            .rng
            .restore()
            .ok_or_else(|| unreadable(STATE_FILE, "a damaged generator state".into()))?;

        let mut trainer = Self::new(state.config, examples, device)?;
        let record = ModuleRecord::load(dir.join(NETWORK_FILE))
            .map_err(|err| unreadable(NETWORK_FILE, err.to_string()))?;
        let network = trainer
            .network
            .take()
            .expect("a new trainer holds its network")
            .try_load_record(record)
            .map_err(|err| unreadable(NETWORK_FILE, err.to_string()))?;
        trainer.network = Some(network);
        // NOTE: burn materialises the loaded moments on `Device::default()` and moves each to its
        // parameter's device at the first step; the values are unchanged on the way.
        trainer.optimizer = optimizer(&trainer.config)
            .load(dir.join(OPTIMIZER_FILE))
            .map_err(|err| unreadable(OPTIMIZER_FILE, err.to_string()))?;
        let strata: Vec<Stratum> = trainer.examples.iter().map(LabelledCrop::stratum).collect();
        if !state.sampler.matches(
            &strata,
            trainer.config.batch_size,
            trainer.config.hard_negative_share,
        ) {
            return Err(unreadable(STATE_FILE, "a sampler of other crops".into()));
        }
        trainer.sampler = state.sampler;
        trainer.rng = rng;
        trainer.step = state.step;
        tracing::info!(step = trainer.step, "training resumed");
        Ok(trainer)
    }
}

/// `dir` with `.suffix` appended to its name.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Refuses crops the network cannot take, before the first step.
fn check_crops(examples: &[LabelledCrop]) -> Result<()> {
    let plane = (mitoscope_core::CROP * mitoscope_core::CROP) as usize;
    match examples
        .iter()
        .position(|e| e.crop.mask.len() != plane || e.crop.rgb.len() != 3 * plane)
    {
        Some(i) => Err(ModelError::InvalidInput(format!(
            "training crop {i} is not {0} x {0}",
            mitoscope_core::CROP
        ))),
        None => Ok(()),
    }
}
