//! One input from file to results: open it (an image, or a slide through OpenSlide), find the
//! mitotic figures, count them, and write the GeoJSON, the CSV, the overlay and `summary.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use mitoscope_core::export::{box_centre, detections_csv, detections_geojson};
use mitoscope_core::scale_warning;
use mitoscope_io::slide::{Overview, Slide, is_slide};
use mitoscope_io::{LoadedImage, MppSource};
use serde::{Deserialize, Serialize};

use super::image::detect_image;
use super::output::{self, Fingerprint, OutputFile, SUMMARY_JSON};
use super::overlay::{self, Canvas};
use super::slide::{detect_slide, overview};
use super::summary::{Densities, HotspotSummary, hotspot};
use super::{Found, Models, RunSettings};
use crate::propose::read_image;
use crate::resolve_mpp;

/// What `summary.json` holds for one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// The program that wrote it.
    pub mitoscope: String,
    /// The input file (absolute path, size, modification time).
    pub input: Fingerprint,
    /// The settings of the run; a rerun with others redoes the input.
    pub settings: serde_json::Value,
    /// `image` (decoded whole) or `slide` (read through OpenSlide).
    pub kind: String,
    /// The image format (`PNG`, `JPEG`, `TIFF`) or OpenSlide's name of the slide format.
    pub format: String,
    /// Full-resolution width, pixels.
    pub width: u32,
    /// Full-resolution height, pixels.
    pub height: u32,
    /// The pixel size used, um/px.
    pub mpp: f64,
    /// Where it came from.
    pub mpp_source: String,
    /// The rectangle analysed `[x, y, width, height]`, when not the whole input.
    pub region: Option<[u32; 4]>,
    /// Tiles of the analysed rectangle.
    pub tiles_total: usize,
    /// Tiles analysed (with enough tissue).
    pub tiles_analysed: usize,
    /// Objects the proposal stage found (and the classifier scored).
    pub proposals: usize,
    /// Mitotic figures: proposals whose probability is above the threshold, less the repeats.
    pub count: usize,
    /// Proposals above the threshold dropped as repeats of a surer detection within 7.5 um
    /// (0 with `--keep-repeats`).
    #[serde(default)]
    pub repeats: usize,
    /// The analysed area in mm^2: the tiles with enough tissue, each pixel counted once.
    pub tissue_area_mm2: f64,
    /// The densities over the analysed area.
    #[serde(flatten)]
    pub densities: Densities,
    /// The circle of the hotspot area with the most figures; `null` without figures.
    pub hotspot: Option<HotspotSummary>,
    /// The files written, in order, `summary.json` aside.
    pub outputs: Vec<OutputFile>,
    /// Seconds the analysis took.
    pub seconds: f64,
}

/// An input, opened.
enum Opened {
    /// Decoded whole.
    Image(LoadedImage),
    /// Read on demand, with its overview.
    Slide(Box<Slide>, Overview),
}

/// Where `path`'s results go and what identifies it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The input as given or found.
    pub path: PathBuf,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Its folder in the output folder.
    pub folder: PathBuf,
    /// The stem of its output files.
    pub stem: String,
}

