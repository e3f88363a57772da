//! Export formats: mask outlines as polygons, GeoJSON for QuPath, numeric CSV tables.
//!
//! Shared by `mitoscope propose`, `mitoscope detect`, the server and the browser, so that all
//! of them write the same files.
//!
//! Coordinates are full-resolution image pixels with QuPath's convention: the origin is the
//! top-left corner of pixel `(0, 0)`, pixel `(x, y)` covers `[x, x + 1] x [y, y + 1]`, and y
//! points down. A mask's outline ([`mask_polygons`]) runs along pixel edges, so its area is the
//! mask's pixel count exactly.
//!
//! Ring orientation follows RFC 7946's right-hand rule as GeoJSON tools compute it, on the
//! numbers as written: an exterior ring has a positive shoelace area
//! (`sum(x[i] * y[i+1] - x[i+1] * y[i]) / 2 > 0`, counterclockwise with y up), a hole a negative
//! one. With y pointing down, as an image is shown, exteriors therefore appear clockwise on the
//! screen. QuPath reads either orientation.
//!
//! GeoJSON follows what QuPath 0.4 and later write and read (`PathObjectTypeAdapters`): a
//! `FeatureCollection` whose features carry `objectType`, an optional `classification` with a
//! name and colour, and `measurements` as an object. [`validate_geojson`] checks the structure
//! RFC 7946 requires, for the tests of every crate that writes GeoJSON.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::mask::{BBox, pixel_count};
use crate::rle::BoxRle;
use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Polygons from masks
// ---------------------------------------------------------------------------------------------

/// A closed ring of `[x, y]` positions in image pixels: the first position equals the last.
pub type Ring = Vec<[f64; 2]>;

/// A polygon with holes, in image pixels (corner origin, y down).
///
/// As built by [`mask_polygons`]: every ring is closed, has no repeated consecutive positions
/// and keeps only corners; the exterior has a positive shoelace area and every hole a negative
/// one (see the module documentation); rings start at their top-left corner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Polygon {
    /// The outer boundary.
    pub exterior: Ring,
    /// The boundaries of the holes.
    pub holes: Vec<Ring>,
}

/// The signed shoelace area of a ring: positive for an exterior ring as [`mask_polygons`]
/// writes it, negative for a hole.
///
/// The ring may be closed or not; fewer than three positions have area 0.
pub fn ring_signed_area(ring: &[[f64; 2]]) -> f64 {
    let Some(&[ox, oy]) = ring.first() else {
        return 0.0;
    };
    // Relative to the first position, so that large image coordinates lose no precision.
    let twice: f64 = ring
        .iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(&[x0, y0], &[x1, y1])| (x0 - ox) * (y1 - oy) - (x1 - ox) * (y0 - oy))
        .sum();
    twice / 2.0
}

/// The area of `polygon` in square pixels: the exterior's area less its holes', whatever the
/// rings' orientation.
pub fn polygon_area(polygon: &Polygon) -> f64 {
    let holes: f64 = polygon
        .holes
        .iter()
        .map(|h| ring_signed_area(h).abs())
        .sum();
    ring_signed_area(&polygon.exterior).abs() - holes
}

/// The centre of `bbox` in corner-origin coordinates: `((x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2)`.
///
/// This is [`crate::BoxCentre`] (pixel-centre convention) plus half a pixel on each axis.
pub fn box_centre(bbox: &BBox) -> [f64; 2] {
    let centre = |a: u32, b: u32| (f64::from(a) + f64::from(b) + 1.0) / 2.0;
    [centre(bbox.x0(), bbox.x1()), centre(bbox.y0(), bbox.y1())]
}

/// The outlines of `mask`: one polygon per 4-connected component, largest first.
///
/// Each polygon traces the pixel edges between the component and the rest, so its area
/// ([`polygon_area`]) is the component's pixel count, and the areas add up to
/// [`BoxRle::area`]. Pixels that touch only at a corner belong to different polygons.
///
/// Where a background region reaches the outside only through such a corner, the outline
/// touches itself there; it is written as a hole that touches the exterior at that one vertex,
/// which the OGC simple-features rules (and so JTS, which QuPath uses) call valid, never as a
/// ring that passes its own vertex twice. Holes may likewise touch each other at a vertex.
///
/// An empty mask has no polygons. Components of equal area keep the order in which a row-major
/// scan of the box meets them.
///
/// The box is decoded whole, at two bytes a pixel: a caller that takes masks from outside
/// should bound the box first.
///
/// # Errors
///
/// [`Error::InvalidRle`] when the counts do not add up to the box's pixels,
/// [`Error::TooLarge`] for a box of more than `u32::MAX` pixels.
pub fn mask_polygons(mask: &BoxRle) -> Result<Vec<Polygon>> {
    let pixels = BoxPixels::decode(mask)?;

    // Every boundary as simple loops of corners, in box coordinates; the sign of the area tells
    // exteriors from holes.
    let mut outlines = Vec::new();
    let mut holes = Vec::new();
    for corners in pixels.boundary_loops() {
        let twice_area = twice_signed_area(&corners);
        if twice_area > 0 {
            outlines.push(Outline {
                twice_area,
                exterior: corners,
                holes: Vec::new(),
            });
        } else {
            holes.push((twice_area, corners));
        }
    }

    // A hole belongs to the smallest exterior around it: with nested islands, an outer
    // component's exterior encloses the hole too.
    for (twice_area, hole) in holes {
        let probe = hole_probe(&hole);
        let owner = outlines
            .iter_mut()
            .filter(|o| encloses(&o.exterior, probe))
            .min_by_key(|o| o.twice_area);
        // Never None: the pixels along a hole belong to one component, whose exterior encloses
        // the hole.
        if let Some(owner) = owner {
            owner.holes.push(hole);
            owner.twice_area += twice_area;
        }
    }

    // Largest first (a stable sort keeps the scan order among equals), then image coordinates.
    outlines.sort_by_key(|o| std::cmp::Reverse(o.twice_area));
    let (dx, dy) = (i64::from(mask.bbox.x0()), i64::from(mask.bbox.y0()));
    let ring = |corners: &[Vertex]| -> Ring {
        let mut ring: Ring = corners
            .iter()
            .map(|&(x, y)| [(x + dx) as f64, (y + dy) as f64])
            .collect();
        ring.push(ring[0]);
        ring
    };
    Ok(outlines
        .iter()
        .map(|o| Polygon {
            exterior: ring(&o.exterior),
            holes: o.holes.iter().map(|h| ring(h)).collect(),
        })
        .collect())
}

/// A polygon in box coordinates, its rings as open loops of corners.
struct Outline {
    /// Twice the area: the exterior's, less the holes' found so far.
    twice_area: i128,
    exterior: Vec<Vertex>,
    holes: Vec<Vec<Vertex>>,
}

