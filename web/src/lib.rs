//! # mitoscope-web
//!
//! Mitoscope's browser app, for the pathologist: upload a high-power field, watch the server's
//! proposals stream in, classify them in the browser (burn on WebGPU, or on the CPU where the
//! browser has no WebGPU), review the detections over the image and export them as
//! `mitoscope detect` would. Leptos (client-side rendering), compiled to wasm32 with Trunk:
//! `scripts/build-web.sh` builds it into `dist/`, which `mitoscope serve --web dist` serves.
//! See `docs/web.md`.
//!
//! Natively only the pure modules build ([`ndjson`], [`review`]), so that `cargo test` covers
//! them; the browser modules are compiled for `wasm32` only.

pub mod ndjson;
pub mod review;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod classify;
#[cfg(target_arch = "wasm32")]
mod dom;
#[cfg(target_arch = "wasm32")]
mod viewer;

/// Mounts the app on the page's body.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
