//! Atomic file writes: a result file either holds its complete content or does not exist, so an
//! interrupted run never leaves a half-written file that looks complete.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed into place.
///
/// # Errors
///
/// The folder does not exist or cannot be written (the message names the path).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_prefixed(path, bytes, ".tmp")
}

/// [`write_atomic`] with the temporary file's name starting with `prefix`, so that a later run
/// can recognise and remove what an interrupted one left.
///
/// # Errors
///
/// As [`write_atomic`].
pub fn write_atomic_prefixed(path: &Path, bytes: &[u8], prefix: &str) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    // A temporary file is private (0600); a result is an ordinary file (0644, less the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut file = builder
        .tempfile_in(folder)
        .with_context(|| format!("cannot write in {}", folder.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_names_bad_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        write_atomic(&path, b"[1]").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[1]");
        // Only the file itself is left behind, with the permissions of an ordinary new file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let plain = dir.path().join("plain");
            std::fs::File::create(&plain).unwrap();
            assert_eq!(mode(&path), mode(&plain) & 0o644);
            std::fs::remove_file(plain).unwrap();
        }

        let missing = dir.path().join("no/such/folder/out.json");
        let err = format!("{:#}", write_atomic(&missing, b"{}").unwrap_err());
        assert!(err.contains("no/such/folder"), "{err}");
    }
}