/// A pixel corner in box coordinates: `(x, y)` is the top-left corner of the box's pixel
/// `(x, y)`.
type Vertex = (i64, i64);

/// The neighbour across each side of a pixel, sides numbered top, right, bottom, left.
const ACROSS: [(i64, i64); 4] = [(0, -1), (1, 0), (0, 1), (-1, 0)];

/// Where each side's edge starts, relative to the pixel's top-left corner. Edges run with the
/// pixel on their left as the shoelace formula sees it (top edge towards +x, right edge towards
/// +y), which makes exteriors positive and holes negative.
const EDGE_START: [(i64, i64); 4] = [(0, 0), (1, 0), (1, 1), (0, 1)];

/// The pixels of a mask's box, row-major.
struct BoxPixels {
    width: i64,
    height: i64,
    data: Vec<bool>,
}

impl BoxPixels {
    /// Decodes the runs of `mask` over its box.
    fn decode(mask: &BoxRle) -> Result<Self> {
        let (width, height, count) = checked_box_size(mask)?;
        let mut data = vec![false; count];
        let mut offset = 0usize;
        for (k, &run) in mask.counts.iter().enumerate() {
            // The runs add up to `count`, so every range lies in `data`.
            let end = offset + run as usize;
            if k % 2 == 1 {
                data[offset..end].fill(true);
            }
            offset = end;
        }
        Ok(Self {
            width: i64::from(width),
            height: i64::from(height),
            data,
        })
    }

    /// The index of pixel `(x, y)`, or `None` outside the box.
    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let inside = (0..self.width).contains(&x) && (0..self.height).contains(&y);
        inside.then(|| (y * self.width + x) as usize)
    }

    /// Whether pixel `(x, y)` is set; pixels outside the box are not.
    fn is_set(&self, x: i64, y: i64) -> bool {
        self.index(x, y).is_some_and(|i| self.data[i])
    }

    /// Every boundary (between a set pixel and an unset or outside one) as simple loops of
    /// corners, found in row-major order.
    fn boundary_loops(&self) -> Vec<Vec<Vertex>> {
        // One bit per side of each pixel: that edge has been walked.
        let mut walked = vec![0u8; self.data.len()];
        let mut loops = Vec::new();
        for y in 0..self.height {
            for x in 0..self.width {
                if !self.is_set(x, y) {
                    continue;
                }
                for (side, (ax, ay)) in ACROSS.into_iter().enumerate() {
                    let i = (y * self.width + x) as usize;
                    if walked[i] & (1 << side) != 0 || self.is_set(x + ax, y + ay) {
                        continue;
                    }
                    let walk = self.walk((x, y, side), &mut walked);
                    loops.extend(split_at_pinches(walk).iter().map(|l| corners(l)));
                }
            }
        }
        loops
    }

    /// Walks the boundary from the edge on `side` of pixel `(x, y)` until it is back there,
    /// marking the edges in `walked`; returns the start of every unit edge.
    fn walk(&self, start: (i64, i64, usize), walked: &mut [u8]) -> Vec<Vertex> {
        let mut vertices = Vec::new();
        let (mut x, mut y, mut side) = start;
        loop {
            walked[(y * self.width + x) as usize] |= 1 << side;
            vertices.push((x + EDGE_START[side].0, y + EDGE_START[side].1));
            (x, y, side) = self.next_edge(x, y, side);
            if (x, y, side) == start {
                return vertices;
            }
        }
    }

    /// The boundary edge after the one on `side` of pixel `(x, y)`.
    ///
    /// At the edge's end, the boundary turns around the same pixel if it can, else goes
    /// straight on along the next pixel, else turns onto the diagonal pixel. Turning around
    /// the same pixel first is what keeps pixels that touch only at a corner apart
    /// (4-connected foreground).
    fn next_edge(&self, x: i64, y: i64, side: usize) -> (i64, i64, usize) {
        let turn = (side + 1) % 4;
        let (nx, ny) = (x + ACROSS[turn].0, y + ACROSS[turn].1);
        if !self.is_set(nx, ny) {
            return (x, y, turn);
        }
        let (dx, dy) = (nx + ACROSS[side].0, ny + ACROSS[side].1);
        if !self.is_set(dx, dy) {
            return (nx, ny, side);
        }
        (dx, dy, (side + 3) % 4)
    }
}

/// The width, height and pixel count of the box of `mask`, checking that its runs cover it.
fn checked_box_size(mask: &BoxRle) -> Result<(u32, u32, usize)> {
    let b = mask.bbox;
    let too_large = || Error::TooLarge("a mask box holds at most u32::MAX pixels");
    let width = u32::try_from(b.width_px()).map_err(|_| too_large())?;
    let height = u32::try_from(b.height_px()).map_err(|_| too_large())?;
    let count = pixel_count(width, height)?;
    let total: u64 = mask.counts.iter().map(|&c| u64::from(c)).sum();
    if total != count as u64 {
        return Err(Error::InvalidRle(
            "the counts do not add up to the box's pixels",
        ));
    }
    Ok((width, height, count))
}

/// Splits a closed walk at the vertices it passes twice into simple closed loops.
fn split_at_pinches(walk: Vec<Vertex>) -> Vec<Vec<Vertex>> {
    let mut loops = Vec::new();
    let mut open: Vec<Vertex> = Vec::with_capacity(walk.len());
    let mut position: HashMap<Vertex, usize> = HashMap::new();
    for v in walk {
        if let Some(&at) = position.get(&v) {
            // Back at `v`: what was walked since is a loop of its own.
            let closed: Vec<Vertex> = open.drain(at..).collect();
            for u in &closed {
                position.remove(u);
            }
            loops.push(closed);
        }
        position.insert(v, open.len());
        open.push(v);
    }
    // The rest starts at the walk's first vertex, where the walk ends.
    if !open.is_empty() {
        loops.push(open);
    }
    loops
}

/// The corners of a closed loop of unit steps, starting at the top-left one (smallest y, then
/// smallest x), so that a ring reads the same however it was found.
fn corners(walk: &[Vertex]) -> Vec<Vertex> {
    let n = walk.len();
    let mut corners: Vec<Vertex> = (0..n)
        .filter(|&i| {
            let (p, v, q) = (walk[(i + n - 1) % n], walk[i], walk[(i + 1) % n]);
            (v.0 - p.0, v.1 - p.1) != (q.0 - v.0, q.1 - v.1)
        })
        .map(|i| walk[i])
        .collect();
    let first = (0..corners.len()).min_by_key(|&i| (corners[i].1, corners[i].0));
    corners.rotate_left(first.unwrap_or(0));
    corners
}

