//! Training the classifier on real crops: the loss goes down, an interrupted run resumes bit for
//! bit, and the exported network is the inference classifier.
//!
//! The training crops are cut with `mitoscope_core::crop` from the ICPR-2012 patches of
//! `../shared/data/icpr2012_patches` (see its SOURCE.md; research use, not in the repository):
//! mitotic figures with their exact masks, and nuclei of the patches without mitoses as
//! negatives, masked by the haematoxylin around a nucleus seed. The parity tests use the 16 real
//! crops of the classifier's golden fixture.

mod support;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use mitoscope_core::seeds::{SeedParams, gaussian_blur, haematoxylin, nucleus_seeds};
use mitoscope_core::{AugmentSettings, BinaryMask, Crop, Grid, ProposalSettings, crop, rle};
use mitoscope_models::classifier::Classifier;
use mitoscope_models::train::{
    ExportDtype, LabelledCrop, StepReport, TrainConfig, TrainableClassifier, Trainer,
};
use mitoscope_models::weights::Weights;
use support::Fixture;

/// ICPR-2012 scanner A: micrometres per pixel (SOURCE.md).
const ICPR_MPP: f64 = 0.2456;
/// Crops of each class in the training tests.
const PER_CLASS: usize = 16;

fn icpr_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/icpr2012_patches")
}

/// An ICPR patch as RGB bytes (256 x 256).
fn patch(file: &str) -> (Vec<u8>, u32, u32) {
    let image = image::open(icpr_dir().join("images").join(file))
        .unwrap_or_else(|err| panic!("{file}: {err} (the shared ICPR-2012 data)"))
        .to_rgb8();
    let (width, height) = image.dimensions();
    (image.into_raw(), width, height)
}

/// The 4-connected component of `inside` that holds the pixel nearest to `(cx, cy)`, limited
/// to `radius` pixels around that pixel.
fn component(
    inside: &[bool],
    width: u32,
    height: u32,
    (cx, cy): (f64, f64),
    radius: i64,
) -> BinaryMask {
    let (w, h) = (width as i64, height as i64);
    let start = (0..w * h)
        .filter(|&i| inside[i as usize])
        .min_by(|&a, &b| {
            let d = |i: i64| ((i % w) as f64 - cx).powi(2) + ((i / w) as f64 - cy).powi(2);
            d(a).total_cmp(&d(b))
        })
        .expect("a mask pixel");
    let (sx, sy) = (start % w, start / w);
    let mut mask = vec![false; (w * h) as usize];
    let mut queue = VecDeque::from([(sx, sy)]);
    mask[start as usize] = true;
    while let Some((x, y)) = queue.pop_front() {
        for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] {
            let near = (nx - sx).abs() <= radius && (ny - sy).abs() <= radius;
            if nx >= 0 && ny >= 0 && nx < w && ny < h && near {
                let i = (ny * w + nx) as usize;
                if inside[i] && !mask[i] {
                    mask[i] = true;
                    queue.push_back((nx, ny));
                }
            }
        }
    }
    Grid::new(width, height, mask).unwrap()
}

/// The crop of the object `mask` in a patch.
fn cut(rgb: &[u8], width: u32, height: u32, mask: &BinaryMask) -> Crop {
    let object = rle::encode(mask).expect("a non-empty mask");
    crop(rgb, width, height, &object).expect("a crop inside the patch")
}

