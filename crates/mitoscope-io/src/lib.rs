//! # mitoscope-io
//!
//! Reads the images Mitoscope accepts and returns 8-bit RGB pixels, plus the pixel size when
//! the file states one. Pure Rust, no file system in the core path: it builds for
//! `wasm32-unknown-unknown` so that the browser app decodes with the same code as the server.
//!
//! **Formats**, told apart by their first bytes, never by the file name ([`Format::detect`]):
//!
//! - PNG and JPEG, through the `image` crate. Palette PNGs are expanded.
//! - TIFF and BigTIFF through the `tiff` crate: the *first* image file directory only, which in
//!   a pyramidal TIFF or an Aperio SVS is the full-resolution level. Strips or tiles, chunky or
//!   planar, uncompressed, LZW, Deflate, PackBits or JPEG (JPEG 2000, common in older Aperio
//!   slides, is not supported: [`ReadError::UnsupportedCompression`]).
//!
//! **Pixels**: 8-bit grey (replicated to RGB), grey + alpha, RGB, RGBA and TIFF YCbCr. Alpha is
//! composited over white, the colour of an empty slide. 16-bit, floating-point, CMYK, palette
//! TIFF and other kinds are refused with [`ReadError::UnsupportedPixels`], whose message says
//! what to convert to.
//!
//! **Limits** ([`Limits`]): at most 150 million pixels and 1 GiB of file by default. The pixel
//! count is checked against the header before the pixel buffer is allocated, so a file that
//! claims to be 100 000 x 100 000 pixels costs nothing ([`ReadError::TooLarge`]).
//!
//! **Pixel size** (micrometres per pixel, `mpp`), with its [`MppSource`]:
//!
//! 1. Aperio SVS: `MPP = 0.4990` in the `ImageDescription`, preferred over 2.
//! 2. TIFF `XResolution` / `YResolution` with `ResolutionUnit` centimetre or inch (inch when
//!    absent; unit "none" is ignored).
//! 3. PNG `pHYs` in pixels per metre.
//!
//! Values outside [`PLAUSIBLE_MPP`] (0.01 to 10 um/px) are dropped: 72 or 300 dpi, common
//! software defaults, would claim 353 or 84.7 um/px. JPEG gives none.
//!
//! Nothing here panics on any input: damaged or truncated files give [`ReadError::Corrupt`].
//!
//! ```
//! use image::ImageEncoder;
//! use mitoscope_io::{Format, Limits, read_bytes};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A 2 x 1 grey PNG, encoded in memory.
//! let mut png = Vec::new();
//! image::codecs::png::PngEncoder::new(&mut png).write_image(
//!     &[0, 255],
//!     2,
//!     1,
//!     image::ExtendedColorType::L8,
//! )?;
//!
//! let image = read_bytes(&png, &Limits::default())?;
//! assert_eq!(image.format, Format::Png);
//! assert_eq!((image.width, image.height), (2, 1));
//! assert_eq!(image.rgb, [0, 0, 0, 255, 255, 255]);
//! assert_eq!(image.mpp, None);
//! # Ok(())
//! # }
//! ```
//!
//! **Whole-slide images** (cargo feature `openslide`, off by default): the `slide` module reads
//! Aperio SVS, generic tiled TIFF and the other formats of the system's OpenSlide tile by tile,
//! with the pixel size from the slide, so that a slide larger than memory can be analysed.
//!
//! Run the tests with `cargo test -p mitoscope-io` (the tests on real slides read
//! `../shared/data` beside the repository and skip with a note when it is missing); check the
//! browser build with `cargo build -p mitoscope-io --target wasm32-unknown-unknown`.

mod error;
mod format;
mod jpeg_markers;
mod limits;
mod mpp;
mod overview;
mod pixels;
mod png_chunks;
mod raster;
#[cfg(feature = "openslide")]
pub mod slide;
/// Whole-slide images: this build has no OpenSlide, and refuses them with a message.
#[cfg(not(feature = "openslide"))]
#[path = "slide_unavailable.rs"]
pub mod slide;
mod tiff_file;
mod tiff_precheck;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use error::ReadError;
pub use format::Format;
pub use limits::{DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, Limits};
pub use mpp::{MppSource, PLAUSIBLE_MPP};

/// What a file's header says, read without decoding the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInfo {
    /// The file's format.
    pub format: Format,
    /// Width in pixels (of the first image of a TIFF).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel size in micrometres per pixel, when the file states a plausible one.
    pub mpp: Option<f64>,
    /// Where `mpp` came from; `None` exactly when `mpp` is.
    pub mpp_source: Option<MppSource>,
}

