//! Coverage of the annotated mitotic figures by the embedded default's proposals, on a fixed
//! sample of `../shared/data` (the whole set takes about half an hour on two cores: run
//! `mitoscope coverage --data ../shared/data`; its table is in `docs/proposals.md`).
//!
//! The sample: every second ICPR-2012 patch with mitoses, every 20th MIDOG-2021 crop and every
//! 8th TUPAC-16 candidate, in file order. The target of the issue is 97 % of the figures.

use std::path::Path;

use burn::prelude::Device;
use mitoscope::coverage::{self, Case, Source};

/// The target coverage.
const TARGET: f64 = 0.97;

#[test]
fn the_default_covers_the_annotated_figures() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !data.is_dir() {
        eprintln!("skipped: {} is missing", data.display());
        return;
    }
    let all = coverage::load_cases(&data).unwrap();
    let count = |s| all.iter().filter(|c: &&Case| c.source == s).count();
    // The folders as the data README describes them.
    assert_eq!(count(Source::Icpr), 20);
    assert_eq!(count(Source::Midog), 600);
    assert_eq!(count(Source::Tupac), 117);

    let step = |s| match s {
        Source::Icpr => 2,
        Source::Midog => 20,
        Source::Tupac => 8,
    };
    let mut seen = std::collections::BTreeMap::new();
    let cases: Vec<Case> = all
        .into_iter()
        .filter(|c| {
            let n: &mut usize = seen.entry(c.source).or_default();
            *n += 1;
            (*n - 1).is_multiple_of(step(c.source))
        })
        .collect();

    let device = Device::flex();
    let sam = mitoscope::load_sam(None, &device).unwrap();
    let settings = sam.config().default_proposal_settings();
    let results = coverage::run(&sam, &settings, &data, &cases, |r| {
        eprintln!(
            "{} {}: {}/{} covered, {} proposals, {:.1} s",
            r.source.name(),
            r.file,
            r.covered,
            r.figures,
            r.proposals,
            r.seconds
        );
    })
    .unwrap();
    eprintln!("{}", coverage::table(&results));

    let totals = coverage::totals(&results);
    let all = &totals[&None];
    assert_eq!(all.images, cases.len());
    assert!(
        all.coverage() >= TARGET,
        "coverage {:.3} below {TARGET}",
        all.coverage()
    );
    // Proposals stay at nucleus density: a few per 10 000 um^2 of tissue, not a flood.
    let density = all.proposals as f64 / all.mm2;
    assert!(
        (2_000.0..30_000.0).contains(&density),
        "{density:.0} proposals per mm^2"
    );
}
