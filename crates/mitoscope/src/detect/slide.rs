//! Detection on a whole-slide image, read tile by tile through OpenSlide so that memory stays
//! bounded whatever the slide's size.
//!
//! The same steps as the proposal stage on an image ([`mitoscope_models::pipeline`]), with the
//! pixels read on demand:
//!
//! 1. Tissue on the slide's overview (a pyramid level of at most
//!    [`TISSUE_VIEW_PX`] pixels a side, [`mitoscope_io::slide::Slide::overview`]), with the
//!    pipeline's rule for black "no data" pixels and OpenSlide's transparent ones read as white.
//! 2. The tile grid of the full-resolution level (or of `--region`); tiles with enough tissue.
//! 3. Per tile: its pixels with a margin of half a crop around them are read; the tile, padded
//!    with white to the model's input size as the pipeline pads, gets its embedding, prompts and
//!    proposals; the proposals it owns are kept, cropped from the pixels with their margin (so
//!    that each crop equals the one cut from the whole image) and classified.
//!
//! Only the figures above the threshold are kept, so memory grows with the figures found, not
//! with the slide.

use anyhow::{Context, Result, bail};
use mitoscope_core::seeds::NO_DATA_MAX;
use mitoscope_core::tissue::grey_from_rgb;
use mitoscope_core::{BoxCentre, CROP, TileGrid, TissueMask, owns};
use mitoscope_io::slide::{Overview, Slide};
use mitoscope_models::pipeline::{TISSUE_VIEW_PX, owned_tissue, padded_tile};
use mitoscope_models::proposals::{propose_counted, tile_prompts};

use mitoscope_core::export::Detection;

use super::{Found, Models, classify_masks};

/// Grey value of the padding of a tile that sticks out of the slide (white glass), as the
/// pipeline pads.
const PADDING: u8 = 255;

/// The slide's overview for tissue detection and the thumbnail overlay.
///
/// # Errors
///
/// As [`Slide::overview`].
pub fn overview(slide: &Slide) -> Result<Overview> {
    Ok(slide.overview(TISSUE_VIEW_PX as u32)?)
}