impl ImageInfo {
    fn new(format: Format, width: u32, height: u32, mpp: Option<mpp::Mpp>) -> Self {
        Self {
            format,
            width,
            height,
            mpp: mpp.map(|mpp| mpp.value),
            mpp_source: mpp.map(|mpp| mpp.source),
        }
    }
}

/// A decoded image: 8-bit RGB pixels and what the file says about them.
///
/// Its `Debug` output leaves the pixels out, so that logging an image cannot leak them.
#[derive(Clone, PartialEq)]
pub struct LoadedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, row-major, R, G, B per pixel.
    pub rgb: Vec<u8>,
    /// Pixel size in micrometres per pixel, when the file states a plausible one.
    pub mpp: Option<f64>,
    /// Where `mpp` came from; `None` exactly when `mpp` is.
    pub mpp_source: Option<MppSource>,
    /// The file's format.
    pub format: Format,
}

impl LoadedImage {
    fn new(info: ImageInfo, rgb: Vec<u8>) -> Self {
        Self {
            width: info.width,
            height: info.height,
            rgb,
            mpp: info.mpp,
            mpp_source: info.mpp_source,
            format: info.format,
        }
    }

    /// The RGB value at column `x`, row `y`, or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let index = (usize::try_from(y).ok()? * usize::try_from(self.width).ok()?
            + usize::try_from(x).ok()?)
            * 3;
        self.rgb.get(index..index + 3)?.try_into().ok()
    }
}

impl fmt::Debug for LoadedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgb", &format_args!("[{} bytes]", self.rgb.len()))
            .field("mpp", &self.mpp)
            .field("mpp_source", &self.mpp_source)
            .field("format", &self.format)
            .finish()
    }
}

/// Decodes an image held in memory.
///
/// # Errors
///
/// [`ReadError::FileTooLarge`] beyond [`Limits::max_bytes`]; [`ReadError::UnknownFormat`] for
/// anything but PNG, JPEG and TIFF; [`ReadError::TooLarge`] or [`ReadError::Empty`] from the
/// header's size; [`ReadError::UnsupportedPixels`] or [`ReadError::UnsupportedCompression`]
/// for pixels Mitoscope does not convert; [`ReadError::Corrupt`] for damaged or truncated data;
/// [`ReadError::OutOfMemory`] when the RGB buffer cannot be allocated.
pub fn read_bytes(bytes: &[u8], limits: &Limits) -> Result<LoadedImage, ReadError> {
    limits.check_bytes(None, u64::try_from(bytes.len()).unwrap_or(u64::MAX))?;
    let format = Format::detect(bytes)?;
    let image = match format {
        Format::Png | Format::Jpeg => raster::read(bytes, format, limits)?,
        Format::Tiff => tiff_file::read(bytes, limits)?,
    };
    tracing::debug!(
        %format,
        width = image.width,
        height = image.height,
        mpp = ?image.mpp,
        "image decoded"
    );
    Ok(image)
}

/// Reads and decodes an image file; the file's size is checked before it is read.
///
/// `std::fs` builds for `wasm32-unknown-unknown` too, where it returns [`ReadError::Io`]; the
/// browser app calls [`read_bytes`].
///
/// # Errors
///
/// [`ReadError::Io`] (naming the file) when it cannot be opened or read,
/// [`ReadError::FileTooLarge`] (naming the file) beyond [`Limits::max_bytes`], and everything
/// [`read_bytes`] returns.
pub fn read_path(path: &Path, limits: &Limits) -> Result<LoadedImage, ReadError> {
    let io_error = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    limits.check_bytes(Some(path), len)?;

    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(|_| ReadError::OutOfMemory { bytes: len })?;
    // One byte beyond the limit tells a file that grew while we read it.
    file.take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    limits.check_bytes(Some(path), u64::try_from(bytes.len()).unwrap_or(u64::MAX))?;
    read_bytes(&bytes, limits)
}

/// Reads the format, size and pixel size from the header, without decoding the pixels.
///
/// No [`Limits`] apply: probing a huge image is how a caller learns its size.
///
/// # Errors
///
/// [`ReadError::UnknownFormat`], [`ReadError::Empty`], [`ReadError::Corrupt`] for a header that
/// cannot be read, [`ReadError::UnsupportedCompression`] or [`ReadError::UnsupportedPixels`]
/// for a TIFF whose first directory the decoder refuses.
pub fn probe_bytes(bytes: &[u8]) -> Result<ImageInfo, ReadError> {
    match Format::detect(bytes)? {
        format @ (Format::Png | Format::Jpeg) => raster::probe(bytes, format),
        Format::Tiff => tiff_file::probe(bytes),
    }
}
