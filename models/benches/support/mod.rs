//! What the benchmarks share: the repository's root, the timing loop and the peak memory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Minimum and median of `repeats` timed runs of `run`, after one untimed warm-up when asked.
pub fn time(repeats: usize, warmup: bool, mut run: impl FnMut()) -> [f64; 2] {
    if warmup {
        run();
    }
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    [times[0], times[times.len() / 2]]
}

/// Peak resident memory of this process in MB (`VmHWM`); `None` where /proc does not say.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}
