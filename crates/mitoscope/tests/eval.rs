//! `mitoscope eval` as a user runs it: the binary on small hand-written files whose counts are
//! worked out by hand in the comments, on bad input, and the library on the real MIDOG
//! annotation databases of `../shared/data/midog_annotations`.
//!
//! All the hand-written cases use 0.25 um/px, where the 7.5 um radius is 30 px.

use std::path::PathBuf;

mod common;
use common::mitoscope;

/// The MIDOG files of the shared data folder, if present.
fn midog(name: &str) -> Option<PathBuf> {
    common::shared_data(&format!("midog_annotations/{name}"))
}

use mitoscope::eval::{EvalOptions, EvalReport, evaluate_files};
use mitoscope_core::matching::{
    AnnotatedImage, Counts, Point, read_midog_json, read_midogpp_split,
};

/// The figures of the hand-written cases. Images a and b are breast, c and d melanoma; d has no
/// figures (the row with empty x and y lists it).
const TRUTH: &str = "image,x,y,tumor
a.tiff,100,100,breast
a.tiff,70,100,breast
a.tiff,300,100,breast
b.tiff,100,100,breast
b.tiff,400,400,breast
c.tiff,50,50,melanoma
d.tiff,,,melanoma
";

/// The detections of the hand-written cases (none for c.tiff).
///
/// - a: the first two are both 10 px from the figure (100,100), a tie: the higher probability
///   (0.9) takes it, so the second is left for the figure (70,100), 20 px away. The third is
///   exactly 30 px (7.5 um) from (300,100): the boundary counts. TP 3, FP 0, FN 0.
/// - b: two detections near the figure (100,100), 5 px and 5.83 px away: the nearer one takes it
///   although its probability is lower, the other is a false positive. (431,400) is 31 px from
///   (400,400): a false positive, and (400,401) is below the threshold, so (400,400) is missed.
///   TP 1, FP 2, FN 1.
/// - c: no predictions: TP 0, FP 0, FN 1.
/// - d: no figures: TP 0, FP 1, FN 0.
///
/// Overall TP 4, FP 3, FN 2; breast TP 4, FP 2, FN 1; melanoma TP 0, FP 1, FN 1.
const PRED: &str = "image,x,y,probability
a.tiff,110,100,0.9
a.tiff,90,100,0.8
a.tiff,330,100,0.7
b.tiff,105,100,0.6
b.tiff,95,103,0.95
b.tiff,431,400,0.9
b.tiff,400,401,0.4
d.tiff,10,10,0.99
";