/// `PER_CLASS` mitotic figures (exact ICPR masks) and `PER_CLASS` other nuclei (one per patch
/// without mitoses: the seed nearest the centre, masked by the smoothed haematoxylin above the
/// patch's Otsu threshold).
fn icpr_crops() -> Vec<LabelledCrop> {
    let labels = std::fs::read_to_string(icpr_dir().join("labels.csv")).expect("labels.csv");
    let rows: Vec<Vec<&str>> = labels
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let mut examples = Vec::new();

    for row in rows.iter().filter(|r| r[1] == "1").take(PER_CLASS) {
        let (rgb, width, height) = patch(row[0]);
        let grey = image::open(icpr_dir().join("masks").join(row[0]))
            .expect("mask")
            .to_luma8();
        let inside: Vec<bool> = grey.as_raw().iter().map(|&v| v > 127).collect();
        let centroid = (row[2].parse().unwrap(), row[3].parse().unwrap());
        let mask = component(&inside, width, height, centroid, 128);
        examples.push(LabelledCrop {
            crop: cut(&rgb, width, height, &mask),
            mitotic_figure: true,
            hard_negative: false,
        });
    }

    let params = SeedParams::new(&ProposalSettings::default(), ICPR_MPP).unwrap();
    for row in rows.iter().filter(|r| r[1] == "0") {
        if examples.len() == 2 * PER_CLASS {
            break;
        }
        let (rgb, width, height) = patch(row[0]);
        let seeds = nucleus_seeds(&rgb, width, height, &params).unwrap();
        let (Some(threshold), false) = (seeds.threshold, seeds.points.is_empty()) else {
            continue;
        };
        let &[sx, sy] = seeds
            .points
            .iter()
            .min_by_key(|[x, y]| {
                (i64::from(*x) - i64::from(width / 2)).pow(2)
                    + (i64::from(*y) - i64::from(height / 2)).pow(2)
            })
            .unwrap();
        let smooth =
            gaussian_blur(&haematoxylin(&rgb, width, height).unwrap(), params.sigma_px).unwrap();
        let inside: Vec<bool> = smooth.data().iter().map(|&v| v > threshold).collect();
        let mask = component(&inside, width, height, (f64::from(sx), f64::from(sy)), 24);
        examples.push(LabelledCrop {
            crop: cut(&rgb, width, height, &mask),
            mitotic_figure: false,
            hard_negative: false,
        });
    }
    assert_eq!(examples.len(), 2 * PER_CLASS, "crops of both classes");
    examples
}

/// The 16 real crops of the classifier's golden fixture.
fn fixture_crops() -> Vec<Crop> {
    let fixture = Fixture::open("classifier");
    let (rgb, mask) = (fixture.bytes("rgb"), fixture.bytes("mask"));
    let plane = 64 * 64;
    (0..rgb.len() / (3 * plane))
        .map(|i| Crop {
            rgb: rgb[i * 3 * plane..(i + 1) * 3 * plane].to_vec(),
            mask: mask[i * plane..(i + 1) * plane].to_vec(),
        })
        .collect()
}

fn values(tensor: Tensor<2>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

/// The largest absolute difference (NaN if any value is NaN).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) })
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len() as f32
}

#[test]
fn training_lowers_the_loss_on_real_crops() {
    let examples = icpr_crops();
    let config = TrainConfig {
        batch_size: 16,
        max_steps: Some(30),
        seed: 1,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, examples, &Device::flex()).unwrap();
    let start = Instant::now();
    let mut losses = Vec::new();
    while !trainer.is_done() {
        let StepReport { loss, .. } = trainer.step().unwrap();
        assert!(loss.is_finite(), "step {}: loss {loss}", losses.len());
        losses.push(loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{} steps of batch 16 in {seconds:.1} s: {:.1} crops/s; losses {losses:?}",
        losses.len(),
        (16 * losses.len()) as f64 / seconds
    );
    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
    assert!(
        last < 0.8 * first,
        "mean loss of the first 5 steps {first}, of the last 5 {last}"
    );
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one() {
    // Half the crops; every other negative taken for a look-alike, with a share of each batch.
    let examples: Vec<LabelledCrop> = icpr_crops()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, mut e)| {
            e.hard_negative = !e.mitotic_figure && i % 4 == 0;
            e
        })
        .collect();
    assert!(examples.iter().any(|e| e.hard_negative));
    let config = TrainConfig {
        batch_size: 8,
        max_steps: Some(6),
        seed: 2,
        hard_negative_share: 0.25,
        ..TrainConfig::default()
    };
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();

    // In one go.
    let mut whole = Trainer::new(config.clone(), examples.clone(), &device).unwrap();
    let whole_losses: Vec<f32> = (0..6).map(|_| whole.step().unwrap().loss).collect();
    whole
        .network()
        .export(&dir.path().join("whole.safetensors"), ExportDtype::F32)
        .unwrap();

    // Three steps, a checkpoint, a new process's worth of state, three more.
    let mut first = Trainer::new(config, examples.clone(), &device).unwrap();
    let mut losses: Vec<f32> = (0..3).map(|_| first.step().unwrap().loss).collect();
    let checkpoint = dir.path().join("checkpoint");
    first.save(&checkpoint).unwrap();
    // Saving again replaces the folder whole.
    first.save(&checkpoint).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&checkpoint, examples.clone(), &device).unwrap();
    assert_eq!(resumed.step_count(), 3);
    losses.extend((0..3).map(|_| resumed.step().unwrap().loss));
    resumed
        .network()
        .export(&dir.path().join("resumed.safetensors"), ExportDtype::F32)
        .unwrap();

    eprintln!("losses {whole_losses:?}");
    assert_eq!(
        losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        whole_losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        "losses {losses:?} vs {whole_losses:?}"
    );
    // Weights, running statistics and batch counts, byte for byte.
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let (a, b) = (read("whole.safetensors"), read("resumed.safetensors"));
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let differing: Vec<String> = ta
        .names()
        .into_iter()
        .filter(|k| ta.tensor(k).unwrap().data() != tb.tensor(k).unwrap().data())
        .map(str::to_string)
        .collect();
    assert!(differing.is_empty(), "tensors differ: {differing:?}");
    assert!(a == b, "the same tensors in other bytes");

    // Other crops are refused.
    let mut other = examples;
    other[0].crop.rgb[0] ^= 1;
    let err = Trainer::resume(&checkpoint, other, &device).err().unwrap();
    assert!(err.to_string().contains("other crops"), "{err}");
}

