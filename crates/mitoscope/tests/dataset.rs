//! The classifier's data set (`mitoscope dataset`): the split, the labels, and one small run of
//! the command.
//!
//! The split and label tests need no model. The run (`the_command_writes_a_consistent_data_set`)
//! takes every 100th image of each source (9 images, about a minute on two cores) through the
//! embedded LiteMedSAM; the full data set (767 images) is
//! `mitoscope dataset --data ../shared/data --out DIR` (see `docs/dataset.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mitoscope::coverage::Source;
use mitoscope::dataset::{
    self, GroupSplit, ImageRecord, Item, Label, Split, Summary, label_proposals, split_groups,
};
use mitoscope_core::matching::Point;
use mitoscope_core::wire::WireProposal;
use mitoscope_core::{BBox, BoxRle};

mod common;

fn data() -> Option<PathBuf> {
    common::shared_data("")
}

// ---------------------------------------------------------------------------------------------
// Split
// ---------------------------------------------------------------------------------------------

fn item(source: Source, group: &str, stratum: &str, n: usize) -> Item {
    Item {
        source,
        file: format!("{group}/{n}.png"),
        mpp: 0.25,
        group: group.into(),
        stratum: stratum.into(),
        figures: Vec::new(),
        look_alikes: Vec::new(),
        outside_figures: Vec::new(),
    }
}

/// Three sources of 12 groups each, groups of 1 to 6 images.
fn synthetic() -> Vec<Item> {
    let mut items = Vec::new();
    for (source, name) in [
        (Source::Icpr, "icpr"),
        (Source::Midog, "midog"),
        (Source::Tupac, "tupac"),
    ] {
        for g in 0..12 {
            for n in 0..=(g % 6) {
                items.push(item(source, &format!("{name}/{g}"), name, n));
            }
        }
    }
    items
}

fn val_groups(groups: &[GroupSplit]) -> Vec<&str> {
    groups
        .iter()
        .filter(|g| g.split == Split::Val)
        .map(|g| g.group.as_str())
        .collect()
}

/// Checks what every split must satisfy; returns the validation share of each source's images.
fn check_split(items: &[Item], groups: &[GroupSplit]) -> BTreeMap<Source, f64> {
    // One row per group, with its images; each item's group has exactly one side.
    let names: BTreeSet<&str> = groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names.len(), groups.len());
    assert_eq!(groups.iter().map(|g| g.images).sum::<usize>(), items.len());
    let side: BTreeMap<&str, Split> = groups.iter().map(|g| (g.group.as_str(), g.split)).collect();
    let mut images: BTreeMap<(Source, Split), usize> = BTreeMap::new();
    for item in items {
        *images
            .entry((item.source, side[item.group.as_str()]))
            .or_default() += 1;
    }
    let sources: BTreeSet<Source> = items.iter().map(|i| i.source).collect();
    sources
        .into_iter()
        .map(|source| {
            let train = images.get(&(source, Split::Train)).copied().unwrap_or(0);
            let val = images.get(&(source, Split::Val)).copied().unwrap_or(0);
            assert!(train > 0 && val > 0, "{source:?}: {train} train, {val} val");
            (source, val as f64 / (train + val) as f64)
        })
        .collect()
}

#[test]
fn the_split_is_by_group_seeded_and_has_both_sides_in_each_source() {
    let items = synthetic();
    let a = split_groups(&items, 42, 0.2).unwrap();
    for (source, share) in check_split(&items, &a) {
        assert!((0.1..=0.3).contains(&share), "{source:?}: {share}");
    }
    // The same seed gives the same split, whatever the order of the images.
    assert_eq!(a, split_groups(&items, 42, 0.2).unwrap());
    let reversed: Vec<Item> = items.iter().rev().cloned().collect();
    assert_eq!(a, split_groups(&reversed, 42, 0.2).unwrap());
    // Another seed gives another.
    let b = split_groups(&items, 7, 0.2).unwrap();
    check_split(&items, &b);
    assert_ne!(val_groups(&a), val_groups(&b));

    // No validation at 0; a fraction must lie in [0, 1).
    let none = split_groups(&items, 42, 0.0).unwrap();
    assert!(none.iter().all(|g| g.split == Split::Train));
    for bad in [1.0, 1.5, -0.1, f64::NAN] {
        let err = split_groups(&items, 42, bad).unwrap_err().to_string();
        assert!(err.contains("--val-fraction"), "{err}");
    }
    // A stratum of two groups keeps one on each side even when the fraction is small.
    let pair = vec![
        item(Source::Tupac, "tupac/1", "t", 0),
        item(Source::Tupac, "tupac/2", "t", 0),
    ];
    let split = split_groups(&pair, 42, 0.01).unwrap();
    assert_eq!(val_groups(&split).len(), 1);
    // A group may not span two strata.
    let mixed = vec![
        item(Source::Tupac, "tupac/1", "a", 0),
        item(Source::Tupac, "tupac/1", "b", 1),
    ];
    assert!(split_groups(&mixed, 42, 0.2).is_err());
}

