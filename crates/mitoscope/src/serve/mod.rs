//! `mitoscope serve`: the self-hosted server. A hospital runs it on its own machine; images are
//! analysed in memory and never written to disk.
//!
//! Routes (see `docs/server.md` for the protocol):
//!
//! - `POST /api/v1/proposals?mpp=0.25`: the image bytes as the body; the response streams the
//!   job's events as newline-delimited JSON ([`mitoscope_core::wire::JobEvent`]).
//! - `GET /api/v1/classifier` and `GET /api/v1/classifier/{file}`: the classifier the browser
//!   runs ([`classifier`]).
//! - `GET /healthz`: liveness and the job counters; `GET /version`: version, model, backend.
//! - everything else: the web app's built files (`--web DIR`), or a short page that describes the
//!   API when no app is given.
//!
//! One model worker ([`worker`]) runs the jobs one at a time from a bounded queue; requests only
//! check, queue and stream.

mod api;
pub mod classifier;
mod web;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::http::HeaderValue;

use crate::backend::Backend;
use worker::Worker;

/// Default `--bind`: loopback only; a hospital opens it to its network on purpose.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// What `mitoscope serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// A published SAM checkpoint instead of the embedded LiteMedSAM.
    pub sam: Option<PathBuf>,
    /// Where the model runs.
    pub backend: Backend,
    /// The classifier checkpoints the browser runs (an ensemble); empty: the embedded default.
    pub classifiers: Vec<PathBuf>,
    /// The web app's built files, served at `/`.
    pub web: Option<PathBuf>,
    /// The bearer token every `/api/` request must send, when set.
    pub token: Option<String>,
    /// Origins allowed to call the API from other sites (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Largest accepted upload in bytes (413 above).
    pub max_upload_bytes: u64,
    /// Largest accepted image in pixels (400 above).
    pub max_pixels: u64,
    /// Longest a job may take, queue included (504 after).
    pub job_timeout: Duration,
    /// Jobs that may wait for the worker (503 beyond).
    pub queue: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND.parse().expect("a valid constant address"),
            sam: None,
            backend: Backend::Cpu,
            classifiers: Vec::new(),
            web: None,
            token: None,
            cors_origins: Vec::new(),
            max_upload_bytes: 200 << 20,
            max_pixels: 50_000_000,
            job_timeout: Duration::from_secs(3600),
            queue: 16,
        }
    }
}

impl ServeOptions {
    /// Checks the options that do not need the model.
    ///
    /// # Errors
    ///
    /// A zero limit, an empty token, an origin that is not a valid header value, a web folder
    /// that does not exist.
    pub fn validate(&self) -> Result<()> {
        if self.max_upload_bytes == 0 || self.max_pixels == 0 || self.queue == 0 {
            bail!("--max-upload-mb, --max-megapixels and --queue must be above 0");
        }
        if self.job_timeout.is_zero() {
            bail!("--job-timeout must be above 0 seconds");
        }
        if self.token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            bail!("the API token is empty: put a long random string in the token file");
        }
        for origin in &self.cors_origins {
            HeaderValue::from_str(origin)
                .with_context(|| format!("--cors-origin {origin:?} is not a valid origin"))?;
        }
        if let Some(web) = &self.web
            && !web.join("index.html").is_file()
        {
            bail!(
                "--web {}: no index.html there; give the folder of the built web app",
                web.display()
            );
        }
        Ok(())
    }
}

/// What every request handler shares.
pub(crate) struct AppState {
    pub options: ServeOptions,
    pub worker: Worker,
    pub classifier: classifier::ServedClassifier,
    pub next_request: std::sync::atomic::AtomicU64,
}

/// Runs the server until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// Invalid options, a model that does not load, an address that cannot be bound.
pub fn run(options: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(options, shutdown_signal(), |addr| {
        println!("mitoscope serving on http://{addr}/");
    }))
}

/// Serves until `shutdown` completes; `on_ready` gets the bound address once the model is loaded
/// and the socket listens.
///
/// # Errors
///
/// As [`run`].
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    options.validate()?;
    let paths = options.classifiers.clone();
    let classifier =
        tokio::task::spawn_blocking(move || classifier::ServedClassifier::prepare(&paths))
            .await
            .context("the classifier preparation stopped")??;
    tracing::info!(backend = %options.backend, "loading the proposal model");
    let worker = Worker::start(options.sam.clone(), options.backend, options.queue).await?;
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .with_context(|| format!("cannot listen on {}", options.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, model = %worker.model, "listening");
    let stats = Arc::clone(&worker.stats);
    let state = Arc::new(AppState {
        options,
        worker,
        classifier,
        next_request: 1.into(),
    });
    on_ready(addr);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: stopping the running job");
            stats.stop();
        })
        .await
        .context("the server stopped with an error")
}

/// All routes with their layers.
fn router(state: Arc<AppState>) -> Router {
    let app = api::routes(Arc::clone(&state));
    web::with_web(app, &state.options).layer(axum::middleware::from_fn_with_state(
        state,
        api::request_log,
    ))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
