//! Helpers shared by the integration tests of the `mitoscope` program.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
pub fn mitoscope(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_mitoscope"))
        .args(args)
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
