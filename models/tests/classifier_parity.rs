//! Parity of OMG-Net's mask-aware ResNet18 classifier (`Models/SAM_Classifier.py`) with the
//! Python reference, on the golden fixture `tests/fixtures/classifier/` written by
//! `tests/reference/make_classifier_fixture.py`: a Lightning checkpoint with seeded random
//! weights and 16 crops of a real H&E tile, cut around LiteMedSAM proposals.

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use mitoscope_core::{BBox, CocoRle, Crop, crop, rle};
use mitoscope_models::ModelError;
use mitoscope_models::classifier::{Classifier, NUM_CLASSES};
use mitoscope_models::weights::Weights;
use support::{Fixture, assert_close, assert_wrong_shape};

/// Logits may differ from the reference's by this much: float32 on both sides, summed in other
/// orders, and the batch norms folded into the convolutions here.
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixture_file(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/classifier")
        .join(file)
}

/// The fixture's crops, cut here by `mitoscope_core::crop` from the tile and the proposals the
/// Python script read.
fn crops(fixture: &Fixture) -> Vec<Crop> {
    let config = fixture.json("config.json");
    let relative = |key: &str| fixture.path(config[key].as_str().expect("a path"));
    let tile = image::open(relative("tile")).expect("tile").to_rgb8();
    let (width, height) = tile.dimensions();
    let proposals: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(relative("proposals")).unwrap()).unwrap();
    let count = config["crops"].as_u64().unwrap() as usize;
    proposals["proposals"].as_array().unwrap()[..count]
        .iter()
        .map(|p| {
            let rle: CocoRle = serde_json::from_value(p["rle"].clone()).unwrap();
            let mask = rle::encode(&rle::rle_to_mask(&rle).unwrap()).expect("a non-empty mask");
            let b: Vec<u32> = serde_json::from_value(p["box"].clone()).unwrap();
            assert_eq!(mask.bbox, BBox::new(b[0], b[1], b[2], b[3]).unwrap());
            crop(tile.as_raw(), width, height, &mask).expect("crop")
        })
        .collect()
}

/// Checks `actual` against `expected` element by element within `tolerance` (a NaN fails) and
/// prints the largest difference.
fn assert_within(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) });
    assert!(
        worst <= tolerance,
        "{what}: max |diff| {worst:e} exceeds {tolerance:e}\nours {actual:?}\ntheirs {expected:?}"
    );
    eprintln!("{what}: max |diff| {worst:e}");
}

