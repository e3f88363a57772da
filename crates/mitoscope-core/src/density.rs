//! The numbers a grading table asks for: mitotic figures per mm^2, per 10 high-power fields and
//! per 2 mm^2, and the defaults every consumer shares (`mitoscope detect`, the server and the
//! browser app).

use serde::{Deserialize, Serialize};

/// Area of one high-power field in mm^2 by default: a 22 mm eyepiece field at 40x (as
/// `DESIGN.md`; grading tables state theirs, often 0.196 to 0.312).
pub const DEFAULT_HPF_AREA_MM2: f64 = 0.237;

/// The probability above which a proposal counts as a mitotic figure by default (OMG-Net's
/// 0.5): `mitoscope detect --threshold`, and the server's default for the web app.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// The densities of `count` mitotic figures in `area_mm2` of tissue; `None` each when no
/// tissue was analysed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Densities {
    /// Mitotic figures per mm^2: `count / area`.
    #[serde(rename = "mitoses_per_mm2")]
    pub per_mm2: Option<f64>,
    /// Per 10 high-power fields: `per_mm2 * 10 * hpf_area_mm2`.
    #[serde(rename = "mitoses_per_10_hpf")]
    pub per_10_hpf: Option<f64>,
    /// Per 2 mm^2: `per_mm2 * 2`.
    #[serde(rename = "mitoses_per_2_mm2")]
    pub per_2_mm2: Option<f64>,
}

impl Densities {
    /// The densities of `count` figures in `area_mm2`, with fields of `hpf_area_mm2`.
    pub fn new(count: usize, area_mm2: f64, hpf_area_mm2: f64) -> Self {
        let per_mm2 = (area_mm2 > 0.0 && area_mm2.is_finite()).then(|| count as f64 / area_mm2);
        Self {
            per_mm2,
            per_10_hpf: per_mm2.map(|d| d * 10.0 * hpf_area_mm2),
            per_2_mm2: per_mm2.map(|d| d * 2.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densities_follow_the_stated_areas() {
        // 12 figures in 3 mm^2: 4 per mm^2, 4 * 10 * 0.237 = 9.48 per 10 HPF, 8 per 2 mm^2.
        let d = Densities::new(12, 3.0, 0.237);
        assert_eq!(d.per_mm2, Some(4.0));
        assert!((d.per_10_hpf.unwrap() - 9.48).abs() < 1e-12);
        assert_eq!(d.per_2_mm2, Some(8.0));
        // Another field size.
        assert!((Densities::new(12, 3.0, 0.196).per_10_hpf.unwrap() - 7.84).abs() < 1e-12);
        // No tissue: no density (not infinity, not zero).
        assert_eq!(Densities::new(3, 0.0, 0.237).per_mm2, None);
        assert_eq!(Densities::new(0, 0.5, 0.237).per_mm2, Some(0.0));
    }
}
