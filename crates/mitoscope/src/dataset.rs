//! `mitoscope dataset`: the classifier's training data, built from the annotated images of
//! `../shared/data`.
//!
//! Step 7 of the method trains the classifier on "mitotic figures against everything else SAM
//! segments". This module runs the proposal stage on every annotated image, labels each
//! proposal against the annotations and splits the images into training and validation sets
//! by slide or case. The classifier's training reads the result; see `docs/dataset.md` for the
//! file formats, the counts and the reasons behind each rule.
//!
//! # Images and annotations
//!
//! | source | images | figures | look-alikes | group |
//! |---|---|---|---|---|
//! | ICPR-2012 | all 50 patches (`labels.csv`), 30 of them without a figure | mask centroids | none | the high-power field (`A00_01`) |
//! | MIDOG-2021 | the 600 crops of `selection.csv` | every MIDOG 2021 figure inside the crop | the MIDOG 2021 imposters inside it | the slide (`125.tiff`) |
//! | TUPAC-16 | the 117 candidates of `labels.csv` | the centre of a `mitosis` patch | the centre of a `non_mitosis` patch | the case (`30`) |
//!
//! Coordinates are corner-origin pixels (pixel `(i, j)` covers `[i, i + 1) x [j, j + 1)`), as
//! [`mitoscope_core::matching`] and [`mitoscope_core::export::box_centre`] use them.
//!
//! A MIDOG-2021 crop is cut at `[x - 64, x + 64)` around the figure at `(x, y)` of its slide
//! (`selection.csv`), so the MIDOG 2021 annotation database (`midog_annotations/
//! MIDOG2021_MIDOG.json`) gives every other figure and imposter the crop holds: 12 of the 600
//! crops hold 13 more figures, which would otherwise be labelled negatives, and one crop an
//! imposter; 17 figures lie just outside a crop.
//!
//! # Labels
//!
//! [`label_proposals`], with each proposal's box centre as its detection point (the crop the
//! classifier sees is centred there, [`mitoscope_core::crop()`]) and [`MATCH_RADIUS_UM`]:
//!
//! 1. [`Label::Positive`]: the proposal the MIDOG matcher ([`match_image`]) pairs with an
//!    annotated figure.
//! 2. [`Label::HardNegative`]: of the rest, the proposal the matcher pairs with a look-alike.
//! 3. [`Label::Ambiguous`]: of the rest, a proposal whose box centre lies within the radius of a
//!    figure (or of a figure just outside the image): a fragment of the figure, or a second
//!    mask of it. Training leaves these out: a crop centred within 7.5 um of a figure shows the
//!    figure, so calling it a negative would contradict the positive next to it, and calling it a
//!    positive would teach the classifier to report one figure twice.
//! 4. [`Label::Negative`]: everything else (ordinary nuclei, immune cells, debris, fragments of
//!    look-alikes).
//!
//! Each proposal also says whether its classifier crop leaves the image (`padded`). The MIDOG
//! and TUPAC images are small crops centred on a figure or look-alike, so their positives sit in
//! the middle and many of their negatives at the edge: a classifier could learn that zero
//! padding means "not a figure". Training can leave padded crops out or weigh them.
//!
//! # Split
//!
//! [`split_groups`]: whole groups go to training or validation, never single images, so that
//! overlapping patches and crops of one slide stay on one side. Groups are split per stratum
//! (a source, a MIDOG scanner, TUPAC cases with and without look-alikes), the groups of each in
//! an order shuffled by a ChaCha8 generator seeded with `--seed`, and the validation set takes
//! about `--val-fraction` of each stratum's images. The split is made over the whole data
//! before `--every` samples it, so a sample's images keep the split they have in the full run.
//!
//! # Resuming
//!
//! Each image's proposals are appended to `cache.jsonl` in the output folder as soon as they
//! are found. A second run with the same model and settings reads them back instead of running
//! the model again: an interrupted run resumes, and another seed or fraction costs no model
//! time. The other files are written atomically at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};
use mitoscope_core::export::box_centre;
use mitoscope_core::matching::{
    AnnotatedImage, Detection, MATCH_RADIUS_UM, Point, match_image, read_midog_json,
};
use mitoscope_core::wire::WireProposal;
use mitoscope_core::{BBox, CROP, ProposalSettings, crop_centre};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::coverage::{Source, column, number, read_table};
use crate::output::write_atomic;
use crate::propose::{propose_loaded, read_image, to_wire};

/// The seed of the split unless `--seed` gives another.
pub const DEFAULT_SEED: u64 = 42;

/// The share of each stratum's images that goes to validation unless `--val-fraction` says
/// otherwise.
pub const DEFAULT_VAL_FRACTION: f64 = 0.2;

