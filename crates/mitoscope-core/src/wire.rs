//! The messages between the server and its clients (`POST /api/v1/proposals`), shared by the
//! server, the command-line program and the browser app so that all three read and write the
//! same JSON.
//!
//! A job's response is newline-delimited JSON (`application/x-ndjson`): one [`JobEvent`] per
//! line, in this order:
//!
//! 1. [`JobEvent::Started`]: the image as the server decoded it and the tiles it will analyse;
//! 2. one [`JobEvent::Tile`] per analysed tile, carrying the proposals that tile owns and the
//!    progress (`done` of `total`);
//! 3. [`JobEvent::Done`] with the totals, or [`JobEvent::Error`] when the job stopped.
//!
//! A request refused before its job starts gets an HTTP error status with an [`ApiError`] body
//! instead.
//!
//! ```
//! use mitoscope_core::wire::JobEvent;
//!
//! let line = r#"{"event":"tile","done":1,"total":4,"proposals":[]}"#;
//! let event: JobEvent = serde_json::from_str(line).unwrap();
//! assert_eq!(event, JobEvent::Tile { done: 1, total: 4, proposals: vec![] });
//! ```

use serde::{Deserialize, Serialize};

use crate::export::{ExportObject, ProposalRow, box_centre};
use crate::{BBox, BoxRle, Result};

/// The API's version, the path segment of every route (`/api/v1/...`).
pub const API_VERSION: &str = "v1";

/// The media type of a job's streamed response.
pub const NDJSON: &str = "application/x-ndjson";

/// One object proposal as it travels to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireProposal {
    /// The proposal's number, unique within its job, in the order the server found them.
    pub id: u64,
    /// The mask's bounding box `[x0, y0, x1, y1]` in full-resolution image pixels, maxima
    /// inclusive.
    pub bbox: BBox,
    /// The mask as run lengths over the box's pixels, row-major, alternating unset and set,
    /// starting with unset (see [`BoxRle`]).
    pub mask: Vec<u32>,
    /// SAM's predicted IoU of the mask.
    pub predicted_iou: f32,
    /// The stability score of the mask's logits.
    pub stability: f32,
    /// The mask's area in square micrometres.
    pub area_um2: f64,
}

impl WireProposal {
    /// The proposal from its box-relative mask, with the area at `microns_per_pixel`.
    pub fn new(
        id: u64,
        mask: &BoxRle,
        predicted_iou: f32,
        stability: f32,
        microns_per_pixel: f64,
    ) -> Self {
        Self {
            id,
            bbox: mask.bbox,
            mask: mask.counts.clone(),
            predicted_iou,
            stability,
            area_um2: mask.area() as f64 * microns_per_pixel * microns_per_pixel,
        }
    }

    /// The mask with its box.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidRle`] when the run lengths do not cover the box exactly (a
    /// message from another program, say).
    pub fn rle(&self) -> Result<BoxRle> {
        let rle = BoxRle {
            bbox: self.bbox,
            counts: self.mask.clone(),
        };
        rle.check()?;
        Ok(rle)
    }

    /// The proposal as an unclassified export object with its scores as measurements
    /// (`predicted_iou`, `stability`, `area_um2`): what `mitoscope propose` writes.
    ///
    /// # Errors
    ///
    /// As [`WireProposal::rle`].
    pub fn to_export(&self) -> Result<ExportObject> {
        Ok(ExportObject {
            id: self.id,
            mask: self.rle()?,
            classification: None,
            measurements: vec![
                ("predicted_iou".into(), f64::from(self.predicted_iou)),
                ("stability".into(), f64::from(self.stability)),
                ("area_um2".into(), self.area_um2),
            ],
        })
    }

    /// The proposal as a row of the proposals CSV (its box centre and scores).
    pub fn to_row(&self) -> ProposalRow {
        let [x, y] = box_centre(&self.bbox);
        ProposalRow {
            id: self.id,
            x,
            y,
            predicted_iou: f64::from(self.predicted_iou),
            stability: f64::from(self.stability),
            area_um2: self.area_um2,
        }
    }
}

