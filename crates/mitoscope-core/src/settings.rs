//! Settings of the proposal stage (tissue detection, tiling, SAM prompting, mask filters, NMS).
//!
//! Mirrors the `SAM_MODEL` section of `load_config` in OMG-Net's
//! `Inference/CompleteInference.py`, the constants of `get_nonbackground_tiles` in
//! `Utils/TileOps.py`, and the arguments of `SamAutomaticMaskGenerator.__init__` in
//! segment-anything's `automatic_mask_generator.py` that OMG-Net hard-codes
//! (`stability_score_offset`, `mask_threshold`, `points_per_batch`).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Largest accepted `points_per_side`: 1024^2 prompts per tile, far above the paper's 64.
pub const MAX_POINTS_PER_SIDE: u32 = 1024;

/// What the object-size filter measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AreaMeasure {
    /// The bounding-box area `(x1 - x0) * (y1 - y0)` on inclusive pixel indices, no `+ 1`, as
    /// OMG-Net's `SAM_Masking.py` does with torchvision's `box_area` on `batched_mask_to_box`.
    #[default]
    BoundingBox,
    /// The number of mask pixels.
    MaskPixels,
}

/// Where the prompts of a tile come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    /// A regular grid of `points_per_side^2` foreground points (OMG-Net, for SAM ViT-B/L/H).
    #[default]
    PointGrid,
    /// One box prompt of side `seed_box_um` on each nucleus seed, a local maximum of the
    /// haematoxylin stain (see [`crate::seeds`]; for LiteMedSAM, which was fine-tuned on boxes).
    NucleusSeeds,
}

/// Settings of the proposal stage; defaults are the published values of OMG-Net.
///
/// Deserialising fills missing fields with their defaults; call [`ProposalSettings::validate`]
/// on anything read from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProposalSettings {
    /// Point prompts per tile side (the grid has `points_per_side^2` prompts). 32 in the
    /// reference code (`load_config`); the paper reports 64 (4096 prompts per tile).
    pub points_per_side: u32,
    /// Where the prompts come from: the point grid (the default, OMG-Net) or nucleus seeds.
    pub prompts: PromptMode,
    /// Three masks per prompt (`true`, OMG-Net's `multimask_output`) or one.
    pub multimask_output: bool,
    /// Gaussian sigma of the haematoxylin channel before seeding, um (0.5: 2 px at 0.25 um/px).
    pub seed_sigma_um: f64,
    /// Half-width of the window a seed must be the maximum of, um (2.0: 8 px at 0.25 um/px).
    pub seed_radius_um: f64,
    /// Side of the box prompt centred on a seed, um (8.0: 32 px at 0.25 um/px).
    pub seed_box_um: f64,
    /// Pixels whose mean of R, G and B is at least this are white, left out of the seeds'
    /// Otsu threshold (220).
    pub seed_tissue_max_grey: f64,
    /// Prompts decoded together in one batch (SAM's `points_per_batch` default, 64). Only memory
    /// use and streaming granularity depend on it, never the result.
    pub points_per_batch: u32,
    /// Keep a mask only if its predicted IoU is strictly above this (0.8).
    pub pred_iou_thresh: f64,
    /// Keep a mask only if its stability score is strictly above this (0.8). OMG-Net uses `>`;
    /// segment-anything's automatic generator uses `>=`. It may be negative, down to -1: the
    /// score lies in `[0, 1]`, so a negative threshold keeps every mask (LiteMedSAM's point
    /// masks score 0 at offset 1.0, so its calibrated settings need one).
    pub stability_score_thresh: f64,
    /// Offset around `mask_threshold` for the stability score (1.0, as OMG-Net and SAM).
    pub stability_score_offset: f64,
    /// Logit above which a pixel belongs to the mask (0.0, SAM's `mask_threshold`).
    pub mask_threshold: f64,
    /// Box IoU above which the lower-ranked of two masks is removed by NMS (0.1).
    pub box_nms_thresh: f64,
    /// Smallest object size in um^2, exclusive (2.25; 36 px^2 at 0.25 um/px).
    pub min_area_um2: f64,
    /// Largest object size in um^2, exclusive (225; 3600 px^2 at 0.25 um/px).
    pub max_area_um2: f64,
    /// What the size filter measures (the bounding box, as the reference code).
    pub area_measure: AreaMeasure,
    /// Tile side in pixels (1024, SAM's input size).
    pub tile_size: u32,
    /// Overlap of neighbouring tiles in pixels (128; see below).
    ///
    /// NOTE: the reference tiles without overlap (`get_nonbackground_tiles` cuts a grid aligned
    /// on the tile size), so objects cut by a tile border are lost or half-segmented there. We
    /// overlap tiles and let the tile that owns an object's box centre report it (see
    /// [`crate::tiles::owns`]). An owned centre lies at least `overlap / 2` = 64 px from every
    /// inner tile edge. The largest object the size filter passes, a square box of area
    /// < 3600 px^2 (225 um^2 at 0.25 um/px), spans at most 60 px, i.e. 30 px either side of its
    /// centre; that leaves >= 34 px between the object and the tile edge, more than the 20 px
    /// within which segment-anything's `is_box_near_crop_edge` distrusts a mask. (An elongated
    /// box can pass the filter and be longer; nuclei and mitotic figures are not.) It costs
    /// (1024 / 896)^2 = 1.31 times the tiles of an unoverlapped grid.
    pub tile_overlap: u32,
    /// Keep a tile if at least this fraction of it is tissue (0.3: the reference's
    /// `background_fraction_threshold` of 0.7).
    pub min_tissue_fraction: f64,
    /// Width in pixels of the low-resolution view's border used to estimate the background (30).
    pub tissue_border_px: u32,
    /// Upper bound of the background grey level (240): background = min(border mean, 240).
    pub background_cap: f64,
}