/// Side of the MIDOG-2021 crops (AMi-Br cut them at `[x - 64, x + 64)`).
const MIDOG_CROP: f64 = 128.0;

/// The files `mitoscope dataset` writes in its output folder.
pub const PROPOSALS_FILE: &str = "proposals.jsonl";
/// The split of every group of the data.
pub const SPLIT_FILE: &str = "split.csv";
/// The counts per source and split.
pub const SUMMARY_FILE: &str = "summary.json";
/// The proposals found so far, for resuming.
pub const CACHE_FILE: &str = "cache.jsonl";

/// The side of the split an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training.
    Train,
    /// Validation.
    Val,
}

impl Split {
    /// The name used in the files (`train`, `val`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
        }
    }
}

/// What a proposal is, for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The proposal matched to an annotated mitotic figure.
    Positive,
    /// The proposal matched to an annotated look-alike (a TUPAC-16 non-mitosis candidate or a
    /// MIDOG 2021 imposter).
    HardNegative,
    /// Another proposal within the matching radius of a figure; left out of training.
    Ambiguous,
    /// Any other proposal.
    Negative,
}

impl Label {
    /// Whether training uses proposals with this label.
    pub fn trains(self) -> bool {
        self != Self::Ambiguous
    }

    /// The class the classifier learns: 1 for a mitotic figure, 0 otherwise, `None` for a
    /// proposal left out.
    pub fn class(self) -> Option<u8> {
        match self {
            Self::Positive => Some(1),
            Self::HardNegative | Self::Negative => Some(0),
            Self::Ambiguous => None,
        }
    }
}

/// Reads the image records of a data set that [`run`] wrote (`DATASET/proposals.jsonl`).
///
/// # Errors
///
/// A missing file (the message says how to make it) or a line that is not a record.
pub fn read_records(dataset: &Path) -> Result<Vec<ImageRecord>> {
    let path = dataset.join("proposals.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: make the data set first with `mitoscope dataset --out {}`",
            path.display(),
            dataset.display()
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).with_context(|| {
                format!("{} line {} is not an image record", path.display(), n + 1)
            })
        })
        .collect()
}

/// Reads a record's image from the data folder `data`, checking that it is the image the data
/// set was made from (its size).
///
/// # Errors
///
/// The image cannot be read, or its size is not the record's.
pub fn read_record_image(data: &Path, record: &ImageRecord) -> Result<mitoscope_io::LoadedImage> {
    let image = read_image(&data.join(&record.file))?;
    if (image.width, image.height) != (record.width, record.height) {
        bail!(
            "{} is {} x {} px but the data set says {} x {}: is --data the folder the data set \
             was made from?",
            record.file,
            image.width,
            image.height,
            record.width,
            record.height
        );
    }
    Ok(image)
}

/// One annotated image of the data folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its source.
    pub source: Source,
    /// The file, relative to the data folder, with `/` separators.
    pub file: String,
    /// Pixel size, um/px.
    pub mpp: f64,
    /// The slide, field or case it comes from (`icpr/A00_01`, `midog/125`, `tupac/30`).
    pub group: String,
    /// The stratum its group is split in (`icpr`, `midog/AperioCS2`, `tupac/look-alikes`...).
    pub stratum: String,
    /// Centres of the annotated mitotic figures inside the image.
    pub figures: Vec<Point>,
    /// Centres of the annotated look-alikes inside the image.
    pub look_alikes: Vec<Point>,
    /// Centres of annotated figures just outside the image, within the matching radius of its
    /// edge: proposals near them are ambiguous, not negative.
    pub outside_figures: Vec<Point>,
}

/// Every annotated image of `data` (the `../shared/data` folder): sources in order (ICPR-2012,
/// MIDOG-2021, TUPAC-16), files sorted.
///
/// # Errors
///
/// A missing or malformed annotation table (the message names the file).
pub fn load_items(data: &Path) -> Result<Vec<Item>> {
    let mut items = load_icpr(data)?;
    items.extend(load_midog(data)?);
    items.extend(load_tupac(data)?);
    Ok(items)
}

