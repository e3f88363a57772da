//! Where each input's results go, how a finished input is recognised, and how files are
//! written so that an interrupted run never leaves a file that looks complete.
//!
//! Each input gets a folder in the output folder, named after the input's file name without its
//! extension (`DIR/A00_01_0/`); a second input of the same name, in this batch or from an earlier
//! run of another file, gets `NAME-2`, `NAME-3`... Inside, the files are named after the input
//! too (`A00_01_0.geojson`, `A00_01_0.csv`, `A00_01_0.overlay.png`), and `summary.json` is
//! written last.
//!
//! Every file is written to a temporary file beside it (`.mitoscope-partial-*`) and renamed
//! into place once complete. An input is complete when its `summary.json` reads back, names the
//! same input file (path, size and modification time) and the same settings, and every output
//! file it lists is there with the size it records. A rerun skips complete inputs, redoes the
//! others (first removing the old `summary.json`), and removes partial files that an
//! interrupted run left.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Prefix of the temporary files: a file with it is never a result.
pub const PARTIAL_PREFIX: &str = ".mitoscope-partial-";

/// The name of the file that marks an input complete.
pub const SUMMARY_JSON: &str = "summary.json";

/// What identifies an input file's content without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The absolute path, links resolved.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification, nanoseconds since 1970 (0 where the file system has none).
    pub modified_ns: u128,
}

impl Fingerprint {
    /// The fingerprint of the file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be found or its metadata read.
    pub fn of(path: &Path) -> Result<Self> {
        let canonical = std::fs::canonicalize(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let meta = std::fs::metadata(&canonical)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            path: canonical,
            bytes: meta.len(),
            modified_ns,
        })
    }
}

/// An output file as `summary.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Its name in the input's folder.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The part of a `summary.json` that decides whether an input is complete.
#[derive(Debug, Clone, Deserialize)]
struct Marker {
    input: Fingerprint,
    settings: serde_json::Value,
    outputs: Vec<OutputFile>,
}

/// Whether the folder `folder` holds the complete results of `input` made with `settings`.
pub fn is_complete(folder: &Path, input: &Fingerprint, settings: &serde_json::Value) -> bool {
    let Some(marker) = read_marker(folder) else {
        return false;
    };
    marker.input == *input
        && marker.settings == *settings
        && marker.outputs.iter().all(|o| {
            std::fs::metadata(folder.join(&o.file)).is_ok_and(|m| m.is_file() && m.len() == o.bytes)
        })
}

/// The input whose results `folder` holds, by its `summary.json`, if any.
fn owner(folder: &Path) -> Option<PathBuf> {
    read_marker(folder).map(|m| m.input.path)
}

fn read_marker(folder: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(folder.join(SUMMARY_JSON)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The folder name of each input (by its file name), unique in `out`: the file's stem, or
/// `STEM-2`, `STEM-3`... when an earlier input of the batch took it or `out` holds the results
/// of another file under it. `inputs` are the absolute paths, in the batch's order.
pub fn folder_names(out: &Path, inputs: &[PathBuf]) -> Vec<String> {
    let mut taken = BTreeSet::new();
    inputs
        .iter()
        .map(|input| {
            let stem = stem_of(input);
            let free = |name: &str| {
                !taken.contains(name) && owner(&out.join(name)).is_none_or(|o| &o == input)
            };
            let name = std::iter::once(stem.clone())
                .chain((2..).map(|k| format!("{stem}-{k}")))
                .find(|name| free(name))
                .unwrap_or(stem);
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// The file name without its last extension; `image` for a name that has nothing else.
pub fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && !s.starts_with('.'))
        .unwrap_or_else(|| "image".to_owned())
}

/// Prepares `folder` for new results: creates it, removes its old `summary.json` (so that it
/// cannot mark a mix of old and new files complete) and any partial files.
///
/// # Errors
///
/// The folder cannot be created or cleaned.
pub fn prepare(folder: &Path) -> Result<()> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create the output folder {}", folder.display()))?;
    match std::fs::remove_file(folder.join(SUMMARY_JSON)) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| {
                format!("cannot replace {}", folder.join(SUMMARY_JSON).display())
            });
        }
    }
    remove_partials(folder);
    Ok(())
}

