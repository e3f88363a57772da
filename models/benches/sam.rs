//! Times our SAM networks against the PyTorch reference on this machine, in one run, on the same
//! image and the same weights, and prints a table with the ratio.
//!
//! ```text
//! bash tests/reference/setup.sh     # once: the reference's virtual environment
//! cargo bench -p mitoscope-models --bench sam -- [--skip-vit-h] [--repeats N] [--image PATH]
//! ```
//!
//! The reference side is `tests/reference/bench_reference.py`, run first as a child process
//! (so the two never share the CPU); it writes the random ViT-B and ViT-H checkpoints into
//! `target/bench-weights/` once, and this side loads the very same files. Measured: the ViT-B
//! and ViT-H encoders at 1024 px, LiteMedSAM's TinyViT at 256 px (its real weights), and the
//! prompt encoder plus mask decoder for 64 prompts in one batch (points for ViT-B, 24 px boxes
//! for LiteMedSAM), multimask. Each figure is the minimum over the timed runs after one warm-up
//! (ViT-H: one run, no warm-up, as the reference).

use std::path::PathBuf;
use std::process::Command;

use burn::prelude::*;
use mitoscope_models::sam::{ImageEmbedding, Prompt, RgbImage, Sam};
use support::{peak_rss_mb, repo, time};

mod support;

// burn allocates a fresh buffer for nearly every operation: mimalloc reuses them where the system
// allocator returns large ones to the kernel and faults them in again (measured: ViT-B encoder
// 15.5 s -> 13.9 s; with `MIMALLOC_PURGE_DELAY=-1` in the environment, 9.1 s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prompts per decoder call: an 8 x 8 grid.
const GRID: usize = 8;
/// Side of LiteMedSAM's box prompts, in input pixels.
const LITE_BOX: f32 = 24.0;