fn values(tensor: Tensor<2>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

#[test]
fn crops_match_the_reference_byte_for_byte() {
    let fixture = Fixture::open("classifier");
    let crops = crops(&fixture);
    let rgb: Vec<u8> = crops.iter().flat_map(|c| c.rgb.iter().copied()).collect();
    let mask: Vec<u8> = crops.iter().flat_map(|c| c.mask.iter().copied()).collect();
    assert_eq!(fixture.shape("rgb"), [crops.len(), 64, 64, 3]);
    assert!(rgb == fixture.bytes("rgb"), "RGB crops differ");
    assert!(mask == fixture.bytes("mask"), "mask crops differ");
}

#[test]
fn logits_match_the_reference() {
    let device = Device::flex();
    let path = fixture_file("classifier.ckpt");
    let classifier = Classifier::load(&path, &device).expect("the fixture's Lightning checkpoint");
    assert!(classifier.uses_mask());
    let fixture = Fixture::open("classifier");
    let crops = crops(&fixture);

    // The normalisation: torchvision's ToTensor and Normalize, the same float32 operations.
    let (rgb, mask) = classifier.input(&crops).unwrap();
    assert_close("input", rgb.clone(), fixture.tensor("input", &device), 1e-6);
    let start = Instant::now();
    let logits = values(classifier.forward(rgb, mask));
    eprintln!(
        "classifier forward: {:.2?} for {} crops",
        start.elapsed(),
        crops.len()
    );
    assert_within(
        "logits",
        &logits,
        &fixture.values("logits"),
        LOGIT_TOLERANCE,
    );

    let probabilities = classifier.classify(&crops).unwrap();
    assert_within(
        "P(mitotic figure)",
        &probabilities,
        &fixture.values("probabilities"),
        1e-5,
    );

    // Every classifier tensor was read, but for the batch norms' `num_batches_tracked`.
    let w = Weights::from_checkpoint(&path, "ResNet18 classifier", &device).unwrap();
    Classifier::from_weights(&w).unwrap();
    let unused: Vec<String> = w
        .unused_keys()
        .into_iter()
        .filter(|key| {
            (key.starts_with("state_dict.backbone.") || key.starts_with("state_dict.mask_encoder."))
                && !key.ends_with(".num_batches_tracked")
        })
        .collect();
    assert!(unused.is_empty(), "classifier keys never read: {unused:?}");
}

#[test]
fn the_portable_copy_for_the_browser_computes_the_same_logits() {
    // What the server hands the browser for a Lightning checkpoint: a safetensors file of the
    // tensors the network reads. Built into a network, it gives the checkpoint's logits bit for
    // bit, and the reference's within the tolerance.
    let device = Device::flex();
    let path = fixture_file("classifier.ckpt");
    let bytes = Classifier::portable(&path).expect("a portable copy");
    let weights =
        Weights::from_safetensors_bytes(bytes, Path::new("portable"), "classifier", &device)
            .unwrap();
    let copy = Classifier::from_weights(&weights).expect("the copy builds");
    assert!(copy.uses_mask());
    assert!(
        weights.unused_keys().is_empty(),
        "{:?}",
        weights.unused_keys()
    );
    let original = Classifier::load(&path, &device).unwrap();
    let fixture = Fixture::open("classifier");
    let crops = crops(&fixture);
    let logits = |network: &Classifier| {
        let (rgb, mask) = network.input(&crops).unwrap();
        values(network.forward(rgb, mask))
    };
    let ours = logits(&copy);
    assert_eq!(ours, logits(&original));
    assert_within(
        "logits of the portable copy",
        &ours,
        &fixture.values("logits"),
        LOGIT_TOLERANCE,
    );

    // A safetensors file is handed over as it is; a file of another kind is refused.
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/classifier_seed0.safetensors");
    assert_eq!(
        Classifier::portable(&shipped).unwrap(),
        std::fs::read(&shipped).unwrap()
    );
    let err = Classifier::portable(&fixture_file("four_channel.ckpt")).unwrap_err();
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
}

#[test]
fn the_mask_changes_the_logits() {
    // Guards the parity test: the fixture's mask moves the logits far beyond the tolerance, so
    // a mask added at the wrong place, or not at all, cannot pass it.
    let fixture = Fixture::open("classifier");
    let with = fixture.values("logits");
    let without = fixture.values("logits_no_mask");
    let largest = with
        .iter()
        .zip(&without)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(largest > 1.0, "max |logits - logits_no_mask| = {largest}");
}

#[test]
fn a_bare_torchvision_state_dict_ignores_the_mask() {
    // The fixture's weights under `backbone.` carry exactly the key names of torchvision's
    // resnet18 state dict: seen from there they are a bare state dict, the reference's network
    // with Mask_Input = false, which torchvision's own forward computed in the fixture.
    let device = Device::flex();
    let w = Weights::from_checkpoint(
        &fixture_file("classifier.ckpt"),
        "ResNet18 classifier",
        &device,
    )
    .unwrap();
    let classifier = Classifier::from_weights(&w.at("backbone")).expect("torchvision layout");
    assert!(!classifier.uses_mask());
    let fixture = Fixture::open("classifier");
    let (rgb, mask) = classifier.input(&crops(&fixture)).unwrap();
    let logits = values(classifier.forward(rgb, mask));
    assert_within(
        "logits without the mask",
        &logits,
        &fixture.values("logits_no_mask"),
        LOGIT_TOLERANCE,
    );
}

#[test]
fn an_imagenet_head_is_refused() {
    let path = fixture_file("imagenet_head.pth");
    let err = Classifier::load(&path, &Device::flex()).unwrap_err();
    eprintln!("{err}");
    assert_wrong_shape(
        &err,
        "fc.weight",
        &[NUM_CLASSES, 512],
        &[1000, 512],
        &path.display().to_string(),
    );
}

#[test]
fn the_four_channel_input_is_refused() {
    let path = fixture_file("four_channel.ckpt");
    let err = Classifier::load(&path, &Device::flex()).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("4_Channel"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_sam_checkpoint_is_not_a_classifier() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lite_medsam.pth");
    let err = Classifier::load(&path, &Device::flex()).unwrap_err();
    eprintln!("{err}");
    match &err {
        ModelError::MissingKey { key, model, .. } => {
            assert_eq!(key, "backbone.conv1.weight");
            assert_eq!(model, "ResNet18 classifier");
        }
        other => panic!("expected MissingKey, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("classifier checkpoint?"), "{message}");
}

#[test]
fn a_file_that_is_no_checkpoint_is_unreadable() {
    let path = fixture_file("config.json");
    let err = Classifier::load(&path, &Device::flex()).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ModelError::Unreadable { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn random_weights_run_and_bad_crops_are_refused() {
    let device = Device::flex();
    let classifier = Classifier::from_weights(&Weights::random(3, "ResNet18 classifier", &device))
        .expect("every key exists in random weights");
    assert!(classifier.uses_mask());
    let logits = classifier.forward(
        Tensor::zeros([2, 3, 64, 64], &device),
        Tensor::ones([2, 1, 64, 64], &device),
    );
    assert_eq!(logits.dims(), [2, NUM_CLASSES]);

    assert_eq!(classifier.classify(&[]).unwrap(), Vec::<f32>::new());
    let small = Crop {
        rgb: vec![0; 32 * 32 * 3],
        mask: vec![0; 32 * 32],
    };
    let err = classifier.classify(&[small]).unwrap_err();
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
    let p = classifier
        .classify(&[Crop {
            rgb: vec![128; 64 * 64 * 3],
            mask: vec![1; 64 * 64],
        }])
        .unwrap();
    assert!(p.len() == 1 && (0.0..=1.0).contains(&p[0]), "{p:?}");
}
