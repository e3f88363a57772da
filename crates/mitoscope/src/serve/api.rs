//! The API routes: the proposal job, health and version, with the request-id, logging and
//! token layers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use mitoscope_core::wire::{API_VERSION, ApiError, JobEvent, NDJSON};
use mitoscope_io::{Limits, ReadError};
use mitoscope_models::proposals::{MAX_MICRONS_PER_PIXEL, MIN_MICRONS_PER_PIXEL};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::worker::{EVENT_BUFFER, Job, SubmitError, image_error};

/// The header that carries a request's id, in both directions.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Seconds a client is asked to wait after a 503 for a full queue.
const RETRY_AFTER_S: &str = "30";

/// A request's id, set by [`request_log`].
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// An API error as an HTTP response with a JSON body.
pub(crate) struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.0)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The API and health routes with their layers (request ids and logs on all, the token on
/// `/api/`).
pub(crate) fn routes(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(&format!("/api/{API_VERSION}/proposals"), post(proposals))
        .route(
            &format!("/api/{API_VERSION}/classifier"),
            get(super::classifier::manifest),
        )
        .route(
            &format!("/api/{API_VERSION}/classifier/{{file}}"),
            get(super::classifier::file),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/version", get(version))
        .merge(api)
        .with_state(state)
}

/// Gives each request an id (in the `x-request-id` response header and the logs) and logs its
/// method, path, status and time. Never the query, a body or a file name.
pub(crate) async fn request_log(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = format!("{:06}", state.next_request.fetch_add(1, Ordering::Relaxed));
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = {
        use tracing::Instrument;
        next.run(request).instrument(span.clone()).await
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    });
    response
}

/// Refuses `/api/` requests without the configured bearer token.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.options.token {
        let sent = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let accepted = sent.is_some_and(|sent| same_secret(sent.trim(), token.trim()));
        if !accepted {
            tracing::warn!("refused: missing or wrong API token");
            return Failure(ApiError::new(
                401,
                "token_refused",
                "this server needs an API token: send it as `Authorization: Bearer TOKEN` (ask \
                 the administrator for it)",
            ))
            .into_response();
        }
    }
    next.run(request).await
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

/// `GET /healthz`: the server answers, with the job counters.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.worker.stats.snapshot();
    Json(serde_json::json!({ "status": "ok", "jobs": stats })).into_response()
}

/// `GET /version`.
async fn version(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({
        "name": "mitoscope",
        "version": env!("CARGO_PKG_VERSION"),
        "api": API_VERSION,
        "model": state.worker.model,
        "backend": state.options.backend.to_string(),
    }))
    .into_response()
}

/// The query of `POST /api/v1/proposals`.
#[derive(Debug, Deserialize)]
struct ProposalQuery {
    /// Pixel size in micrometres per pixel, used when the image does not state one.
    mpp: Option<f64>,
}