/// Analyses `job`'s input and writes its results; `on_tile(done, total)` follows the tiles.
///
/// # Errors
///
/// The input cannot be read, has no pixel size (and `--mpp` is not given), a region outside
/// it, a model failure, or the results cannot be written. Nothing is written before the
/// analysis succeeds; the earlier results of the input stay until then.
pub fn analyse(
    models: &Models,
    settings: &RunSettings,
    job: &Job,
    on_tile: impl FnMut(usize, usize),
) -> Result<InputSummary> {
    let started = Instant::now();
    let opened = open(&job.path)?;
    let (format, width, height, file_mpp, file_source) = match &opened {
        Opened::Image(image) => (
            image.format.to_string(),
            image.width,
            image.height,
            image.mpp,
            image.mpp_source,
        ),
        Opened::Slide(slide, _) => (
            slide.vendor().to_owned(),
            slide.width(),
            slide.height(),
            slide.mpp(),
            slide.mpp_source(),
        ),
    };
    let mpp = resolve_mpp(file_mpp, settings.mpp)?;
    let mpp_source = match file_source {
        Some(source) => describe(source).to_owned(),
        None => "--mpp".to_owned(),
    };
    tracing::info!(width, height, mpp, %format, "detecting");
    if let Some(warning) = scale_warning(mpp) {
        tracing::warn!("{}: {warning}", job.path.display());
    }

    let (mut found, picture) = match opened {
        Opened::Image(mut image) => {
            let found = detect_image(
                models,
                &mut image,
                mpp,
                settings.region,
                settings.threshold,
                on_tile,
            )?;
            (found, Picture::Image(image))
        }
        Opened::Slide(slide, view) => {
            let found = detect_slide(
                models,
                &slide,
                &view,
                mpp,
                settings.region,
                settings.threshold,
                on_tile,
            )?;
            (found, Picture::Thumbnail(view))
        }
    };

    if let Some(radius_um) = settings.repeat_radius_um {
        found.drop_repeats(radius_um / mpp);
    }

    // The numbers.
    let centres: Vec<[f64; 2]> = found
        .figures
        .iter()
        .map(|f| box_centre(&f.mask.bbox))
        .collect();
    let tissue_area_mm2 = found.tissue_pixels * mpp * mpp * 1e-6;
    let count = found.figures.len();
    let densities = Densities::new(count, tissue_area_mm2, settings.hpf_area_mm2);
    let on_tissue = |[x, y]: [f64; 2]| match &found.tissue {
        Some((mask, [dx, dy])) => mask.contains(x - f64::from(*dx), y - f64::from(*dy)),
        None => true,
    };
    let hotspot = hotspot(&centres, mpp, settings.hotspot_area_mm2, on_tissue);

    // The files, rendered before anything is replaced.
    let kind = match picture {
        Picture::Image(_) => "image",
        Picture::Thumbnail(_) => "slide",
    };
    let geojson = detections_geojson(&found.figures, mpp, settings.geometry)?;
    let csv = detections_csv(&found.figures, mpp)?;
    let png = picture.render(&found, &centres, hotspot.as_ref(), settings, width, height)?;
    output::prepare(&job.folder)?;
    let outputs = vec![
        output::write_atomic(
            &job.folder,
            &format!("{}.geojson", job.stem),
            geojson.as_bytes(),
        )?,
        output::write_atomic(&job.folder, &format!("{}.csv", job.stem), csv.as_bytes())?,
        output::write_atomic(&job.folder, &format!("{}.overlay.png", job.stem), &png)?,
    ];
    let summary = InputSummary {
        mitoscope: env!("CARGO_PKG_VERSION").to_owned(),
        input: job.fingerprint.clone(),
        settings: settings.fingerprint.clone(),
        kind: kind.to_owned(),
        format,
        width,
        height,
        mpp,
        mpp_source,
        region: settings.region,
        tiles_total: found.tiles_total,
        tiles_analysed: found.tiles_analysed,
        proposals: found.proposals,
        count,
        repeats: found.repeats,
        tissue_area_mm2,
        densities,
        hotspot,
        outputs,
        seconds: started.elapsed().as_secs_f64(),
    };
    // Last: its presence marks the input complete.
    let text = serde_json::to_string_pretty(&summary).context("the summary as JSON")? + "\n";
    output::write_atomic(&job.folder, SUMMARY_JSON, text.as_bytes())?;
    Ok(summary)
}

/// Reads the `summary.json` of a complete input.
///
/// # Errors
///
/// It cannot be read or parsed.
pub fn read_summary(folder: &Path) -> Result<InputSummary> {
    let path = folder.join(SUMMARY_JSON);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a summary", path.display()))
}

/// Opens `path`: a slide when OpenSlide recognises it, otherwise an image.
fn open(path: &Path) -> Result<Opened> {
    if is_slide(path) {
        let slide = Slide::open(path)?;
        let view = overview(&slide)?;
        return Ok(Opened::Slide(Box::new(slide), view));
    }
    Ok(Opened::Image(read_image(path)?))
}

/// Where a pixel size came from, in words.
fn describe(source: MppSource) -> &'static str {
    match source {
        MppSource::AperioDescription => "file: Aperio ImageDescription MPP",
        MppSource::TiffResolution => "file: TIFF resolution tags",
        MppSource::PngPhys => "file: PNG pHYs",
        MppSource::OpenSlideProperties => "slide: openslide.mpp-x/y",
        _ => "file",
    }
}

/// What the overlay is drawn on.
enum Picture {
    /// The image at full resolution: mask outlines.
    Image(LoadedImage),
    /// A slide's overview: a ring at each figure.
    Thumbnail(Overview),
}

impl Picture {
    /// The overlay as PNG bytes: the figures coloured by probability, the hotspot circle, and
    /// the analysed region when it is not the whole input.
    fn render(
        self,
        found: &Found,
        centres: &[[f64; 2]],
        hotspot: Option<&HotspotSummary>,
        settings: &RunSettings,
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>> {
        let colour = |p: f32| overlay::colour(f64::from(p), settings.threshold);
        let (mut canvas, scale) = match self {
            Self::Image(image) => {
                let mut canvas = Canvas {
                    width: image.width,
                    height: image.height,
                    rgb: image.rgb,
                };
                let masks: Vec<_> = found
                    .figures
                    .iter()
                    .map(|f| (&f.mask, colour(f.probability)))
                    .collect();
                canvas.outlines(&masks);
                (canvas, 1.0)
            }
            Self::Thumbnail(view) => {
                let scale = 1.0 / view.downsample;
                let mut canvas = Canvas {
                    width: view.width,
                    height: view.height,
                    rgb: view.rgb,
                };
                for (f, &[x, y]) in found.figures.iter().zip(centres) {
                    canvas.ring([x * scale, y * scale], colour(f.probability));
                }
                (canvas, scale)
            }
        };
        if let Some(h) = hotspot {
            let [x, y] = h.centre_px;
            canvas.circle(
                [x * scale, y * scale],
                h.radius_px * scale,
                3.0,
                overlay::HOTSPOT,
            );
        }
        if let Some([x, y, w, h]) = settings.region
            && (w, h) != (width, height)
        {
            let r = [x, y, w, h].map(|v| f64::from(v) * scale);
            canvas.rectangle(r, 2, overlay::REGION);
        }
        canvas.png()
    }
}
