//! An ensemble of classifiers, as OMG-Net runs its five seeds: each member classifies every
//! crop and the ensemble's probability is the mean of the members' probabilities.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use mitoscope_core::crop::Crop;

use crate::classifier::{Classifier, MODEL};
use crate::weights::Weights;
use crate::{ModelError, Result};

/// The default classifiers compiled into the binary (see `models/weights/README.md`, "The
/// default classifier"): the members of the shipped ensemble, float16 safetensors files made by
/// `mitoscope train`. One member for now: the report measured a five-seed ensemble no better
/// than one seed.
pub const EMBEDDED: &[(&str, &[u8])] = &[(
    "embedded:classifier_seed0.safetensors",
    include_bytes!("../weights/classifier_seed0.safetensors"),
)];

/// One or more classifiers whose probabilities are averaged.
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<Classifier>,
    /// Where each member came from, for logs and reports: a file path or `embedded:NAME`.
    sources: Vec<String>,
}

impl Ensemble {
    /// Loads every checkpoint of `paths` with [`Classifier::load`], in order.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when `paths` is empty; otherwise the first member's error,
    /// which names its file.
    pub fn load(paths: &[PathBuf], device: &Device) -> Result<Self> {
        if paths.is_empty() {
            return Err(ModelError::InvalidInput(
                "an ensemble needs at least one classifier checkpoint".into(),
            ));
        }
        let members = paths
            .iter()
            .map(|path| Classifier::load(path, device))
            .collect::<Result<Vec<_>>>()?;
        let sources = paths.iter().map(|p| p.display().to_string()).collect();
        Ok(Self { members, sources })
    }

    /// Builds an ensemble from safetensors files already in memory, each with a name for its
    /// errors (the embedded default, weights fetched by the browser).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when `files` is empty; otherwise the first member's error.
    pub fn from_safetensors(files: &[(&str, &[u8])], device: &Device) -> Result<Self> {
        if files.is_empty() {
            return Err(ModelError::InvalidInput(
                "an ensemble needs at least one classifier".into(),
            ));
        }
        let mut members = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let weights =
                Weights::from_safetensors_bytes(bytes.to_vec(), Path::new(name), MODEL, device)?;
            members.push(Classifier::from_weights(&weights)?);
        }
        let sources = files.iter().map(|(name, _)| (*name).to_string()).collect();
        Ok(Self { members, sources })
    }

    /// The shipped default: the [`EMBEDDED`] members.
    ///
    /// # Errors
    ///
    /// As [`Ensemble::from_safetensors`].
    pub fn embedded(device: &Device) -> Result<Self> {
        Self::from_safetensors(EMBEDDED, device)
    }

    /// An ensemble of the given classifiers.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when `members` is empty.
    pub fn from_members(members: Vec<Classifier>) -> Result<Self> {
        if members.is_empty() {
            return Err(ModelError::InvalidInput(
                "an ensemble needs at least one classifier".into(),
            ));
        }
        let sources = (0..members.len()).map(|i| format!("member {i}")).collect();
        Ok(Self { members, sources })
    }

    /// How many classifiers the ensemble averages.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: an ensemble has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Where each member came from.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The probability that each crop shows a mitotic figure: the mean over the members of
    /// [`Classifier::classify`].
    ///
    /// # Errors
    ///
    /// As [`Classifier::classify`].
    pub fn classify(&self, crops: &[Crop]) -> Result<Vec<f32>> {
        let mut sum = vec![0f64; crops.len()];
        for member in &self.members {
            for (total, p) in sum.iter_mut().zip(member.classify(crops)?) {
                *total += f64::from(p);
            }
        }
        let n = self.members.len() as f64;
        Ok(sum.into_iter().map(|total| (total / n) as f32).collect())
    }
}