/// `POST /api/v1/proposals?mpp=0.25`: checks the upload, queues it and streams the job's
/// events once the worker takes it.
async fn proposals(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    query: Result<Query<ProposalQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let received = Instant::now();
    let options = &state.options;
    let Query(query) = query.map_err(|err| {
        ApiError::new(
            400,
            "bad_query",
            format!("{err}: the query takes `mpp`, a number (e.g. ?mpp=0.25)"),
        )
    })?;
    let bytes = read_body(&headers, body, options.max_upload_bytes).await?;
    let limits = Limits {
        max_pixels: options.max_pixels,
        max_bytes: options.max_upload_bytes,
    };
    let info = mitoscope_io::probe_bytes(&bytes).map_err(|err| image_error(&err))?;
    if u64::from(info.width) * u64::from(info.height) > limits.max_pixels {
        return Err(image_error(&ReadError::TooLarge {
            width: info.width,
            height: info.height,
            max_pixels: limits.max_pixels,
        })
        .into());
    }
    let (microns_per_pixel, mpp_source) = pixel_size(info.mpp, query.mpp)?;

    let (events, mut stream) = mpsc::channel(EVENT_BUFFER);
    let deadline = received + options.job_timeout;
    let job = Job {
        request_id: request_id.clone(),
        bytes: bytes.to_vec(),
        microns_per_pixel,
        mpp_source,
        limits,
        deadline,
        events,
    };
    drop(bytes);
    state.worker.submit(job).map_err(|err| match err {
        SubmitError::Full => ApiError::new(
            503,
            "queue_full",
            format!(
                "the server is busy ({} jobs waiting); try again in {RETRY_AFTER_S} s",
                options.queue
            ),
        ),
        SubmitError::Stopped => ApiError::new(
            503,
            "shutting_down",
            "the server is shutting down; try again when it is back",
        ),
    })?;

    // Wait for the worker to take the job: until then the status can still tell the truth.
    let first = tokio::time::timeout_at(deadline.into(), stream.recv())
        .await
        .map_err(|_| {
            ApiError::new(
                504,
                "job_timeout",
                format!(
                    "the job waited {:.0} s in the queue and reached the server's time limit; \
                     try again later",
                    received.elapsed().as_secs_f64()
                ),
            )
        })?
        .ok_or_else(|| ApiError::new(500, "internal", "the model worker stopped"))?;
    if let JobEvent::Error(error) = first {
        return Err(error.into());
    }

    let lines = tokio_stream::once(first)
        .chain(ReceiverStream::new(stream))
        .map(|event| {
            let mut line = serde_json::to_vec(&event).unwrap_or_else(|err| {
                // Serialising these types cannot fail; keep the stream well-formed anyway.
                serde_json::to_vec(&JobEvent::Error(ApiError::new(
                    500,
                    "internal",
                    err.to_string(),
                )))
                .unwrap_or_default()
            });
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
    let mut response = Response::new(Body::from_stream(lines));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The request body, refused with 413 above `max` bytes (from the declared length when there is
/// one, so nothing that large is read).
async fn read_body(headers: &HeaderMap, body: Body, max: u64) -> Result<Bytes, Failure> {
    let too_large = |bytes: Option<u64>| {
        let what = bytes.map_or_else(|| "more".to_owned(), |b| format!("{b} bytes"));
        ApiError::new(
            413,
            "upload_too_large",
            format!(
                "the upload is {what}, above this server's limit of {max} bytes; send a smaller \
                 image or ask the administrator to raise --max-upload-mb"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > max
    {
        return Err(too_large(Some(length)).into());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                too_large(None)
            } else {
                ApiError::new(
                    400,
                    "upload_interrupted",
                    "the upload was interrupted before its end; send it again",
                )
            }
        })?
        .to_bytes();
    if bytes.is_empty() {
        return Err(ApiError::new(
            400,
            "empty_upload",
            "the request has no body: send the image file's bytes (e.g. curl --data-binary \
             @image.png)",
        )
        .into());
    }
    Ok(bytes)
}

/// The pixel size: the file's own, otherwise the query's; refused outside the accepted range.
fn pixel_size(from_file: Option<f64>, query: Option<f64>) -> Result<(f64, &'static str), Failure> {
    let (mpp, source) = match (from_file, query) {
        (Some(file), _) => (file, "file"),
        (None, Some(query)) => (query, "request"),
        (None, None) => {
            return Err(ApiError::new(
                400,
                "missing_pixel_size",
                "the image does not state its pixel size: add ?mpp= to the URL (micrometres per \
                 pixel, 0.25 for a 40x scan, 0.5 for 20x)",
            )
            .into());
        }
    };
    if !(MIN_MICRONS_PER_PIXEL..=MAX_MICRONS_PER_PIXEL).contains(&mpp) {
        return Err(ApiError::new(
            400,
            "bad_pixel_size",
            format!(
                "pixel size {mpp} um/px is outside {MIN_MICRONS_PER_PIXEL}..\
                 {MAX_MICRONS_PER_PIXEL}: check ?mpp= (0.25 for a 40x scan)"
            ),
        )
        .into());
    }
    Ok((mpp, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("", "abc"));
        assert!(same_secret("", ""));
    }

    #[test]
    fn the_file_pixel_size_wins_and_one_is_required() {
        assert_eq!(pixel_size(Some(0.5), Some(0.25)).ok(), Some((0.5, "file")));
        assert_eq!(pixel_size(None, Some(0.25)).ok(), Some((0.25, "request")));
        for (file, query, code) in [
            (None, None, "missing_pixel_size"),
            (None, Some(5.0), "bad_pixel_size"),
            (None, Some(f64::NAN), "bad_pixel_size"),
        ] {
            match pixel_size(file, query) {
                Err(Failure(error)) => assert_eq!(error.code, code),
                Ok(ok) => panic!("accepted {ok:?}"),
            }
        }
    }
}
