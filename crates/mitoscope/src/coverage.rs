//! Coverage of the proposal stage: the share of annotated mitotic figures that have a proposal.
//!
//! A figure is covered when a proposal's mask contains the figure's centre, or the proposal's
//! box centre lies within [`COVER_UM`] of it. The figures come from `../shared/data`:
//!
//! | source | images | figure centres | pixel size |
//! |---|---|---|---|
//! | ICPR-2012 | the patches with mitoses (`labels.csv`, `has_mitosis` 1) | the mask centroids | 0.2456 |
//! | MIDOG-2021 | the 128 px crops (`selection.csv`) | the crop centre | 0.23 (Hamamatsu), 0.25 (Aperio) |
//! | TUPAC-16 | the 80 px candidates of both labels (`labels.csv`) | the crop centre | 0.25 |
//!
//! Each image goes through the whole proposal stage as `mitoscope propose` runs it (tissue,
//! tiles, prompts, filters, NMS); crops smaller than a tile are padded with white.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mitoscope_core::ProposalSettings;
use mitoscope_models::pipeline::ImageProposal;
use mitoscope_models::sam::Sam;
use serde::{Deserialize, Serialize};

use crate::propose::{propose_loaded, read_image};

/// Distance in um within which a proposal's box centre covers a figure (MIDOG's matching
/// radius).
pub const COVER_UM: f64 = 7.5;

/// Where a case comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Source {
    /// ICPR-2012 MITOS patches, 256 px, full tissue.
    Icpr,
    /// MIDOG-2021 crops, 128 px, centred on a figure.
    Midog,
    /// TUPAC-16 detector candidates, 80 px, centred on a mitosis or a look-alike.
    Tupac,
}

impl Source {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Icpr => "ICPR-2012",
            Self::Midog => "MIDOG-2021",
            Self::Tupac => "TUPAC-16",
        }
    }
}

/// One image with its annotated figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its source.
    pub source: Source,
    /// The image file.
    pub path: PathBuf,
    /// Pixel size, um/px.
    pub mpp: f64,
    /// Figure centres `(x, y)` in pixel-index coordinates (pixel `(i, j)` has centre `(i, j)`).
    pub figures: Vec<[f64; 2]>,
}

/// Reads a small CSV with a header into maps from column name to value.
pub(crate) fn read_table(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .with_context(|| format!("{} is empty", path.display()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    Ok(lines
        .map(|line| {
            header
                .iter()
                .cloned()
                .zip(line.split(',').map(|s| s.trim().to_string()))
                .collect()
        })
        .collect())
}

/// A column of a table row.
pub(crate) fn column<'a>(
    row: &'a BTreeMap<String, String>,
    name: &str,
    table: &Path,
) -> Result<&'a str> {
    row.get(name)
        .map(String::as_str)
        .with_context(|| format!("{}: a row has no `{name}`", table.display()))
}

/// A numeric column of a table row.
pub(crate) fn number(row: &BTreeMap<String, String>, name: &str, table: &Path) -> Result<f64> {
    let text = column(row, name, table)?;
    text.parse()
        .with_context(|| format!("{}: `{name}` = {text:?} is not a number", table.display()))
}

/// Every case of `data` (the `../shared/data` folder), sources in order, files sorted.
///
/// # Errors
///
/// A missing or malformed annotation table.
pub fn load_cases(data: &Path) -> Result<Vec<Case>> {
    let mut cases = Vec::new();

    let icpr = data.join("icpr2012_patches");
    let table = icpr.join("labels.csv");
    let mut by_file: BTreeMap<String, Vec<[f64; 2]>> = BTreeMap::new();
    for row in read_table(&table)? {
        if column(&row, "has_mitosis", &table)? == "1" {
            by_file
                .entry(column(&row, "file", &table)?.to_string())
                .or_default()
                .push([number(&row, "cx", &table)?, number(&row, "cy", &table)?]);
        }
    }
    for (file, figures) in by_file {
        cases.push(Case {
            source: Source::Icpr,
            path: icpr.join("images").join(file),
            mpp: 0.2456,
            figures,
        });
    }

    let midog = data.join("ami-br_midog21_patches");
    let table = midog.join("selection.csv");
    let mut rows = read_table(&table)?;
    rows.sort_by(|a, b| a.get("file").cmp(&b.get("file")));
    for row in rows {
        let mpp = match column(&row, "scanner", &table)? {
            "AperioCS2" => 0.25,
            s if s.starts_with("Hamamatsu") => 0.23,
            other => bail!("{}: unknown scanner {other}", table.display()),
        };
        cases.push(Case {
            source: Source::Midog,
            path: midog.join(column(&row, "file", &table)?),
            mpp,
            // 128 x 128 crops cut at [x - 64, x + 64): the figure is pixel 64.
            figures: vec![[64.0, 64.0]],
        });
    }

    let tupac = data.join("tupac16_mitosis_candidates_prlab");
    let table = tupac.join("labels.csv");
    let mut rows = read_table(&table)?;
    rows.sort_by(|a, b| a.get("file").cmp(&b.get("file")));
    for row in rows {
        let (w, h) = (
            number(&row, "width", &table)?,
            number(&row, "height", &table)?,
        );
        cases.push(Case {
            source: Source::Tupac,
            path: tupac.join(column(&row, "file", &table)?),
            mpp: 0.25,
            figures: vec![[w / 2.0, h / 2.0]],
        });
    }
    Ok(cases)
}