#[test]
fn the_exported_network_is_the_inference_classifier() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    // A few training steps move the weights and the running statistics away from their start.
    let config = TrainConfig {
        batch_size: 8,
        max_steps: Some(3),
        seed: 3,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, icpr_crops(), &device).unwrap();
    for _ in 0..3 {
        trainer.step().unwrap();
    }
    let network = trainer.network().valid();
    let crops = fixture_crops();
    let (rgb, mask) = network.input(&crops).unwrap();
    let ours = values(network.forward(rgb.clone(), mask.clone()));
    let spread = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("logits up to {spread}");

    // f32: the same network, its batch norms folded at load.
    let f32_path = dir.path().join("classifier.safetensors");
    trainer
        .network()
        .export(&f32_path, ExportDtype::F32)
        .unwrap();
    let classifier = Classifier::load(&f32_path, &device).unwrap();
    assert!(classifier.uses_mask());
    let theirs = values(classifier.forward(rgb.clone(), mask.clone()));
    let diff = max_diff(&ours, &theirs);
    eprintln!("f32 export: max |logit diff| {diff:e}");
    assert!(diff <= 1e-4, "f32 export: max |logit diff| {diff:e}");

    // f16: half the bytes; its rounding costs at most 1e-2 in the logits (measured: 1.7e-3 for
    // logits up to 6).
    let f16_path = dir.path().join("classifier-f16.safetensors");
    trainer
        .network()
        .export(&f16_path, ExportDtype::F16)
        .unwrap();
    let sizes = [&f32_path, &f16_path].map(|p| std::fs::metadata(p).unwrap().len());
    assert!(sizes[1] * 2 < sizes[0] + 100_000, "{sizes:?}");
    let half = Classifier::load(&f16_path, &device).unwrap();
    let diff = max_diff(&ours, &values(half.forward(rgb, mask)));
    eprintln!("f16 export: max |logit diff| {diff:e}");
    assert!(diff <= 1e-2, "f16 export: max |logit diff| {diff:e}");

    // Read back into a trainable network, it exports the same bytes.
    let back = TrainableClassifier::load(&f32_path, &device).unwrap();
    let again = dir.path().join("again.safetensors");
    back.export(&again, ExportDtype::F32).unwrap();
    let strip_counts = |path: &Path| {
        // num_batches_tracked restarts at 0 on import: compare everything else.
        let bytes = std::fs::read(path).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut named: Vec<(String, Vec<u8>)> = tensors
            .tensors()
            .into_iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, v)| (k, v.data().to_vec()))
            .collect();
        named.sort();
        named
    };
    assert!(strip_counts(&f32_path) == strip_counts(&again));
}