/// A temporary folder with the given files.
fn files(contents: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in contents {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn arg(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

/// Runs `eval` with `args` and `--out`; checks that it succeeds; returns the report and stdout.
fn eval_ok(dir: &tempfile::TempDir, args: &[&str]) -> (EvalReport, String) {
    let out = arg(dir, "report.json");
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", &out]);
    let output = mitoscope(&all);
    assert!(output.status.success());
    let report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (report, String::from_utf8(output.stdout).unwrap())
}

/// Runs `eval` with `args`; checks that it fails with a message (no panic); returns the message.
fn eval_err(args: &[&str]) -> String {
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    let output = mitoscope(&all);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn counts(tp: u64, fp: u64, fn_: u64) -> Counts {
    Counts { tp, fp, fn_ }
}

fn image_counts(report: &EvalReport, image: &str) -> Counts {
    report
        .images
        .iter()
        .find(|i| i.image == image)
        .unwrap()
        .counts
}

/// The cells of the table's row whose label is `label`, label left out.
fn table_row(table: &str, label: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label} in\n{table}"));
    line[label.len()..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn hand_computed_counts_with_a_tie_and_two_detections_near_one_figure() {
    let dir = files(&[("truth.csv", TRUTH), ("pred.csv", PRED)]);
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "pred.csv"));
    let (report, table) = eval_ok(&dir, &["--pred", &pred, "--truth", &truth, "--mpp", "0.25"]);

    assert_eq!(image_counts(&report, "a.tiff"), counts(3, 0, 0));
    assert_eq!(image_counts(&report, "b.tiff"), counts(1, 2, 1));
    assert_eq!(image_counts(&report, "c.tiff"), counts(0, 0, 1));
    assert_eq!(image_counts(&report, "d.tiff"), counts(0, 1, 0));
    assert_eq!(report.overall.counts, counts(4, 3, 2));
    assert_eq!(report.overall.images, 4);
    assert_eq!(report.overall.precision, Some(4.0 / 7.0));
    assert_eq!(report.overall.recall, Some(4.0 / 6.0));
    assert_eq!(report.overall.f1, Some(8.0 / 13.0));
    let groups: Vec<(&str, &str, usize, Counts)> = report
        .groups
        .iter()
        .map(|g| {
            (
                g.by.as_str(),
                g.group.as_str(),
                g.score.images,
                g.score.counts,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("tumor", "breast", 2, counts(4, 2, 1)),
            ("tumor", "melanoma", 2, counts(0, 1, 1)),
        ]
    );
    // Images that need no pixel size from anywhere else get --mpp; all of them here.
    assert!(report.images.iter().all(|i| i.mpp == Some(0.25)));
    assert_eq!(report.threshold, 0.5);
    assert_eq!(report.radius_um, 7.5);

    // The table: images, TP, FP, FN, precision, recall, F1.
    assert_eq!(
        table_row(&table, "all"),
        ["4", "4", "3", "2", "0.571", "0.667", "0.615"]
    );
    assert_eq!(
        table_row(&table, "tumor: breast"),
        ["2", "4", "2", "1", "0.667", "0.800", "0.727"]
    );
    assert_eq!(
        table_row(&table, "tumor: melanoma"),
        ["2", "0", "1", "1", "0.000", "0.000", "0.000"]
    );
}

#[test]
fn the_tie_goes_to_the_higher_probability_then_to_the_first_detection() {
    // The probabilities of a's first two detections swapped: the figure (100,100) now takes
    // (90,100), and (110,100) is 40 px from (70,100): TP 1 + the boundary one, FP 1, FN 1.
    let swapped = PRED
        .replace("a.tiff,110,100,0.9", "a.tiff,110,100,0.8")
        .replace("a.tiff,90,100,0.8", "a.tiff,90,100,0.9");
    // Equal probabilities: the first in the file wins, as in the hand-computed case.
    let equal = PRED.replace("a.tiff,90,100,0.8", "a.tiff,90,100,0.9");
    let dir = files(&[
        ("truth.csv", TRUTH),
        ("swapped.csv", &swapped),
        ("equal.csv", &equal),
    ]);
    let truth = arg(&dir, "truth.csv");
    for (file, expected) in [
        ("swapped.csv", counts(2, 1, 1)),
        ("equal.csv", counts(3, 0, 0)),
    ] {
        let pred = arg(&dir, file);
        let (report, _) = eval_ok(&dir, &["--pred", &pred, "--truth", &truth, "--mpp", "0.25"]);
        assert_eq!(image_counts(&report, "a.tiff"), expected, "{file}");
    }
}

#[test]
fn the_threshold_keeps_probabilities_strictly_above_it() {
    let dir = files(&[("truth.csv", TRUTH), ("pred.csv", PRED)]);
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "pred.csv"));
    let run = |threshold: &str| {
        let args = [
            "--pred",
            &pred,
            "--truth",
            &truth,
            "--mpp",
            "0.25",
            "--threshold",
            threshold,
        ];
        eval_ok(&dir, &args).0
    };
    // 0.3 lets (400,401) in: it takes (400,400). b: TP 2, FP 2, FN 0.
    let low = run("0.3");
    assert_eq!(image_counts(&low, "b.tiff"), counts(2, 2, 0));
    assert_eq!(low.overall.counts, counts(5, 3, 1));
    // 0.9 keeps only 0.95 and 0.99 (0.9 itself is out): a has nothing (FN 3); in b the figure
    // (100,100) takes (95,103); d keeps its false positive.
    let high = run("0.9");
    assert_eq!(image_counts(&high, "a.tiff"), counts(0, 0, 3));
    assert_eq!(image_counts(&high, "b.tiff"), counts(1, 0, 1));
    assert_eq!(high.overall.counts, counts(1, 1, 5));
    assert_eq!(high.threshold, 0.9);
    // Without a probability column every detection takes part, whatever the threshold.
    let plain: String = PRED
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    let dir = files(&[("truth.csv", TRUTH), ("plain.csv", &plain)]);
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "plain.csv"));
    let args = [
        "--pred",
        &pred,
        "--truth",
        &truth,
        "--mpp",
        "0.25",
        "--threshold",
        "0.99",
    ];
    let (report, _) = eval_ok(&dir, &args);
    assert_eq!(report.overall.counts, counts(5, 3, 1));
}

