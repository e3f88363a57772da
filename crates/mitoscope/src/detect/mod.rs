//! `mitoscope detect PATH... --out DIR`: the whole pipeline, from images, folders and whole
//! slides to the mitotic figures and the counts a pathologist reports.
//!
//! Per input ([`analyse`]): the image is decoded whole ([`image`]), or a slide is read tile by
//! tile through OpenSlide ([`slide`]); the proposal stage finds every cell-scale object, each
//! object's 64 x 64 crop and mask go through the classifier (one checkpoint or an ensemble,
//! averaged), and those above the threshold are the mitotic figures. The counts and densities
//! ([`summary`]), the hotspot ([`hotspot`]), the GeoJSON, the CSV and the overlay
//! ([`overlay`]) are written to the input's folder, `summary.json` last ([`output`]).
//!
//! A batch goes on past an input that fails and lists the failures at the end; inputs whose
//! results are complete are skipped unless `--force`; `DIR/summary.csv` has one row per input
//! of the run. See `docs/detect.md`.

pub mod analyse;
pub mod hotspot;
pub mod image;
pub mod output;
pub mod overlay;
pub mod slide;
pub mod summary;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mitoscope_core::density::DEFAULT_THRESHOLD;
use mitoscope_core::export::{Detection, GeometryKind};
use mitoscope_core::{BoxRle, ProposalSettings, TissueMask, crop};
use mitoscope_models::ensemble::{EMBEDDED, Ensemble};
use mitoscope_models::sam::Sam;
use mitoscope_models::sam::embedded::LITE_MEDSAM_SHA256;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::load_sam;
use analyse::{InputSummary, Job};
use output::Fingerprint;
use summary::{CsvRow, DEFAULT_HOTSPOT_AREA_MM2, DEFAULT_HPF_AREA_MM2};

/// File name extensions taken from a folder (a file named on the command line is taken
/// whatever its name): the image formats and those of the slides OpenSlide reads.
pub const EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "tif", "tiff", "svs", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide",
    "bif",
];

/// Crops classified together: bounds the memory of the crops of a large image.
const CLASSIFY_CHUNK: usize = 256;

/// `mitoscope detect` on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// Images (PNG, JPEG, TIFF), whole-slide images (Aperio SVS, tiled TIFF and the other
    /// formats OpenSlide reads) or folders of them (searched recursively).
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// The output folder: one folder per input, and summary.csv (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Pixel size in micrometres per pixel for inputs that do not state it (0.25 for a 40x
    /// scan, 0.5 for 20x).
    #[arg(long)]
    pub mpp: Option<f64>,
    /// A proposal is a mitotic figure when its probability is strictly above this.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Keep every proposal above the threshold, as OMG-Net does. By default a detection within
    /// 7.5 um of a surer one is dropped as a repeat of the same figure (docs/detect.md).
    #[arg(long)]
    pub keep_repeats: bool,
    /// A published Segment Anything checkpoint (sam_vit_b/l/h .pth) instead of the embedded
    /// LiteMedSAM.
    #[arg(long, value_name = "CHECKPOINT")]
    pub sam: Option<PathBuf>,
    /// A classifier checkpoint (OMG-Net's Lightning .ckpt, a torchvision state dict, or a
    /// .safetensors from `mitoscope train`) instead of the embedded one; repeat the option for
    /// an ensemble, whose probabilities are averaged.
    #[arg(long, value_name = "CHECKPOINT")]
    pub classifier: Vec<PathBuf>,
    /// Write each figure as a point (its box centre) in the GeoJSON instead of its outline.
    #[arg(long)]
    pub points: bool,
    /// Area of one high-power field in mm^2, for the count per 10 HPF.
    #[arg(long, value_name = "MM2", default_value_t = DEFAULT_HPF_AREA_MM2)]
    pub hpf_area: f64,
    /// Area of the hotspot circle in mm^2.
    #[arg(long, value_name = "MM2", default_value_t = DEFAULT_HOTSPOT_AREA_MM2)]
    pub hotspot_area: f64,
    /// Analyse only this rectangle of each input, in full-resolution pixels (the outputs keep
    /// the whole input's coordinates).
    #[arg(long, value_name = "X,Y,WIDTH,HEIGHT", value_parser = parse_region)]
    pub region: Option<[u32; 4]>,
    /// Analyse every input again, even those whose results are complete.
    #[arg(long)]
    pub force: bool,
    /// Where the models run (wgpu and cuda need a build with that cargo feature).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
}

