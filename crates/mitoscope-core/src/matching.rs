//! Evaluation against annotated mitotic figures, the way the MIDOG challenges count.
//!
//! Step 9 of the method. A detection is a true positive when it is matched to a ground-truth
//! figure within 7.5 um of it (30 px at 0.25 um/px), each figure and each detection matched at
//! most once; unmatched detections are false positives, unmatched figures false negatives. TP, FP
//! and FN are summed over images, overall and per group (tumour type, scanner...), and
//! F1 = 2 TP / (2 TP + FP + FN) is computed from the sums.
//!
//! # The matching rule
//!
//! [`match_image`] follows `score_detection` in `evalutils/scorers.py` (comic/evalutils), which
//! the MIDOG 2021 challenge's evaluation container (`evaluation.py` in
//! DeepMicroscopy/MIDOG_evaluation_docker) and the MIDOG++ evaluation (`evaluation.py` in
//! DeepMicroscopy/MIDOGpp) call once per image, with the radius 7.5e-3 mm:
//!
//! 1. The figures are visited in their input order.
//! 2. Each takes the nearest detection within the radius (distance `<=` radius: scikit-learn's
//!    `query_radius` includes the boundary) that no earlier figure has taken. A figure with no
//!    such detection is a false negative.
//! 3. Detections left untaken are false positives.
//!
//! It is greedy, not an optimal assignment: an early figure may take the detection a later one
//! needed, so the order of the figures can change the counts (see the test
//! `greedy_in_figure_order_as_the_reference`). There is no score order: scores only decide,
//! through the threshold, which detections take part.
//!
//! Ties in distance are left to the ball tree's sort in the reference. Here the detection with
//! the higher score wins, then the one earlier in the input, so the result is deterministic and
//! the order of the detections changes the counts only between detections at exactly the same
//! distance and score.
//!
//! The reference's MIDOG++ evaluation keeps detections whose probability is strictly above the
//! threshold (`sc > det`); so does [`evaluate`]. OMG-Net's own rule for a mitotic figure is a
//! probability above 0.5.
//!
//! Other code in the field (`_F1_core` in `lib/calculate_F1.py` of
//! DeepPathology/TUPAC16_AlternativeLabels, and code adapted from it) counts every
//! figure with any detection within the radius as found and every detection with any figure
//! within the radius as correct, without a one-to-one matching: two detections on one figure
//! are then both true. Its numbers are not comparable with these.
//!
//! # Readers
//!
//! [`read_midog_json`] reads the MIDOG 2021 and MIDOG++ annotation databases (COCO-like JSON),
//! [`read_midogpp_split`] the MIDOG++ train/test split table, [`read_points_csv`] tables of
//! points by image (`image,x,y[,score]`), and [`read_detection_table`] the detection CSV that
//! `mitoscope detect` writes for one image ([`crate::export::DetectionRow`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::export::{CsvRecord, DetectionRow};
use crate::{Error, Result};

/// The MIDOG matching radius in um (7.5 um: 30 px at 0.25 um/px).
pub const MATCH_RADIUS_UM: f64 = 7.5;

/// Probability above which a detection counts as a mitotic figure (OMG-Net: `pred_1 > 0.5`).
pub const DETECTION_THRESHOLD: f64 = 0.5;

/// A point in image pixels (corner origin, y down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Column, in pixels.
    pub x: f64,
    /// Row, in pixels.
    pub y: f64,
}

/// A detected mitotic figure: where it is and how sure the classifier is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Column, in pixels.
    pub x: f64,
    /// Row, in pixels.
    pub y: f64,
    /// The classifier's probability (or any score: higher is surer).
    pub score: f64,
}

impl Detection {
    /// Where the detection is.
    pub fn point(&self) -> Point {
        Point {
            x: self.x,
            y: self.y,
        }
    }
}

/// The annotated figures of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTruth {
    /// The image's name, as the predictions are keyed (e.g. `"001.tiff"`).
    pub image: String,
    /// The group the image is counted in besides the overall sum (tumour type, scanner...).
    pub group: Option<String>,
    /// Pixel size in um (microns per pixel), to convert the radius into pixels.
    pub mpp: f64,
    /// The mitotic figures, in pixels.
    pub figures: Vec<Point>,
}

// ---------------------------------------------------------------------------------------------
// Counts and scores
// ---------------------------------------------------------------------------------------------

/// True positives, false positives and false negatives, and the scores they give.
///
/// Each score is `None` where its denominator is 0 (it is undefined there):
/// precision without detections, recall without figures, F1 without either.
///
/// NOTE: the reference evaluations add `eps = 1e-6` to every denominator instead, reporting
/// precision 0 without detections, recall 0 without figures and F1 1 without either, and
/// values off by up to about 1e-6 relative elsewhere. We compute the exact ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Detections matched to a figure.
    pub tp: u64,
    /// Detections matched to no figure.
    pub fp: u64,
    /// Figures matched to no detection.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Counts {
    /// `TP / (TP + FP)`, the fraction of detections that are figures; `None` without detections.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// `TP / (TP + FN)`, the fraction of figures found; `None` without figures.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// `2 TP / (2 TP + FP + FN)`; `None` without detections and figures.
    ///
    /// This equals the harmonic mean of precision and recall where both are defined, and is 0
    /// where figures exist but nothing was detected, or detections exist on an image without
    /// figures.
    pub fn f1(&self) -> Option<f64> {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// `numerator / denominator`, `None` for a zero denominator.
fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }
}

impl Add for Counts {
    type Output = Self;

    fn add(mut self, other: Self) -> Self {
        self += other;
        self
    }
}

impl std::iter::Sum for Counts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

// ---------------------------------------------------------------------------------------------
// Matching one image
// ---------------------------------------------------------------------------------------------

/// The matching of one image's detections to its figures.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Matches {
    /// TP, FP and FN of the image.
    pub counts: Counts,
    /// The matched pairs `(detection index, figure index)`, in figure order.
    pub pairs: Vec<(usize, usize)>,
}

