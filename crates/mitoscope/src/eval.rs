//! `mitoscope eval`: detections scored against annotated mitotic figures, as the MIDOG challenges
//! score them.
//!
//! The matching and the sums are [`mitoscope_core::matching`]: per image, each figure (in the
//! file's order) takes the nearest detection within 7.5 um that no earlier figure took; taken
//! detections are true positives, the others false positives, figures left without one false
//! negatives; TP, FP and FN are summed over the images, then precision, recall and
//! F1 = 2 TP / (2 TP + FP + FN) come from the sums. This module reads the files, brings figures
//! and detections into the same units, and sums the per-image counts per group.
//!
//! # Ground truth (`--truth`), told apart by its content
//!
//! | format | coordinates | groups | pixel size |
//! |---|---|---|---|
//! | MIDOG++ or MIDOG 2021 database (COCO-like JSON: `images`, `categories`, `annotations`; `bbox` is `[x0, y0, x1, y1]`) | pixels (box centres) | `tumor` (MIDOG++) | `--split` (by scanner), else `--mpp` |
//! | MIDOG evaluation ground truth (`{"007.tiff": [[x_mm, y_mm, 0], ...]}`) | mm | none | only needed for pixel detections |
//! | CSV with the columns `image,x,y`, optional `mpp`, any other column a group | pixels | one per extra column | the `mpp` column, else `--mpp` |
//!
//! In the CSV, a row with empty `x` and `y` lists an image without figures (its detections then
//! count as false positives); an image's `mpp` and group cells must agree on all its rows.
//!
//! # Detections (`--pred`)
//!
//! - a CSV with the columns `x,y` and optionally `image` and `probability` (or `score`); other
//!   columns (`area_um2`...) are ignored. Without `image` the file holds one image's detections,
//!   as `mitoscope detect` writes them (`x,y,probability,area_um2`);
//! - MIDOG challenge output (JSON, mm): one image's `{"type": "Multiple points", "points":
//!   [{"point": [x_mm, y_mm, 0], "probability": p, "name": "mitotic figure"}, ...]}`, or the
//!   MIDOG++ evaluation's `{"007.tiff": {"points": [...]}, ...}` for several. As the reference
//!   evaluations do, points named other than "mitotic figure" are left out;
//! - a folder: every `.csv` and `.json` file in it, as above.
//!
//! A file of one image names it with `--image`, else with its file name without the extension.
//! A predicted name matches the truth's image of that name, or the one whose name is the same
//! once either drops its extension (`007` and `007.csv` name `007.tiff`).
//!
//! # Rules
//!
//! - Detections with a probability take part only if it is strictly above `--threshold` (0.5),
//!   as the MIDOG++ evaluation (`sc > det`) and OMG-Net (`> 0.5`); detections without one
//!   always take part.
//! - An image of the truth without predictions has no detections: its figures are false
//!   negatives (the reference evaluations skip such an image instead; see [`evaluate`]).
//! - Predictions for an image the truth does not have are an error that lists them: a wrong
//!   name would otherwise drop detections silently and raise precision. Images the truth has
//!   but `--split`/`--dataset` leave out are ignored.
//! - Radius in pixels: 7.5 um divided by the image's pixel size, taken from the truth where it
//!   gives one (CSV `mpp` column; the scanner of `--split`), otherwise from `--mpp`; when
//!   neither gives it, an error says so. Figures and detections both in mm need none.
//!
//! [`evaluate`]: mitoscope_core::matching::evaluate

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use mitoscope_core::matching::{
    self, Counts, DETECTION_THRESHOLD, Detection, EvaluationSettings, ImageTruth, MATCH_RADIUS_UM,
    Point,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Micrometres per millimetre: the MIDOG JSON files give points in mm.
const UM_PER_MM: f64 = 1000.0;

/// How many names an error or a warning lists.
const LISTED: usize = 5;

/// The truth formats, for the message when a file is none of them.
const TRUTH_FORMATS: &str = "expected a MIDOG++ or MIDOG 2021 annotation database (COCO-like \
    JSON with images, categories and annotations), a MIDOG ground-truth JSON \
    ({\"007.tiff\": [[x_mm, y_mm, 0], ...]}) or a CSV with the columns image,x,y";

/// The prediction formats, for the message when a file is none of them.
const PRED_FORMATS: &str = "expected a CSV with the columns x,y (and image, probability), MIDOG \
    output JSON ({\"type\": \"Multiple points\", \"points\": [...]} for one image, or \
    {\"007.tiff\": {\"points\": [...]}, ...}), or a folder of such files";

/// What `mitoscope eval` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// The detections: a file, or a folder of files (see the module documentation).
    pub pred: PathBuf,
    /// The annotated figures.
    pub truth: PathBuf,
    /// The image a file of one image's detections belongs to (default: its file name).
    pub image: Option<String>,
    /// Pixel size in um/px for the images whose truth does not give one.
    pub mpp: Option<f64>,
    /// Detections with a probability take part only if it is strictly above this.
    pub threshold: f64,
    /// A MIDOG++ split table (`datasets_xvalidation.csv`): evaluate only its slides, grouped by
    /// scanner too, with each scanner's pixel size.
    pub split: Option<PathBuf>,
    /// With `split`: only the slides of this `Dataset` (`train` or `test`).
    pub dataset: Option<String>,
    /// Where [`run`] writes the report as JSON.
    pub out: Option<PathBuf>,
}

