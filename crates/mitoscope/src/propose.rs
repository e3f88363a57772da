//! `mitoscope propose IMAGE`: every cell-scale object of an image, as GeoJSON polygons with
//! their scores, optionally drawn over the image.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};
use mitoscope_core::export::{ExportObject, GeometryKind, ObjectType, to_csv, to_geojson};
use mitoscope_core::wire::WireProposal;
use mitoscope_core::{PromptMode, ProposalSettings};
use mitoscope_io::{Limits, LoadedImage};
use mitoscope_models::pipeline::{ImageProposal, ImageProposals, propose_image};
use mitoscope_models::sam::{RgbImage, Sam};

use crate::output::write_atomic;
use crate::overlay::{OUTLINE, draw_outlines};
use crate::{load_sam, resolve_mpp};

/// What `mitoscope propose` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ProposeOptions {
    /// The image (PNG, JPEG or TIFF).
    pub image: PathBuf,
    /// Pixel size in um/px when the file does not state it.
    pub mpp: Option<f64>,
    /// A published SAM checkpoint instead of the embedded LiteMedSAM.
    pub sam: Option<PathBuf>,
    /// A point grid of this density instead of the model's default prompts.
    pub points_per_side: Option<u32>,
    /// The GeoJSON output; standard output when `None`.
    pub out: Option<PathBuf>,
    /// A CSV of the proposals (`id,x,y,predicted_iou,stability,area_um2`).
    pub csv: Option<PathBuf>,
    /// A PNG of the image with the proposals' outlines.
    pub overlay: Option<PathBuf>,
    /// Analyse only this rectangle `[x, y, width, height]` of the image (full-resolution
    /// pixels); the outputs keep full-image coordinates.
    pub region: Option<[u32; 4]>,
    /// Show a progress bar on standard error (when it is a terminal).
    pub progress: bool,
}

/// The pixels of `region` (`[x, y, width, height]`) of `image`.
///
/// # Errors
///
/// An empty region or one that does not lie inside the image.
pub fn crop_region(image: &LoadedImage, [x, y, w, h]: [u32; 4]) -> Result<LoadedImage> {
    let fits = |start: u32, len: u32, limit: u32| {
        len > 0 && start.checked_add(len).is_some_and(|end| end <= limit)
    };
    if !fits(x, w, image.width) || !fits(y, h, image.height) {
        bail!(
            "--region {x},{y},{w},{h} does not lie inside the {} x {} px image",
            image.width,
            image.height
        );
    }
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in y..y + h {
        let at = 3 * (row * image.width as usize + x);
        rgb.extend_from_slice(&image.rgb[at..at + 3 * w]);
    }
    Ok(LoadedImage {
        width: w as u32,
        height: h as u32,
        rgb,
        ..image.clone()
    })
}

/// Moves proposals found in a region to the coordinates of the whole image.
fn translate(proposals: &mut [ImageProposal], dx: u32, dy: u32) -> Result<()> {
    for p in proposals {
        p.proposal.mask = p.proposal.mask.translated(dx, dy)?;
        p.proposal.bbox = p.proposal.mask.bbox;
    }
    Ok(())
}

/// The settings for `sam`, with a point grid of `points_per_side` when one is asked for.
pub fn settings_for(sam: &Sam, points_per_side: Option<u32>) -> ProposalSettings {
    let mut settings = sam.config().default_proposal_settings();
    if let Some(n) = points_per_side {
        settings.prompts = PromptMode::PointGrid;
        settings.points_per_side = n;
    }
    settings
}

/// Reads an image with the default limits, with a message that names the file.
///
/// # Errors
///
/// The file cannot be read, is not a supported image, or is too large.
pub fn read_image(path: &Path) -> Result<LoadedImage> {
    mitoscope_io::read_path(path, &Limits::default())
        .with_context(|| format!("cannot use {} as an image", path.display()))
}

/// Runs the proposal stage on a loaded image with a progress bar.
///
/// # Errors
///
/// As [`propose_image`].
pub fn propose_loaded(
    sam: &Sam,
    image: &LoadedImage,
    settings: &ProposalSettings,
    mpp: f64,
    progress: bool,
) -> Result<ImageProposals> {
    let rgb = RgbImage::new(
        image.width as usize,
        image.height as usize,
        image.rgb.clone(),
    )?;
    let bar = if progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} tiles {pos}/{len} {wide_bar} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut found = 0usize;
    let result = propose_image(sam, &rgb, settings, mpp, |tile| {
        found += tile.proposals.len();
        bar.set_length(tile.total as u64);
        bar.set_position(tile.done as u64);
        bar.set_message(format!("{found} proposals"));
        ControlFlow::Continue(())
    });
    bar.finish_and_clear();
    Ok(result?)
}

