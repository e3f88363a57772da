//! Loading checkpoints: bad files give errors that name the file and the first bad key, never
//! a panic; the full-size published layouts load.

mod support;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use mitoscope_models::ModelError;
use mitoscope_models::sam::{Sam, SamConfig};
use mitoscope_models::weights::Weights;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path)
}

fn lite_medsam_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lite_medsam.pth")
}

/// `bytes` written to a temporary `.pth` file.
fn temp_checkpoint(bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".pth").tempfile().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file
}

#[test]
fn a_truncated_checkpoint_is_refused_with_its_name() {
    let bytes = std::fs::read(fixture("sam_tiny/sam_tiny.pth")).unwrap();
    for keep in [0, 10, bytes.len() / 2, bytes.len() - 30] {
        let file = temp_checkpoint(&bytes[..keep]);
        let err = Sam::load(file.path(), &Device::flex()).unwrap_err();
        assert!(
            matches!(err, ModelError::Unreadable { .. }),
            "{keep} bytes: {err}"
        );
        assert!(
            err.to_string().contains(&file.path().display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_damaged_tensor_is_reported_with_its_key() {
    // Flip bytes inside the stored data (not the zip directory): the archive opens, and the
    // damaged storage fails its checksum when the network reads that tensor.
    let mut bytes = std::fs::read(fixture("sam_tiny/sam_tiny.pth")).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xA5;
    }
    let file = temp_checkpoint(&bytes);
    let err = Sam::load(file.path(), &Device::flex()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_file_of_another_format_is_refused() {
    let err = Sam::load(&fixture("sam_tiny/tile.png"), &Device::flex()).unwrap_err();
    assert!(matches!(err, ModelError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("tile.png"), "{err}");

    let err = Sam::load(Path::new("no/such/sam_vit_h.pth"), &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("no/such/sam_vit_h.pth"), "{err}");
}

#[test]
fn a_checkpoint_of_another_model_names_the_first_missing_key() {
    // LiteMedSAM's weights given as SAM ViT-H.
    let device = Device::flex();
    let weights = Weights::from_checkpoint(&lite_medsam_path(), "SAM ViT-H", &device).unwrap();
    let err = Sam::from_weights(&weights, SamConfig::vit_h()).unwrap_err();
    match &err {
        ModelError::MissingKey { path, key, .. } => {
            assert_eq!(key, "image_encoder.patch_embed.proj.weight");
            assert!(path.ends_with("lite_medsam.pth"));
        }
        other => panic!("expected a missing key, got {other}"),
    }
}

#[test]
fn a_checkpoint_of_another_size_names_the_first_mis_shaped_key() {
    // The reduced ViT-B layout given as the published ViT-B.
    let device = Device::flex();
    let path = fixture("sam_tiny/sam_tiny.pth");
    let weights = Weights::from_checkpoint(&path, "SAM ViT-B", &device).unwrap();
    let err = Sam::from_weights(&weights, SamConfig::vit_b()).unwrap_err();
    support::assert_wrong_shape(
        &err,
        "image_encoder.patch_embed.proj.weight",
        &[768, 3, 16, 16],
        &[48, 3, 16, 16],
        "sam_tiny.pth",
    );
}

#[test]
fn the_published_layouts_build_from_random_weights() {
    // Every key and shape of ViT-B and LiteMedSAM, without a file: what the benchmark runs.
    let device = Device::flex();
    for config in [SamConfig::vit_b(), SamConfig::lite_medsam()] {
        let weights = Weights::random(7, &config.name, &device);
        Sam::from_weights(&weights, config).unwrap();
    }
}

/// Physical memory high-water mark of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A full-size ViT-H checkpoint in the official key layout (2.5 GB, random weights) loads
/// without holding two copies, and runs on one 1024 px tile.
///
/// Ignored by default for its size and time. Run with:
/// `tests/reference/.venv/bin/python tests/reference/make_random_checkpoints.py target/bench-weights --sizes vit_h`
/// then `MITOSCOPE_VIT_H=target/bench-weights/sam_vit_h_random.pth cargo test --release -p mitoscope-models --test checkpoints -- --ignored`
#[test]
#[ignore = "needs a 2.5 GB ViT-H checkpoint; see the comment for the command"]
fn a_full_size_vit_h_checkpoint_loads_and_runs() {
    let path = std::env::var_os("MITOSCOPE_VIT_H").expect("MITOSCOPE_VIT_H names the checkpoint");
    let path = PathBuf::from(path);
    let file_size = std::fs::metadata(&path).unwrap().len();
    let device = Device::flex();

    let sam = Sam::load(&path, &device).unwrap();
    assert_eq!(sam.config(), &SamConfig::vit_h());
    let peak = peak_rss().expect("Linux /proc");
    eprintln!("checkpoint {file_size} bytes, peak RSS after load {peak} bytes");
    assert!(
        (peak as f64) < 1.5 * file_size as f64,
        "loading peaked at {peak} bytes for a {file_size}-byte checkpoint"
    );

    let image = support::Fixture::open("sam_tiny").tile();
    let (pixels, [h, w]) = image;
    let image = mitoscope_models::sam::RgbImage::new(w, h, pixels).unwrap();
    let embedding = sam.embed(&image);
    assert_eq!(embedding.embedding.dims(), [1, 256, 64, 64]);
    let values = embedding
        .embedding
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
}
