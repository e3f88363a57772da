//! The server against the command line on the same field, in one run.
//!
//! ```text
//! cargo bench -p mitoscope --bench serve [-- IMAGE MPP CLIENTS]
//! ```
//!
//! Defaults: the 1000 x 1000 px tiatoolbox field of `../shared/data` at 0.25 um/px, 4 clients.
//! It measures, with the embedded default model on the CPU:
//!
//! 1. `mitoscope propose` on the field: the whole command's wall time (model load, decode,
//!    proposals, GeoJSON);
//! 2. one upload to `mitoscope serve` (started once, on a loopback port): the time to the first
//!    byte of the response (the `started` event), to the first proposal, and to the `done`
//!    event;
//! 3. `CLIENTS` clients uploading the field at once: requests per minute the server sustains,
//!    and each request's latency;
//!
//! and prints a Markdown table for `BENCHMARKS.md`, with the server's peak memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mitoscope_core::wire::JobEvent;
use reqwest::blocking::Client;

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
            .args(["serve", "--bind", "127.0.0.1:0", "--queue", "64"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mitoscope serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the server's first line");
        let url = line
            .trim()
            .strip_prefix("mitoscope serving on ")
            .expect("the address line")
            .trim_end_matches('/')
            .to_owned();
        Self { child, url }
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One upload's timings, from the request's start.
#[derive(Debug, Clone, Copy)]
struct Timings {
    first_byte: Duration,
    first_proposal: Duration,
    done: Duration,
    proposals: usize,
}

fn upload(client: &Client, url: &str, bytes: &[u8], mpp: f64) -> Timings {
    let started = Instant::now();
    let response = client
        .post(format!("{url}/api/v1/proposals?mpp={mpp}"))
        .body(bytes.to_vec())
        .send()
        .expect("the upload");
    assert_eq!(response.status(), 200, "the server refused the upload");
    let mut reader = BufReader::new(response);
    let mut timings = Timings {
        first_byte: Duration::ZERO,
        first_proposal: Duration::ZERO,
        done: Duration::ZERO,
        proposals: 0,
    };
    let mut line = String::new();
    while reader.read_line(&mut line).expect("the stream") > 0 {
        let event: JobEvent = serde_json::from_str(&line).expect("an event");
        line.clear();
        match event {
            JobEvent::Started { .. } => timings.first_byte = started.elapsed(),
            JobEvent::Tile { proposals, .. } => {
                if timings.proposals == 0 && !proposals.is_empty() {
                    timings.first_proposal = started.elapsed();
                }
                timings.proposals += proposals.len();
            }
            JobEvent::Done { .. } => timings.done = started.elapsed(),
            JobEvent::Error(error) => panic!("the job failed: {error}"),
        }
    }
    timings
}

fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let image = args.first().map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data/he_samples_from_packages/tiatoolbox_target_image.png")
        },
        PathBuf::from,
    );
    let mpp: f64 = args.get(1).map_or(0.25, |m| m.parse().expect("MPP"));
    let clients: usize = args.get(2).map_or(4, |c| c.parse().expect("CLIENTS"));
    let bytes =
        std::fs::read(&image).unwrap_or_else(|e| panic!("cannot read {}: {e}", image.display()));
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    eprintln!("field: {name}, {mpp} um/px, {clients} clients");

    // 1. The command line.
    let out = std::env::temp_dir().join(format!("mitoscope-bench-{}.geojson", std::process::id()));
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .arg("propose")
        .arg(&image)
        .args(["--mpp", &mpp.to_string(), "--out"])
        .arg(&out)
        .status()
        .expect("run mitoscope propose");
    let cli = started.elapsed();
    assert!(status.success());
    let cli_features = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["features"].as_array().map(Vec::len))
        .unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    eprintln!("cli: {:.1} s, {cli_features} proposals", cli.as_secs_f64());

    // 2. One upload.
    let server = Server::start();
    let client = Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("client");
    let one = upload(&client, &server.url, &bytes, mpp);
    assert_eq!(
        one.proposals, cli_features,
        "the server and the CLI disagree"
    );
    eprintln!("server: {one:?}");

    // 3. Clients at once.
    let started = Instant::now();
    let each: Vec<Timings> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (client, url, bytes) = (&client, &server.url, &bytes);
                scope.spawn(move || upload(client, url, bytes, mpp))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client"))
            .collect()
    });
    let wall = started.elapsed();
    let per_minute = clients as f64 / (wall.as_secs_f64() / 60.0);
    let latencies: Vec<f64> = each.iter().map(|t| t.done.as_secs_f64()).collect();
    let peak = server.peak_rss_mib();

    let s = |d: Duration| d.as_secs_f64();
    println!("\n| {name}, {mpp} um/px, embedded default, CPU | seconds | vs CLI |");
    println!("|---|---|---|");
    println!(
        "| `mitoscope propose` (whole command) | {:.1} | 1.00 |",
        s(cli)
    );
    println!(
        "| server: first byte (job started) | {:.2} | |",
        s(one.first_byte)
    );
    println!(
        "| server: first proposal | {:.1} | {:.3} |",
        s(one.first_proposal),
        s(one.first_proposal) / s(cli)
    );
    println!(
        "| server: all {} proposals | {:.1} | {:.3} |",
        one.proposals,
        s(one.done),
        s(one.done) / s(cli)
    );
    println!(
        "| {clients} clients at once: last done | {:.1} | |",
        s(wall)
    );
    println!(
        "\n{clients} clients: {per_minute:.2} requests per minute; latencies {} s; server peak \
         memory {peak:.0} MiB",
        latencies
            .iter()
            .map(|l| format!("{l:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
