//! `mitoscope report`: how a classifier (one checkpoint or an ensemble) detects mitotic figures on
//! the images of a data set that `mitoscope dataset` wrote, measured the way the field does.
//!
//! Every proposal of every image on the chosen side of the split is cropped and classified, as
//! `mitoscope detect` would (padded crops and ambiguous proposals included: at inference nothing
//! tells them apart). A proposal whose probability is strictly above the threshold is a
//! detection at its box centre. Per image:
//!
//! 0. a detection within 7.5 um of a surer one is dropped as a repeat, as `mitoscope detect`
//!    does (`mitoscope_core::repeats`; kept with `--keep-repeats`);
//! 1. detections are matched to the annotated figures with the MIDOG rule (7.5 um, nearest
//!    first): matched ones are TP, figures left over are FN;
//! 2. the detections left are matched the same way to the figures just outside the image (the
//!    MIDOG crops cut through some, see `docs/dataset.md`): those are neither TP nor FP, as no
//!    annotation says what they are;
//! 3. the detections still left are matched to the annotated look-alikes (TUPAC-16
//!    non-mitoses, MIDOG 2021 imposters): a matched look-alike is one "called mitotic";
//! 4. every detection not matched in step 1 or 2 is an FP (look-alikes included); an FP
//!    within the radius of an annotated figure is also counted as a repeat (a second detection
//!    of a figure, often a fragment of it: the two halves of an anaphase).
//!
//! The counts are summed per source and overall, at the threshold given and at a sweep of
//! thresholds (the sweep is for reading, not for choosing the default on the same images).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};
use mitoscope_core::matching::{Counts, Detection, MATCH_RADIUS_UM, match_image};
use mitoscope_core::{REPEAT_RADIUS_UM, repeats};
use serde::{Deserialize, Serialize};

use crate::dataset::{ImageRecord, Split};
use crate::output::write_atomic;

/// The thresholds of the sweep.
const SWEEP: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Which images the report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitChoice {
    /// The validation split (images the classifier did not train on).
    Val,
    /// The training split.
    Train,
    /// Every image.
    All,
}

impl SplitChoice {
    fn covers(self, split: Split) -> bool {
        match self {
            Self::Val => split == Split::Val,
            Self::Train => split == Split::Train,
            Self::All => true,
        }
    }
}

/// What `mitoscope report` is asked.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The folder `mitoscope dataset` wrote.
    pub dataset: PathBuf,
    /// The data folder its image paths are relative to.
    pub data: PathBuf,
    /// The classifier checkpoints (an ensemble when several); the embedded default when empty.
    pub classifiers: Vec<PathBuf>,
    /// Which images.
    pub split: SplitChoice,
    /// The detection threshold (a detection's probability is strictly above it).
    pub threshold: f64,
    /// Whether proposals whose crop leaves the image (zero-padded crops) are left out of the
    /// detections, as `mitoscope detect --skip-border` does.
    pub skip_border: bool,
    /// Whether detections near a surer one are kept, as OMG-Net keeps them
    /// (`mitoscope detect --keep-repeats`).
    pub keep_repeats: bool,
    /// Where the JSON report goes, if anywhere.
    pub out: Option<PathBuf>,
    /// Whether to draw a progress bar.
    pub progress: bool,
}

/// The counts of one source (or of all) at one threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Images counted.
    pub images: u64,
    /// TP, FP and FN of the detections against the figures.
    pub counts: Counts,
    /// Detections next to a figure just outside their image, counted neither way.
    pub near_outside_figures: u64,
    /// Annotated look-alikes.
    pub look_alikes: u64,
    /// Look-alikes with a detection (not matched to a figure) within the radius.
    pub look_alikes_called: u64,
    /// False positives within the radius of an annotated figure: repeats of a figure.
    #[serde(default)]
    pub repeats: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.images += other.images;
        self.counts.tp += other.counts.tp;
        self.counts.fp += other.counts.fp;
        self.counts.fn_ += other.counts.fn_;
        self.near_outside_figures += other.near_outside_figures;
        self.look_alikes += other.look_alikes;
        self.look_alikes_called += other.look_alikes_called;
        self.repeats += other.repeats;
    }

    /// The fraction of look-alikes called mitotic; `None` without look-alikes.
    pub fn look_alike_rate(&self) -> Option<f64> {
        (self.look_alikes > 0).then(|| self.look_alikes_called as f64 / self.look_alikes as f64)
    }
}

