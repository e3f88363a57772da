//! Crops per second of the mask-aware ResNet18 classifier against the PyTorch reference, in one
//! run, on the same crops and the same weights, as a table with the ratio.
//!
//! ```text
//! bash tests/reference/setup.sh     # once: the reference's virtual environment
//! cargo bench -p mitoscope-models --bench classifier -- [--crops 1024] [--repeats 3]
//! ```
//!
//! The reference side is `tests/reference/bench_classifier.py`, run first as a child process (so
//! the two never share the CPU). Both load `tests/fixtures/classifier/classifier.ckpt` and take
//! the 16 real crops of `tests/fixtures/classifier/outputs.safetensors` repeated to `--crops`
//! crops, in batches of 256 (the batch `Classifier::classify` uses). "classify" is the whole
//! step from uint8 crops to probabilities; "forward" the network alone on prepared tensors.
//! Each figure is the minimum (and median) over the timed runs after one warm-up.

use std::path::PathBuf;
use std::process::Command;

use burn::prelude::*;
use mitoscope_core::Crop;
use mitoscope_models::classifier::Classifier;
use mitoscope_models::ensemble::Ensemble;
use support::{repo, time};

mod support;

// As the other benchmarks: mimalloc reuses burn's many short-lived buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Crops per network call, as `Classifier::classify`.
const BATCH: usize = 256;
/// Side of a crop.
const SIDE: usize = 64;

struct Args {
    python: PathBuf,
    crops: usize,
    repeats: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        python: repo().join("tests/reference/.venv/bin/python"),
        crops: 1024,
        repeats: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--python" => args.python = value().into(),
            "--crops" => args.crops = value().parse().expect("--crops takes a number"),
            "--repeats" => args.repeats = value().parse().expect("--repeats takes a number"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// The fixture's crops, repeated to `count`.
fn crops(count: usize) -> Vec<Crop> {
    let path = repo().join("tests/fixtures/classifier/outputs.safetensors");
    let bytes = std::fs::read(&path).expect("the classifier fixture");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let rgb = file.tensor("rgb").expect("rgb").data().to_vec();
    let mask = file.tensor("mask").expect("mask").data().to_vec();
    let n = rgb.len() / (SIDE * SIDE * 3);
    let one: Vec<Crop> = (0..n)
        .map(|i| Crop {
            rgb: rgb[i * SIDE * SIDE * 3..(i + 1) * SIDE * SIDE * 3].to_vec(),
            mask: mask[i * SIDE * SIDE..(i + 1) * SIDE * SIDE].to_vec(),
        })
        .collect();
    one.iter().cycle().take(count).cloned().collect()
}

fn main() {
    let args = parse_args();
    let device = Device::flex();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    eprintln!("running the PyTorch reference ({})", args.python.display());
    let output = Command::new(&args.python)
        .arg(repo().join("tests/reference/bench_classifier.py"))
        .arg("--crops")
        .arg(args.crops.to_string())
        .arg("--batch")
        .arg(BATCH.to_string())
        .arg("--repeats")
        .arg(args.repeats.to_string())
        .current_dir(repo().join("tests/reference"))
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {}: {err}; run `bash tests/reference/setup.sh` first",
                args.python.display()
            )
        });
    assert!(
        output.status.success(),
        "the reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("reference JSON");

    eprintln!("timing Mitoscope");
    let checkpoint = repo().join("tests/fixtures/classifier/classifier.ckpt");
    let classifier = Classifier::load(&checkpoint, &device).expect("the fixture classifier");
    let crops = crops(args.crops);
    let classify = time(args.repeats, true, || {
        classifier.classify(&crops).expect("classify");
    });
    let batches: Vec<_> = crops
        .chunks(BATCH)
        .map(|batch| classifier.input(batch).expect("input"))
        .collect();
    let forward = time(args.repeats, true, || {
        for (rgb, mask) in &batches {
            let _ = classifier
                .forward(rgb.clone(), mask.clone())
                .sum()
                .into_scalar::<f32>();
        }
    });
    // An ensemble of five members runs each one: five times the work.
    let members = (0..5)
        .map(|_| Classifier::load(&checkpoint, &device).expect("the fixture classifier"))
        .collect();
    let ensemble = Ensemble::from_members(members).expect("five members");
    let ensemble_time = time(1, true, || {
        ensemble.classify(&crops).expect("classify");
    });

    let n = args.crops as f64;
    println!(
        "\n{} crops of 64 x 64 px in batches of {BATCH}; {threads} threads; PyTorch {} ({} \
         threads)\n",
        args.crops,
        reference["torch"].as_str().unwrap_or("?"),
        reference["threads"],
    );
    println!(
        "| step | PyTorch crops/s (min time s) | Mitoscope crops/s (min time s) | Mitoscope / \
         PyTorch |"
    );
    println!("|---|---|---|---|");
    for (key, label, [min, _]) in [
        ("classify", "uint8 crops to probabilities", classify),
        ("forward_only", "network forward only", forward),
    ] {
        let reference_min = reference[key]["min_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {label} | {:.0} ({reference_min:.2}) | {:.0} ({min:.2}) | {:.2} |",
            n / reference_min,
            n / min,
            reference_min / min
        );
    }
    println!(
        "| ensemble of 5, uint8 crops to probabilities | - | {:.0} ({:.2}) | - |",
        n / ensemble_time[0],
        ensemble_time[0]
    );
}
