//! An ensemble of classifiers, as OMG-Net runs its five seeds: each member classifies every
//! crop and the ensemble's probability is the mean of the members' probabilities.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use mitoscope_core::crop::Crop;

use crate::classifier::{Classifier, MODEL, read_back};
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
            add(&mut sum, member.classify(crops)?);
        }
        Ok(self.mean(sum))
    }

    /// [`Ensemble::classify`] for a device whose answers must be awaited (WebGPU in a browser
    /// cannot block): `batch` crops per forward pass, each read back with `into_data_async`,
    /// and `between_batches` awaited after each (a browser's page paints and takes input then).
    ///
    /// # Errors
    ///
    /// As [`Ensemble::classify`].
    pub async fn classify_async<F: Future<Output = ()>>(
        &self,
        crops: &[Crop],
        batch: usize,
        mut between_batches: impl FnMut() -> F,
    ) -> Result<Vec<f32>> {
        let mut sum = vec![0f64; crops.len()];
        for member in &self.members {
            let mut at = 0;
            for chunk in crops.chunks(batch.max(1)) {
                let data = member
                    .probabilities(chunk)?
                    .into_data_async()
                    .await
                    .map_err(|err| ModelError::Readback(format!("{err:?}")))?;
                add(&mut sum[at..], read_back(data)?);
                at += chunk.len();
                between_batches().await;
            }
        }
        Ok(self.mean(sum))
    }

    /// The mean of the members' summed probabilities.
    fn mean(&self, sum: Vec<f64>) -> Vec<f32> {
        let n = self.members.len() as f64;
        sum.into_iter().map(|total| (total / n) as f32).collect()
    }
}

/// Adds one member's probabilities to the running sums.
fn add(sum: &mut [f64], probabilities: Vec<f32>) {
    for (total, p) in sum.iter_mut().zip(probabilities) {
        *total += f64::from(p);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn the_async_classification_equals_the_blocking_one() {
        let device = Device::flex();
        let member = |seed| Classifier::from_weights(&Weights::random(seed, MODEL, &device));
        let ensemble =
            Ensemble::from_members(vec![member(1).unwrap(), member(2).unwrap()]).unwrap();
        let crops: Vec<Crop> = (0..5u8)
            .map(|i| Crop {
                rgb: (0..64 * 64 * 3)
                    .map(|j| (j as u8).wrapping_mul(i + 1))
                    .collect(),
                mask: (0..64 * 64)
                    .map(|j| u8::from(j % (i as usize + 2) == 0))
                    .collect(),
            })
            .collect();
        let mut pauses = 0;
        let future = ensemble.classify_async(&crops, 2, || {
            pauses += 1;
            std::future::ready(())
        });
        // The CPU backend answers at once: one poll finishes the future.
        let Poll::Ready(result) = pin!(future).poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("the flex backend's answer was not ready")
        };
        assert_eq!(result.unwrap(), ensemble.classify(&crops).unwrap());
        // Three batches of at most two crops, for each of the two members.
        assert_eq!(pauses, 6);
    }
}
