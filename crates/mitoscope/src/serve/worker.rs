//! The model worker: one thread that owns the loaded proposal model and runs the queued jobs one
//! at a time, streaming each tile's proposals back to its request.
//!
//! One job at a time is the right shape for the CPU backend: burn's CPU kernels already use every
//! core for one tile, and a second job would only double the memory. The queue in front of the
//! worker is bounded ([`Worker::submit`] refuses when it is full); a queued job holds only the
//! encoded upload, decoded when its turn comes.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use burn::prelude::Device;

use crate::backend::Backend;
use mitoscope_core::ProposalSettings;
use mitoscope_core::wire::{ApiError, JobEvent, WireProposal};
use mitoscope_io::{Limits, ReadError};
use mitoscope_models::ModelError;
use mitoscope_models::pipeline::{propose_image, tissue_tiles};
use mitoscope_models::sam::{RgbImage, Sam};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::propose::to_wire;

/// Events a job may have waiting for its client before the worker waits too (back-pressure from
/// a slow reader).
pub(crate) const EVENT_BUFFER: usize = 8;

/// How long the worker waits to hand a job's last event (its end or its error) to a slow client.
const LAST_EVENT_GRACE: Duration = Duration::from_secs(5);

/// One upload waiting for, or in, the worker.
pub(crate) struct Job {
    /// The request's id, for the logs and the `started` event.
    pub request_id: String,
    /// The encoded image as uploaded.
    pub bytes: Vec<u8>,
    /// The pixel size to use, micrometres per pixel.
    pub microns_per_pixel: f64,
    /// `"file"` or `"request"`.
    pub mpp_source: &'static str,
    /// The decoder's limits.
    pub limits: Limits,
    /// When the job must have finished.
    pub deadline: Instant,
    /// The job's events, to its request's response.
    pub events: mpsc::Sender<JobEvent>,
}

/// What the worker has done, for `/healthz` and the logs.
#[derive(Debug, Default)]
pub struct Stats {
    queued: AtomicUsize,
    running: AtomicUsize,
    completed: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    stopping: AtomicBool,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Jobs waiting in the queue.
    pub queued: usize,
    /// Jobs running (0 or 1).
    pub running: usize,
    /// Jobs that sent their `done` event.
    pub completed: u64,
    /// Jobs whose client went away before their end.
    pub cancelled: u64,
    /// Jobs stopped by the time limit.
    pub timed_out: u64,
    /// Jobs that ended with an error (an image that does not decode, say).
    pub failed: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued.load(Ordering::SeqCst),
            running: self.running.load(Ordering::SeqCst),
            completed: self.completed.load(Ordering::SeqCst),
            cancelled: self.cancelled.load(Ordering::SeqCst),
            timed_out: self.timed_out.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
        }
    }

    /// Asks the running job to stop at its next tile and the worker to take no more.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// Why [`Worker::submit`] refused a job.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The queue is full: try again later.
    Full,
    /// The worker has stopped.
    Stopped,
}

/// The handle requests use to reach the worker.
#[derive(Clone)]
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// The worker's counters.
    pub stats: Arc<Stats>,
    /// The proposal model's name.
    pub model: String,
}

impl Worker {
    /// Loads the proposal model (the checkpoint, or the embedded LiteMedSAM) on a new thread and
    /// starts taking jobs from a queue of `capacity`. Returns once the model is loaded.
    ///
    /// # Errors
    ///
    /// The checkpoint cannot be loaded, or the backend fails to start.
    pub(crate) async fn start(
        checkpoint: Option<PathBuf>,
        backend: Backend,
        capacity: usize,
    ) -> Result<Self> {
        let (jobs, queue) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(Stats::default());
        let (ready, loaded) = oneshot::channel();
        let runtime = Handle::current();
        let worker_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("mitoscope-model".into())
            .spawn(move || {
                // A backend that fails to start may panic inside burn: report it as an error.
                let loaded =
                    std::panic::catch_unwind(|| load(checkpoint.as_deref(), &backend.device()?))
                        .unwrap_or_else(|_| {
                            Err(anyhow!(
                                "the {backend} backend failed to start (see the message above)"
                            ))
                        });
                match loaded {
                    Ok((sam, settings)) => {
                        let _ = ready.send(Ok(sam.config().name.clone()));
                        work(&sam, &settings, queue, &worker_stats, &runtime);
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                    }
                }
            })
            .context("cannot start the model thread")?;
        let model = loaded
            .await
            .map_err(|_| anyhow!("the model thread stopped while loading"))??;
        Ok(Self { jobs, stats, model })
    }

