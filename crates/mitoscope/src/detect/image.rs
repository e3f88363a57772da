//! Detection on an image held in memory (PNG, JPEG, TIFF): the proposal stage of
//! `mitoscope propose` on the whole image (or a region of it), then each proposal's crop
//! classified.

use std::ops::ControlFlow;

use anyhow::Result;
use mitoscope_io::LoadedImage;
use mitoscope_models::pipeline::propose_image;
use mitoscope_models::sam::RgbImage;

use mitoscope_core::export::Detection;

use super::{Found, Models, classify_masks};
use crate::propose::crop_region;

/// The mitotic figures of `image` at `mpp` whose probability is above `threshold`, in
/// full-image pixels; only `region` (`[x, y, width, height]`) is analysed when given.
/// `on_tile(done, total)` follows the proposal stage.
///
/// The pixels are lent to the proposal stage and put back, so that the image is never held
/// twice.
///
/// # Errors
///
/// A region outside the image, a pixel size or setting the proposal stage refuses, a
/// classifier failure.
pub fn detect_image(
    models: &Models,
    image: &mut LoadedImage,
    mpp: f64,
    region: Option<[u32; 4]>,
    threshold: f64,
    mut on_tile: impl FnMut(usize, usize),
) -> Result<Found> {
    let (rgb, [dx, dy]) = match region {
        Some(r) => {
            let part = crop_region(image, r)?;
            let rgb = RgbImage::new(part.width as usize, part.height as usize, part.rgb)?;
            (rgb, [r[0], r[1]])
        }
        None => {
            let pixels = std::mem::take(&mut image.rgb);
            (
                RgbImage::new(image.width as usize, image.height as usize, pixels)?,
                [0, 0],
            )
        }
    };
    let proposed = propose_image(&models.sam, &rgb, &models.settings, mpp, |tile| {
        on_tile(tile.done, tile.total);
        ControlFlow::Continue(())
    });
    if region.is_none() {
        image.rgb = rgb.pixels;
    }
    let proposed = proposed?;

    let masks = proposed
        .proposals
        .iter()
        .map(|p| p.proposal.mask.translated(dx, dy))
        .collect::<mitoscope_core::Result<Vec<_>>>()?;
    // Crops come from the whole image, so that a figure at a region's edge keeps its context.
    let probabilities = classify_masks(models, &image.rgb, image.width, image.height, &masks)?;
    let figures = masks
        .into_iter()
        .zip(probabilities)
        .filter(|(_, p)| f64::from(*p) > threshold)
        .map(|(mask, probability)| Detection { mask, probability })
        .collect();
    Ok(Found {
        figures,
        repeats: 0,
        proposals: proposed.proposals.len(),
        tiles_total: proposed.tiles_total,
        tiles_analysed: proposed.tiles_analysed,
        analysed_pixels: proposed.analysed_pixels,
        tissue_pixels: proposed.tissue_pixels,
        tissue: Some((proposed.tissue, [dx, dy])),
    })
}