/// The ICPR-2012 patches, grouped by high-power field.
///
/// Names are `A<slide>_<field>_<patch>.jpg` (with a figure) or `A<slide>_<field>_<i>_<j>.jpg`
/// (without): all 50 come from slide `A00` of scanner A, fields 01 to 09, and patches of one
/// field overlap (the 993 px figure of `A00_01_1` is also in `A00_01_2`). A split by slide would
/// put the whole source on one side; the field is the coarsest group that still splits, and
/// it keeps the overlapping patches together.
fn load_icpr(data: &Path) -> Result<Vec<Item>> {
    let folder = "icpr2012_patches";
    let table = data.join(folder).join("labels.csv");
    let mut figures: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for row in read_table(&table)? {
        let file = column(&row, "file", &table)?.to_string();
        let list = figures.entry(file).or_default();
        if column(&row, "has_mitosis", &table)? == "1" {
            // The centroids are pixel indices; +0.5 makes them corner-origin.
            list.push(Point {
                x: number(&row, "cx", &table)? + 0.5,
                y: number(&row, "cy", &table)? + 0.5,
            });
        }
    }
    figures
        .into_iter()
        .map(|(file, figures)| {
            let parts: Vec<&str> = file.trim_end_matches(".jpg").split('_').collect();
            if parts.len() < 3 {
                bail!(
                    "{}: {file} is not named A<slide>_<field>_<patch>.jpg",
                    table.display()
                );
            }
            Ok(Item {
                source: Source::Icpr,
                file: format!("{folder}/images/{file}"),
                mpp: 0.2456,
                group: format!("icpr/{}_{}", parts[0], parts[1]),
                stratum: "icpr".into(),
                figures,
                look_alikes: Vec::new(),
                outside_figures: Vec::new(),
            })
        })
        .collect()
}

/// The MIDOG-2021 crops, grouped by slide, with every annotation of the MIDOG 2021 database
/// that falls inside them.
fn load_midog(data: &Path) -> Result<Vec<Item>> {
    let folder = "ami-br_midog21_patches";
    let table = data.join(folder).join("selection.csv");
    let database = data.join("midog_annotations").join("MIDOG2021_MIDOG.json");
    let text = std::fs::read_to_string(&database).with_context(|| {
        format!(
            "cannot read {}: the MIDOG 2021 annotations give the other figures in each crop",
            database.display()
        )
    })?;
    let slides: BTreeMap<String, AnnotatedImage> = read_midog_json(&text)
        .with_context(|| format!("{} is not a MIDOG annotation file", database.display()))?
        .into_iter()
        .map(|image| (image.file_name.clone(), image))
        .collect();

    let mut rows = read_table(&table)?;
    rows.sort_by(|a, b| a.get("file").cmp(&b.get("file")));
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let scanner = column(&row, "scanner", &table)?;
        let mpp = match scanner {
            "AperioCS2" => 0.25,
            s if s.starts_with("Hamamatsu") => 0.23,
            other => bail!("{}: unknown scanner {other}", table.display()),
        };
        let slide = column(&row, "slide", &table)?;
        let annotated = slides.get(slide).with_context(|| {
            format!(
                "{}: slide {slide} is not in {}",
                table.display(),
                database.display()
            )
        })?;
        let (x, y) = (number(&row, "x", &table)?, number(&row, "y", &table)?);
        // Slide coordinates to crop coordinates.
        let to_crop = |p: &Point| Point {
            x: p.x - x + MIDOG_CROP / 2.0,
            y: p.y - y + MIDOG_CROP / 2.0,
        };
        let radius = MATCH_RADIUS_UM / mpp;
        let inside =
            |p: &Point| (0.0..MIDOG_CROP).contains(&p.x) && (0.0..MIDOG_CROP).contains(&p.y);
        let near = |p: &Point| {
            let gap = |v: f64| (-v).max(v - MIDOG_CROP).max(0.0);
            gap(p.x).hypot(gap(p.y)) <= radius
        };
        let all: Vec<Point> = annotated.figures.iter().map(to_crop).collect();
        let mut figures: Vec<Point> = all.iter().copied().filter(inside).collect();
        let centre = Point {
            x: MIDOG_CROP / 2.0,
            y: MIDOG_CROP / 2.0,
        };
        // The crop's own figure is in the database (within a pixel, `x, y` being rounded);
        // should it be missing, the crop centre stands for it.
        if !figures.iter().any(|f| distance(*f, centre) <= 2.0) {
            figures.push(centre);
        }
        items.push(Item {
            source: Source::Midog,
            file: format!("{folder}/{}", column(&row, "file", &table)?),
            mpp,
            group: format!("midog/{}", slide.trim_end_matches(".tiff")),
            stratum: format!("midog/{scanner}"),
            figures,
            look_alikes: annotated
                .hard_negatives
                .iter()
                .map(to_crop)
                .filter(inside)
                .collect(),
            outside_figures: all.into_iter().filter(|p| !inside(p) && near(p)).collect(),
        });
    }
    Ok(items)
}