#[test]
fn images_missing_from_the_predictions_count_as_false_negatives() {
    let dir = files(&[("truth.csv", TRUTH), ("pred.csv", PRED)]);
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "pred.csv"));
    let out = arg(&dir, "report.json");
    let output = mitoscope(&[
        "eval", "--pred", &pred, "--truth", &truth, "--mpp", "0.25", "--out", &out,
    ]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 of the 4 images have no predictions (c.tiff): their 1 figures"),
        "{stderr}"
    );
    let report: EvalReport = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let c = report.images.iter().find(|i| i.image == "c.tiff").unwrap();
    assert!(!c.predicted);
    assert_eq!((c.figures, c.detections, c.counts), (1, 0, counts(0, 0, 1)));
    assert_eq!(report.warnings.len(), 1);
}

#[test]
fn a_folder_of_per_image_detection_tables() {
    // The CSV `mitoscope detect` writes for one image, named after it: the same detections as
    // PRED, so the same counts.
    let header = "x,y,probability,area_um2\n";
    let a = format!("{header}110,100,0.9,20.5\n90,100,0.8,18\n330,100,0.7,30\n");
    let b = format!("{header}105,100,0.6,1\n95,103,0.95,1\n431,400,0.9,1\n400,401,0.4,1\n");
    let d = format!("{header}10,10,0.99,25\n");
    let dir = files(&[("truth.csv", TRUTH)]);
    let folder = dir.path().join("detections");
    std::fs::create_dir(&folder).unwrap();
    for (name, text) in [("a.csv", &a), ("b.tiff.csv", &b), ("d.csv", &d)] {
        std::fs::write(folder.join(name), text).unwrap();
    }
    std::fs::write(folder.join("notes.txt"), "not read").unwrap();
    let truth = arg(&dir, "truth.csv");
    let (report, _) = eval_ok(
        &dir,
        &[
            "--pred",
            folder.to_str().unwrap(),
            "--truth",
            &truth,
            "--mpp",
            "0.25",
        ],
    );
    assert_eq!(report.overall.counts, counts(4, 3, 2));
    assert_eq!(report.pred_formats, ["CSV of one image (pixels)"]);

    // One such file, named with --image.
    let single = dir.path().join("detections/a.csv");
    let args = [
        "--pred",
        single.to_str().unwrap(),
        "--image",
        "b.tiff",
        "--truth",
        &truth,
        "--mpp",
        "0.25",
    ];
    let (report, _) = eval_ok(&dir, &args);
    // a's detections on b: (110,100) takes (100,100), the others are false positives.
    assert_eq!(image_counts(&report, "b.tiff"), counts(1, 2, 1));
    // a (3) and c (1) have no detections now.
    assert_eq!(report.overall.counts, counts(1, 2, 5));
}

#[test]
fn a_pixel_size_column_wins_over_mpp() {
    // 20 px is 5 um at 0.25 um/px (a match) but 10 um at 0.5 (none).
    let dir = files(&[
        ("truth.csv", "image,x,y,mpp\nz.tiff,0,0,0.25\n"),
        ("pred.csv", "image,x,y\nz.tiff,20,0\n"),
    ]);
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "pred.csv"));
    let (report, _) = eval_ok(&dir, &["--pred", &pred, "--truth", &truth, "--mpp", "0.5"]);
    assert_eq!(report.overall.counts, counts(1, 0, 0));
    assert!(report.warnings[0].contains("--mpp 0.5 was not used"));
    let (report, _) = eval_ok(&dir, &["--pred", &pred, "--truth", &truth]);
    assert_eq!(report.overall.counts, counts(1, 0, 0));
    // Groups come from every other column; an image's empty group cell leaves it out.
    let dir = files(&[
        (
            "truth.csv",
            "image,x,y,mpp,site\nz.tiff,0,0,0.5,north\ny.tiff,5,5,0.5,\n",
        ),
        ("pred.csv", "image,x,y\nz.tiff,20,0\ny.tiff,5,5\n"),
    ]);
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "pred.csv"));
    let (report, table) = eval_ok(&dir, &["--pred", &pred, "--truth", &truth]);
    assert_eq!(image_counts(&report, "z.tiff"), counts(0, 1, 1));
    assert_eq!(report.overall.counts, counts(1, 1, 1));
    assert_eq!(
        table_row(&table, "site: north"),
        ["1", "0", "1", "1", "0.000", "0.000", "0.000"]
    );
}