/// Every `every`-th case of each source, starting with the first: a fixed, spread-out sample.
pub fn sample(cases: &[Case], every: usize) -> Vec<Case> {
    every_nth_per_source(cases, every, |c| c.source)
}

/// Every `every`-th of `items` from each source (`source` tells an item's), starting with the
/// first of each, in their order.
pub(crate) fn every_nth_per_source<T: Clone>(
    items: &[T],
    every: usize,
    source: impl Fn(&T) -> Source,
) -> Vec<T> {
    let every = every.max(1);
    let mut seen: BTreeMap<Source, usize> = BTreeMap::new();
    items
        .iter()
        .filter(|item| {
            let n = seen.entry(source(item)).or_default();
            *n += 1;
            (*n - 1).is_multiple_of(every)
        })
        .cloned()
        .collect()
}

/// Whether `proposal` covers the figure at `centre` (see the module).
pub fn covers(proposal: &ImageProposal, centre: [f64; 2], mpp: f64) -> bool {
    let p = &proposal.proposal;
    let b = p.bbox;
    let (bx, by) = (
        (f64::from(b.x0()) + f64::from(b.x1())) / 2.0,
        (f64::from(b.y0()) + f64::from(b.y1())) / 2.0,
    );
    let near = ((bx - centre[0]).powi(2) + (by - centre[1]).powi(2)).sqrt() * mpp <= COVER_UM;
    near || mask_contains(p, centre)
}

/// Whether the mask holds the pixel nearest to `centre`.
fn mask_contains(p: &mitoscope_models::proposals::Proposal, [x, y]: [f64; 2]) -> bool {
    let (x, y) = (x.round(), y.round());
    let b = p.bbox;
    if x < f64::from(b.x0())
        || y < f64::from(b.y0())
        || x > f64::from(b.x1())
        || y > f64::from(b.y1())
    {
        return false;
    }
    // Index of the pixel inside the box, row-major, then find its run.
    let index = (y as u64 - u64::from(b.y0())) * b.width_px() + (x as u64 - u64::from(b.x0()));
    let mut offset = 0u64;
    for (k, &run) in p.mask.counts.iter().enumerate() {
        offset += u64::from(run);
        if index < offset {
            return k % 2 == 1;
        }
    }
    false
}

/// The result on one case (one JSON line of `mitoscope coverage --out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Its source.
    pub source: Source,
    /// The file name, relative to the data folder.
    pub file: String,
    /// Figures annotated.
    pub figures: usize,
    /// Figures covered.
    pub covered: usize,
    /// Proposals made.
    pub proposals: usize,
    /// Analysed area, mm^2.
    pub mm2: f64,
    /// Time for the whole proposal stage on the image, seconds.
    pub seconds: f64,
}

/// One progress line: `source file: covered/figures covered, N proposals, T s`.
impl std::fmt::Display for CaseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}/{} covered, {} proposals, {:.1} s",
            self.source.name(),
            self.file,
            self.covered,
            self.figures,
            self.proposals,
            self.seconds
        )
    }
}

/// Runs the proposal stage on each case and checks its figures; `on_case` sees each result.
///
/// # Errors
///
/// An unreadable image or a failing proposal stage.
pub fn run(
    sam: &Sam,
    settings: &ProposalSettings,
    data: &Path,
    cases: &[Case],
    mut on_case: impl FnMut(&CaseResult),
) -> Result<Vec<CaseResult>> {
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let started = Instant::now();
        let image = read_image(&case.path)?;
        let found = propose_loaded(sam, &image, settings, case.mpp, false)
            .with_context(|| format!("proposals of {}", case.path.display()))?;
        let covered = case
            .figures
            .iter()
            .filter(|&&c| found.proposals.iter().any(|p| covers(p, c, case.mpp)))
            .count();
        let result = CaseResult {
            source: case.source,
            file: case
                .path
                .strip_prefix(data)
                .unwrap_or(&case.path)
                .display()
                .to_string(),
            figures: case.figures.len(),
            covered,
            proposals: found.proposals.len(),
            mm2: found.analysed_mm2(case.mpp),
            seconds: started.elapsed().as_secs_f64(),
        };
        on_case(&result);
        results.push(result);
    }
    Ok(results)
}

