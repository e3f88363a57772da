//! Times the proposal stage against the PyTorch reference on the same field and weights, in one
//! run, and prints a table with the ratio and each side's peak resident memory.
//!
//! ```text
//! bash tests/reference/setup.sh     # once: the reference's virtual environment
//! cargo bench -p mitoscope-models --bench proposals -- [--cases lite,grid32,grid64]
//! ```
//!
//! Cases (the reference side is `tests/reference/bench_proposals.py`, which documents them):
//! `lite`, the embedded default on the field's 256 px tiles; `grid32` and `grid64`, OMG-Net's
//! point grid with SAM ViT-B (random weights in the official layout, written once into
//! `target/bench-weights/` by `make_random_checkpoints.py`) on one 1024 px tile. The field is
//! `he_samples_from_packages/tiatoolbox_target_image.png` (1000 x 1000 px, 0.25 um/px), padded
//! with white to 1024 px where a tile needs it. Each case runs once per side, in its own
//! process, so that the peak memory is the case's own; weights load outside the timed part.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use burn::prelude::*;
use mitoscope_core::ProposalSettings;
use mitoscope_models::pipeline::propose_image;
use mitoscope_models::sam::{RgbImage, Sam};
use support::{peak_rss_mb, repo};

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pixel size of the field.
const MPP: f64 = 0.25;

fn image_path() -> PathBuf {
    repo().join("../shared/data/he_samples_from_packages/tiatoolbox_target_image.png")
}

fn vit_b() -> PathBuf {
    repo().join("target/bench-weights/sam_vit_b_random.pth")
}

/// Runs one case in this process and prints its JSON line.
fn run_case(case: &str) {
    let device = Device::flex();
    let decoded = image::open(image_path()).expect("the field").to_rgb8();
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let image = RgbImage::new(w, h, decoded.into_raw()).unwrap();
    let (sam, settings) = match case {
        "lite" => {
            let sam = Sam::embedded(&device).unwrap();
            let settings = ProposalSettings {
                // Every tile is analysed, as the reference does.
                min_tissue_fraction: 0.0,
                ..sam.config().default_proposal_settings()
            };
            (sam, settings)
        }
        "grid32" | "grid64" => {
            let sam = Sam::load(&vit_b(), &device).unwrap();
            let settings = ProposalSettings {
                points_per_side: case[4..].parse().unwrap(),
                // Every tile is analysed, as the reference does with its one tile.
                min_tissue_fraction: 0.0,
                ..sam.config().default_proposal_settings()
            };
            (sam, settings)
        }
        other => panic!("unknown case {other}"),
    };
    let started = Instant::now();
    let result = propose_image(&sam, &image, &settings, MPP, |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "case": case,
            "seconds": seconds,
            "peak_rss_mb": peak_rss_mb().unwrap_or(0.0),
            "proposals": result.counts.after_nms,
            "tiles": result.tiles_analysed,
        })
    );
}

/// Runs a command that prints one JSON line last; returns it.
fn json_of(command: &mut Command) -> serde_json::Value {
    let output = command.output().expect("run the benchmark child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("JSON")
}

fn main() {
    if let Ok(case) = std::env::var("MITOSCOPE_BENCH_CASE") {
        run_case(&case);
        return;
    }
    let mut cases = vec!["lite".to_string(), "grid32".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cases" {
            let list = args.next().expect("--cases needs a value");
            cases = list.split(',').map(str::to_string).collect();
        }
    }
    let python = repo().join("tests/reference/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/reference/setup.sh` first",
        python.display()
    );
    if cases.iter().any(|c| c.starts_with("grid")) && !vit_b().exists() {
        let status = Command::new(&python)
            .arg(repo().join("tests/reference/make_random_checkpoints.py"))
            .arg(vit_b().parent().unwrap())
            .args(["--sizes", "vit_b"])
            .status()
            .expect("make_random_checkpoints.py");
        assert!(status.success());
    }

    let me = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for case in &cases {
        eprintln!("{case}: PyTorch ...");
        let theirs = json_of(
            Command::new(&python)
                .arg(repo().join("tests/reference/bench_proposals.py"))
                .arg(case)
                .arg(image_path())
                .arg(vit_b()),
        );
        eprintln!("{case}: PyTorch {theirs}; Mitoscope ...");
        let ours = json_of(
            Command::new(&me)
                .env("MITOSCOPE_BENCH_CASE", case)
                .env("MIMALLOC_PURGE_DELAY", "-1"),
        );
        eprintln!("{case}: Mitoscope {ours}");
        rows.push((case.clone(), theirs, ours));
    }

    println!(
        "| case | tiles (PyTorch / ours) | proposals (PyTorch / ours) | PyTorch s | Mitoscope s \
         | PyTorch / Mitoscope | peak RSS MB (PyTorch / ours) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (case, theirs, ours) in rows {
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {case} | {} / {} | {} / {} | {:.1} | {:.1} | {:.2} | {:.0} / {:.0} |",
            theirs["tiles"],
            ours["tiles"],
            theirs["proposals"],
            ours["proposals"],
            f(&theirs, "seconds"),
            f(&ours, "seconds"),
            f(&theirs, "seconds") / f(&ours, "seconds"),
            f(&theirs, "peak_rss_mb"),
            f(&ours, "peak_rss_mb"),
        );
    }
}
