//! TIFF, BigTIFF, pyramidal TIFF and Aperio SVS through the `tiff` crate: the first image file
//! directory only (the full-resolution level), strips or tiles, chunky or planar, decoded one
//! chunk at a time straight into the RGB buffer.

use std::io::{self, Cursor};

use tiff::decoder::ifd::Value;
use tiff::decoder::{ChunkType, Decoder, Limits as TiffLimits};
use tiff::tags::{ExtraSamples, PlanarConfiguration, SampleFormat, Tag};
use tiff::{ColorType, TiffError, TiffFormatError, TiffUnsupportedError};

use crate::limits::zeroed;
use crate::mpp::{self, Mpp, MppSource, ResolutionUnit};
use crate::pixels::{self, Alpha, Colour, Layout};
use crate::{Format, ImageInfo, Limits, LoadedImage, ReadError, tiff_precheck};

/// TIFF `PhotometricInterpretation` for palette colour.
const PHOTOMETRIC_PALETTE: u16 = 3;

/// TIFF `ResolutionUnit` values (1, none, is ignored).
const UNIT_INCH: u16 = 2;
const UNIT_CENTIMETRE: u16 = 3;

type TiffDecoder<'a> = Decoder<Cursor<&'a [u8]>>;

/// Width, height and pixel size of the first image, without decoding it.
pub(crate) fn probe(bytes: &[u8]) -> Result<ImageInfo, ReadError> {
    let mut decoder = open(bytes)?;
    let (width, height) = decoder.dimensions().map_err(map_error)?;
    Ok(ImageInfo::new(
        Format::Tiff,
        width,
        height,
        mpp(&mut decoder),
    ))
}

/// Decodes the first image into RGB.
pub(crate) fn read(bytes: &[u8], limits: &Limits) -> Result<LoadedImage, ReadError> {
    let mut decoder = open(bytes)?;
    let (width, height) = decoder.dimensions().map_err(map_error)?;
    let rgb_len = limits.rgb_len(width, height)?;
    let layout = layout(&mut decoder)?;
    let mpp = mpp(&mut decoder);
    check_chunks_inside(&mut decoder, bytes.len())?;

    let chunk_limits = chunk_limits(limits, bytes.len(), layout.channels);
    let max_chunk_len = chunk_limits.decoding_buffer_size;
    let mut decoder = decoder.with_limits(chunk_limits);
    let mut rgb = zeroed(rgb_len)?;
    decode_chunks(
        &mut decoder,
        layout,
        (width, height),
        max_chunk_len,
        &mut rgb,
    )?;

    Ok(LoadedImage::new(
        ImageInfo::new(Format::Tiff, width, height, mpp),
        rgb,
    ))
}

/// A decoder positioned on the first image file directory.
fn open(bytes: &[u8]) -> Result<TiffDecoder<'_>, ReadError> {
    tiff_precheck::check(bytes)?;
    Decoder::new(Cursor::new(bytes)).map_err(map_error)
}

/// Limits for one strip or tile: no chunk can decode to more than the whole image, nor be
/// stored in more bytes than the file has.
fn chunk_limits(limits: &Limits, file_len: usize, channels: usize) -> TiffLimits {
    let mut chunk_limits = TiffLimits::default();
    let channels = u64::try_from(channels).unwrap_or(u64::MAX);
    chunk_limits.decoding_buffer_size =
        usize::try_from(limits.max_pixels.saturating_mul(channels)).unwrap_or(usize::MAX);
    chunk_limits.intermediate_buffer_size = file_len;
    chunk_limits
}

/// Refuses a file whose strips or tiles lie (partly) beyond its end: a truncated file, which
/// some decoders (JPEG) would otherwise complete with grey.
fn check_chunks_inside(decoder: &mut TiffDecoder<'_>, file_len: usize) -> Result<(), ReadError> {
    let (offsets_tag, counts_tag) = match decoder.get_chunk_type() {
        ChunkType::Strip => (Tag::StripOffsets, Tag::StripByteCounts),
        ChunkType::Tile => (Tag::TileOffsets, Tag::TileByteCounts),
    };
    let offsets = decoder
        .find_tag_unsigned_vec::<u64>(offsets_tag)
        .map_err(map_error)?
        .unwrap_or_default();
    let counts = decoder
        .find_tag_unsigned_vec::<u64>(counts_tag)
        .map_err(map_error)?
        .unwrap_or_default();
    let file_len = u64::try_from(file_len).unwrap_or(u64::MAX);
    let inside = offsets
        .iter()
        .zip(&counts)
        .all(|(&offset, &count)| offset.checked_add(count).is_some_and(|end| end <= file_len));
    if !inside {
        return Err(corrupt("a strip or tile lies beyond the end of the data"));
    }
    Ok(())
}