#[test]
fn the_export_has_the_lightning_checkpoints_keys() {
    // The fixture is a Lightning checkpoint written by PyTorch: its `state_dict` names every
    // tensor OMG-Net's module holds.
    let device = Device::flex();
    let ckpt =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/classifier/classifier.ckpt");
    let w = Weights::from_checkpoint(&ckpt, "ResNet18 classifier", &device).unwrap();
    // Less OMG-Net's `encoder_4d` (the stem of the 4-channel input, which the published
    // configuration does not use) and `loss_fcn.weight` (the loss's class weights).
    let mut expected: Vec<String> = w
        .unused_keys()
        .into_iter()
        .filter_map(|k| k.strip_prefix("state_dict.").map(str::to_string))
        .filter(|k| !k.starts_with("encoder_4d.") && !k.starts_with("loss_fcn."))
        .collect();
    expected.sort();
    let network = TrainableClassifier::new(0, &device);
    let mut keys = network.checkpoint_keys().unwrap();
    keys.sort();
    assert_eq!(keys, expected);
    assert!(keys.len() > 100, "{}", keys.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.safetensors");
    network.export(&path, ExportDtype::F32).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let count = file.tensor("backbone.bn1.num_batches_tracked").unwrap();
    assert_eq!(count.dtype(), safetensors::Dtype::I64);
    assert!(count.shape().is_empty());
    assert_eq!(file.tensor("backbone.fc.weight").unwrap().shape(), [2, 512]);
}

#[test]
fn a_lightning_checkpoint_loads_for_training_and_evaluates_as_pytorch() {
    // The unfolded batch norms in evaluation mode give PyTorch's logits on the fixture's
    // Lightning checkpoint, whose running statistics are far from their initial values.
    let device = Device::flex();
    let ckpt =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/classifier/classifier.ckpt");
    let network = TrainableClassifier::load(&ckpt, &device).unwrap();
    let (rgb, mask) = network.input(&fixture_crops()).unwrap();
    let logits = values(network.forward(rgb, mask));
    let expected = Fixture::open("classifier").values("logits");
    let diff = max_diff(&logits, &expected);
    eprintln!("max |logit diff| with PyTorch {diff:e}");
    assert!(diff <= 1e-4, "max |logit diff| with PyTorch {diff:e}");

    // And it trains on: one step moves the head.
    let examples: Vec<LabelledCrop> = fixture_crops()
        .into_iter()
        .enumerate()
        .map(|(i, crop)| LabelledCrop {
            crop,
            mitotic_figure: i % 2 == 0,
            hard_negative: false,
        })
        .collect();
    let config = TrainConfig {
        batch_size: 4,
        max_steps: Some(1),
        ..TrainConfig::default()
    };
    let before = network.fc.weight.val().into_data();
    let mut trainer = Trainer::from_network(config, examples, network).unwrap();
    let report = trainer.step().unwrap();
    assert!(report.loss.is_finite() && trainer.is_done());
    let after = trainer.network().fc.weight.val().into_data();
    assert_ne!(before, after);
}

#[test]
fn seeds_fix_the_initial_network_and_settings_are_checked() {
    let device = Device::flex();
    let crops = fixture_crops();
    let logits = |seed| {
        let network = TrainableClassifier::new(seed, &device);
        let (rgb, mask) = network.input(&crops[..4]).unwrap();
        values(network.forward(rgb, mask))
    };
    assert_eq!(logits(5), logits(5));
    assert_ne!(logits(5), logits(6));

    let examples: Vec<LabelledCrop> = crops
        .iter()
        .map(|crop| LabelledCrop {
            crop: crop.clone(),
            mitotic_figure: false,
            hard_negative: false,
        })
        .collect();
    let err = Trainer::new(TrainConfig::default(), examples.clone(), &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("both classes"), "{err}");
    let bad = TrainConfig {
        augment: AugmentSettings {
            stain: 2.0,
            ..AugmentSettings::default()
        },
        ..TrainConfig::default()
    };
    let err = Trainer::new(bad, examples, &device).err().unwrap();
    assert!(err.to_string().contains("stain"), "{err}");
    let json = serde_json::to_string(&TrainConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<TrainConfig>(&json).unwrap(),
        TrainConfig::default()
    );
    assert!(serde_json::from_str::<TrainConfig>(r#"{"learning_rat": 1}"#).is_err());
}

#[test]
fn safetensors_files_are_told_apart_by_content_and_checked() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let network = TrainableClassifier::new(4, &device);
    let exported = dir.path().join("classifier.safetensors");
    network.export(&exported, ExportDtype::F16).unwrap();

    // The content decides, whatever the name.
    let renamed = dir.path().join("classifier.ckpt");
    std::fs::copy(&exported, &renamed).unwrap();
    let crops = fixture_crops();
    let logits = |path: &Path| {
        let classifier = Classifier::load(path, &device).unwrap();
        let (rgb, mask) = classifier.input(&crops[..2]).unwrap();
        values(classifier.forward(rgb, mask))
    };
    assert_eq!(logits(&exported), logits(&renamed));

    // A truncated file named .safetensors is unreadable, and says so with its name.
    let bytes = std::fs::read(&exported).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Classifier::load(&truncated, &device).unwrap_err();
    assert!(
        matches!(err, mitoscope_models::ModelError::Unreadable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    // A safetensors file of another network names the first missing key.
    let other = dir.path().join("other.safetensors");
    let data = vec![0u8; 4 * 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    safetensors::serialize_to_file([("encoder.weight", view)], None, &other).unwrap();
    match Classifier::load(&other, &device).unwrap_err() {
        mitoscope_models::ModelError::MissingKey { key, .. } => {
            assert_eq!(key, "backbone.conv1.weight")
        }
        err => panic!("expected MissingKey, got {err}"),
    }
}
