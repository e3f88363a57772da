//! Walking JPEG marker segments, to tell a complete file from a truncated one.

/// Start of scan: entropy-coded data follows its header.
const SOS: u8 = 0xda;

/// End of image.
const EOI: u8 = 0xd9;

/// Whether an end-of-image marker follows the first scan.
///
/// Inside entropy-coded data a `0xff` byte is always followed by `0x00` or a restart marker,
/// so `ff d9` after the first scan is the real end, not a byte pair inside the data. Segments
/// before the scan are skipped by their length, so an Exif thumbnail's own end marker does not
/// count.
pub(crate) fn ends_properly(bytes: &[u8]) -> bool {
    first_scan(bytes).is_some_and(|scan| scan.windows(2).any(|pair| pair == [0xff, EOI]))
}

/// The bytes from the first start-of-scan header to the end.
fn first_scan(bytes: &[u8]) -> Option<&[u8]> {
    // Skip the start-of-image marker.
    let mut offset = 2;
    loop {
        // Markers may be preceded by any number of 0xff fill bytes.
        while bytes.get(offset) == Some(&0xff) && bytes.get(offset + 1) == Some(&0xff) {
            offset += 1;
        }
        if bytes.get(offset) != Some(&0xff) {
            return None;
        }
        let marker = *bytes.get(offset + 1)?;
        if marker == SOS {
            return bytes.get(offset..);
        }
        if marker == EOI {
            return None;
        }
        let length = u16::from_be_bytes([*bytes.get(offset + 2)?, *bytes.get(offset + 3)?]);
        offset = offset.checked_add(2 + usize::from(length))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A skeleton JPEG: SOI, an APP1 segment holding a thumbnail's EOI, SOS, data, then `tail`.
    fn jpeg(tail: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xff, 0xd8];
        bytes.extend([0xff, 0xe1, 0x00, 0x06, 0xff, 0xd9, 0x00, 0x00]);
        bytes.extend([0xff, 0xda, 0x00, 0x02]);
        bytes.extend([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]);
        bytes.extend(tail);
        bytes
    }

    #[test]
    fn a_complete_file_ends_with_eoi() {
        assert!(ends_properly(&jpeg(&[0xff, 0xd9])));
        // Trailing bytes after the end marker are tolerated.
        assert!(ends_properly(&jpeg(&[0xff, 0xd9, 0, 0, 0])));
    }

    #[test]
    fn a_truncated_file_does_not() {
        // The thumbnail's end marker inside APP1 does not count.
        assert!(!ends_properly(&jpeg(&[])));
        assert!(!ends_properly(&[0xff, 0xd8, 0xff, 0xe1, 0xff]));
        assert!(!ends_properly(&[0xff, 0xd8]));
    }
}
