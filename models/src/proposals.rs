//! The proposal stage on one image embedding: every cell-scale object SAM segments from its
//! prompts (steps 3 and 4 of the design). [`tile_prompts`] makes the prompts: OMG-Net's regular
//! grid of points, or box prompts on nucleus seeds for LiteMedSAM (see
//! [`mitoscope_core::seeds`]).
//!
//! Follows `MaskGenerator.forward` in OMG-Net's `Models/SAM_Masking.py`: the prompts go through
//! the decoder in batches of `points_per_batch`, three masks each (one when
//! `multimask_output` is off); per batch the masks are kept
//! when their predicted IoU is strictly above `pred_iou_thresh`, then when their stability score
//! is strictly above `stability_score_thresh`, then when their bounding-box area lies strictly
//! between the size bounds; after the last batch, box NMS ranked by predicted IoU removes the
//! duplicates. The geometry lives in `mitoscope-core`; this module only runs the networks and
//! moves logits to the host. Deviations from the reference are marked `NOTE:`.

use std::time::Instant;

use burn::prelude::*;
use mitoscope_core::{
    AreaLimits, BBox, BinaryMask, BoxRle, Grid, PromptMode, ProposalSettings, SeedParams,
    build_tile_point_grid, filter, nms, nucleus_seeds, rle, seed_boxes, stability_score,
};

use crate::error::{ModelError, Result};
use crate::sam::{ImageEmbedding, Prompt, RgbImage, Sam};

/// Smallest accepted pixel size in um (a 200x objective scans at about 0.12 um/px).
pub const MIN_MICRONS_PER_PIXEL: f64 = 0.05;

/// Largest accepted pixel size in um (a 5x view; nuclei are a few pixels wide there).
pub const MAX_MICRONS_PER_PIXEL: f64 = 2.0;

/// One object SAM proposed: its box, scores and mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The mask's bounding box in image pixels, maxima inclusive.
    pub bbox: BBox,
    /// SAM's predicted IoU, the NMS ranking score.
    pub predicted_iou: f32,
    /// Stability score of the mask's logits.
    pub stability: f32,
    /// The binary mask, run-length encoded relative to `bbox`.
    pub mask: BoxRle,
    /// Box area as torchvision's `box_area`: `(x1 - x0) * (y1 - y0)`, no `+ 1`.
    pub box_area: u64,
    /// Number of mask pixels.
    pub mask_area: u64,
}

/// How many masks each step of [`propose_counted`] saw, for logs and parity checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProposalCounts {
    /// Prompts decoded.
    pub prompts: usize,
    /// Masks the decoder returned (three per prompt, or one).
    pub masks: usize,
    /// Masks whose predicted IoU passed.
    pub after_iou: usize,
    /// Masks whose stability score passed too.
    pub after_stability: usize,
    /// Masks whose size passed too.
    pub after_area: usize,
    /// Proposals left after box NMS.
    pub after_nms: usize,
}

impl Proposal {
    /// The mask as a `width x height` grid (the image the proposal was found on).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when the box does not fit in `width x height` or the size is
    /// unusable.
    pub fn decode_mask(&self, width: u32, height: u32) -> Result<BinaryMask> {
        rle::decode(&self.mask, width, height).map_err(invalid)
    }
}

/// A core error as the crate's error: every one of them comes from a value the caller gave.
fn invalid(err: mitoscope_core::Error) -> ModelError {
    ModelError::InvalidInput(err.to_string())
}

/// Checks the settings and the pixel size, and turns the size bounds into pixels.
pub(crate) fn validate(settings: &ProposalSettings, microns_per_pixel: f64) -> Result<AreaLimits> {
    settings.validate().map_err(invalid)?;
    if !(MIN_MICRONS_PER_PIXEL..=MAX_MICRONS_PER_PIXEL).contains(&microns_per_pixel) {
        return Err(ModelError::InvalidInput(format!(
            "pixel size {microns_per_pixel} um/px outside \
             {MIN_MICRONS_PER_PIXEL}..={MAX_MICRONS_PER_PIXEL}"
        )));
    }
    AreaLimits::new(settings, microns_per_pixel).map_err(invalid)
}

