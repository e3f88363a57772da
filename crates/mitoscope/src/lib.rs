//! # mitoscope
//!
//! The command-line program that joins the core geometry (`mitoscope-core`), the image reader
//! (`mitoscope-io`) and the networks (`mitoscope-models`). The binary is `src/main.rs`; this
//! library holds its commands so that the tests can call them directly.
//!
//! - [`propose`]: `mitoscope propose IMAGE`: every proposal of an image as GeoJSON, optionally
//!   drawn over the image.
//! - [`coverage`]: how many annotated mitotic figures of `../shared/data` the proposals find
//!   (the measurement behind the default prompt settings).
//! - [`dataset`]: `mitoscope dataset`: the classifier's training data from `../shared/data`,
//!   proposals labelled against the annotations, split by slide or case.
//! - [`detect`]: `mitoscope detect PATH... --out DIR`: the whole pipeline over images, folders
//!   and whole slides: mitotic figures as GeoJSON, CSV and overlay, counts, densities and the
//!   hotspot per input.
//! - [`eval`]: `mitoscope eval --pred FILE --truth FILE`: detections scored against annotated
//!   figures as the MIDOG challenges score them (TP, FP, FN, precision, recall, F1 per group).
//! - [`overlay`]: mask outlines drawn over an image.
//! - [`output`]: atomic file writes.
//! - [`train`]: `mitoscope train --config FILE`, the classifier trained on a `dataset`.
//! - [`serve`]: `mitoscope serve`, the self-hosted server that streams proposals to the
//!   browser.
//! - [`backend`]: where the networks run (`--backend cpu|wgpu|cuda`).

pub mod backend;
pub mod coverage;
pub mod dataset;
pub mod detect;
pub mod eval;
pub mod output;
pub mod overlay;
pub mod propose;
pub mod report;
pub mod serve;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use mitoscope_models::ensemble::Ensemble;
use mitoscope_models::proposals::{MAX_MICRONS_PER_PIXEL, MIN_MICRONS_PER_PIXEL};
use mitoscope_models::sam::Sam;

/// Loads the proposal model: a published SAM checkpoint when `checkpoint` is given, otherwise
/// the embedded LiteMedSAM.
///
/// # Errors
///
/// The checkpoint cannot be read or is not a SAM (the message says which key is wrong and what
/// the option expects).
pub fn load_sam(checkpoint: Option<&Path>, device: &Device) -> Result<Sam> {
    match checkpoint {
        Some(path) => Sam::load(path, device).with_context(|| {
            format!(
                "--sam {} is not a usable Segment Anything checkpoint (expected the official \
                 sam_vit_b/l/h .pth files or lite_medsam.pth)",
                path.display()
            )
        }),
        None => Sam::embedded(device).context("the embedded LiteMedSAM weights"),
    }
}

/// Loads the classifier: the checkpoints of `paths` averaged as an ensemble, or the embedded
/// default when there are none.
///
/// # Errors
///
/// A checkpoint cannot be read or is not a classifier (the message says what `--classifier`
/// takes and where a SAM checkpoint goes).
pub fn load_classifier(paths: &[PathBuf], device: &Device) -> Result<Ensemble> {
    if paths.is_empty() {
        return Ensemble::embedded(device).context(
            "cannot load the embedded default classifier: give one or more classifier \
             checkpoints with --classifier FILE",
        );
    }
    Ensemble::load(paths, device).context(
        "--classifier takes classifier checkpoints (OMG-Net's Lightning .ckpt, a torchvision \
         resnet18 state dict with a 2-class head, or a .safetensors file from `mitoscope \
         train`); a Segment Anything checkpoint goes to --sam",
    )
}

/// The pixel size to use: the file's own where it states one, otherwise `flag` (`--mpp`).
///
/// When both are given and differ by more than 1 %, the file's value is used and a warning
/// says so.
///
/// # Errors
///
/// Neither is given, or the value lies outside the range the proposal stage accepts.
pub fn resolve_mpp(from_file: Option<f64>, flag: Option<f64>) -> Result<f64> {
    let mpp = match (from_file, flag) {
        (Some(file), Some(flag)) => {
            if (file - flag).abs() > 0.01 * file {
                tracing::warn!(
                    file_mpp = file,
                    flag_mpp = flag,
                    "the image states its pixel size; using it rather than --mpp"
                );
            }
            file
        }
        (Some(file), None) => file,
        (None, Some(flag)) => flag,
        (None, None) => bail!(
            "the image does not state its pixel size: give it with --mpp (micrometres per \
             pixel, 0.25 for a 40x scan, 0.5 for 20x)"
        ),
    };
    if !(MIN_MICRONS_PER_PIXEL..=MAX_MICRONS_PER_PIXEL).contains(&mpp) {
        bail!(
            "pixel size {mpp} um/px is outside {MIN_MICRONS_PER_PIXEL}..{MAX_MICRONS_PER_PIXEL}: \
             check --mpp (micrometres per pixel, 0.25 for a 40x scan)"
        );
    }
    Ok(mpp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_pixel_size_wins_and_one_is_required() {
        assert_eq!(resolve_mpp(Some(0.499), None).unwrap(), 0.499);
        assert_eq!(resolve_mpp(Some(0.499), Some(0.25)).unwrap(), 0.499);
        assert_eq!(resolve_mpp(None, Some(0.25)).unwrap(), 0.25);
        let err = resolve_mpp(None, None).unwrap_err().to_string();
        assert!(err.contains("--mpp"), "{err}");
        for bad in [0.0, 0.04, 2.5, -1.0, f64::NAN] {
            let err = resolve_mpp(None, Some(bad)).unwrap_err().to_string();
            assert!(err.contains("outside"), "{err}");
        }
    }
}
