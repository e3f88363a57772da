//! Where the networks run: `--backend cpu|wgpu|cuda`.
//!
//! The CPU backend (burn's `flex`) is always built. The GPU backends are cargo features of this
//! crate, because their toolchains are not on every machine: `wgpu` (Vulkan, Metal or DirectX
//! through wgpu) and `cuda` (NVIDIA; burn's CUDA backend, whose build downloads an LLVM bundle,
//! so it builds only on a machine with internet access). Asking for a backend that is not built
//! in gives an error that says how to build it.

use std::fmt;

use anyhow::{Result, bail};
use burn::prelude::Device;

/// A compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// burn's CPU backend (`flex`), on every core.
    #[default]
    Cpu,
    /// A GPU through wgpu (Vulkan on Linux); needs the `wgpu` cargo feature.
    Wgpu,
    /// An NVIDIA GPU through CUDA; needs the `cuda` cargo feature.
    Cuda,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        })
    }
}

impl Backend {
    /// The backends this build has.
    pub fn available() -> Vec<Self> {
        let mut all = vec![Self::Cpu];
        if cfg!(feature = "wgpu") {
            all.push(Self::Wgpu);
        }
        if cfg!(feature = "cuda") {
            all.push(Self::Cuda);
        }
        all
    }

    /// The burn device of this backend (the first GPU for `wgpu` and `cuda`).
    ///
    /// # Errors
    ///
    /// The backend is not built into this program.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => bail!(
                "this mitoscope was built without the {other} backend: rebuild with \
                 `cargo build --release -p mitoscope --features {other}` (see README.md, GPU \
                 backends), or use --backend cpu"
            ),
        }
    }
}