/// Parses `X,Y,WIDTH,HEIGHT` (`--region`).
///
/// # Errors
///
/// The text is not four whole numbers separated by commas.
pub fn parse_region(text: &str) -> Result<[u32; 4], String> {
    let values: Vec<u32> = text
        .split(',')
        .map(|v| v.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?} is not X,Y,WIDTH,HEIGHT in whole pixels"))?;
    <[u32; 4]>::try_from(values)
        .map_err(|_| format!("{text:?} is not X,Y,WIDTH,HEIGHT (four numbers)"))
}

/// The loaded models and the proposal settings of the SAM model.
pub struct Models {
    /// The proposal model.
    pub sam: Sam,
    /// Its settings (the model's defaults).
    pub settings: ProposalSettings,
    /// The classifier or ensemble.
    pub classifier: Ensemble,
}

/// What the analysis of one input found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    /// The figures above the threshold, in the order found.
    pub figures: Vec<Detection>,
    /// Detections above the threshold dropped as repeats of a surer one ([`Found::drop_repeats`]).
    pub repeats: usize,
    /// Objects proposed (and classified).
    pub proposals: usize,
    /// Tiles of the analysed rectangle.
    pub tiles_total: usize,
    /// Tiles analysed.
    pub tiles_analysed: usize,
    /// Pixels owned by the analysed tiles.
    pub analysed_pixels: u64,
    /// Tissue (not white glass) in the pixels owned by the analysed tiles.
    pub tissue_pixels: f64,
    /// Which pixels are tissue, and where the mask's image lies in the input's full-resolution
    /// pixels (a region's corner); the hotspot's centre is kept on it.
    pub tissue: Option<(TissueMask, [u32; 2])>,
}

impl Found {
    /// Drops the figures within `radius_px` of a surer one (`mitoscope_core::repeats`), keeping
    /// the others in their order, and counts them in `repeats`.
    pub fn drop_repeats(&mut self, radius_px: f64) {
        let points: Vec<mitoscope_core::Detection> = self
            .figures
            .iter()
            .map(|f| {
                let [x, y] = mitoscope_core::export::box_centre(&f.mask.bbox);
                mitoscope_core::Detection {
                    x,
                    y,
                    score: f64::from(f.probability),
                }
            })
            .collect();
        let mut repeat = mitoscope_core::repeats(&points, radius_px).into_iter();
        let before = self.figures.len();
        self.figures.retain(|_| !repeat.next().unwrap_or(false));
        self.repeats += before - self.figures.len();
    }
}

/// The settings every input of a run shares, and their fingerprint for the skip rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Probability above which a proposal is a figure.
    pub threshold: f64,
    /// Detections within this distance (um) of a surer one are dropped as repeats; `None`
    /// keeps them (`--keep-repeats`).
    pub repeat_radius_um: Option<f64>,
    /// Pixel size for inputs without one.
    pub mpp: Option<f64>,
    /// Area of one HPF, mm^2.
    pub hpf_area_mm2: f64,
    /// Area of the hotspot circle, mm^2.
    pub hotspot_area_mm2: f64,
    /// Outlines or points in the GeoJSON.
    pub geometry: GeometryKind,
    /// The rectangle analysed.
    pub region: Option<[u32; 4]>,
    /// Everything above and the models, as `summary.json` records it.
    pub fingerprint: serde_json::Value,
}

/// How one input of a batch ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Analysed in this run.
    Done(Box<InputSummary>),
    /// Complete from an earlier run.
    Skipped(Box<InputSummary>),
    /// Failed, with the reason.
    Failed(String),
}

/// One input of a batch and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct InputResult {
    /// The input as given or found in a folder.
    pub input: PathBuf,
    /// Its folder in the output folder, when it got one.
    pub folder: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Runs `mitoscope detect` from the command line: results to `args.out`, a line per input on