/// Twice the signed shoelace area of an open loop of corners.
fn twice_signed_area(corners: &[Vertex]) -> i128 {
    corners
        .iter()
        .zip(corners.iter().cycle().skip(1))
        .map(|(&(x0, y0), &(x1, y1))| {
            i128::from(x0) * i128::from(y1) - i128::from(x1) * i128::from(y0)
        })
        .sum()
}

/// A point inside a hole, in doubled coordinates: the centre of the unset pixel across the
/// hole's first edge (on the edge's right, away from the set pixel).
fn hole_probe(hole: &[Vertex]) -> Vertex {
    let (a, b) = (hole[0], hole[1 % hole.len()]);
    let (dx, dy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
    (2 * a.0 + dx + dy, 2 * a.1 + dy - dx)
}

/// Whether the loop of corners encloses `point`, given in doubled coordinates with both odd (a
/// pixel centre, never on an edge): crossings of a ray towards +x.
fn encloses(corners: &[Vertex], (px, py): Vertex) -> bool {
    let crossings = corners
        .iter()
        .zip(corners.iter().cycle().skip(1))
        .filter(|&(&(x0, y0), &(_, y1))| (2 * y0 < py) != (2 * y1 < py) && 2 * x0 > px)
        .count();
    crossings % 2 == 1
}

// ---------------------------------------------------------------------------------------------
// GeoJSON
// ---------------------------------------------------------------------------------------------

/// The class name Mitoscope gives mitotic figures, as QuPath shows it.
pub const MITOTIC_FIGURE: &str = "Mitotic figure";

/// The colour of [`MITOTIC_FIGURE`] in QuPath, `[r, g, b]`.
pub const MITOTIC_FIGURE_COLOR: [u8; 3] = [220, 40, 40];

/// The colour of every other class, a neutral grey.
pub const OTHER_CLASS_COLOR: [u8; 3] = [150, 150, 150];

/// The colour QuPath shows for a class: red for mitotic figures, grey for anything else.
pub fn classification_color(name: &str) -> [u8; 3] {
    if name == MITOTIC_FIGURE {
        MITOTIC_FIGURE_COLOR
    } else {
        OTHER_CLASS_COLOR
    }
}

/// One object to export: a mask with what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportObject {
    /// The object's number, unique within an export; written as a UUID ([`object_uuid`]).
    pub id: u64,
    /// The mask, its box in full-resolution image pixels.
    pub mask: BoxRle,
    /// The class name (e.g. [`MITOTIC_FIGURE`]), or `None` for an unclassified object.
    pub classification: Option<String>,
    /// Named numbers, e.g. `("probability", 0.93)`; every value finite, every name once.
    pub measurements: Vec<(String, f64)>,
}

/// What geometry a feature gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeometryKind {
    /// The mask's outline ([`mask_polygons`]): a `Polygon`, or a `MultiPolygon` when the mask
    /// has several components.
    Polygon,
    /// The box centre ([`box_centre`]).
    Point,
}

/// The kind of QuPath object a feature becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    /// An annotation: editable, usually few.
    Annotation,
    /// A detection: lightweight, for many objects.
    Detection,
}

impl ObjectType {
    /// The `objectType` QuPath reads: `"annotation"` or `"detection"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Annotation => "annotation",
            Self::Detection => "detection",
        }
    }
}

/// The feature id of object `id`: a UUID, so that QuPath keeps it as the object's id (it
/// replaces any other id with a random one).
///
/// The UUID is of version 8 (custom, RFC 9562) and holds the number in hexadecimal: its top 16
/// bits in the first group, the other 48 in the last, e.g. `00000000-0000-8000-8000-00000000002a`
/// for 42.
pub fn object_uuid(id: u64) -> String {
    format!(
        "{:08x}-0000-8000-8000-{:012x}",
        id >> 48,
        id & 0xffff_ffff_ffff
    )
}

/// A GeoJSON `FeatureCollection` of `objects` that QuPath 0.4 and later import.
///
/// Each feature reads
///
/// ```json
/// {"type": "Feature", "id": "00000000-0000-8000-8000-000000000007",
///  "geometry": {"type": "Polygon", "coordinates": [[[10, 20], [13, 20], ...]]},
///  "properties": {"objectType": "detection",
///                 "classification": {"name": "Mitotic figure", "color": [220, 40, 40]},
///                 "measurements": {"probability": 0.93}, "isLocked": false}}
/// ```
///
/// with `classification` only for a classified object ([`classification_color`] gives the
/// colour). Whole numbers are written without a fraction.
///
/// # Errors
///
/// [`Error::NotFinite`] for a measurement that is NaN or infinite, [`Error::InvalidSetting`] for
/// two measurements of one object with the same name, [`Error::InvalidRle`] for a mask whose
/// counts do not add up to its box or, with [`GeometryKind::Polygon`], that has no set pixel.
pub fn to_geojson(
    objects: &[ExportObject],
    kind: GeometryKind,
    object_type: ObjectType,
) -> Result<Value> {
    let features = objects
        .iter()
        .map(|object| feature(object, kind, object_type))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({"type": "FeatureCollection", "features": features}))
}

/// One feature of [`to_geojson`].
fn feature(object: &ExportObject, kind: GeometryKind, object_type: ObjectType) -> Result<Value> {
    let geometry = match kind {
        GeometryKind::Point => {
            checked_box_size(&object.mask)?;
            json!({"type": "Point", "coordinates": position(box_centre(&object.mask.bbox))?})
        }
        GeometryKind::Polygon => polygons_geometry(&mask_polygons(&object.mask)?)?,
    };

    let mut measurements = Map::new();
    for (name, value) in &object.measurements {
        let value = number(*value, "measurement")?;
        if measurements.insert(name.clone(), value).is_some() {
            return Err(Error::InvalidSetting {
                name: "measurements",
                reason: "two measurements of one object have the same name",
            });
        }
    }

    let mut properties = Map::new();
    properties.insert("objectType".into(), object_type.as_str().into());
    if let Some(name) = &object.classification {
        let color = classification_color(name);
        properties.insert(
            "classification".into(),
            json!({"name": name, "color": color}),
        );
    }
    properties.insert("measurements".into(), Value::Object(measurements));
    properties.insert("isLocked".into(), false.into());

    Ok(json!({
        "type": "Feature",
        "id": object_uuid(object.id),
        "geometry": geometry,
        "properties": properties,
    }))
}

