//! # mitoscope-core
//!
//! The geometry of Mitoscope's proposal stage, in pure Rust: no tensors, no async runtime, no
//! browser bindings, so the same code runs in the server, the command-line program and the
//! browser (it builds for `wasm32-unknown-unknown` as well as native targets).
//!
//! Mitoscope ports OMG-Net: Segment Anything (SAM) proposes every cell-scale object on a regular
//! grid of point prompts, and a mask-aware ResNet18 classifies them. This crate holds everything
//! around the networks that is plain arithmetic:
//!
//! - [`settings`]: the proposal stage's settings and their published defaults (OMG-Net
//!   `Inference/CompleteInference.py`, `load_config`).
//! - [`grid`]: the regular grid of point prompts (segment-anything `utils/amg.py`,
//!   `build_point_grid`).
//! - [`mask`]: logit and binary masks, stability score, mask box and areas (`amg.py`,
//!   `calculate_stability_score` and `batched_mask_to_box`; torchvision `box_area`).
//! - [`filter`]: the keep rules on predicted IoU, stability and object size (OMG-Net
//!   `Models/SAM_Masking.py`, `MaskGenerator.forward`).
//! - [`nms`](mod@nms): box IoU and greedy box non-maximum suppression (torchvision `box_iou`
//!   and `nms`).
//! - [`rle`]: run-length encodings, box-relative for the wire and COCO-style for export
//!   (`amg.py`, `mask_to_rle_pytorch`, `rle_to_mask`, `area_from_rle`).
//! - [`seeds`]: nucleus seeds for box prompts (haematoxylin by colour deconvolution, Otsu,
//!   local maxima), the prompts of the embedded default model.
//! - [`tissue`]: grey conversion, background level, tissue mask (OMG-Net `Utils/TileOps.py`,
//!   `get_nonbackground_tiles`).
//! - [`tiles`]: overlapping tiles, tissue selection, which tile owns an object (OMG-Net
//!   `Utils/SAM_utils.py`, `start_points`).
//! - [`export`]: mask outlines as pixel-exact polygons, GeoJSON that QuPath imports, numeric
//!   CSV tables (the files `mitoscope propose` and `mitoscope detect` write).
//! - [`crop`](mod@crop): the classifier's input, a 64 x 64 RGB crop and mask crop around each
//!   object (OMG-Net `Models/SAM_Masking.py`, `MaskGenerator.forward`).
//! - [`augment`]: the classifier's training augmentations, seeded: flips, brightness and
//!   contrast (torchvision `ColorJitter`), H&E stain jitter (Tellez et al. 2018 on scikit-image's
//!   `rgb2hed`).
//! - [`matching`]: evaluation as the MIDOG challenges count it (detections matched to figures
//!   within 7.5 um, TP / FP / FN, F1; evalutils `score_detection`), and readers for the MIDOG
//!   annotation databases and CSV point tables.
//! - [`repeats`](mod@repeats): one detection per figure, the detections near a surer one
//!   dropped (not in the reference; see `docs/deviations.md`).
//! - [`wire`]: the server's streamed messages (proposals with box-relative masks, progress,
//!   errors), shared by the server, the command-line program and the browser app.
//!
//! Deviations from the references are marked `NOTE:` where they live and listed in
//! `docs/deviations.md`.
//!
//! Run the tests with `cargo test -p mitoscope-core`; check the browser build with
//! `cargo build -p mitoscope-core --target wasm32-unknown-unknown`.
//!
//! ```
//! use mitoscope_core::{AreaLimits, BoxCentre, Grid, ProposalSettings, TileGrid, filter, owns};
//!
//! # fn main() -> mitoscope_core::Result<()> {
//! let settings = ProposalSettings::default();
//! settings.validate()?;
//!
//! // Steps 1-2: tiles of the image (tissue selection needs a grey view, see `tissue`).
//! let grid = TileGrid::from_settings(2000, 1500, &settings)?;
//! let tile = grid.tiles()[0];
//! let prompts = mitoscope_core::build_tile_point_grid(settings.points_per_side, 1024, 1024)?;
//! assert_eq!(prompts.len(), 1024);
//!
//! // Step 4, for one mask SAM returned on that tile (here: a 9 x 9 blob of logits 4.0).
//! let mut logits = Grid::filled(1024, 1024, -4.0f32)?;
//! for y in 100..109 {
//!     logits.data_mut()[y * 1024 + 200..y * 1024 + 209].fill(4.0);
//! }
//! let stability = mitoscope_core::stability_score(
//!     &logits,
//!     settings.mask_threshold,
//!     settings.stability_score_offset,
//! )?;
//! let mask = logits.threshold(settings.mask_threshold);
//! let bbox = mitoscope_core::mask_to_box(&mask).expect("the blob is not empty");
//! let limits = AreaLimits::new(&settings, 0.25)?;
//! assert!(filter::keep_by_pred_iou(0.93, settings.pred_iou_thresh));
//! assert!(filter::keep_by_stability(stability, settings.stability_score_thresh));
//! assert!(limits.contains(limits.area_of(&mask, &bbox))); // 8 * 8 = 64 px^2
//!
//! // Duplicates: box NMS ranked by predicted IoU; then the tile that owns the box reports it.
//! let keep = mitoscope_core::nms(&[bbox, bbox], &[0.93, 0.91], settings.box_nms_thresh)?;
//! assert_eq!(keep, vec![0]);
//! let in_image = tile.to_image_box(&bbox)?;
//! assert!(owns(&tile, BoxCentre::of(&in_image)));
//! let wire = mitoscope_core::rle::encode(&mask).expect("not empty");
//! assert_eq!(wire.area(), 81);
//! # Ok(())
//! # }
//! ```
//!
//! Nothing here panics on user input: every function that can meet a bad value (a size that does
//! not match its data, a threshold out of range, a malformed run-length encoding) returns
//! [`Error`].

