//! Parity of the prompt encoder and the mask decoder with the Python reference
//! (`segment_anything/modeling/{prompt_encoder,transformer,mask_decoder}.py`) on the golden
//! fixtures of `tests/reference/make_fixtures.py`: the tiny random SAM and LiteMedSAM.
//!
//! The decoder is fed the reference's image embedding, so these tests check the prompt path
//! alone, whatever the state of the image encoders.

mod support;

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use mitoscope_models::sam::mask_decoder::{MaskDecoder, MaskDecoderConfig};
use mitoscope_models::sam::prompt_encoder::PromptEncoder;
use mitoscope_models::sam::transformer::Attention;
use mitoscope_models::weights::Weights;
use support::{Fixture, assert_close};

/// Relative tolerance, `max |diff| <= 1e-4 * max |expected|`: float32 throughout on both
/// sides, differing only in the order of the sums (matrix products, softmaxes, and the
/// reassociated attentions and upscaling of the port). The largest seen is about 1e-5.
const TOLERANCE: f32 = 1e-4;

/// One fixture's model and sizes.
struct Setup {
    fixture: Fixture,
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    device: Device,
}

impl Setup {
    /// Loads the model of fixture `name` from `checkpoint`, with the prompt encoder's sizes
    /// from the fixture's `config.json`.
    fn new(name: &str, checkpoint: &Path, config: MaskDecoderConfig) -> Self {
        let device = Device::flex();
        let fixture = Fixture::open(name);
        let sizes = &fixture.json("config.json")["prompt_encoder"];
        let pair = |key: &str| -> [usize; 2] {
            let size = |i: usize| sizes[key][i].as_u64().expect("size") as usize;
            [size(0), size(1)]
        };
        let embed_dim = sizes["embed_dim"].as_u64().expect("embed_dim") as usize;
        assert_eq!(
            embed_dim, config.transformer_dim,
            "{name}: prompt and decoder widths"
        );
        let w = Weights::from_checkpoint(checkpoint, "SAM", &device).expect("checkpoint");
        let prompt_encoder = PromptEncoder::load(
            &w.at("prompt_encoder"),
            embed_dim,
            pair("image_embedding_size"),
            pair("input_image_size"),
        )
        .expect("prompt encoder");
        let mask_decoder = MaskDecoder::load(&w.at("mask_decoder"), &config).expect("decoder");
        Self {
            fixture,
            prompt_encoder,
            mask_decoder,
            device,
        }
    }

    /// The tiny random SAM: ViT-B's key layout at width 32.
    fn sam_tiny() -> Self {
        let fixture = Fixture::open("sam_tiny");
        let dec = &fixture.json("config.json")["mask_decoder"];
        let size = |value: &serde_json::Value| value.as_u64().expect("size") as usize;
        let config = MaskDecoderConfig {
            transformer_dim: size(&dec["transformer_dim"]),
            num_multimask_outputs: size(&dec["num_multimask_outputs"]),
            iou_head_depth: size(&dec["iou_head_depth"]),
            iou_head_hidden_dim: size(&dec["iou_head_hidden_dim"]),
            depth: size(&dec["transformer"]["depth"]),
            mlp_dim: size(&dec["transformer"]["mlp_dim"]),
            num_heads: size(&dec["transformer"]["num_heads"]),
        };
        Self::new("sam_tiny", &fixture.path("sam_tiny.pth"), config)
    }

    /// LiteMedSAM with its real weights: SAM's decoder.
    fn lite_medsam() -> Self {
        let checkpoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lite_medsam.pth");
        Self::new("lite_medsam", &checkpoint, MaskDecoderConfig::sam())
    }

    /// The prompts of case `k`: points with their labels, and the box.
    fn prompts(&self, k: usize) -> (Option<(Tensor<3>, Tensor<2>)>, Option<Tensor<2>>) {
        let prompts = self.fixture.json("prompts.json");
        let case = &prompts["cases"][k];
        let points = case["labels"].as_array().map(|labels| {
            let labels: Vec<f32> = labels
                .iter()
                .map(|l| l.as_f64().expect("label") as f32)
                .collect();
            let n = labels.len();
            let coords = self
                .fixture
                .tensor::<3>(&format!("case{k}_coords"), &self.device);
            assert_eq!(
                coords.dims(),
                [1, n, 2],
                "case {k}: points and labels differ"
            );
            (
                coords,
                Tensor::from_data(TensorData::new(labels, [1, n]), &self.device),
            )
        });
        let boxes = (!case["box"].is_null()).then(|| {
            self.fixture
                .tensor::<2>(&format!("case{k}_box"), &self.device)
        });
        (points, boxes)
    }