/// Decodes every strip or tile of the current image into `rgb` (`width * height * 3` bytes),
/// refusing any chunk whose decoded form would exceed `max_chunk_len` bytes.
fn decode_chunks(
    decoder: &mut TiffDecoder<'_>,
    layout: Layout,
    (width, height): (u32, u32),
    max_chunk_len: usize,
    rgb: &mut [u8],
) -> Result<(), ReadError> {
    let planar = decoder
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
        .map_err(map_error)?
        .and_then(PlanarConfiguration::from_u16)
        == Some(PlanarConfiguration::Planar);
    // Tiles, or strips of the full width.
    let (chunk_width, chunk_height) = decoder.chunk_dimensions();
    if chunk_width == 0 || chunk_height == 0 {
        return Err(corrupt("a strip or tile has no pixels"));
    }
    let across = width.div_ceil(chunk_width);
    let down = height.div_ceil(chunk_height);
    let units = across
        .checked_mul(down)
        .ok_or_else(|| corrupt("too many tiles"))?;
    // Samples per pixel in one decoded chunk: all of them, or one per plane.
    let chunk_channels = if planar { 1 } else { layout.channels };

    let mut chunk = Vec::new();
    let mut unit_pixels = Vec::new();
    for unit in 0..units {
        let x0 = (unit % across) * chunk_width;
        let y0 = (unit / across) * chunk_height;
        let unit_width = usize_of(chunk_width.min(width - x0));
        let unit_height = usize_of(chunk_height.min(height - y0));

        // Step 1: the unit's pixels, interleaved, with the row stride of the buffer.
        let (pixels, stride): (&[u8], usize) = if planar {
            unit_pixels.clear();
            unit_pixels.resize(unit_width * unit_height * layout.channels, 0);
            for plane in 0..layout.channels {
                let index = u32::try_from(plane)
                    .ok()
                    .and_then(|plane| plane.checked_mul(units))
                    .and_then(|first| first.checked_add(unit))
                    .ok_or_else(|| corrupt("too many tiles"))?;
                let size = ChunkSize {
                    width: unit_width,
                    height: unit_height,
                    channels: 1,
                    max_len: max_chunk_len,
                };
                let stride = read_chunk(decoder, index, size, &mut chunk)?;
                interleave(
                    &chunk,
                    stride,
                    &mut unit_pixels,
                    unit_width,
                    layout.channels,
                    plane,
                );
            }
            (&unit_pixels, unit_width * layout.channels)
        } else {
            let size = ChunkSize {
                width: unit_width,
                height: unit_height,
                channels: chunk_channels,
                max_len: max_chunk_len,
            };
            let stride = read_chunk(decoder, unit, size, &mut chunk)?;
            (&chunk, stride)
        };

        // Step 2: convert row by row into the image.
        let image_stride = usize_of(width) * 3;
        for row in 0..unit_height {
            let src = pixels
                .get(row * stride..row * stride + unit_width * layout.channels)
                .ok_or_else(|| corrupt("a strip or tile is shorter than its size"))?;
            let start = (usize_of(y0) + row) * image_stride + usize_of(x0) * 3;
            let dst = rgb
                .get_mut(start..start + unit_width * 3)
                .ok_or_else(|| corrupt("a strip or tile lies outside the image"))?;
            layout.convert_row(src, dst);
        }
    }
    Ok(())
}

/// What a decoded strip or tile must hold.
#[derive(Clone, Copy)]
struct ChunkSize {
    /// Pixels per row inside the image (an edge tile's padding excluded).
    width: usize,
    /// Rows inside the image.
    height: usize,
    /// Samples per pixel in the chunk (1 for a plane of a planar image).
    channels: usize,
    /// Largest decoded size accepted, in bytes.
    max_len: usize,
}