/// standard error, the table on standard output.
///
/// # Errors
///
/// Settings that cannot be used, an output folder that cannot be written, a model that cannot
/// be loaded, or some inputs failed (each listed; the others' results are written).
pub fn run_cli(args: &DetectArgs, progress: bool) -> Result<()> {
    let device = args.backend.device()?;
    let results = run(args, &device, progress)?;
    print!("{}", table(&results));
    let failed: Vec<_> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(why) => Some(format!("  {}: {why}", r.input.display())),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} inputs failed; the results of the others are in {}:\n{}",
            failed.len(),
            results.len(),
            args.out.display(),
            failed.join("\n")
        );
    }
    Ok(())
}

/// Runs `mitoscope detect` over `args.inputs` on `device`.
///
/// # Errors
///
/// Settings that cannot be used, an output folder that cannot be written, or a model that
/// cannot be loaded. A failing input is not an error here: it is reported in its result and the
/// batch goes on.
pub fn run(args: &DetectArgs, device: &Device, progress: bool) -> Result<Vec<InputResult>> {
    let settings = run_settings(args)?;
    output::check_writable(&args.out)?;
    let inputs = expand(&args.inputs, &args.out);

    // Folder names for the inputs that exist, in order.
    let found: Vec<(usize, Fingerprint)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| {
            let path = input.as_ref().ok()?;
            Fingerprint::of(path).ok().map(|f| (i, f))
        })
        .collect();
    let names = output::folder_names(
        &args.out,
        &found
            .iter()
            .map(|(_, f)| f.path.clone())
            .collect::<Vec<_>>(),
    );
    let mut jobs: Vec<Option<Job>> = vec![None; inputs.len()];
    for ((i, fingerprint), name) in found.into_iter().zip(names) {
        if let Ok(path) = &inputs[i] {
            jobs[i] = Some(Job {
                path: path.clone(),
                stem: output::stem_of(path),
                folder: args.out.join(&name),
                fingerprint,
            });
        }
    }

    let multi = MultiProgress::with_draw_target(if progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let files = multi.add(ProgressBar::new(inputs.len() as u64));
    files.set_style(style(
        "{spinner} file {pos}/{len} {wide_bar} {elapsed} {msg}",
    ));
    let say = |line: String| {
        if progress {
            let _ = multi.println(line);
        } else {
            eprintln!("{line}");
        }
    };

    let mut models: Option<Models> = None;
    let mut results = Vec::with_capacity(inputs.len());
    let total = inputs.len();
    for (k, (input, job)) in inputs.iter().zip(&jobs).enumerate() {
        let shown = match input {
            Ok(path) | Err((path, _)) => path.display().to_string(),
        };
        files.set_message(shown.clone());
        let (input_path, folder, outcome) = match (input, job) {
            (Err((path, why)), _) => (path.clone(), None, Outcome::Failed(why.clone())),
            (Ok(path), None) => (
                path.clone(),
                None,
                Outcome::Failed("cannot read the file's size and date".to_owned()),
            ),
            (Ok(path), Some(job)) => {
                let complete = !args.force
                    && output::is_complete(&job.folder, &job.fingerprint, &settings.fingerprint);
                let outcome = match complete.then(|| analyse::read_summary(&job.folder)) {
                    Some(Ok(summary)) => Outcome::Skipped(Box::new(summary)),
                    _ => {
                        if models.is_none() {
                            files.set_message(format!("{shown} (loading the models)"));
                            models = Some(load_models(args, device)?);
                            files.set_message(shown.clone());
                        }
                        let models = models.as_ref().context("models loaded")?;
                        let tiles = multi.add(ProgressBar::new(0));
                        tiles.set_style(style("  tiles {pos}/{len} {wide_bar} {elapsed}"));
                        let result = analyse::analyse(models, &settings, job, |done, total| {
                            tiles.set_length(total as u64);
                            tiles.set_position(done as u64);
                        });
                        tiles.finish_and_clear();
                        multi.remove(&tiles);
                        match result {
                            Ok(summary) => Outcome::Done(Box::new(summary)),
                            Err(err) => Outcome::Failed(one_line(&format!("{err:#}"))),
                        }
                    }
                };
                let folder = job
                    .folder
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                (path.clone(), folder, outcome)
            }
        };
        say(format!(
            "[{}/{total}] {shown}: {}",
            k + 1,
            describe(&outcome)
        ));
        results.push(InputResult {
            input: input_path,
            folder,
            outcome,
        });
        files.inc(1);
    }
    files.finish_and_clear();

    let rows: Vec<CsvRow> = results.iter().map(csv_row).collect();
    output::write_atomic(&args.out, "summary.csv", summary::to_csv(&rows).as_bytes())?;
    Ok(results)
}