/// A `Polygon` for one polygon, a `MultiPolygon` for several.
fn polygons_geometry(polygons: &[Polygon]) -> Result<Value> {
    let coordinates = polygons
        .iter()
        .map(|polygon| {
            std::iter::once(&polygon.exterior)
                .chain(&polygon.holes)
                .map(|ring| ring.iter().map(|&xy| position(xy)).collect())
                .collect::<Result<Vec<Vec<Value>>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    match <[_; 1]>::try_from(coordinates) {
        Ok([single]) => Ok(json!({"type": "Polygon", "coordinates": single})),
        Err(coordinates) if coordinates.is_empty() => Err(Error::InvalidRle(
            "a mask without set pixels has no outline",
        )),
        Err(coordinates) => Ok(json!({"type": "MultiPolygon", "coordinates": coordinates})),
    }
}

/// A GeoJSON position `[x, y]`.
fn position([x, y]: [f64; 2]) -> Result<Value> {
    Ok(Value::Array(vec![
        number(x, "coordinate")?,
        number(y, "coordinate")?,
    ]))
}

/// A JSON number, whole numbers without a fraction (`3`, not `3.0`).
fn number(value: f64, what: &'static str) -> Result<Value> {
    // Below 2^53 every whole f64 is exactly an i64.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(value as i64));
    }
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .ok_or(Error::NotFinite(what))
}

/// Checks RFC 7946 structure: object types, required members, positions, rings.
///
/// Accepts any GeoJSON object (a `FeatureCollection`, a `Feature` or a geometry). It checks
/// that every object has a known `type` and its required members; that a feature has
/// `geometry` and `properties` (each an object or `null`) and a string or number `id` if any;
/// that positions are arrays of two or more numbers; that a `LineString` has two or more
/// positions; that a linear ring has four or more positions and ends where it starts; and that
/// rings follow the right-hand rule (exterior shoelace area positive, holes negative), which
/// RFC 7946 requires of writers, though readers accept either orientation.
///
/// # Errors
///
/// The first violation found, with the path to it, e.g.
/// `$.features[2].geometry.coordinates[0]: a linear ring must end where it starts`.
pub fn validate_geojson(value: &Value) -> core::result::Result<(), String> {
    match type_of(value, "$")? {
        "FeatureCollection" => {
            let features = member(value, "features", "$")?
                .as_array()
                .ok_or("$.features: must be an array")?;
            features
                .iter()
                .enumerate()
                .try_for_each(|(i, f)| check_feature(f, &format!("$.features[{i}]")))
        }
        "Feature" => check_feature(value, "$"),
        _ => check_geometry(value, "$"),
    }
}

/// The outcome of a check in [`validate_geojson`]: what failed, and where.
type Checked<T = ()> = core::result::Result<T, String>;

/// The `type` of a GeoJSON object at `path`.
fn type_of<'a>(value: &'a Value, path: &str) -> Checked<&'a str> {
    value
        .as_object()
        .ok_or_else(|| format!("{path}: must be an object"))?;
    member(value, "type", path)?
        .as_str()
        .ok_or_else(|| format!("{path}.type: must be a string"))
}

/// The member `name` of the object at `path`, which must be there.
fn member<'a>(value: &'a Value, name: &str, path: &str) -> Checked<&'a Value> {
    value
        .get(name)
        .ok_or_else(|| format!("{path}: missing member `{name}`"))
}

/// Checks a `Feature` at `path`.
fn check_feature(value: &Value, path: &str) -> Checked {
    if type_of(value, path)? != "Feature" {
        return Err(format!("{path}.type: must be \"Feature\""));
    }
    if let Some(id) = value.get("id")
        && !(id.is_string() || id.is_number())
    {
        return Err(format!("{path}.id: must be a string or a number"));
    }
    let properties = member(value, "properties", path)?;
    if !(properties.is_object() || properties.is_null()) {
        return Err(format!("{path}.properties: must be an object or null"));
    }
    match member(value, "geometry", path)? {
        Value::Null => Ok(()),
        geometry => check_geometry(geometry, &format!("{path}.geometry")),
    }
}

/// Checks a geometry at `path`.
fn check_geometry(value: &Value, path: &str) -> Checked {
    let kind = type_of(value, path)?;
    if kind == "GeometryCollection" {
        let geometries = member(value, "geometries", path)?
            .as_array()
            .ok_or_else(|| format!("{path}.geometries: must be an array"))?;
        return geometries
            .iter()
            .enumerate()
            .try_for_each(|(i, g)| check_geometry(g, &format!("{path}.geometries[{i}]")));
    }

    let check: fn(&Value, &str) -> Checked = match kind {
        "Point" | "MultiPoint" => check_position,
        "LineString" | "MultiLineString" => check_line,
        "Polygon" | "MultiPolygon" => check_polygon,
        other => return Err(format!("{path}.type: unknown geometry type \"{other}\"")),
    };
    let coordinates = member(value, "coordinates", path)?;
    let path = format!("{path}.coordinates");
    if !kind.starts_with("Multi") {
        return check(coordinates, &path);
    }
    coordinates
        .as_array()
        .ok_or_else(|| format!("{path}: must be an array"))?
        .iter()
        .enumerate()
        .try_for_each(|(i, v)| check(v, &format!("{path}[{i}]")))
}

/// Checks a position: an array of two or more numbers.
fn check_position(value: &Value, path: &str) -> Checked {
    let numbers = value
        .as_array()
        .ok_or_else(|| format!("{path}: a position must be an array"))?;
    if numbers.len() < 2 {
        return Err(format!("{path}: a position needs two or more numbers"));
    }
    if !numbers
        .iter()
        .all(|n| n.as_f64().is_some_and(f64::is_finite))
    {
        return Err(format!("{path}: a position holds only finite numbers"));
    }
    Ok(())
}

/// The positions of a line at `path`, at least `min` of them.
fn positions(value: &Value, min: usize, path: &str) -> Checked<Vec<Vec<f64>>> {
    let array = value
        .as_array()
        .ok_or_else(|| format!("{path}: must be an array of positions"))?;
    if array.len() < min {
        return Err(format!("{path}: needs {min} or more positions"));
    }
    array
        .iter()
        .enumerate()
        .map(|(i, p)| {
            check_position(p, &format!("{path}[{i}]"))?;
            // Checked: an array of finite numbers.
            Ok(p.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect())
        })
        .collect()
}

/// Checks a `LineString`'s coordinates.
fn check_line(value: &Value, path: &str) -> Checked {
    positions(value, 2, path).map(|_| ())
}

