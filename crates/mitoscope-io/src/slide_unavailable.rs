//! Whole-slide images in a build without the cargo feature `openslide`: the same interface as
//! the OpenSlide reader, but no slide ever opens. A file that only a slide reader reads is
//! recognised by its extension and refused with a message that says how to get a build that
//! reads it.

use std::convert::Infallible;
use std::path::Path;

use crate::ReadError;
use crate::mpp::MppSource;
pub use crate::overview::Overview;

/// Largest number of pixels one read may ask for (as with OpenSlide).
pub const MAX_READ_PIXELS: u64 = 64 << 20;

/// Extensions of the formats only a slide reader opens (Aperio, Hamamatsu, Leica, MIRAX,
/// Sakura, Ventana). A tiled TIFF is read as an image (its first level) by this build.
const SLIDE_ONLY_EXTENSIONS: [&str; 8] =
    ["svs", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide", "bif"];

/// Whether `path` is a file of a slide-only format: such a file gets [`Slide::open`]'s
/// explanation instead of an image decoder's error.
pub fn is_slide(path: &Path) -> bool {
    path.is_file()
        && path.extension().is_some_and(|ext| {
            let ext = ext.to_string_lossy().to_ascii_lowercase();
            SLIDE_ONLY_EXTENSIONS.contains(&ext.as_str())
        })
}

/// An open whole-slide image: none can exist in this build.
#[derive(Debug)]
pub struct Slide(Infallible);

impl Slide {
    /// Refuses the slide: this build has no OpenSlide.
    ///
    /// # Errors
    ///
    /// Always [`ReadError::Slide`], saying how to build with OpenSlide.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        Err(ReadError::Slide {
            path: path.to_path_buf(),
            detail: "this build of Mitoscope reads no whole-slide images. Install OpenSlide \
                     (Debian: apt-get install libopenslide-dev libclang-dev pkg-config) and \
                     build with `--features openslide`, or export the region as a TIFF or PNG"
                .into(),
        })
    }

    /// The format's name.
    pub fn vendor(&self) -> &str {
        match self.0 {}
    }

    /// Width of the full-resolution level, pixels.
    pub fn width(&self) -> u32 {
        match self.0 {}
    }

    /// Height of the full-resolution level, pixels.
    pub fn height(&self) -> u32 {
        match self.0 {}
    }

    /// Number of pyramid levels.
    pub fn levels(&self) -> u32 {
        match self.0 {}
    }

    /// Pixel size of the full-resolution level.
    pub fn mpp(&self) -> Option<f64> {
        match self.0 {}
    }

    /// Where [`Slide::mpp`] came from.
    pub fn mpp_source(&self) -> Option<MppSource> {
        match self.0 {}
    }

    /// The full-resolution pixels of a rectangle.
    ///
    /// # Errors
    ///
    /// None: no slide exists to read.
    pub fn read_rgb(
        &self,
        _x: u32,
        _y: u32,
        _width: u32,
        _height: u32,
    ) -> Result<Vec<u8>, ReadError> {
        match self.0 {}
    }

    /// A low-resolution view of the slide.
    ///
    /// # Errors
    ///
    /// None: no slide exists to read.
    pub fn overview(&self, _max_side: u32) -> Result<Overview, ReadError> {
        match self.0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slide_file_is_refused_with_the_way_to_read_it() {
        let dir =
            std::env::temp_dir().join(format!("mitoscope-no-openslide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("case.SVS");
        std::fs::write(&path, b"not read").unwrap();
        assert!(is_slide(&path));
        assert!(!is_slide(&dir.join("missing.svs")));
        assert!(!is_slide(&dir.join("field.png")));
        let message = Slide::open(&path).unwrap_err().to_string();
        assert!(message.contains("--features openslide"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