#[test]
fn millimetre_ground_truth_and_midog_output() {
    // The MIDOG 2021 evaluation container's example: 007.tiff with the same figure twice, in mm.
    let Some(truth) = midog("MIDOG2021_evaluation_docker_ground-truth_example.json") else {
        return;
    };
    let truth = truth.to_str().unwrap();
    // MIDOG output for 007.tiff (named by the file): a figure 0.2 um from it, and a
    // "non-mitotic figure" on it that does not count. Both in mm: no pixel size needed.
    let output = r#"{"type": "Multiple points", "version": {"major": 1, "minor": 0},
        "points": [
            {"point": [0.37485, 0.7571, 0], "probability": 0.8, "name": "mitotic figure"},
            {"point": [0.374850364, 0.756961752, 0], "probability": 0.9,
             "name": "non-mitotic figure"}
        ]}"#;
    // The same figure as a pixel table: 10 px from it at 0.25 um/px (0.0025 mm).
    let pixels = format!(
        "image,x,y\n007.tiff,{},{}\n",
        0.374850364 * 4000.0 + 10.0,
        0.756961752 * 4000.0
    );
    let dir = files(&[("007.json", output), ("pixels.csv", &pixels)]);
    let (json, csv) = (arg(&dir, "007.json"), arg(&dir, "pixels.csv"));

    let (report, _) = eval_ok(&dir, &["--pred", &json, "--truth", truth]);
    assert_eq!(report.overall.counts, counts(1, 0, 1));
    assert_eq!(report.images[0].mpp, None);
    assert!(report.warnings[0].contains("1 points named other than \"mitotic figure\""));

    let (report, _) = eval_ok(&dir, &["--pred", &csv, "--truth", truth, "--mpp", "0.25"]);
    assert_eq!(report.overall.counts, counts(1, 0, 1));
    let message = eval_err(&["--pred", &csv, "--truth", truth]);
    assert!(message.contains("--mpp"), "{message}");

    // The MIDOG 2022 reference container's example output against pixel figures: its first
    // point (0.7598, 585.9 px, 632.3 px at 0.25 um/px) is a hit, the second (0.7463) a false
    // positive, and the two "non-mitotic figure" points are left out, so the figure at the
    // third one's place is missed.
    let Some(example) = midog("MIDOG2022_reference_docker_expected_output_example.json") else {
        return;
    };
    let dir = files(&[(
        "truth.csv",
        "image,x,y\nref.tiff,586,632\nref.tiff,141,629\n",
    )]);
    std::fs::copy(example, dir.path().join("ref.json")).unwrap();
    let (truth, pred) = (arg(&dir, "truth.csv"), arg(&dir, "ref.json"));
    let (report, _) = eval_ok(&dir, &["--pred", &pred, "--truth", &truth, "--mpp", "0.25"]);
    assert_eq!(report.overall.counts, counts(1, 1, 1));
    let args = [
        "--pred",
        &pred,
        "--truth",
        &truth,
        "--mpp",
        "0.25",
        "--threshold",
        "0.75",
    ];
    let (report, _) = eval_ok(&dir, &args);
    assert_eq!(report.overall.counts, counts(1, 0, 1));
}