/// Checks a `Polygon`'s coordinates: linear rings, the first the exterior.
fn check_polygon(value: &Value, path: &str) -> Checked {
    let rings = value
        .as_array()
        .ok_or_else(|| format!("{path}: must be an array of linear rings"))?;
    for (i, ring) in rings.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let ring = positions(ring, 4, &path)?;
        if ring.first() != ring.last() {
            return Err(format!("{path}: a linear ring must end where it starts"));
        }
        let xy: Vec<[f64; 2]> = ring.iter().map(|p| [p[0], p[1]]).collect();
        let area = ring_signed_area(&xy);
        if i == 0 && area <= 0.0 {
            return Err(format!(
                "{path}: an exterior ring must be counterclockwise (positive area)"
            ));
        }
        if i > 0 && area >= 0.0 {
            return Err(format!("{path}: a hole must be clockwise (negative area)"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/// One CSV cell: everything Mitoscope writes to CSV is a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CsvValue {
    /// A whole number, e.g. an object id.
    Integer(u64),
    /// A real number, written so that it parses back to the same `f64`.
    Real(f64),
}

/// A row type of a CSV table: its column names and its cells, in the same order.
pub trait CsvRecord {
    /// The header: column names, none containing a comma, a quote or a line break.
    const COLUMNS: &'static [&'static str];

    /// The row's cells, one per column.
    fn cells(&self) -> Vec<CsvValue>;
}

/// A classified object as `mitoscope detect` and the web app export it: its mask (box in
/// full-resolution pixels) and the classifier's probability of a mitotic figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The object's mask.
    pub mask: BoxRle,
    /// The classifier's probability of a mitotic figure.
    pub probability: f32,
}

/// The detections as a GeoJSON `FeatureCollection` of QuPath detections classified
/// [`MITOTIC_FIGURE`], numbered in the given order, with `probability` and `area_um2` as
/// measurements, as one line of text: the file `mitoscope detect` writes and the web app exports.
///
/// # Errors
///
/// As [`to_geojson`].
pub fn detections_geojson(
    detections: &[Detection],
    microns_per_pixel: f64,
    geometry: GeometryKind,
) -> Result<String> {
    let objects: Vec<ExportObject> = detections
        .iter()
        .enumerate()
        .map(|(id, d)| ExportObject {
            id: id as u64,
            mask: d.mask.clone(),
            classification: Some(MITOTIC_FIGURE.to_owned()),
            measurements: vec![
                ("probability".to_owned(), f64::from(d.probability)),
                ("area_um2".to_owned(), area_um2(&d.mask, microns_per_pixel)),
            ],
        })
        .collect();
    let value = to_geojson(&objects, geometry, ObjectType::Detection)?;
    Ok(
        serde_json::to_string(&value).map_err(|_| Error::InvalidSetting {
            name: "GeoJSON",
            reason: "the collection could not be written as JSON",
        })? + "\n",
    )
}

/// The detections as CSV, `x,y,probability,area_um2` with box centres ([`box_centre`]) in
/// full-resolution pixels: the table `mitoscope detect` writes and the web app exports.
///
/// # Errors
///
/// As [`to_csv`].
pub fn detections_csv(detections: &[Detection], microns_per_pixel: f64) -> Result<String> {
    let rows: Vec<DetectionRow> = detections
        .iter()
        .map(|d| {
            let [x, y] = box_centre(&d.mask.bbox);
            DetectionRow {
                x,
                y,
                probability: f64::from(d.probability),
                area_um2: area_um2(&d.mask, microns_per_pixel),
            }
        })
        .collect();
    to_csv(&rows)
}

/// A mask's area in square micrometres.
fn area_um2(mask: &BoxRle, microns_per_pixel: f64) -> f64 {
    mask.area() as f64 * microns_per_pixel * microns_per_pixel
}

/// A detection for `mitoscope detect`'s CSV: `x,y,probability,area_um2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionRow {
    /// Box centre x in full-resolution pixels, corner origin ([`box_centre`]).
    pub x: f64,
    /// Box centre y in full-resolution pixels, corner origin ([`box_centre`]).
    pub y: f64,
    /// The classifier's probability of a mitotic figure.
    pub probability: f64,
    /// The object's area in um^2.
    pub area_um2: f64,
}

impl CsvRecord for DetectionRow {
    const COLUMNS: &'static [&'static str] = &["x", "y", "probability", "area_um2"];

    fn cells(&self) -> Vec<CsvValue> {
        [self.x, self.y, self.probability, self.area_um2]
            .map(CsvValue::Real)
            .to_vec()
    }
}

/// A proposal for `mitoscope propose`'s CSV: `id,x,y,predicted_iou,stability,area_um2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProposalRow {
    /// The object's number (as in the GeoJSON export).
    pub id: u64,
    /// Box centre x in full-resolution pixels, corner origin ([`box_centre`]).
    pub x: f64,
    /// Box centre y in full-resolution pixels, corner origin ([`box_centre`]).
    pub y: f64,
    /// SAM's predicted IoU.
    pub predicted_iou: f64,
    /// The stability score.
    pub stability: f64,
    /// The object's area in um^2.
    pub area_um2: f64,
}

impl CsvRecord for ProposalRow {
    const COLUMNS: &'static [&'static str] =
        &["id", "x", "y", "predicted_iou", "stability", "area_um2"];

    fn cells(&self) -> Vec<CsvValue> {
        let reals = [
            self.x,
            self.y,
            self.predicted_iou,
            self.stability,
            self.area_um2,
        ];
        std::iter::once(CsvValue::Integer(self.id))
            .chain(reals.map(CsvValue::Real))
            .collect()
    }
}

