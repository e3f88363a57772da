//! Tiling of an image into overlapping square tiles, and which tile reports an object.
//!
//! Tile origins follow `start_points` in OMG-Net's `Utils/SAM_utils.py`: every `tile - overlap`
//! pixels from 0, and a last tile flush with the far edge. Unlike the reference inference
//! (`get_nonbackground_tiles` in `Utils/TileOps.py`, a grid without overlap that drops the
//! partial tiles at the right and bottom edges) every pixel of the image lies in some tile.
//!
//! An object seen by two overlapping tiles must be reported once. Each tile *owns* a rectangle:
//! between two neighbouring tiles the cut runs through the middle of their overlap, and the
//! outer tiles own up to the image edges, so the owned rectangles partition the image. A tile
//! reports an object only if it owns the centre of the object's box ([`owns`]).

use serde::{Deserialize, Serialize};

use crate::mask::BBox;
use crate::settings::ProposalSettings;
use crate::tissue::TissueMask;
use crate::{Error, Result};

/// Most tiles an image may have (a square image of about 1.8 million pixels a side at the
/// default settings); more is refused rather than allocated.
pub const MAX_TILES: u64 = 1 << 22;

/// One tile of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    /// Column of the tile in the grid, from 0 at the left.
    pub column: u32,
    /// Row of the tile in the grid, from 0 at the top.
    pub row: u32,
    /// Left edge in image pixels.
    pub x: u32,
    /// Top edge in image pixels.
    pub y: u32,
    /// Columns of the tile inside the image: the tile size, or the image width if smaller.
    pub width: u32,
    /// Rows of the tile inside the image: the tile size, or the image height if smaller.
    pub height: u32,
    /// The owned rectangle `[x0, x1) x [y0, y1)` in image pixels (see [`owns`]).
    pub owned: [u32; 4],
}

impl Tile {
    /// A box found on this tile, in tile pixels, moved to image pixels.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] if a coordinate overflows `u32`.
    pub fn to_image_box(&self, bbox: &BBox) -> Result<BBox> {
        bbox.translated(self.x, self.y)
    }
}

/// The centre of a box, stored doubled so that half-pixel centres stay exact integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoxCentre {
    /// Twice the centre's x: `x0 + x1` of the box.
    pub twice_x: u64,
    /// Twice the centre's y: `y0 + y1` of the box.
    pub twice_y: u64,
}

impl BoxCentre {
    /// The centre of `bbox` (in image pixels): `((x0 + x1) / 2, (y0 + y1) / 2)`.
    pub fn of(bbox: &BBox) -> Self {
        Self {
            twice_x: u64::from(bbox.x0()) + u64::from(bbox.x1()),
            twice_y: u64::from(bbox.y0()) + u64::from(bbox.y1()),
        }
    }

    /// The centre of the pixel `(x, y)`, i.e. of a one-pixel box there.
    pub fn of_pixel(x: u32, y: u32) -> Self {
        Self {
            twice_x: 2 * u64::from(x),
            twice_y: 2 * u64::from(y),
        }
    }
}

/// Whether `tile` reports an object whose box (in image pixels) has centre `centre`.
///
/// The tile owns the half-open rectangle `tile.owned`; a centre on a cut belongs to the tile
/// after it (right or below), and a half-pixel centre just before a cut to the tile before it.
/// The owned rectangles of a [`TileGrid`] partition the image, so every object whose centre lies
/// in the image has exactly one owner. An owned centre lies at least `overlap / 2` pixels from
/// every tile edge that is not an image edge, so an object up to `overlap` pixels wide is whole
/// on the tile that reports it. Objects centred in a tile's padding (outside the image) have
/// no owner and are dropped.
///
/// Ownership is decided on the full grid, before tiles without tissue are left out: an object
/// owned by a skipped tile is not reported by its neighbour either.
pub fn owns(tile: &Tile, centre: BoxCentre) -> bool {
    let [x0, y0, x1, y1] = tile.owned.map(|v| 2 * u64::from(v));
    (x0..x1).contains(&centre.twice_x) && (y0..y1).contains(&centre.twice_y)
}