/// Totals of one source (or of all).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Images.
    pub images: usize,
    /// Figures annotated.
    pub figures: usize,
    /// Figures covered.
    pub covered: usize,
    /// Proposals.
    pub proposals: usize,
    /// Analysed area, mm^2.
    pub mm2: f64,
    /// Seconds.
    pub seconds: f64,
}

impl Totals {
    /// Covered over annotated figures (1 when there are none).
    pub fn coverage(&self) -> f64 {
        if self.figures == 0 {
            1.0
        } else {
            self.covered as f64 / self.figures as f64
        }
    }

    fn add(&mut self, r: &CaseResult) {
        self.images += 1;
        self.figures += r.figures;
        self.covered += r.covered;
        self.proposals += r.proposals;
        self.mm2 += r.mm2;
        self.seconds += r.seconds;
    }
}

/// Totals per source and overall (`None` key).
pub fn totals(results: &[CaseResult]) -> BTreeMap<Option<Source>, Totals> {
    let mut out: BTreeMap<Option<Source>, Totals> = BTreeMap::new();
    for r in results {
        out.entry(Some(r.source)).or_default().add(r);
        out.entry(None).or_default().add(r);
    }
    out
}

/// The totals as a Markdown table.
pub fn table(results: &[CaseResult]) -> String {
    let mut out = String::from(
        "| source | images | figures | covered | coverage | proposals / mm^2 | s / mm^2 | s / image |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (source, t) in totals(results) {
        out += &format!(
            "| {} | {} | {} | {} | {:.3} | {:.0} | {:.0} | {:.2} |\n",
            source.map_or("all", Source::name),
            t.images,
            t.figures,
            t.covered,
            t.coverage(),
            t.proposals as f64 / t.mm2,
            t.seconds / t.mm2,
            t.seconds / t.images as f64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mitoscope_core::{BBox, Grid, rle};
    use mitoscope_models::proposals::Proposal;

    fn proposal(x0: u32, y0: u32, x1: u32, y1: u32) -> ImageProposal {
        let mut mask = Grid::filled(64, 64, false).unwrap();
        for y in y0..=y1 {
            for x in x0..=x1 {
                mask.data_mut()[(y * 64 + x) as usize] = true;
            }
        }
        let mask = rle::encode(&mask).unwrap();
        ImageProposal {
            id: 0,
            tile: 0,
            proposal: Proposal {
                bbox: BBox::new(x0, y0, x1, y1).unwrap(),
                predicted_iou: 0.9,
                stability: 0.9,
                box_area: 0,
                mask_area: mask.area(),
                mask,
            },
        }
    }

    #[test]
    fn coverage_by_mask_or_by_distance() {
        // Box centre (15, 15); 7.5 um at 0.25 um/px is 30 px.
        let p = proposal(10, 10, 20, 20);
        assert!(covers(&p, [12.0, 12.0], 0.25)); // inside the mask
        assert!(covers(&p, [45.0, 15.0], 0.25)); // 30 px away
        assert!(!covers(&p, [45.1, 15.0], 0.25));
        assert!(!covers(&p, [45.0, 15.0], 0.5)); // 15 um away
        // A large mask holds a centre far from its box centre.
        let big = proposal(0, 0, 63, 63);
        assert!(covers(&big, [63.0, 63.0], 0.5));
        assert!(!mask_contains(&p.proposal, [9.0, 15.0]));
    }

    #[test]
    fn samples_keep_the_first_of_each_source() {
        let case = |source| Case {
            source,
            path: PathBuf::new(),
            mpp: 0.25,
            figures: Vec::new(),
        };
        let cases = vec![
            case(Source::Icpr),
            case(Source::Icpr),
            case(Source::Icpr),
            case(Source::Midog),
            case(Source::Midog),
        ];
        let picked: Vec<Source> = sample(&cases, 2).iter().map(|c| c.source).collect();
        assert_eq!(picked, vec![Source::Icpr, Source::Icpr, Source::Midog]);
    }
}