#[test]
fn the_split_of_the_shared_data() {
    let Some(data) = data() else {
        return;
    };
    let items = dataset::load_items(&data).unwrap();
    let per_source = |s| items.iter().filter(|i| i.source == s).count();
    assert_eq!(
        (
            per_source(Source::Icpr),
            per_source(Source::Midog),
            per_source(Source::Tupac)
        ),
        (50, 600, 117)
    );
    // 20 ICPR patches with figures (23 figures); every MIDOG crop has its own figure, 12 of
    // them 13 more; TUPAC: 32 mitoses, 85 look-alikes, and MIDOG one imposter.
    let figures = |s| {
        items
            .iter()
            .filter(|i| i.source == s)
            .map(|i| i.figures.len())
            .sum::<usize>()
    };
    assert_eq!(figures(Source::Icpr), 23);
    assert_eq!(figures(Source::Midog), 613);
    let outside: usize = items.iter().map(|i| i.outside_figures.len()).sum();
    assert_eq!(outside, 17);
    assert_eq!(figures(Source::Tupac), 32);
    let look_alikes: usize = items.iter().map(|i| i.look_alikes.len()).sum();
    assert_eq!(look_alikes, 85 + 1);

    let split = split_groups(&items, 42, 0.2).unwrap();
    let groups = |s| split.iter().filter(|g| g.source == s).count();
    // ICPR by field (8), MIDOG by slide (117), TUPAC by case (5).
    assert_eq!(
        (
            groups(Source::Icpr),
            groups(Source::Midog),
            groups(Source::Tupac)
        ),
        (8, 117, 5)
    );
    for (source, share) in check_split(&items, &split) {
        assert!((0.1..=0.3).contains(&share), "{source:?}: {share}");
    }
    // Both sides get TUPAC look-alikes (cases 30 and 32 hold them all).
    let side: BTreeMap<&str, Split> = split.iter().map(|g| (g.group.as_str(), g.split)).collect();
    let look_alike_sides: BTreeSet<Split> = items
        .iter()
        .filter(|i| !i.look_alikes.is_empty() && i.source == Source::Tupac)
        .map(|i| side[i.group.as_str()])
        .collect();
    assert_eq!(look_alike_sides.len(), 2);

    // The split of seed 42 is pinned: it must not move with a library update.
    let val = val_groups(&split);
    let small: Vec<&str> = val
        .iter()
        .copied()
        .filter(|g| !g.starts_with("midog/"))
        .collect();
    assert_eq!(small, ["icpr/A00_06", "tupac/30", "tupac/45", "tupac/60"]);
    assert_eq!(val.len(), 4 + 32);
    assert_ne!(val, val_groups(&split_groups(&items, 7, 0.2).unwrap()));
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// A square proposal of side 10 whose box centre is `(x, y)`.
fn square(id: u64, x: u32, y: u32, iou: f32) -> WireProposal {
    let mask = BoxRle {
        bbox: BBox::new(x - 5, y - 5, x + 4, y + 4).unwrap(),
        counts: vec![0, 100],
    };
    WireProposal::new(id, &mask, iou, 0.9, 0.25)
}

fn pt(x: f64, y: f64) -> Point {
    Point { x, y }
}

#[test]
fn labels_of_hand_made_proposals() {
    // 7.5 um at 0.25 um/px: 30 px.
    let radius = 7.5 / 0.25;
    let proposals = [
        square(0, 52, 50, 0.9),   // 2 px from the figure: positive
        square(1, 60, 50, 0.9),   // 10 px from it, not paired: ambiguous
        square(2, 120, 120, 0.9), // far from everything: negative
        square(3, 150, 50, 0.9),  // 2 px from the look-alike: hard negative
        square(4, 160, 50, 0.9),  // 8 px from it, not paired: a negative
        square(5, 6, 200, 0.9),   // 16 px from a figure outside the image: ambiguous
        square(6, 100, 60, 0.9),  // 30 px from the second figure: positive (the radius counts)
    ];
    let figures = [pt(50.0, 50.0), pt(100.0, 30.0), pt(300.0, 300.0)];
    let look_alikes = [pt(152.0, 50.0), pt(300.0, 10.0)];
    let outside = [pt(-10.0, 200.0)];
    let labelled = label_proposals(&proposals, &figures, &look_alikes, &outside, radius).unwrap();
    use Label::*;
    assert_eq!(
        labelled.labels,
        [
            Positive,
            Ambiguous,
            Negative,
            HardNegative,
            Negative,
            Ambiguous,
            Positive
        ]
    );
    // The figure at (300, 300) and the look-alike at (300, 10) have no proposal.
    assert_eq!(
        (labelled.unmatched_figures, labelled.unmatched_look_alikes),
        (1, 1)
    );

    // Just beyond the radius: a negative, and the figure unmatched.
    let far =
        label_proposals(&[square(0, 100, 61, 0.9)], &figures[1..2], &[], &[], radius).unwrap();
    assert_eq!((far.labels[0], far.unmatched_figures), (Negative, 1));

    // Two proposals as near: the higher predicted IoU is the positive, the other ambiguous.
    let tie = [square(0, 45, 50, 0.7), square(1, 55, 50, 0.95)];
    let labelled = label_proposals(&tie, &figures[..1], &[], &[], radius).unwrap();
    assert_eq!(labelled.labels, [Ambiguous, Positive]);

    // A figure takes precedence over a look-alike next to it; the look-alike takes the next
    // proposal.
    let both = [square(0, 50, 50, 0.9), square(1, 70, 50, 0.9)];
    let labelled = label_proposals(&both, &figures[..1], &[pt(52.0, 50.0)], &[], radius).unwrap();
    assert_eq!(labelled.labels, [Positive, HardNegative]);

    // No proposals: everything unmatched.
    let empty = label_proposals(&[], &figures, &look_alikes, &[], radius).unwrap();
    assert_eq!(
        (empty.unmatched_figures, empty.unmatched_look_alikes),
        (3, 2)
    );
}

#[test]
fn a_crop_is_padded_where_it_leaves_the_image() {
    // The crop covers [c - 32, c + 32) around c = (x0 + x1) / 2, rounded down.
    let b = |x0, y0, x1, y1| BBox::new(x0, y0, x1, y1).unwrap();
    assert!(!dataset::crop_is_padded(&b(30, 30, 34, 35), 64, 64)); // c = (32, 32)
    assert!(dataset::crop_is_padded(&b(30, 30, 33, 35), 64, 64)); // c = (31, 32)
    assert!(dataset::crop_is_padded(&b(30, 30, 34, 35), 64, 63)); // 64 rows needed
    assert!(!dataset::crop_is_padded(&b(90, 40, 102, 50), 128, 128)); // c = (96, 45)
    assert!(dataset::crop_is_padded(&b(90, 40, 104, 50), 128, 128)); // c = (97, 45)
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

fn run_dataset(data: &Path, out: &Path, seed: u64) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .args(["dataset", "--every", "100", "--seed"])
        .arg(seed.to_string())
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    eprintln!("{stderr}{}", String::from_utf8_lossy(&output.stdout));
    stderr
}

fn read_records(out: &Path) -> Vec<ImageRecord> {
    std::fs::read_to_string(out.join(dataset::PROPOSALS_FILE))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("an image record"))
        .collect()
}