impl EvalOptions {
    /// `pred` against `truth` with the defaults: threshold 0.5, every image, no pixel size.
    pub fn new(pred: impl Into<PathBuf>, truth: impl Into<PathBuf>) -> Self {
        Self {
            pred: pred.into(),
            truth: truth.into(),
            image: None,
            mpp: None,
            threshold: DETECTION_THRESHOLD,
            split: None,
            dataset: None,
            out: None,
        }
    }
}

/// The units of a file's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    /// Image pixels, corner origin (the CSV files and the MIDOG annotation databases).
    Pixels,
    /// Millimetres from the image corner (the MIDOG challenges' JSON files).
    Millimetres,
}

/// TP, FP and FN of some images and the scores they give (`null` where undefined).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// How many images of the truth are summed.
    pub images: usize,
    /// The summed counts (`tp`, `fp`, `fn`).
    #[serde(flatten)]
    pub counts: Counts,
    /// TP / (TP + FP); `None` without detections.
    pub precision: Option<f64>,
    /// TP / (TP + FN); `None` without figures.
    pub recall: Option<f64>,
    /// 2 TP / (2 TP + FP + FN); `None` without detections and figures.
    pub f1: Option<f64>,
}

impl Score {
    /// The scores of `counts` summed over `images` images.
    pub fn new(images: usize, counts: Counts) -> Self {
        Self {
            images,
            counts,
            precision: counts.precision(),
            recall: counts.recall(),
            f1: counts.f1(),
        }
    }
}

/// The score of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    /// What the images are grouped by (`tumor`, `scanner`, a CSV column's name).
    pub by: String,
    /// The group's name (`human melanoma`).
    pub group: String,
    /// The sums over the group's images.
    #[serde(flatten)]
    pub score: Score,
}

/// The result of one image of the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageScore {
    /// The image's name in the truth.
    pub image: String,
    /// Its groups: `by` -> group.
    pub groups: BTreeMap<String, String>,
    /// The pixel size used, where one was needed.
    pub mpp: Option<f64>,
    /// Whether the predictions have an entry for the image.
    pub predicted: bool,
    /// Annotated figures.
    pub figures: usize,
    /// Detections that took part (above the threshold).
    pub detections: usize,
    /// The image's counts (`tp`, `fp`, `fn`).
    #[serde(flatten)]
    pub counts: Counts,
}

/// Everything `mitoscope eval` found; `--out` writes it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The truth file's format.
    pub truth_format: String,
    /// The formats of the prediction files read.
    pub pred_formats: Vec<String>,
    /// Detections with a probability took part only if it was strictly above this.
    pub threshold: f64,
    /// The matching radius in um.
    pub radius_um: f64,
    /// The sums over every image evaluated.
    pub overall: Score,
    /// The sums per group, grouping by grouping in the truth's order, groups sorted by name.
    pub groups: Vec<GroupScore>,
    /// Every image evaluated, in the truth's order.
    pub images: Vec<ImageScore>,
    /// Images of the truth that `--split`/`--dataset` left out.
    pub excluded_images: usize,
    /// What the user should know (images without predictions, points left out...).
    pub warnings: Vec<String>,
}

/// Runs `mitoscope eval`: warnings on standard error, the table on standard output, the report
/// as JSON into `options.out`.
///
/// # Errors
///
/// As [`evaluate_files`]; the report cannot be written.
pub fn run(options: &EvalOptions) -> Result<()> {
    let report = evaluate_files(options)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &options.out {
        let json = serde_json::to_string_pretty(&report).context("the report as JSON")?;
        crate::output::write_atomic(path, json.as_bytes())?;
    }
    print!("{}", table(&report));
    Ok(())
}