impl Default for ProposalSettings {
    fn default() -> Self {
        Self {
            points_per_side: 32,
            prompts: PromptMode::PointGrid,
            multimask_output: true,
            seed_sigma_um: 0.5,
            seed_radius_um: 2.0,
            seed_box_um: 8.0,
            seed_tissue_max_grey: 220.0,
            points_per_batch: 64,
            pred_iou_thresh: 0.8,
            stability_score_thresh: 0.8,
            stability_score_offset: 1.0,
            mask_threshold: 0.0,
            box_nms_thresh: 0.1,
            min_area_um2: 2.25,
            max_area_um2: 225.0,
            area_measure: AreaMeasure::BoundingBox,
            tile_size: 1024,
            tile_overlap: 128,
            min_tissue_fraction: 0.3,
            tissue_border_px: 30,
            background_cap: 240.0,
        }
    }
}

impl ProposalSettings {
    /// The settings as the paper reports them: 64 points per side, all else as the code.
    pub fn paper() -> Self {
        Self {
            points_per_side: 64,
            ..Self::default()
        }
    }

    /// The calibrated settings of the embedded default model, LiteMedSAM (256 px input).
    ///
    /// Measured on `../shared/data` (`docs/research/litemedsam-prompts.md` and
    /// `docs/proposals.md`): box prompts on nucleus seeds, one mask per prompt, predicted IoU
    /// above 0.5, no stability filter (LiteMedSAM's masks that cover a figure score no more
    /// stable than the rest), 256 px tiles (the model's input, so tiles are never resized)
    /// overlapping by 64 px. The size filter and NMS are OMG-Net's.
    pub fn lite_medsam() -> Self {
        Self {
            prompts: PromptMode::NucleusSeeds,
            multimask_output: false,
            pred_iou_thresh: 0.5,
            stability_score_thresh: -1.0,
            tile_size: 256,
            tile_overlap: 64,
            ..Self::default()
        }
    }