/// The mitotic figures of `slide` at `mpp` whose probability is above `threshold`, in
/// full-resolution pixels; only `region` (`[x, y, width, height]`) is analysed when given.
/// `view` is the slide's [`overview`]; `on_tile(done, total)` follows the tiles.
///
/// # Errors
///
/// A region outside the slide, a pixel size or setting the proposal stage refuses, a tile that
/// cannot be read, a model failure.
pub fn detect_slide(
    models: &Models,
    slide: &Slide,
    view: &Overview,
    mpp: f64,
    region: Option<[u32; 4]>,
    threshold: f64,
    mut on_tile: impl FnMut(usize, usize),
) -> Result<Found> {
    let settings = &models.settings;
    settings.validate().context("invalid proposal settings")?;
    let side = models.sam.config().input_size;
    if settings.tile_size as usize != side {
        bail!(
            "tile size {} px differs from the model's input size {side} px",
            settings.tile_size
        );
    }
    let [rx, ry, rw, rh] = region.unwrap_or([0, 0, slide.width(), slide.height()]);
    let fits = |start: u32, len: u32, limit: u32| {
        len > 0 && start.checked_add(len).is_some_and(|end| end <= limit)
    };
    if !fits(rx, rw, slide.width()) || !fits(ry, rh, slide.height()) {
        bail!(
            "--region {rx},{ry},{rw},{rh} does not lie inside the {} x {} px slide",
            slide.width(),
            slide.height()
        );
    }

    // Tissue on the overview; tiles of the analysed rectangle.
    let (tissue, not_glass) = tissue_masks(view, settings)?;
    let grid = TileGrid::from_settings(rw, rh, settings)?;
    let kept: Vec<_> = grid
        .tiles()
        .iter()
        .filter(|t| {
            tissue.fraction(rx + t.x, ry + t.y, t.width, t.height) >= settings.min_tissue_fraction
        })
        .copied()
        .collect();
    let _span = tracing::info_span!("detect_slide", tiles = kept.len()).entered();

    let mut found = Found {
        figures: Vec::new(),
        repeats: 0,
        proposals: 0,
        tiles_total: grid.tiles().len(),
        tiles_analysed: kept.len(),
        analysed_pixels: 0,
        tissue_pixels: 0.0,
        tissue: None,
    };
    let margin = CROP / 2;
    for (done, tile) in kept.iter().enumerate() {
        let [ox0, oy0, ox1, oy1] = tile.owned;
        found.analysed_pixels += u64::from(ox1 - ox0) * u64::from(oy1 - oy0);
        found.tissue_pixels += owned_tissue(&not_glass, tile, [rx, ry]);

        // The tile in slide pixels, and around it the margin its crops need.
        let (tx, ty) = (rx + tile.x, ry + tile.y);
        let (cx0, cy0) = (tx.saturating_sub(margin), ty.saturating_sub(margin));
        let cx1 = (tx + tile.width + margin).min(slide.width());
        let cy1 = (ty + tile.height + margin).min(slide.height());
        let (cw, ch) = (cx1 - cx0, cy1 - cy0);
        let context = slide.read_rgb(cx0, cy0, cw, ch)?;
        let pixels = padded_tile(
            &context,
            cw as usize,
            [(tx - cx0) as usize, (ty - cy0) as usize],
            [tile.width as usize, tile.height as usize],
            side,
        );

        let embedding = models.sam.embed(&pixels);
        let prompts = tile_prompts(settings, &pixels, mpp)?;
        let (proposals, _) = propose_counted(&models.sam, &embedding, &prompts, settings, mpp)?;

        // The proposals this tile owns, masks clipped to the tile, in context pixels.
        let mut masks = Vec::new();
        for proposal in proposals {
            let Some(mask) = proposal.mask.clipped(tile.width, tile.height)? else {
                continue;
            };
            let in_grid = mask.bbox.translated(tile.x, tile.y)?;
            if owns(tile, BoxCentre::of(&in_grid)) {
                masks.push(mask.translated(tx - cx0, ty - cy0)?);
            }
        }
        found.proposals += masks.len();
        let probabilities = classify_masks(models, &context, cw, ch, &masks)?;
        for (mask, probability) in masks.into_iter().zip(probabilities) {
            if f64::from(probability) > threshold {
                found.figures.push(Detection {
                    mask: mask.translated(cx0, cy0)?,
                    probability,
                });
            }
        }
        on_tile(done + 1, kept.len());
    }
    found.tissue = Some((not_glass, [0, 0]));
    Ok(found)
}

/// The tissue masks of the overview, the tiles' (OMG-Net's rule) and the area's (not glass):
/// black "no data" pixels count as white glass, as the pipeline counts them.
fn tissue_masks(
    view: &Overview,
    settings: &mitoscope_core::ProposalSettings,
) -> Result<(TissueMask, TissueMask)> {
    let mut rgb = view.rgb.clone();
    for pixel in rgb.chunks_exact_mut(3) {
        if pixel.iter().all(|&c| c <= NO_DATA_MAX) {
            pixel.fill(PADDING);
        }
    }
    let grey = grey_from_rgb(&rgb, view.width, view.height)?;
    Ok((
        TissueMask::detect(&grey, settings, view.downsample)?,
        TissueMask::not_glass(&grey, settings, view.downsample)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_no_data_is_glass_for_the_tissue_mask() {
        // A 40 x 40 view: white with a black band on the left and a pink square in the middle.
        let mut rgb = vec![255u8; 40 * 40 * 3];
        for y in 0..40 {
            for x in 0..40 {
                let at = 3 * (y * 40 + x);
                if x < 8 {
                    rgb[at..at + 3].fill(0);
                } else if (15..25).contains(&x) && (15..25).contains(&y) {
                    rgb[at..at + 3].copy_from_slice(&[200, 100, 160]);
                }
            }
        }
        let view = Overview {
            width: 40,
            height: 40,
            rgb,
            downsample: 10.0,
            level: 0,
        };
        let settings = mitoscope_core::ProposalSettings {
            tissue_border_px: 5,
            ..Default::default()
        };
        let (tissue, _) = tissue_masks(&view, &settings).unwrap();
        // The black band is not tissue; the square is (100 view pixels of 1600).
        assert_eq!(tissue.fraction(0, 0, 80, 400), 0.0);
        assert_eq!(tissue.fraction(150, 150, 100, 100), 1.0);
        assert_eq!(tissue.fraction(0, 0, 400, 400), 100.0 / 1600.0);
    }
}