/// Reads the files of `options`, matches every image and sums the counts.
///
/// # Errors
///
/// A file that cannot be read or is in none of the formats (the message names the file, the
/// line or field, and the formats expected); a threshold or pixel size that is not a usable
/// number; predictions for images the truth does not have; images whose pixel size is needed
/// but known neither from the truth nor from `--mpp`.
pub fn evaluate_files(options: &EvalOptions) -> Result<EvalReport> {
    ensure!(
        options.threshold.is_finite(),
        "--threshold must be a finite number (a probability, 0.5 by default)"
    );
    if let Some(mpp) = options.mpp {
        ensure!(
            mpp.is_finite() && mpp > 0.0,
            "--mpp must be a positive number of micrometres per pixel (0.25 for a 40x scan), \
             not {mpp}"
        );
    }
    let mut warnings = Vec::new();

    let mut truth = read_truth(&options.truth)?;
    let all_names: Vec<String> = truth.images.iter().map(|i| i.name.clone()).collect();
    let excluded = match &options.split {
        Some(split) => apply_split(&mut truth, split, options.dataset.as_deref(), &mut warnings)?,
        None => {
            ensure!(
                options.dataset.is_none(),
                "--dataset selects the slides of a split table: give the table with --split"
            );
            BTreeSet::new()
        }
    };

    let predictions = read_predictions(&options.pred, options.image.as_deref())?;
    let predicted_names = predictions.images.len();
    let mut by_image = match_names(predictions.images, &all_names, &options.truth)?;
    by_image.retain(|name, _| !excluded.contains(name));
    if predicted_names == 0 {
        warnings.push(format!(
            "{} has no detections for any image: every figure counts as a false negative",
            options.pred.display()
        ));
    } else if by_image.is_empty() {
        bail!(
            "none of the {predicted_names} images of --pred {} is among the {} images evaluated \
             (the others are left out by --split/--dataset)",
            options.pred.display(),
            truth.images.len()
        );
    }
    if predictions.not_mitotic > 0 {
        warnings.push(format!(
            "{} points named other than \"mitotic figure\" were left out, as the MIDOG \
             evaluations do",
            predictions.not_mitotic
        ));
    }

    // The pixel size of each image, where it is needed: to turn the radius into pixels, or to
    // bring pixel detections and mm figures (or the reverse) together.
    let mut missing = Vec::new();
    let mut flag_used = false;
    let mut mpps = Vec::with_capacity(truth.images.len());
    for image in &truth.images {
        let mixed = by_image
            .get(&image.name)
            .is_some_and(|p| p.units != truth.units);
        let needed = truth.units == Units::Pixels || mixed;
        let mpp = image.mpp.or(options.mpp).filter(|_| needed);
        flag_used |= needed && image.mpp.is_none() && options.mpp.is_some();
        if needed && mpp.is_none() {
            missing.push(image.name.as_str());
        }
        mpps.push(mpp);
    }
    if !missing.is_empty() {
        bail!(
            "--truth {} does not give the pixel size of {} images ({}): give it with --mpp \
             (micrometres per pixel: 0.25 for Aperio CS2 and 3D Histech scans, 0.23 for \
             Hamamatsu){}",
            options.truth.display(),
            missing.len(),
            listed(&missing),
            if truth.format == MIDOG_DATABASE {
                ", or give the MIDOG++ split table with --split, which names each slide's scanner"
            } else {
                ""
            }
        );
    }
    if let (Some(mpp), false) = (options.mpp, flag_used) {
        warnings.push(format!(
            "--mpp {mpp} was not used: the truth (or --split) gives every pixel size needed, \
             and figures and detections both in mm need none"
        ));
    }

    // Everything in the truth's units; the core matches within radius_um / mpp of those.
    let mut truths = Vec::with_capacity(truth.images.len());
    let mut detections = BTreeMap::new();
    for (image, &mpp) in truth.images.iter().zip(&mpps) {
        truths.push(ImageTruth {
            image: image.name.clone(),
            group: None,
            mpp: match truth.units {
                Units::Pixels => mpp.context("a pixel size checked above")?,
                Units::Millimetres => UM_PER_MM,
            },
            figures: image.figures.clone(),
        });
        if let Some(pred) = by_image.get(&image.name) {
            let scale = match (pred.units, truth.units) {
                (Units::Pixels, Units::Pixels) | (Units::Millimetres, Units::Millimetres) => 1.0,
                (Units::Millimetres, Units::Pixels) => {
                    UM_PER_MM / mpp.context("a pixel size checked above")?
                }
                (Units::Pixels, Units::Millimetres) => {
                    mpp.context("a pixel size checked above")? / UM_PER_MM
                }
            };
            let kept: Vec<Detection> = pred
                .detections
                .iter()
                .filter(|d| d.probability.is_none_or(|p| p > options.threshold))
                .map(|d| Detection {
                    x: d.x * scale,
                    y: d.y * scale,
                    score: d.probability.unwrap_or(1.0),
                })
                .collect();
            detections.insert(image.name.clone(), kept);
        }
    }
    // The threshold is applied above, so that detections without a probability always count.
    let settings = EvaluationSettings {
        threshold: f64::NEG_INFINITY,
        radius_um: MATCH_RADIUS_UM,
    };
    let core = matching::evaluate(&detections, &truths, &settings).with_context(|| {
        format!(
            "cannot evaluate --pred {} against --truth {}",
            options.pred.display(),
            options.truth.display()
        )
    })?;

    let mut images = Vec::with_capacity(truth.images.len());
    let mut sums: BTreeMap<(usize, String), (usize, Counts)> = BTreeMap::new();
    for ((image, result), mpp) in truth.images.iter().zip(&core.per_image).zip(mpps) {
        for (k, by) in truth.grouped_by.iter().enumerate() {
            if let Some(group) = image.groups.get(by) {
                let sum = sums.entry((k, group.clone())).or_default();
                sum.0 += 1;
                sum.1 += result.counts;
            }
        }
        images.push(ImageScore {
            image: image.name.clone(),
            groups: image.groups.clone(),
            mpp,
            predicted: result.predicted,
            figures: image.figures.len(),
            detections: detections.get(&image.name).map_or(0, Vec::len),
            counts: result.counts,
        });
    }
    let groups = sums
        .into_iter()
        .map(|((k, group), (n, counts))| GroupScore {
            by: truth.grouped_by[k].clone(),
            group,
            score: Score::new(n, counts),
        })
        .collect();

    let unpredicted: Vec<&ImageScore> = images.iter().filter(|i| !i.predicted).collect();
    if predicted_names > 0 && !unpredicted.is_empty() {
        let names: Vec<&str> = unpredicted.iter().map(|i| i.image.as_str()).collect();
        warnings.push(format!(
            "{} of the {} images have no predictions ({}): their {} figures count as false \
             negatives",
            unpredicted.len(),
            images.len(),
            listed(&names),
            unpredicted.iter().map(|i| i.figures).sum::<usize>()
        ));
    }
    tracing::info!(
        images = images.len(),
        tp = core.overall.tp,
        fp = core.overall.fp,
        fn_ = core.overall.fn_,
        "evaluated"
    );
    Ok(EvalReport {
        truth_format: truth.format.to_string(),
        pred_formats: predictions.formats.iter().map(|f| f.to_string()).collect(),
        threshold: options.threshold,
        radius_um: MATCH_RADIUS_UM,
        overall: Score::new(images.len(), core.overall),
        groups,
        images,
        excluded_images: excluded.len(),
        warnings,
    })
}