/// The run's settings from the arguments, checked, with their fingerprint.
fn run_settings(args: &DetectArgs) -> Result<RunSettings> {
    if !(0.0..1.0).contains(&args.threshold) {
        bail!("--threshold must be a probability in [0, 1), 0.5 by default");
    }
    for (value, flag) in [
        (args.hpf_area, "--hpf-area"),
        (args.hotspot_area, "--hotspot-area"),
    ] {
        if !(value.is_finite() && value > 0.0 && value <= 1e6) {
            bail!("{flag} must be an area in mm^2 (a positive number), not {value}");
        }
    }
    if let Some(mpp) = args.mpp {
        // The same range check as for each input, before any work.
        crate::resolve_mpp(None, Some(mpp))?;
    }
    let sam = match &args.sam {
        None => json!({"embedded": "LiteMedSAM", "sha256": LITE_MEDSAM_SHA256}),
        Some(path) => json!({"file": Fingerprint::of(path).with_context(|| {
            format!("--sam {}: no such checkpoint file", path.display())
        })?}),
    };
    let classifiers = if args.classifier.is_empty() {
        let mut hash = Sha256::new();
        for (name, bytes) in EMBEDDED {
            hash.update(name.as_bytes());
            hash.update(bytes);
        }
        let names: Vec<&str> = EMBEDDED.iter().map(|(name, _)| *name).collect();
        json!({"embedded": names, "sha256": format!("{:x}", hash.finalize())})
    } else {
        let files = args
            .classifier
            .iter()
            .map(|path| {
                Fingerprint::of(path).with_context(|| {
                    format!("--classifier {}: no such checkpoint file", path.display())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        json!({ "files": files })
    };
    let geometry = if args.points {
        GeometryKind::Point
    } else {
        GeometryKind::Polygon
    };
    let repeat_radius_um = (!args.keep_repeats).then_some(mitoscope_core::REPEAT_RADIUS_UM);
    let fingerprint = json!({
        "mitoscope": env!("CARGO_PKG_VERSION"),
        "threshold": args.threshold,
        "repeat_radius_um": repeat_radius_um,
        "mpp_flag": args.mpp,
        "hpf_area_mm2": args.hpf_area,
        "hotspot_area_mm2": args.hotspot_area,
        "geometry": geometry,
        "region": args.region,
        "sam": sam,
        "classifier": classifiers,
    });
    Ok(RunSettings {
        threshold: args.threshold,
        repeat_radius_um,
        mpp: args.mpp,
        hpf_area_mm2: args.hpf_area,
        hotspot_area_mm2: args.hotspot_area,
        geometry,
        region: args.region,
        fingerprint,
    })
}

/// Loads the proposal model and the classifier, with messages that say which option takes
/// which kind of checkpoint.
fn load_models(args: &DetectArgs, device: &Device) -> Result<Models> {
    let sam = load_sam(args.sam.as_deref(), device)?;
    let settings = sam.config().default_proposal_settings();
    let classifier = crate::load_classifier(&args.classifier, device)?;
    tracing::info!(
        sam = %sam.config().name,
        classifiers = classifier.len(),
        "models loaded"
    );
    Ok(Models {
        sam,
        settings,
        classifier,
    })
}

/// The probability of each mask's crop from `rgb` (`width x height`), in chunks.
///
/// # Errors
///
/// A mask outside the image, a classifier failure.
pub fn classify_masks(
    models: &Models,
    rgb: &[u8],
    width: u32,
    height: u32,
    masks: &[BoxRle],
) -> Result<Vec<f32>> {
    let mut probabilities = Vec::with_capacity(masks.len());
    for chunk in masks.chunks(CLASSIFY_CHUNK) {
        let crops = chunk
            .iter()
            .map(|mask| crop(rgb, width, height, mask))
            .collect::<mitoscope_core::Result<Vec<_>>>()?;
        probabilities.extend(models.classifier.classify(&crops)?);
    }
    Ok(probabilities)
}

/// The files of `inputs`: each file as it is, each folder's images and slides (recursively,
/// sorted, hidden entries and the output folder left out). A path that does not exist or a
/// folder without images is an error for that path, and the batch goes on.
pub fn expand(inputs: &[PathBuf], out: &Path) -> Vec<Result<PathBuf, (PathBuf, String)>> {
    let out = std::fs::canonicalize(out).ok();
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk(input, out.as_deref(), &mut found);
            found.sort();
            if found.is_empty() {
                files.push(Err((
                    input.clone(),
                    format!(
                        "no images or slides in this folder (looked for .{})",
                        EXTENSIONS.join(", .")
                    ),
                )));
            }
            for path in found {
                if seen.insert(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())) {
                    files.push(Ok(path));
                }
            }
        } else if input.is_file() {
            if seen.insert(std::fs::canonicalize(input).unwrap_or_else(|_| input.clone())) {
                files.push(Ok(input.clone()));
            }
        } else {
            files.push(Err((
                input.clone(),
                "no such file or folder: check the path".to_owned(),
            )));
        }
    }
    files
}

/// The image files under `folder`.
fn walk(folder: &Path, out: Option<&Path>, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if out.is_some_and(|o| std::fs::canonicalize(&path).is_ok_and(|p| p == o)) {
                continue;
            }
            walk(&path, out, found);
        } else if path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
        {
            found.push(path);
        }
    }
}

