//! `mitoscope train --config FILE`: trains the classifier on a data set that `mitoscope dataset`
//! wrote, with a validation score after each epoch, a checkpoint after each epoch (a rerun with
//! the same file resumes from it, bit for bit), and the trained weights as safetensors that
//! `--classifier` and [`mitoscope_models::classifier::Classifier::load`] read.
//!
//! The configuration is JSON:
//!
//! ```json
//! {
//!   "dataset": "target/dataset-full",
//!   "data": "../shared/data",
//!   "out": "target/train-seed0",
//!   "include_padded": false,
//!   "init": "models/weights/classifier_seed0.safetensors",
//!   "training": { "epochs": 40, "batch_size": 64, "seed": 0, "hard_negative_share": 0.125 }
//! }
//! ```
//!
//! `init` (optional) starts from trained weights instead of random ones. Relative paths are
//! relative to the configuration file's folder. `training` takes the fields of
//! [`TrainConfig`] (all optional, with its documented defaults).
//!
//! Which proposals train: those labelled positive, hard negative or negative (ambiguous ones are
//! left out, see `docs/dataset.md`); crops that run off their image only with `include_padded`
//! (in the MIDOG crops almost every negative is padded and almost no positive is, which a
//! classifier would learn). The validation score counts, at probability 0.5, the validation
//! images' positives (TP or FN), negatives and hard negatives (FP or nothing), and their figures
//! that no proposal matched (FN): an object-level F1 over the classified proposals.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::prelude::Device;
use burn::tensor::activation::softmax;
use indicatif::{ProgressBar, ProgressStyle};
use mitoscope_core::Crop;
use mitoscope_core::matching::Counts;
use mitoscope_models::train::{
    ExportDtype, LabelledCrop, TrainConfig, TrainableClassifier, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::dataset::Split;
use crate::output::write_atomic;

/// The name of the trained weights in the output folder.
pub const WEIGHTS: &str = "classifier.safetensors";

/// Crops classified at once during validation.
const VALIDATION_BATCH: usize = 64;

/// What `mitoscope train` reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainFile {
    /// The folder `mitoscope dataset` wrote (with `proposals.jsonl`).
    pub dataset: PathBuf,
    /// The data folder its image paths are relative to.
    pub data: PathBuf,
    /// Where the checkpoint, the history and the trained weights go.
    pub out: PathBuf,
    /// Also use crops that run off their image.
    #[serde(default)]
    pub include_padded: bool,
    /// Start from these classifier weights instead of random ones (fine-tuning): OMG-Net's
    /// Lightning checkpoints or `mitoscope train`'s safetensors. A bare torchvision state dict
    /// has no mask encoder and is refused, naming the missing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// The training settings.
    #[serde(default)]
    pub training: TrainConfig,
}

impl TrainFile {
    /// Reads and checks a configuration file; relative paths become relative to its folder.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid JSON of this shape, or has invalid settings.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let mut file: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a training configuration (JSON with dataset, data, out and an \
                 optional training object; see `mitoscope train --help`)",
                path.display()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut file.dataset, &mut file.data, &mut file.out]
            .into_iter()
            .chain(file.init.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        file.training
            .validate()
            .with_context(|| format!("invalid training settings in {}", path.display()))?;
        Ok(file)
    }
}

/// The crops of one side of the split.
#[derive(Debug, Default)]
pub struct Examples {
    /// The labelled crops.
    pub crops: Vec<LabelledCrop>,
    /// Figures of these images that no proposal was matched to (false negatives whatever the
    /// classifier does).
    pub unmatched_figures: u64,
}

/// Reads the data set and cuts the crops of each side.
///
/// # Errors
///
/// A missing or damaged `proposals.jsonl`, an image that cannot be read or does not match its
/// record.
pub fn load_examples(file: &TrainFile) -> Result<(Examples, Examples)> {
    let (mut train, mut val) = (Examples::default(), Examples::default());
    for record in crate::dataset::read_records(&file.dataset)? {
        let image = crate::dataset::read_record_image(&file.data, &record)?;
        let side = match record.split {
            Split::Train => &mut train,
            Split::Val => &mut val,
        };
        side.unmatched_figures += record.unmatched_figures as u64;
        for p in &record.proposals {
            let Some(class) = p.label.class() else {
                continue;
            };
            if p.padded && !file.include_padded {
                continue;
            }
            let rle = p.proposal.rle()?;
            let crop = mitoscope_core::crop(&image.rgb, image.width, image.height, &rle)?;
            side.crops.push(LabelledCrop {
                crop,
                mitotic_figure: class == 1,
                hard_negative: p.label == crate::dataset::Label::HardNegative,
            });
        }
    }
    Ok((train, val))
}

/// One line of `history.jsonl`: the state after an epoch.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    /// The epoch just finished, from 1.
    pub epoch: u64,
    /// Steps taken so far.
    pub steps: u64,
    /// The mean training loss over the epoch's steps.
    pub mean_loss: f64,
    /// Validation counts at probability 0.5.
    pub validation: Counts,
    /// Validation precision, recall and F1 (`None` where undefined).
    pub precision: Option<f64>,
    /// Recall.
    pub recall: Option<f64>,
    /// F1.
    pub f1: Option<f64>,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
}