/// The report as a plain table: one row per group, then all images; `-` where a score is
/// undefined.
pub fn table(report: &EvalReport) -> String {
    let mut rows: Vec<(String, &Score)> = report
        .groups
        .iter()
        .map(|g| (format!("{}: {}", g.by, g.group), &g.score))
        .collect();
    rows.push(("all".to_string(), &report.overall));
    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));

    let mut text = format!(
        "{:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>9}  {:>6}  {:>6}\n",
        "group", "images", "TP", "FP", "FN", "precision", "recall", "F1"
    );
    for (label, score) in rows {
        let c = score.counts;
        // Writing into a String cannot fail.
        let _ = writeln!(
            text,
            "{label:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>9}  {:>6}  {:>6}",
            score.images,
            c.tp,
            c.fp,
            c.fn_,
            ratio(score.precision),
            ratio(score.recall),
            ratio(score.f1)
        );
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------------------------

const MIDOG_DATABASE: &str = "MIDOG annotation database (JSON, pixels)";

/// The figures of every image, as read from `--truth`.
struct Truth {
    format: &'static str,
    units: Units,
    /// The groupings, in the order they are reported.
    grouped_by: Vec<String>,
    images: Vec<TruthImage>,
}

struct TruthImage {
    name: String,
    /// Grouping -> group.
    groups: BTreeMap<String, String>,
    mpp: Option<f64>,
    figures: Vec<Point>,
}

fn read_truth(path: &Path) -> Result<Truth> {
    let text = read_text(path, "--truth", TRUTH_FORMATS)?;
    let file = || format!("--truth {}", path.display());
    let truth = if looks_like_json(&text) {
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON ({TRUTH_FORMATS})", file()))?;
        if value.get("images").is_some() && value.get("annotations").is_some() {
            let images = matching::read_midog_json(&text)
                .with_context(|| format!("{} is not a usable MIDOG annotation database", file()))?;
            let grouped = images.iter().any(|i| i.tumor_type.is_some());
            Truth {
                format: MIDOG_DATABASE,
                units: Units::Pixels,
                grouped_by: if grouped {
                    vec!["tumor".into()]
                } else {
                    vec![]
                },
                images: images
                    .into_iter()
                    .map(|i| TruthImage {
                        name: i.file_name,
                        groups: i
                            .tumor_type
                            .map(|t| BTreeMap::from([("tumor".to_string(), t)]))
                            .unwrap_or_default(),
                        mpp: None,
                        figures: i.figures,
                    })
                    .collect(),
            }
        } else if let Some(map) = value
            .as_object()
            .filter(|m| m.values().all(Value::is_array))
        {
            Truth {
                format: "MIDOG ground truth (JSON, mm)",
                units: Units::Millimetres,
                grouped_by: Vec::new(),
                images: ground_truth_json(map).with_context(file)?,
            }
        } else {
            bail!("{} is not a ground-truth file: {TRUTH_FORMATS}", file());
        }
    } else {
        read_truth_csv(&text).with_context(file)?
    };
    ensure!(
        !truth.images.is_empty(),
        "{} has no images: nothing to evaluate",
        file()
    );
    Ok(truth)
}

/// `{"007.tiff": [[x_mm, y_mm, 0], ...], ...}` (the MIDOG evaluation containers' ground truth).
fn ground_truth_json(map: &serde_json::Map<String, Value>) -> Result<Vec<TruthImage>> {
    let mut images = Vec::with_capacity(map.len());
    for (name, points) in map {
        ensure!(!name.trim().is_empty(), "an image has an empty name");
        let points = points.as_array().map_or(&[][..], Vec::as_slice);
        let figures = points
            .iter()
            .enumerate()
            .map(|(i, point)| {
                let xy = point.as_array().and_then(|p| match p.as_slice() {
                    [x, y, ..] => Some(Point {
                        x: x.as_f64()?,
                        y: y.as_f64()?,
                    }),
                    _ => None,
                });
                xy.ok_or_else(|| anyhow!("$[{name:?}][{i}]: expected a point [x_mm, y_mm, 0]"))
            })
            .collect::<Result<Vec<Point>>>()?;
        images.push(TruthImage {
            name: name.clone(),
            groups: BTreeMap::new(),
            mpp: None,
            figures,
        });
    }
    Ok(images)
}

/// A CSV point list: `image,x,y`, an optional `mpp`, every other column a grouping.
fn read_truth_csv(text: &str) -> Result<Truth> {
    let table = Table::parse(text)?;
    let (Some(image), Some(x), Some(y)) =
        (table.index("image"), table.index("x"), table.index("y"))
    else {
        bail!(
            "line {}: expected the columns image,x,y (and optionally mpp and group columns), \
             found {}; {TRUTH_FORMATS}",
            table.header_line,
            table.columns.join(",")
        );
    };
    let mpp_column = table.index("mpp");
    let grouped: Vec<(usize, &str)> = table
        .columns
        .iter()
        .enumerate()
        .filter(|&(k, _)| ![image, x, y].contains(&k) && Some(k) != mpp_column)
        .map(|(k, &c)| (k, c))
        .collect();

    let mut images: Vec<TruthImage> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (line, cells) in &table.rows {
        let line = *line;
        let name = name_cell(cells[image], line, "image")?;
        let k = *index.entry(name.clone()).or_insert_with(|| {
            images.push(TruthImage {
                name,
                groups: BTreeMap::new(),
                mpp: None,
                figures: Vec::new(),
            });
            images.len() - 1
        });
        let entry = &mut images[k];
        match (cells[x], cells[y]) {
            ("", "") => {}
            (cx, cy) => entry.figures.push(Point {
                x: number(cx, line, "x")?,
                y: number(cy, line, "y")?,
            }),
        }
        if let Some(m) = mpp_column.filter(|&m| !cells[m].is_empty()) {
            let mpp = number(cells[m], line, "mpp")?;
            ensure!(
                mpp > 0.0,
                "line {line}, column mpp: the pixel size must be positive (micrometres per pixel)"
            );
            ensure!(
                entry.mpp.is_none_or(|old| old == mpp),
                "line {line}, column mpp: image {} has another pixel size on an earlier line",
                entry.name
            );
            entry.mpp = Some(mpp);
        }
        for &(g, by) in &grouped {
            if cells[g].is_empty() {
                continue;
            }
            let old = entry.groups.insert(by.to_string(), cells[g].to_string());
            ensure!(
                old.is_none_or(|old| old == cells[g]),
                "line {line}, column {by}: image {} is in another group on an earlier line",
                entry.name
            );
        }
    }
    Ok(Truth {
        format: "CSV point list (pixels)",
        units: Units::Pixels,
        grouped_by: grouped.iter().map(|(_, by)| by.to_string()).collect(),
        images,
    })
}

/// Keeps the slides of the split table (of `dataset`, if given): groups them by scanner, and
/// gives them the scanner's pixel size. Returns the names of the images left out.
fn apply_split(
    truth: &mut Truth,
    path: &Path,
    dataset: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<BTreeSet<String>> {
    let file = || format!("--split {}", path.display());
    let text = read_text(path, "--split", "expected the MIDOG++ split table")?;
    let entries = matching::read_midogpp_split(&text).with_context(|| {
        format!(
            "{} is not a MIDOG++ split table (datasets_xvalidation.csv: \
             Slide;Dataset;Tumor;Scanner;Origin;Species)",
            file()
        )
    })?;
    if let Some(dataset) = dataset {
        let names: BTreeSet<&str> = entries.iter().map(|e| e.dataset.as_str()).collect();
        ensure!(
            names.contains(dataset),
            "--dataset {dataset}: {} has the datasets {}",
            file(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let mut selected: BTreeMap<String, &matching::SplitEntry> = entries
        .iter()
        .filter(|e| dataset.is_none_or(|d| e.dataset == d))
        .map(|e| (e.file_name(), e))
        .collect();
    let slides = selected.len();

    let mut excluded = BTreeSet::new();
    let mut kept = Vec::new();
    for mut image in std::mem::take(&mut truth.images) {
        let Some(entry) = selected.remove(&image.name) else {
            excluded.insert(image.name);
            continue;
        };
        // NOTE: the table spells one scanner "Hamammatsu XR" for 50 of its slides.
        let scanner = entry.scanner.replace("Hamammatsu", "Hamamatsu");
        image.mpp = image.mpp.or_else(|| scanner_mpp(&scanner));
        image
            .groups
            .entry("tumor".into())
            .or_insert_with(|| entry.tumor.clone());
        image.groups.insert("scanner".into(), scanner);
        kept.push(image);
    }
    ensure!(
        !kept.is_empty(),
        "none of the {slides} slides of {} ({}) is in --truth: is it the MIDOG++ database?",
        file(),
        dataset.map_or_else(|| "all datasets".into(), |d| format!("dataset {d}"))
    );
    if !selected.is_empty() {
        warnings.push(format!(
            "{} of the {slides} slides of the split table are not in the truth: left out",
            selected.len()
        ));
    }
    truth.images = kept;
    for by in ["tumor", "scanner"] {
        if !truth.grouped_by.iter().any(|g| g == by) {
            truth.grouped_by.push(by.into());
        }
    }
    Ok(excluded)
}

/// The pixel size of a MIDOG scanner in um/px.
///
/// NOTE: the values of the MIDOG 2025 guide's data exploration (recorded in
/// `../shared/data/midog_annotations/SOURCE.md`). The reference evaluations convert with each
/// TIFF's own spacing, which the annotation files do not carry.
fn scanner_mpp(scanner: &str) -> Option<f64> {
    let scanner = scanner.to_ascii_lowercase();
    if scanner.starts_with("hamamatsu") {
        Some(0.23)
    } else if scanner.starts_with("aperio") || scanner.starts_with("3d histech") {
        Some(0.25)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Predictions
// ---------------------------------------------------------------------------------------------

/// One detection as read, in its file's units.
#[derive(Debug)]
struct PredDetection {
    x: f64,
    y: f64,
    probability: Option<f64>,
}

/// The detections of one image.
#[derive(Debug)]
struct PredImage {
    units: Units,
    detections: Vec<PredDetection>,
}

#[derive(Default)]
struct Predictions {
    images: BTreeMap<String, PredImage>,
    formats: BTreeSet<&'static str>,
    /// Points of MIDOG output named other than "mitotic figure", left out.
    not_mitotic: usize,
}

impl Predictions {
    fn insert(&mut self, name: String, image: PredImage, path: &Path) -> Result<()> {
        ensure!(
            !self.images.contains_key(&name),
            "--pred {}: the detections of image {name} are given twice",
            path.display()
        );
        self.images.insert(name, image);
        Ok(())
    }
}

fn read_predictions(path: &Path, image: Option<&str>) -> Result<Predictions> {
    let mut predictions = Predictions::default();
    if path.is_dir() {
        ensure!(
            image.is_none(),
            "--image names the image of one file; in the folder --pred {} each file is named \
             by its file name",
            path.display()
        );
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path)
            .with_context(|| format!("cannot read the folder --pred {}", path.display()))?;
        for entry in entries {
            let file = entry
                .with_context(|| format!("cannot read the folder --pred {}", path.display()))?
                .path();
            let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("");
            if file.is_file() && ["csv", "json"].contains(&extension.to_ascii_lowercase().as_str())
            {
                files.push(file);
            }
        }
        files.sort();
        ensure!(
            !files.is_empty(),
            "the folder --pred {} has no .csv or .json files",
            path.display()
        );
        for file in files {
            read_prediction_file(&file, None, &mut predictions)?;
        }
    } else {
        read_prediction_file(path, image, &mut predictions)?;
    }
    Ok(predictions)
}

/// The name of the image a file of one image's detections belongs to.
fn single_image_name(path: &Path, image: Option<&str>) -> Result<String> {
    if let Some(image) = image {
        return Ok(image.to_string());
    }
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .with_context(|| {
            format!(
                "--pred {}: cannot name the image from the file name: give it with --image",
                path.display()
            )
        })
}

fn read_prediction_file(
    path: &Path,
    image: Option<&str>,
    predictions: &mut Predictions,
) -> Result<()> {
    let text = read_text(path, "--pred", PRED_FORMATS)?;
    let file = || format!("--pred {}", path.display());
    let several = |format: &str| -> Result<()> {
        ensure!(
            image.is_none(),
            "--image names the image of a file of one image, but {} is {format} of several",
            file()
        );
        Ok(())
    };

    if looks_like_json(&text) {
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON ({PRED_FORMATS})", file()))?;
        if value.get("points").is_some() {
            let name = single_image_name(path, image)?;
            let detections = midog_points(&value, &mut predictions.not_mitotic)
                .with_context(|| format!("{} is not usable MIDOG output", file()))?;
            predictions.formats.insert("MIDOG output (JSON, mm)");
            let units = Units::Millimetres;
            return predictions.insert(name, PredImage { units, detections }, path);
        }
        let Some(map) = value
            .as_object()
            .filter(|m| !m.is_empty() && m.values().all(|v| v.get("points").is_some()))
        else {
            bail!("{} is not a prediction file: {PRED_FORMATS}", file());
        };
        several("MIDOG output")?;
        predictions
            .formats
            .insert("MIDOG output by image (JSON, mm)");
        for (name, value) in map {
            let detections = midog_points(value, &mut predictions.not_mitotic)
                .with_context(|| format!("{}: image {name} is not usable MIDOG output", file()))?;
            let units = Units::Millimetres;
            predictions.insert(name.clone(), PredImage { units, detections }, path)?;
        }
        return Ok(());
    }

    let table = Table::parse(&text).with_context(file)?;
    let by_image = pred_csv(&table).with_context(file)?;
    let units = Units::Pixels;
    match by_image {
        PredCsv::OneImage(detections) => {
            let name = single_image_name(path, image)?;
            predictions.formats.insert("CSV of one image (pixels)");
            predictions.insert(name, PredImage { units, detections }, path)
        }
        PredCsv::ByImage(images) => {
            several("a table")?;
            predictions.formats.insert("CSV by image (pixels)");
            for (name, detections) in images {
                predictions.insert(name, PredImage { units, detections }, path)?;
            }
            Ok(())
        }
    }
}

enum PredCsv {
    OneImage(Vec<PredDetection>),
    ByImage(BTreeMap<String, Vec<PredDetection>>),
}

/// `x,y` with optional `image` and `probability` (or `score`); other columns are ignored.
fn pred_csv(table: &Table) -> Result<PredCsv> {
    let (Some(x), Some(y)) = (table.index("x"), table.index("y")) else {
        bail!(
            "line {}: expected the columns x,y (and optionally image and probability), found \
             {}; {PRED_FORMATS}",
            table.header_line,
            table.columns.join(",")
        );
    };
    let probability = match (table.index("probability"), table.index("score")) {
        (Some(_), Some(_)) => bail!(
            "line {}: both probability and score columns: keep one",
            table.header_line
        ),
        (p, s) => p.or(s).map(|k| (k, table.columns[k])),
    };
    let image = table.index("image");

    let mut images: BTreeMap<String, Vec<PredDetection>> = BTreeMap::new();
    let mut one = Vec::new();
    for (line, cells) in &table.rows {
        let line = *line;
        let detection = PredDetection {
            x: number(cells[x], line, "x")?,
            y: number(cells[y], line, "y")?,
            probability: probability
                .map(|(k, column)| number(cells[k], line, column))
                .transpose()?,
        };
        match image {
            Some(k) => images
                .entry(name_cell(cells[k], line, "image")?)
                .or_default()
                .push(detection),
            None => one.push(detection),
        }
    }
    Ok(match image {
        Some(_) => PredCsv::ByImage(images),
        None => PredCsv::OneImage(one),
    })
}

#[derive(Deserialize)]
struct MidogOutput {
    points: Vec<MidogPoint>,
}

#[derive(Deserialize)]
struct MidogPoint {
    point: Vec<f64>,
    probability: Option<f64>,
    name: Option<String>,
}

/// The points of MIDOG output named "mitotic figure" (or not named), as the reference
/// evaluations keep them; counts the others into `not_mitotic`.
fn midog_points(value: &Value, not_mitotic: &mut usize) -> Result<Vec<PredDetection>> {
    let output = MidogOutput::deserialize(value)?;
    let mut detections = Vec::with_capacity(output.points.len());
    for (i, point) in output.points.into_iter().enumerate() {
        let &[x, y, ..] = point.point.as_slice() else {
            bail!("points[{i}].point: expected [x_mm, y_mm, 0]");
        };
        if point.name.as_deref().is_some_and(|n| n != "mitotic figure") {
            *not_mitotic += 1;
            continue;
        }
        detections.push(PredDetection {
            x,
            y,
            probability: point.probability,
        });
    }
    Ok(detections)
}

/// Gives each predicted image the name of its image in the truth: the same name, or the one
/// name that is the same once either drops its extension.
///
/// # Errors
///
/// Predicted images the truth does not have (a few are listed), or two predicted names for one
/// image.
fn match_names(
    predicted: BTreeMap<String, PredImage>,
    truth_names: &[String],
    truth_path: &Path,
) -> Result<BTreeMap<String, PredImage>> {
    let exact: BTreeSet<&str> = truth_names.iter().map(String::as_str).collect();
    let mut by_stem: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in truth_names {
        by_stem.entry(stem(name)).or_default().push(name);
    }

    let total = predicted.len();
    let mut unknown = Vec::new();
    let mut matched: BTreeMap<String, (String, PredImage)> = BTreeMap::new();
    for (name, image) in predicted {
        let target = if exact.contains(name.as_str()) {
            Some(name.clone())
        } else {
            match by_stem.get(stem(&name)).map(Vec::as_slice) {
                Some([one]) => Some(one.to_string()),
                _ => None,
            }
        };
        let Some(target) = target else {
            unknown.push(name);
            continue;
        };
        if let Some((other, _)) = matched.get(&target) {
            bail!("--pred names the image {target} of the truth twice: as {other} and as {name}");
        }
        matched.insert(target, (name, image));
    }
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
        let examples: Vec<&str> = truth_names.iter().take(3).map(String::as_str).collect();
        let which = if unknown.len() == total {
            format!("none of the {total} images of --pred is")
        } else {
            format!("{} of the {total} images of --pred are not", unknown.len())
        };
        bail!(
            "{which} in --truth {} ({}); the truth names its images {}, ...: names must be \
             the same, with or without the extension (a file of one image is named by its file \
             name or --image)",
            truth_path.display(),
            listed(&names),
            examples.join(", ")
        );
    }
    Ok(matched
        .into_iter()
        .map(|(target, (_, image))| (target, image))
        .collect())
}

/// A name without its extension (`007.tiff` -> `007`).
fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// The text of `path` without a byte-order mark; `flag` and `formats` make the message.
fn read_text(path: &Path, flag: &str, formats: &str) -> Result<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            bail!("{flag} {} is not a text file: {formats}", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {flag} {}", path.display())),
    };
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().chars().next(), Some('{' | '['))
}

/// A CSV table with a header: comma-separated cells, never quoted, spaces around a cell
/// ignored, empty lines skipped, `\r\n` accepted.
struct Table<'a> {
    header_line: usize,
    columns: Vec<&'a str>,
    /// The line number (from 1) and the cells of each row.
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Table<'a> {
    fn parse(text: &'a str) -> Result<Self> {
        let mut lines = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let number = k + 1;
            if line.trim().is_empty() {
                continue;
            }
            ensure!(
                !line.contains('"'),
                "line {number}: quoted cells are not supported"
            );
            ensure!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "line {number}: control characters are not supported"
            );
            lines.push((number, line.split(',').map(str::trim).collect::<Vec<_>>()));
        }
        let mut lines = lines.into_iter();
        let Some((header_line, columns)) = lines.next() else {
            bail!("the file is empty: expected a header line and rows");
        };
        let mut seen = BTreeSet::new();
        for column in &columns {
            ensure!(
                !column.is_empty() && seen.insert(*column),
                "line {header_line}: the header has an empty or repeated column name"
            );
        }
        let rows: Vec<(usize, Vec<&str>)> = lines.collect();
        for (line, cells) in &rows {
            ensure!(
                cells.len() == columns.len(),
                "line {line}: expected {} cells as in the header, found {}",
                columns.len(),
                cells.len()
            );
        }
        Ok(Self {
            header_line,
            columns,
            rows,
        })
    }

    fn index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| *c == column)
    }
}