/// A proposal as it goes on the wire, with its area at `mpp`; the server streams these and
/// `mitoscope propose` writes its files from them, so both give the same numbers.
pub fn to_wire(p: &ImageProposal, mpp: f64) -> WireProposal {
    WireProposal::new(
        p.id,
        &p.proposal.mask,
        p.proposal.predicted_iou,
        p.proposal.stability,
        mpp,
    )
}

/// The proposals as export objects: unclassified, with their scores and area in um^2.
///
/// # Errors
///
/// A mask whose runs do not cover its box (an internal error).
pub fn export_objects(proposals: &[WireProposal]) -> Result<Vec<ExportObject>> {
    Ok(proposals
        .iter()
        .map(WireProposal::to_export)
        .collect::<mitoscope_core::Result<_>>()?)
}

/// Runs `mitoscope propose`.
///
/// # Errors
///
/// Unreadable or unsupported image, no usable pixel size, an unusable checkpoint, an output
/// that cannot be written. Outputs are written atomically, only once the proposals are done.
pub fn run(options: &ProposeOptions, device: &Device) -> Result<()> {
    let started = Instant::now();
    let image = read_image(&options.image)?;
    let mpp = resolve_mpp(image.mpp, options.mpp)?;
    let sam = load_sam(options.sam.as_deref(), device)?;
    let settings = settings_for(&sam, options.points_per_side);
    settings
        .validate()
        .context("invalid --points-per-side (1 to 1024)")?;
    tracing::info!(
        width = image.width,
        height = image.height,
        mpp,
        model = %sam.config().name,
        "proposing"
    );

    let result = match options.region {
        Some(region) => {
            let part = crop_region(&image, region)?;
            let mut result = propose_loaded(&sam, &part, &settings, mpp, options.progress)?;
            translate(&mut result.proposals, region[0], region[1])?;
            result
        }
        None => propose_loaded(&sam, &image, &settings, mpp, options.progress)?,
    };
    let wire: Vec<WireProposal> = result.proposals.iter().map(|p| to_wire(p, mpp)).collect();
    let objects = export_objects(&wire)?;
    let geojson = to_geojson(&objects, GeometryKind::Polygon, ObjectType::Detection)?;
    let text = serde_json::to_string(&geojson)? + "\n";
    match &options.out {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    if let Some(path) = &options.csv {
        write_atomic(
            path,
            to_csv(&wire.iter().map(WireProposal::to_row).collect::<Vec<_>>())?.as_bytes(),
        )?;
    }
    if let Some(path) = &options.overlay {
        write_overlay(path, &image, &result.proposals)?;
    }

    let mm2 = result.analysed_mm2(mpp);
    eprintln!(
        "{} proposals on {} x {} px at {mpp} um/px ({} of {} tiles with tissue, {mm2:.4} mm^2, \
         {:.0} per mm^2) in {:.1} s with {}",
        result.proposals.len(),
        image.width,
        image.height,
        result.tiles_analysed,
        result.tiles_total,
        if mm2 > 0.0 {
            result.proposals.len() as f64 / mm2
        } else {
            0.0
        },
        started.elapsed().as_secs_f64(),
        sam.config().name,
    );
    Ok(())
}

/// Writes the image with the proposals' outlines as a PNG.
fn write_overlay(path: &Path, image: &LoadedImage, proposals: &[ImageProposal]) -> Result<()> {
    let mut rgb = image.rgb.clone();
    let masks: Vec<_> = proposals.iter().map(|p| &p.proposal.mask).collect();
    draw_outlines(&mut rgb, image.width, image.height, &masks, OUTLINE);
    let buffer =
        image::RgbImage::from_raw(image.width, image.height, rgb).context("overlay buffer size")?;
    let mut png = std::io::Cursor::new(Vec::new());
    buffer
        .write_to(&mut png, image::ImageFormat::Png)
        .context("cannot encode the overlay")?;
    write_atomic(path, png.get_ref())
}
