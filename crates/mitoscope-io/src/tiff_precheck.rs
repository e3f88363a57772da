//! A look at the first TIFF directory before the `tiff` crate reads it, to refuse a layout on
//! which that crate overflows.
//!
//! NOTE: `tiff` 0.11.3 multiplies the strip count by the number of planes in a `u32` without
//! checking (`decoder/image.rs`, `Image::from_reader`); with overflow checks on (debug and
//! test builds) a damaged `SamplesPerPixel` in a planar file panics there. Remove this module
//! once the crate checks the product itself.

use crate::ReadError;

/// TIFF tags read here.
const IMAGE_LENGTH: u16 = 257;
const SAMPLES_PER_PIXEL: u16 = 277;
const ROWS_PER_STRIP: u16 = 278;
const PLANAR_CONFIGURATION: u16 = 284;

/// `PlanarConfiguration` value for separate planes.
const PLANAR: u64 = 2;

/// Byte order of the file.
#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, bytes: &[u8], at: usize) -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Self::Little => u16::from_le_bytes(b),
            Self::Big => u16::from_be_bytes(b),
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Self::Little => u32::from_le_bytes(b),
            Self::Big => u32::from_be_bytes(b),
        })
    }

    fn u64(self, bytes: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Self::Little => u64::from_le_bytes(b),
            Self::Big => u64::from_be_bytes(b),
        })
    }
}

/// Refuses a planar first image whose strip count times planes exceeds `u32`.
///
/// Anything this reader does not understand passes; the `tiff` crate reports it.
pub(crate) fn check(bytes: &[u8]) -> Result<(), ReadError> {
    let value = |tag| first_ifd_value(bytes, tag);
    if value(PLANAR_CONFIGURATION) != Some(PLANAR) {
        return Ok(());
    }
    let (Some(height), Some(samples)) = (value(IMAGE_LENGTH), value(SAMPLES_PER_PIXEL)) else {
        return Ok(());
    };
    let rows_per_strip = value(ROWS_PER_STRIP).unwrap_or(height).max(1);
    let strips = height.saturating_sub(1) / rows_per_strip + 1;
    if strips.saturating_mul(samples) > u64::from(u32::MAX) {
        return Err(ReadError::Corrupt {
            format: crate::Format::Tiff,
            detail: "its strips and samples per pixel do not agree".to_owned(),
        });
    }
    Ok(())
}

/// The single integer value of `tag` in the first directory, classic or BigTIFF.
fn first_ifd_value(bytes: &[u8], tag: u16) -> Option<u64> {
    let order = match bytes.get(0..2)? {
        b"II" => Order::Little,
        b"MM" => Order::Big,
        _ => return None,
    };
    let big = match order.u16(bytes, 2)? {
        42 => false,
        43 => true,
        _ => return None,
    };
    let (count, first_entry, entry_len) = if big {
        let ifd = usize::try_from(order.u64(bytes, 8)?).ok()?;
        let count = usize::try_from(order.u64(bytes, ifd)?).ok()?;
        (count, ifd.checked_add(8)?, 20)
    } else {
        let ifd = usize::try_from(order.u32(bytes, 4)?).ok()?;
        let count = usize::from(order.u16(bytes, ifd)?);
        (count, ifd.checked_add(2)?, 12)
    };
    (0..count).find_map(|i| {
        let entry = first_entry.checked_add(i.checked_mul(entry_len)?)?;
        if order.u16(bytes, entry)? != tag {
            return None;
        }
        let kind = order.u16(bytes, entry + 2)?;
        let value_at = entry + if big { 12 } else { 8 };
        match kind {
            // SHORT, LONG, LONG8 (a count above 1 keeps the first value, which is inline).
            3 => order.u16(bytes, value_at).map(u64::from),
            4 => order.u32(bytes, value_at).map(u64::from),
            16 if big => order.u64(bytes, value_at),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic little-endian TIFF header and one directory of LONG entries.
    fn tiff(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut bytes = b"II*\0\x08\0\0\0".to_vec();
        bytes.extend(u16::try_from(entries.len()).unwrap_or(0).to_le_bytes());
        for &(tag, value) in entries {
            bytes.extend(tag.to_le_bytes());
            bytes.extend(4u16.to_le_bytes());
            bytes.extend(1u32.to_le_bytes());
            bytes.extend(value.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn reads_first_directory_values() {
        let bytes = tiff(&[(IMAGE_LENGTH, 300), (SAMPLES_PER_PIXEL, 3)]);
        assert_eq!(first_ifd_value(&bytes, IMAGE_LENGTH), Some(300));
        assert_eq!(first_ifd_value(&bytes, SAMPLES_PER_PIXEL), Some(3));
        assert_eq!(first_ifd_value(&bytes, ROWS_PER_STRIP), None);
        assert_eq!(first_ifd_value(&bytes[..12], SAMPLES_PER_PIXEL), None);
    }

    #[test]
    fn refuses_planar_layouts_that_overflow() {
        let ok = tiff(&[
            (IMAGE_LENGTH, 300),
            (SAMPLES_PER_PIXEL, 3),
            (PLANAR_CONFIGURATION, 2),
        ]);
        assert!(check(&ok).is_ok());
        // 100 000 strips of one row times 50 000 planes.
        let overflow = tiff(&[
            (IMAGE_LENGTH, 100_000),
            (SAMPLES_PER_PIXEL, 50_000),
            (ROWS_PER_STRIP, 1),
            (PLANAR_CONFIGURATION, 2),
        ]);
        assert!(matches!(check(&overflow), Err(ReadError::Corrupt { .. })));
        assert!(check(b"II*\0").is_ok());
    }
}
