//! Inputs built in the test code: every pixel type, pixel-size source, limit and refusal.

mod common;

use std::io::Cursor;

use common::{
    TagValue, encode_png, png_chunk, png_header, png_insert_after_ihdr, strip_tags, tiff,
};
use image::ExtendedColorType;
use mitoscope_io::{Format, Limits, LoadedImage, MppSource, ReadError, probe_bytes, read_bytes};
use tiff::encoder::colortype::{self, ColorType as TiffColour};
use tiff::encoder::{
    Compression, DeflateLevel, ImageEncoder, Rational, TiffEncoder, TiffKindStandard,
};
use tiff::tags::{Predictor, ResolutionUnit, Tag};

/// An image being written into a TIFF in memory.
type TiffImage<'a, 'b, C> = ImageEncoder<'a, &'b mut Cursor<Vec<u8>>, C, TiffKindStandard>;

/// A 4 x 3 RGB test card: every pixel different.
fn card() -> Vec<u8> {
    (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect()
}

fn read(bytes: &[u8]) -> Result<LoadedImage, ReadError> {
    read_bytes(bytes, &Limits::default())
}

/// A single-image TIFF written by the `tiff` crate, `configure` adding tags.
fn encode_tiff<C: TiffColour>(
    width: u32,
    height: u32,
    data: &[C::Inner],
    compression: Compression,
    configure: impl FnOnce(&mut TiffImage<'_, '_, C>),
) -> Vec<u8>
where
    [C::Inner]: tiff::encoder::TiffValue,
{
    let mut out = Cursor::new(Vec::new());
    let mut encoder = TiffEncoder::new(&mut out)
        .unwrap()
        .with_compression(compression);
    let mut image = encoder.new_image::<C>(width, height).unwrap();
    configure(&mut image);
    image.write_data(data).unwrap();
    out.into_inner()
}

fn rgb_tiff(configure: impl FnOnce(&mut TiffImage<'_, '_, colortype::RGB8>)) -> Vec<u8> {
    encode_tiff::<colortype::RGB8>(4, 3, &card(), Compression::Uncompressed, configure)
}

fn unsupported_detail(result: Result<LoadedImage, ReadError>) -> String {
    match result {
        Err(error @ ReadError::UnsupportedPixels { .. }) => error.to_string(),
        other => panic!("expected UnsupportedPixels, got {other:?}"),
    }
}

// --- TIFF pixel size ---------------------------------------------------------------------------

#[test]
fn tiff_resolution_in_centimetres_gives_mpp() {
    let bytes = rgb_tiff(|image| {
        image.resolution(ResolutionUnit::Centimeter, Rational { n: 40_000, d: 1 })
    });
    let image = read(&bytes).unwrap();
    assert_eq!(image.mpp, Some(0.25));
    assert_eq!(image.mpp_source, Some(MppSource::TiffResolution));
    assert_eq!(image.rgb, card());
    assert_eq!(
        (image.width, image.height, image.format),
        (4, 3, Format::Tiff)
    );
}

#[test]
fn tiff_resolution_in_inches_gives_mpp() {
    // 50 800 px/inch = 0.5 um/px, given as a fraction.
    let bytes =
        rgb_tiff(|image| image.resolution(ResolutionUnit::Inch, Rational { n: 101_600, d: 2 }));
    let info = probe_bytes(&bytes).unwrap();
    assert_eq!(info.mpp, Some(0.5));
    assert_eq!(info.mpp_source, Some(MppSource::TiffResolution));
}

#[test]
fn tiff_resolution_without_unit_or_at_desktop_dpi_is_ignored() {
    let none =
        rgb_tiff(|image| image.resolution(ResolutionUnit::None, Rational { n: 40_000, d: 1 }));
    assert_eq!(read(&none).unwrap().mpp, None);
    for dpi in [72, 300, 1200] {
        let screen =
            rgb_tiff(|image| image.resolution(ResolutionUnit::Inch, Rational { n: dpi, d: 1 }));
        let image = read(&screen).unwrap();
        assert_eq!((image.mpp, image.mpp_source), (None, None), "{dpi} dpi");
    }
}

#[test]
fn aperio_description_wins_over_resolution_tags() {
    let bytes = rgb_tiff(|image| {
        image.resolution(ResolutionUnit::Centimeter, Rational { n: 20_000, d: 1 });
        image
            .encoder()
            .write_tag(
                Tag::ImageDescription,
                "Aperio Image Library v10.0.51\r\n4x3 JPEG/RGB Q=70|AppMag = 40|MPP = 0.2520",
            )
            .unwrap();
    });
    let image = read(&bytes).unwrap();
    assert_eq!(image.mpp, Some(0.252));
    assert_eq!(image.mpp_source, Some(MppSource::AperioDescription));
}

// --- TIFF structure ----------------------------------------------------------------------------

#[test]
fn pyramid_gives_its_first_level() {
    let mut out = Cursor::new(Vec::new());
    let mut encoder = TiffEncoder::new(&mut out).unwrap();
    let level0: Vec<u8> = [200, 30, 40].repeat(8 * 6);
    let level1: Vec<u8> = [20, 30, 240].repeat(4 * 3);
    encoder
        .write_image::<colortype::RGB8>(8, 6, &level0)
        .unwrap();
    encoder
        .write_image::<colortype::RGB8>(4, 3, &level1)
        .unwrap();
    let bytes = out.into_inner();

    let image = read(&bytes).unwrap();
    assert_eq!((image.width, image.height), (8, 6));
    assert_eq!(image.rgb, level0);
    assert_eq!(probe_bytes(&bytes).unwrap().width, 8);
}

#[test]
fn compressed_tiffs_decode() {
    let data: Vec<u8> = (0..64 * 40 * 3).map(|i| ((i / 3) % 251) as u8).collect();
    for compression in [
        Compression::Lzw,
        Compression::Deflate(DeflateLevel::Balanced),
        Compression::Packbits,
    ] {
        let mut out = Cursor::new(Vec::new());
        let mut encoder = TiffEncoder::new(&mut out)
            .unwrap()
            .with_compression(compression)
            .with_predictor(Predictor::Horizontal);
        encoder
            .write_image::<colortype::RGB8>(64, 40, &data)
            .unwrap();
        let image = read(&out.into_inner()).unwrap();
        assert_eq!(image.rgb, data);
    }
}

#[test]
fn many_strips_are_stitched_in_order() {
    let data: Vec<u8> = (0..5 * 7 * 3).map(|i| i as u8).collect();
    let bytes = encode_tiff::<colortype::RGB8>(5, 7, &data, Compression::Uncompressed, |image| {
        image.rows_per_strip(2).unwrap();
    });
    assert_eq!(read(&bytes).unwrap().rgb, data);
}

/// A tiled, uncompressed 20 x 18 TIFF in 16 x 16 tiles (the right and bottom ones padded),
/// `planes` planes of one sample each when `planar`, else one plane of `planes` samples.
/// Sample `s` of pixel (x, y) is `value(x, y) + 50 * s`.
fn tiled_tiff(planes: u16, planar: bool, value: fn(u32, u32) -> u8) -> Vec<u8> {
    let (width, height, tile) = (20u32, 18u32, 16u32);
    let samples_in_tile = if planar { 1 } else { u32::from(planes) };
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for plane in 0..if planar { planes } else { 1 } {
        for ty in 0..2 {
            for tx in 0..2 {
                offsets.push(data.len() as u32);
                for y in 0..tile {
                    for x in 0..tile {
                        for s in 0..samples_in_tile {
                            let (ix, iy) = (tx * tile + x, ty * tile + y);
                            let sample = u32::from(plane) + s;
                            data.push(if ix < width && iy < height {
                                value(ix, iy) + 50 * sample as u8
                            } else {
                                255
                            });
                        }
                    }
                }
            }
        }
    }
    let count = offsets.len();
    let mut tags = vec![
        (256, TagValue::Long(vec![width])),
        (257, TagValue::Long(vec![height])),
        (258, TagValue::Short(vec![8; usize::from(planes)])),
        (259, TagValue::Short(vec![1])),
        (262, TagValue::Short(vec![if planes == 1 { 1 } else { 2 }])),
        (277, TagValue::Short(vec![planes])),
        (322, TagValue::Long(vec![tile])),
        (323, TagValue::Long(vec![tile])),
        (324, TagValue::Long(offsets)),
        (
            325,
            TagValue::Long(vec![tile * tile * samples_in_tile; count]),
        ),
    ];
    if planar {
        tags.push((284, TagValue::Short(vec![2])));
    }
    tiff(tags, &data)
}

#[test]
fn tiles_with_partial_edge_tiles_are_stitched() {
    let value = |x: u32, y: u32| (x * 2 + y) as u8;
    for (planes, planar) in [(1, false), (3, false), (3, true)] {
        let image = read(&tiled_tiff(planes, planar, value)).unwrap();
        assert_eq!((image.width, image.height), (20, 18));
        for (x, y) in [(0, 0), (19, 0), (0, 17), (19, 17), (15, 16), (16, 15)] {
            let v = value(x, y);
            let expected = if planes == 1 {
                [v; 3]
            } else {
                [v, v + 50, v + 100]
            };
            assert_eq!(
                image.pixel(x, y),
                Some(expected),
                "{planes} planes, planar {planar}, pixel ({x}, {y})"
            );
        }
    }
}

#[test]
fn planar_rgb_is_interleaved() {
    // 3 x 2 RGB stored as three planes, one strip each.
    let (r, g, b) = (
        [1u8, 2, 3, 4, 5, 6],
        [11u8, 12, 13, 14, 15, 16],
        [21u8, 22, 23, 24, 25, 26],
    );
    let data = [r, g, b].concat();
    let mut tags = strip_tags(3, 2, &[8, 8, 8], 2);
    tags.retain(|(tag, _)| *tag != 273 && *tag != 279);
    tags.push((273, TagValue::Long(vec![0, 6, 12])));
    tags.push((279, TagValue::Long(vec![6, 6, 6])));
    tags.push((284, TagValue::Short(vec![2])));
    let image = read(&tiff(tags, &data)).unwrap();
    assert_eq!(image.pixel(0, 0), Some([1, 11, 21]));
    assert_eq!(image.pixel(2, 1), Some([6, 16, 26]));
}

// --- Pixel types -------------------------------------------------------------------------------

#[test]
fn grey_is_replicated() {
    let png = encode_png(&[0, 100, 200, 255], 2, 2, ExtendedColorType::L8);
    assert_eq!(
        read(&png).unwrap().rgb,
        [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]
    );
    let tiff = encode_tiff::<colortype::Gray8>(
        2,
        2,
        &[0, 100, 200, 255],
        Compression::Uncompressed,
        |_| {},
    );
    assert_eq!(
        read(&tiff).unwrap().rgb,
        [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]
    );
}

#[test]
fn rgba_is_composited_over_white() {
    // Opaque red, transparent red, half-transparent black.
    let rgba = [255, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0, 128];
    let expected = [255, 0, 0, 255, 255, 255, 127, 127, 127];
    let png = encode_png(&rgba, 3, 1, ExtendedColorType::Rgba8);
    assert_eq!(read(&png).unwrap().rgb, expected);
    let tiff = encode_tiff::<colortype::RGBA8>(3, 1, &rgba, Compression::Uncompressed, |_| {});
    assert_eq!(read(&tiff).unwrap().rgb, expected);
}

#[test]
fn grey_alpha_is_composited_over_white() {
    let png = encode_png(&[0, 255, 0, 0], 2, 1, ExtendedColorType::La8);
    assert_eq!(read(&png).unwrap().rgb, [0, 0, 0, 255, 255, 255]);
    // The same as a TIFF: grey + unassociated alpha.
    let mut tags = strip_tags(2, 1, &[8, 8], 1);
    tags.push((338, TagValue::Short(vec![2])));
    assert_eq!(
        read(&tiff(tags, &[0, 255, 0, 0])).unwrap().rgb,
        [0, 0, 0, 255, 255, 255]
    );
}

#[test]
fn premultiplied_tiff_alpha_is_composited_over_white() {
    let mut tags = strip_tags(1, 1, &[8, 8, 8, 8], 2);
    tags.push((338, TagValue::Short(vec![1])));
    // Half-transparent red, premultiplied: (128, 0, 0, 128).
    assert_eq!(
        read(&tiff(tags, &[128, 0, 0, 128])).unwrap().rgb,
        [255, 127, 127]
    );
}

#[test]
fn ycbcr_tiff_is_converted() {
    let mut tags = strip_tags(2, 1, &[8, 8, 8], 6);
    tags.push((530, TagValue::Short(vec![1, 1])));
    // White and mid grey.
    let image = read(&tiff(tags, &[255, 128, 128, 128, 128, 128])).unwrap();
    assert_eq!(image.rgb, [255, 255, 255, 128, 128, 128]);
}

#[test]
fn palette_png_is_expanded() {
    // A 2 x 1 palette PNG by hand: red, blue; the image data as a stored (uncompressed) block.
    let mut png = png_header(2, 1);
    png[24 + 1] = 3; // colour type 3 (palette), patched into IHDR...
    let ihdr_data = png[16..29].to_vec();
    png.truncate(8);
    png.extend(png_chunk(b"IHDR", &ihdr_data));
    png.extend(png_chunk(b"PLTE", &[255, 0, 0, 0, 0, 255]));
    let raw = [0u8, 0, 1]; // filter 0, indices 0 and 1
    let mut zlib = vec![0x78, 0x01, 0x01, 3, 0, 0xfc, 0xff];
    zlib.extend(raw);
    let (mut a, mut b) = (1u32, 0u32);
    for byte in raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend(((b << 16) | a).to_be_bytes());
    png.extend(png_chunk(b"IDAT", &zlib));
    png.extend(png_chunk(b"IEND", &[]));
    assert_eq!(read(&png).unwrap().rgb, [255, 0, 0, 0, 0, 255]);
}

#[test]
fn sixteen_bit_images_are_refused() {
    let png = encode_png(&[0, 1, 2, 3, 4, 5, 6, 7], 2, 2, ExtendedColorType::L16);
    let message = unsupported_detail(read(&png));
    assert!(
        message.contains("16-bit images are not supported: convert to 8 bits per channel"),
        "{message}"
    );
    let tiff = encode_tiff::<colortype::Gray16>(
        2,
        2,
        &[0, 1000, 2000, 65_535],
        Compression::Uncompressed,
        |_| {},
    );
    let message = unsupported_detail(read(&tiff));
    assert!(message.contains("16-bit"), "{message}");
}

#[test]
fn cmyk_and_float_tiffs_are_refused() {
    let cmyk = encode_tiff::<colortype::CMYK8>(
        2,
        1,
        &[0, 0, 0, 0, 255, 0, 0, 0],
        Compression::Uncompressed,
        |_| {},
    );
    assert!(unsupported_detail(read(&cmyk)).contains("CMYK"));
    let float =
        encode_tiff::<colortype::Gray32Float>(2, 1, &[0.0, 1.0], Compression::Uncompressed, |_| {});
    assert!(unsupported_detail(read(&float)).contains("floating-point"));
}

#[test]
fn palette_tiff_is_refused() {
    let mut tags = strip_tags(2, 1, &[8], 3);
    tags.push((320, TagValue::Short(vec![0; 768])));
    assert!(unsupported_detail(read(&tiff(tags, &[0, 1]))).contains("palette"));
}

#[test]
fn unsupported_tiff_compressions_are_named() {
    for (code, name) in [
        (33_003u16, "JPEG 2000, code 33003"),
        (6, "old-style JPEG, code 6"),
    ] {
        let mut tags = strip_tags(2, 1, &[8, 8, 8], 2);
        tags.retain(|(tag, _)| *tag != 259);
        tags.push((259, TagValue::Short(vec![code])));
        match read(&tiff(tags, &[0; 6])) {
            Err(error @ ReadError::UnsupportedCompression { .. }) => {
                eprintln!("{error}");
                assert!(error.to_string().contains(name), "{error}");
            }
            other => panic!("compression {code}: expected UnsupportedCompression, got {other:?}"),
        }
    }
}

// --- PNG pixel size ----------------------------------------------------------------------------

#[test]
fn png_phys_in_metres_gives_mpp() {
    let png = encode_png(&[0; 12], 2, 2, ExtendedColorType::Rgb8);
    // 4 000 000 px/m = 0.25 um/px.
    let mut phys = 4_000_000u32.to_be_bytes().to_vec();
    phys.extend(4_000_000u32.to_be_bytes());
    phys.push(1);
    let image = read(&png_insert_after_ihdr(&png, b"pHYs", &phys)).unwrap();
    assert_eq!(image.mpp, Some(0.25));
    assert_eq!(image.mpp_source, Some(MppSource::PngPhys));
}

// --- Limits and refusals -----------------------------------------------------------------------

#[test]
fn a_huge_png_header_is_refused_before_allocating() {
    let png = png_header(100_000, 100_000);
    match read(&png) {
        Err(ReadError::TooLarge {
            width: 100_000,
            height: 100_000,
            max_pixels: 150_000_000,
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let info = probe_bytes(&png).unwrap();
    assert_eq!(
        (info.width, info.height, info.format),
        (100_000, 100_000, Format::Png)
    );
}

#[test]
fn a_huge_tiff_header_is_refused_before_allocating() {
    let tags = strip_tags(100_000, 100_000, &[8, 8, 8], 2);
    let bytes = tiff(tags, &[0; 16]);
    match read(&bytes) {
        Err(ReadError::TooLarge {
            width: 100_000,
            height: 100_000,
            ..
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let info = probe_bytes(&bytes).unwrap();
    assert_eq!(
        (info.width, info.height, info.format),
        (100_000, 100_000, Format::Tiff)
    );
}

#[test]
fn a_huge_jpeg_header_is_refused_before_allocating() {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode(&[128; 16 * 16 * 3], 16, 16, ExtendedColorType::Rgb8)
        .unwrap();
    // Patch the frame header (SOF0: ff c0, length, precision, height, width) to 65 000^2.
    let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xfd, 0xe8, 0xfd, 0xe8]);
    assert!(matches!(
        read(&jpeg),
        Err(ReadError::TooLarge {
            width: 65_000,
            height: 65_000,
            ..
        })
    ));
}

#[test]
fn the_pixel_limit_is_inclusive() {
    let bytes = rgb_tiff(|_| {});
    let limits = |max_pixels| Limits {
        max_pixels,
        ..Limits::default()
    };
    assert!(read_bytes(&bytes, &limits(12)).is_ok());
    assert!(matches!(
        read_bytes(&bytes, &limits(11)),
        Err(ReadError::TooLarge {
            width: 4,
            height: 3,
            max_pixels: 11
        })
    ));
}

#[test]
fn data_over_the_byte_limit_is_refused() {
    let png = encode_png(&[0; 12], 2, 2, ExtendedColorType::Rgb8);
    let limits = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        read_bytes(&png, &limits),
        Err(ReadError::FileTooLarge {
            path: None,
            max_bytes: 10,
            ..
        })
    ));
}

#[test]
fn zero_sized_images_are_empty() {
    assert!(matches!(
        read(&png_header(0, 10)),
        Err(ReadError::Empty {
            width: 0,
            height: 10
        })
    ));
    let bytes = tiff(strip_tags(5, 0, &[8], 1), &[]);
    assert!(matches!(
        read(&bytes),
        Err(ReadError::Empty {
            width: 5,
            height: 0
        })
    ));
}

#[test]
fn unknown_data_is_refused_with_the_accepted_formats() {
    for bytes in [
        common::pseudo_random(7, 1000),
        b"GIF89a\x01\0\x01\0".to_vec(),
        Vec::new(),
    ] {
        match read(&bytes) {
            Err(error @ ReadError::UnknownFormat { .. }) => {
                let message = error.to_string();
                assert!(message.contains("PNG, JPEG and TIFF"), "{message}");
            }
            other => panic!("expected UnknownFormat, got {other:?}"),
        }
    }
    assert!(matches!(
        read(&[]),
        Err(ReadError::UnknownFormat { found: Some(_) })
    ));
}

#[test]
fn generated_files_cut_short_are_corrupt() {
    let data: Vec<u8> = (0..64 * 64 * 3).map(|i| (i % 253) as u8).collect();
    let png = encode_png(&data, 64, 64, ExtendedColorType::Rgb8);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode(&data, 64, 64, ExtendedColorType::Rgb8)
        .unwrap();
    let mut lzw = Cursor::new(Vec::new());
    TiffEncoder::new(&mut lzw)
        .unwrap()
        .with_compression(Compression::Lzw)
        .write_image::<colortype::RGB8>(64, 64, &data)
        .unwrap();
    let tiff_bytes = lzw.into_inner();
    for (name, bytes) in [("PNG", png), ("JPEG", jpeg), ("TIFF", tiff_bytes)] {
        // (A PNG cut inside its final IEND chunk still holds every pixel and is accepted.)
        for cut in [bytes.len() / 2, bytes.len() * 9 / 10] {
            match read(&bytes[..cut]) {
                Err(ReadError::Corrupt { .. }) => {}
                other => panic!(
                    "{name} cut at {cut} of {}: expected Corrupt, got {other:?}",
                    bytes.len()
                ),
            }
        }
    }
}

#[test]
fn loaded_image_debug_leaves_the_pixels_out() {
    let image = read(&rgb_tiff(|_| {})).unwrap();
    let debug = format!("{image:?}");
    assert!(debug.contains("[36 bytes]"), "{debug}");
    assert!(!debug.contains("7, 14"), "{debug}");
}
