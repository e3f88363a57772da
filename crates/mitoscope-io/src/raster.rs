//! PNG and JPEG, decoded by the `image` crate after its header has been checked.

use std::io::{self, Cursor};

use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::limits::zeroed;
use crate::mpp::{Mpp, MppSource};
use crate::pixels::{self, Alpha, Colour, Layout};
use crate::{Format, ImageInfo, Limits, LoadedImage, ReadError, jpeg_markers, png_chunks};

/// Headroom above the largest pixel buffer for a decoder's own allocations (256 MiB).
const DECODER_HEADROOM: u64 = 256 << 20;

/// Width, height and pixel size from the header, without decoding.
pub(crate) fn probe(bytes: &[u8], format: Format) -> Result<ImageInfo, ReadError> {
    // A PNG's size is at a fixed place; the decoder would read on to the image data.
    let (width, height) = match png_dimensions(bytes, format)? {
        Some(dimensions) => dimensions,
        None => open(bytes, format, &Limits::default())?.dimensions(),
    };
    Ok(ImageInfo::new(format, width, height, mpp(bytes, format)))
}

/// Decodes a PNG or JPEG into RGB.
pub(crate) fn read(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<LoadedImage, ReadError> {
    // Refuse a huge PNG on its IHDR alone: the decoder reads on to the image data first.
    if let Some((width, height)) = png_dimensions(bytes, format)? {
        limits.rgb_len(width, height)?;
    }
    let decoder = open(bytes, format, limits)?;
    let (width, height) = decoder.dimensions();
    let rgb_len = limits.rgb_len(width, height)?;
    let layout = layout(decoder.color_type(), format)?;
    // NOTE: the JPEG decoder fills a truncated scan with grey instead of failing; that grey
    // would pass for background, so a missing end-of-image marker counts as damage.
    if format == Format::Jpeg && !jpeg_markers::ends_properly(bytes) {
        return Err(ReadError::Corrupt {
            format,
            detail: "the data ends before the end-of-image marker".to_owned(),
        });
    }

    let decoded_len = usize::try_from(decoder.total_bytes()).map_err(|_| ReadError::TooLarge {
        width,
        height,
        max_pixels: limits.max_pixels,
    })?;
    let mut decoded = zeroed(decoded_len)?;
    decoder
        .read_image(&mut decoded)
        .map_err(|e| map_error(e, format))?;

    let rgb = layout.into_rgb(decoded, rgb_len / 3);
    Ok(LoadedImage::new(
        ImageInfo::new(format, width, height, mpp(bytes, format)),
        rgb,
    ))
}

/// A decoder that has read the header, with limits that leave the size checks to us.
fn open<'a>(
    bytes: &'a [u8],
    format: Format,
    limits: &Limits,
) -> Result<impl ImageDecoder + 'a, ReadError> {
    let image_format = match format {
        Format::Png => ImageFormat::Png,
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Tiff => ImageFormat::Tiff,
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = None;
    image_limits.max_image_height = None;
    // Up to 8 bytes per pixel (16-bit RGBA) so that such images reach our own, clearer refusal.
    image_limits.max_alloc = Some(
        limits
            .max_pixels
            .saturating_mul(8)
            .saturating_add(DECODER_HEADROOM),
    );
    reader.limits(image_limits);
    reader.into_decoder().map_err(|e| map_error(e, format))
}

/// A PNG's size from its `IHDR` chunk (`None` for JPEG, or when the chunk cannot be read and
/// the decoder is left to report why).
///
/// # Errors
///
/// [`ReadError::Empty`] for a zero width or height, which the PNG decoder refuses with a
/// less helpful message.
fn png_dimensions(bytes: &[u8], format: Format) -> Result<Option<(u32, u32)>, ReadError> {
    if format != Format::Png {
        return Ok(None);
    }
    match png_chunks::dimensions(bytes) {
        Some((width, height)) if width == 0 || height == 0 => {
            Err(ReadError::Empty { width, height })
        }
        dimensions => Ok(dimensions),
    }
}

/// The pixel size a PNG states; JPEG files state none Mitoscope trusts.
fn mpp(bytes: &[u8], format: Format) -> Option<Mpp> {
    // NOTE: JPEG's JFIF density is nearly always a 72 or 96 dpi default; it is not read.
    (format == Format::Png)
        .then(|| png_chunks::mpp(bytes))
        .flatten()
        .map(|value| Mpp {
            value,
            source: MppSource::PngPhys,
        })
}

/// The sample layout of an `image` colour type, or why it is refused.
fn layout(colour: ColorType, format: Format) -> Result<Layout, ReadError> {
    let refuse = |detail: String| ReadError::UnsupportedPixels { format, detail };
    Ok(match colour {
        ColorType::L8 => Layout::packed(Colour::Grey, Alpha::None),
        ColorType::La8 => Layout::packed(Colour::Grey, Alpha::Straight),
        ColorType::Rgb8 => Layout::packed(Colour::Rgb, Alpha::None),
        ColorType::Rgba8 => Layout::packed(Colour::Rgb, Alpha::Straight),
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => {
            return Err(refuse(pixels::depth_refusal(16)));
        }
        ColorType::Rgb32F | ColorType::Rgba32F => {
            return Err(refuse(pixels::FLOAT_REFUSAL.to_owned()));
        }
        other => {
            return Err(refuse(format!(
                "pixel type {other:?} is not supported: convert to 8-bit RGB"
            )));
        }
    })
}

/// Sorts an `image` error into ours.
fn map_error(error: ImageError, format: Format) -> ReadError {
    match error {
        ImageError::Unsupported(e) => ReadError::UnsupportedPixels {
            format,
            detail: format!("{e}: convert to 8-bit RGB"),
        },
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => ReadError::Corrupt {
            format,
            detail: "the data ends early".to_owned(),
        },
        ImageError::Limits(e) => ReadError::Corrupt {
            format,
            detail: format!("it asks for more memory than its size allows: {e}"),
        },
        other => ReadError::Corrupt {
            format,
            detail: other.to_string(),
        },
    }
}