/// The prompts of one tile (or whole image) as `settings.prompts` asks: the regular point grid
/// scaled to the image, or a box prompt on each nucleus seed of its pixels.
///
/// NOTE: the reference scales the unit point grid by 1024, the size of its tiles; we scale it by
/// the image's width and height, the same for a 1024 tile and right for any other size.
///
/// # Errors
///
/// [`ModelError::InvalidInput`] for settings that fail [`ProposalSettings::validate`] or a pixel
/// size outside [`MIN_MICRONS_PER_PIXEL`]`..=`[`MAX_MICRONS_PER_PIXEL`].
pub fn tile_prompts(
    settings: &ProposalSettings,
    image: &RgbImage,
    microns_per_pixel: f64,
) -> Result<Vec<Prompt>> {
    validate(settings, microns_per_pixel)?;
    let (width, height) = image_size(image.width, image.height)?;
    match settings.prompts {
        PromptMode::PointGrid => {
            let points =
                build_tile_point_grid(settings.points_per_side, width, height).map_err(invalid)?;
            Ok(points
                .iter()
                .map(|&[x, y]| Prompt::point(x as f32, y as f32))
                .collect())
        }
        PromptMode::NucleusSeeds => {
            let params = SeedParams::new(settings, microns_per_pixel).map_err(invalid)?;
            let seeds = nucleus_seeds(&image.pixels, width, height, &params).map_err(invalid)?;
            Ok(seed_boxes(&seeds.points, params.box_px, width, height)
                .iter()
                .map(|&[x0, y0, x1, y1]| Prompt::bbox(x0 as f32, y0 as f32, x1 as f32, y1 as f32))
                .collect())
        }
    }
}

/// A width and height as `u32`, refusing empty and oversized images.
fn image_size(width: usize, height: usize) -> Result<(u32, u32)> {
    let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(ModelError::InvalidInput("image too large".into()));
    };
    if width == 0 || height == 0 {
        return Err(ModelError::InvalidInput(format!(
            "empty image: {width} x {height}"
        )));
    }
    Ok((width, height))
}

/// The proposals SAM makes from `prompts` on one tile (or whole image) given its embedding,
/// ranked by predicted IoU, duplicates removed.
///
/// `microns_per_pixel` turns the size bounds of `settings` (um^2) into pixels: at 0.25 um/px the
/// defaults are the reference's 36 and 3600 px^2. Only `points_per_batch` prompts are decoded at
/// a time and only the masks that pass the IoU filter are upscaled, so memory depends on the
/// batch, not the number of prompts.
///
/// # Errors
///
/// [`ModelError::InvalidInput`] for settings that fail [`ProposalSettings::validate`], a pixel
/// size outside [`MIN_MICRONS_PER_PIXEL`]`..=`[`MAX_MICRONS_PER_PIXEL`], or an embedding of an
/// empty or oversized image.
pub fn propose(
    sam: &Sam,
    embedding: &ImageEmbedding,
    prompts: &[Prompt],
    settings: &ProposalSettings,
    microns_per_pixel: f64,
) -> Result<Vec<Proposal>> {
    propose_counted(sam, embedding, prompts, settings, microns_per_pixel)
        .map(|(proposals, _)| proposals)
}

/// [`propose`], with the number of masks that passed each step.
///
/// # Errors
///
/// As [`propose`].
pub fn propose_counted(
    sam: &Sam,
    embedding: &ImageEmbedding,
    prompts: &[Prompt],
    settings: &ProposalSettings,
    microns_per_pixel: f64,
) -> Result<(Vec<Proposal>, ProposalCounts)> {
    let limits = validate(settings, microns_per_pixel)?;
    let [height, width] = embedding.original_size;
    let (width, height) = image_size(width, height)?;
    let started = Instant::now();
    let _span = tracing::debug_span!("propose", width, height).entered();

    let batch_size = settings.points_per_batch as usize;
    let mut counts = ProposalCounts::default();
    let mut found = Vec::new();
    for (index, batch) in prompts.chunks(batch_size).enumerate() {
        let batch_started = Instant::now();
        let _batch_span = tracing::debug_span!("proposal_batch", index).entered();
        let kept = propose_batch(
            sam,
            embedding,
            settings,
            &limits,
            batch,
            [width, height],
            &mut counts,
        )?;
        tracing::debug!(
            prompts = batch.len(),
            kept = kept.len(),
            elapsed_ms = batch_started.elapsed().as_secs_f64() * 1e3,
            "batch decoded"
        );
        found.extend(kept);
    }

    // Step 6, after the last batch: box NMS over the whole tile, ranked by predicted IoU.
    let boxes: Vec<BBox> = found.iter().map(|p| p.bbox).collect();
    let scores: Vec<f32> = found.iter().map(|p| p.predicted_iou).collect();
    let keep = nms(&boxes, &scores, settings.box_nms_thresh).map_err(invalid)?;
    let mut found: Vec<Option<Proposal>> = found.into_iter().map(Some).collect();
    let proposals: Vec<Proposal> = keep.iter().filter_map(|&i| found[i].take()).collect();
    counts.after_nms = proposals.len();

    tracing::debug!(
        prompts = counts.prompts,
        after_iou = counts.after_iou,
        after_stability = counts.after_stability,
        after_area = counts.after_area,
        proposals = counts.after_nms,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "proposals done"
    );
    Ok((proposals, counts))
}

