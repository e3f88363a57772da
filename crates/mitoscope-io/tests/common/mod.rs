//! Helpers shared by the integration tests: the shared data folder and inputs built in code.

#![allow(dead_code)]

use std::path::PathBuf;

/// The data folder beside the repository (`../shared/data` from the repository root).
pub const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

/// Path of a file in the shared data folder, or `None` (with a note) when it is missing.
pub fn shared_path(relative: &str) -> Option<PathBuf> {
    let path = PathBuf::from(SHARED_DATA).join(relative);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipped: {relative} not found under ../shared/data");
        None
    }
}

/// Bytes of a file in the shared data folder, or `None` (with a note) when it is missing.
pub fn shared_bytes(relative: &str) -> Option<Vec<u8>> {
    std::fs::read(shared_path(relative)?).ok()
}

/// The first file with extension `ext` in a shared data folder (searched one level down too).
pub fn first_in(folder: &str, ext: &str) -> Option<String> {
    let root = PathBuf::from(SHARED_DATA).join(folder);
    let mut dirs = vec![root.clone()];
    let mut found = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && dir == root {
                dirs.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case(ext))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    let first = found.first().and_then(|p| p.strip_prefix(SHARED_DATA).ok());
    if first.is_none() {
        eprintln!("skipped: no .{ext} file under ../shared/data/{folder}");
    }
    first.map(|p| p.to_string_lossy().trim_start_matches('/').to_owned())
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit: slow, but only for a few header bytes.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk with its length and a correct CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    chunk.extend_from_slice(&crc_input);
    chunk.extend(crc32(&crc_input).to_be_bytes());
    chunk
}

/// A PNG signature and an `IHDR` chunk (8-bit RGB) claiming `width x height`, nothing more.
pub fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png
}

/// `png` with a chunk inserted right after `IHDR` (which ends at byte 33).
pub fn png_insert_after_ihdr(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend(png_chunk(kind, data));
    out.extend_from_slice(&png[33..]);
    out
}

/// Encodes pixels as PNG with the `image` crate.
pub fn encode_png(
    pixels: &[u8],
    width: u32,
    height: u32,
    colour: image::ExtendedColorType,
) -> Vec<u8> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width, height, colour)
        .unwrap();
    png
}

/// A TIFF tag value in a hand-built file.
pub enum TagValue {
    /// SHORT values.
    Short(Vec<u16>),
    /// LONG values.
    Long(Vec<u32>),
    /// One RATIONAL.
    Rational(u32, u32),
    /// An ASCII string (a NUL is appended).
    Ascii(String),
}

/// A little-endian, uncompressed TIFF: `data` at offset 8, then one IFD with `tags` (sorted by
/// tag here). A `StripOffsets` or `TileOffsets` value of `n` means `8 + n`.
pub fn tiff(tags: Vec<(u16, TagValue)>, data: &[u8]) -> Vec<u8> {
    let mut tags = tags;
    tags.sort_by_key(|(tag, _)| *tag);
    let ifd_offset = 8 + data.len() as u32 + (data.len() as u32 & 1);
    let mut out = b"II*\0".to_vec();
    out.extend(ifd_offset.to_le_bytes());
    out.extend_from_slice(data);
    if data.len() & 1 == 1 {
        out.push(0);
    }
    let count = tags.len() as u32;
    // Values longer than 4 bytes go after the IFD.
    let mut extra_offset = ifd_offset + 2 + 12 * count + 4;
    let mut entries = Vec::new();
    let mut extra = Vec::new();
    for (tag, value) in tags {
        let (kind, n, mut bytes): (u16, u32, Vec<u8>) = match value {
            TagValue::Short(v) => (
                3,
                v.len() as u32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            TagValue::Long(v) => {
                let v: Vec<u32> = if tag == 273 || tag == 324 {
                    v.iter().map(|x| x + 8).collect()
                } else {
                    v
                };
                (
                    4,
                    v.len() as u32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            }
            TagValue::Rational(n, d) => (5, 1, [n.to_le_bytes(), d.to_le_bytes()].concat()),
            TagValue::Ascii(s) => {
                let mut b = s.into_bytes();
                b.push(0);
                (2, b.len() as u32, b)
            }
        };
        entries.extend(tag.to_le_bytes());
        entries.extend(kind.to_le_bytes());
        entries.extend(n.to_le_bytes());
        if bytes.len() <= 4 {
            bytes.resize(4, 0);
            entries.extend(bytes);
        } else {
            entries.extend(extra_offset.to_le_bytes());
            extra_offset += bytes.len() as u32;
            extra.extend(bytes);
        }
    }
    out.extend((count as u16).to_le_bytes());
    out.extend(entries);
    out.extend(0u32.to_le_bytes());
    out.extend(extra);
    out
}

/// The usual tags of an uncompressed, single-strip, chunky image.
pub fn strip_tags(width: u32, height: u32, bits: &[u16], photometric: u16) -> Vec<(u16, TagValue)> {
    let samples = bits.len() as u32;
    let bytes = u64::from(width) * u64::from(height) * u64::from(samples) * u64::from(bits[0]) / 8;
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    vec![
        (256, TagValue::Long(vec![width])),
        (257, TagValue::Long(vec![height])),
        (258, TagValue::Short(bits.to_vec())),
        (259, TagValue::Short(vec![1])),
        (262, TagValue::Short(vec![photometric])),
        (273, TagValue::Long(vec![0])),
        (277, TagValue::Short(vec![samples as u16])),
        (278, TagValue::Long(vec![height])),
        (279, TagValue::Long(vec![bytes])),
    ]
}

/// Deterministic pseudo-random bytes (a 64-bit LCG), so that failures can be replayed.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}
