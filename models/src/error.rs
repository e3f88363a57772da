//! The error type of the models crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Messages name the file and, for a checkpoint that does not fit the network, the first key
/// that is missing or mis-shaped, in the order the network reads them.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The checkpoint could not be opened or is not a PyTorch checkpoint at all
    /// (truncated, corrupt, or another format).
    #[error("cannot read checkpoint {path}: {reason}")]
    Unreadable {
        /// The checkpoint file.
        path: PathBuf,
        /// What the reader reported.
        reason: String,
    },

    /// The checkpoint lacks a tensor the network needs: usually a checkpoint of another model.
    #[error(
        "checkpoint {path} does not fit {model}: key `{key}` is missing \
         (is this a {model} checkpoint?)"
    )]
    MissingKey {
        /// The checkpoint file.
        path: PathBuf,
        /// The network being loaded.
        model: String,
        /// The first missing key.
        key: String,
    },

    /// A tensor exists but has another shape than the network expects: usually a checkpoint
    /// of another size of the same model (ViT-B weights given as ViT-H).
    #[error(
        "checkpoint {path} does not fit {model}: key `{key}` has shape {found:?}, \
         expected {expected:?}"
    )]
    WrongShape {
        /// The checkpoint file.
        path: PathBuf,
        /// The network being loaded.
        model: String,
        /// The first mis-shaped key.
        key: String,
        /// The shape the network expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },

    /// A tensor's element type cannot be turned into floats (an integer weight, say).
    #[error("checkpoint {path}: key `{key}` holds {dtype}, not floating-point weights")]
    WrongDtype {
        /// The checkpoint file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The element type found.
        dtype: String,
    },

    /// The tensor's bytes could not be read (a truncated or damaged storage).
    #[error("checkpoint {path}: cannot read key `{key}`: {reason}")]
    UnreadableTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the reader reported.
        reason: String,
    },

    /// The embedded weights do not have the checksum they were shipped with.
    #[error("embedded weights {name} are damaged: sha256 {found}, expected {expected}")]
    Checksum {
        /// Which embedded file.
        name: String,
        /// The checksum computed at load.
        found: String,
        /// The checksum recorded in the source.
        expected: String,
    },

    /// An input the model cannot take (an empty image, a prompt without points or box...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The caller stopped a job (a client that went away, a user who pressed Ctrl-C).
    #[error("cancelled")]
    Cancelled,

    /// Tensor data that could not be read back from the device in the expected type.
    #[error("cannot read tensor data back from the device: {0}")]
    Readback(String),

    /// An I/O failure outside the checkpoint reader (a temporary file, say).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
