//! `mitoscope serve` as a hospital runs it: the real binary on a loopback port, real HTTP
//! clients, real images from `../shared/data`.
//!
//! Each test starts its own server process (port 0, the address read from its first line of
//! output) so that its memory and logs are its own.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use burn::prelude::Device;
use mitoscope_core::export::{GeometryKind, ObjectType, to_geojson, validate_geojson};
use mitoscope_core::wire::{ApiError, ClassifierManifest, JobEvent, NDJSON, WireProposal};
use mitoscope_models::ensemble::Ensemble;
use reqwest::blocking::{Client, Response};
use sha2::{Digest, Sha256};

mod common;
use common::shared_data as data;

/// A running `mitoscope serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `mitoscope serve --bind 127.0.0.1:0 ARGS` with `env`, waits until it listens.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let (child, url) = common::start_server(args, env, &log);
        Self {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The server's peak resident memory (`VmHWM`) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb / 1024.0
    }

    fn health(&self) -> serde_json::Value {
        client()
            .get(self.url("/healthz"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Waits until `/healthz` satisfies `done`, for at most `limit`.
    fn wait_health(&self, limit: Duration, done: impl Fn(&serde_json::Value) -> bool) {
        let started = Instant::now();
        loop {
            let health = self.health();
            if done(&health) {
                return;
            }
            assert!(started.elapsed() < limit, "still {health} after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap()
}

fn post(server: &Server, query: &str, body: Vec<u8>) -> Response {
    client()
        .post(server.url(&format!("/api/v1/proposals{query}")))
        .body(body)
        .send()
        .unwrap()
}

/// The next event of a streamed job; `None` at the end of the stream.
fn next_event(reader: &mut impl BufRead) -> Option<JobEvent> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap() == 0 {
        return None;
    }
    Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
}

/// Reads a whole job: its events, checked for order, and its proposals.
fn read_job(response: Response) -> (Vec<JobEvent>, Vec<WireProposal>) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], NDJSON);
    let mut reader = BufReader::new(response);
    let mut events = Vec::new();
    let mut proposals = Vec::new();
    while let Some(event) = next_event(&mut reader) {
        if let JobEvent::Tile {
            done, proposals: p, ..
        } = &event
        {
            let previous = events
                .iter()
                .filter(|e| matches!(e, JobEvent::Tile { .. }))
                .count();
            assert_eq!(*done, previous + 1, "tiles arrive in order");
            proposals.extend(p.iter().cloned());
        }
        events.push(event);
    }
    assert!(
        matches!(events.first(), Some(JobEvent::Started { .. })),
        "{events:?}"
    );
    (events, proposals)
}

fn error_of(response: Response, status: u16) -> ApiError {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let error: ApiError = response.json().unwrap();
    assert_eq!(error.status, status);
    assert!(!error.message.is_empty());
    error
}

#[test]
fn a_streamed_job_equals_mitoscope_propose_on_the_same_image() {
    let Some(image) = data("icpr2012_patches/images/A00_01_0.jpg") else {
        return;
    };
    let server = Server::start(&[], &[]);
    let response = client()
        .post(server.url("/api/v1/proposals?mpp=0.2456"))
        // A client may send a file name; it must not reach the logs.
        .header(
            "content-disposition",
            "attachment; filename=\"patient-0042.jpg\"",
        )
        .body(std::fs::read(&image).unwrap())
        .send()
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.headers()["cross-origin-opener-policy"],
        "same-origin"
    );
    let (events, proposals) = read_job(response);
    let JobEvent::Started {
        width,
        height,
        microns_per_pixel,
        mpp_source,
        tiles_to_analyse,
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert_eq!((*width, *height), (256, 256));
    assert_eq!(
        (*microns_per_pixel, mpp_source.as_str()),
        (0.2456, "request")
    );
    let Some(JobEvent::Done {
        proposals: total,
        tiles_analysed,
        ..
    }) = events.last()
    else {
        panic!("no done event: {events:?}")
    };
    assert_eq!(*total, proposals.len());
    assert_eq!(tiles_analysed, tiles_to_analyse);
    assert!(!proposals.is_empty());

    // The same image through the command line: the same GeoJSON, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.geojson");
    let status = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .args([
            "propose",
            image.to_str().unwrap(),
            "--mpp",
            "0.2456",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let objects: Vec<_> = proposals.iter().map(|p| p.to_export().unwrap()).collect();
    let streamed = to_geojson(&objects, GeometryKind::Polygon, ObjectType::Detection).unwrap();
    validate_geojson(&streamed).unwrap();
    // Compared as the text the CLI writes: every coordinate, score and area, exactly.
    let cli = std::fs::read_to_string(&out).unwrap();
    let streamed = serde_json::to_string(&streamed).unwrap() + "\n";
    assert!(
        streamed == cli,
        "the streamed proposals differ from the CLI's ({} and {} bytes)",
        streamed.len(),
        cli.len()
    );

    // The log has the request id and timings, never the file name.
    let log = server.log();
    assert!(log.contains(&request_id), "{log}");
    assert!(log.contains("elapsed_ms"), "{log}");
    assert!(!log.contains("patient-0042"), "{log}");
}

#[test]
fn eight_concurrent_uploads_all_finish_in_bounded_memory() {
    let Some(folder) = data("tupac16_mitosis_candidates_prlab/non_mitosis") else {
        return;
    };
    let mut images: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    images.truncate(9);
    assert_eq!(images.len(), 9);
    let server = Server::start(&[], &[]);

    // One job alone sets the peak memory of one job.
    let (events, _) = read_job(post(
        &server,
        "?mpp=0.25",
        std::fs::read(&images[8]).unwrap(),
    ));
    assert!(matches!(events.last(), Some(JobEvent::Done { .. })));
    let single = server.peak_rss_mib();

    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = images[..8]
            .iter()
            .map(|image| {
                let server = &server;
                scope.spawn(move || {
                    let (events, proposals) =
                        read_job(post(server, "?mpp=0.25", std::fs::read(image).unwrap()));
                    (events.last().cloned(), proposals.len())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (last, count) in &results {
        match last {
            Some(JobEvent::Done { proposals, .. }) => assert_eq!(proposals, count),
            other => panic!("a job did not finish: {other:?}"),
        }
    }
    let health = server.health();
    assert_eq!(health["jobs"]["completed"], 9, "{health}");
    assert_eq!(health["jobs"]["queued"], 0, "{health}");
    // Queued jobs hold only their upload; one job runs at a time.
    let peak = server.peak_rss_mib();
    eprintln!("peak memory: one job {single:.0} MiB, then 8 concurrent {peak:.0} MiB");
    assert!(
        peak < single * 1.15 + 64.0,
        "8 concurrent uploads raised the peak from {single:.0} to {peak:.0} MiB"
    );
}

#[test]
fn a_client_that_leaves_mid_stream_frees_the_worker() {
    let (Some(large), Some(small)) = (
        data("he_samples_from_packages/tiatoolbox_target_image.png"),
        data("tupac16_mitosis_candidates_prlab/mitosis/30_01_30.jpg"),
    ) else {
        return;
    };
    let server = Server::start(&[], &[]);
    let response = post(&server, "?mpp=0.25", std::fs::read(&large).unwrap());
    let mut reader = BufReader::new(response);
    let Some(JobEvent::Started {
        tiles_to_analyse, ..
    }) = next_event(&mut reader)
    else {
        panic!("no started event")
    };
    assert!(tiles_to_analyse > 4, "{tiles_to_analyse} tiles");
    assert!(matches!(
        next_event(&mut reader),
        Some(JobEvent::Tile { done: 1, .. })
    ));
    let left = Instant::now();
    drop(reader);

    // The job stops at its next tile, long before its end.
    server.wait_health(Duration::from_secs(120), |h| {
        h["jobs"]["running"] == 0 && h["jobs"]["cancelled"] == 1
    });
    eprintln!(
        "worker free {:.1} s after the client left",
        left.elapsed().as_secs_f64()
    );
    let (events, _) = read_job(post(&server, "?mpp=0.25", std::fs::read(&small).unwrap()));
    assert!(matches!(events.last(), Some(JobEvent::Done { .. })));
    assert_eq!(server.health()["jobs"]["completed"], 1);
}

#[test]
fn each_limit_gives_its_status_and_a_json_error() {
    let (Some(large), Some(patch)) = (
        data("he_samples_from_packages/tiatoolbox_target_image.png"),
        data("icpr2012_patches/images/A00_01_0.jpg"),
    ) else {
        return;
    };
    // Upload bytes and pixels.
    let server = Server::start(&["--max-upload-mb", "1", "--max-megapixels", "0.01"], &[]);
    let error = error_of(post(&server, "?mpp=0.25", vec![0u8; 1_100_000]), 413);
    assert_eq!(error.code, "upload_too_large");
    let error = error_of(
        post(&server, "?mpp=0.25", std::fs::read(&patch).unwrap()),
        400,
    );
    assert_eq!(error.code, "too_many_pixels");
    assert!(error.message.contains("256"), "{}", error.message);
    drop(server);

    // Job time (2 s) and a full queue (1 waiting job).
    let server = Server::start(&["--job-timeout", "2", "--queue", "1"], &[]);
    let bytes = std::fs::read(&large).unwrap();
    let first = post(&server, "?mpp=0.25", bytes.clone());
    let mut first = BufReader::new(first);
    assert!(matches!(
        next_event(&mut first),
        Some(JobEvent::Started { .. })
    ));
    let waiting = std::thread::spawn({
        let url = server.url("/api/v1/proposals?mpp=0.25");
        let bytes = bytes.clone();
        move || client().post(url).body(bytes).send().unwrap()
    });
    server.wait_health(Duration::from_secs(10), |h| h["jobs"]["queued"] == 1);
    let refused = post(&server, "?mpp=0.25", bytes);
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(error_of(refused, 503).code, "queue_full");
    // The waiting job passes its time limit in the queue: a plain 504.
    let error = error_of(waiting.join().unwrap(), 504);
    assert_eq!(error.code, "job_timeout");
    // The running one ends its stream with a 504 event after the tile it was on.
    let mut last = None;
    while let Some(event) = next_event(&mut first) {
        last = Some(event);
    }
    match last {
        Some(JobEvent::Error(error)) => {
            assert_eq!((error.status, error.code.as_str()), (504, "job_timeout"));
        }
        other => panic!("expected a timeout event, got {other:?}"),
    }
    // Both count as timed out, none as cancelled: the queued one when the worker reaches it.
    server.wait_health(Duration::from_secs(60), |h| {
        h["jobs"]["running"] == 0 && h["jobs"]["queued"] == 0 && h["jobs"]["timed_out"] == 2
    });
    assert_eq!(server.health()["jobs"]["cancelled"], 0);
}

#[test]
fn a_token_guards_the_api_and_bad_uploads_get_clear_errors() {
    let Some(patch) = data("icpr2012_patches/images/A00_01_0.jpg") else {
        return;
    };
    let server = Server::start(&[], &[("MITOSCOPE_TOKEN", "s3cret-token")]);
    let bytes = std::fs::read(&patch).unwrap();
    let url = server.url("/api/v1/proposals?mpp=0.25");
    for auth in [None, Some("Bearer wrong"), Some("s3cret-token")] {
        let mut request = client().post(&url).body(bytes.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_of(response, 401).code, "token_refused");
    }
    // Health and version stay open for monitoring.
    assert_eq!(server.health()["status"], "ok");
    let version: serde_json::Value = client()
        .get(server.url("/version"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(version["backend"], "cpu");
    assert_eq!(version["model"], "LiteMedSAM");

    let send = |query: &str, body: Vec<u8>| {
        client()
            .post(server.url(&format!("/api/v1/proposals{query}")))
            .header("authorization", "Bearer s3cret-token")
            .body(body)
            .send()
            .unwrap()
    };
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "?mpp=0.25",
            bytes[..bytes.len() / 3].to_vec(),
            "unreadable_image",
        ),
        (
            "?mpp=0.25",
            b"patient,x,y\n1,2,3\n".to_vec(),
            "unreadable_image",
        ),
        ("?mpp=0.25", Vec::new(), "empty_upload"),
        ("", bytes.clone(), "missing_pixel_size"),
        ("?mpp=abc", bytes.clone(), "bad_query"),
    ];
    for (query, body, code) in cases {
        let error = error_of(send(query, body), 400);
        assert_eq!(error.code, code, "{}", error.message);
    }
    assert_eq!(
        error_of(send("?mpp=9", bytes.clone()), 400).code,
        "bad_pixel_size"
    );
    // Nothing of the above reached the worker as a job that ran.
    let health = server.health();
    assert_eq!(health["jobs"]["completed"], 0, "{health}");

    // The right token and a good image: a job.
    let (events, _) = read_job(send("?mpp=0.25", bytes));
    assert!(matches!(events.last(), Some(JobEvent::Done { .. })));
}

#[test]
fn the_web_app_is_served_with_isolation_headers_and_cors_is_opt_in() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>app</title>",
    )
    .unwrap();
    std::fs::write(web.path().join("app_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(web.path().join("app.js"), "export {};").unwrap();
    // The gzip copy that scripts/build-web.sh writes beside the wasm (its bytes are not checked
    // by the server: any will do here).
    std::fs::write(web.path().join("app_bg.wasm.gz"), b"gzipped wasm").unwrap();
    let server = Server::start(
        &[
            "--web",
            web.path().to_str().unwrap(),
            "--cors-origin",
            "https://viewer.example.org",
        ],
        &[],
    );
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app_bg.wasm", "application/wasm"),
        ("/app.js", "text/javascript"),
    ] {
        let response = client().get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {:?}",
            headers["content-type"]
        );
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
        assert_eq!(headers["cross-origin-embedder-policy"], "require-corp");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    // A browser that accepts gzip gets the gzip copy, with its encoding; others the file.
    let wasm = |encoding: Option<&str>| {
        let mut request = client().get(server.url("/app_bg.wasm"));
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        request.send().unwrap()
    };
    let gzipped = wasm(Some("gzip, deflate, br"));
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(
        gzipped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/wasm")
    );
    assert_eq!(&gzipped.bytes().unwrap()[..], b"gzipped wasm");
    let plain = wasm(None);
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(&plain.bytes().unwrap()[..], b"\0asm\x01\0\0\0");
    assert_eq!(
        client()
            .get(server.url("/missing.js"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let preflight = |origin: &str| {
        client()
            .request(
                reqwest::Method::OPTIONS,
                server.url("/api/v1/proposals?mpp=0.25"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .unwrap()
    };
    let allowed = preflight("https://viewer.example.org");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://viewer.example.org"
    );
    let other = preflight("https://elsewhere.example.com");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    drop(server);

    // Without --cors-origin no origin is allowed, and `/` describes the API.
    let server = Server::start(&[], &[]);
    let response = client()
        .get(server.url("/healthz"))
        .header("origin", "https://viewer.example.org")
        .send()
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let mut page = String::new();
    client()
        .get(server.url("/"))
        .send()
        .unwrap()
        .read_to_string(&mut page)
        .unwrap();
    assert!(page.contains("/api/v1/proposals"), "{page}");
}

#[test]
fn the_classifier_is_served_converted_for_the_browser_and_cached_for_good() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let checkpoint = format!("{root}/tests/fixtures/classifier/classifier.ckpt");
    let shipped = format!("{root}/models/weights/classifier_seed0.safetensors");
    let server = Server::start(
        &["--classifier", &checkpoint, "--classifier", &shipped],
        &[("MITOSCOPE_TOKEN", "s3cret-token")],
    );
    let get = |path: &str, token: bool| {
        let mut request = client().get(server.url(path));
        if token {
            request = request.header("authorization", "Bearer s3cret-token");
        }
        request.send().unwrap()
    };
    assert_eq!(
        error_of(get("/api/v1/classifier", false), 401).code,
        "token_refused"
    );
    let response = get("/api/v1/classifier", true);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let manifest: ClassifierManifest = response.json().unwrap();
    assert_eq!(manifest.default_threshold, 0.5);
    let names: Vec<&str> = manifest.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["classifier.ckpt", "classifier_seed0.safetensors"]);

    let mut files = Vec::new();
    for member in &manifest.members {
        assert_eq!(
            get(&member.url, false).status(),
            401,
            "the files need the token too"
        );
        let response = get(&member.url, true);
        assert_eq!(response.status(), 200, "{}", member.url);
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let bytes = response.bytes().unwrap().to_vec();
        assert_eq!(bytes.len() as u64, member.bytes);
        let sha = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(sha, member.sha256);
        assert!(member.url.contains(&sha[..16]), "{}", member.url);
        files.push((member.name.clone(), bytes));
    }
    // A safetensors export travels as it is; the Lightning checkpoint becomes one that loads.
    assert_eq!(files[1].1, std::fs::read(&shipped).unwrap());
    let members: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    let ensemble = Ensemble::from_safetensors(&members, &Device::flex()).unwrap();
    assert_eq!(ensemble.len(), 2);

    let error = error_of(
        get("/api/v1/classifier/0-0000000000000000.safetensors", true),
        404,
    );
    assert!(
        error.message.contains("reload the page"),
        "{}",
        error.message
    );
    drop(server);

    // A checkpoint of another kind stops the server at start with a message that names it.
    let sam = format!("{root}/models/weights/lite_medsam.pth");
    let output = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .args(["serve", "--bind", "127.0.0.1:0", "--classifier", &sam])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("--classifier") && text.contains("lite_medsam.pth"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}
