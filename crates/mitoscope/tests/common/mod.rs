//! Helpers shared by the integration tests of the `mitoscope` program.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `relative` inside the shared data folder beside the repository (`""` for the folder itself),
/// or `None`, with a message, where it is missing: the tests that need it skip.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is missing", path.display());
        None
    }
}

/// Runs the `mitoscope` binary with `args` and echoes what it printed (shown when a test fails).
/// Freed memory is kept for reuse, as README.md recommends for batches.
pub fn mitoscope(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .args(args)
        .env("MIMALLOC_PURGE_DELAY", "-1")
        .output()
        .expect("run mitoscope");
    eprintln!(
        "mitoscope {}: {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Starts `mitoscope serve --bind 127.0.0.1:0 ARGS` with `env` (a token in the environment of
/// the tests is not passed on), its log written to `log`, and waits until it listens: the
/// process and the server's URL, without a trailing slash.
pub fn start_server(args: &[&str], env: &[(&str, &str)], log: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .env("MITOSCOPE_LOG", "info")
        .env_remove("MITOSCOPE_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start mitoscope serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the server printed its address");
    let url = line
        .trim()
        .strip_prefix("mitoscope serving on ")
        .unwrap_or_else(|| {
            panic!(
                "unexpected first line {line:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .trim_end_matches('/')
        .to_owned();
    (child, url)
}
