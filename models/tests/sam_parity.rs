//! End-to-end parity with the Python reference on real H&E tiles: pre-processing, image
//! embedding, batched prompts, low-resolution logits, IoU predictions and upscaled masks,
//! through the public `Sam` API (the steps of `segment_anything.SamPredictor`).
//!
//! Fixtures: `tests/reference/make_fixtures.py`. Tolerance: every float output within 1e-4 of
//! the largest magnitude of the reference tensor (f32 on both sides; the order of sums differs).

mod support;

use std::path::Path;

use burn::prelude::*;
use mitoscope_models::sam::transforms::{RgbImage, preprocess_shape, resize_bilinear_pil};
use mitoscope_models::sam::{ImageEmbedding, PointLabel, Prompt, Sam, SamConfig};
use mitoscope_models::weights::Weights;
use support::{Fixture, assert_close, sam_tiny_config};

/// Relative tolerance of every comparison (see the module comment).
const TOLERANCE: f32 = 1e-4;

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn tile(fixture: &Fixture) -> RgbImage {
    let (pixels, [h, w]) = fixture.tile();
    RgbImage::new(w, h, pixels).unwrap()
}

/// The prompts of `prompts.json`, in original tile coordinates.
fn prompts(fixture: &Fixture) -> Vec<Prompt> {
    let json = fixture.json("prompts.json");
    let number = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let points = case["points"].as_array().map_or_else(Vec::new, |points| {
                points
                    .iter()
                    .zip(case["labels"].as_array().unwrap())
                    .map(|(p, label)| {
                        let label = match label.as_i64().unwrap() {
                            1 => PointLabel::Foreground,
                            _ => PointLabel::Background,
                        };
                        ([number(&p[0]), number(&p[1])], label)
                    })
                    .collect()
            });
            let bbox = case["box"]
                .as_array()
                .map(|b| [number(&b[0]), number(&b[1]), number(&b[2]), number(&b[3])]);
            Prompt { points, bbox }
        })
        .collect()
}

/// Checks every prompt case of `fixture` against the reference, from `embedding`.
fn check_cases(name: &str, sam: &Sam, fixture: &Fixture, embedding: &ImageEmbedding) {
    let device = sam.device();
    for (k, prompt) in prompts(fixture).iter().enumerate() {
        for (mode, multimask) in [("multi", true), ("single", false)] {
            let what = format!("{name} case {k} {mode}");
            let prediction = sam
                .predict(embedding, std::slice::from_ref(prompt), multimask)
                .unwrap();
            let low_res = fixture.tensor::<3>(&format!("case{k}_{mode}_lowres"), device);
            let iou = fixture.tensor::<1>(&format!("case{k}_{mode}_iou"), device);
            let masks = fixture.tensor::<3>(&format!("case{k}_{mode}_masks"), device);
            let upscaled = sam.upscale_masks(prediction.low_res_logits.clone(), embedding);
            assert_close(
                &format!("{what} low-res"),
                prediction.low_res_logits.squeeze_dim(0),
                low_res,
                TOLERANCE,
            );
            assert_close(
                &format!("{what} iou"),
                prediction.iou.squeeze_dim(0),
                iou,
                TOLERANCE,
            );
            assert_close(
                &format!("{what} masks"),
                upscaled.squeeze_dim(0),
                masks,
                TOLERANCE,
            );
        }
    }
}

#[test]
fn sam_resize_matches_pil_exactly() {
    let fixture = Fixture::open("sam_tiny");
    let image = tile(&fixture);
    let [h, w] = preprocess_shape([image.height, image.width], 256);
    assert_eq!(fixture.shape("resized"), [h, w, 3]);
    let resized = resize_bilinear_pil(&image, w, h);
    let expected = fixture.bytes("resized");
    let differing = resized
        .pixels
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} bytes differ from PIL",
        expected.len()
    );
}

#[test]
fn sam_tiny_matches_the_reference_predictor() {
    let device = Device::flex();
    let fixture = Fixture::open("sam_tiny");
    let weights =
        Weights::from_checkpoint(&fixture.path("sam_tiny.pth"), "SAM tiny", &device).unwrap();
    let sam = Sam::from_weights(&weights, sam_tiny_config()).unwrap();
    assert!(
        weights
            .unused_keys()
            .iter()
            .all(|k| k.contains("mask_downscaling"))
    );

    // Pre-processing: resize, normalisation, padding.
    let image = tile(&fixture);
    let (input, input_size) = sam.preprocess(&image);
    assert_eq!(input_size, [192, 256]);
    assert_close(
        "sam_tiny input",
        input.clone(),
        fixture.tensor("input", &device),
        TOLERANCE,
    );

    // The embedding, then every prompt.
    let embedding = sam.embed(&image);
    assert_close(
        "sam_tiny embedding",
        embedding.embedding.clone(),
        fixture.tensor("embedding", &device),
        TOLERANCE,
    );
    check_cases("sam_tiny", &sam, &fixture, &embedding);
}

#[test]
fn lite_medsam_matches_the_reference() {
    let device = Device::flex();
    let fixture = Fixture::open("lite_medsam");
    let sam = Sam::embedded(&device).unwrap();

    // The wheel's pre-processing: /255 and a bilinear stretch to 256 x 256.
    let image = tile(&fixture);
    let (input, input_size) = sam.preprocess(&image);
    assert_eq!(input_size, [256, 256]);
    assert_close(
        "lite_medsam input",
        input,
        fixture.tensor("input", &device),
        TOLERANCE,
    );

    let embedding = sam.embed(&image);
    assert_close(
        "lite_medsam embedding",
        embedding.embedding.clone(),
        fixture.tensor("embedding", &device),
        TOLERANCE,
    );
    check_cases("lite_medsam", &sam, &fixture, &embedding);
}

#[test]
fn published_checkpoints_are_recognised_by_their_keys() {
    let device = Device::flex();
    let path = repo_file("models/weights/lite_medsam.pth");
    let weights = Weights::from_checkpoint(&path, "Segment Anything", &device).unwrap();
    assert_eq!(
        SamConfig::detect(&weights).unwrap(),
        SamConfig::lite_medsam()
    );

    // The reduced ViT-B layout has a 48-wide position embedding: no published size.
    let fixture = Fixture::open("sam_tiny");
    let weights =
        Weights::from_checkpoint(&fixture.path("sam_tiny.pth"), "Segment Anything", &device)
            .unwrap();
    let err = SamConfig::detect(&weights).unwrap_err().to_string();
    assert!(
        err.contains("image_encoder.pos_embed") && err.contains("[1, 16, 16, 48]"),
        "{err}"
    );
}