    /// Checks every tensor of the fixture.
    fn check(&self, name: &str) {
        let f = &self.fixture;
        let d = &self.device;
        let embedding = f.tensor::<4>("embedding", d);
        let dense_pe = self.prompt_encoder.get_dense_pe();
        assert_close(
            &format!("{name} dense_pe"),
            dense_pe.clone(),
            f.tensor("dense_pe", d),
            TOLERANCE,
        );

        let cases = f.json("prompts.json")["cases"]
            .as_array()
            .expect("cases")
            .len();
        for k in 0..cases {
            let (points, boxes) = self.prompts(k);
            let (sparse, dense) = self.prompt_encoder.forward(points, boxes);
            // Only sam_tiny stores it: the same broadcast of `no_mask_embed` for both models.
            if k == 0 && f.has("dense_embedding") {
                let expected = f.tensor("dense_embedding", d);
                assert_close(
                    &format!("{name} dense_embedding"),
                    dense.clone(),
                    expected,
                    TOLERANCE,
                );
            }
            let expected = f.tensor(&format!("case{k}_sparse"), d);
            assert_close(
                &format!("{name} case{k} sparse"),
                sparse.clone(),
                expected,
                TOLERANCE,
            );

            for (mode, multimask) in [("multi", true), ("single", false)] {
                let (lowres, iou) = self.mask_decoder.forward(
                    embedding.clone(),
                    dense_pe.clone(),
                    sparse.clone(),
                    dense.clone(),
                    multimask,
                );
                let expected = f.tensor::<3>(&format!("case{k}_{mode}_lowres"), d);
                let what = format!("{name} case{k} {mode} lowres");
                assert_close(&what, lowres, expected.unsqueeze_dim(0), TOLERANCE);
                let expected = f.tensor::<1>(&format!("case{k}_{mode}_iou"), d);
                let what = format!("{name} case{k} {mode} iou");
                assert_close(&what, iou, expected.unsqueeze_dim(0), TOLERANCE);
            }
        }
    }
}

#[test]
fn sam_tiny_matches_reference() {
    Setup::sam_tiny().check("sam_tiny");
}

#[test]
fn lite_medsam_matches_reference() {
    Setup::lite_medsam().check("lite_medsam");
}

/// Several prompts in one call give each prompt's own result: LiteMedSAM cases 0 and 1 (two
/// boxes) decoded as a batch of 2, with the dense embedding shared (batch 1) and broadcast.
#[test]
fn batched_boxes_match_reference() {
    let setup = Setup::lite_medsam();
    let (f, d) = (&setup.fixture, &setup.device);
    let boxes = Tensor::cat(
        vec![f.tensor::<2>("case0_box", d), f.tensor::<2>("case1_box", d)],
        0,
    );
    let (sparse, dense) = setup.prompt_encoder.forward(None, Some(boxes));
    assert_eq!(dense.dims()[0], 2);
    for dense in [dense, setup.prompt_encoder.no_mask_dense()] {
        let (lowres, iou) = setup.mask_decoder.forward(
            f.tensor("embedding", d),
            setup.prompt_encoder.get_dense_pe(),
            sparse.clone(),
            dense,
            true,
        );
        for k in 0..2 {
            let lowres = lowres.clone().slice_dim(0, k..k + 1);
            let expected = f
                .tensor::<3>(&format!("case{k}_multi_lowres"), d)
                .unsqueeze_dim(0);
            assert_close(
                &format!("batched case{k} lowres"),
                lowres,
                expected,
                TOLERANCE,
            );
            let iou = iou.clone().slice_dim(0, k..k + 1);
            let expected = f
                .tensor::<1>(&format!("case{k}_multi_iou"), d)
                .unsqueeze_dim(0);
            assert_close(&format!("batched case{k} iou"), iou, expected, TOLERANCE);
        }
    }
}

/// The attentions between few tokens and the image, which never project the image, equal the
/// plain `Attention` (random weights at LiteMedSAM's sizes; an image of batch 1 is shared).
#[test]
fn low_rank_attention_matches_plain_attention() {
    let device = Device::flex();
    let w = Weights::random(7, "SAM", &device);
    let attention = Attention::load(&w.at("attn"), 256, 8, 2).expect("attention");
    let normal =
        |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let (tokens, token_pe) = (normal([3, 7, 256]), normal([3, 7, 256]));
    for image_batch in [3, 1] {
        let (image, image_pe) = (
            normal([image_batch, 100, 256]),
            normal([image_batch, 100, 256]),
        );
        let keys = image.clone() + image_pe;
        let queries = tokens.clone() + token_pe.clone();

        let expected = attention.forward(queries.clone(), keys.clone(), image.clone());
        let actual = attention.tokens_to_image(queries.clone(), keys.clone(), image.clone());
        let what = format!("tokens to image, image batch {image_batch}");
        assert_close(&what, actual, expected, TOLERANCE);

        let expected = attention.forward(keys.clone(), queries.clone(), tokens.clone());
        let actual = attention.image_to_tokens(keys, queries, tokens.clone());
        let what = format!("image to tokens, image batch {image_batch}");
        assert_close(&what, actual, expected, TOLERANCE);
    }
}

