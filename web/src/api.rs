//! The server's API as the app calls it: the proposal job, streamed as NDJSON and read chunk by
//! chunk, and the classifier's manifest and weights. Every failure becomes a sentence for the
//! pathologist ([`Failure::message`]).

use std::collections::VecDeque;

use js_sys::{Reflect, Uint8Array};
use mitoscope_core::wire::{API_VERSION, ApiError, ClassifierManifest, JobEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, ReadableStreamDefaultReader, Request, RequestInit, Response};

use crate::dom::{describe, window};
use crate::ndjson::LineSplitter;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No answer at all: the server is down or unreachable.
    Unreachable(String),
    /// The server answered with an error status (its JSON body when it sent one).
    Refused {
        status: u16,
        error: Option<ApiError>,
    },
    /// The answer could not be read or understood.
    Broken(String),
}

impl Failure {
    /// The failure in plain words.
    pub fn message(&self) -> String {
        match self {
            Self::Unreachable(_) => "The server could not be reached. Check that the Mitoscope \
                server is running and that this computer can reach it, then try again."
                .into(),
            Self::Refused { status: 401, .. } => "The server refused the access token. Type the \
                token you were given in the Token field, then try again."
                .into(),
            Self::Refused { status: 413, error } => format!(
                "The image is too large for the server to accept. {}",
                error.as_ref().map_or("", |e| e.message.as_str())
            ),
            Self::Refused { status: 503, .. } => "The server is busy with other images. Try \
                again in a minute."
                .into(),
            Self::Refused { status, error } => match error {
                Some(error) if error.code.contains("image") => {
                    format!("The image could not be read: {}", error.message)
                }
                Some(error) => format!("The server refused the request: {}", error.message),
                None => format!("The server answered with an error (HTTP {status})."),
            },
            Self::Broken(detail) => format!("The server's answer could not be read ({detail})."),
        }
    }
}

/// Sends a request to `path` on this page's server, with the bearer `token` when not empty.
async fn send(
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: &str,
) -> Result<Response, Failure> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = Headers::new().map_err(|e| Failure::Broken(describe(&e)))?;
    if !token.trim().is_empty() {
        headers
            .set("Authorization", &format!("Bearer {}", token.trim()))
            .map_err(|e| Failure::Broken(describe(&e)))?;
    }
    if let Some(body) = body {
        headers
            .set("Content-Type", "application/octet-stream")
            .map_err(|e| Failure::Broken(describe(&e)))?;
        init.set_body(&Uint8Array::from(body));
    }
    init.set_headers(&headers);
    let request =
        Request::new_with_str_and_init(path, &init).map_err(|e| Failure::Broken(describe(&e)))?;
    let response = JsFuture::from(window().fetch_with_request(&request))
        .await
        .map_err(|e| Failure::Unreachable(describe(&e)))?;
    let response: Response = response.unchecked_into();
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    let error = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|text| text.as_string())
            .and_then(|text| serde_json::from_str::<ApiError>(&text).ok()),
        Err(_) => None,
    };
    Err(Failure::Refused { status, error })
}

/// The whole body of a successful response.
async fn body_bytes(response: &Response) -> Result<Vec<u8>, Failure> {
    let promise = response
        .array_buffer()
        .map_err(|e| Failure::Broken(describe(&e)))?;
    let buffer = JsFuture::from(promise)
        .await
        .map_err(|e| Failure::Unreachable(describe(&e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// `GET /api/v1/classifier`: the classifier the server hands to browsers.
pub async fn manifest(token: &str) -> Result<ClassifierManifest, Failure> {
    let response = send(
        "GET",
        &format!("/api/{API_VERSION}/classifier"),
        None,
        token,
    )
    .await?;
    let bytes = body_bytes(&response).await?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::Broken(e.to_string()))
}

/// One member's safetensors bytes from its manifest `url`.
pub async fn weights(url: &str, token: &str) -> Result<Vec<u8>, Failure> {
    let response = send("GET", url, None, token).await?;
    body_bytes(&response).await
}

/// A running proposal job: its events, read as the server sends them.
pub struct Job {
    reader: ReadableStreamDefaultReader,
    lines: LineSplitter,
    ready: VecDeque<String>,
    ended: bool,
}

/// `POST /api/v1/proposals?mpp=MPP` with the image file's bytes.
pub async fn start_job(image: &[u8], mpp: f64, token: &str) -> Result<Job, Failure> {
    let path = format!("/api/{API_VERSION}/proposals?mpp={mpp}");
    let response = send("POST", &path, Some(image), token).await?;
    let body = response
        .body()
        .ok_or_else(|| Failure::Broken("the response has no body".into()))?;
    Ok(Job {
        reader: body.get_reader().unchecked_into(),
        lines: LineSplitter::new(),
        ready: VecDeque::new(),
        ended: false,
    })
}

impl Job {
    /// The next event, `None` once the stream has ended.
    pub async fn next(&mut self) -> Result<Option<JobEvent>, Failure> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return serde_json::from_str(&line)
                    .map(Some)
                    .map_err(|e| Failure::Broken(format!("an event is not valid: {e}")));
            }
            if self.ended {
                return Ok(None);
            }
            let chunk = JsFuture::from(self.reader.read())
                .await
                .map_err(|e| Failure::Unreachable(describe(&e)))?;
            let done = Reflect::get(&chunk, &JsValue::from_str("done"))
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                self.ended = true;
                self.ready.extend(self.lines.finish());
                continue;
            }
            let value = Reflect::get(&chunk, &JsValue::from_str("value"))
                .map_err(|e| Failure::Broken(describe(&e)))?;
            let bytes = Uint8Array::new(&value).to_vec();
            self.ready.extend(self.lines.push(&bytes));
        }
    }
}