/// A CSV table of `rows`: the header line, then one line per row, each ending in `\n`.
///
/// Numbers are written in Rust's shortest form that parses back to the same value (no
/// exponent, `-` for negatives); nothing is quoted, as no cell needs it.
///
/// # Errors
///
/// [`Error::NotFinite`] for a NaN or infinite cell, [`Error::LengthMismatch`] for a row with
/// more or fewer cells than columns, [`Error::InvalidSetting`] for a column name that would need
/// quoting.
pub fn to_csv<R: CsvRecord>(rows: &[R]) -> Result<String> {
    let columns = R::COLUMNS;
    if columns.iter().any(|c| c.contains([',', '"', '\n', '\r'])) {
        return Err(Error::InvalidSetting {
            name: "CSV columns",
            reason: "a column name holds a comma, a quote or a line break",
        });
    }
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let cells = row.cells();
        if cells.len() != columns.len() {
            return Err(Error::LengthMismatch {
                what: "CSV cells and columns",
                left: cells.len(),
                right: columns.len(),
            });
        }
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match cell {
                CsvValue::Integer(v) => out.push_str(&v.to_string()),
                CsvValue::Real(v) if v.is_finite() => out.push_str(&v.to_string()),
                CsvValue::Real(_) => return Err(Error::NotFinite("CSV cell")),
            }
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{BinaryMask, Grid};
    use crate::rle::encode;
    use proptest::prelude::*;

    /// The mask of `rows` ('#' set, '.' unset) with its box moved by `(dx, dy)`.
    fn mask_from(rows: &[&str], dx: u32, dy: u32) -> BoxRle {
        let width = rows[0].len() as u32;
        let data = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        let grid = Grid::new(width, rows.len() as u32, data).unwrap();
        let mut rle = encode(&grid).unwrap();
        rle.bbox = rle.bbox.translated(dx, dy).unwrap();
        rle
    }

    fn total_area(polygons: &[Polygon]) -> f64 {
        polygons.iter().map(polygon_area).sum()
    }

    #[test]
    fn single_pixel_is_a_unit_square() {
        let polygons = mask_polygons(&mask_from(&["#"], 3, 5)).unwrap();
        assert_eq!(
            polygons,
            vec![Polygon {
                exterior: vec![[3.0, 5.0], [4.0, 5.0], [4.0, 6.0], [3.0, 6.0], [3.0, 5.0]],
                holes: vec![],
            }]
        );
        assert_eq!(ring_signed_area(&polygons[0].exterior), 1.0);
    }

    #[test]
    fn l_shape_keeps_only_corners() {
        let polygons = mask_polygons(&mask_from(&["#.", "#.", "##"], 10, 20)).unwrap();
        assert_eq!(polygons.len(), 1);
        assert_eq!(
            polygons[0].exterior,
            vec![
                [10.0, 20.0],
                [11.0, 20.0],
                [11.0, 22.0],
                [12.0, 22.0],
                [12.0, 23.0],
                [10.0, 23.0],
                [10.0, 20.0]
            ]
        );
        assert_eq!(polygon_area(&polygons[0]), 4.0);
    }

    #[test]
    fn ring_has_a_clockwise_hole() {
        let polygons = mask_polygons(&mask_from(&["###", "#.#", "###"], 0, 0)).unwrap();
        assert_eq!(polygons.len(), 1);
        let p = &polygons[0];
        assert_eq!(
            p.exterior,
            vec![[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0], [0.0, 0.0]]
        );
        assert_eq!(
            p.holes,
            vec![vec![
                [1.0, 1.0],
                [1.0, 2.0],
                [2.0, 2.0],
                [2.0, 1.0],
                [1.0, 1.0]
            ]]
        );
        assert_eq!(ring_signed_area(&p.exterior), 9.0);
        assert_eq!(ring_signed_area(&p.holes[0]), -1.0);
        assert_eq!(polygon_area(p), 8.0);
    }

    #[test]
    fn diagonal_pixels_are_two_polygons() {
        let polygons = mask_polygons(&mask_from(&["#.", ".#"], 0, 0)).unwrap();
        assert_eq!(polygons.len(), 2);
        assert!(polygons.iter().all(|p| polygon_area(p) == 1.0));
        assert_eq!(polygons[0].exterior[0], [0.0, 0.0]);
        assert_eq!(polygons[1].exterior[0], [1.0, 1.0]);
    }

    #[test]
    fn checkerboard_is_one_polygon_per_pixel() {
        let rows = ["#.#.", ".#.#", "#.#.", ".#.#"];
        let polygons = mask_polygons(&mask_from(&rows, 7, 7)).unwrap();
        assert_eq!(polygons.len(), 8);
        assert!(polygons.iter().all(|p| polygon_area(p) == 1.0));
        assert!(
            polygons
                .iter()
                .all(|p| p.exterior.len() == 5 && p.holes.is_empty())
        );
    }

    #[test]
    fn cavity_open_at_a_corner_is_a_hole_touching_the_exterior() {
        // The unset centre reaches the outside only through the corner at (2, 2).
        let polygons = mask_polygons(&mask_from(&["###", "#.#", "##."], 0, 0)).unwrap();
        assert_eq!(polygons.len(), 1);
        let p = &polygons[0];
        assert_eq!(
            p.exterior,
            vec![
                [0.0, 0.0],
                [3.0, 0.0],
                [3.0, 2.0],
                [2.0, 2.0],
                [2.0, 3.0],
                [0.0, 3.0],
                [0.0, 0.0]
            ]
        );
        assert_eq!(
            p.holes,
            vec![vec![
                [1.0, 1.0],
                [1.0, 2.0],
                [2.0, 2.0],
                [2.0, 1.0],
                [1.0, 1.0]
            ]]
        );
        assert_eq!(polygon_area(p), 7.0);
    }

    #[test]
    fn island_in_a_hole_is_its_own_polygon() {
        let rows = ["#####", "#...#", "#.#.#", "#...#", "#####"];
        let polygons = mask_polygons(&mask_from(&rows, 0, 0)).unwrap();
        assert_eq!(polygons.len(), 2);
        assert_eq!(polygon_area(&polygons[0]), 16.0);
        assert_eq!(polygons[0].holes.len(), 1);
        assert_eq!(polygon_area(&polygons[1]), 1.0);
        assert_eq!(polygons[1].exterior[0], [2.0, 2.0]);
    }

    #[test]
    fn largest_component_comes_first() {
        let polygons = mask_polygons(&mask_from(&["#..", "..#", "..#"], 0, 0)).unwrap();
        assert_eq!(
            polygons.iter().map(polygon_area).collect::<Vec<_>>(),
            [2.0, 1.0]
        );
    }

    #[test]
    fn mask_polygons_refuses_malformed_runs() {
        let rle = BoxRle {
            bbox: BBox::new(0, 0, 1, 1).unwrap(),
            counts: vec![0, 3],
        };
        assert!(matches!(mask_polygons(&rle), Err(Error::InvalidRle(_))));
        let huge = BoxRle {
            bbox: BBox::new(0, 0, u32::MAX, 1).unwrap(),
            counts: vec![0, 1],
        };
        assert!(matches!(mask_polygons(&huge), Err(Error::TooLarge(_))));
        let empty = BoxRle {
            bbox: BBox::new(4, 4, 5, 5).unwrap(),
            counts: vec![4],
        };
        assert_eq!(mask_polygons(&empty).unwrap(), vec![]);
    }

    #[test]
    fn box_centre_is_corner_origin() {
        assert_eq!(box_centre(&BBox::new(3, 5, 3, 5).unwrap()), [3.5, 5.5]);
        assert_eq!(box_centre(&BBox::new(0, 0, 9, 3).unwrap()), [5.0, 2.0]);
        let far = BBox::new(u32::MAX, u32::MAX, u32::MAX, u32::MAX).unwrap();
        assert_eq!(box_centre(&far), [4_294_967_295.5; 2]);
    }

    fn object(id: u64, rows: &[&str], class: Option<&str>, m: &[(&str, f64)]) -> ExportObject {
        ExportObject {
            id,
            mask: mask_from(rows, 100, 200),
            classification: class.map(String::from),
            measurements: m.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        }
    }

    #[test]
    fn geojson_has_qupath_property_shape() {
        let objects = [
            object(
                7,
                &["##", "#."],
                Some(MITOTIC_FIGURE),
                &[("probability", 0.93)],
            ),
            object(8, &["#.", ".#"], None, &[]),
        ];
        let value = to_geojson(&objects, GeometryKind::Polygon, ObjectType::Detection).unwrap();
        validate_geojson(&value).unwrap();
        assert_eq!(
            value["features"][0],
            json!({
                "type": "Feature",
                "id": "00000000-0000-8000-8000-000000000007",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[
                        [100, 200], [102, 200], [102, 201], [101, 201], [101, 202], [100, 202],
                        [100, 200]
                    ]]
                },
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": "Mitotic figure", "color": [220, 40, 40]},
                    "measurements": {"probability": 0.93},
                    "isLocked": false
                }
            })
        );
        assert_eq!(value["type"], "FeatureCollection");
        let second = &value["features"][1];
        assert_eq!(second["geometry"]["type"], "MultiPolygon");
        assert_eq!(
            second["geometry"]["coordinates"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            second["properties"],
            json!({"objectType": "detection", "measurements": {}, "isLocked": false})
        );
    }

    #[test]
    fn geojson_points_and_annotations() {
        let objects = [object(
            u64::MAX,
            &["###"],
            Some("Mimic"),
            &[("area_um2", 0.75)],
        )];
        let value = to_geojson(&objects, GeometryKind::Point, ObjectType::Annotation).unwrap();
        validate_geojson(&value).unwrap();
        let f = &value["features"][0];
        assert_eq!(f["id"], "0000ffff-0000-8000-8000-ffffffffffff");
        assert_eq!(
            f["geometry"],
            json!({"type": "Point", "coordinates": [101.5, 200.5]})
        );
        assert_eq!(f["properties"]["objectType"], "annotation");
        assert_eq!(
            f["properties"]["classification"]["color"],
            json!([150, 150, 150])
        );
    }

    #[test]
    fn geojson_refuses_bad_objects() {
        let nan = [object(1, &["#"], None, &[("probability", f64::NAN)])];
        let kind = GeometryKind::Polygon;
        let detection = ObjectType::Detection;
        assert!(matches!(
            to_geojson(&nan, kind, detection),
            Err(Error::NotFinite(_))
        ));
        let inf = [object(1, &["#"], None, &[("p", f64::INFINITY)])];
        assert!(matches!(
            to_geojson(&inf, kind, detection),
            Err(Error::NotFinite(_))
        ));
        let twice = [object(1, &["#"], None, &[("p", 0.5), ("p", 0.6)])];
        assert!(matches!(
            to_geojson(&twice, kind, detection),
            Err(Error::InvalidSetting { .. })
        ));
        let mut empty = object(1, &["#"], None, &[]);
        empty.mask.counts = vec![1];
        assert!(matches!(
            to_geojson(&[empty.clone()], kind, detection),
            Err(Error::InvalidRle(_))
        ));
        // A point needs no pixels, but the runs must still add up.
        assert!(to_geojson(&[empty.clone()], GeometryKind::Point, detection).is_ok());
        empty.mask.counts = vec![2];
        assert!(to_geojson(&[empty], GeometryKind::Point, detection).is_err());
    }

    #[test]
    fn validator_catches_rfc_7946_violations() {
        let polygon = |coordinates: Value| {
            json!({"type": "FeatureCollection", "features": [{
                "type": "Feature", "properties": null,
                "geometry": {"type": "Polygon", "coordinates": coordinates}
            }]})
        };
        let square = json!([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]);
        let hole = json!([
            [0.25, 0.25],
            [0.25, 0.5],
            [0.5, 0.5],
            [0.5, 0.25],
            [0.25, 0.25]
        ]);
        assert_eq!(validate_geojson(&polygon(json!([square, hole]))), Ok(()));
        assert_eq!(validate_geojson(&polygon(json!([]))), Ok(()));

        let bad = [
            polygon(json!([[[0, 0], [1, 0], [1, 1], [0, 1]]])),
            polygon(json!([[[0, 0], [1, 0], [0, 0]]])),
            polygon(json!([[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]])),
            polygon(json!([square, square])),
            polygon(json!([[[0, 0], [1, 0], [1, "1"], [0, 1], [0, 0]]])),
            polygon(json!([[[0, 0], [1, 0], [1, null], [0, 1], [0, 0]]])),
            polygon(json!([[[0], [1, 0], [1, 1], [0, 1], [0]]])),
            polygon(json!([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])),
            json!({"type": "FeatureCollection"}),
            json!({"type": "FeatureCollection", "features": [{"type": "Feature"}]}),
            json!({"type": "Feature", "geometry": null, "properties": 3}),
            json!({"type": "Feature", "geometry": null, "properties": {}, "id": [1]}),
            json!({"type": "Point", "coordinates": [1]}),
            json!({"type": "Circle", "coordinates": [1, 2]}),
            json!({"type": "LineString", "coordinates": [[1, 2]]}),
            json!([1, 2]),
        ];
        for value in bad {
            assert!(validate_geojson(&value).is_err(), "accepted {value}");
        }
        let message = validate_geojson(&polygon(json!([[[0, 0], [1, 0], [1, 1], [0, 1]]])));
        assert_eq!(
            message,
            Err(
                "$.features[0].geometry.coordinates[0]: a linear ring must end where it starts"
                    .to_string()
            )
        );

        let others = json!({"type": "GeometryCollection", "geometries": [
            {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4, 5]]},
            {"type": "MultiLineString", "coordinates": [[[1, 2], [3, 4]]]},
            {"type": "MultiPolygon", "coordinates": [[square]]}
        ]});
        assert_eq!(validate_geojson(&others), Ok(()));
        let circle = json!({"type": "Circle", "coordinates": [1, 2]});
        assert_eq!(
            validate_geojson(&circle),
            Err("$.type: unknown geometry type \"Circle\"".to_string())
        );
        let multi = json!({"type": "MultiPolygon", "coordinates": [[square], [[[0, 0]]]]});
        assert_eq!(
            validate_geojson(&multi),
            Err("$.coordinates[1][0]: needs 4 or more positions".to_string())
        );
    }

    /// Splits CSV text into its header and its rows of numbers.
    fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<f64>>) {
        let mut lines = text.lines();
        let header = lines.next().unwrap().split(',').map(String::from).collect();
        let rows = lines
            .map(|l| l.split(',').map(|c| c.parse().unwrap()).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn detection_csv_round_trips() {
        let rows = [
            DetectionRow {
                x: 101.5,
                y: 200.5,
                probability: 0.1 + 0.2,
                area_um2: 1e-7,
            },
            DetectionRow {
                x: 0.0,
                y: 4_294_967_295.5,
                probability: 1.0 / 3.0,
                area_um2: 225.0,
            },
        ];
        let text = to_csv(&rows).unwrap();
        assert!(text.starts_with("x,y,probability,area_um2\n101.5,200.5,0.30000000000000004,"));
        assert!(text.ends_with('\n'));
        let (header, parsed) = parse_csv(&text);
        assert_eq!(header, DetectionRow::COLUMNS);
        for (row, values) in rows.iter().zip(&parsed) {
            assert_eq!(values, &[row.x, row.y, row.probability, row.area_um2]);
        }
        assert_eq!(
            to_csv::<DetectionRow>(&[]).unwrap(),
            "x,y,probability,area_um2\n"
        );
    }

    #[test]
    fn proposal_csv_round_trips() {
        let row = ProposalRow {
            id: u64::MAX,
            x: 12.5,
            y: 3.0,
            predicted_iou: 0.912_345_678_901_234_5,
            stability: 1.0,
            area_um2: 20.25,
        };
        let text = to_csv(&[row]).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("id,x,y,predicted_iou,stability,area_um2")
        );
        let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(cells[0].parse::<u64>().unwrap(), u64::MAX);
        assert_eq!(cells[2], "3");
        let reals: Vec<f64> = cells[1..].iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(reals, [12.5, 3.0, row.predicted_iou, 1.0, 20.25]);
    }

    #[test]
    fn csv_refuses_bad_cells() {
        let nan = DetectionRow {
            x: 1.0,
            y: 1.0,
            probability: f64::NAN,
            area_um2: 1.0,
        };
        assert!(matches!(to_csv(&[nan]), Err(Error::NotFinite(_))));

        struct Short;
        impl CsvRecord for Short {
            const COLUMNS: &'static [&'static str] = &["a", "b"];
            fn cells(&self) -> Vec<CsvValue> {
                vec![CsvValue::Integer(1)]
            }
        }
        assert!(matches!(
            to_csv(&[Short]),
            Err(Error::LengthMismatch { .. })
        ));

        struct Quoted;
        impl CsvRecord for Quoted {
            const COLUMNS: &'static [&'static str] = &["a,b"];
            fn cells(&self) -> Vec<CsvValue> {
                vec![CsvValue::Integer(1)]
            }
        }
        assert!(matches!(
            to_csv(&[Quoted]),
            Err(Error::InvalidSetting { .. })
        ));
    }

    /// 4-connected components of `mask` (a plain flood fill, to check the tracer against).
    fn component_count(mask: &BinaryMask) -> usize {
        let (w, h) = (mask.width() as i64, mask.height() as i64);
        let mut seen = vec![false; mask.data().len()];
        let mut count = 0;
        for start in 0..seen.len() {
            if seen[start] || !mask.data()[start] {
                continue;
            }
            count += 1;
            seen[start] = true;
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                let (x, y) = (i as i64 % w, i as i64 / w);
                for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] {
                    if (0..w).contains(&nx) && (0..h).contains(&ny) {
                        let j = (ny * w + nx) as usize;
                        if mask.data()[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        count
    }

    /// Whether the point lies inside the polygons (even-odd over every ring).
    fn covered(polygons: &[Polygon], [px, py]: [f64; 2]) -> bool {
        let rings = polygons
            .iter()
            .flat_map(|p| std::iter::once(&p.exterior).chain(&p.holes));
        let crossings: usize = rings
            .map(|ring| {
                ring.windows(2)
                    .filter(|e| (e[0][1] < py) != (e[1][1] < py) && e[0][0] > px)
                    .count()
            })
            .sum();
        crossings % 2 == 1
    }

    fn arb_mask() -> impl Strategy<Value = BinaryMask> {
        (1u32..14, 1u32..14, 0.2f64..0.9).prop_flat_map(|(w, h, p)| {
            proptest::collection::vec(proptest::bool::weighted(p), (w * h) as usize)
                .prop_map(move |data| Grid::new(w, h, data).unwrap())
        })
    }

    proptest! {
        #[test]
        fn polygons_trace_the_mask_exactly(m in arb_mask(), dx in 0u32..1000, dy in 0u32..1000) {
            prop_assume!(m.data().iter().any(|&v| v));
            let mut rle = encode(&m).unwrap();
            let local = rle.bbox;
            rle.bbox = rle.bbox.translated(dx, dy).unwrap();
            let b = rle.bbox;
            let polygons = mask_polygons(&rle).unwrap();

            prop_assert_eq!(total_area(&polygons), rle.area() as f64);
            prop_assert_eq!(polygons.len(), component_count(&m));
            let areas: Vec<f64> = polygons.iter().map(polygon_area).collect();
            prop_assert!(areas.windows(2).all(|a| a[0] >= a[1]));

            for p in &polygons {
                prop_assert!(ring_signed_area(&p.exterior) > 0.0);
                prop_assert!(p.holes.iter().all(|h| ring_signed_area(h) < 0.0));
                for ring in std::iter::once(&p.exterior).chain(&p.holes) {
                    let n = ring.len();
                    prop_assert!(n >= 5);
                    prop_assert_eq!(ring[0], ring[n - 1]);
                    // Simple: no vertex twice but the closing one.
                    let mut open: Vec<[u64; 2]> =
                        ring[..n - 1].iter().map(|v| v.map(|c| c as u64)).collect();
                    open.sort_unstable();
                    open.dedup();
                    prop_assert_eq!(open.len(), n - 1);
                    // Corners only: every vertex turns, the closing one too.
                    for i in 0..n - 1 {
                        let (a, v, c) = (ring[(i + n - 2) % (n - 1)], ring[i], ring[i + 1]);
                        let (d0, d1) = ([v[0] - a[0], v[1] - a[1]], [c[0] - v[0], c[1] - v[1]]);
                        prop_assert!(d0[0] * d1[1] - d0[1] * d1[0] != 0.0);
                    }
                    for &[x, y] in ring {
                        prop_assert!(x.fract() == 0.0 && y.fract() == 0.0);
                        prop_assert!(x >= f64::from(b.x0()) && x <= f64::from(b.x1()) + 1.0);
                        prop_assert!(y >= f64::from(b.y0()) && y <= f64::from(b.y1()) + 1.0);
                    }
                }
            }

            // The polygons cover exactly the set pixels' centres.
            for y in local.y0()..=local.y1() {
                for x in local.x0()..=local.x1() {
                    let centre = [f64::from(x + dx) + 0.5, f64::from(y + dy) + 0.5];
                    prop_assert_eq!(covered(&polygons, centre), m.get(x, y) == Some(&true));
                }
            }

            let object = ExportObject {
                id: 1,
                mask: rle,
                classification: None,
                measurements: vec![],
            };
            let value = to_geojson(&[object], GeometryKind::Polygon, ObjectType::Detection);
            prop_assert_eq!(validate_geojson(&value.unwrap()), Ok(()));
        }
    }
}
