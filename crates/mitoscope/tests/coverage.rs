//! Coverage of the annotated mitotic figures by the embedded default's proposals.
//!
//! The whole measurement (737 images of `../shared/data`, about half an hour on two cores) is
//! `mitoscope coverage --data ../shared/data --out docs/coverage/lite_medsam.jsonl`; its per-image
//! results are committed there and summarised in `docs/proposals.md`. This test checks, in CI
//! time, that
//!
//! 1. the committed results cover every annotated figure of the data (so none was left out) and
//!    meet the target of 97 %, and
//! 2. the code still produces them: a fixed sample (every 2nd ICPR-2012 patch, every 20th
//!    MIDOG-2021 crop, every 8th TUPAC-16 candidate, in file order) is run again and must give
//!    the same covered figures and the same number of proposals (one either way on another CPU).

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::Device;
use mitoscope::coverage::{self, Case, CaseResult, Source};

/// The target coverage of the issue.
const TARGET: f64 = 0.97;

fn committed() -> Vec<CaseResult> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/coverage/lite_medsam.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a result line"))
        .collect()
}

#[test]
fn the_committed_measurement_meets_the_target() {
    let results = committed();
    let totals = coverage::totals(&results);
    let all = &totals[&None];
    eprintln!("{}", coverage::table(&results));
    assert_eq!(all.images, 737);
    assert_eq!(
        (
            totals[&Some(Source::Icpr)].images,
            totals[&Some(Source::Midog)].images,
            totals[&Some(Source::Tupac)].images
        ),
        (20, 600, 117)
    );
    assert!(
        all.coverage() >= TARGET,
        "coverage {:.3} below {TARGET}",
        all.coverage()
    );
}

#[test]
fn the_code_reproduces_the_measurement_on_a_sample() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !data.is_dir() {
        eprintln!("skipped: {} is missing", data.display());
        return;
    }
    let all = coverage::load_cases(&data).unwrap();
    let recorded: BTreeMap<String, CaseResult> = committed()
        .into_iter()
        .map(|r| (r.file.clone(), r))
        .collect();
    // Every case of the data is in the committed measurement, with its figures.
    assert_eq!(all.len(), recorded.len());

    let step = |s| match s {
        Source::Icpr => 2,
        Source::Midog => 20,
        Source::Tupac => 8,
    };
    let mut seen: BTreeMap<Source, usize> = BTreeMap::new();
    let cases: Vec<Case> = all
        .into_iter()
        .filter(|c| {
            let n = seen.entry(c.source).or_default();
            *n += 1;
            (*n - 1).is_multiple_of(step(c.source))
        })
        .collect();
    assert_eq!(cases.len(), 55);

    let device = Device::flex();
    let sam = mitoscope::load_sam(None, &device).unwrap();
    let settings = sam.config().default_proposal_settings();
    let results = coverage::run(&sam, &settings, &data, &cases, |r| eprintln!("{r}")).unwrap();
    eprintln!("{}", coverage::table(&results));
    for r in &results {
        let before = &recorded[&r.file];
        assert_eq!(
            (r.figures, r.covered),
            (before.figures, before.covered),
            "{}: now (figures, covered), committed",
            r.file
        );
        // The same code on the same CPU gives the same count. Another CPU may take another
        // matrix-product kernel, whose last bits can move a mask across a threshold: one
        // proposal either way is allowed.
        assert!(
            r.proposals.abs_diff(before.proposals) <= 1,
            "{}: {} proposals now, {} committed",
            r.file,
            r.proposals,
            before.proposals
        );
    }
}
