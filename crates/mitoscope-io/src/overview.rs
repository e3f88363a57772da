//! The low-resolution view of a whole slide, shared by the OpenSlide reader and the build
//! without it.

use std::fmt;

/// A low-resolution view of a whole slide.
#[derive(Clone, PartialEq)]
pub struct Overview {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, row-major, R, G, B per pixel.
    pub rgb: Vec<u8>,
    /// Full-resolution pixels per view pixel: view pixel `(i, j)` shows the full-resolution
    /// pixel at about `(i * downsample, j * downsample)`.
    pub downsample: f64,
    /// The pyramid level it was read from.
    pub level: u32,
}

impl fmt::Debug for Overview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overview")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgb", &format_args!("[{} bytes]", self.rgb.len()))
            .field("downsample", &self.downsample)
            .field("level", &self.level)
            .finish()
    }
}
