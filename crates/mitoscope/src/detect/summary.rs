//! The clinical numbers of one input: the count, the analysed area, the densities a grading
//! table asks for, and the hotspot; written as `summary.json`, and as one row of the batch's
//! `summary.csv`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use mitoscope_core::density::{DEFAULT_HPF_AREA_MM2, Densities};

use super::hotspot::{Hotspot, densest_circle};

/// Area of the hotspot circle in mm^2 by default: the 2 mm^2 of current grading tables
/// (e.g. WHO breast and soft-tissue grading).
pub const DEFAULT_HOTSPOT_AREA_MM2: f64 = 2.0;

/// Square micrometres per square millimetre.
const UM2_PER_MM2: f64 = 1e6;

/// The hotspot as `summary.json` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HotspotSummary {
    /// The circle's area, mm^2.
    pub area_mm2: f64,
    /// Its radius in micrometres: `sqrt(area / pi)`.
    pub radius_um: f64,
    /// Its radius in full-resolution pixels.
    pub radius_px: f64,
    /// Its centre `[x, y]` in full-resolution pixels (corner origin, as the CSV).
    pub centre_px: [f64; 2],
    /// The mitotic figures inside it (boundary included).
    pub count: usize,
}

/// The circle of `area_mm2` holding the most of `centres_px` (full-resolution pixels) at `mpp`,
/// its centre where `on_tissue(centre_px)` holds; `None` without detections. See
/// [`super::hotspot`] for the method.
pub fn hotspot(
    centres_px: &[[f64; 2]],
    mpp: f64,
    area_mm2: f64,
    on_tissue: impl Fn([f64; 2]) -> bool,
) -> Option<HotspotSummary> {
    let radius_um = (area_mm2 * UM2_PER_MM2 / std::f64::consts::PI).sqrt();
    let points: Vec<[f64; 2]> = centres_px
        .iter()
        .map(|&[x, y]| [x * mpp, y * mpp])
        .collect();
    let Hotspot { centre, count } =
        densest_circle(&points, radius_um, |[x, y]| on_tissue([x / mpp, y / mpp]))?;
    Some(HotspotSummary {
        area_mm2,
        radius_um,
        radius_px: radius_um / mpp,
        centre_px: [centre[0] / mpp, centre[1] / mpp],
        count,
    })
}

/// One row of the batch's `summary.csv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsvRow {
    /// The input as given (or as found in a folder).
    pub input: String,
    /// The folder of its outputs, relative to the output folder.
    pub output: String,
    /// `done`, `skipped` (complete from an earlier run) or `failed`.
    pub status: &'static str,
    /// Full-resolution width and height, pixels.
    pub size: Option<[u32; 2]>,
    /// Pixel size used, um/px.
    pub mpp: Option<f64>,
    /// Mitotic figures found.
    pub count: Option<usize>,
    /// Analysed tissue, mm^2.
    pub tissue_area_mm2: Option<f64>,
    /// The densities.
    pub densities: Option<Densities>,
    /// The hotspot.
    pub hotspot: Option<HotspotSummary>,
    /// Seconds the input took (in the run that analysed it).
    pub seconds: Option<f64>,
    /// Why it failed.
    pub error: String,
}

/// The header of `summary.csv`.
pub const CSV_COLUMNS: &[&str] = &[
    "input",
    "output",
    "status",
    "width",
    "height",
    "mpp",
    "count",
    "tissue_area_mm2",
    "mitoses_per_mm2",
    "mitoses_per_10_hpf",
    "mitoses_per_2_mm2",
    "hotspot_count",
    "hotspot_x",
    "hotspot_y",
    "seconds",
    "error",
];

/// `rows` as CSV text: RFC 4180 quoting for the text cells, empty cells for unknown numbers.
pub fn to_csv(rows: &[CsvRow]) -> String {
    let mut text = CSV_COLUMNS.join(",") + "\n";
    for row in rows {
        let number = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
        let whole = |v: Option<usize>| v.map_or_else(String::new, |v| v.to_string());
        let d = row.densities;
        let cells = [
            quote(&row.input),
            quote(&row.output),
            row.status.to_owned(),
            whole(row.size.map(|s| s[0] as usize)),
            whole(row.size.map(|s| s[1] as usize)),
            number(row.mpp),
            whole(row.count),
            number(row.tissue_area_mm2),
            number(d.and_then(|d| d.per_mm2)),
            number(d.and_then(|d| d.per_10_hpf)),
            number(d.and_then(|d| d.per_2_mm2)),
            whole(row.hotspot.map(|h| h.count)),
            number(row.hotspot.map(|h| h.centre_px[0])),
            number(row.hotspot.map(|h| h.centre_px[1])),
            number(row.seconds),
            quote(&row.error),
        ];
        let _ = writeln!(text, "{}", cells.join(","));
    }
    text
}

/// A text cell: quoted, with its quotes doubled, when it holds a comma, a quote or a line
/// break.
fn quote(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hotspot_is_measured_in_micrometres_and_reported_in_pixels() {
        // 1 mm^2: radius sqrt(1e6 / pi) = 564.19 um = 2256.76 px at 0.25 um/px. Three figures
        // within 4000 px of each other and one 20 000 px away.
        let centres = [
            [1000.0, 1000.0],
            [3000.0, 1000.0],
            [2000.0, 2500.0],
            [21000.0, 1000.0],
        ];
        let h = hotspot(&centres, 0.25, 1.0, |_| true).unwrap();
        assert_eq!(h.count, 3);
        assert!((h.radius_um - 564.189_583_5).abs() < 1e-6);
        assert!((h.radius_px - 4.0 * h.radius_um).abs() < 1e-9);
        let [x, y] = h.centre_px;
        for c in &centres[..3] {
            assert!((c[0] - x).hypot(c[1] - y) <= h.radius_px + 1e-6);
        }
        // 0.01 mm^2 (radius 225.7 px at 0.25 um/px): no two of them fit.
        assert_eq!(hotspot(&centres, 0.25, 0.01, |_| true).unwrap().count, 1);
        assert_eq!(hotspot(&[], 0.25, 2.0, |_| true), None);
    }

    #[test]
    fn the_csv_quotes_text_and_leaves_unknowns_empty() {
        let rows = [
            CsvRow {
                input: "a,b.png".into(),
                output: "a,b".into(),
                status: "done",
                size: Some([10, 20]),
                mpp: Some(0.25),
                count: Some(2),
                tissue_area_mm2: Some(0.5),
                densities: Some(Densities::new(2, 0.5, 0.237)),
                hotspot: None,
                seconds: Some(1.5),
                error: String::new(),
            },
            CsvRow {
                input: "bad.png".into(),
                status: "failed",
                error: "cannot read \"bad.png\"".into(),
                ..CsvRow::default()
            },
        ];
        let text = to_csv(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "\"a,b.png\",\"a,b\",done,10,20,0.25,2,0.5,4,9.48,8,,,,1.5,"
        );
        assert_eq!(
            lines[2],
            "bad.png,,failed,,,,,,,,,,,,,\"cannot read \"\"bad.png\"\"\""
        );
        assert!(lines.iter().skip(1).all(|l| !l.is_empty()));
    }
}
