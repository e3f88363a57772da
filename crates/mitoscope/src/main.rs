//! `mitoscope`: the command-line program. See `mitoscope --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use burn::prelude::Device;
use clap::{Parser, Subcommand};
use mitoscope::coverage;
use mitoscope::propose::{self, ProposeOptions};

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
        #[arg(long, value_name = "X,Y,WIDTH,HEIGHT", value_parser = parse_region)]
        region: Option<[u32; 4]>,
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
}

/// Parses `X,Y,WIDTH,HEIGHT`.
fn parse_region(text: &str) -> Result<[u32; 4], String> {
    let values: Vec<u32> = text
        .split(',')
        .map(|v| v.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?} is not X,Y,WIDTH,HEIGHT in whole pixels"))?;
    <[u32; 4]>::try_from(values)
        .map_err(|_| format!("{text:?} is not X,Y,WIDTH,HEIGHT (four numbers)"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MITOSCOPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
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
            &device,
        ),
        Command::Coverage {
            data,
            every,
            sam,
            out,
        } => run_coverage(&data, every, sam, out, &device),
    }
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