/// Tile origins along one axis of `length` pixels, as `start_points` with the overlap in pixels.
///
/// One tile at 0 when the axis is no longer than a tile (the caller pads it to the tile
/// size); otherwise origins every `tile - overlap` pixels while a tile still ends before the
/// edge, then one flush with the edge at `length - tile`. The last two tiles may overlap by more
/// than `overlap`.
///
/// # Errors
///
/// [`Error::InvalidSetting`] for a zero tile or an overlap not smaller than the tile.
pub fn start_points(length: u32, tile: u32, overlap: u32) -> Result<Vec<u32>> {
    if tile == 0 {
        return Err(Error::InvalidSetting {
            name: "tile_size",
            reason: "must be at least 1",
        });
    }
    if overlap >= tile {
        return Err(Error::InvalidSetting {
            name: "tile_overlap",
            reason: "must be smaller than tile_size",
        });
    }
    if length <= tile {
        return Ok(vec![0]);
    }
    let stride = tile - overlap;
    let last = length - tile;
    let count = u64::from(last).div_ceil(u64::from(stride)) + 1;
    if count > MAX_TILES {
        return Err(Error::TooLarge("too many tiles"));
    }
    // Every origin but the last is below `last`, so it fits a u32.
    let mut starts: Vec<u32> = (0..)
        .map(|i| i * stride)
        .take_while(|&s| s < last)
        .collect();
    starts.push(last);
    Ok(starts)
}

/// The owned intervals along one axis: `bounds[i]..bounds[i + 1]` for tile `i`.
///
/// The cut between tiles at `a` and `b` is the middle of their overlap `[b, a + tile)`, rounded
/// down. Origins increase strictly, so every interval is non-empty.
fn owned_bounds(starts: &[u32], tile: u32, length: u32) -> Vec<u32> {
    let mut bounds = Vec::with_capacity(starts.len() + 1);
    bounds.push(0);
    for pair in starts.windows(2) {
        let cut = (u64::from(pair[0]) + u64::from(tile) + u64::from(pair[1])) / 2;
        // The cut lies in the overlap, inside the image.
        bounds.push(cut as u32);
    }
    bounds.push(length);
    bounds
}

/// The tiles of a `width x height` image, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileGrid {
    width: u32,
    height: u32,
    tile_size: u32,
    x_bounds: Vec<u32>,
    y_bounds: Vec<u32>,
    tiles: Vec<Tile>,
}