/// Prompts the fixtures lack decode without panicking: many points (the plain attention path),
/// several prompts of several points, and no prompt at all (as the reference allows).
#[test]
fn unusual_prompts_decode() {
    let setup = Setup::lite_medsam();
    let (f, d) = (&setup.fixture, &setup.device);
    let embedding = f.tensor::<4>("embedding", d);
    let image_pe = setup.prompt_encoder.get_dense_pe();
    let decode = |points: Option<(Tensor<3>, Tensor<2>)>, boxes: Option<Tensor<2>>| {
        let (sparse, dense) = setup.prompt_encoder.forward(points, boxes);
        let (lowres, iou) = setup.mask_decoder.forward(
            embedding.clone(),
            image_pe.clone(),
            sparse.clone(),
            dense,
            true,
        );
        (sparse.dims(), lowres, iou)
    };
    // 2 prompts of 30 points with mixed labels, then each prompt alone.
    let coords = Tensor::<3>::random([2, 30, 2], Distribution::Uniform(0.0, 255.0), d);
    let labels = Tensor::<2>::random([2, 30], Distribution::Uniform(0.0, 2.0), d).floor();
    let (sparse, lowres, iou) = decode(Some((coords.clone(), labels.clone())), None);
    assert_eq!(sparse, [2, 31, 256]);
    assert_eq!(lowres.dims(), [2, 3, 256, 256]);
    for k in 0..2 {
        let points = (
            coords.clone().slice_dim(0, k..k + 1),
            labels.clone().slice_dim(0, k..k + 1),
        );
        let (_, alone, alone_iou) = decode(Some(points), None);
        let what = format!("30 points, prompt {k} alone");
        assert_close(
            &what,
            lowres.clone().slice_dim(0, k..k + 1),
            alone,
            TOLERANCE,
        );
        assert_close(
            &what,
            iou.clone().slice_dim(0, k..k + 1),
            alone_iou,
            TOLERANCE,
        );
    }
    // Points and a box together; no prompt at all.
    let box_ = Tensor::<2>::from_data([[60.0, 50.0, 110.0, 120.0]], d);
    let (sparse, lowres, _) = decode(
        Some((coords.slice_dim(0, 0..1), labels.slice_dim(0, 0..1))),
        Some(box_),
    );
    assert_eq!((sparse, lowres.dims()), ([1, 32, 256], [1, 3, 256, 256]));
    let (sparse, lowres, iou) = decode(None, None);
    assert_eq!(
        (sparse, lowres.dims(), iou.dims()),
        ([1, 0, 256], [1, 3, 256, 256], [1, 3])
    );
}

/// The time of the decoder with 64 box prompts on the LiteMedSAM 64 x 64 embedding
/// (multimask), wall-clock and CPU time of the process (all threads). Run on demand:
/// `cargo test --release -p mitoscope-models --test decoder_parity -- --ignored --nocapture`.
#[test]
#[ignore = "timing, run on demand"]
fn decoder_time_64_prompts() {
    let setup = Setup::lite_medsam();
    let (f, d) = (&setup.fixture, &setup.device);
    let batch = 64;
    // 64 boxes around the fixture's first box, shifted by up to 28 pixels.
    let boxes: Vec<f32> = (0..batch)
        .flat_map(|i| {
            let (dx, dy) = ((i % 8) as f32 * 4.0, (i / 8) as f32 * 4.0);
            [60.0 + dx, 50.0 + dy, 110.0 + dx, 120.0 + dy]
        })
        .collect();
    let boxes = Tensor::<2>::from_data(TensorData::new(boxes, [batch, 4]), d);
    let embedding = f.tensor::<4>("embedding", d);
    let image_pe = setup.prompt_encoder.get_dense_pe();
    for run in 0..3 {
        let (start, cpu_start) = (Instant::now(), process_cpu_seconds());
        let (sparse, dense) = setup.prompt_encoder.forward(None, Some(boxes.clone()));
        let (lowres, iou) =
            setup
                .mask_decoder
                .forward(embedding.clone(), image_pe.clone(), sparse, dense, true);
        let lowres = lowres.into_data();
        let _ = iou.into_data();
        let cpu = match (cpu_start, process_cpu_seconds()) {
            (Some(a), Some(b)) => format!("{:.2} s", b - a),
            _ => "unknown".into(),
        };
        eprintln!(
            "run {run}: decoder, {batch} prompts, multimask, {:?}: {:.3} s wall, {cpu} CPU",
            lowres.shape(),
            start.elapsed().as_secs_f64(),
        );
    }
}

/// The user and system CPU time of this process so far, from `/proc/self/stat` (Linux only;
/// `None` elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which ends with ')': utime and stime are the 12th and
    // 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