pub mod augment;
pub mod crop;
pub mod density;
pub mod export;
pub mod filter;
pub mod grid;
pub mod mask;
pub mod matching;
pub mod nms;
pub mod repeats;
pub mod rle;
pub mod seeds;
pub mod settings;
pub mod tiles;
pub mod tissue;
pub mod wire;

pub use augment::{AugmentSettings, Augmentation};
pub use crop::{CROP, Crop, METHOD_MPP, crop, crop_centre, crop_with_side, scale_warning};
pub use export::{
    ExportObject, GeometryKind, ObjectType, Polygon, mask_polygons, polygon_area, to_csv,
    to_geojson, validate_geojson,
};
pub use filter::AreaLimits;
pub use grid::{build_point_grid, build_tile_point_grid};
pub use mask::{
    BBox, BinaryMask, Grid, LogitMask, box_area, mask_area, mask_to_box, stability_score,
};
pub use matching::{
    Counts, Detection, EvaluationSettings, ImageTruth, Matches, Point, Report, evaluate,
    match_image,
};
pub use nms::{box_iou, nms};
pub use repeats::{REPEAT_RADIUS_UM, repeats};
pub use rle::{BoxRle, CocoRle};
pub use seeds::{SeedParams, Seeds, nucleus_seeds, seed_boxes};
pub use settings::{AreaMeasure, PromptMode, ProposalSettings};
pub use tiles::{BoxCentre, Tile, TileGrid, owns};
pub use tissue::TissueMask;

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;

/// Everything that can go wrong in the core library.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A setting has a value the pipeline cannot use.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's field name.
        name: &'static str,
        /// Why the value is refused.
        reason: &'static str,
    },

    /// A grid (mask, image) with a zero width or height.
    #[error("empty grid: {width} x {height}")]
    EmptyGrid {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },

    /// A grid's data does not have `width * height` (times channels) values.
    #[error("a {width} x {height} grid needs {expected} values, got {actual}")]
    SizeMismatch {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Number of values the size implies.
        expected: u64,
        /// Number of values given.
        actual: u64,
    },

    /// A size or coordinate beyond what the crate handles (more than `u32::MAX` pixels in a
    /// mask, coordinates overflowing `u32`, too many tiles).
    #[error("too large: {0}")]
    TooLarge(&'static str),

    /// Two lists that must pair up element by element have different lengths.
    #[error("{what}: {left} vs {right} elements")]
    LengthMismatch {
        /// What was being paired.
        what: &'static str,
        /// Length of the first list.
        left: usize,
        /// Length of the second list.
        right: usize,
    },

    /// A value that must be a number is NaN (or infinite where that is refused).
    #[error("not a finite number: {0}")]
    NotFinite(&'static str),

    /// A box whose minimum exceeds its maximum on some axis.
    #[error("inverted box: ({x0}, {y0}, {x1}, {y1})")]
    InvertedBox {
        /// Left column.
        x0: u32,
        /// Top row.
        y0: u32,
        /// Right column (inclusive).
        x1: u32,
        /// Bottom row (inclusive).
        y1: u32,
    },

    /// A box that does not lie inside the grid it refers to.
    #[error("box does not fit in a {width} x {height} grid")]
    BoxOutOfBounds {
        /// Grid width in pixels.
        width: u32,
        /// Grid height in pixels.
        height: u32,
    },

    /// A run-length encoding that does not describe its mask.
    #[error("invalid run-length encoding: {0}")]
    InvalidRle(&'static str),

    /// Input data (an annotation file, a CSV table, a list of images) that cannot be used.
    #[error("{at}: {reason}")]
    InvalidData {
        /// Where: `line 3, column x`, `$.annotations[12].bbox`, `truth[4]`.
        at: String,
        /// What is wrong with it.
        reason: String,
    },
}