/// One row of the report: a source (or `all`) at one threshold, with its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The source's name, or `all`.
    pub source: String,
    /// The threshold.
    pub threshold: f64,
    /// The counts.
    #[serde(flatten)]
    pub tally: Tally,
    /// Precision (`None` without detections).
    pub precision: Option<f64>,
    /// Recall (`None` without figures).
    pub recall: Option<f64>,
    /// F1.
    pub f1: Option<f64>,
    /// The fraction of look-alikes called mitotic.
    pub look_alike_rate: Option<f64>,
}

impl Row {
    fn new(source: &str, threshold: f64, tally: Tally) -> Self {
        Self {
            source: source.into(),
            threshold,
            precision: tally.counts.precision(),
            recall: tally.counts.recall(),
            f1: tally.counts.f1(),
            look_alike_rate: tally.look_alike_rate(),
            tally,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The classifiers, as given (or `embedded:...`).
    pub classifiers: Vec<String>,
    /// Which images.
    pub split: SplitChoice,
    /// The matching radius, um.
    pub radius_um: f64,
    /// Whether proposals whose crop leaves the image were left out.
    pub skip_border: bool,
    /// Detections within this distance (um) of a surer one were dropped as repeats; `null`:
    /// kept.
    #[serde(default)]
    pub repeat_radius_um: Option<f64>,
    /// Proposals classified.
    pub proposals: u64,
    /// Per source and `all`, at the threshold asked.
    pub rows: Vec<Row>,
    /// `all` at each threshold of the sweep.
    pub sweep: Vec<Row>,
}

/// One image's classified proposals, kept for scoring at several thresholds.
struct Scored {
    source: &'static str,
    record: ImageRecord,
    /// Detection points (box centres) with their probabilities.
    detections: Vec<Detection>,
}

/// Scores one image at `threshold`, dropping the repeats within `repeat_radius_um` (see the
/// module documentation).
fn tally(scored: &Scored, threshold: f64, repeat_radius_um: Option<f64>) -> Result<Tally> {
    let record = &scored.record;
    let radius = MATCH_RADIUS_UM / record.mpp;
    let above: Vec<Detection> = scored
        .detections
        .iter()
        .filter(|d| d.score > threshold)
        .copied()
        .collect();
    let repeat = match repeat_radius_um {
        Some(um) => repeats(&above, um / record.mpp),
        None => vec![false; above.len()],
    };
    let detections: Vec<Detection> = above
        .into_iter()
        .zip(repeat)
        .filter(|(_, repeat)| !repeat)
        .map(|(d, _)| d)
        .collect();
    let figures = match_image(&detections, &record.figures, radius)?;
    let mut left = unmatched(&detections, &figures.pairs);
    let outside = match_image(&left, &record.outside_figures, radius)?;
    let near_outside = outside.pairs.len() as u64;
    left = unmatched(&left, &outside.pairs);
    let repeats = left
        .iter()
        .filter(|d| {
            record
                .figures
                .iter()
                .any(|f| (f.x - d.x).hypot(f.y - d.y) <= radius)
        })
        .count() as u64;
    let look_alikes = match_image(&left, &record.look_alikes, radius)?;
    Ok(Tally {
        images: 1,
        counts: Counts {
            tp: figures.counts.tp,
            fp: left.len() as u64,
            fn_: figures.counts.fn_,
        },
        near_outside_figures: near_outside,
        look_alikes: record.look_alikes.len() as u64,
        look_alikes_called: look_alikes.pairs.len() as u64,
        repeats,
    })
}

/// The detections of `detections` that no pair of `pairs` uses.
fn unmatched(detections: &[Detection], pairs: &[(usize, usize)]) -> Vec<Detection> {
    let mut used = vec![false; detections.len()];
    for &(d, _) in pairs {
        used[d] = true;
    }
    detections
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(d, _)| *d)
        .collect()
}

/// Rows per source (in name order) and `all` at `threshold`.
fn rows(scored: &[Scored], threshold: f64, repeat_radius_um: Option<f64>) -> Result<Vec<Row>> {
    let mut by_source: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    for image in scored {
        let t = tally(image, threshold, repeat_radius_um)?;
        by_source.entry(image.source).or_default().add(&t);
        all.add(&t);
    }
    let mut rows: Vec<Row> = by_source
        .into_iter()
        .map(|(source, t)| Row::new(source, threshold, t))
        .collect();
    rows.push(Row::new("all", threshold, all));
    Ok(rows)
}

/// Runs `mitoscope report` and returns the report (also printed as a table, and written as JSON
/// to `options.out`).
///
/// # Errors
///
/// An unreadable data set or image, a classifier that cannot be loaded, a threshold outside
/// `[0, 1)`, a report that cannot be written.
pub fn run(options: &ReportOptions, device: &Device) -> Result<Report> {
    if !(0.0..1.0).contains(&options.threshold) {
        bail!("--threshold must be a probability in [0, 1)");
    }
    let ensemble = crate::load_classifier(&options.classifiers, device)?;
    let records: Vec<ImageRecord> = crate::dataset::read_records(&options.dataset)?
        .into_iter()
        .filter(|r| options.split.covers(r.split))
        .collect();
    if records.is_empty() {
        bail!(
            "{} has no image on that side of the split",
            options.dataset.display()
        );
    }
    let bar = if options.progress {
        ProgressBar::new(records.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} image {pos}/{len} {wide_bar} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut scored = Vec::with_capacity(records.len());
    let mut proposals = 0u64;
    for record in records {
        let image = crate::dataset::read_record_image(&options.data, &record)?;
        let mut crops = Vec::with_capacity(record.proposals.len());
        let mut points = Vec::with_capacity(record.proposals.len());
        for p in &record.proposals {
            if options.skip_border && p.padded {
                continue;
            }
            let rle = p.proposal.rle()?;
            crops.push(mitoscope_core::crop(
                &image.rgb,
                image.width,
                image.height,
                &rle,
            )?);
            points.push(mitoscope_core::export::box_centre(&rle.bbox));
        }
        let probabilities = ensemble.classify(&crops)?;
        proposals += crops.len() as u64;
        let detections = points
            .iter()
            .zip(&probabilities)
            .map(|(&[x, y], &p)| Detection {
                x,
                y,
                score: f64::from(p),
            })
            .collect();
        scored.push(Scored {
            source: record.source.name(),
            record,
            detections,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let repeat_radius_um = (!options.keep_repeats).then_some(REPEAT_RADIUS_UM);
    let report = Report {
        classifiers: ensemble.sources().to_vec(),
        split: options.split,
        radius_um: MATCH_RADIUS_UM,
        skip_border: options.skip_border,
        repeat_radius_um,
        proposals,
        rows: rows(&scored, options.threshold, repeat_radius_um)?,
        sweep: SWEEP
            .iter()
            .map(|&t| {
                rows(&scored, t, repeat_radius_um)
                    .map(|r| r.into_iter().last().expect("the `all` row"))
            })
            .collect::<Result<_>>()?,
    };
    // A closed pipe (`| head`) is not an error of the report.
    let _ = writeln!(std::io::stdout(), "{}", table(&report));
    if let Some(out) = &options.out {
        write_atomic(out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(report)
}

/// The report as Markdown tables.
pub fn table(report: &Report) -> String {
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
    let mut out = String::from(
        "| source | images | TP | FP | FN | precision | recall | F1 | look-alikes called | FP repeating a figure |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let line = |row: &Row, first: String| {
        let t = &row.tally;
        let look = if t.look_alikes == 0 {
            "-".into()
        } else {
            format!(
                "{} of {} ({})",
                t.look_alikes_called,
                t.look_alikes,
                fmt(row.look_alike_rate)
            )
        };
        format!(
            "| {first} | {} | {} | {} | {} | {} | {} | {} | {look} | {} |\n",
            t.images,
            t.counts.tp,
            t.counts.fp,
            t.counts.fn_,
            fmt(row.precision),
            fmt(row.recall),
            fmt(row.f1),
            t.repeats
        )
    };
    for row in &report.rows {
        out += &line(row, row.source.clone());
    }
    out += "\nAll sources by threshold:\n\n\
            | threshold | images | TP | FP | FN | precision | recall | F1 | look-alikes called | FP repeating a figure |\n\
            |---|---|---|---|---|---|---|---|---|---|\n";
    for row in &report.sweep {
        out += &line(row, format!("{:.1}", row.threshold));
    }
    out
}

/// Reads a report that [`run`] wrote.
///
/// # Errors
///
/// The file cannot be read or is not a report.
pub fn read(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a report", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::Source;
    use mitoscope_core::matching::Point;

    fn record(figures: Vec<Point>, look_alikes: Vec<Point>, outside: Vec<Point>) -> ImageRecord {
        ImageRecord {
            source: Source::Tupac,
            file: "x.png".into(),
            mpp: 0.25,
            width: 100,
            height: 100,
            group: "g".into(),
            split: Split::Val,
            figures,
            look_alikes,
            outside_figures: outside,
            unmatched_figures: 0,
            unmatched_look_alikes: 0,
            proposals: Vec::new(),
        }
    }

    fn det(x: f64, y: f64, score: f64) -> Detection {
        Detection { x, y, score }
    }

    #[test]
    fn counts_follow_the_documented_order() {
        let p = |x, y| Point { x, y };
        // Radius 30 px at 0.25 um/px.
        let scored = Scored {
            source: "TUPAC-16",
            record: record(
                vec![p(10.0, 10.0), p(90.0, 90.0)],
                vec![p(50.0, 10.0), p(10.0, 90.0)],
                vec![p(99.0, 50.0)],
            ),
            detections: vec![
                det(12.0, 10.0, 0.9),  // TP
                det(50.0, 12.0, 0.8),  // FP, calls a look-alike
                det(95.0, 50.0, 0.7),  // next to the outside figure: not counted
                det(50.0, 50.0, 0.6),  // FP
                det(88.0, 90.0, 0.4),  // the second figure, below 0.5
                det(12.0, 88.0, 0.55), // FP, calls the second look-alike
                det(10.0, 30.0, 0.52), // FP, repeats the first figure
            ],
        };
        // Kept, the repeat is an FP and counted as a repeat; dropped, it is neither.
        let t = tally(&scored, 0.5, None).unwrap();
        assert_eq!(
            t.counts,
            Counts {
                tp: 1,
                fp: 4,
                fn_: 1
            }
        );
        assert_eq!(t.repeats, 1);
        let t = tally(&scored, 0.5, Some(7.5)).unwrap();
        assert_eq!(
            t.counts,
            Counts {
                tp: 1,
                fp: 3,
                fn_: 1
            }
        );
        assert_eq!(t.repeats, 0);
        assert_eq!(t.near_outside_figures, 1);
        assert_eq!((t.look_alikes, t.look_alikes_called), (2, 2));
        let t = tally(&scored, 0.3, Some(7.5)).unwrap();
        assert_eq!(
            t.counts,
            Counts {
                tp: 2,
                fp: 3,
                fn_: 0
            }
        );
        let t = tally(&scored, 0.85, Some(7.5)).unwrap();
        assert_eq!((t.counts.tp, t.counts.fp, t.counts.fn_), (1, 0, 1));
        assert_eq!(t.look_alikes_called, 0);
        assert_eq!(t.look_alike_rate(), Some(0.0));
    }

    #[test]
    fn a_detection_at_the_threshold_does_not_count() {
        let p = |x, y| Point { x, y };
        let scored = Scored {
            source: "TUPAC-16",
            record: record(vec![p(10.0, 10.0)], vec![], vec![]),
            detections: vec![det(10.0, 10.0, 0.5)],
        };
        let t = tally(&scored, 0.5, Some(7.5)).unwrap();
        assert_eq!((t.counts.tp, t.counts.fn_), (0, 1));
    }

    #[test]
    fn rows_sum_sources_and_all() {
        let p = |x, y| Point { x, y };
        let image = |source| Scored {
            source,
            record: record(vec![p(10.0, 10.0)], vec![], vec![]),
            detections: vec![det(10.0, 10.0, 0.9), det(80.0, 80.0, 0.9)],
        };
        let rows = rows(&[image("B"), image("A"), image("B")], 0.5, Some(7.5)).unwrap();
        let names: Vec<_> = rows.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(names, ["A", "B", "all"]);
        assert_eq!(rows[1].tally.counts.tp, 2);
        assert_eq!(rows[2].tally.images, 3);
        assert_eq!(rows[2].precision, Some(0.5));
        assert_eq!(rows[2].recall, Some(1.0));
    }
}