/// Matches `detections` to `figures` within `radius_px` pixels, as `score_detection` (see the
/// module documentation for the rule and its tie-breaks).
///
/// Every detection given takes part: drop those below the threshold first.
///
/// # Errors
///
/// [`Error::NotFinite`] for a non-finite radius, coordinate or score, [`Error::InvalidSetting`]
/// for a negative radius.
pub fn match_image(detections: &[Detection], figures: &[Point], radius_px: f64) -> Result<Matches> {
    if !radius_px.is_finite() {
        return Err(Error::NotFinite("matching radius"));
    }
    if radius_px < 0.0 {
        return Err(Error::InvalidSetting {
            name: "matching radius",
            reason: "must not be negative",
        });
    }
    if detections
        .iter()
        .any(|d| !(d.x.is_finite() && d.y.is_finite()))
    {
        return Err(Error::NotFinite("detection coordinate"));
    }
    if detections.iter().any(|d| !d.score.is_finite()) {
        return Err(Error::NotFinite("detection score"));
    }
    if figures
        .iter()
        .any(|f| !(f.x.is_finite() && f.y.is_finite()))
    {
        return Err(Error::NotFinite("figure coordinate"));
    }

    // Squared distances keep the comparisons exact at the boundary: 30^2 = 900.
    let limit = radius_px * radius_px;
    let mut taken = vec![false; detections.len()];
    let mut pairs = Vec::new();
    // NOTE: every figure against every detection. A field or a MIDOG region holds hundreds of
    // points at most; a whole slide would want a spatial index.
    for (j, figure) in figures.iter().enumerate() {
        let nearest = detections
            .iter()
            .enumerate()
            .filter(|&(i, _)| !taken[i])
            .map(|(i, d)| (i, d.score, squared_distance(d.point(), *figure)))
            .filter(|&(_, _, d2)| d2 <= limit)
            .min_by(|a, b| {
                // Nearest, then highest score, then first in the input.
                a.2.total_cmp(&b.2)
                    .then(b.1.total_cmp(&a.1))
                    .then(a.0.cmp(&b.0))
            });
        if let Some((i, _, _)) = nearest {
            taken[i] = true;
            pairs.push((i, j));
        }
    }

    let tp = pairs.len() as u64;
    Ok(Matches {
        counts: Counts {
            tp,
            fp: detections.len() as u64 - tp,
            fn_: figures.len() as u64 - tp,
        },
        pairs,
    })
}

fn squared_distance(a: Point, b: Point) -> f64 {
    let (dx, dy) = (a.x - b.x, a.y - b.y);
    dx * dx + dy * dy
}

// ---------------------------------------------------------------------------------------------
// Evaluating a data set
// ---------------------------------------------------------------------------------------------

/// Settings of the evaluation; the defaults are the published values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationSettings {
    /// Detections take part only if their score is strictly above this (0.5).
    pub threshold: f64,
    /// Matching radius in um (7.5, MIDOG), converted with each image's pixel size.
    pub radius_um: f64,
}

impl Default for EvaluationSettings {
    fn default() -> Self {
        Self {
            threshold: DETECTION_THRESHOLD,
            radius_um: MATCH_RADIUS_UM,
        }
    }
}

impl EvaluationSettings {
    /// Checks that the settings can be used.
    ///
    /// # Errors
    ///
    /// [`Error::NotFinite`] for a NaN threshold or a non-finite radius,
    /// [`Error::InvalidSetting`] for a negative radius. An infinite threshold is allowed
    /// (`-inf` keeps every detection).
    pub fn validate(&self) -> Result<()> {
        if self.threshold.is_nan() {
            return Err(Error::NotFinite("threshold"));
        }
        if !self.radius_um.is_finite() {
            return Err(Error::NotFinite("radius_um"));
        }
        if self.radius_um < 0.0 {
            return Err(Error::InvalidSetting {
                name: "radius_um",
                reason: "must not be negative",
            });
        }
        Ok(())
    }
}

/// The counts of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image's name.
    pub image: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Whether the predictions had an entry for the image (see [`evaluate`]).
    pub predicted: bool,
    /// TP, FP and FN of the image.
    pub counts: Counts,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// The sum over all images of the ground truth.
    pub overall: Counts,
    /// The sum over the images of each group; images without a group count only overall.
    pub by_group: BTreeMap<String, Counts>,
    /// Each image of the ground truth, in its order.
    pub per_image: Vec<ImageResult>,
    /// Images that have predictions but no ground truth, sorted: left out of every count.
    pub unknown_images: Vec<String>,
}

/// Matches the predictions of every image of `truth` and sums the counts.
///
/// For each image: detections with a score strictly above `settings.threshold` are matched to
/// the figures with [`match_image`], within `settings.radius_um / mpp` pixels.
///
/// An image of the ground truth without an entry in `predictions` has no detections: all its
/// figures are false negatives, and its [`ImageResult::predicted`] is `false`.
/// NOTE: the reference evaluations skip such an image (with a warning), leaving its figures out
/// of the counts; we count them, since a missing result should not raise recall.
///
/// Predictions for images not in `truth` are left out of the counts, as the reference does, and
/// listed in [`Report::unknown_images`]: an image with no figures must be in `truth` (with an
/// empty list) for its detections to count as false positives.
///
/// # Errors
///
/// As [`EvaluationSettings::validate`]; [`Error::InvalidData`] for an image named twice in
/// `truth` or a pixel size that is not a positive number; as [`match_image`] for a non-finite
/// coordinate or score.
pub fn evaluate(
    predictions: &BTreeMap<String, Vec<Detection>>,
    truth: &[ImageTruth],
    settings: &EvaluationSettings,
) -> Result<Report> {
    settings.validate()?;
    let mut names = HashSet::new();
    for (i, image) in truth.iter().enumerate() {
        if !names.insert(image.image.as_str()) {
            return Err(Error::InvalidData {
                at: format!("truth[{i}]"),
                reason: "the image is listed twice".into(),
            });
        }
        if !(image.mpp.is_finite() && image.mpp > 0.0) {
            return Err(Error::InvalidData {
                at: format!("truth[{i}].mpp"),
                reason: "the pixel size must be a positive number".into(),
            });
        }
    }

    let mut report = Report::default();
    for image in truth {
        let given = predictions.get(&image.image);
        let all = given.map_or(&[][..], Vec::as_slice);
        // A NaN score would fail the threshold silently: refuse it before filtering.
        if all.iter().any(|d| d.score.is_nan()) {
            return Err(Error::NotFinite("detection score"));
        }
        let kept: Vec<Detection> = all
            .iter()
            .filter(|d| d.score > settings.threshold)
            .copied()
            .collect();
        let radius_px = settings.radius_um / image.mpp;
        let counts = match_image(&kept, &image.figures, radius_px)?.counts;

        report.overall += counts;
        if let Some(group) = &image.group {
            *report.by_group.entry(group.clone()).or_default() += counts;
        }
        report.per_image.push(ImageResult {
            image: image.image.clone(),
            group: image.group.clone(),
            predicted: given.is_some(),
            counts,
        });
    }
    report.unknown_images = predictions
        .keys()
        .filter(|name| !names.contains(name.as_str()))
        .cloned()
        .collect();
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// MIDOG annotation databases
// ---------------------------------------------------------------------------------------------

/// One image of a MIDOG annotation database with its labelled cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatedImage {
    /// The image's id in the database.
    pub id: u64,
    /// The image's file name (`"001.tiff"`).
    pub file_name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The tumour type, where the database gives one (MIDOG++ does, MIDOG 2021 does not).
    pub tumor_type: Option<String>,
    /// Centres of the mitotic figures, in the file's order.
    pub figures: Vec<Point>,
    /// Centres of the hard negatives (look-alikes, imposters), in the file's order.
    pub hard_negatives: Vec<Point>,
}