#[test]
fn bad_input_gives_clear_errors() {
    let coco = r#"{"images": [{"id": 1, "file_name": "001.tiff", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "mitotic figure"}],
        "annotations": [{"bbox": [0, 0, 4, 4], "category_id": 1, "image_id": 1}]}"#;
    let dir = files(&[
        ("truth.csv", TRUTH),
        ("pred.csv", PRED),
        ("hello.txt", "hello world\n"),
        ("coco.json", coco),
        ("unknown.csv", "image,x,y\na.tiff,1,1\nzzz.tiff,1,1\n"),
        ("renamed.csv", "image,x,y\nimg1,1,1\nimg2,1,1\n"),
        ("typo.csv", "image,x,y\na.tiff,1O0,100\n"),
        ("ragged.csv", "image,x,y\na.tiff,100\n"),
        ("empty.csv", ""),
        (
            "points.json",
            r#"{"type": "Multiple points", "points": []}"#,
        ),
        ("broken.json", r#"{"images": ["#),
    ]);
    std::fs::write(
        dir.path().join("image.png"),
        [0x89, b'P', b'N', b'G', 0xff, 0xfe],
    )
    .unwrap();
    let path = |name: &str| arg(&dir, name);
    let (truth, pred) = (path("truth.csv"), path("pred.csv"));
    let (coco, points, broken) = (path("coco.json"), path("points.json"), path("broken.json"));
    let cases: [(String, &str, &[&str], &[&str]); 16] = [
        // No pixel size for a pixel truth: say which images and what to give.
        (
            pred.clone(),
            &truth,
            &[],
            &[
                "truth.csv",
                "does not give the pixel size of 4 images",
                "--mpp",
            ],
        ),
        (
            coco.clone(),
            &coco,
            &[],
            &["coco.json", "is not a prediction file"],
        ),
        (
            pred.clone(),
            &coco,
            &[],
            &["none of the 3 images of --pred is in --truth", "001.tiff"],
        ),
        (
            path("unknown.csv"),
            &truth,
            &[],
            &[
                "1 of the 2 images of --pred are not",
                "(zzz.tiff)",
                "a.tiff",
            ],
        ),
        (
            path("renamed.csv"),
            &truth,
            &[],
            &["none of the 2 images", "img1, img2"],
        ),
        (
            path("typo.csv"),
            &truth,
            &[],
            &["typo.csv: line 2, column x: \"1O0\" is not a finite number"],
        ),
        (
            path("ragged.csv"),
            &truth,
            &[],
            &["ragged.csv: line 2: expected 3 cells"],
        ),
        (
            pred.clone(),
            &path("hello.txt"),
            &[],
            &["hello.txt: line 1: expected the columns image,x,y"],
        ),
        (
            pred.clone(),
            &points,
            &[],
            &[
                "points.json is not a ground-truth file",
                "MIDOG++ or MIDOG 2021",
            ],
        ),
        (
            pred.clone(),
            &broken,
            &[],
            &["broken.json is not valid JSON", "EOF"],
        ),
        (
            pred.clone(),
            &path("empty.csv"),
            &[],
            &["empty.csv: the file is empty"],
        ),
        (
            path("image.png"),
            &truth,
            &[],
            &["image.png is not a text file", "expected a CSV"],
        ),
        (
            pred.clone(),
            &path("missing.csv"),
            &[],
            &["cannot read --truth", "missing.csv"],
        ),
        (
            pred.clone(),
            &truth,
            &["--threshold", "NaN"],
            &["--threshold must be a finite number"],
        ),
        (
            pred.clone(),
            &truth,
            &["--mpp", "0"],
            &["--mpp must be a positive number"],
        ),
        (
            pred.clone(),
            &truth,
            &["--image", "a.tiff", "--mpp", "0.25"],
            &["--image names the image of a file of one image"],
        ),
    ];
    for (pred, truth, extra, expected) in cases {
        let mut args = vec!["--pred", pred.as_str(), "--truth", truth];
        args.extend_from_slice(extra);
        let message = eval_err(&args);
        for part in expected {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }
}

/// The figures of `images` shifted by (3, -4) px (5 px) as a prediction table with
/// probability 0.9, leaving out those `drop` picks; returns the table and how many were left out.
fn shifted_predictions(
    images: &[AnnotatedImage],
    mut drop: impl FnMut(&[Point], usize) -> bool,
) -> (String, u64) {
    let mut text = String::from("image,x,y,probability\n");
    let mut dropped = 0;
    for image in images {
        for (k, figure) in image.figures.iter().enumerate() {
            if drop(&image.figures, k) {
                dropped += 1;
                continue;
            }
            let (x, y) = (figure.x + 3.0, figure.y - 4.0);
            text += &format!("{},{x},{y},0.9\n", image.file_name);
        }
    }
    (text, dropped)
}

#[test]
fn real_midogpp_test_set() {
    let (Some(database), Some(split)) = (
        midog("MIDOGpp_MIDOG++.json"),
        midog("MIDOGpp_datasets_xvalidation.csv"),
    ) else {
        return;
    };
    let images = read_midog_json(&std::fs::read_to_string(&database).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = |pred: &str| EvalOptions {
        split: Some(split.clone()),
        dataset: Some("test".into()),
        ..EvalOptions::new(dir.path().join(pred), &database)
    };

    // Every figure of every image found 5 px off: a perfect score on the 111 test slides
    // (2467 figures), the train slides' predictions ignored.
    let (all, _) = shifted_predictions(&images, |_, _| false);
    std::fs::write(dir.path().join("all.csv"), all).unwrap();
    let report = evaluate_files(&options("all.csv")).unwrap();
    assert_eq!(report.overall.images, 111);
    assert_eq!(report.overall.counts, counts(2467, 0, 0));
    assert_eq!(report.overall.f1, Some(1.0));
    assert_eq!(report.excluded_images, 553 - 111);
    let by = |name: &str| {
        report
            .groups
            .iter()
            .filter(|g| g.by == name)
            .map(|g| (g.group.as_str(), g.score.images))
            .collect::<Vec<_>>()
    };
    assert_eq!(by("tumor").len(), 7);
    assert_eq!(
        by("scanner"),
        [
            ("3D Histech", 44),
            ("Aperio CS2", 22),
            ("Hamamatsu S360", 11),
            ("Hamamatsu XR", 34)
        ]
    );
    for grouping in ["tumor", "scanner"] {
        let sum: Counts = report
            .groups
            .iter()
            .filter(|g| g.by == grouping)
            .map(|g| g.score.counts)
            .sum();
        assert_eq!(sum, report.overall.counts, "{grouping}");
    }
    let hamamatsu = report.images.iter().find(|i| i.image == "001.tiff");
    assert!(hamamatsu.is_none(), "001.tiff is a train slide");
    let xr = report
        .images
        .iter()
        .find(|i| i.groups["scanner"] == "Hamamatsu XR");
    assert_eq!(xr.unwrap().mpp, Some(0.23));

    // Every 10th figure of the test slides with no other within 80 px left out: none of them
    // can take a neighbour's detection, so each is exactly one false negative.
    let split_text = std::fs::read_to_string(&split).unwrap();
    let test: Vec<String> = read_midogpp_split(&split_text)
        .unwrap()
        .iter()
        .filter(|s| s.dataset == "test")
        .map(|s| s.file_name())
        .collect();
    let test_images: Vec<AnnotatedImage> = images
        .iter()
        .filter(|i| test.contains(&i.file_name))
        .cloned()
        .collect();
    let mut isolated = 0_u32;
    let (some, dropped) = shifted_predictions(&test_images, |figures, k| {
        let alone = figures.iter().enumerate().all(|(j, other)| {
            j == k || (other.x - figures[k].x).hypot(other.y - figures[k].y) > 80.0
        });
        if alone {
            isolated += 1;
        }
        alone && isolated.is_multiple_of(10)
    });
    std::fs::write(dir.path().join("some.csv"), some).unwrap();
    let report = evaluate_files(&options("some.csv")).unwrap();
    assert!(dropped > 100, "{dropped}");
    assert_eq!(report.overall.counts, counts(2467 - dropped, 0, dropped));
    assert_eq!(
        report.overall.recall,
        Some((2467 - dropped) as f64 / 2467.0)
    );
    assert_eq!(report.overall.precision, Some(1.0));

    // Without --split the pixel size is unknown.
    let err = evaluate_files(&EvalOptions::new(dir.path().join("all.csv"), &database))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--mpp") && err.contains("--split"), "{err}");
}

#[test]
fn real_midog2021_database_with_the_midogpp_split() {
    let (Some(database), Some(split)) = (
        midog("MIDOG2021_MIDOG.json"),
        midog("MIDOGpp_datasets_xvalidation.csv"),
    ) else {
        return;
    };
    let images = read_midog_json(&std::fs::read_to_string(&database).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (all, _) = shifted_predictions(&images, |_, _| false);
    std::fs::write(dir.path().join("all.csv"), all).unwrap();
    // Slides 1-150 of MIDOG 2021 are MIDOG++'s breast slides; its 151-200 are not in the table.
    let options = EvalOptions {
        split: Some(split),
        ..EvalOptions::new(dir.path().join("all.csv"), &database)
    };
    let report = evaluate_files(&options).unwrap();
    assert_eq!(report.overall.images, 150);
    assert_eq!(report.overall.counts, counts(1721, 0, 0));
    assert_eq!(report.excluded_images, 50);
    let groups: Vec<(&str, &str, usize)> = report
        .groups
        .iter()
        .map(|g| (g.by.as_str(), g.group.as_str(), g.score.images))
        .collect();
    assert_eq!(
        groups,
        [
            ("tumor", "human breast cancer", 150),
            ("scanner", "Aperio CS2", 50),
            ("scanner", "Hamamatsu S360", 50),
            ("scanner", "Hamamatsu XR", 50),
        ]
    );
    assert!(report.warnings[0].contains("353 of the 503 slides"));
}