/// One line of a job's streamed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// The job has left the queue and the image is decoded.
    Started {
        /// The request's id, as in the `x-request-id` header and the server's logs.
        request_id: String,
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
        /// The pixel size used, micrometres per pixel.
        microns_per_pixel: f64,
        /// Where it came from: `"file"` (the image states it) or `"request"` (`?mpp=`).
        mpp_source: String,
        /// Tiles covering the image.
        tiles_total: usize,
        /// Tiles with tissue, the ones that will be analysed (and reported as
        /// [`JobEvent::Tile`]).
        tiles_to_analyse: usize,
        /// The proposal model's name.
        model: String,
    },
    /// One tile analysed: its proposals and the progress.
    Tile {
        /// Tiles analysed so far, this one included.
        done: usize,
        /// Tiles to analyse in all.
        total: usize,
        /// The proposals this tile owns (each object is reported by exactly one tile).
        proposals: Vec<WireProposal>,
    },
    /// The job finished.
    Done {
        /// Proposals sent in all.
        proposals: usize,
        /// Tiles analysed.
        tiles_analysed: usize,
        /// The analysed tissue area in square millimetres: the pixels of the analysed tiles that
        /// are not white glass.
        analysed_mm2: f64,
        /// Wall time from the job's start to its end, in milliseconds.
        elapsed_ms: u64,
    },
    /// The job stopped before its end; the proposals already sent stay valid.
    Error(ApiError),
}

/// An error as the API reports it: the body of an HTTP error response, or a
/// [`JobEvent::Error`] line once the stream has begun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The HTTP status that describes it (e.g. 504 for a job over its time limit).
    pub status: u16,
    /// A short machine-readable code, e.g. `"job_timeout"`.
    pub code: String,
    /// What happened and what to do, in plain words.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, HTTP {})", self.message, self.code, self.status)
    }
}

/// `GET /api/v1/classifier`: the classifier ensemble the server's clients run, as content-addressed
/// safetensors files.
///
/// Each member's `url` names its bytes (`/api/v1/classifier/{index}-{sha256 prefix}.safetensors`),
/// so a client may cache the file for good: another classifier gets another URL. The manifest
/// itself must be fetched fresh (`Cache-Control: no-cache`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierManifest {
    /// The members, averaged as an ensemble, in order.
    pub members: Vec<ClassifierFile>,
    /// The probability above which a proposal counts as a mitotic figure, unless the user
    /// chooses another.
    pub default_threshold: f64,
}

/// One member of a [`ClassifierManifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierFile {
    /// Where the network came from, for display (a file name, or the embedded default's name).
    pub name: String,
    /// The path of its safetensors bytes on the server (absolute path, same origin as the API).
    pub url: String,
    /// Their length in bytes.
    pub bytes: u64,
    /// Their SHA-256, lower-case hex.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> WireProposal {
        let mask = BoxRle {
            bbox: BBox::new(10, 20, 12, 21).unwrap(),
            counts: vec![1, 4, 1],
        };
        WireProposal::new(7, &mask, 0.91, 0.8, 0.25)
    }

    #[test]
    fn a_proposal_round_trips_through_json_exactly() {
        let p = proposal();
        assert_eq!(p.area_um2, 4.0 * 0.0625);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""bbox":[10,20,12,21]"#), "{text}");
        assert!(text.contains(r#""mask":[1,4,1]"#), "{text}");
        let back: WireProposal = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.rle().unwrap().area(), 4);
    }

    #[test]
    fn events_are_tagged_and_round_trip() {
        let events = [
            JobEvent::Started {
                request_id: "r1".into(),
                width: 100,
                height: 80,
                microns_per_pixel: 0.25,
                mpp_source: "request".into(),
                tiles_total: 1,
                tiles_to_analyse: 1,
                model: "LiteMedSAM".into(),
            },
            JobEvent::Tile {
                done: 1,
                total: 1,
                proposals: vec![proposal()],
            },
            JobEvent::Done {
                proposals: 1,
                tiles_analysed: 1,
                analysed_mm2: 0.0005,
                elapsed_ms: 12,
            },
            JobEvent::Error(ApiError::new(504, "job_timeout", "too slow")),
        ];
        for event in events {
            let text = serde_json::to_string(&event).unwrap();
            assert!(!text.contains('\n'));
            let back: JobEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event, "{text}");
        }
        let error = serde_json::to_string(&JobEvent::Error(ApiError::new(504, "x", "y"))).unwrap();
        assert_eq!(
            error,
            r#"{"event":"error","status":504,"code":"x","message":"y"}"#
        );
    }

    #[test]
    fn a_mask_that_does_not_fit_its_box_is_refused() {
        let mut p = proposal();
        p.mask = vec![1, 4];
        assert!(p.rle().is_err());
        assert!(p.to_export().is_err());
        p.mask = vec![1, 4, 2];
        assert!(p.rle().is_err());
    }
}