/// Steps 2 to 5 for one batch of prompts: decode, IoU filter, upscale, stability filter, box,
/// size filter.
fn propose_batch(
    sam: &Sam,
    embedding: &ImageEmbedding,
    settings: &ProposalSettings,
    limits: &AreaLimits,
    prompts: &[Prompt],
    [width, height]: [u32; 2],
    counts: &mut ProposalCounts,
) -> Result<Vec<Proposal>> {
    let device = sam.device();

    // Step 2: the prompts' masks, three each (or one).
    let prediction = sam.predict(embedding, prompts, settings.multimask_output)?;
    let [batch, masks, low_h, low_w] = prediction.low_res_logits.dims();
    counts.prompts += batch;
    counts.masks += batch * masks;

    // Step 3: predicted IoU strictly above the threshold, on the host, prompt-major as the
    // reference flattens `[prompts, masks]`.
    // NOTE: the reference upscales every mask and filters afterwards; filtering first gives the
    // same masks and upscales only the survivors.
    let ious = to_host(prediction.iou)?;
    let survivors: Vec<usize> = (0..batch * masks)
        .filter(|&i| filter::keep_by_pred_iou(ious[i], settings.pred_iou_thresh))
        .collect();
    counts.after_iou += survivors.len();
    if survivors.is_empty() {
        return Ok(Vec::new());
    }
    let low_res = prediction
        .low_res_logits
        .reshape([batch * masks, 1, low_h, low_w]);

    // Upscale the survivors, at most `points_per_batch` masks at a time.
    let pixels = width as usize * height as usize;
    let mut kept = Vec::new();
    for chunk in survivors.chunks(settings.points_per_batch as usize) {
        let index: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [chunk.len()]), device);
        let logits = sam.upscale_masks(low_res.clone().select(0, index), embedding);
        let logits = to_host(logits)?;

        for (&i, logits) in chunk.iter().zip(logits.chunks_exact(pixels)) {
            let logits = Grid::new(width, height, logits.to_vec()).map_err(invalid)?;

            // Step 4: stability score of the upscaled logits, strictly above the threshold.
            let stability = stability_score(
                &logits,
                settings.mask_threshold,
                settings.stability_score_offset,
            )
            .map_err(invalid)?;
            if !filter::keep_by_stability(stability, settings.stability_score_thresh) {
                continue;
            }
            counts.after_stability += 1;

            // Step 5: binary mask, its box, size strictly between the bounds.
            let mask = logits.threshold(settings.mask_threshold);
            let Some(mask_rle) = rle::encode(&mask) else {
                // An empty mask: the reference's box (0, 0, 0, 0) has area 0, never above the
                // lower bound.
                continue;
            };
            let bbox = mask_rle.bbox;
            if !limits.contains(limits.area_of(&mask, &bbox)) {
                continue;
            }
            counts.after_area += 1;
            kept.push(Proposal {
                bbox,
                predicted_iou: ious[i],
                stability,
                box_area: mitoscope_core::box_area(&bbox),
                mask_area: mask_rle.area(),
                mask: mask_rle,
            });
        }
    }
    Ok(kept)
}

/// A tensor's values on the host.
fn to_host<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|err| ModelError::Readback(format!("{err:?}")))
}
