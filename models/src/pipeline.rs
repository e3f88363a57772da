//! The proposal stage on a whole image: tissue detection, tiles, one embedding per tile, the
//! tile's prompts and proposals, each object reported once (steps 1 to 4 of the design).
//!
//! 1. Tissue: a grey view of the image (every `k`-th pixel, so that its longer side is at most
//!    [`TISSUE_VIEW_PX`]; black "no data" pixels read as white) and OMG-Net's background rule
//!    ([`mitoscope_core::TissueMask`]); tiles with less than `min_tissue_fraction` tissue are
//!    skipped. The tissue area reported is measured on the same view with
//!    [`TissueMask::not_glass`]: the pixels of the analysed tiles that are not white glass.
//! 2. Tiles of `tile_size` overlapping by `tile_overlap` ([`mitoscope_core::TileGrid`]). The
//!    tile size is the model's input size, so a tile is never resized; a tile that sticks out
//!    of a small image is padded with white (no stain, so no seeds and no nuclei there), and
//!    the masks are clipped back to the image.
//! 3. Per tile: the embedding, the prompts ([`tile_prompts`]) and the proposals
//!    ([`propose_counted`]), then only those whose box centre the tile owns
//!    ([`mitoscope_core::owns`]), in image coordinates.
//!
//! [`propose_image`] hands each tile's proposals to a callback as soon as the tile is done, so
//! that a server can stream them and a command line can show progress; the callback can stop
//! the job.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mitoscope_core::seeds::NO_DATA_MAX;
use mitoscope_core::tissue::grey_from_rgb;
use mitoscope_core::{BoxCentre, ProposalSettings, Tile, TileGrid, TissueMask, owns};

use crate::error::{ModelError, Result};
use crate::proposals::{Proposal, ProposalCounts, propose_counted, tile_prompts, validate};
use crate::sam::{RgbImage, Sam};

/// Longest side of the grey view used for tissue detection, pixels.
pub const TISSUE_VIEW_PX: usize = 2048;

/// Grey value of the padding of a tile that sticks out of the image (white glass).
const PADDING: u8 = 255;

/// One proposal of a whole image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProposal {
    /// Number of the proposal in the image, from 0, in the order found.
    pub id: u64,
    /// Index of the tile that found it in [`TileGrid::tiles`].
    pub tile: usize,
    /// The proposal, box and mask in image pixels.
    pub proposal: Proposal,
}

/// What one tile produced, handed to the callback of [`propose_image`].
#[derive(Debug, Clone)]
pub struct TileDone<'a> {
    /// Tiles done so far among those analysed, this one included.
    pub done: usize,
    /// Tiles to analyse (those with enough tissue).
    pub total: usize,
    /// The tile, in image pixels.
    pub tile: Tile,
    /// Its proposals that it owns, in image pixels.
    pub proposals: &'a [ImageProposal],
    /// Masks passing each step on this tile (before the ownership rule).
    pub counts: ProposalCounts,
    /// Time spent on the tile.
    pub elapsed: Duration,
}

/// The proposals of a whole image and what was analysed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProposals {
    /// Every proposal, in the order found.
    pub proposals: Vec<ImageProposal>,
    /// Tiles of the image.
    pub tiles_total: usize,
    /// Tiles analysed (with enough tissue).
    pub tiles_analysed: usize,
    /// Area owned by the analysed tiles, in pixels (the image area when every tile has tissue).
    pub analysed_pixels: u64,
    /// Tissue in the area owned by the analysed tiles, in pixels: those not white glass.
    pub tissue_pixels: f64,
    /// Which pixels of the image are tissue, for the area ([`TissueMask::not_glass`]).
    pub tissue: TissueMask,
    /// Masks passing each step, summed over the tiles.
    pub counts: ProposalCounts,
}

impl ImageProposals {
    /// The area owned by the analysed tiles, in mm^2 at `microns_per_pixel`.
    pub fn analysed_mm2(&self, microns_per_pixel: f64) -> f64 {
        self.analysed_pixels as f64 * microns_per_pixel * microns_per_pixel * 1e-6
    }

    /// The tissue area analysed, in mm^2 at `microns_per_pixel`: what counts are divided by.
    pub fn tissue_mm2(&self, microns_per_pixel: f64) -> f64 {
        self.tissue_pixels * microns_per_pixel * microns_per_pixel * 1e-6
    }
}

/// The tiles of an image, which of them hold enough tissue, and the image's tissue for the
/// area.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueTiles {
    /// The tiles.
    pub grid: TileGrid,
    /// Indices of the tiles to analyse.
    pub kept: Vec<usize>,
    /// Which pixels are tissue, for the area ([`TissueMask::not_glass`]).
    pub tissue: TissueMask,
}