/// The TUPAC-16 candidates, grouped by case; cases with look-alikes form their own stratum so
/// that both sides of the split get some.
fn load_tupac(data: &Path) -> Result<Vec<Item>> {
    let folder = "tupac16_mitosis_candidates_prlab";
    let table = data.join(folder).join("labels.csv");
    let mut rows = read_table(&table)?;
    rows.sort_by(|a, b| a.get("file").cmp(&b.get("file")));
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let (w, h) = (
            number(&row, "width", &table)?,
            number(&row, "height", &table)?,
        );
        let centre = vec![Point {
            x: w / 2.0,
            y: h / 2.0,
        }];
        let (figures, look_alikes) = match column(&row, "label", &table)? {
            "mitosis" => (centre, Vec::new()),
            "non_mitosis" => (Vec::new(), centre),
            other => bail!(
                "{}: unknown label {other} (expected mitosis or non_mitosis)",
                table.display()
            ),
        };
        items.push(Item {
            source: Source::Tupac,
            file: format!("{folder}/{}", column(&row, "file", &table)?),
            mpp: 0.25,
            group: format!("tupac/{}", column(&row, "case", &table)?),
            stratum: String::new(),
            figures,
            look_alikes,
            outside_figures: Vec::new(),
        });
    }
    let with_look_alikes: BTreeSet<String> = items
        .iter()
        .filter(|i| !i.look_alikes.is_empty())
        .map(|i| i.group.clone())
        .collect();
    for item in &mut items {
        item.stratum = if with_look_alikes.contains(&item.group) {
            "tupac/look-alikes".into()
        } else {
            "tupac/mitoses".into()
        };
    }
    Ok(items)
}

fn distance(a: Point, b: Point) -> f64 {
    (a.x - b.x).hypot(a.y - b.y)
}

/// Every `every`-th item of each source, starting with the first: a fixed, spread-out sample.
pub fn sample(items: &[Item], every: usize) -> Vec<Item> {
    crate::coverage::every_nth_per_source(items, every, |item| item.source)
}

// ---------------------------------------------------------------------------------------------
// Split
// ---------------------------------------------------------------------------------------------

/// One group and the side it is on (a row of `split.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSplit {
    /// The group (`midog/125`...).
    pub group: String,
    /// Its source.
    pub source: Source,
    /// The stratum it was split in.
    pub stratum: String,
    /// Its images in the whole data.
    pub images: usize,
    /// Its side.
    pub split: Split,
}

/// Splits the groups of `items` into training and validation: a pure function of the items,
/// the seed and the fraction.
///
/// Per stratum, the groups (sorted by name) are shuffled by a ChaCha8 generator seeded with
/// `seed` on a stream named after the stratum, then taken in that order: a group goes to
/// validation when adding its images brings the validation images closer to
/// `val_fraction` of the stratum's images. A stratum of two or more groups keeps at least one
/// on each side when `val_fraction` is above 0. The result is sorted by group.
///
/// # Errors
///
/// `val_fraction` outside `[0, 1)`, or a group found in two sources or strata.
pub fn split_groups(items: &[Item], seed: u64, val_fraction: f64) -> Result<Vec<GroupSplit>> {
    if !(0.0..1.0).contains(&val_fraction) {
        bail!("--val-fraction {val_fraction} must lie in [0, 1) (0.2 puts a fifth in validation)");
    }
    let mut groups: BTreeMap<&str, GroupSplit> = BTreeMap::new();
    for item in items {
        let group = groups
            .entry(item.group.as_str())
            .or_insert_with(|| GroupSplit {
                group: item.group.clone(),
                source: item.source,
                stratum: item.stratum.clone(),
                images: 0,
                split: Split::Train,
            });
        if group.source != item.source || group.stratum != item.stratum {
            bail!(
                "group {} holds images of two sources or strata ({}, {})",
                item.group,
                group.stratum,
                item.stratum
            );
        }
        group.images += 1;
    }

    let mut strata: BTreeMap<String, Vec<&mut GroupSplit>> = BTreeMap::new();
    for group in groups.values_mut() {
        strata.entry(group.stratum.clone()).or_default().push(group);
    }
    for (stratum, mut members) in strata {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(fnv1a(stratum.as_bytes()));
        shuffle(&mut members, &mut rng);

        let total: usize = members.iter().map(|g| g.images).sum();
        let target = val_fraction * total as f64;
        let mut val = 0usize;
        let mut picked = vec![false; members.len()];
        for (k, group) in members.iter().enumerate() {
            let with = (val + group.images) as f64;
            if (with - target).abs() < (val as f64 - target).abs() {
                picked[k] = true;
                val += group.images;
            }
        }
        if val_fraction > 0.0 && members.len() >= 2 {
            if !picked.contains(&true) {
                picked[0] = true;
            }
            if !picked.contains(&false) {
                let last = picked.len() - 1;
                picked[last] = false;
            }
        }
        for (group, picked) in members.iter_mut().zip(picked) {
            group.split = if picked { Split::Val } else { Split::Train };
        }
    }
    Ok(groups.into_values().collect())
}

/// Fisher-Yates with a bounded draw by multiplication (its bias, under `n / 2^64`, is far below
/// anything a split of a few hundred groups could show). Written out rather than taken from
/// `rand` so that a seed gives the same split across library versions.
fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        items.swap(i, j);
    }
}