/// Removes the partial files an interrupted run left in `folder`.
pub fn remove_partials(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Checks that `folder` exists (creating it) and takes files, before any work is done.
///
/// # Errors
///
/// It cannot be created or written; the message names it and says what to do.
pub fn check_writable(folder: &Path) -> Result<()> {
    let advice = || {
        format!(
            "cannot write the results in {}: choose a folder you can write with --out",
            folder.display()
        )
    };
    std::fs::create_dir_all(folder).with_context(advice)?;
    tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(folder)
        .with_context(advice)?;
    Ok(())
}

/// Writes `bytes` to `folder/name` through a partial file renamed into place; returns the file
/// as `summary.json` lists it.
///
/// # Errors
///
/// The file cannot be written (the message names it).
pub fn write_atomic(folder: &Path, name: &str, bytes: &[u8]) -> Result<OutputFile> {
    crate::output::write_atomic_prefixed(&folder.join(name), bytes, PARTIAL_PREFIX)?;
    Ok(OutputFile {
        file: name.to_owned(),
        bytes: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn marker(folder: &Path, input: &Fingerprint, settings: serde_json::Value) {
        let out = write_atomic(folder, "x.csv", b"x,y\n").unwrap();
        let text = json!({"input": input, "settings": settings, "outputs": [out], "count": 0});
        write_atomic(folder, SUMMARY_JSON, text.to_string().as_bytes()).unwrap();
    }

    #[test]
    fn complete_means_same_input_same_settings_and_every_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.png");
        std::fs::write(&image, b"pixels").unwrap();
        let input = Fingerprint::of(&image).unwrap();
        let settings = json!({"threshold": 0.5});
        let folder = dir.path().join("out/a");
        assert!(!is_complete(&folder, &input, &settings));
        prepare(&folder).unwrap();
        marker(&folder, &input, settings.clone());
        assert!(is_complete(&folder, &input, &settings));
        // Other settings, another file content, a damaged output: not complete.
        assert!(!is_complete(&folder, &input, &json!({"threshold": 0.6})));
        let mut changed = input.clone();
        changed.bytes += 1;
        assert!(!is_complete(&folder, &changed, &settings));
        std::fs::write(folder.join("x.csv"), b"x,y\n1").unwrap();
        assert!(!is_complete(&folder, &input, &settings));
        // Preparing for a redo removes the marker and leftovers, and keeps nothing complete.
        std::fs::write(folder.join(format!("{PARTIAL_PREFIX}abc")), b"half").unwrap();
        prepare(&folder).unwrap();
        assert!(!folder.join(SUMMARY_JSON).exists());
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
    }

    #[test]
    fn inputs_of_the_same_name_get_their_own_folders() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let a = dir.path().join("a/slide.svs");
        let b = dir.path().join("b/slide.svs");
        let c = dir.path().join("b/slide.png");
        for p in [&a, &b, &c] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let (a, b, c) = (
            std::fs::canonicalize(&a).unwrap(),
            std::fs::canonicalize(&b).unwrap(),
            std::fs::canonicalize(&c).unwrap(),
        );
        assert_eq!(
            folder_names(&out, &[a.clone(), b.clone(), c.clone()]),
            ["slide", "slide-2", "slide-3"]
        );
        // An earlier run wrote b's results under `slide`: b keeps it, a moves on.
        let folder = out.join("slide");
        prepare(&folder).unwrap();
        marker(&folder, &Fingerprint::of(&b).unwrap(), json!({}));
        assert_eq!(folder_names(&out, std::slice::from_ref(&a)), ["slide-2"]);
        assert_eq!(folder_names(&out, &[b.clone(), a]), ["slide", "slide-2"]);
        assert_eq!(stem_of(Path::new("/x/.png")), "image");
        assert_eq!(stem_of(Path::new("/x/A00_01_0.jpg")), "A00_01_0");
    }

    #[test]
    fn a_folder_that_cannot_be_written_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = format!("{:#}", check_writable(&file.join("sub")).unwrap_err());
        assert!(err.contains("--out") && err.contains("file/sub"), "{err}");
        check_writable(&dir.path().join("new")).unwrap();
        // The probe leaves nothing behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
    }
}