/// Tissue pixels in the area `tile` owns, the tile lying at `offset` in `tissue`'s image.
pub fn owned_tissue(tissue: &TissueMask, tile: &Tile, [dx, dy]: [u32; 2]) -> f64 {
    let [x0, y0, x1, y1] = tile.owned;
    let area = f64::from(x1 - x0) * f64::from(y1 - y0);
    area * tissue.fraction(dx + x0, dy + y0, x1 - x0, y1 - y0)
}

/// The tiles of `image`, which of them hold enough tissue, and its tissue for the area.
///
/// # Errors
///
/// [`ModelError::InvalidInput`] for an image the tiling refuses (empty, too many tiles).
pub fn tissue_tiles(image: &RgbImage, settings: &ProposalSettings) -> Result<TissueTiles> {
    let invalid = |err: mitoscope_core::Error| ModelError::InvalidInput(err.to_string());
    let (width, height) = (size(image.width)?, size(image.height)?);
    let grid = TileGrid::from_settings(width, height, settings).map_err(invalid)?;

    let step = image
        .width
        .max(image.height)
        .div_ceil(TISSUE_VIEW_PX)
        .max(1);
    let (view_w, view_h) = (image.width.div_ceil(step), image.height.div_ceil(step));
    let mut view = Vec::with_capacity(view_w * view_h * 3);
    for y in (0..image.height).step_by(step) {
        for x in (0..image.width).step_by(step) {
            let at = 3 * (y * image.width + x);
            let pixel = &image.pixels[at..at + 3];
            // NOTE: black "no data" (the padding of a crop cut beyond a slide's edge) counts as
            // background glass: taken as it is, a black border drags the background level below
            // the tissue and the tile is skipped.
            if pixel.iter().all(|&c| c <= NO_DATA_MAX) {
                view.extend_from_slice(&[PADDING; 3]);
            } else {
                view.extend_from_slice(pixel);
            }
        }
    }
    let grey = grey_from_rgb(&view, size(view_w)?, size(view_h)?).map_err(invalid)?;
    let tissue = TissueMask::detect(&grey, settings, step as f64).map_err(invalid)?;
    let kept = grid
        .tiles()
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            tissue.fraction(t.x, t.y, t.width, t.height) >= settings.min_tissue_fraction
        })
        .map(|(i, _)| i)
        .collect();
    let tissue = TissueMask::not_glass(&grey, settings, step as f64).map_err(invalid)?;
    Ok(TissueTiles { grid, kept, tissue })
}

/// A dimension as `u32`.
fn size(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| ModelError::InvalidInput(format!("image side {v} px too large")))
}

/// The pixels of `tile`, padded with white to `side x side`.
fn tile_pixels(image: &RgbImage, tile: &Tile, side: usize) -> RgbImage {
    padded_tile(
        &image.pixels,
        image.width,
        [tile.x as usize, tile.y as usize],
        [tile.width as usize, tile.height as usize],
        side,
    )
}

/// The `width x height` rectangle at `[x, y]` of `rgb` (rows of `row_width` RGB pixels),
/// padded with white to `side x side`: a tile as the model sees it, cut from a whole image or
/// from a slide region read around the tile.
///
/// # Panics
///
/// When the rectangle does not lie inside `rgb` or is larger than `side`.
pub fn padded_tile(
    rgb: &[u8],
    row_width: usize,
    [x, y]: [usize; 2],
    [width, height]: [usize; 2],
    side: usize,
) -> RgbImage {
    let mut pixels = vec![PADDING; side * side * 3];
    for row in 0..height {
        let src = 3 * ((y + row) * row_width + x);
        pixels[3 * row * side..3 * (row * side + width)]
            .copy_from_slice(&rgb[src..src + 3 * width]);
    }
    RgbImage {
        width: side,
        height: side,
        pixels,
    }
}