/// The 64-bit FNV-1a hash: a stable name for a stratum's random stream.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The split as CSV: `group,source,stratum,images,split`, one row per group.
pub fn split_csv(groups: &[GroupSplit]) -> String {
    let mut out = String::from("group,source,stratum,images,split\n");
    for g in groups {
        out += &format!(
            "{},{},{},{},{}\n",
            g.group,
            g.source.name(),
            g.stratum,
            g.images,
            g.split.name()
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// The labels of one image's proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// One label per proposal, in their order.
    pub labels: Vec<Label>,
    /// Figures that no proposal was matched to.
    pub unmatched_figures: usize,
    /// Look-alikes that no proposal was matched to.
    pub unmatched_look_alikes: usize,
}

/// Labels proposals against an image's annotations (see the module for the rules);
/// `radius_px` is [`MATCH_RADIUS_UM`] in pixels.
///
/// # Errors
///
/// A non-finite coordinate or radius, or a negative radius.
pub fn label_proposals(
    proposals: &[WireProposal],
    figures: &[Point],
    look_alikes: &[Point],
    outside_figures: &[Point],
    radius_px: f64,
) -> Result<Labelled> {
    let detections: Vec<Detection> = proposals
        .iter()
        .map(|p| {
            let [x, y] = box_centre(&p.bbox);
            Detection {
                x,
                y,
                score: f64::from(p.predicted_iou),
            }
        })
        .collect();
    let mut labels = vec![Label::Negative; proposals.len()];

    // Figures take their proposals first.
    let matched = match_image(&detections, figures, radius_px)?;
    for &(i, _) in &matched.pairs {
        labels[i] = Label::Positive;
    }

    // Look-alikes take theirs among the rest.
    let rest: Vec<usize> = (0..proposals.len())
        .filter(|&i| labels[i] == Label::Negative)
        .collect();
    let rest_detections: Vec<Detection> = rest.iter().map(|&i| detections[i]).collect();
    let matched_look_alikes = match_image(&rest_detections, look_alikes, radius_px)?;
    for &(k, _) in &matched_look_alikes.pairs {
        labels[rest[k]] = Label::HardNegative;
    }

    // Whatever else lies within the radius of a figure is a part or a double of it.
    for (label, d) in labels.iter_mut().zip(&detections) {
        let near = figures
            .iter()
            .chain(outside_figures)
            .any(|f| distance(d.point(), *f) <= radius_px);
        if *label == Label::Negative && near {
            *label = Label::Ambiguous;
        }
    }

    Ok(Labelled {
        labels,
        unmatched_figures: figures.len() - matched.pairs.len(),
        unmatched_look_alikes: look_alikes.len() - matched_look_alikes.pairs.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A proposal with its label (its fields are those of [`WireProposal`] plus `label`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledProposal {
    /// The proposal as the server sends it: box, box-relative mask runs, scores, area.
    #[serde(flatten)]
    pub proposal: WireProposal,
    /// Its label.
    pub label: Label,
    /// Whether its classifier crop leaves the image (and is padded with zeros there).
    pub padded: bool,
}

/// One image of the data set: a line of `proposals.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its source.
    pub source: Source,
    /// The image file, relative to the data folder.
    pub file: String,
    /// Pixel size, um/px.
    pub mpp: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The slide, field or case it belongs to.
    pub group: String,
    /// The side of the split.
    pub split: Split,
    /// Annotated mitotic figures (corner-origin pixels).
    pub figures: Vec<Point>,
    /// Annotated look-alikes.
    pub look_alikes: Vec<Point>,
    /// Annotated figures just outside the image (see [`Item::outside_figures`]).
    pub outside_figures: Vec<Point>,
    /// Figures that no proposal was matched to.
    pub unmatched_figures: usize,
    /// Look-alikes that no proposal was matched to.
    pub unmatched_look_alikes: usize,
    /// The proposals with their labels.
    pub proposals: Vec<LabelledProposal>,
}

/// The first line of `cache.jsonl`: what made the proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheHeader {
    /// The proposal model's name.
    model: String,
    /// The checkpoint given with `--sam`, if any.
    checkpoint: Option<String>,
    /// The proposal stage's settings.
    settings: ProposalSettings,
}

/// One image's proposals in `cache.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheLine {
    file: String,
    width: u32,
    height: u32,
    seconds: f64,
    proposals: Vec<WireProposal>,
}

/// Reads the cache of an earlier run: its valid lines by file, and the text of those lines.
/// A line cut short by an interrupted run ends the cache.
fn read_cache(path: &Path, header: &CacheHeader) -> Result<(BTreeMap<String, CacheLine>, String)> {
    let mut lines = BTreeMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((lines, String::new())),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut rows = text.lines();
    let Some(first) = rows.next() else {
        return Ok((lines, String::new()));
    };
    let found: CacheHeader = serde_json::from_str(first).with_context(|| {
        format!(
            "{} is not a proposal cache of mitoscope dataset: delete it or choose another --out",
            path.display()
        )
    })?;
    if &found != header {
        bail!(
            "{} holds proposals made by another model or with other settings ({}{}): delete it \
             to start over, or choose another --out",
            path.display(),
            found.model,
            found
                .checkpoint
                .map(|c| format!(", {c}"))
                .unwrap_or_default()
        );
    }
    let mut kept = format!("{first}\n");
    for row in rows {
        let Ok(line) = serde_json::from_str::<CacheLine>(row) else {
            tracing::warn!("the cache ends in an incomplete line; its image runs again");
            break;
        };
        kept += row;
        kept.push('\n');
        lines.insert(line.file.clone(), line);
    }
    Ok((lines, kept))
}

// ---------------------------------------------------------------------------------------------
// Counts
// ---------------------------------------------------------------------------------------------

/// Counts of one source and split (or of all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Images.
    pub images: usize,
    /// Groups (slides, fields, cases).
    pub groups: usize,
    /// Proposals.
    pub proposals: usize,
    /// Proposals labelled positive.
    pub positives: usize,
    /// Proposals labelled hard negative.
    pub hard_negatives: usize,
    /// Proposals labelled ambiguous (left out of training).
    pub ambiguous: usize,
    /// Proposals labelled negative.
    pub negatives: usize,
    /// Annotated figures.
    pub figures: usize,
    /// Figures without a matched proposal.
    pub unmatched_figures: usize,
    /// Annotated look-alikes.
    pub look_alikes: usize,
    /// Look-alikes without a matched proposal.
    pub unmatched_look_alikes: usize,
    /// Proposals whose crop leaves the image.
    pub padded: usize,
    /// Positives whose crop leaves the image.
    pub padded_positives: usize,
}

/// One row of the summary: a source (or `all`) and a split (or `all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// `ICPR-2012`, `MIDOG-2021`, `TUPAC-16` or `all`.
    pub source: String,
    /// `train`, `val` or `all`.
    pub split: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// `summary.json`: how the data set was made and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The proposal model.
    pub model: String,
    /// The split's seed.
    pub seed: u64,
    /// The validation share asked for.
    pub val_fraction: f64,
    /// Every N-th image of each source was used (1: all).
    pub every: usize,
    /// Matching radius, um.
    pub radius_um: f64,
    /// Counts per source (train, val, all), then over all sources (train, val, all).
    pub rows: Vec<SummaryRow>,
}

/// The counts of `records`: per source and split, per split over all sources, and overall.
pub fn count(records: &[ImageRecord]) -> Vec<SummaryRow> {
    type Key = (Option<Source>, Option<Split>);
    let mut counts: BTreeMap<Key, (Counts, BTreeSet<&str>)> = BTreeMap::new();
    for r in records {
        for key in [
            (Some(r.source), Some(r.split)),
            (Some(r.source), None),
            (None, Some(r.split)),
            (None, None),
        ] {
            let (c, groups) = counts.entry(key).or_default();
            groups.insert(&r.group);
            c.groups = groups.len();
            c.images += 1;
            c.proposals += r.proposals.len();
            for p in &r.proposals {
                c.padded += usize::from(p.padded);
                c.padded_positives += usize::from(p.padded && p.label == Label::Positive);
                match p.label {
                    Label::Positive => c.positives += 1,
                    Label::HardNegative => c.hard_negatives += 1,
                    Label::Ambiguous => c.ambiguous += 1,
                    Label::Negative => c.negatives += 1,
                }
            }
            c.figures += r.figures.len();
            c.unmatched_figures += r.unmatched_figures;
            c.look_alikes += r.look_alikes.len();
            c.unmatched_look_alikes += r.unmatched_look_alikes;
        }
    }
    // Sources first, `all` last (None sorts first, so order by the presence flag).
    let mut rows: Vec<(Key, Counts)> = counts.into_iter().map(|(k, (c, _))| (k, c)).collect();
    rows.sort_by_key(|((source, split), _)| (source.is_none(), *source, split.is_none(), *split));
    rows.into_iter()
        .map(|((source, split), counts)| SummaryRow {
            source: source.map_or("all", Source::name).into(),
            split: split.map_or("all", Split::name).into(),
            counts,
        })
        .collect()
}

/// The summary rows as a Markdown table.
pub fn table(rows: &[SummaryRow]) -> String {
    let mut out = String::from(
        "| source | split | images | groups | proposals | positives | hard negatives | \
         ambiguous | negatives | figures | unmatched figures | look-alikes | unmatched \
         look-alikes | padded | padded positives |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.counts;
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.source,
            r.split,
            c.images,
            c.groups,
            c.proposals,
            c.positives,
            c.hard_negatives,
            c.ambiguous,
            c.negatives,
            c.figures,
            c.unmatched_figures,
            c.look_alikes,
            c.unmatched_look_alikes,
            c.padded,
            c.padded_positives
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

/// What `mitoscope dataset` was asked to do.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// The data folder (`../shared/data`).
    pub data: PathBuf,
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// Use every N-th image of each source (1: all).
    pub every: usize,
    /// The split's seed.
    pub seed: u64,
    /// The share of each stratum's images for validation.
    pub val_fraction: f64,
    /// A published SAM checkpoint instead of the embedded LiteMedSAM.
    pub sam: Option<PathBuf>,
    /// Show a progress bar (when standard error is a terminal).
    pub progress: bool,
}

/// Runs `mitoscope dataset`: proposals for each image (from the cache where it has them),
/// labels, split, and the files of the output folder; returns the summary it wrote.
///
/// # Errors
///
/// A missing data folder or annotation table, an unreadable image, a failing proposal stage,
/// a cache made with other settings, an output that cannot be written.
pub fn run(options: &DatasetOptions, device: &Device) -> Result<Summary> {
    let started = Instant::now();
    let data = &options.data;
    if !data.is_dir() {
        bail!(
            "{} is not a folder: give the data folder with --data",
            data.display()
        );
    }
    let items = load_items(data)?;
    let groups = split_groups(&items, options.seed, options.val_fraction)?;
    let side: BTreeMap<&str, Split> = groups.iter().map(|g| (g.group.as_str(), g.split)).collect();
    let chosen = sample(&items, options.every);
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create the output folder {}", options.out.display()))?;

    let sam = crate::load_sam(options.sam.as_deref(), device)?;
    let settings = sam.config().default_proposal_settings();
    let header = CacheHeader {
        model: sam.config().name.clone(),
        checkpoint: options.sam.as_ref().map(|p| p.display().to_string()),
        settings: settings.clone(),
    };
    let cache_path = options.out.join(CACHE_FILE);
    let (cached, kept) = read_cache(&cache_path, &header)?;
    let kept = if kept.is_empty() {
        serde_json::to_string(&header)? + "\n"
    } else {
        kept
    };
    // Start from the valid part of the cache, then append one line per image as it is done.
    write_atomic(&cache_path, kept.as_bytes())?;
    let mut cache = std::fs::OpenOptions::new()
        .append(true)
        .open(&cache_path)
        .with_context(|| format!("cannot write {}", cache_path.display()))?;
    tracing::info!(
        images = chosen.len(),
        cached = chosen.iter().filter(|i| cached.contains_key(&i.file)).count(),
        model = %header.model,
        "building the data set"
    );

    let bar = if options.progress {
        ProgressBar::new(chosen.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} images {pos}/{len} {wide_bar} {elapsed} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut records = Vec::with_capacity(chosen.len());
    for (n, item) in chosen.iter().enumerate() {
        let line = match cached.get(&item.file) {
            Some(line) => line.clone(),
            None => {
                let line = propose_item(&sam, &settings, data, item)?;
                let text = serde_json::to_string(&line)? + "\n";
                cache
                    .write_all(text.as_bytes())
                    .and_then(|()| cache.flush())
                    .with_context(|| format!("cannot write {}", cache_path.display()))?;
                line
            }
        };
        let from_cache = cached.contains_key(&item.file);
        let seconds = line.seconds;
        let record = label_item(item, side[item.group.as_str()], line)?;
        let positives = record
            .proposals
            .iter()
            .filter(|p| p.label == Label::Positive)
            .count();
        let hard = record
            .proposals
            .iter()
            .filter(|p| p.label == Label::HardNegative)
            .count();
        bar.suspend(|| {
            eprintln!(
                "[{}/{}] {} {} ({}): {} proposals, {positives} positive, {hard} hard negative, \
                 {}/{} figures matched, {seconds:.1} s{}",
                n + 1,
                chosen.len(),
                item.source.name(),
                item.file,
                record.split.name(),
                record.proposals.len(),
                record.figures.len() - record.unmatched_figures,
                record.figures.len(),
                if from_cache { " (cached)" } else { "" },
            );
        });
        bar.inc(1);
        records.push(record);
    }
    bar.finish_and_clear();

    let summary = Summary {
        model: header.model,
        seed: options.seed,
        val_fraction: options.val_fraction,
        every: options.every.max(1),
        radius_um: MATCH_RADIUS_UM,
        rows: count(&records),
    };
    let mut jsonl = String::new();
    for r in &records {
        jsonl += &serde_json::to_string(r)?;
        jsonl.push('\n');
    }
    write_atomic(&options.out.join(PROPOSALS_FILE), jsonl.as_bytes())?;
    write_atomic(&options.out.join(SPLIT_FILE), split_csv(&groups).as_bytes())?;
    write_atomic(
        &options.out.join(SUMMARY_FILE),
        (serde_json::to_string_pretty(&summary)? + "\n").as_bytes(),
    )?;
    tracing::info!(
        images = records.len(),
        seconds = started.elapsed().as_secs_f64(),
        "data set written"
    );
    eprintln!(
        "wrote {PROPOSALS_FILE}, {SPLIT_FILE} and {SUMMARY_FILE} to {}",
        options.out.display()
    );
    Ok(summary)
}

/// Runs the proposal stage on one item.
fn propose_item(
    sam: &mitoscope_models::sam::Sam,
    settings: &ProposalSettings,
    data: &Path,
    item: &Item,
) -> Result<CacheLine> {
    let started = Instant::now();
    let image = read_image(&data.join(&item.file))?;
    let found = propose_loaded(sam, &image, settings, item.mpp, false)
        .with_context(|| format!("proposals of {}", item.file))?;
    Ok(CacheLine {
        file: item.file.clone(),
        width: image.width,
        height: image.height,
        seconds: started.elapsed().as_secs_f64(),
        proposals: found
            .proposals
            .iter()
            .map(|p| to_wire(p, item.mpp))
            .collect(),
    })
}

/// Whether the classifier's crop around `bbox` ([`mitoscope_core::crop()`]) leaves a
/// `width x height` image.
pub fn crop_is_padded(bbox: &BBox, width: u32, height: u32) -> bool {
    let [cx, cy] = crop_centre(bbox);
    let half = CROP / 2;
    let fits = |c: u32, side: u32| c >= half && u64::from(c) + u64::from(half) <= u64::from(side);
    !(fits(cx, width) && fits(cy, height))
}

/// Labels one item's proposals.
fn label_item(item: &Item, split: Split, line: CacheLine) -> Result<ImageRecord> {
    let labelled = label_proposals(
        &line.proposals,
        &item.figures,
        &item.look_alikes,
        &item.outside_figures,
        MATCH_RADIUS_UM / item.mpp,
    )
    .with_context(|| format!("labels of {}", item.file))?;
    Ok(ImageRecord {
        source: item.source,
        file: item.file.clone(),
        mpp: item.mpp,
        width: line.width,
        height: line.height,
        group: item.group.clone(),
        split,
        figures: item.figures.clone(),
        look_alikes: item.look_alikes.clone(),
        outside_figures: item.outside_figures.clone(),
        unmatched_figures: labelled.unmatched_figures,
        unmatched_look_alikes: labelled.unmatched_look_alikes,
        proposals: line
            .proposals
            .into_iter()
            .zip(labelled.labels)
            .map(|(proposal, label)| LabelledProposal {
                padded: crop_is_padded(&proposal.bbox, line.width, line.height),
                proposal,
                label,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shuffle_is_a_fixed_permutation_per_seed() {
        let run = |seed| {
            let mut v: Vec<u32> = (0..20).collect();
            shuffle(&mut v, &mut ChaCha8Rng::seed_from_u64(seed));
            v
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<u32>>());
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_cut_cache_line_ends_the_cache_and_other_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CACHE_FILE);
        let header = CacheHeader {
            model: "LiteMedSAM".into(),
            checkpoint: None,
            settings: ProposalSettings::lite_medsam(),
        };
        let line = CacheLine {
            file: "a.png".into(),
            width: 8,
            height: 8,
            seconds: 1.0,
            proposals: Vec::new(),
        };
        let text = format!(
            "{}\n{}\n{{\"file\":\"b.p",
            serde_json::to_string(&header).unwrap(),
            serde_json::to_string(&line).unwrap()
        );
        std::fs::write(&path, &text).unwrap();
        let (lines, kept) = read_cache(&path, &header).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines["a.png"], line);
        assert!(text.starts_with(&kept) && kept.ends_with("}\n"));

        let other = CacheHeader {
            settings: ProposalSettings::default(),
            ..header
        };
        let err = read_cache(&path, &other).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
        assert!(
            read_cache(&dir.path().join("none"), &other)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[test]
    fn labels_decide_what_trains() {
        assert_eq!(Label::Positive.class(), Some(1));
        assert_eq!(Label::HardNegative.class(), Some(0));
        assert_eq!(Label::Negative.class(), Some(0));
        assert_eq!(Label::Ambiguous.class(), None);
        assert!(!Label::Ambiguous.trains() && Label::HardNegative.trains());
        assert_eq!(
            serde_json::to_string(&Label::HardNegative).unwrap(),
            "\"hard_negative\""
        );
    }
}
