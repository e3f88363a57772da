//! The classifier in the browser: OMG-Net's mask-aware ResNet18 (the server's members, fetched
//! once) on burn's wgpu backend over WebGPU, or on burn's flex CPU backend where the browser has
//! no WebGPU or `?backend=cpu` asks for it.
//!
//! The probabilities are `mitoscope_models::ensemble::Ensemble`'s, computed by its
//! `classify_async`: WebGPU cannot wait synchronously in a browser, so the answers are read back
//! with `into_data_async`.
//!
//! NOTE: the CPU fallback runs on the page's thread (one wasm thread, no SIMD), in small batches
//! with a pause between them so that the page keeps answering; a Web Worker would keep it fully
//! responsive but is not done yet.

use burn::prelude::*;
use mitoscope_core::crop::Crop;

use crate::dom::{has_webgpu, sleep};

/// Crops per forward pass. Small, so that the CPU fallback pauses often.
const BATCH: usize = 32;

/// Where the classifier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's wgpu backend on the browser's WebGPU.
    WebGpu,
    /// burn's flex backend on the CPU.
    Cpu,
}

impl Backend {
    /// The name the page shows (`data-testid="backend"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::WebGpu => "webgpu",
            Self::Cpu => "cpu",
        }
    }
}

/// Picks the device: WebGPU when the browser has it and `force_cpu` is false, else the CPU.
/// A WebGPU adapter that fails to start falls back to the CPU too (logged to the console).
pub async fn device(force_cpu: bool) -> (Device, Backend) {
    if !force_cpu && has_webgpu() {
        match Device::wgpu_options().init_async().await {
            Ok(device) => return (device, Backend::WebGpu),
            Err(err) => {
                web_sys::console::warn_1(
                    &format!("WebGPU did not start, using the CPU: {err}").into(),
                );
            }
        }
    }
    (Device::flex(), Backend::Cpu)
}

/// The server's classifier on one device, and where it runs.
pub struct Ensemble {
    ensemble: mitoscope_models::ensemble::Ensemble,
    backend: Backend,
}

impl Ensemble {
    /// Loads each `(name, safetensors bytes)` member on `device`.
    ///
    /// # Errors
    ///
    /// A message naming the member that could not be loaded.
    pub fn load(
        files: Vec<(String, Vec<u8>)>,
        device: &Device,
        backend: Backend,
    ) -> Result<Self, String> {
        if files.is_empty() {
            return Err("the server offers no classifier".into());
        }
        let members: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        let ensemble = mitoscope_models::ensemble::Ensemble::from_safetensors(&members, device)
            .map_err(|err| format!("the classifier could not be loaded: {err}"))?;
        Ok(Self { ensemble, backend })
    }

    /// The probability that each crop shows a mitotic figure, as `Ensemble::classify` computes
    /// it natively (`Ensemble::classify_async`: the same numbers, read back asynchronously).
    ///
    /// # Errors
    ///
    /// A message when a crop is malformed or the device's answer cannot be read.
    pub async fn classify(&self, crops: &[Crop]) -> Result<Vec<f32>, String> {
        let on_cpu = self.backend == Backend::Cpu;
        self.ensemble
            .classify_async(crops, BATCH, || async move {
                if on_cpu {
                    // Let the page paint and take input between batches.
                    sleep(0).await;
                }
            })
            .await
            .map_err(|err| format!("the classifier failed: {err}"))
    }
}