    /// Queues `job`.
    pub(crate) fn submit(&self, job: Job) -> Result<(), SubmitError> {
        if self.stats.stopping.load(Ordering::SeqCst) {
            return Err(SubmitError::Stopped);
        }
        // Count first: the worker may take the job before `try_send` returns.
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.jobs.try_send(job).map_err(|err| {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            match err {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
            }
        })
    }
}

/// The model and its default proposal settings.
fn load(checkpoint: Option<&std::path::Path>, device: &Device) -> Result<(Sam, ProposalSettings)> {
    let sam = crate::load_sam(checkpoint, device)?;
    let settings = sam.config().default_proposal_settings();
    settings.validate()?;
    Ok((sam, settings))
}

/// How a job ended.
enum Outcome {
    Completed { proposals: usize },
    Cancelled,
    TimedOut,
    Failed(ApiError),
}

/// Takes jobs until the queue closes or the server stops.
fn work(
    sam: &Sam,
    settings: &ProposalSettings,
    mut queue: mpsc::Receiver<Job>,
    stats: &Stats,
    runtime: &Handle,
) {
    while let Some(job) = queue.blocking_recv() {
        stats.queued.fetch_sub(1, Ordering::SeqCst);
        let _span = tracing::info_span!("job", request_id = %job.request_id).entered();
        if stats.stopping.load(Ordering::SeqCst) {
            send_last(
                runtime,
                &job.events,
                ApiError::new(503, "shutting_down", "the server is shutting down"),
            );
            continue;
        }
        if job.events.is_closed() {
            // The request handler answers 504 and lets go when the job's time ran out in the
            // queue; otherwise the client left.
            if Instant::now() >= job.deadline {
                stats.timed_out.fetch_add(1, Ordering::SeqCst);
                tracing::warn!("job reached its time limit in the queue");
            } else {
                stats.cancelled.fetch_add(1, Ordering::SeqCst);
                tracing::info!("the client left before the job started");
            }
            continue;
        }
        stats.running.store(1, Ordering::SeqCst);
        let started = Instant::now();
        // A bug in one job must not take the server down: it fails that job only.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(sam, settings, job, stats, runtime)
        }))
        .unwrap_or_else(|_| {
            Outcome::Failed(ApiError::new(
                500,
                "internal",
                "the job failed (see the log)",
            ))
        });
        stats.running.store(0, Ordering::SeqCst);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Outcome::Completed { proposals } => {
                stats.completed.fetch_add(1, Ordering::SeqCst);
                tracing::info!(elapsed_ms, proposals, "job done");
            }
            Outcome::Cancelled => {
                stats.cancelled.fetch_add(1, Ordering::SeqCst);
                tracing::info!(elapsed_ms, "job cancelled: the client left");
            }
            Outcome::TimedOut => {
                stats.timed_out.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(elapsed_ms, "job stopped at its time limit");
            }
            Outcome::Failed(error) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(elapsed_ms, status = error.status, code = %error.code, "job failed");
            }
        }
    }
}

/// Hands `error` to the client as the job's last event, waiting a little for a slow reader.
fn send_last(runtime: &Handle, events: &mpsc::Sender<JobEvent>, error: ApiError) {
    let _ = runtime.block_on(events.send_timeout(JobEvent::Error(error), LAST_EVENT_GRACE));
}