/// `text` on one line: decoders' messages may hold line breaks, which a terminal line and a CSV
/// cell are better without.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// One line about how an input ended.
fn describe(outcome: &Outcome) -> String {
    let numbers = |s: &InputSummary| {
        let density = s
            .densities
            .per_mm2
            .map_or_else(|| "no tissue".to_owned(), |d| format!("{d:.1} per mm^2"));
        format!(
            "{} mitotic figures in {:.4} mm^2 ({density}), hotspot {}",
            s.count,
            s.tissue_area_mm2,
            s.hotspot.map_or(0, |h| h.count)
        )
    };
    match outcome {
        Outcome::Done(s) => format!("{} in {:.1} s", numbers(s), s.seconds),
        Outcome::Skipped(s) => format!("{} (complete from an earlier run, skipped)", numbers(s)),
        Outcome::Failed(why) => format!("FAILED: {why}"),
    }
}

/// The row of `summary.csv` for one input.
fn csv_row(result: &InputResult) -> CsvRow {
    let mut row = CsvRow {
        input: result.input.display().to_string(),
        output: result.folder.clone().unwrap_or_default(),
        ..CsvRow::default()
    };
    let summary = match &result.outcome {
        Outcome::Done(s) => {
            row.status = "done";
            s
        }
        Outcome::Skipped(s) => {
            row.status = "skipped";
            s
        }
        Outcome::Failed(why) => {
            row.status = "failed";
            row.error = why.clone();
            return row;
        }
    };
    row.size = Some([summary.width, summary.height]);
    row.mpp = Some(summary.mpp);
    row.count = Some(summary.count);
    row.tissue_area_mm2 = Some(summary.tissue_area_mm2);
    row.densities = Some(summary.densities);
    row.hotspot = summary.hotspot;
    row.seconds = Some(summary.seconds);
    row
}

