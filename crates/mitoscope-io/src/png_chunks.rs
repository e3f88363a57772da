//! The few PNG chunks read by hand: `IHDR` (size, to refuse empty images with a clear error)
//! and `pHYs` (pixel size), which the `image` crate does not expose.

use crate::mpp::{self, ResolutionUnit};

/// Length of the PNG signature.
const SIGNATURE_LEN: usize = 8;

/// `pHYs` unit specifier for metres.
const UNIT_METRE: u8 = 1;

/// A chunk: its type and data (the CRC is left to the decoder).
struct Chunk<'a> {
    kind: &'a [u8],
    data: &'a [u8],
}

/// The chunks before the image data, stopping at the first that does not fit in `bytes`.
fn header_chunks(bytes: &[u8]) -> impl Iterator<Item = Chunk<'_>> {
    let mut offset = SIGNATURE_LEN;
    std::iter::from_fn(move || {
        let length = bytes
            .get(offset..offset + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)?;
        let length = usize::try_from(length).ok()?;
        let kind = bytes.get(offset + 4..offset + 8)?;
        if kind == b"IDAT" || kind == b"IEND" {
            return None;
        }
        let data_end = (offset + 8).checked_add(length)?;
        let data = bytes.get(offset + 8..data_end)?;
        offset = data_end.checked_add(4)?;
        Some(Chunk { kind, data })
    })
}

/// Width and height from `IHDR`, the first chunk.
pub(crate) fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = header_chunks(bytes).next().filter(|c| c.kind == b"IHDR")?;
    let width = u32::from_be_bytes(ihdr.data.get(0..4)?.try_into().ok()?);
    let height = u32::from_be_bytes(ihdr.data.get(4..8)?.try_into().ok()?);
    Some((width, height))
}

/// The pixel size from `pHYs`, when its unit is the metre and the value is plausible.
pub(crate) fn mpp(bytes: &[u8]) -> Option<f64> {
    let phys = header_chunks(bytes).find(|c| c.kind == b"pHYs")?;
    let x = u32::from_be_bytes(phys.data.get(0..4)?.try_into().ok()?);
    let y = u32::from_be_bytes(phys.data.get(4..8)?.try_into().ok()?);
    if *phys.data.get(8)? != UNIT_METRE {
        return None;
    }
    mpp::from_resolution(f64::from(x), Some(f64::from(y)), ResolutionUnit::Metre)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG prefix with `IHDR` and the given extra chunks (CRCs left at zero).
    fn png(width: u32, height: u32, extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        for (kind, data) in std::iter::once((b"IHDR", ihdr)).chain(extra.iter().cloned()) {
            bytes.extend(u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
            bytes.extend(kind.as_slice());
            bytes.extend(data);
            bytes.extend([0; 4]);
        }
        bytes
    }

    fn phys(x: u32, y: u32, unit: u8) -> Vec<u8> {
        let mut data = x.to_be_bytes().to_vec();
        data.extend(y.to_be_bytes());
        data.push(unit);
        data
    }

    #[test]
    fn ihdr_gives_the_size() {
        assert_eq!(dimensions(&png(1000, 700, &[])), Some((1000, 700)));
        assert_eq!(dimensions(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0"), None);
    }

    #[test]
    fn phys_in_metres_gives_the_pixel_size() {
        // 4 000 000 px/m = 0.25 um/px.
        let bytes = png(10, 10, &[(b"pHYs", phys(4_000_000, 4_000_000, 1))]);
        assert_eq!(mpp(&bytes), Some(0.25));
        // Unit "unknown" (aspect ratio only) and 72 dpi (2835 px/m) are ignored.
        assert_eq!(
            mpp(&png(10, 10, &[(b"pHYs", phys(4_000_000, 4_000_000, 0))])),
            None
        );
        assert_eq!(mpp(&png(10, 10, &[(b"pHYs", phys(2835, 2835, 1))])), None);
        // After the image data it is not looked for.
        let late = png(
            10,
            10,
            &[
                (b"IDAT", vec![0; 4]),
                (b"pHYs", phys(4_000_000, 4_000_000, 1)),
            ],
        );
        assert_eq!(mpp(&late), None);
    }

    #[test]
    fn a_chunk_claiming_more_than_the_data_stops_the_walk() {
        let mut bytes = png(10, 10, &[]);
        bytes.extend(u32::MAX.to_be_bytes());
        bytes.extend(b"pHYs");
        assert_eq!(mpp(&bytes), None);
    }
}
