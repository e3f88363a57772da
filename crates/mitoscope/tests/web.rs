//! The browser app end to end: `scripts/build-web.sh` builds `dist/`, the real `mitoscope serve
//! --web dist` serves it on a loopback port, and a real headless Chromium, driven over the
//! DevTools protocol, uploads a real MIDOG 2021 crop through the page's file input. The page's
//! detections must be those of `mitoscope detect` on the same file: the same count and box
//! centres, the probabilities within 1e-4, and the same repeat dropped.
//!
//! Run with `cargo test -p mitoscope --test web` (Chromium at `/usr/bin/chromium`, or
//! `MITOSCOPE_CHROMIUM`). Each test skips with a note where `../shared/data` is missing.
//! Screenshots go to `target/web-test/`. Headless Chromium's WebGPU is SwiftShader, a CPU
//! emulation (about 0.4 GFLOP/s), so the images are small.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

mod common;
use common::shared_data as data;

/// The MIDOG 2021 crop the tests upload (128 x 128 px, 8 proposals; with the default
/// classifier `mitoscope detect` counts 2 figures and drops a third object above the threshold
/// as a repeat of one of them) and its scanner's pixel size.
const PATCH: &str = "ami-br_midog21_patches/normal/MIDOG21_3664.png";
const PATCH_MPP: &str = "0.25";

/// How long a job may take in the browser (proposals on the server, classification in
/// SwiftShader or wasm).
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `dist/` once per test run with `scripts/build-web.sh`; `None` (the tests fail) when
/// the build fails.
fn dist() -> PathBuf {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(repo().join("scripts/build-web.sh"))
            .env("NICE", "10")
            .status()
            .expect("run scripts/build-web.sh");
        eprintln!(
            "scripts/build-web.sh: {status} in {:.0?}",
            started.elapsed()
        );
        status.success()
    });
    assert!(ok, "scripts/build-web.sh failed");
    repo().join("dist")
}

/// Chromium: `MITOSCOPE_CHROMIUM`, or Debian's at `/usr/bin/chromium` (`scripts/test.sh`
/// installs it). A missing browser fails the test: it is part of what the tests need.
fn chromium() -> PathBuf {
    let path = std::env::var_os("MITOSCOPE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "no Chromium at {}: install Debian's chromium (scripts/test.sh does) or set \
         MITOSCOPE_CHROMIUM",
        path.display()
    );
    path
}

