//! The classifier the browser runs: `GET /api/v1/classifier` (the manifest, fetched fresh) and
//! `GET /api/v1/classifier/{file}` (each member's safetensors bytes, named by their hash and
//! cached by the browser for good).
//!
//! The server converts every `--classifier` checkpoint once, at start, with
//! [`Classifier::portable`]; without `--classifier` it serves the embedded default. Either way
//! the browser gets exactly the networks `mitoscope detect --classifier` would run.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mitoscope_core::density::DEFAULT_THRESHOLD;
use mitoscope_core::wire::{API_VERSION, ApiError, ClassifierFile, ClassifierManifest};
use mitoscope_models::classifier::Classifier;
use mitoscope_models::ensemble::EMBEDDED;
use sha2::{Digest, Sha256};

use super::AppState;

/// The files the browser downloads, with their manifest.
pub(crate) struct ServedClassifier {
    pub manifest: ClassifierManifest,
    /// Each member's bytes, in manifest order.
    files: Vec<Bytes>,
}

impl ServedClassifier {
    /// The embedded default, or the `--classifier` checkpoints converted for the browser.
    ///
    /// # Errors
    ///
    /// A checkpoint that is not a classifier, or that cannot be read.
    pub fn prepare(paths: &[PathBuf]) -> Result<Self> {
        let members: Vec<(String, Bytes)> = if paths.is_empty() {
            EMBEDDED
                .iter()
                .map(|(name, bytes)| ((*name).to_owned(), Bytes::from_static(bytes)))
                .collect()
        } else {
            paths
                .iter()
                .map(|path| {
                    let bytes = Classifier::portable(path).with_context(|| {
                        format!("--classifier {}: not a usable classifier", path.display())
                    })?;
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into(),
                    );
                    Ok((name, Bytes::from(bytes)))
                })
                .collect::<Result<_>>()?
        };
        let mut manifest = ClassifierManifest {
            members: Vec::with_capacity(members.len()),
            default_threshold: DEFAULT_THRESHOLD,
        };
        let mut files = Vec::with_capacity(members.len());
        for (index, (name, bytes)) in members.into_iter().enumerate() {
            let sha256 = format!("{:x}", Sha256::digest(&bytes));
            manifest.members.push(ClassifierFile {
                name,
                url: format!(
                    "/api/{API_VERSION}/classifier/{}",
                    file_name(index, &sha256)
                ),
                bytes: bytes.len() as u64,
                sha256,
            });
            files.push(bytes);
        }
        Ok(Self { manifest, files })
    }
}

/// A member's file name: its index and the start of its hash.
fn file_name(index: usize, sha256: &str) -> String {
    format!("{index}-{}.safetensors", &sha256[..16])
}

/// `GET /api/v1/classifier`.
pub(crate) async fn manifest(State(state): State<Arc<AppState>>) -> Response {
    let mut response = axum::Json(&state.classifier.manifest).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /api/v1/classifier/{file}`.
pub(crate) async fn file(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let served = &state.classifier;
    let found = served
        .manifest
        .members
        .iter()
        .zip(&served.files)
        .enumerate()
        .find(|(index, (member, _))| file_name(*index, &member.sha256) == name);
    let Some((_, (_, bytes))) = found else {
        let error = ApiError::new(
            404,
            "not_found",
            format!(
                "no classifier file {name:?}: the server's classifier has changed; reload the page"
            ),
        );
        return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        bytes.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_embedded_file_under_its_hash() {
        let served = ServedClassifier::prepare(&[]).unwrap();
        assert_eq!(served.manifest.members.len(), EMBEDDED.len());
        let member = &served.manifest.members[0];
        assert_eq!(member.bytes, EMBEDDED[0].1.len() as u64);
        assert_eq!(member.sha256.len(), 64);
        assert_eq!(
            member.url,
            format!("/api/v1/classifier/0-{}.safetensors", &member.sha256[..16])
        );
        assert_eq!(&served.files[0][..], EMBEDDED[0].1);
    }

    #[test]
    fn a_sam_checkpoint_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-classifier.pth");
        std::fs::write(&path, b"these bytes are no checkpoint").unwrap();
        let error = ServedClassifier::prepare(&[path]).err().unwrap();
        assert!(
            format!("{error:#}").contains("not-a-classifier.pth"),
            "{error:#}"
        );
    }
}
