//! `mitoscope`: the command-line program. See `mitoscope --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use clap::{Parser, Subcommand};
use mitoscope::backend::Backend;
use mitoscope::coverage;
use mitoscope::propose::{self, ProposeOptions};
use mitoscope::serve::ServeOptions;
use mitoscope_core::density::DEFAULT_THRESHOLD;

// mimalloc keeps freed memory for reuse: the networks allocate and free large buffers per tile,
// which the system allocator hands back to the kernel and zeroes again each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mitotic-figure detection in H&E images.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every cell-scale object of an image (the proposal stage), as GeoJSON polygons with their
    /// scores.
    Propose {
        /// The image: PNG, JPEG or TIFF (8-bit RGB, RGBA or grey; the first level of a
        /// pyramidal TIFF or SVS).
        image: PathBuf,
        /// Pixel size in micrometres per pixel, when the file does not state it (0.25 for a
        /// 40x scan, 0.5 for 20x).
        #[arg(long)]
        mpp: Option<f64>,
        /// A published Segment Anything checkpoint (sam_vit_b/l/h .pth) instead of the
        /// embedded LiteMedSAM.
        #[arg(long, value_name = "CHECKPOINT")]
        sam: Option<PathBuf>,
        /// Prompt with a regular grid of N x N points (as OMG-Net; 32 in its code, 64 in the
        /// paper) instead of the model's default prompts.
        #[arg(long, value_name = "N")]
        points_per_side: Option<u32>,
        /// Where to write the GeoJSON (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also write the proposals as CSV (id, x, y, predicted_iou, stability, area_um2).
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Also write a PNG of the image with the proposals' outlines.
        #[arg(long, value_name = "FILE.png")]
        overlay: Option<PathBuf>,
        /// Analyse only this rectangle of the image, in full-resolution pixels; the outputs keep
        /// the whole image's coordinates.
        #[arg(long, value_name = "X,Y,WIDTH,HEIGHT", value_parser = mitoscope::detect::parse_region)]
        region: Option<[u32; 4]>,
        /// Where the model runs (wgpu and cuda need a build with that cargo feature).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
    },
    /// Finds the mitotic figures of images, folders and whole slides, and counts them.
    ///
    /// Per input, in its own folder in --out: the figures as GeoJSON (QuPath detections) and
    /// CSV, an overlay PNG, and summary.json (count, analysed area, mitoses per mm^2, per 10 HPF
    /// and per 2 mm^2, hotspot). DIR/summary.csv has one row per input. Complete inputs are
    /// skipped on a rerun (--force redoes them); see docs/detect.md.
    Detect(mitoscope::detect::DetectArgs),
    /// Trains the classifier on a data set made by `mitoscope dataset`, from a JSON
    /// configuration (dataset, data, out, include_padded, training); resumes from the output
    /// folder's checkpoint.
    Train {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where the network trains (wgpu and cuda need a build with that cargo feature).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
    },
    /// Scores a classifier (or an ensemble) on the images of a data set made by `mitoscope
    /// dataset`: TP, FP, FN, precision, recall and F1 per source, and the look-alikes called
    /// mitotic, at a threshold and over a sweep of thresholds.
    Report {
        /// The folder `mitoscope dataset` wrote.
        #[arg(long, value_name = "DIR")]
        dataset: PathBuf,
        /// The data folder the data set's image paths are relative to.
        #[arg(long, value_name = "DIR", default_value = "../shared/data")]
        data: PathBuf,
        /// Classifier checkpoints, averaged as an ensemble (default: the embedded classifier).
        #[arg(long, value_name = "CHECKPOINT", num_args = 1..)]
        classifier: Vec<PathBuf>,
        /// Which images: the validation split, the training split, or all.
        #[arg(long, value_enum, default_value_t = mitoscope::report::SplitChoice::Val)]
        split: mitoscope::report::SplitChoice,
        /// A detection's probability must be strictly above this.
        #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
        threshold: f64,
        /// Leaves out the proposals whose 64 px crop leaves the image (zero-padded crops).
        #[arg(long)]
        skip_border: bool,
        /// Keeps every detection, also those within 7.5 um of a surer one (OMG-Net's rule; by
        /// default they are dropped as repeats, as `mitoscope detect` does).
        #[arg(long)]
        keep_repeats: bool,
        /// Writes the report as JSON here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Where the classifier runs (wgpu and cuda need a build with that cargo feature).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
    },
    /// Runs the self-hosted server: the web app and the API that streams proposals to it.
    Serve {
        /// Address and port to listen on (0.0.0.0:8080 to open it to the network; port 0
        /// picks a free one).
        #[arg(long, default_value = mitoscope::serve::DEFAULT_BIND)]
        bind: std::net::SocketAddr,
        /// A published Segment Anything checkpoint (sam_vit_b/l/h .pth) instead of the
        /// embedded LiteMedSAM.
        #[arg(long, value_name = "CHECKPOINT")]
        sam: Option<PathBuf>,
        /// Where the model runs (wgpu and cuda need a build with that cargo feature).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// The folder of the built web app, served at / (scripts/build-web.sh builds it into
        /// dist/).
        #[arg(long, value_name = "DIR")]
        web: Option<PathBuf>,
        /// A classifier checkpoint (the reference's Lightning .ckpt, a torchvision state dict
        /// or a safetensors export) for the browser to run instead of the embedded default;
        /// repeat for an ensemble.
        #[arg(long, value_name = "CHECKPOINT")]
        classifier: Vec<PathBuf>,
        /// A file holding the API token that every /api/ request must send as
        /// `Authorization: Bearer TOKEN` (or set MITOSCOPE_TOKEN).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Let pages from this origin call the API (CORS), e.g. https://viewer.example.org;
        /// repeat for several. Off by default.
        #[arg(long, value_name = "ORIGIN")]
        cors_origin: Vec<String>,
        /// Largest accepted upload, in MiB.
        #[arg(long, default_value_t = 200)]
        max_upload_mb: u64,
        /// Largest accepted image, in millions of pixels.
        #[arg(long, default_value_t = 50.0)]
        max_megapixels: f64,
        /// Longest a job may take, waiting in the queue included, in seconds.
        #[arg(long, default_value_t = 3600)]
        job_timeout: u64,
        /// Jobs that may wait for the model; more get 503 with Retry-After.
        #[arg(long, default_value_t = 16)]
        queue: usize,
    },
    /// Measures how many annotated mitotic figures of the shared test data the proposals find.
    Coverage {
        /// The data folder (with icpr2012_patches/, ami-br_midog21_patches/ and
        /// tupac16_mitosis_candidates_prlab/).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// Use every N-th image of each source (1: all).
        #[arg(long, default_value_t = 1)]
        every: usize,
        /// A published Segment Anything checkpoint instead of the embedded LiteMedSAM.
        #[arg(long, value_name = "CHECKPOINT")]
        sam: Option<PathBuf>,
        /// Write the per-image results as JSON lines here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Builds the classifier's training data: proposals of every annotated image, labelled
    /// against the annotations, split into training and validation by slide or case.
    ///
    /// Writes proposals.jsonl, split.csv and summary.json to --out, and keeps the proposals
    /// found in cache.jsonl there so that an interrupted run resumes (see docs/dataset.md).
    Dataset {
        /// The data folder (with icpr2012_patches/, ami-br_midog21_patches/,
        /// tupac16_mitosis_candidates_prlab/ and midog_annotations/).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// The output folder (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Use every N-th image of each source (1: all); the split stays that of all images.
        #[arg(long, default_value_t = 1)]
        every: usize,
        /// Seed of the train/validation split.
        #[arg(long, default_value_t = mitoscope::dataset::DEFAULT_SEED)]
        seed: u64,
        /// Share of each source's images (whole slides or cases) for validation.
        #[arg(long, default_value_t = mitoscope::dataset::DEFAULT_VAL_FRACTION)]
        val_fraction: f64,
        /// A published Segment Anything checkpoint instead of the embedded LiteMedSAM.
        #[arg(long, value_name = "CHECKPOINT")]
        sam: Option<PathBuf>,
        /// Where the model runs (wgpu and cuda need a build with that cargo feature).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
    },
    /// Scores detections against annotated mitotic figures as the MIDOG challenges do.
    ///
    /// A detection matches the nearest unmatched figure within 7.5 um; TP, FP and FN are summed
    /// over the images, per group and overall, with precision, recall and F1.
    Eval {
        /// The detections: a CSV (x,y and optionally image and probability), MIDOG output JSON
        /// (points in mm), or a folder of such files (one image each, named by the file name).
        #[arg(long, value_name = "FILE|DIR")]
        pred: PathBuf,
        /// The figures: MIDOG++ or MIDOG 2021 annotation database (JSON), MIDOG ground-truth
        /// JSON (mm), or a CSV with image,x,y (optional mpp and group columns).
        #[arg(long, value_name = "FILE")]
        truth: PathBuf,
        /// Pixel size in micrometres per pixel for the images whose truth does not give one
        /// (0.25 for a 40x scan).
        #[arg(long)]
        mpp: Option<f64>,
        /// Detections with a probability count only if it is above P.
        #[arg(long, value_name = "P", default_value_t = DEFAULT_THRESHOLD)]
        threshold: f64,
        /// The image a --pred file of one image's detections belongs to (default: the file
        /// name without its extension).
        #[arg(long, value_name = "NAME")]
        image: Option<String>,
        /// The MIDOG++ split table (datasets_xvalidation.csv): evaluate its slides only, also
        /// per scanner, with each scanner's pixel size.
        #[arg(long, value_name = "FILE")]
        split: Option<PathBuf>,
        /// With --split: only the slides of this dataset (test or train).
        #[arg(long, value_name = "NAME", requires = "split")]
        dataset: Option<String>,
        /// Also write the full report (per group and per image) as JSON.
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MITOSCOPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a pipe or a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = Device::flex();
    match cli.command {
        Command::Propose {
            image,
            mpp,
            sam,
            points_per_side,
            out,
            csv,
            overlay,
            region,
            backend,
        } => propose::run(
            &ProposeOptions {
                image,
                mpp,
                sam,
                points_per_side,
                out,
                csv,
                overlay,
                region,
                progress: std::io::stderr().is_terminal(),
            },
            &backend.device()?,
        ),
        Command::Detect(args) => mitoscope::detect::run_cli(&args, std::io::stderr().is_terminal()),
        Command::Train { config, backend } => {
            mitoscope::train::run(&config, &backend.device()?, std::io::stderr().is_terminal())
        }
        Command::Report {
            dataset,
            data,
            classifier,
            split,
            threshold,
            skip_border,
            keep_repeats,
            out,
            backend,
        } => {
            let options = mitoscope::report::ReportOptions {
                dataset,
                data,
                classifiers: classifier,
                split,
                threshold,
                skip_border,
                keep_repeats,
                out,
                progress: std::io::stderr().is_terminal(),
            };
            mitoscope::report::run(&options, &backend.device()?).map(|_| ())
        }
        Command::Serve {
            bind,
            sam,
            backend,
            web,
            classifier,
            token_file,
            cors_origin,
            max_upload_mb,
            max_megapixels,
            job_timeout,
            queue,
        } => {
            let token = read_token(token_file.as_deref())?;
            if !(max_megapixels.is_finite() && max_megapixels > 0.0) {
                bail!("--max-megapixels must be a positive number");
            }
            mitoscope::serve::run(ServeOptions {
                bind,
                sam,
                backend,
                classifiers: classifier,
                web,
                token,
                cors_origins: cors_origin,
                max_upload_bytes: max_upload_mb.saturating_mul(1 << 20),
                max_pixels: (max_megapixels * 1e6) as u64,
                job_timeout: std::time::Duration::from_secs(job_timeout),
                queue,
            })
        }
        Command::Coverage {
            data,
            every,
            sam,
            out,
        } => run_coverage(&data, every, sam, out, &device),
        Command::Dataset {
            data,
            out,
            every,
            seed,
            val_fraction,
            sam,
            backend,
        } => {
            let options = mitoscope::dataset::DatasetOptions {
                data,
                out,
                every,
                seed,
                val_fraction,
                sam,
                progress: std::io::stderr().is_terminal(),
            };
            let summary = mitoscope::dataset::run(&options, &backend.device()?)?;
            println!("{}", mitoscope::dataset::table(&summary.rows));
            Ok(())
        }
        Command::Eval {
            pred,
            truth,
            mpp,
            threshold,
            image,
            split,
            dataset,
            out,
        } => mitoscope::eval::run(&mitoscope::eval::EvalOptions {
            pred,
            truth,
            image,
            mpp,
            threshold,
            split,
            dataset,
            out,
        }),
    }
}

/// The API token: from `--token-file`, else from `MITOSCOPE_TOKEN`, else none.
fn read_token(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(std::env::var("MITOSCOPE_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned()))
}

fn run_coverage(
    data: &std::path::Path,
    every: usize,
    sam: Option<PathBuf>,
    out: Option<PathBuf>,
    device: &Device,
) -> Result<()> {
    if !data.is_dir() {
        bail!(
            "{} is not a folder: give the data folder with --data",
            data.display()
        );
    }
    let sam = mitoscope::load_sam(sam.as_deref(), device)?;
    let settings = sam.config().default_proposal_settings();
    let cases = coverage::sample(&coverage::load_cases(data)?, every);
    let mut lines = String::new();
    let total = cases.len();
    let mut done = 0;
    let results = coverage::run(&sam, &settings, data, &cases, |r| {
        done += 1;
        eprintln!("[{done}/{total}] {r}");
        if let Ok(line) = serde_json::to_string(r) {
            lines += &line;
            lines.push('\n');
        }
    })?;
    if let Some(path) = out {
        mitoscope::output::write_atomic(&path, lines.as_bytes())?;
    }
    println!("{}", coverage::table(&results));
    Ok(())
}