/// The browser tests one at a time: each runs Chromium and a server on two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `mitoscope serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(args: &[&str], dir: &Path) -> Self {
        let log = dir.join("server.log");
        let (child, url) = common::start_server(args, &[], &log);
        Self { child, url, log }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium with one page, driven over the DevTools protocol (a small client: JSON
/// commands over the page's WebSocket, events skipped).
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium, with WebGPU (SwiftShader) when `webgpu`.
    fn start(chromium: &Path, webgpu: bool) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new(chromium);
        command.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            "--remote-debugging-port=0",
        ]);
        if webgpu {
            command.arg("--enable-unsafe-webgpu");
        }
        let child = command
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let targets: Value = reqwest::blocking::get(format!("http://127.0.0.1:{port}/json/list"))
            .and_then(|r| r.json())
            .expect("list Chromium's pages");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tungstenite::connect(page).expect("connect to the page");
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    /// Sends `method` and returns its result; panics on a protocol error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::text(message))
            .expect("send a DevTools command");
        loop {
            let message = self.socket.read().expect("read from DevTools");
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == id {
                if let Some(error) = value.get("error") {
                    panic!("{method}: {error}");
                }
                return value["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression (awaited when it is a promise).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for("document.querySelector('input[type=file]') !== null", 60);
    }

    /// Polls `condition` (a JavaScript expression) until true.
    fn wait_for(&mut self, condition: &str, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while self.eval(condition) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {condition}; page state: {}",
                self.eval("document.querySelector('main')?.outerHTML?.slice(0, 3000)")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn text(&mut self, test_id: &str) -> String {
        let value = self.eval(&format!(
            "document.querySelector('[data-testid={test_id}]')?.textContent ?? null"
        ));
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Types `text` in the input `test_id` as a user does (the app reads `input` events).
    fn type_in(&mut self, test_id: &str, text: &str) {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector('[data-testid={test_id}]'); \
             e.value = {text:?}; e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        ));
    }

    fn value(&mut self, test_id: &str) -> String {
        let value = self.eval(&format!(
            "document.querySelector('[data-testid={test_id}]').value"
        ));
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Chooses `file` in the page's file input. The state is first marked `uploading`, so that
    /// [`Browser::finish`] waits for this job and not the last one.
    fn upload(&mut self, file: &Path) {
        self.eval("document.querySelector('main').dataset.state = 'uploading'");
        let root = self.call("DOM.getDocument", json!({}));
        let input = self.call(
            "DOM.querySelector",
            json!({"nodeId": root["root"]["nodeId"], "selector": "input[type=file]"}),
        );
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": input["nodeId"], "files": [file.display().to_string()]}),
        );
    }

    /// Waits until `<main data-state>` is `done` or `error` and returns it.
    fn finish(&mut self) -> String {
        self.wait_for(
            "['done', 'error'].includes(document.querySelector('main').dataset.state)",
            JOB_TIMEOUT.as_secs(),
        );
        self.eval("document.querySelector('main').dataset.state")
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn results(&mut self) -> Value {
        serde_json::from_str(&self.text("results")).expect("the results JSON")
    }

    fn screenshot(&mut self, name: &str) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let dir = repo().join("target/web-test");
        std::fs::create_dir_all(&dir).unwrap();
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &v)| n | (u32::from(v) << (18 - 6 * i)));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The patch re-encoded as PNG in `dir` (the browser and `detect` read the same file).
fn patch_png(dir: &Path) -> Option<PathBuf> {
    let source = data(PATCH)?;
    let png = dir.join("field.png");
    image::open(source).unwrap().to_rgb8().save(&png).unwrap();
    Some(png)
}

/// `mitoscope detect PNG --mpp PATCH_MPP`: its figures as `(x, y, probability)`.
fn detect(png: &Path, dir: &Path) -> Vec<(f64, f64, f64)> {
    let out = dir.join("detect");
    let output = common::mitoscope(&[
        "detect",
        png.to_str().unwrap(),
        "--mpp",
        PATCH_MPP,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("field/summary.json")).unwrap())
            .unwrap();
    assert!(
        summary["repeats"].as_u64().unwrap() >= 1,
        "the patch has a repeat for the page to drop as detect does: {summary}"
    );
    let csv = std::fs::read_to_string(out.join("field/field.csv")).unwrap();
    let mut rows: Vec<(f64, f64, f64)> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
            (cells[0], cells[1], cells[2])
        })
        .collect();
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