impl AnnotatedImage {
    /// The ground truth of the image for [`evaluate`], grouped by tumour type, at pixel size
    /// `mpp` (um per pixel; the database does not give it).
    pub fn truth(&self, mpp: f64) -> ImageTruth {
        ImageTruth {
            image: self.file_name.clone(),
            group: self.tumor_type.clone(),
            mpp,
            figures: self.figures.clone(),
        }
    }
}

/// What a category of a MIDOG database labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellKind {
    Figure,
    HardNegative,
}

/// The kind of cell a category name labels, `None` for a name we do not know.
fn cell_kind(name: &str) -> Option<CellKind> {
    match name.to_ascii_lowercase().as_str() {
        "mitotic figure" => Some(CellKind::Figure),
        "not mitotic figure" | "non-mitotic figure" | "hard negative" | "imposter" => {
            Some(CellKind::HardNegative)
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    categories: Vec<CocoCategory>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
    tumor_type: Option<String>,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
}

/// Reads a MIDOG annotation database: `MIDOG.json` (MIDOG 2021) or `MIDOG++.json`.
///
/// The files are COCO-like, with one difference: `bbox` is `[x0, y0, x1, y1]` (corners), not
/// COCO's `[x, y, width, height]`; every box is 50 x 50 px around the annotated cell. A cell's
/// point is its box centre, `((x0 + x1) / 2, (y0 + y1) / 2)`. Categories are told apart by
/// name: "mitotic figure" for the figures; "not mitotic figure" (the MIDOG files),
/// "non-mitotic figure", "hard negative" or "imposter" for the hard negatives. Images keep the
/// file's order, including those without annotations; other fields (`labels`, `license`...)
/// are ignored.
///
/// # Errors
///
/// [`Error::InvalidData`] for text that is not such a JSON file, an unknown category name, an
/// image id or file name used twice, an annotation naming an unknown image or category, or a
/// box with `x1 < x0` or `y1 < y0` (a box in COCO's `[x, y, width, height]` order often is one).
pub fn read_midog_json(text: &str) -> Result<Vec<AnnotatedImage>> {
    let file: CocoFile = serde_json::from_str(text).map_err(|e| Error::InvalidData {
        at: format!("line {}, column {}", e.line(), e.column()),
        reason: format!("not a MIDOG annotation file ({e})"),
    })?;

    let mut kinds = BTreeMap::new();
    for (i, category) in file.categories.iter().enumerate() {
        let kind = cell_kind(&category.name).ok_or_else(|| Error::InvalidData {
            at: format!("$.categories[{i}].name"),
            reason: "unknown category: expected \"mitotic figure\" or \"not mitotic figure\""
                .into(),
        })?;
        if kinds.insert(category.id, kind).is_some() {
            return Err(Error::InvalidData {
                at: format!("$.categories[{i}].id"),
                reason: "the category id is used twice".into(),
            });
        }
    }

    let mut index = BTreeMap::new();
    let mut file_names = BTreeSet::new();
    let mut images = Vec::with_capacity(file.images.len());
    for (i, image) in file.images.into_iter().enumerate() {
        if index.insert(image.id, i).is_some() {
            return Err(Error::InvalidData {
                at: format!("$.images[{i}].id"),
                reason: "the image id is used twice".into(),
            });
        }
        if !file_names.insert(image.file_name.clone()) {
            return Err(Error::InvalidData {
                at: format!("$.images[{i}].file_name"),
                reason: "the file name is used twice".into(),
            });
        }
        images.push(AnnotatedImage {
            id: image.id,
            file_name: image.file_name,
            width: image.width,
            height: image.height,
            tumor_type: image.tumor_type,
            figures: Vec::new(),
            hard_negatives: Vec::new(),
        });
    }

    for (i, annotation) in file.annotations.iter().enumerate() {
        let at = |field: &str| format!("$.annotations[{i}].{field}");
        let image = index
            .get(&annotation.image_id)
            .ok_or_else(|| Error::InvalidData {
                at: at("image_id"),
                reason: "no image has this id".into(),
            })?;
        let kind = kinds
            .get(&annotation.category_id)
            .ok_or_else(|| Error::InvalidData {
                at: at("category_id"),
                reason: "no category has this id".into(),
            })?;
        let [x0, y0, x1, y1] = annotation.bbox;
        if x1 < x0 || y1 < y0 {
            return Err(Error::InvalidData {
                at: at("bbox"),
                reason: "expected [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1".into(),
            });
        }
        let centre = Point {
            x: (x0 + x1) / 2.0,
            y: (y0 + y1) / 2.0,
        };
        let image = &mut images[*image];
        match kind {
            CellKind::Figure => image.figures.push(centre),
            CellKind::HardNegative => image.hard_negatives.push(centre),
        }
    }
    Ok(images)
}

/// One slide of the MIDOG++ split table (`datasets_xvalidation.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEntry {
    /// The slide's number, the image id of `MIDOG++.json`.
    pub slide: u32,
    /// `"train"` or `"test"` (the official test set has 111 slides).
    pub dataset: String,
    /// The tumour type, as the table spells it.
    pub tumor: String,
    /// The scanner, as the table spells it.
    pub scanner: String,
    /// The institution the slide comes from.
    pub origin: String,
    /// `"Human"` or `"Canine"`.
    pub species: String,
}

impl SplitEntry {
    /// The slide's image file name in `MIDOG++.json`: the number on three digits, `"007.tiff"`.
    pub fn file_name(&self) -> String {
        format!("{:03}.tiff", self.slide)
    }
}

/// The header of the MIDOG++ split table.
const SPLIT_COLUMNS: [&str; 6] = ["Slide", "Dataset", "Tumor", "Scanner", "Origin", "Species"];

/// Reads the MIDOG++ split table: `;`-separated, header
/// `Slide;Dataset;Tumor;Scanner;Origin;Species`.
///
/// NOTE: the table's names are kept as written. They differ from `MIDOG++.json` in places: the
/// table's "canine lymphoma" is the JSON's "canine lymphosarcoma", and 50 slides are scanned
/// on a "Hamammatsu XR" that is the "Hamamatsu XR" of the others.
///
/// # Errors
///
/// [`Error::InvalidData`] with the line number for another header, a row with another number of
/// cells, a slide number that is not a whole number or is listed twice, or a cell that is not a
/// plain name (see [`read_points_csv`]).
pub fn read_midogpp_split(text: &str) -> Result<Vec<SplitEntry>> {
    let mut rows = table(text, ';')?.into_iter();
    expect_header(rows.next(), &[&SPLIT_COLUMNS])?;
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    for (line, cells) in rows {
        check_width(line, &cells, SPLIT_COLUMNS.len())?;
        let slide: u32 = cells[0].parse().map_err(|_| Error::InvalidData {
            at: format!("line {line}, column Slide"),
            reason: "not a whole number".into(),
        })?;
        if !seen.insert(slide) {
            return Err(Error::InvalidData {
                at: format!("line {line}, column Slide"),
                reason: "the slide is listed twice".into(),
            });
        }
        let name = |k: usize| plain_name(cells[k], line, SPLIT_COLUMNS[k]);
        entries.push(SplitEntry {
            slide,
            dataset: name(1)?,
            tumor: name(2)?,
            scanner: name(3)?,
            origin: name(4)?,
            species: name(5)?,
        });
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------------------------
// CSV point tables
// ---------------------------------------------------------------------------------------------

/// Reads a table of points by image: header `image,x,y` or `image,x,y,score` (`probability`
/// is accepted for `score`), one point a line, coordinates in pixels.
///
/// Points keep the file's order within each image. A table without scores gives every point
/// score 1.0, above any threshold below 1. Use it for detections, or for ground truth through
/// [`Detection::point`].
///
/// The format is deliberately plain: cells are separated by commas and never quoted; a name is
/// any text without commas, quotes or control characters that neither starts nor ends with a
/// space; numbers are finite decimals (`12`, `-3.5`, `1e3`). Empty lines are skipped, a
/// leading byte-order mark is dropped, and `\r\n` line ends are accepted.
///
/// # Errors
///
/// [`Error::InvalidData`] with the line number (from 1) for another header, a row with another
/// number of cells, a cell that is not a number or a plain name.
pub fn read_points_csv(text: &str) -> Result<BTreeMap<String, Vec<Detection>>> {
    let mut rows = table(text, ',')?.into_iter();
    let header = expect_header(
        rows.next(),
        &[
            &["image", "x", "y"],
            &["image", "x", "y", "score"],
            &["image", "x", "y", "probability"],
        ],
    )?;
    let mut points: BTreeMap<String, Vec<Detection>> = BTreeMap::new();
    for (line, cells) in rows {
        check_width(line, &cells, header.len())?;
        let image = plain_name(cells[0], line, "image")?;
        let detection = Detection {
            x: number(cells[1], line, "x")?,
            y: number(cells[2], line, "y")?,
            score: match header.get(3) {
                Some(column) => number(cells[3], line, column)?,
                None => 1.0,
            },
        };
        points.entry(image).or_default().push(detection);
    }
    Ok(points)
}

/// Reads the detections of one image from the CSV `mitoscope detect` writes
/// ([`DetectionRow`]: header `x,y,probability,area_um2`); the probability becomes the score and
/// the area is checked but not kept.
///
/// Same format rules as [`read_points_csv`].
///
/// # Errors
///
/// As [`read_points_csv`].
pub fn read_detection_table(text: &str) -> Result<Vec<Detection>> {
    let mut rows = table(text, ',')?.into_iter();
    let columns = DetectionRow::COLUMNS;
    expect_header(rows.next(), &[columns])?;
    let mut detections = Vec::new();
    for (line, cells) in rows {
        check_width(line, &cells, columns.len())?;
        let values = cells
            .iter()
            .zip(columns)
            .map(|(cell, column)| number(cell, line, column))
            .collect::<Result<Vec<f64>>>()?;
        detections.push(Detection {
            x: values[0],
            y: values[1],
            score: values[2],
        });
    }
    Ok(detections)
}

/// The non-empty lines of `text` with their numbers (from 1), split at `separator`.
///
/// # Errors
///
/// [`Error::InvalidData`] for a quote or a control character anywhere.
fn table(text: &str, separator: char) -> Result<Vec<(usize, Vec<&str>)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let number = k + 1;
        if line.is_empty() {
            continue;
        }
        if line.contains('"') {
            return Err(Error::InvalidData {
                at: format!("line {number}"),
                reason: "quoted cells are not supported".into(),
            });
        }
        if line.chars().any(char::is_control) {
            return Err(Error::InvalidData {
                at: format!("line {number}"),
                reason: "control characters are not supported".into(),
            });
        }
        rows.push((number, line.split(separator).collect()));
    }
    Ok(rows)
}

/// Checks that the first row is one of `accepted`; gives back the one it is.
fn expect_header<'a>(
    first: Option<(usize, Vec<&str>)>,
    accepted: &[&'a [&'a str]],
) -> Result<&'a [&'a str]> {
    let found = first.as_ref().map(|(_, cells)| cells.as_slice());
    if let Some(header) = accepted.iter().find(|h| Some(&h[..]) == found) {
        return Ok(header);
    }
    let at = first.map_or_else(|| "line 1".to_string(), |(line, _)| format!("line {line}"));
    let expected: Vec<String> = accepted.iter().map(|h| h.join(",")).collect();
    Err(Error::InvalidData {
        at,
        reason: format!("expected the header {}", expected.join(" or ")),
    })
}