fn read_split(out: &Path) -> BTreeMap<String, (usize, String)> {
    let text = std::fs::read_to_string(out.join(dataset::SPLIT_FILE)).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("group,source,stratum,images,split"));
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 5, "{line}");
            (
                cells[0].to_string(),
                (cells[3].parse().unwrap(), cells[4].to_string()),
            )
        })
        .collect()
}

#[test]
fn the_command_writes_a_consistent_data_set() {
    let Some(data) = data() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    run_dataset(&data, &out, 42);

    let records = read_records(&out);
    let split = read_split(&out);
    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join(dataset::SUMMARY_FILE)).unwrap())
            .unwrap();

    // Every 100th image of each source: ICPR 1 of 50, MIDOG 6 of 600, TUPAC 2 of 117.
    let per_source = |s| records.iter().filter(|r| r.source == s).count();
    assert_eq!(
        (
            per_source(Source::Icpr),
            per_source(Source::Midog),
            per_source(Source::Tupac)
        ),
        (1, 6, 2)
    );
    // The split file holds every group of the data, not only the sample's.
    assert_eq!(split.len(), 8 + 117 + 5);
    assert_eq!(split.values().map(|(n, _)| n).sum::<usize>(), 767);

    for r in &records {
        assert_eq!(split[&r.group].1, r.split.name(), "{}", r.file);
        let of = |label| r.proposals.iter().filter(|p| p.label == label).count();
        assert_eq!(
            r.figures.len() - r.unmatched_figures,
            of(Label::Positive),
            "{}",
            r.file
        );
        assert_eq!(
            r.look_alikes.len() - r.unmatched_look_alikes,
            of(Label::HardNegative),
            "{}",
            r.file
        );
        // Masks, not crops: each decodes, and the shared crop code cuts its crop from the image.
        let image = mitoscope::propose::read_image(&data.join(&r.file)).unwrap();
        assert_eq!((image.width, image.height), (r.width, r.height));
        for p in &r.proposals {
            let rle = p.proposal.rle().unwrap();
            let crop = mitoscope_core::crop(&image.rgb, image.width, image.height, &rle).unwrap();
            assert_eq!(crop.mask.len(), 64 * 64);
            assert!(
                crop.mask.contains(&1),
                "{}: proposal {}",
                r.file,
                p.proposal.id
            );
        }
    }

    // The counts add up, and the summary is the count of the records.
    assert_eq!(summary.rows, dataset::count(&records));
    assert_eq!((summary.seed, summary.every), (42, 100));
    for row in &summary.rows {
        let c = &row.counts;
        assert_eq!(
            c.positives + c.hard_negatives + c.ambiguous + c.negatives,
            c.proposals,
            "{} {}",
            row.source,
            row.split
        );
    }
    let all = &summary.rows.last().unwrap();
    assert_eq!((all.source.as_str(), all.split.as_str()), ("all", "all"));
    assert_eq!(all.counts.images, 9);
    let by_source: usize = summary
        .rows
        .iter()
        .filter(|r| r.source != "all" && r.split != "all")
        .map(|r| r.counts.proposals)
        .sum();
    assert_eq!(by_source, all.counts.proposals);

    // The TUPAC look-alike in the sample (non_mitosis/32_01_53.jpg) is a hard negative.
    let look_alike = records
        .iter()
        .find(|r| r.source == Source::Tupac && !r.look_alikes.is_empty())
        .expect("a TUPAC non-mitosis image in the sample");
    assert!(look_alike.file.ends_with("non_mitosis/32_01_53.jpg"));
    assert!(
        look_alike
            .proposals
            .iter()
            .any(|p| p.label == Label::HardNegative)
    );

    // Another seed reuses the cached proposals: the same masks, another split.
    let stderr = run_dataset(&data, &out, 7);
    assert_eq!(stderr.matches("(cached)").count(), 9, "{stderr}");
    let again = read_records(&out);
    for (a, b) in records.iter().zip(&again) {
        assert_eq!((&a.file, &a.proposals.len()), (&b.file, &b.proposals.len()));
        assert!(
            a.proposals
                .iter()
                .zip(&b.proposals)
                .all(|(x, y)| x.proposal == y.proposal)
        );
    }
    assert_ne!(read_split(&out), split);
}