/// Uploads the patch in a browser with or without WebGPU and compares with `mitoscope detect`.
fn classifies_as_detect(webgpu: bool) {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let Some(png) = patch_png(dir.path()) else {
        return;
    };
    let _serial = serial();
    let dist = dist();
    let expected = detect(&png, dir.path());
    assert!(!expected.is_empty(), "the patch has figures to compare");

    let server = Server::start(&["--web", dist.to_str().unwrap()], dir.path());
    let mut browser = Browser::start(&chromium, webgpu);
    let query = if webgpu { "" } else { "?backend=cpu" };
    browser.open(&format!("{}/{query}", server.url));
    browser.type_in("mpp", PATCH_MPP);
    let started = Instant::now();
    browser.upload(&png);
    let state = browser.finish();
    let elapsed = started.elapsed();
    let name = if webgpu { "webgpu" } else { "cpu" };
    browser.screenshot(&format!("{name}.png"));
    let results = browser.results();
    eprintln!(
        "{name}: job in {elapsed:.1?}; timings {}",
        results["timings"]
    );
    assert_eq!(
        state,
        "done",
        "error: {}; server log:\n{}",
        browser.text("error"),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
    assert_eq!(browser.text("backend"), name);

    let mut found: Vec<(f64, f64, f64)> = results["summary"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["counted"] == true)
        .map(|d| {
            (
                d["x"].as_f64().unwrap(),
                d["y"].as_f64().unwrap(),
                d["probability"].as_f64().unwrap(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(browser.text("count"), expected.len().to_string());
    assert_eq!(
        found.len(),
        expected.len(),
        "{found:?} against {expected:?}"
    );
    for (browser, native) in found.iter().zip(&expected) {
        assert_eq!((browser.0, browser.1), (native.0, native.1));
        assert!(
            (browser.2 - native.2).abs() < 1e-4,
            "probability {} in the browser, {} natively",
            browser.2,
            native.2
        );
    }
}

#[test]
fn the_page_classifies_as_detect_on_webgpu() {
    classifies_as_detect(true);
}

#[test]
fn the_page_classifies_as_detect_on_the_cpu_without_webgpu() {
    classifies_as_detect(false);
}

/// A refused token and a file that is not an image: said in plain words, and neither the typed
/// pixel size and token nor the review of the previous image (a rejected detection) is lost.
#[test]
fn errors_are_said_in_plain_words_and_keep_what_was_typed_and_reviewed() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let Some(png) = patch_png(dir.path()) else {
        return;
    };
    let _serial = serial();
    let dist = dist();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "right-token\n").unwrap();
    let server = Server::start(
        &[
            "--web",
            dist.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    let mut browser = Browser::start(&chromium, false);
    browser.open(&format!("{}/?backend=cpu", server.url));

    // A review: the patch analysed with the right token, its first detection rejected.
    browser.type_in("mpp", PATCH_MPP);
    browser.type_in("token", "right-token");
    browser.upload(&png);
    assert_eq!(browser.finish(), "done", "{}", browser.text("error"));
    let count: usize = browser.text("count").parse().unwrap();
    assert!(count >= 1, "the patch has a detection to reject");
    browser.eval("document.querySelector('[data-testid=reject]').click()");
    browser.wait_for(
        &format!(
            "document.querySelector('[data-testid=count]').textContent === '{}'",
            count - 1
        ),
        10,
    );
    let rejected = |results: &Value| {
        results["summary"]["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["decision"] == "rejected")
            .count()
    };
    assert_eq!(rejected(&browser.results()), 1);
    assert_eq!(
        browser.text("scale-warning"),
        "",
        "0.25 um/px is the method's own"
    );

    // The wrong token: the server's 401, said as such; the review comes back.
    browser.type_in("mpp", "0.31");
    browser.type_in("token", "wrong-token");
    browser.upload(&png);
    assert_eq!(browser.finish(), "error");
    let error = browser.text("error");
    assert!(error.contains("refused the access token"), "{error}");
    assert_eq!(browser.text("count"), (count - 1).to_string());
    assert_eq!(rejected(&browser.results()), 1);
    browser.screenshot("error.png");

    // Not an image: refused by the page's own decoder, before anything is sent.
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "these are notes, not an image").unwrap();
    browser.upload(&text);
    assert_eq!(browser.finish(), "error");
    let error = browser.text("error");
    assert!(error.contains("could not be opened as an image"), "{error}");
    assert_eq!(browser.text("count"), (count - 1).to_string());
    assert_eq!(rejected(&browser.results()), 1);

    assert_eq!(browser.value("mpp"), "0.31");
    assert_eq!(browser.value("token"), "wrong-token");

    // A 20x pixel size is analysed, with the warning `mitoscope detect` gives.
    browser.type_in("mpp", "0.5");
    browser.type_in("token", "right-token");
    browser.upload(&png);
    assert_eq!(browser.finish(), "done", "{}", browser.text("error"));
    let warning = browser.text("scale-warning");
    assert!(warning.contains("2.0 times the width"), "{warning}");
}

/// The numbers of `docs/web.md`: a 1000 x 1000 px field (the TIAToolbox sample, 0.25 um/px)
/// through the page on the CPU fallback and on WebGPU (SwiftShader here), and the same crops
/// classified natively by the embedded ensemble on burn's flex backend; written to
/// `target/web-test/bench.json`. Slow (minutes): run it alone with
/// `cargo test -p mitoscope --test web -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark of several minutes"]
fn bench_a_1000_px_field() {
    use burn::prelude::Device;
    use mitoscope_core::wire::JobEvent;
    use mitoscope_models::ensemble::Ensemble;

    let chromium = chromium();
    let Some(source) = data("he_samples_from_packages/tiatoolbox_target_image.png") else {
        return;
    };
    let _serial = serial();
    let dist = dist();
    let dir = tempfile::tempdir().unwrap();
    // A copy under a plain path: Chromium does not read a file through a path with `..`.
    let field = dir.path().join("field.png");
    std::fs::copy(&source, &field).unwrap();
    let server = Server::start(&["--web", dist.to_str().unwrap()], dir.path());

    // Natively: the server's proposals, cropped and classified by the embedded ensemble.
    let body = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/proposals?mpp=0.25", server.url))
        .body(std::fs::read(&field).unwrap())
        .timeout(Duration::from_secs(1200))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let image = mitoscope_io::read_path(&field, &mitoscope_io::Limits::default()).unwrap();
    let mut crops = Vec::new();
    for line in body.lines() {
        if let JobEvent::Tile { proposals, .. } = serde_json::from_str(line).unwrap() {
            for p in proposals {
                let mask = p.rle().unwrap();
                crops.push(
                    mitoscope_core::crop::crop(&image.rgb, image.width, image.height, &mask)
                        .unwrap(),
                );
            }
        }
    }
    let ensemble = Ensemble::embedded(&Device::flex()).unwrap();
    let started = Instant::now();
    ensemble.classify(&crops).unwrap();
    let native_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!("native: {} crops in {native_ms:.0} ms", crops.len());

    let mut runs = serde_json::Map::new();
    for webgpu in [false, true] {
        let mut browser = Browser::start(&chromium, webgpu);
        let query = if webgpu { "" } else { "?backend=cpu" };
        browser.open(&format!("{}/{query}", server.url));
        browser.wait_for(
            "JSON.parse(document.querySelector('[data-testid=results]').textContent)\
             .timings.classifier_ready_ms != null",
            120,
        );
        browser.type_in("mpp", "0.25");
        browser.upload(&field);
        let state = {
            let deadline = Instant::now() + Duration::from_secs(1800);
            loop {
                let state = browser.eval("document.querySelector('main').dataset.state");
                if state == "done" || state == "error" || Instant::now() > deadline {
                    break state;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        };
        let name = if webgpu { "webgpu" } else { "cpu" };
        browser.screenshot(&format!("bench-{name}.png"));
        let results = browser.results();
        eprintln!("{name}: {state}; timings {}", results["timings"]);
        assert_eq!(state, "done", "{}", browser.text("error"));
        assert_eq!(browser.text("backend"), name);
        runs.insert(name.into(), results["timings"].clone());
    }
    let report = json!({
        "crops": crops.len(),
        "native_flex_classify_ms": native_ms,
        "browser": runs,
    });
    let out = repo().join("target/web-test/bench.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("{report}");
}

/// Zoom and pan on a 4000 x 3000 px field (the TIAToolbox sample tiled 4 x 3), once the
/// proposals of its first tiles are classified (those above the threshold outlined): the time
/// from each wheel or drag event to the next painted frame, measured in the page over 40 zoom
/// steps and 40 drag moves, on the CPU fallback while the server still analyses the field.
/// Prints the table of `docs/web.md` and writes `target/web-test/viewer.json`. Run it alone with
/// `cargo test -p mitoscope --test web -- --ignored --nocapture zoom`.
#[test]
#[ignore = "a benchmark of a few minutes"]
fn bench_zoom_and_pan_on_a_4000_px_field() {
    let chromium = chromium();
    let Some(source) = data("he_samples_from_packages/tiatoolbox_target_image.png") else {
        return;
    };
    let _serial = serial();
    let dist = dist();
    let dir = tempfile::tempdir().unwrap();
    let tile = image::open(&source).unwrap().to_rgb8();
    let (w, h) = tile.dimensions();
    let mut field = image::RgbImage::new(4000, 3000);
    for y in (0..3000).step_by(h as usize) {
        for x in (0..4000).step_by(w as usize) {
            image::imageops::replace(&mut field, &tile, i64::from(x), i64::from(y));
        }
    }
    let path = dir.path().join("field-4000x3000.png");
    field.save(&path).unwrap();
    let server = Server::start(&["--web", dist.to_str().unwrap()], dir.path());
    let mut browser = Browser::start(&chromium, false);
    browser.open(&format!("{}/?backend=cpu", server.url));
    browser.type_in("mpp", "0.25");
    browser.upload(&path);
    // Some outlines to draw: the first tiles' proposals, classified.
    browser.wait_for(
        "JSON.parse(document.querySelector('[data-testid=results]').textContent)\
         .summary.detections.length >= 5",
        600,
    );
    let shown = browser.results()["summary"]["detections"]
        .as_array()
        .map_or(0, Vec::len);
    let frames = browser.eval(
        "(async () => {
            const canvas = document.querySelector('canvas.viewer');
            const box = canvas.getBoundingClientRect();
            const frame = () => new Promise(r => requestAnimationFrame(() => r()));
            const time = async (dispatch) => {
                const t0 = performance.now();
                dispatch();
                await frame();
                return performance.now() - t0;
            };
            const at = (x, y) => ({clientX: box.left + x, clientY: box.top + y, bubbles: true});
            const zoom = [], pan = [];
            for (let i = 0; i < 40; i++) {
                const deltaY = i < 20 ? -120 : 120;
                zoom.push(await time(() => canvas.dispatchEvent(
                    new WheelEvent('wheel', {...at(box.width / 2, box.height / 2), deltaY,
                                             cancelable: true}))));
            }
            canvas.dispatchEvent(new MouseEvent('mousedown', at(100, 100)));
            for (let i = 0; i < 40; i++) {
                const d = 100 + 5 * i;
                pan.push(await time(() => canvas.dispatchEvent(new MouseEvent('mousemove', at(d, d)))));
            }
            canvas.dispatchEvent(new MouseEvent('mouseup', at(300, 300)));
            const stats = (v) => {
                const s = [...v].sort((a, b) => a - b);
                return {median_ms: s[Math.floor(s.length / 2)], max_ms: s[s.length - 1]};
            };
            return {zoom: stats(zoom), pan: stats(pan)};
        })()",
    );
    browser.screenshot("zoom-4000px.png");
    eprintln!("| gesture | median ms to the next frame | slowest ms | proposals classified |");
    eprintln!("|---|---|---|---|");
    for gesture in ["zoom", "pan"] {
        eprintln!(
            "| {gesture} | {:.1} | {:.1} | {shown} |",
            frames[gesture]["median_ms"].as_f64().unwrap(),
            frames[gesture]["max_ms"].as_f64().unwrap()
        );
    }
    let out = repo().join("target/web-test/viewer.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(
        &out,
        json!({"proposals_classified": shown, "frames": frames}).to_string(),
    )
    .unwrap();
}