impl TileGrid {
    /// Tiles a `width x height` image into `tile_size` tiles overlapping by `overlap` pixels.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyGrid`] for an empty image, [`Error::InvalidSetting`] as [`start_points`],
    /// [`Error::TooLarge`] beyond [`MAX_TILES`] tiles.
    pub fn new(width: u32, height: u32, tile_size: u32, overlap: u32) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::EmptyGrid { width, height });
        }
        let xs = start_points(width, tile_size, overlap)?;
        let ys = start_points(height, tile_size, overlap)?;
        if xs.len() as u64 * ys.len() as u64 > MAX_TILES {
            return Err(Error::TooLarge("too many tiles"));
        }
        let x_bounds = owned_bounds(&xs, tile_size, width);
        let y_bounds = owned_bounds(&ys, tile_size, height);

        let mut tiles = Vec::with_capacity(xs.len() * ys.len());
        for (row, &y) in ys.iter().enumerate() {
            for (column, &x) in xs.iter().enumerate() {
                tiles.push(Tile {
                    // Fewer than MAX_TILES tiles per axis.
                    column: column as u32,
                    row: row as u32,
                    x,
                    y,
                    width: tile_size.min(width),
                    height: tile_size.min(height),
                    owned: [
                        x_bounds[column],
                        y_bounds[row],
                        x_bounds[column + 1],
                        y_bounds[row + 1],
                    ],
                });
            }
        }
        Ok(Self {
            width,
            height,
            tile_size,
            x_bounds,
            y_bounds,
            tiles,
        })
    }

    /// Tiles an image with the tile size and overlap of `settings`.
    ///
    /// # Errors
    ///
    /// As [`TileGrid::new`].
    pub fn from_settings(width: u32, height: u32, settings: &ProposalSettings) -> Result<Self> {
        Self::new(width, height, settings.tile_size, settings.tile_overlap)
    }

    /// Image width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Image height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Side of a tile as the model sees it (after padding), in pixels.
    pub fn tile_size(&self) -> u32 {
        self.tile_size
    }

    /// Number of tile columns.
    pub fn columns(&self) -> usize {
        self.x_bounds.len() - 1
    }

    /// Number of tile rows.
    pub fn rows(&self) -> usize {
        self.y_bounds.len() - 1
    }

    /// All tiles, row by row, left to right.
    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// The tile that owns `centre`, or `None` for a centre outside the image.
    pub fn owner_of(&self, centre: BoxCentre) -> Option<&Tile> {
        let index = |bounds: &[u32], twice: u64| {
            let inner = &bounds[1..bounds.len() - 1];
            let end = 2 * u64::from(bounds[bounds.len() - 1]);
            (twice < end).then(|| inner.partition_point(|&b| 2 * u64::from(b) <= twice))
        };
        let column = index(&self.x_bounds, centre.twice_x)?;
        let row = index(&self.y_bounds, centre.twice_y)?;
        self.tiles.get(row * self.columns() + column)
    }

    /// The tiles with at least `min_fraction` tissue under their in-image part.
    ///
    /// NOTE: the reference keeps a tile when its fraction is `>= 1 - 0.7`, which in floating
    /// point is 0.30000000000000004; with `min_fraction` 0.3 a tile of exactly 30 % tissue is
    /// kept here and dropped there.
    pub fn tissue_tiles(&self, tissue: &TissueMask, min_fraction: f64) -> Vec<Tile> {
        self.tiles
            .iter()
            .filter(|t| tissue.fraction(t.x, t.y, t.width, t.height) >= min_fraction)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Grid;
    use proptest::prelude::*;

    #[test]
    fn start_points_follow_the_reference() {
        // Image no larger than a tile: one tile.
        assert_eq!(start_points(500, 1024, 128).unwrap(), vec![0]);
        assert_eq!(start_points(1024, 1024, 128).unwrap(), vec![0]);
        // Exact multiple without overlap: tiles side by side.
        assert_eq!(start_points(2048, 1024, 0).unwrap(), vec![0, 1024]);
        // With overlap the last tile is flush with the edge.
        assert_eq!(start_points(2048, 1024, 128).unwrap(), vec![0, 896, 1024]);
        assert_eq!(start_points(1025, 1024, 128).unwrap(), vec![0, 1]);
        assert_eq!(start_points(2816, 1024, 128).unwrap(), vec![0, 896, 1792]);
        // SAM_utils.start_points(1000, 500, 0.2) gives [0, 400, 500].
        assert_eq!(start_points(1000, 500, 100).unwrap(), vec![0, 400, 500]);
        assert!(start_points(10, 0, 0).is_err());
        assert!(start_points(10, 4, 4).is_err());
        assert!(matches!(
            start_points(u32::MAX, 2, 1),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn small_image_is_one_padded_tile() {
        let grid = TileGrid::new(300, 200, 1024, 128).unwrap();
        assert_eq!(grid.tiles().len(), 1);
        let t = grid.tiles()[0];
        assert_eq!((t.x, t.y, t.width, t.height), (0, 0, 300, 200));
        assert_eq!(t.owned, [0, 0, 300, 200]);
        assert_eq!(grid.tile_size(), 1024);
        // An object in the padding has no owner.
        assert!(!owns(&t, BoxCentre::of_pixel(300, 10)));
        assert_eq!(grid.owner_of(BoxCentre::of_pixel(300, 10)), None);
    }

    #[test]
    fn cuts_run_through_the_middle_of_the_overlap() {
        let grid = TileGrid::new(2048, 1024, 1024, 128).unwrap();
        let xs: Vec<_> = grid
            .tiles()
            .iter()
            .map(|t| (t.x, t.owned[0], t.owned[2]))
            .collect();
        // Overlaps [896, 1024) and [1024, 1920): cuts at 960 and 1472.
        assert_eq!(xs, vec![(0, 0, 960), (896, 960, 1472), (1024, 1472, 2048)]);
        let (a, b) = (grid.tiles()[0], grid.tiles()[1]);
        // Box (950, 10)-(969, 20): centre 959.5, left of the cut.
        let left = BoxCentre::of(&BBox::new(950, 10, 969, 20).unwrap());
        assert!(owns(&a, left) && !owns(&b, left));
        // Box (950, 10)-(970, 20): centre 960, on the cut, owned by the right tile.
        let on_cut = BoxCentre::of(&BBox::new(950, 10, 970, 20).unwrap());
        assert!(!owns(&a, on_cut) && owns(&b, on_cut));
        assert_eq!(grid.owner_of(on_cut), Some(&b));
        // A box on tile b, in tile pixels, moved to the image.
        let on_tile = BBox::new(10, 10, 20, 20).unwrap();
        assert_eq!(
            b.to_image_box(&on_tile).unwrap(),
            BBox::new(906, 10, 916, 20).unwrap()
        );
    }

    #[test]
    fn tissue_selects_tiles() {
        // A 2048 x 1024 image seen at 1/64: a 32 x 16 view with tissue in its left half only.
        let mut grey = Grid::filled(32, 16, 250.0).unwrap();
        for y in 4..12 {
            for x in 0..16 {
                grey.data_mut()[y * 32 + x] = 100.0;
            }
        }
        let settings = ProposalSettings {
            tissue_border_px: 2,
            ..Default::default()
        };
        let tissue = TissueMask::detect(&grey, &settings, 64.0).unwrap();
        let grid = TileGrid::from_settings(2048, 1024, &settings).unwrap();
        let kept = grid.tissue_tiles(&tissue, settings.min_tissue_fraction);
        // Tile 0 (view columns 0..16) is 50 % tissue, tile 1 (14..30) 1/8, tile 2 (16..32) none.
        assert_eq!(kept.iter().map(|t| t.column).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn refuses_bad_grids() {
        assert!(matches!(
            TileGrid::new(0, 10, 1024, 0),
            Err(Error::EmptyGrid { .. })
        ));
        assert!(TileGrid::new(10, 10, 0, 0).is_err());
        assert!(TileGrid::new(10, 10, 8, 8).is_err());
        assert!(matches!(
            TileGrid::new(u32::MAX, u32::MAX, 1024, 0),
            Err(Error::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn tiles_cover_the_image(
            width in 1u32..3000, height in 1u32..3000, tile in 4u32..1100, overlap_pct in 0u32..100,
        ) {
            let overlap = tile * overlap_pct / 100;
            // Tiny strides on large images exceed MAX_TILES: refused, not tested here.
            let grid = match TileGrid::new(width, height, tile, overlap) {
                Err(Error::TooLarge(_)) => return Ok(()),
                other => other.unwrap(),
            };
            prop_assert_eq!(grid.tiles().len(), grid.columns() * grid.rows());
            let tiles = grid.tiles();
            let xs: Vec<_> = tiles.iter().take(grid.columns()).map(|t| (t.x, t.width)).collect();
            let ys: Vec<_> =
                tiles.iter().step_by(grid.columns()).map(|t| (t.y, t.height)).collect();
            for (starts, length) in [(xs, width), (ys, height)] {
                // Tiles lie inside the image, start at 0, end at the edge, leave no gap and
                // overlap by at least `overlap` pixels.
                prop_assert_eq!(starts[0].0, 0);
                let (last, size) = starts[starts.len() - 1];
                prop_assert_eq!(last + size, length);
                for w in starts.windows(2) {
                    prop_assert!(w[1].0 > w[0].0);
                    prop_assert!(w[0].0 + w[0].1 >= w[1].0 + overlap);
                }
                for &(s, size) in &starts {
                    prop_assert!(s + size <= length);
                    prop_assert_eq!(size, tile.min(length));
                }
            }
        }

        #[test]
        fn objects_have_one_owner_that_holds_them_whole(
            width in 1u32..2200, height in 1u32..2200, tile in 4u32..1100, overlap_pct in 0u32..100,
            px in 0.0f64..1.0, py in 0.0f64..1.0, sx in 0.0f64..1.0, sy in 0.0f64..1.0,
        ) {
            let overlap = tile * overlap_pct / 100;
            // Tiny strides on large images exceed MAX_TILES: refused, not tested here.
            let grid = match TileGrid::new(width, height, tile, overlap) {
                Err(Error::TooLarge(_)) => return Ok(()),
                other => other.unwrap(),
            };
            // A box at most `overlap` pixels wide and high (at least one), inside the image.
            let span = |f: f64, length: u32| {
                ((f * f64::from(overlap.max(1))) as u32).clamp(1, length)
            };
            let (w, h) = (span(sx, width), span(sy, height));
            let x0 = ((px * f64::from(width - w + 1)) as u32).min(width - w);
            let y0 = ((py * f64::from(height - h + 1)) as u32).min(height - h);
            let bbox = BBox::new(x0, y0, x0 + w - 1, y0 + h - 1).unwrap();
            let centre = BoxCentre::of(&bbox);

            let owners: Vec<_> = grid.tiles().iter().filter(|t| owns(t, centre)).collect();
            prop_assert_eq!(owners.len(), 1);
            let owner = owners[0];
            prop_assert_eq!(grid.owner_of(centre), Some(owner));
            prop_assert!(owner.x <= bbox.x0() && bbox.x1() < owner.x + owner.width);
            prop_assert!(owner.y <= bbox.y0() && bbox.y1() < owner.y + owner.height);
        }

        #[test]
        fn every_pixel_of_a_small_image_has_one_owner(
            width in 1u32..40, height in 1u32..40, tile in 1u32..16, overlap_pct in 0u32..100,
        ) {
            let overlap = tile * overlap_pct / 100;
            let grid = TileGrid::new(width, height, tile, overlap).unwrap();
            for y in 0..height {
                for x in 0..width {
                    let c = BoxCentre::of_pixel(x, y);
                    prop_assert_eq!(grid.tiles().iter().filter(|t| owns(t, c)).count(), 1);
                }
            }
        }
    }
}