/// The results as a table for the terminal.
pub fn table(results: &[InputResult]) -> String {
    let mut text = format!(
        "{:<40} {:>8} {:>6} {:>10} {:>9} {:>10} {:>7}\n",
        "input", "status", "count", "area mm^2", "per mm^2", "per 10 HPF", "hotspot"
    );
    for r in results {
        let name = r.input.file_name().map_or_else(
            || r.input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let (status, summary) = match &r.outcome {
            Outcome::Done(s) => ("done", Some(s)),
            Outcome::Skipped(s) => ("skipped", Some(s)),
            Outcome::Failed(_) => ("FAILED", None),
        };
        let cell = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        text += &format!(
            "{:<40} {:>8} {:>6} {:>10} {:>9} {:>10} {:>7}\n",
            name,
            status,
            summary.map_or_else(|| "-".to_owned(), |s| s.count.to_string()),
            cell(summary.map(|s| s.tissue_area_mm2), 4),
            cell(summary.and_then(|s| s.densities.per_mm2), 1),
            cell(summary.and_then(|s| s.densities.per_10_hpf), 2),
            summary
                .and_then(|s| s.hotspot)
                .map_or_else(|| "-".to_owned(), |h| h.count.to_string()),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_to_their_images_and_bad_paths_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "a/x.png",
            "a/sub/y.SVS",
            "a/notes.txt",
            "a/.hidden.png",
            "a/out/z.png",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let inputs = [
            root.join("a"),
            root.join("a/x.png"),
            root.join("missing.png"),
            root.join("empty"),
            root.join("a/notes.txt"),
        ];
        let files = expand(&inputs, &root.join("a/out"));
        let ok: Vec<_> = files.iter().filter_map(|f| f.as_ref().ok()).collect();
        // x.png once (named twice), y.SVS from the subfolder, notes.txt because it was named;
        // nothing from the output folder or hidden files.
        assert_eq!(
            ok,
            [
                &root.join("a/sub/y.SVS"),
                &root.join("a/x.png"),
                &root.join("a/notes.txt")
            ]
        );
        let errors: Vec<_> = files.iter().filter_map(|f| f.as_ref().err()).collect();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].1.contains("no such file"), "{errors:?}");
        assert!(errors[1].1.contains("no images"), "{errors:?}");
    }

    #[test]
    fn settings_are_checked_before_any_work() {
        let args = |extra: &[&str]| {
            use clap::Parser;
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                detect: DetectArgs,
            }
            let mut all = vec!["detect", "x.png", "--out", "o"];
            all.extend_from_slice(extra);
            Cli::try_parse_from(all).map(|c| c.detect)
        };
        let err =
            |extra: &[&str]| format!("{:#}", run_settings(&args(extra).unwrap()).unwrap_err());
        assert!(err(&["--threshold", "1"]).contains("--threshold"));
        assert!(err(&["--hpf-area", "0"]).contains("--hpf-area"));
        assert!(err(&["--hotspot-area=-2"]).contains("--hotspot-area"));
        assert!(err(&["--mpp", "7"]).contains("outside"));
        assert!(err(&["--sam", "/no/such.pth"]).contains("--sam"));
        assert!(err(&["--classifier", "/no/such.ckpt"]).contains("--classifier"));
        assert!(args(&["--region", "1,2,3"]).is_err());

        let ok = run_settings(&args(&["--points", "--hpf-area", "0.196"]).unwrap()).unwrap();
        assert_eq!(ok.geometry, GeometryKind::Point);
        assert_eq!(ok.fingerprint["hpf_area_mm2"], 0.196);
        assert_eq!(ok.fingerprint["sam"]["embedded"], "LiteMedSAM");
        // A changed setting changes the fingerprint, so a rerun redoes the inputs.
        let other = run_settings(&args(&["--threshold", "0.6"]).unwrap()).unwrap();
        assert_ne!(ok.fingerprint, other.fingerprint);
        assert_eq!(ok.repeat_radius_um, Some(7.5));
        let keep = run_settings(&args(&["--keep-repeats"]).unwrap()).unwrap();
        assert_eq!(keep.repeat_radius_um, None);
        assert_ne!(
            keep.fingerprint["repeat_radius_um"],
            ok.fingerprint["repeat_radius_um"]
        );
    }

    #[test]
    fn repeats_of_a_surer_figure_are_dropped_in_order() {
        // 3 x 3 boxes whose centres are at x + 1.5: ids by x 0, 20, 200, 25.
        let figure = |x: u32, probability: f32| Detection {
            mask: BoxRle {
                bbox: mitoscope_core::BBox::new(x, 10, x + 2, 12).unwrap(),
                counts: vec![0, 9],
            },
            probability,
        };
        let mut found = Found {
            figures: vec![
                figure(0, 0.6),
                figure(20, 0.9),
                figure(200, 0.55),
                figure(25, 0.7),
            ],
            ..Found::default()
        };
        found.drop_repeats(30.0);
        let kept: Vec<(u32, f32)> = found
            .figures
            .iter()
            .map(|f| (f.mask.bbox.x0(), f.probability))
            .collect();
        assert_eq!(kept, [(20, 0.9), (200, 0.55)]);
        assert_eq!(found.repeats, 2);
    }
}
