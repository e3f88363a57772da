//! Everything that can go wrong while reading an image, worded for the person who chose the file.

use std::path::{Path, PathBuf};

use crate::Format;

/// Why an image could not be read.
///
/// Every message says what is wrong and what to do about it; none of them contains pixel data.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },

    /// The data is neither PNG, JPEG nor TIFF (judged by its first bytes, not its name).
    #[error(
        "unrecognised image data{}: Mitoscope reads PNG, JPEG and TIFF (including pyramidal \
         TIFF and Aperio SVS); convert the image to one of these",
        found_clause(*.found)
    )]
    UnknownFormat {
        /// What the data is instead, when that is recognisable (`"it looks like a GIF image"`,
        /// `"it is empty, 0 bytes"`).
        found: Option<&'static str>,
    },

    /// The file is damaged or ends early; the decoder's own words are in `detail`.
    #[error("the {format} file is damaged or truncated ({detail}); copy or export it again")]
    Corrupt {
        /// The format the file claims to be.
        format: Format,
        /// What the decoder stumbled on.
        detail: String,
    },

    /// The pixels are of a kind Mitoscope does not convert (16-bit, floating point, CMYK, ...).
    #[error("cannot use this {format} image: {detail}")]
    UnsupportedPixels {
        /// The file's format.
        format: Format,
        /// What the pixels are and what to convert them to.
        detail: String,
    },

    /// A TIFF compression the decoder does not implement (JPEG 2000 in many Aperio slides,
    /// old-style JPEG, ...).
    #[error(
        "cannot use this TIFF image: its compression ({compression}) is not supported; \
         Mitoscope reads uncompressed, LZW, Deflate, PackBits and JPEG-compressed TIFF, so \
         convert the image to one of these (e.g. JPEG-compressed tiles)"
    )]
    UnsupportedCompression {
        /// The compression the file uses.
        compression: String,
    },

    /// The image has more pixels than [`Limits::max_pixels`](crate::Limits::max_pixels); refused
    /// before the pixel buffer is allocated.
    #[error(
        "the image is {width} x {height} pixels, more than the limit of {max_pixels} pixels; \
         crop or downscale it, or raise the pixel limit"
    )]
    TooLarge {
        /// Width stated in the header.
        width: u32,
        /// Height stated in the header.
        height: u32,
        /// The limit in force.
        max_pixels: u64,
    },

    /// The file has more bytes than [`Limits::max_bytes`](crate::Limits::max_bytes); refused
    /// before it is read.
    #[error(
        "{} is {bytes} bytes, more than the limit of {max_bytes} bytes; crop or compress the \
         image, or raise the size limit",
        subject(path.as_deref())
    )]
    FileTooLarge {
        /// The file, when the data came from one.
        path: Option<PathBuf>,
        /// Size of the file or data.
        bytes: u64,
        /// The limit in force.
        max_bytes: u64,
    },

    /// The header gives a width or height of zero.
    #[error("the image has no pixels ({width} x {height}); the file is probably damaged")]
    Empty {
        /// Width stated in the header.
        width: u32,
        /// Height stated in the header.
        height: u32,
    },

    /// A whole-slide image that OpenSlide cannot open or read (see the `slide` module).
    #[error("cannot read the slide `{}`: {detail}", path.display())]
    Slide {
        /// The slide file.
        path: PathBuf,
        /// What went wrong and what to do, OpenSlide's own words included.
        detail: String,
    },

    /// The decoded image fits the limits but not into the memory available.
    #[error(
        "not enough memory for the decoded image ({bytes} bytes); close other programs, or \
         crop or downscale the image"
    )]
    OutOfMemory {
        /// Size of the buffer that could not be allocated.
        bytes: u64,
    },
}

/// `" (it looks like a GIF image)"`, or nothing.
fn found_clause(found: Option<&'static str>) -> String {
    found.map_or_else(String::new, |what| format!(" ({what})"))
}

/// What a size error talks about: the named file, or the data handed over.
fn subject(path: Option<&Path>) -> String {
    path.map_or_else(
        || "the image data".to_owned(),
        |path| format!("the file `{}`", path.display()),
    )
}
