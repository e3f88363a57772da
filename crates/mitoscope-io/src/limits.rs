//! How much a reader accepts: pixels and bytes, checked before anything large is allocated.

use std::path::Path;

use crate::ReadError;

/// Default [`Limits::max_pixels`]: 150 million pixels, e.g. 12 000 x 12 500, 450 MB as RGB.
pub const DEFAULT_MAX_PIXELS: u64 = 150_000_000;

/// Default [`Limits::max_bytes`]: 1 GiB of encoded data.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Upper bounds on what a reader accepts.
///
/// The defaults let a whole 40x field of several square millimetres through, or the full
/// resolution level of a small slide, while keeping the RGB buffer (3 bytes per pixel) under
/// half a gigabyte, which a browser tab can still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `width * height`, checked against the header before decoding
    /// ([`DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
    /// Largest accepted encoded size in bytes, checked before a file is read
    /// ([`DEFAULT_MAX_BYTES`]).
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl Limits {
    /// Refuses data longer than `max_bytes`.
    pub(crate) fn check_bytes(&self, path: Option<&Path>, bytes: u64) -> Result<(), ReadError> {
        if bytes > self.max_bytes {
            return Err(ReadError::FileTooLarge {
                path: path.map(Path::to_path_buf),
                bytes,
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Refuses an empty or too large image and returns the length of its RGB buffer.
    pub(crate) fn rgb_len(&self, width: u32, height: u32) -> Result<usize, ReadError> {
        if width == 0 || height == 0 {
            return Err(ReadError::Empty { width, height });
        }
        let too_large = ReadError::TooLarge {
            width,
            height,
            max_pixels: self.max_pixels,
        };
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(too_large);
        }
        // On 32-bit targets (wasm32) a raised limit can exceed the address space.
        pixels
            .checked_mul(3)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(too_large)
    }
}

/// A zeroed buffer of `len` bytes, or [`ReadError::OutOfMemory`] instead of an abort.
pub(crate) fn zeroed(len: usize) -> Result<Vec<u8>, ReadError> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| ReadError::OutOfMemory {
            bytes: u64::try_from(len).unwrap_or(u64::MAX),
        })?;
    buffer.resize(len, 0);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let limits = Limits::default();
        assert_eq!(limits.max_pixels, 150_000_000);
        assert_eq!(limits.max_bytes, 1024 * 1024 * 1024);
        assert!(limits.rgb_len(12_000, 12_500).is_ok());
        assert!(limits.rgb_len(12_000, 12_501).is_err());
    }

    #[test]
    fn zero_sized_images_are_empty() {
        let limits = Limits::default();
        assert!(matches!(
            limits.rgb_len(0, 10),
            Err(ReadError::Empty {
                width: 0,
                height: 10
            })
        ));
    }

    #[test]
    fn a_raised_limit_still_cannot_overflow() {
        let limits = Limits {
            max_pixels: u64::MAX,
            max_bytes: u64::MAX,
        };
        assert!(matches!(
            limits.rgb_len(u32::MAX, u32::MAX),
            Err(ReadError::TooLarge { .. })
        ));
    }
}