/// Decodes the upload, analyses its tiles and streams the events.
fn run_job(
    sam: &Sam,
    settings: &ProposalSettings,
    job: Job,
    stats: &Stats,
    runtime: &Handle,
) -> Outcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(job.deadline);
    // Sends one event; false when the client has gone or the time is up.
    let send = |event: JobEvent| -> bool {
        runtime
            .block_on(async { tokio::time::timeout_at(deadline, job.events.send(event)).await })
            .is_ok_and(|sent| sent.is_ok())
    };
    let fail = |error: ApiError| {
        send_last(runtime, &job.events, error.clone());
        Outcome::Failed(error)
    };
    let timed_out = || {
        send_last(runtime, &job.events, job_timeout(started));
        Outcome::TimedOut
    };

    let image = match mitoscope_io::read_bytes(&job.bytes, &job.limits) {
        Ok(image) => image,
        Err(err) => return fail(image_error(&err)),
    };
    drop(job.bytes);
    let (width, height) = (image.width, image.height);
    let mpp = job.microns_per_pixel;
    let rgb = match RgbImage::new(width as usize, height as usize, image.rgb) {
        Ok(rgb) => rgb,
        Err(err) => return fail(ApiError::new(400, "unreadable_image", err.to_string())),
    };
    let (grid, kept) = match tissue_tiles(&rgb, settings) {
        Ok(tiles) => (tiles.grid, tiles.kept),
        Err(err) => return fail(ApiError::new(400, "unusable_image", err.to_string())),
    };
    tracing::info!(
        width,
        height,
        microns_per_pixel = mpp,
        tiles = kept.len(),
        "job started"
    );
    let first = JobEvent::Started {
        request_id: job.request_id.clone(),
        width,
        height,
        microns_per_pixel: mpp,
        mpp_source: job.mpp_source.into(),
        tiles_total: grid.tiles().len(),
        tiles_to_analyse: kept.len(),
        model: sam.config().name.clone(),
    };
    if !send(first) {
        return if job.events.is_closed() {
            Outcome::Cancelled
        } else {
            timed_out()
        };
    }

    let mut sent = 0usize;
    let mut over_time = false;
    let result = propose_image(sam, &rgb, settings, mpp, |tile| {
        let proposals: Vec<WireProposal> = tile.proposals.iter().map(|p| to_wire(p, mpp)).collect();
        sent += proposals.len();
        let event = JobEvent::Tile {
            done: tile.done,
            total: tile.total,
            proposals,
        };
        if stats.stopping.load(Ordering::SeqCst) || !send(event) {
            over_time = !job.events.is_closed();
            return ControlFlow::Break(());
        }
        if tile.done < tile.total && Instant::now() >= job.deadline {
            over_time = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match result {
        Ok(done) => {
            let event = JobEvent::Done {
                proposals: sent,
                tiles_analysed: done.tiles_analysed,
                analysed_mm2: done.tissue_mm2(mpp),
                elapsed_ms: started.elapsed().as_millis() as u64,
            };
            if runtime
                .block_on(job.events.send_timeout(event, LAST_EVENT_GRACE))
                .is_ok()
            {
                Outcome::Completed { proposals: sent }
            } else {
                Outcome::Cancelled
            }
        }
        Err(ModelError::Cancelled) if stats.stopping.load(Ordering::SeqCst) => fail(ApiError::new(
            503,
            "shutting_down",
            "the server is shutting down; the proposals sent so far are valid",
        )),
        Err(ModelError::Cancelled) if over_time => timed_out(),
        Err(ModelError::Cancelled) => Outcome::Cancelled,
        Err(ModelError::InvalidInput(message)) => {
            fail(ApiError::new(400, "unusable_image", message))
        }
        Err(err) => fail(ApiError::new(
            500,
            "internal",
            format!("the proposal stage failed: {err}"),
        )),
    }
}

/// The error for a job past its time limit.
fn job_timeout(started: Instant) -> ApiError {
    ApiError::new(
        504,
        "job_timeout",
        format!(
            "the job reached the server's time limit after {:.0} s of analysis; the proposals \
             sent so far are valid. Send a smaller image or ask the administrator to raise \
             --job-timeout",
            started.elapsed().as_secs_f64(),
        ),
    )
}

/// An upload the decoder refused, as an API error.
pub(crate) fn image_error(err: &ReadError) -> ApiError {
    match err {
        ReadError::FileTooLarge { .. } => ApiError::new(413, "upload_too_large", err.to_string()),
        ReadError::TooLarge { .. } => ApiError::new(400, "too_many_pixels", err.to_string()),
        ReadError::OutOfMemory { .. } => ApiError::new(503, "out_of_memory", err.to_string()),
        _ => ApiError::new(400, "unreadable_image", err.to_string()),
    }
}