/// The validation counts of `network` on `examples` at probability 0.5.
///
/// # Errors
///
/// A crop the network cannot take (an internal error).
pub fn validate(
    network: &mitoscope_models::train::TrainableClassifier,
    examples: &Examples,
) -> Result<Counts> {
    let network = network.clone().valid();
    let mut counts = Counts {
        tp: 0,
        fp: 0,
        fn_: examples.unmatched_figures,
    };
    for batch in examples.crops.chunks(VALIDATION_BATCH) {
        let crops: Vec<Crop> = batch.iter().map(|c| c.crop.clone()).collect();
        let (rgb, mask) = network.input(&crops)?;
        let probabilities = softmax(network.forward(rgb, mask), 1)
            .narrow(1, 1, 1)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read the probabilities back: {e:?}"))?;
        for (example, p) in batch.iter().zip(probabilities) {
            match (example.mitotic_figure, p > 0.5) {
                (true, true) => counts.tp += 1,
                (true, false) => counts.fn_ += 1,
                (false, true) => counts.fp += 1,
                (false, false) => {}
            }
        }
    }
    Ok(counts)
}

/// Runs `mitoscope train`: trains (or resumes), validates and checkpoints after each epoch, and
/// writes the trained weights (float16 safetensors) at the end.
///
/// # Errors
///
/// As [`TrainFile::read`] and [`load_examples`]; no positive or no negative to train on; a
/// checkpoint made from other crops; an output folder that cannot be written.
pub fn run(config: &Path, device: &Device, progress: bool) -> Result<()> {
    let file = TrainFile::read(config)?;
    let (train, val) = load_examples(&file)?;
    let positives = train.crops.iter().filter(|c| c.mitotic_figure).count();
    eprintln!(
        "training crops: {} ({positives} mitotic figures); validation crops: {} ({} figures \
         without a proposal)",
        train.crops.len(),
        val.crops.len(),
        val.unmatched_figures
    );
    if positives == 0 || positives == train.crops.len() {
        bail!("the training split needs both mitotic figures and other objects");
    }
    let steps_per_epoch = file.training.steps_per_epoch(train.crops.len()).max(1);
    std::fs::create_dir_all(&file.out)
        .with_context(|| format!("cannot create {}", file.out.display()))?;
    let checkpoint = file.out.join("checkpoint");
    let mut trainer = if checkpoint.join("state.json").is_file() {
        let trainer = Trainer::resume(&checkpoint, train.crops, device)
            .with_context(|| format!("cannot resume from {}", checkpoint.display()))?;
        if trainer.config() != &file.training {
            bail!(
                "{} was made with other training settings: delete it to start again, or \
                 restore the settings",
                checkpoint.display()
            );
        }
        eprintln!("resuming at step {}", trainer.step_count());
        trainer
    } else if let Some(init) = &file.init {
        let network = TrainableClassifier::load(init, device)
            .with_context(|| format!("cannot start from {}", init.display()))?;
        eprintln!("starting from {}", init.display());
        Trainer::from_network(file.training.clone(), train.crops, network)?
    } else {
        Trainer::new(file.training.clone(), train.crops, device)?
    };
    let bar = if progress {
        ProgressBar::new(trainer.schedule().total_steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} {wide_bar} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step_count());
    let started = Instant::now();
    let history_path = file.out.join("history.jsonl");
    let mut losses = Vec::new();
    let mut last_f1 = String::from("-");
    while !trainer.is_done() {
        let report = trainer.step()?;
        losses.push(f64::from(report.loss));
        bar.inc(1);
        bar.set_message(format!("loss {:.4} val F1 {last_f1}", report.loss));
        if trainer.step_count().is_multiple_of(steps_per_epoch) || trainer.is_done() {
            let counts = validate(trainer.network(), &val)?;
            let epoch = EpochReport {
                epoch: trainer.step_count().div_ceil(steps_per_epoch),
                steps: trainer.step_count(),
                mean_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
                validation: counts,
                precision: counts.precision(),
                recall: counts.recall(),
                f1: counts.f1(),
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            losses.clear();
            last_f1 = epoch.f1.map_or_else(|| "-".into(), |f| format!("{f:.3}"));
            bar.println(format!(
                "epoch {}: loss {:.4}, validation TP {} FP {} FN {}, F1 {last_f1}",
                epoch.epoch, epoch.mean_loss, counts.tp, counts.fp, counts.fn_
            ));
            trainer.save(&checkpoint)?;
            let mut history = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&history_path)
                .with_context(|| format!("cannot write {}", history_path.display()))?;
            writeln!(history, "{}", serde_json::to_string(&epoch)?)?;
        }
    }
    bar.finish_and_clear();
    let weights = file.out.join(WEIGHTS);
    let temporary = file.out.join(format!("{WEIGHTS}.partial"));
    trainer.network().export(&temporary, ExportDtype::F16)?;
    std::fs::rename(&temporary, &weights)
        .with_context(|| format!("cannot write {}", weights.display()))?;
    write_atomic(
        &file.out.join("config.json"),
        serde_json::to_string_pretty(&file)?.as_bytes(),
    )?;
    eprintln!(
        "trained weights: {} (float16); history: {}",
        weights.display(),
        history_path.display()
    );
    Ok(())
}
