//! Golden fixtures written by `tests/reference/make_fixtures.py` from the Python reference, and
//! the comparison the parity tests share.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use mitoscope_models::ModelError;
use mitoscope_models::sam::SamConfig;
use mitoscope_models::sam::image_encoder::ImageEncoderConfig;
use mitoscope_models::sam::mask_decoder::MaskDecoderConfig;
use safetensors::{Dtype, SafeTensors};

/// One fixture folder under `tests/fixtures/`.
pub struct Fixture {
    dir: PathBuf,
    bytes: Vec<u8>,
}

impl Fixture {
    /// Opens `tests/fixtures/{name}/outputs.safetensors`.
    pub fn open(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        let file = dir.join("outputs.safetensors");
        let bytes = std::fs::read(&file).unwrap_or_else(|err| {
            panic!(
                "{}: {err}; regenerate with tests/reference/make_fixtures.py",
                file.display()
            )
        });
        Self { dir, bytes }
    }

    /// A file of the fixture.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A JSON file of the fixture.
    pub fn json(&self, file: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path(file)).expect("fixture JSON");
        serde_json::from_str(&text).expect("valid fixture JSON")
    }

    /// The tile, as RGB bytes in row order, with its `[height, width]`.
    pub fn tile(&self) -> (Vec<u8>, [usize; 2]) {
        let image = image::open(self.path("tile.png"))
            .expect("fixture tile")
            .to_rgb8();
        let size = [image.height() as usize, image.width() as usize];
        (image.into_raw(), size)
    }

    fn view(&self, key: &str) -> safetensors::tensor::TensorView<'_> {
        let tensors = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        tensors
            .tensor(key)
            .unwrap_or_else(|_| panic!("fixture has no `{key}`"))
    }

    /// Whether the fixture holds `key`.
    pub fn has(&self, key: &str) -> bool {
        let tensors = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        tensors.names().into_iter().any(|name| name == key)
    }

    /// The shape of `key`.
    pub fn shape(&self, key: &str) -> Vec<usize> {
        self.view(key).shape().to_vec()
    }

    /// `key` as `f32` values.
    pub fn values(&self, key: &str) -> Vec<f32> {
        let view = self.view(key);
        assert_eq!(view.dtype(), Dtype::F32, "`{key}` is not f32");
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// `key` as bytes (for `u8` tensors).
    pub fn bytes(&self, key: &str) -> Vec<u8> {
        let view = self.view(key);
        assert_eq!(view.dtype(), Dtype::U8, "`{key}` is not u8");
        view.data().to_vec()
    }

    /// `key` as a tensor of rank `D` on `device`.
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let shape: [usize; D] = self
            .shape(key)
            .try_into()
            .unwrap_or_else(|shape| panic!("`{key}` has shape {shape:?}, not rank {D}"));
        Tensor::from_data(TensorData::new(self.values(key), shape), device)
    }
}

/// Asserts that `actual` equals `expected` within `rel` of the largest magnitude in
/// `expected`: `max |a - e| <= rel * max |e|`. Prints the worst element on failure.
pub fn assert_close<const D: usize>(what: &str, actual: Tensor<D>, expected: Tensor<D>, rel: f32) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
    let actual = actual
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor");
    let expected = expected
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor");
    let scale = expected
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let (worst, index) = actual
        .iter()
        .zip(&expected)
        .enumerate()
        .map(|(i, (a, e))| ((a - e).abs(), i))
        .fold((0f32, 0), |best, cur| {
            if cur.0 > best.0 || cur.0.is_nan() {
                cur
            } else {
                best
            }
        });
    assert!(
        actual.iter().all(|v| v.is_finite()),
        "{what}: non-finite values in the output"
    );
    assert!(
        worst <= rel * scale,
        "{what}: max |diff| {worst:e} at element {index} ({} vs {}) exceeds {rel:e} x {scale:e}",
        actual[index],
        expected[index]
    );
    eprintln!(
        "{what}: max |diff| {worst:e} = {:.2e} of max |expected| {scale:e}",
        worst / scale
    );
}

/// The reduced SAM of the fixture: the ViT-B key layout at small sizes.
pub fn sam_tiny_config() -> SamConfig {
    let encoder = ImageEncoderConfig {
        img_size: 256,
        patch_size: 16,
        in_chans: 3,
        embed_dim: 48,
        depth: 2,
        num_heads: 3,
        mlp_ratio: 4.0,
        out_chans: 32,
        window_size: 14,
        global_attn_indexes: vec![1],
    };
    SamConfig {
        decoder: MaskDecoderConfig {
            transformer_dim: 32,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 32,
            depth: 2,
            mlp_dim: 64,
            num_heads: 2,
        },
        ..SamConfig::sam("SAM tiny", encoder)
    }
}

/// Checks that `err` is a [`ModelError::WrongShape`] of `key`, expecting `expected` and finding
/// `found`, and that its message names the file (`file`, a part of its path).
pub fn assert_wrong_shape(
    err: &ModelError,
    key: &str,
    expected: &[usize],
    found: &[usize],
    file: &str,
) {
    match err {
        ModelError::WrongShape {
            key: k,
            expected: e,
            found: f,
            ..
        } => assert_eq!(
            (k.as_str(), e.as_slice(), f.as_slice()),
            (key, expected, found),
            "{err}"
        ),
        other => panic!("expected a wrong shape of {key}, got {other}"),
    }
    assert!(err.to_string().contains(file), "{err}");
}