fn check_width(line: usize, cells: &[&str], width: usize) -> Result<()> {
    if cells.len() != width {
        return Err(Error::InvalidData {
            at: format!("line {line}"),
            reason: format!("expected {width} cells, found {}", cells.len()),
        });
    }
    Ok(())
}

/// A finite number.
fn number(cell: &str, line: usize, column: &str) -> Result<f64> {
    match cell.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(Error::InvalidData {
            at: format!("line {line}, column {column}"),
            reason: "not a finite number".into(),
        }),
    }
}

/// A plain name: not empty, no space at either end (quotes and controls are refused earlier).
fn plain_name(cell: &str, line: usize, column: &str) -> Result<String> {
    if cell.is_empty() || cell.trim() != cell {
        return Err(Error::InvalidData {
            at: format!("line {line}, column {column}"),
            reason: "not a plain name (empty, or a space at either end)".into(),
        });
    }
    Ok(cell.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn det(x: f64, y: f64, score: f64) -> Detection {
        Detection { x, y, score }
    }

    fn pt(x: f64, y: f64) -> Point {
        Point { x, y }
    }

    fn counts(tp: u64, fp: u64, fn_: u64) -> Counts {
        Counts { tp, fp, fn_ }
    }

    /// The radius at MIDOG's 7.5 um and 0.25 um/px.
    const R: f64 = 30.0;

    #[test]
    fn exact_and_boundary_matches() {
        let figure = [pt(100.0, 100.0)];
        let m = match_image(&[det(100.0, 100.0, 0.9)], &figure, R).unwrap();
        assert_eq!(m.counts, counts(1, 0, 0));
        assert_eq!(m.pairs, vec![(0, 0)]);

        // Exactly on the radius counts (`query_radius` includes the boundary), along an axis
        // and along a 3-4-5 diagonal (18, 24): 18^2 + 24^2 = 30^2.
        for d in [det(130.0, 100.0, 0.9), det(118.0, 124.0, 0.9)] {
            assert_eq!(
                match_image(&[d], &figure, R).unwrap().counts,
                counts(1, 0, 0)
            );
        }
        // Just inside and just outside.
        let inside = det(100.0, 129.999, 0.9);
        assert_eq!(
            match_image(&[inside], &figure, R).unwrap().counts,
            counts(1, 0, 0)
        );
        for d in [det(130.001, 100.0, 0.9), det(118.0, 124.01, 0.9)] {
            assert_eq!(
                match_image(&[d], &figure, R).unwrap().counts,
                counts(0, 1, 1)
            );
        }
        // A radius of 0 matches only exact positions.
        let m = match_image(&[det(100.0, 100.0, 0.9)], &figure, 0.0).unwrap();
        assert_eq!(m.counts, counts(1, 0, 0));
    }

    #[test]
    fn one_figure_two_detections_gives_one_false_positive() {
        let figure = [pt(50.0, 50.0)];
        let dets = [det(60.0, 50.0, 0.7), det(55.0, 50.0, 0.6)];
        let m = match_image(&dets, &figure, R).unwrap();
        assert_eq!(m.counts, counts(1, 1, 0));
        // The nearer one is the match, whatever the scores.
        assert_eq!(m.pairs, vec![(1, 0)]);
    }

    #[test]
    fn one_detection_between_two_figures_matches_the_first_figure() {
        // The detection is 20 px from the first figure and 10 px from the second: the figures
        // are visited in order, so the first takes it and the second is missed.
        let figures = [pt(0.0, 0.0), pt(30.0, 0.0)];
        let m = match_image(&[det(20.0, 0.0, 0.9)], &figures, R).unwrap();
        assert_eq!(m.counts, counts(1, 0, 1));
        assert_eq!(m.pairs, vec![(0, 0)]);
        let swapped = [figures[1], figures[0]];
        let m = match_image(&[det(20.0, 0.0, 0.9)], &swapped, R).unwrap();
        assert_eq!(m.pairs, vec![(0, 0)]);
    }

    #[test]
    fn greedy_in_figure_order_as_the_reference() {
        // Figure A at 0 and B at 40. Detection d0 at 20 (20 from both), d1 at -25 (25 from A,
        // 65 from B). A comes first and takes its nearest, d0; B then finds nothing. An optimal
        // assignment would pair A-d1 and B-d0.
        let figures = [pt(0.0, 0.0), pt(40.0, 0.0)];
        let dets = [det(20.0, 0.0, 0.9), det(-25.0, 0.0, 0.9)];
        let m = match_image(&dets, &figures, R).unwrap();
        assert_eq!(m.counts, counts(1, 1, 1));
        assert_eq!(m.pairs, vec![(0, 0)]);
        // With B first, both match: the order of the figures matters.
        let m = match_image(&dets, &[figures[1], figures[0]], R).unwrap();
        assert_eq!(m.counts, counts(2, 0, 0));
        assert_eq!(m.pairs, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn distance_ties_go_to_the_higher_score_then_the_earlier_detection() {
        // Two detections 10 px either side of the figure.
        let figure = [pt(0.0, 0.0)];
        let left = det(-10.0, 0.0, 0.6);
        let right = det(10.0, 0.0, 0.8);
        let m = match_image(&[left, right], &figure, R).unwrap();
        assert_eq!(m.pairs, vec![(1, 0)]);
        let m = match_image(&[right, left], &figure, R).unwrap();
        assert_eq!(m.pairs, vec![(0, 0)]);
        // Equal scores too: the first in the input.
        let right = det(10.0, 0.0, 0.6);
        assert_eq!(
            match_image(&[left, right], &figure, R).unwrap().pairs,
            vec![(0, 0)]
        );
        assert_eq!(
            match_image(&[right, left], &figure, R).unwrap().pairs,
            vec![(0, 0)]
        );
        // Score never beats distance.
        let near_low = det(5.0, 0.0, 0.1);
        let far_high = det(6.0, 0.0, 0.99);
        assert_eq!(
            match_image(&[far_high, near_low], &figure, R)
                .unwrap()
                .pairs,
            vec![(1, 0)]
        );
    }

    #[test]
    fn empty_inputs() {
        let none = match_image(&[], &[], R).unwrap();
        assert_eq!(none, Matches::default());
        assert_eq!(none.counts.precision(), None);
        assert_eq!(none.counts.recall(), None);
        assert_eq!(none.counts.f1(), None);

        let missed = match_image(&[], &[pt(1.0, 1.0), pt(2.0, 2.0)], R).unwrap();
        assert_eq!(missed.counts, counts(0, 0, 2));
        assert_eq!(missed.counts.precision(), None);
        assert_eq!(missed.counts.recall(), Some(0.0));
        assert_eq!(missed.counts.f1(), Some(0.0));

        let spurious = match_image(&[det(1.0, 1.0, 0.9)], &[], R).unwrap();
        assert_eq!(spurious.counts, counts(0, 1, 0));
        assert_eq!(spurious.counts.precision(), Some(0.0));
        assert_eq!(spurious.counts.recall(), None);
        assert_eq!(spurious.counts.f1(), Some(0.0));
    }

    #[test]
    fn scores_by_hand() {
        // 6 TP, 2 FP, 4 FN: precision 6/8, recall 6/10, F1 12/18.
        let c = counts(6, 2, 4);
        assert_eq!(c.precision(), Some(0.75));
        assert_eq!(c.recall(), Some(0.6));
        assert_eq!(c.f1(), Some(12.0 / 18.0));
        // The harmonic mean agrees: 2 * 0.75 * 0.6 / 1.35 = 2/3.
        assert!((c.f1().unwrap() - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-15);
        assert_eq!(counts(3, 0, 0).f1(), Some(1.0));
        assert_eq!(counts(1, 2, 3) + counts(4, 5, 6), counts(5, 7, 9));
        assert_eq!(
            [counts(1, 0, 0), counts(0, 1, 0), counts(0, 0, 1)]
                .into_iter()
                .sum::<Counts>(),
            counts(1, 1, 1)
        );
        assert_eq!(
            serde_json::to_value(counts(1, 2, 3)).unwrap(),
            serde_json::json!({"tp": 1, "fp": 2, "fn": 3})
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let f = [pt(0.0, 0.0)];
        let d = [det(0.0, 0.0, 0.9)];
        assert!(matches!(
            match_image(&d, &f, f64::NAN),
            Err(Error::NotFinite(_))
        ));
        assert!(matches!(
            match_image(&d, &f, f64::INFINITY),
            Err(Error::NotFinite(_))
        ));
        assert!(matches!(
            match_image(&d, &f, -1.0),
            Err(Error::InvalidSetting { .. })
        ));
        assert!(matches!(
            match_image(&[det(f64::NAN, 0.0, 0.9)], &f, R),
            Err(Error::NotFinite("detection coordinate"))
        ));
        assert!(matches!(
            match_image(&[det(0.0, 0.0, f64::NAN)], &f, R),
            Err(Error::NotFinite("detection score"))
        ));
        assert!(matches!(
            match_image(&d, &[pt(0.0, f64::INFINITY)], R),
            Err(Error::NotFinite("figure coordinate"))
        ));
    }

    fn truth(image: &str, group: Option<&str>, mpp: f64, figures: &[(f64, f64)]) -> ImageTruth {
        ImageTruth {
            image: image.into(),
            group: group.map(String::from),
            mpp,
            figures: figures.iter().map(|&(x, y)| pt(x, y)).collect(),
        }
    }

    #[test]
    fn evaluate_sums_per_group_and_overall() {
        let truth = [
            // a: two figures, one found (TP), one detection elsewhere (FP), one missed (FN).
            truth("a", Some("breast"), 0.25, &[(100.0, 100.0), (500.0, 500.0)]),
            // b: at 0.5 um/px the radius is 15 px: a detection 20 px off misses (FP + FN).
            truth("b", Some("breast"), 0.5, &[(10.0, 10.0)]),
            // c: no figures, one detection above the threshold (FP), one at it (dropped).
            truth("c", Some("melanoma"), 0.25, &[]),
            // d: no predictions at all: its figure is missed.
            truth("d", None, 0.25, &[(1.0, 1.0)]),
        ];
        let predictions = BTreeMap::from([
            (
                "a".to_string(),
                vec![det(110.0, 100.0, 0.9), det(300.0, 300.0, 0.8)],
            ),
            ("b".to_string(), vec![det(30.0, 10.0, 0.9)]),
            (
                "c".to_string(),
                vec![det(5.0, 5.0, 0.51), det(9.0, 9.0, 0.5)],
            ),
            ("z".to_string(), vec![det(5.0, 5.0, 0.99)]),
        ]);
        let report = evaluate(&predictions, &truth, &EvaluationSettings::default()).unwrap();
        let per: Vec<Counts> = report.per_image.iter().map(|r| r.counts).collect();
        assert_eq!(
            per,
            [
                counts(1, 1, 1),
                counts(0, 1, 1),
                counts(0, 1, 0),
                counts(0, 0, 1)
            ]
        );
        assert_eq!(
            report
                .per_image
                .iter()
                .map(|r| r.predicted)
                .collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(report.overall, counts(1, 3, 3));
        assert_eq!(
            report.by_group,
            BTreeMap::from([
                ("breast".to_string(), counts(1, 2, 2)),
                ("melanoma".to_string(), counts(0, 1, 0)),
            ])
        );
        assert_eq!(report.unknown_images, ["z"]);
        // F1 overall: 2 / (2 + 3 + 3) = 0.25.
        assert_eq!(report.overall.f1(), Some(0.25));

        // A lower threshold lets c's second detection in; a wider radius finds b's figure.
        let loose = EvaluationSettings {
            threshold: 0.4,
            radius_um: 10.0,
        };
        let report = evaluate(&predictions, &truth, &loose).unwrap();
        assert_eq!(report.overall, counts(2, 3, 2));
    }

    #[test]
    fn evaluate_refuses_bad_input() {
        let none = BTreeMap::new();
        let twice = [truth("a", None, 0.25, &[]), truth("a", None, 0.25, &[])];
        let e = evaluate(&none, &twice, &EvaluationSettings::default()).unwrap_err();
        assert_eq!(e.to_string(), "truth[1]: the image is listed twice");
        for mpp in [0.0, -0.25, f64::NAN, f64::INFINITY] {
            let t = [truth("a", None, mpp, &[])];
            let e = evaluate(&none, &t, &EvaluationSettings::default());
            assert!(matches!(e, Err(Error::InvalidData { .. })), "mpp {mpp}");
        }
        let t = [truth("a", None, 0.25, &[])];
        let nan = BTreeMap::from([("a".to_string(), vec![det(0.0, 0.0, f64::NAN)])]);
        assert!(matches!(
            evaluate(&nan, &t, &EvaluationSettings::default()),
            Err(Error::NotFinite(_))
        ));
        let bad = EvaluationSettings {
            threshold: f64::NAN,
            ..Default::default()
        };
        assert!(evaluate(&none, &t, &bad).is_err());
        let bad = EvaluationSettings {
            radius_um: -1.0,
            ..Default::default()
        };
        assert!(evaluate(&none, &t, &bad).is_err());
        let all = EvaluationSettings {
            threshold: f64::NEG_INFINITY,
            ..Default::default()
        };
        assert!(evaluate(&none, &t, &all).is_ok());
    }

    /// The size of a maximum matching between detections and figures within the radius
    /// (augmenting paths), to bound the greedy rule.
    fn maximum_matching(dets: &[Detection], figures: &[Point], radius: f64) -> usize {
        fn augment(
            j: usize,
            near: &[Vec<usize>],
            owner: &mut [Option<usize>],
            seen: &mut [bool],
        ) -> bool {
            for &i in &near[j] {
                if !seen[i] {
                    seen[i] = true;
                    if owner[i].is_none_or(|k| augment(k, near, owner, seen)) {
                        owner[i] = Some(j);
                        return true;
                    }
                }
            }
            false
        }
        let near: Vec<Vec<usize>> = figures
            .iter()
            .map(|&f| {
                (0..dets.len())
                    .filter(|&i| squared_distance(dets[i].point(), f) <= radius * radius)
                    .collect()
            })
            .collect();
        let mut owner = vec![None; dets.len()];
        (0..figures.len())
            .filter(|&j| augment(j, &near, &mut owner, &mut vec![false; dets.len()]))
            .count()
    }

    fn arb_points(n: usize) -> impl Strategy<Value = Vec<(f64, f64, f64)>> {
        proptest::collection::vec((0.0f64..200.0, 0.0f64..200.0, 0.0f64..1.0), 0..n)
    }

    proptest! {
        #[test]
        fn matching_is_a_maximal_one_to_one_matching_within_the_radius(
            d in arb_points(25),
            f in arb_points(25),
            radius in 0.0f64..60.0,
        ) {
            let dets: Vec<Detection> = d.iter().map(|&(x, y, s)| det(x, y, s)).collect();
            let figures: Vec<Point> = f.iter().map(|&(x, y, _)| pt(x, y)).collect();
            let m = match_image(&dets, &figures, radius).unwrap();
            let c = m.counts;
            prop_assert_eq!(c.tp + c.fp, dets.len() as u64);
            prop_assert_eq!(c.tp + c.fn_, figures.len() as u64);
            prop_assert_eq!(m.pairs.len() as u64, c.tp);

            // One to one, within the radius, in figure order.
            let mut used_d: Vec<usize> = m.pairs.iter().map(|p| p.0).collect();
            used_d.sort_unstable();
            used_d.dedup();
            prop_assert_eq!(used_d.len(), m.pairs.len());
            prop_assert!(m.pairs.windows(2).all(|w| w[0].1 < w[1].1));
            for &(i, j) in &m.pairs {
                prop_assert!(squared_distance(dets[i].point(), figures[j]) <= radius * radius);
            }
            // Maximal: no free figure has a free detection within the radius.
            for (j, fig) in figures.iter().enumerate() {
                if m.pairs.iter().any(|p| p.1 == j) {
                    continue;
                }
                for (i, d) in dets.iter().enumerate() {
                    if !used_d.contains(&i) {
                        prop_assert!(squared_distance(d.point(), *fig) > radius * radius);
                    }
                }
            }
            // A maximal matching has at least half the maximum's pairs.
            let best = maximum_matching(&dets, &figures, radius);
            prop_assert!(m.pairs.len() <= best && 2 * m.pairs.len() >= best);

            // Reversing the detections changes nothing but their indices (no exact ties here).
            let reversed: Vec<Detection> = dets.iter().rev().copied().collect();
            let r = match_image(&reversed, &figures, radius).unwrap();
            prop_assert_eq!(r.counts, c);
            let n = dets.len();
            let back: Vec<(usize, usize)> = r.pairs.iter().map(|&(i, j)| (n - 1 - i, j)).collect();
            prop_assert_eq!(back, m.pairs);
        }
    }

    #[test]
    fn points_csv_reads_by_image() {
        let text = "\u{feff}image,x,y,score\r\n001.tiff,10,20.5,0.9\r\n\r\nb c.png,-1e1,3,1\n\
                    001.tiff,1,2,0.25\n";
        let points = read_points_csv(text).unwrap();
        assert_eq!(
            points,
            BTreeMap::from([
                (
                    "001.tiff".to_string(),
                    vec![det(10.0, 20.5, 0.9), det(1.0, 2.0, 0.25)]
                ),
                ("b c.png".to_string(), vec![det(-10.0, 3.0, 1.0)]),
            ])
        );
        let plain = read_points_csv("image,x,y\na,1,2\n").unwrap();
        assert_eq!(plain["a"], vec![det(1.0, 2.0, 1.0)]);
        let probability = read_points_csv("image,x,y,probability\na,1,2,0.5").unwrap();
        assert_eq!(probability["a"], vec![det(1.0, 2.0, 0.5)]);
        assert_eq!(read_points_csv("image,x,y\n").unwrap(), BTreeMap::new());
    }

    #[test]
    fn detection_table_reads_what_export_writes() {
        let rows = [
            DetectionRow {
                x: 101.5,
                y: 200.5,
                probability: 0.1 + 0.2,
                area_um2: 20.25,
            },
            DetectionRow {
                x: 0.0,
                y: 3.0,
                probability: 1.0 / 3.0,
                area_um2: 2.5,
            },
        ];
        let text = crate::export::to_csv(&rows).unwrap();
        let detections = read_detection_table(&text).unwrap();
        assert_eq!(
            detections,
            [det(101.5, 200.5, 0.1 + 0.2), det(0.0, 3.0, 1.0 / 3.0)]
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        let number = "not a finite number";
        let name = "not a plain name (empty, or a space at either end)";
        let cases = [
            ("image,x,y\na,1\n", "line 2", "expected 3 cells, found 2"),
            (
                "image,x,y\na,1,2,3\n",
                "line 2",
                "expected 3 cells, found 4",
            ),
            ("image,x,y\n\na,1,two\n", "line 3, column y", number),
            ("image,x,y\na,NaN,1\n", "line 2, column x", number),
            ("image,x,y\na,inf,1\n", "line 2, column x", number),
            ("image,x,y\na, 1,1\n", "line 2, column x", number),
            ("image,x,y,score\na,1,1,\n", "line 2, column score", number),
            ("image,x,y\n,1,1\n", "line 2, column image", name),
            ("image,x,y\na ,1,1\n", "line 2, column image", name),
            (
                "image,x,y\n\"a\",1,1\n",
                "line 2",
                "quoted cells are not supported",
            ),
            (
                "image,x,y\na\t,1,1\n",
                "line 2",
                "control characters are not supported",
            ),
        ];
        for (text, at, reason) in cases {
            let expected = Error::InvalidData {
                at: at.into(),
                reason: reason.into(),
            };
            assert_eq!(read_points_csv(text).unwrap_err(), expected, "{text:?}");
        }
        let header = "line 1: expected the header image,x,y or image,x,y,score or \
                      image,x,y,probability";
        for text in ["", "\n\n", "image,y,x\n", "Image,x,y\n"] {
            assert_eq!(read_points_csv(text).unwrap_err().to_string(), header);
        }
        let e = read_detection_table("x,y,probability\n1,2,0.5\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: expected the header x,y,probability,area_um2"
        );
        let e = read_detection_table("x,y,probability,area_um2\n1,2,0.5,big\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column area_um2: not a finite number"
        );
    }

    #[test]
    fn midog_json_small_file() {
        let text = r#"{
            "images": [
                {"id": 7, "file_name": "007.tiff", "width": 100, "height": 80,
                 "tumor_type": "human melanoma", "license": 1},
                {"id": 3, "file_name": "003.tiff", "width": 10, "height": 10}
            ],
            "categories": [{"id": 1, "name": "mitotic figure"},
                           {"id": 2, "name": "not mitotic figure"}],
            "annotations": [
                {"bbox": [10, 20, 60, 70], "category_id": 1, "image_id": 7, "id": 1},
                {"bbox": [-5.5, 0, 44.5, 50], "category_id": 2, "image_id": 7, "labels": [2]},
                {"bbox": [0, 0, 50, 50], "category_id": 1, "image_id": 7}
            ]
        }"#;
        let images = read_midog_json(text).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].file_name, "007.tiff");
        assert_eq!(images[0].tumor_type.as_deref(), Some("human melanoma"));
        assert_eq!(images[0].figures, [pt(35.0, 45.0), pt(25.0, 25.0)]);
        assert_eq!(images[0].hard_negatives, [pt(19.5, 25.0)]);
        assert_eq!(
            (images[1].id, images[1].width, images[1].height),
            (3, 10, 10)
        );
        assert!(images[1].figures.is_empty() && images[1].tumor_type.is_none());
        let t = images[0].truth(0.25);
        assert_eq!(t.image, "007.tiff");
        assert_eq!(t.group.as_deref(), Some("human melanoma"));
        assert_eq!(t.figures, images[0].figures);

        let broken = [
            (r#"{"images": []}"#, "line 1, column 14"),
            (
                r#"{"images": [], "categories": [{"id": 1, "name": "cell"}], "annotations": []}"#,
                "$.categories[0].name",
            ),
            (
                r#"{"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1},
                               {"id": 1, "file_name": "b", "width": 1, "height": 1}],
                    "categories": [], "annotations": []}"#,
                "$.images[1].id",
            ),
            (
                r#"{"images": [{"id": 1, "file_name": "a", "width": 1, "height": 1},
                               {"id": 2, "file_name": "a", "width": 1, "height": 1}],
                    "categories": [], "annotations": []}"#,
                "$.images[1].file_name",
            ),
            (
                r#"{"images": [], "categories": [{"id": 1, "name": "mitotic figure"}],
                    "annotations": [{"bbox": [0, 0, 1, 1], "category_id": 1, "image_id": 4}]}"#,
                "$.annotations[0].image_id",
            ),
            (
                r#"{"images": [{"id": 4, "file_name": "a", "width": 1, "height": 1}],
                    "categories": [{"id": 1, "name": "mitotic figure"}],
                    "annotations": [{"bbox": [0, 0, 1, 1], "category_id": 2, "image_id": 4}]}"#,
                "$.annotations[0].category_id",
            ),
            (
                r#"{"images": [{"id": 4, "file_name": "a", "width": 1, "height": 1}],
                    "categories": [{"id": 1, "name": "mitotic figure"}],
                    "annotations": [{"bbox": [60, 60, 50, 50], "category_id": 1, "image_id": 4}]}"#,
                "$.annotations[0].bbox",
            ),
        ];
        for (text, at) in broken {
            match read_midog_json(text) {
                Err(Error::InvalidData { at: found, .. }) => assert_eq!(found, at, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn midogpp_split_small_table() {
        let text = "Slide;Dataset;Tumor;Scanner;Origin;Species\n\
                    7;test;human melanoma;Hamamatsu XR;UMC Utrecht;Human\n\
                    12;train;canine lymphoma;3D Histech;FU Berlin;Canine\n";
        let split = read_midogpp_split(text).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].file_name(), "007.tiff");
        assert_eq!(split[0].dataset, "test");
        assert_eq!(split[1].tumor, "canine lymphoma");
        assert_eq!(split[1].species, "Canine");

        let header = "Slide;Dataset;Tumor;Scanner;Origin;Species\n";
        let cases = [
            ("Slide,Dataset\n", "line 1"),
            (&format!("{header}x;test;a;b;c;d\n"), "line 2, column Slide"),
            (
                &format!("{header}1;test;a;b;c;d\n1;test;a;b;c;d\n"),
                "line 3, column Slide",
            ),
            (&format!("{header}1;test;a;b;c\n"), "line 2"),
            (&format!("{header}1;test;;b;c;d\n"), "line 2, column Tumor"),
        ];
        for (text, at) in cases {
            match read_midogpp_split(text) {
                Err(Error::InvalidData { at: found, .. }) => assert_eq!(found, at, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// The MIDOG annotation files in the shared data folder, if present.
    fn shared_file(name: &str) -> Option<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/midog_annotations")
            .join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(_) => {
                eprintln!("skipped: {name} is not in ../shared/data/midog_annotations");
                None
            }
        }
    }

    /// Images, mitotic figures and hard negatives of a database, counted straight from the JSON
    /// tree, and the figures of the first image.
    fn independent_counts(text: &str) -> (usize, usize, usize, Vec<(f64, f64)>) {
        let value: Value = serde_json::from_str(text).unwrap();
        let name_of = |id: &Value| {
            value["categories"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| &c["id"] == id)
                .unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let annotations = value["annotations"].as_array().unwrap();
        let of = |name: &str| {
            annotations
                .iter()
                .filter(|a| name_of(&a["category_id"]) == name)
                .count()
        };
        let first_id = &value["images"][0]["id"];
        let first: Vec<(f64, f64)> = annotations
            .iter()
            .filter(|a| {
                &a["image_id"] == first_id && name_of(&a["category_id"]) == "mitotic figure"
            })
            .map(|a| {
                let b: Vec<f64> = a["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)
            })
            .collect();
        (
            value["images"].as_array().unwrap().len(),
            of("mitotic figure"),
            of("not mitotic figure"),
            first,
        )
    }

    fn check_database(text: &str, images: usize, figures: usize, negatives: usize) {
        let parsed = read_midog_json(text).unwrap();
        let (n_images, n_figures, n_negatives, first) = independent_counts(text);
        // The numbers SOURCE.md gives, and the same counted from the JSON tree.
        assert_eq!(
            (n_images, n_figures, n_negatives),
            (images, figures, negatives)
        );
        assert_eq!(parsed.len(), images);
        assert_eq!(
            parsed.iter().map(|i| i.figures.len()).sum::<usize>(),
            figures
        );
        assert_eq!(
            parsed.iter().map(|i| i.hard_negatives.len()).sum::<usize>(),
            negatives
        );
        let first_figures: Vec<(f64, f64)> = parsed[0].figures.iter().map(|p| (p.x, p.y)).collect();
        assert_eq!(first_figures, first);
    }

    #[test]
    fn real_midogpp_database() {
        let Some(text) = shared_file("MIDOGpp_MIDOG++.json") else {
            return;
        };
        check_database(&text, 553, 11_937, 14_349);
        let images = read_midog_json(&text).unwrap();
        // Images 151-200 are the unlabelled MIDOG 2021 scans: no annotations.
        let empty: Vec<u64> = images
            .iter()
            .filter(|i| i.figures.is_empty() && i.hard_negatives.is_empty())
            .map(|i| i.id)
            .collect();
        assert_eq!(empty, (151..=200).collect::<Vec<u64>>());
        let breast = images
            .iter()
            .filter(|i| i.tumor_type.as_deref() == Some("human breast cancer"))
            .count();
        assert_eq!(breast, 200);

        // The split table: 503 labelled slides, 111 of them the official test set.
        let Some(csv) = shared_file("MIDOGpp_datasets_xvalidation.csv") else {
            return;
        };
        let split = read_midogpp_split(&csv).unwrap();
        assert_eq!(split.len(), 503);
        let test: Vec<&SplitEntry> = split.iter().filter(|s| s.dataset == "test").collect();
        assert_eq!(test.len(), 111);
        let by_name: BTreeMap<&str, &AnnotatedImage> =
            images.iter().map(|i| (i.file_name.as_str(), i)).collect();
        for entry in &split {
            let image = by_name[entry.file_name().as_str()];
            assert_eq!(image.id, u64::from(entry.slide));
            let json_name = image.tumor_type.as_deref().unwrap();
            let same = json_name == entry.tumor
                || (entry.tumor == "canine lymphoma" && json_name == "canine lymphosarcoma");
            assert!(
                same,
                "slide {}: {} vs {json_name}",
                entry.slide, entry.tumor
            );
        }

        // Perfect predictions on the test set: every figure found, per tumour type too.
        let truth: Vec<ImageTruth> = test
            .iter()
            .map(|s| by_name[s.file_name().as_str()].truth(0.25))
            .collect();
        let predictions: BTreeMap<String, Vec<Detection>> = truth
            .iter()
            .map(|t| {
                let dets = t.figures.iter().map(|p| det(p.x, p.y, 1.0)).collect();
                (t.image.clone(), dets)
            })
            .collect();
        let report = evaluate(&predictions, &truth, &EvaluationSettings::default()).unwrap();
        assert_eq!(report.overall, counts(2467, 0, 0));
        assert_eq!(report.by_group.len(), 7);
        assert_eq!(
            report.by_group.values().copied().sum::<Counts>(),
            report.overall
        );
        assert!(report.unknown_images.is_empty());
    }

    #[test]
    fn real_midog2021_database() {
        let Some(text) = shared_file("MIDOG2021_MIDOG.json") else {
            return;
        };
        check_database(&text, 200, 1721, 2714);
        let images = read_midog_json(&text).unwrap();
        assert!(images.iter().all(|i| i.tumor_type.is_none()));
        // Images 151-200 (the Leica GT450 scans) are unlabelled.
        let labelled = images
            .iter()
            .filter(|i| !i.figures.is_empty() || !i.hard_negatives.is_empty())
            .count();
        assert_eq!(labelled, 150);
    }
}
