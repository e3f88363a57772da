//! Which format a file is in, judged from its first bytes (never from its name).

use std::fmt;

use crate::ReadError;

/// An image format Mitoscope reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF or Exif).
    Jpeg,
    /// TIFF or BigTIFF, including pyramidal TIFF and Aperio SVS (first image only).
    Tiff,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::Tiff => "TIFF",
        })
    }
}

/// Signatures of the accepted formats.
const SIGNATURES: [(&[u8], Format); 6] = [
    (b"\x89PNG\r\n\x1a\n", Format::Png),
    (b"\xff\xd8\xff", Format::Jpeg),
    (b"II*\0", Format::Tiff),
    (b"MM\0*", Format::Tiff),
    // BigTIFF
    (b"II+\0", Format::Tiff),
    (b"MM\0+", Format::Tiff),
];

/// Signatures of formats people are likely to try, named in the error message.
const REFUSED: [(&[u8], &str); 8] = [
    (b"GIF8", "it looks like a GIF image"),
    (b"BM", "it looks like a BMP image"),
    (
        b"\0\0\0\x0cjP  \r\n\x87\n",
        "it looks like a JPEG 2000 image",
    ),
    (b"\xff\x4f\xff\x51", "it looks like a JPEG 2000 codestream"),
    (b"ZISRAWFILE", "it looks like a Zeiss CZI file"),
    (b"%PDF", "it looks like a PDF document"),
    (b"PK\x03\x04", "it looks like a ZIP archive"),
    (b"\x00\x00\x00\x0cJXL ", "it looks like a JPEG XL image"),
];

impl Format {
    /// The format of `bytes`, from their signature.
    ///
    /// # Errors
    ///
    /// [`ReadError::UnknownFormat`] for anything else, naming the format when it is a common
    /// one (GIF, BMP, WebP, JPEG 2000, DICOM, ...) or saying that the data is empty.
    pub fn detect(bytes: &[u8]) -> Result<Self, ReadError> {
        if let Some((_, format)) = SIGNATURES.iter().find(|(sig, _)| bytes.starts_with(sig)) {
            return Ok(*format);
        }
        Err(ReadError::UnknownFormat {
            found: recognise_other(bytes),
        })
    }
}

/// Names data that is not an accepted format, when it can.
fn recognise_other(bytes: &[u8]) -> Option<&'static str> {
    if bytes.is_empty() {
        return Some("it is empty, 0 bytes");
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Some("it looks like a WebP image");
    }
    if bytes.get(128..132) == Some(b"DICM") {
        return Some("it looks like a DICOM file");
    }
    REFUSED
        .iter()
        .find(|(sig, _)| bytes.starts_with(sig))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_decide_the_format() {
        assert_eq!(
            Format::detect(b"\x89PNG\r\n\x1a\nrest").ok(),
            Some(Format::Png)
        );
        assert_eq!(Format::detect(b"\xff\xd8\xff\xe0").ok(), Some(Format::Jpeg));
        assert_eq!(Format::detect(b"II*\0\x08\0\0\0").ok(), Some(Format::Tiff));
        assert_eq!(Format::detect(b"MM\0*\0\0\0\x08").ok(), Some(Format::Tiff));
        assert_eq!(Format::detect(b"II+\0\x08\0\0\0").ok(), Some(Format::Tiff));
    }

    #[test]
    fn other_formats_are_named() {
        let found = |bytes: &[u8]| match Format::detect(bytes) {
            Err(ReadError::UnknownFormat { found }) => found,
            other => panic!("expected UnknownFormat, got {other:?}"),
        };
        assert_eq!(found(b""), Some("it is empty, 0 bytes"));
        assert_eq!(found(b"GIF89a...."), Some("it looks like a GIF image"));
        assert_eq!(
            found(b"RIFF\0\0\0\0WEBPVP8 "),
            Some("it looks like a WebP image")
        );
        assert_eq!(found(b"not an image"), None);
        // A PNG signature cut short is not a PNG.
        assert_eq!(found(b"\x89PN"), None);
    }
}