struct Args {
    image: PathBuf,
    weights_dir: PathBuf,
    python: PathBuf,
    repeats: usize,
    skip_vit_h: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        image: repo().join("../shared/data/he_samples_from_packages/tiatoolbox_target_image.png"),
        weights_dir: repo().join("target/bench-weights"),
        python: repo().join("tests/reference/.venv/bin/python"),
        repeats: 3,
        skip_vit_h: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--image" => args.image = value().into(),
            "--weights-dir" => args.weights_dir = value().into(),
            "--python" => args.python = value().into(),
            "--repeats" => args.repeats = value().parse().expect("--repeats takes a number"),
            "--skip-vit-h" => args.skip_vit_h = true,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Waits for a tensor's values (a cheap read-back).
fn sync<const D: usize>(x: Tensor<D>) {
    let _ = x.sum().into_scalar::<f32>();
}

/// Centres of the cells of a `GRID x GRID` grid over a square of `side`, row by row.
fn grid_centres(side: f32) -> Vec<[f32; 2]> {
    let step = side / GRID as f32;
    (0..GRID * GRID)
        .map(|i| {
            [
                ((i % GRID) as f32 + 0.5) * step,
                ((i / GRID) as f32 + 0.5) * step,
            ]
        })
        .collect()
}

/// Maps a point of the encoder input back to the original image, so that `Sam::predict`
/// (which takes image coordinates) decodes the prompts the reference gives in input space.
fn to_image(embedding: &ImageEmbedding, [x, y]: [f32; 2]) -> [f32; 2] {
    let [oh, ow] = embedding.original_size;
    let [ih, iw] = embedding.input_size;
    [x * ow as f32 / iw as f32, y * oh as f32 / ih as f32]
}

fn main() {
    let args = parse_args();
    let device = Device::flex();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The reference first, on its own.
    std::fs::create_dir_all(&args.weights_dir).expect("weights folder");
    eprintln!("running the PyTorch reference ({})", args.python.display());
    let mut command = Command::new(&args.python);
    command
        .arg(repo().join("tests/reference/bench_reference.py"))
        .arg("--image")
        .arg(&args.image)
        .arg("--weights-dir")
        .arg(&args.weights_dir)
        .arg("--repeats")
        .arg(args.repeats.to_string());
    if args.skip_vit_h {
        command.arg("--skip-vit-h");
    }
    let output = command.output().unwrap_or_else(|err| {
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

    let decoded = image::open(&args.image).expect("bench image").to_rgb8();
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let image = RgbImage::new(w, h, decoded.into_raw()).expect("RGB image");
    let mut rows: Vec<(&str, String, [f64; 2])> = Vec::new();

    // SAM ViT-B: encoder, then 64 point prompts.
    eprintln!("timing Mitoscope: ViT-B");
    let sam = Sam::load(&args.weights_dir.join("sam_vit_b_random.pth"), &device).expect("ViT-B");
    let (input, _) = sam.preprocess(&image);
    rows.push((
        "vit_b_encoder",
        "ViT-B encoder, 1024 px".into(),
        time(args.repeats, true, || {
            sync(sam.encode(input.clone()));
        }),
    ));
    let embedding = sam.embed(&image);
    let prompts: Vec<Prompt> = grid_centres(1024.0)
        .into_iter()
        .map(|c| {
            let [x, y] = to_image(&embedding, c);
            Prompt::point(x, y)
        })
        .collect();
    rows.push((
        "decoder_64",
        "ViT-B prompt encoder + decoder, 64 points".into(),
        time(args.repeats, true, || {
            sync(
                sam.predict(&embedding, &prompts, true)
                    .expect("decode")
                    .low_res_logits,
            );
        }),
    ));
    drop(sam);

    // LiteMedSAM: TinyViT, then 64 box prompts.
    eprintln!("timing Mitoscope: LiteMedSAM");
    let lite = Sam::embedded(&device).expect("LiteMedSAM");
    let (input, _) = lite.preprocess(&image);
    rows.push((
        "tiny_vit_encoder",
        "LiteMedSAM TinyViT encoder, 256 px".into(),
        time(args.repeats, true, || {
            sync(lite.encode(input.clone()));
        }),
    ));
    let embedding = lite.embed(&image);
    let half = LITE_BOX / 2.0;
    let boxes: Vec<Prompt> = grid_centres(256.0)
        .into_iter()
        .map(|[x, y]| {
            let [x0, y0] = to_image(&embedding, [x - half, y - half]);
            let [x1, y1] = to_image(&embedding, [x + half, y + half]);
            Prompt::bbox(x0, y0, x1, y1)
        })
        .collect();
    rows.push((
        "lite_decoder_64",
        "LiteMedSAM prompt encoder + decoder, 64 boxes".into(),
        time(args.repeats, true, || {
            sync(
                lite.predict(&embedding, &boxes, true)
                    .expect("decode")
                    .low_res_logits,
            );
        }),
    ));
    drop(lite);

    // SAM ViT-H: encoder only, one run.
    if !args.skip_vit_h {
        eprintln!("timing Mitoscope: ViT-H");
        let sam =
            Sam::load(&args.weights_dir.join("sam_vit_h_random.pth"), &device).expect("ViT-H");
        let (input, _) = sam.preprocess(&image);
        rows.push((
            "vit_h_encoder",
            "ViT-H encoder, 1024 px".into(),
            time(1, false, || {
                sync(sam.encode(input.clone()));
            }),
        ));
    }

    println!(
        "\nimage {} ({w} x {h} px); {threads} threads; PyTorch {} ({} threads)\n",
        args.image.file_name().unwrap_or_default().to_string_lossy(),
        reference["torch"].as_str().unwrap_or("?"),
        reference["threads"],
    );
    println!("| stage | PyTorch min (median) s | Mitoscope min (median) s | PyTorch / Mitoscope |");
    println!("|---|---|---|---|");
    for (key, label, [min, median]) in &rows {
        let reference_min = reference[key]["min_s"].as_f64().unwrap_or(f64::NAN);
        let reference_median = reference[key]["median_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {label} | {reference_min:.2} ({reference_median:.2}) | {min:.2} ({median:.2}) | {:.2} |",
            reference_min / min
        );
    }
    println!(
        "\npeak RSS: PyTorch {} MB, Mitoscope {:.0} MB",
        reference["peak_rss_mb"],
        peak_rss_mb().unwrap_or(f64::NAN)
    );
}