/// A finite number.
fn number(cell: &str, line: usize, column: &str) -> Result<f64> {
    match cell.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => bail!("line {line}, column {column}: {cell:?} is not a finite number"),
    }
}

/// A non-empty name.
fn name_cell(cell: &str, line: usize, column: &str) -> Result<String> {
    ensure!(!cell.is_empty(), "line {line}, column {column}: empty name");
    Ok(cell.to_string())
}

/// The first few of `names`, and how many more.
fn listed(names: &[&str]) -> String {
    let mut text = names
        .iter()
        .take(LISTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        let _ = write!(text, " and {} more", names.len() - LISTED);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_with_or_without_the_extension() {
        let truth = ["001.tiff", "002.tiff", "a.b.png"].map(String::from);
        let image = || PredImage {
            units: Units::Pixels,
            detections: Vec::new(),
        };
        let predicted = BTreeMap::from([
            ("001".to_string(), image()),
            ("002.tiff".to_string(), image()),
            ("a.b.csv".to_string(), image()),
        ]);
        let matched = match_names(predicted, &truth, Path::new("t.csv")).unwrap();
        let names: Vec<&str> = matched.keys().map(String::as_str).collect();
        assert_eq!(names, ["001.tiff", "002.tiff", "a.b.png"]);

        let twice = BTreeMap::from([("001".to_string(), image()), ("001.tiff".into(), image())]);
        let err = match_names(twice, &truth, Path::new("t.csv")).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let unknown = BTreeMap::from([("003".to_string(), image())]);
        let err = match_names(unknown, &truth, Path::new("t.csv")).unwrap_err();
        assert!(err.to_string().contains("none of the 1 images"), "{err}");
    }

    #[test]
    fn scanners_give_their_pixel_size() {
        assert_eq!(scanner_mpp("Hamamatsu XR"), Some(0.23));
        assert_eq!(scanner_mpp("Hamamatsu S360"), Some(0.23));
        assert_eq!(scanner_mpp("Aperio CS2"), Some(0.25));
        assert_eq!(scanner_mpp("3D Histech"), Some(0.25));
        assert_eq!(scanner_mpp("Leica GT450"), None);
    }

    #[test]
    fn lists_are_cut_short() {
        assert_eq!(listed(&["a", "b"]), "a, b");
        assert_eq!(
            listed(&["a", "b", "c", "d", "e", "f", "g"]),
            "a, b, c, d, e and 2 more"
        );
    }
}