/// Every proposal of `image`, tile by tile (see the module).
///
/// `on_tile` is called after each analysed tile with its proposals; returning
/// `ControlFlow::Break` stops the job with [`ModelError::Cancelled`].
///
/// # Errors
///
/// [`ModelError::InvalidInput`] for settings that fail [`ProposalSettings::validate`], a tile
/// size other than the model's input size, a pixel size outside the accepted range, or an
/// image the tiling refuses; [`ModelError::Cancelled`] when `on_tile` stops it.
pub fn propose_image(
    sam: &Sam,
    image: &RgbImage,
    settings: &ProposalSettings,
    microns_per_pixel: f64,
    mut on_tile: impl FnMut(&TileDone<'_>) -> ControlFlow<()>,
) -> Result<ImageProposals> {
    validate(settings, microns_per_pixel)?;
    let side = sam.config().input_size;
    if settings.tile_size as usize != side {
        return Err(ModelError::InvalidInput(format!(
            "tile size {} px differs from the model's input size {side} px",
            settings.tile_size
        )));
    }
    let TissueTiles { grid, kept, tissue } = tissue_tiles(image, settings)?;
    let (width, height) = (grid.width(), grid.height());
    let _span = tracing::info_span!("propose_image", width, height, tiles = kept.len()).entered();

    let mut result = ImageProposals {
        proposals: Vec::new(),
        tiles_total: grid.tiles().len(),
        tiles_analysed: kept.len(),
        analysed_pixels: 0,
        tissue_pixels: 0.0,
        tissue,
        counts: ProposalCounts::default(),
    };
    for (done, &index) in kept.iter().enumerate() {
        let started = Instant::now();
        let tile = grid.tiles()[index];
        let [ox0, oy0, ox1, oy1] = tile.owned;
        result.analysed_pixels += u64::from(ox1 - ox0) * u64::from(oy1 - oy0);
        result.tissue_pixels += owned_tissue(&result.tissue, &tile, [0, 0]);

        let pixels = tile_pixels(image, &tile, side);
        let embedding = sam.embed(&pixels);
        let prompts = tile_prompts(settings, &pixels, microns_per_pixel)?;
        let (found, counts) =
            propose_counted(sam, &embedding, &prompts, settings, microns_per_pixel)?;
        add_counts(&mut result.counts, &counts);

        let first = result.proposals.len();
        for proposal in found {
            if let Some(proposal) = to_image(proposal, &tile, width, height)?
                && owns(&tile, BoxCentre::of(&proposal.bbox))
            {
                result.proposals.push(ImageProposal {
                    id: result.proposals.len() as u64,
                    tile: index,
                    proposal,
                });
            }
        }
        let report = TileDone {
            done: done + 1,
            total: kept.len(),
            tile,
            proposals: &result.proposals[first..],
            counts,
            elapsed: started.elapsed(),
        };
        tracing::debug!(
            tile = index,
            proposals = report.proposals.len(),
            elapsed_ms = report.elapsed.as_secs_f64() * 1e3,
            "tile done"
        );
        if on_tile(&report).is_break() {
            return Err(ModelError::Cancelled);
        }
    }
    Ok(result)
}

/// A tile's proposal in image pixels, its mask clipped to the image; `None` when nothing of it
/// lies in the image.
fn to_image(proposal: Proposal, tile: &Tile, width: u32, height: u32) -> Result<Option<Proposal>> {
    let invalid = |err: mitoscope_core::Error| ModelError::InvalidInput(err.to_string());
    // Clip on the tile first (the padding lies beyond the tile's real pixels).
    let Some(mask) = proposal
        .mask
        .clipped(tile.width, tile.height)
        .map_err(invalid)?
    else {
        return Ok(None);
    };
    let mask = mask.translated(tile.x, tile.y).map_err(invalid)?;
    debug_assert!(mask.bbox.x1() < width && mask.bbox.y1() < height);
    Ok(Some(Proposal {
        bbox: mask.bbox,
        box_area: mitoscope_core::box_area(&mask.bbox),
        mask_area: mask.area(),
        mask,
        ..proposal
    }))
}

/// Adds `b`'s counts to `a`.
fn add_counts(a: &mut ProposalCounts, b: &ProposalCounts) {
    a.prompts += b.prompts;
    a.masks += b.masks;
    a.after_iou += b.after_iou;
    a.after_stability += b.after_stability;
    a.after_area += b.after_area;
    a.after_nms += b.after_nms;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_is_cut_from_its_context_and_padded_with_white() {
        // A 4 x 3 context whose pixel (x, y) is [x, y, 7]; the 2 x 2 tile at (1, 1).
        let mut context = Vec::new();
        for y in 0..3u8 {
            for x in 0..4u8 {
                context.extend([x, y, 7]);
            }
        }
        let tile = padded_tile(&context, 4, [1, 1], [2, 2], 3);
        assert_eq!((tile.width, tile.height), (3, 3));
        let px = |x: usize, y: usize| &tile.pixels[3 * (y * 3 + x)..][..3];
        assert_eq!(px(0, 0), [1, 1, 7]);
        assert_eq!(px(1, 1), [2, 2, 7]);
        assert_eq!(px(2, 0), [255, 255, 255]);
        assert_eq!(px(0, 2), [255, 255, 255]);
    }
}