/// Reads chunk `index` into `buffer` and returns its row stride in bytes, after checking that
/// its layout holds `size` and stays within `size.max_len`.
fn read_chunk(
    decoder: &mut TiffDecoder<'_>,
    index: u32,
    size: ChunkSize,
    buffer: &mut Vec<u8>,
) -> Result<usize, ReadError> {
    let ChunkSize {
        width,
        height,
        channels,
        max_len,
    } = size;
    let preferred = decoder
        .image_chunk_buffer_layout(index)
        .map_err(map_error)?;
    let row_len = width * channels;
    let stride = preferred.row_stride.map_or(row_len, |stride| stride.get());
    let needed = stride * height.saturating_sub(1) + row_len;
    if stride < row_len || preferred.len < needed || preferred.len > max_len {
        return Err(corrupt("a strip or tile does not match the image size"));
    }
    buffer.clear();
    buffer
        .try_reserve(preferred.len)
        .map_err(|_| ReadError::OutOfMemory {
            bytes: u64::try_from(preferred.len).unwrap_or(u64::MAX),
        })?;
    buffer.resize(preferred.len, 0);
    decoder.read_chunk_bytes(index, buffer).map_err(map_error)?;
    Ok(stride)
}

/// Copies one plane (`stride` bytes per row) into sample `plane` of interleaved pixels.
fn interleave(
    plane_data: &[u8],
    stride: usize,
    pixels: &mut [u8],
    width: usize,
    channels: usize,
    plane: usize,
) {
    for (row, out_row) in pixels.chunks_exact_mut(width * channels).enumerate() {
        let src = plane_data.get(row * stride..).unwrap_or_default();
        for (out, &sample) in out_row
            .chunks_exact_mut(channels)
            .zip(src.iter().take(width))
        {
            if let Some(slot) = out.get_mut(plane) {
                *slot = sample;
            }
        }
    }
}

/// The sample layout of the current image, or why it is refused.
fn layout(decoder: &mut TiffDecoder<'_>) -> Result<Layout, ReadError> {
    let refuse = |detail: String| ReadError::UnsupportedPixels {
        format: Format::Tiff,
        detail,
    };
    let photometric = decoder
        .find_tag_unsigned::<u16>(Tag::PhotometricInterpretation)
        .map_err(map_error)?;
    if photometric == Some(PHOTOMETRIC_PALETTE) {
        return Err(refuse(
            "palette (indexed-colour) images are not supported: convert to RGB".to_owned(),
        ));
    }
    let sample_format = decoder
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .map_err(map_error)?
        .and_then(|formats| formats.first().copied())
        .map_or(SampleFormat::Uint, SampleFormat::from_u16_exhaustive);
    match sample_format {
        SampleFormat::Uint => {}
        SampleFormat::IEEEFP => return Err(refuse(pixels::FLOAT_REFUSAL.to_owned())),
        other => {
            return Err(refuse(format!(
                "samples of format {other:?} are not supported: convert to 8-bit unsigned RGB"
            )));
        }
    }

    let colour_type = decoder.colortype().map_err(map_error)?;
    let bits = colour_type.bit_depth();
    if bits != 8 {
        return Err(refuse(pixels::depth_refusal(bits)));
    }
    let alpha = match decoder
        .find_tag_unsigned_vec::<u16>(Tag::ExtraSamples)
        .map_err(map_error)?
        .and_then(|extra| extra.first().copied())
        .and_then(ExtraSamples::from_u16)
    {
        Some(ExtraSamples::AssociatedAlpha) => Alpha::Premultiplied,
        Some(ExtraSamples::UnassociatedAlpha) => Alpha::Straight,
        _ => Alpha::None,
    };
    let channels = usize::from(colour_type.num_samples());
    let (colour, alpha) = match colour_type {
        ColorType::Gray(_) => (Colour::Grey, Alpha::None),
        ColorType::RGB(_) => (Colour::Rgb, Alpha::None),
        // RGB with a fourth sample counts as RGBA even without `ExtraSamples`.
        ColorType::RGBA(_) if alpha == Alpha::None => (Colour::Rgb, Alpha::Straight),
        ColorType::RGBA(_) => (Colour::Rgb, alpha),
        ColorType::YCbCr(_) => (Colour::YCbCr, Alpha::None),
        // Grey with extra samples: grey + alpha, or grey + samples to ignore.
        ColorType::Multiband { num_samples, .. } if num_samples >= 2 => (Colour::Grey, alpha),
        ColorType::CMYK(_) | ColorType::CMYKA(_) => {
            return Err(refuse(
                "CMYK images are not supported: convert to RGB".to_owned(),
            ));
        }
        other => {
            return Err(refuse(format!(
                "colour type {other:?} is not supported: convert to 8-bit RGB"
            )));
        }
    };
    Ok(Layout {
        colour,
        alpha,
        channels,
    })
}