    /// Checks that every value is one the pipeline can use.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] naming the first offending field: zero or more than
    /// [`MAX_POINTS_PER_SIDE`] points per side, zero points per batch, a threshold or fraction
    /// outside `[0, 1]` (the stability threshold outside `[-1, 1]`), a negative or non-finite
    /// offset, a non-finite mask threshold, negative or inverted area bounds, a zero tile size,
    /// an overlap not smaller than the tile, a zero border, or a background cap outside
    /// `[0, 255]`.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason| Err(Error::InvalidSetting { name, reason });
        if self.points_per_side == 0 {
            return invalid("points_per_side", "must be at least 1");
        }
        if self.points_per_side > MAX_POINTS_PER_SIDE {
            return invalid("points_per_side", "must be at most 1024");
        }
        if self.points_per_batch == 0 {
            return invalid("points_per_batch", "must be at least 1");
        }
        for (name, value) in [
            ("pred_iou_thresh", self.pred_iou_thresh),
            ("box_nms_thresh", self.box_nms_thresh),
            ("min_tissue_fraction", self.min_tissue_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return invalid(name, "must lie in [0, 1]");
            }
        }
        if !(-1.0..=1.0).contains(&self.stability_score_thresh) {
            return invalid("stability_score_thresh", "must lie in [-1, 1]");
        }
        if !self.stability_score_offset.is_finite() || self.stability_score_offset < 0.0 {
            return invalid("stability_score_offset", "must be finite and non-negative");
        }
        if !self.mask_threshold.is_finite() {
            return invalid("mask_threshold", "must be finite");
        }
        if !self.min_area_um2.is_finite() || self.min_area_um2 < 0.0 {
            return invalid("min_area_um2", "must be finite and non-negative");
        }
        if !self.max_area_um2.is_finite() {
            return invalid("max_area_um2", "must be finite");
        }
        if self.min_area_um2 >= self.max_area_um2 {
            return invalid("max_area_um2", "must exceed min_area_um2");
        }
        for (name, value) in [
            ("seed_sigma_um", self.seed_sigma_um),
            ("seed_radius_um", self.seed_radius_um),
            ("seed_box_um", self.seed_box_um),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return invalid(name, "must be finite and positive");
            }
        }
        if !(0.0..=255.0).contains(&self.seed_tissue_max_grey) {
            return invalid("seed_tissue_max_grey", "must lie in [0, 255]");
        }
        if self.tile_size == 0 {
            return invalid("tile_size", "must be at least 1");
        }
        if self.tile_overlap >= self.tile_size {
            return invalid("tile_overlap", "must be smaller than tile_size");
        }
        if self.tissue_border_px == 0 {
            return invalid("tissue_border_px", "must be at least 1");
        }
        if !(0.0..=255.0).contains(&self.background_cap) {
            return invalid("background_cap", "must lie in [0, 255]");
        }
        Ok(())
    }

    /// Number of point prompts per tile, `points_per_side^2`.
    pub fn points_per_tile(&self) -> u64 {
        u64::from(self.points_per_side) * u64::from(self.points_per_side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_published_values() {
        let s = ProposalSettings::default();
        assert_eq!(s.points_per_side, 32);
        assert_eq!(ProposalSettings::paper().points_per_side, 64);
        assert_eq!(ProposalSettings::paper().points_per_tile(), 4096);
        assert_eq!(s.pred_iou_thresh, 0.8);
        assert_eq!(s.stability_score_thresh, 0.8);
        assert_eq!(s.stability_score_offset, 1.0);
        assert_eq!(s.mask_threshold, 0.0);
        assert_eq!(s.box_nms_thresh, 0.1);
        assert_eq!(s.min_area_um2, 2.25);
        assert_eq!(s.max_area_um2, 225.0);
        assert_eq!(s.area_measure, AreaMeasure::BoundingBox);
        assert_eq!(s.points_per_batch, 64);
        assert_eq!(s.tile_size, 1024);
        assert_eq!(s.tile_overlap, 128);
        assert_eq!(s.min_tissue_fraction, 0.3);
        assert_eq!(s.tissue_border_px, 30);
        assert_eq!(s.background_cap, 240.0);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(ProposalSettings::paper().validate(), Ok(()));
    }

    #[test]
    fn serde_round_trip_and_partial_input() {
        let s = ProposalSettings::default();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"area_measure\":\"bounding_box\""));
        let back: ProposalSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        let partial: ProposalSettings =
            serde_json::from_str(r#"{"points_per_side": 64, "area_measure": "mask_pixels"}"#)
                .unwrap();
        assert_eq!(partial.points_per_side, 64);
        assert_eq!(partial.area_measure, AreaMeasure::MaskPixels);
        assert_eq!(partial.tile_size, 1024);

        assert!(serde_json::from_str::<ProposalSettings>(r#"{"points_per_sid": 3}"#).is_err());
    }

    fn field_of(result: Result<()>) -> &'static str {
        match result {
            Err(Error::InvalidSetting { name, .. }) => name,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn validate_refuses_nonsense() {
        let d = ProposalSettings::default;
        let cases: Vec<(ProposalSettings, &str)> = vec![
            (
                ProposalSettings {
                    points_per_side: 0,
                    ..d()
                },
                "points_per_side",
            ),
            (
                ProposalSettings {
                    points_per_side: 1025,
                    ..d()
                },
                "points_per_side",
            ),
            (
                ProposalSettings {
                    points_per_batch: 0,
                    ..d()
                },
                "points_per_batch",
            ),
            (
                ProposalSettings {
                    pred_iou_thresh: 1.5,
                    ..d()
                },
                "pred_iou_thresh",
            ),
            (
                ProposalSettings {
                    pred_iou_thresh: f64::NAN,
                    ..d()
                },
                "pred_iou_thresh",
            ),
            (
                ProposalSettings {
                    stability_score_thresh: -1.1,
                    ..d()
                },
                "stability_score_thresh",
            ),
            (
                ProposalSettings {
                    box_nms_thresh: 2.0,
                    ..d()
                },
                "box_nms_thresh",
            ),
            (
                ProposalSettings {
                    min_tissue_fraction: 1.01,
                    ..d()
                },
                "min_tissue_fraction",
            ),
            (
                ProposalSettings {
                    stability_score_offset: -1.0,
                    ..d()
                },
                "stability_score_offset",
            ),
            (
                ProposalSettings {
                    mask_threshold: f64::INFINITY,
                    ..d()
                },
                "mask_threshold",
            ),
            (
                ProposalSettings {
                    min_area_um2: -1.0,
                    ..d()
                },
                "min_area_um2",
            ),
            (
                ProposalSettings {
                    max_area_um2: f64::NAN,
                    ..d()
                },
                "max_area_um2",
            ),
            (
                ProposalSettings {
                    min_area_um2: 300.0,
                    ..d()
                },
                "max_area_um2",
            ),
            (
                ProposalSettings {
                    max_area_um2: 2.25,
                    ..d()
                },
                "max_area_um2",
            ),
            (
                ProposalSettings {
                    tile_size: 0,
                    tile_overlap: 0,
                    ..d()
                },
                "tile_size",
            ),
            (
                ProposalSettings {
                    tile_overlap: 1024,
                    ..d()
                },
                "tile_overlap",
            ),
            (
                ProposalSettings {
                    tissue_border_px: 0,
                    ..d()
                },
                "tissue_border_px",
            ),
            (
                ProposalSettings {
                    background_cap: 256.0,
                    ..d()
                },
                "background_cap",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(field_of(settings.validate()), field, "{settings:?}");
        }
    }
}