/// The pixel size of the current image: Aperio's `MPP` first, then the resolution tags.
fn mpp(decoder: &mut TiffDecoder<'_>) -> Option<Mpp> {
    let aperio = decoder
        .get_tag_ascii_string(Tag::ImageDescription)
        .ok()
        .and_then(|description| mpp::from_aperio_description(&description))
        .map(|value| Mpp {
            value,
            source: MppSource::AperioDescription,
        });
    aperio.or_else(|| {
        resolution_mpp(decoder).map(|value| Mpp {
            value,
            source: MppSource::TiffResolution,
        })
    })
}

/// The pixel size from `XResolution`, `YResolution` and `ResolutionUnit` (inch by default).
fn resolution_mpp(decoder: &mut TiffDecoder<'_>) -> Option<f64> {
    let unit = match decoder
        .find_tag_unsigned::<u16>(Tag::ResolutionUnit)
        .ok()?
        .unwrap_or(UNIT_INCH)
    {
        UNIT_INCH => ResolutionUnit::Inch,
        UNIT_CENTIMETRE => ResolutionUnit::Centimetre,
        // UNIT_NONE (an aspect ratio, not a size) and unknown units.
        _ => return None,
    };
    let x = decoder
        .find_tag(Tag::XResolution)
        .ok()
        .flatten()
        .and_then(number)?;
    let y = decoder
        .find_tag(Tag::YResolution)
        .ok()
        .flatten()
        .and_then(number);
    mpp::from_resolution(x, y, unit)
}

/// A tag value as a number (resolutions are rationals; some writers use other types).
fn number(value: Value) -> Option<f64> {
    match value {
        Value::Rational(numerator, denominator) if denominator != 0 => {
            Some(f64::from(numerator) / f64::from(denominator))
        }
        Value::Short(v) => Some(f64::from(v)),
        Value::Unsigned(v) => Some(f64::from(v)),
        Value::Float(v) => Some(f64::from(v)),
        Value::Double(v) => Some(v),
        Value::List(values) => values.into_iter().next().and_then(number),
        _ => None,
    }
}

/// Sorts a `tiff` error into ours.
fn map_error(error: TiffError) -> ReadError {
    match error {
        TiffError::FormatError(TiffFormatError::InvalidDimensions(width, height)) => {
            ReadError::Empty { width, height }
        }
        TiffError::UnsupportedError(TiffUnsupportedError::UnsupportedCompressionMethod(method)) => {
            ReadError::UnsupportedCompression {
                compression: compression_name(method.to_u16()),
            }
        }
        TiffError::UnsupportedError(TiffUnsupportedError::UnknownCompressionMethod) => {
            ReadError::UnsupportedCompression {
                compression: "unknown".to_owned(),
            }
        }
        TiffError::UnsupportedError(e) => ReadError::UnsupportedPixels {
            format: Format::Tiff,
            detail: format!("{e}: convert to 8-bit RGB"),
        },
        TiffError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            corrupt("the data ends early")
        }
        TiffError::LimitsExceeded => corrupt("a strip or tile is larger than the whole image"),
        other => corrupt(&other.to_string()),
    }
}

/// A TIFF compression code as a person would name it, with the code.
fn compression_name(code: u16) -> String {
    let name = match code {
        2..=4 => "CCITT fax",
        6 => "old-style JPEG",
        33_003 | 33_005 | 34_712 | 34_713 => "JPEG 2000",
        50_000 => "Zstandard",
        50_001 => "WebP",
        _ => "unknown",
    };
    format!("{name}, code {code}")
}

/// A [`ReadError::Corrupt`] for a TIFF file.
fn corrupt(detail: &str) -> ReadError {
    ReadError::Corrupt {
        format: Format::Tiff,
        detail: detail.to_owned(),
    }
}

/// A `u32` as `usize` (lossless on every target this crate builds for, 32 or 64 bits).
fn usize_of(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
