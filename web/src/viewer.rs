//! The image viewer: the field drawn once to an off-page canvas, shown through a zoom-and-pan
//! transform with the detections' mask outlines on top, and the crop thumbnails of the review
//! list.
//!
//! Each frame is one `drawImage` of the off-page canvas under the current transform plus the
//! outlines, whose polygons are computed once per proposal, so zooming and panning a
//! 4000 x 3000 field costs no decoding.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use mitoscope_core::crop::{CROP, crop};
use mitoscope_core::export::mask_polygons;
use web_sys::HtmlCanvasElement;

use crate::dom::{context_2d, rgb_canvas, rgb_data_url};
use crate::review::{Decision, Item, Review};

/// The decoded field.
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB, three bytes a pixel, for the crops.
    pub rgb: Rc<Vec<u8>>,
    /// The field drawn once.
    canvas: HtmlCanvasElement,
}

thread_local! {
    static PICTURE: RefCell<Option<Picture>> = const { RefCell::new(None) };
    /// The outline rings of each proposal, by id, in image pixels.
    static OUTLINES: RefCell<HashMap<u64, Vec<Vec<[f64; 2]>>>> = RefCell::new(HashMap::new());
    /// The crop thumbnails of the review list, by id, as data URLs.
    static THUMBNAILS: RefCell<HashMap<u64, String>> = RefCell::new(HashMap::new());
}

/// Screen position = image position * `scale` + (`x`, `y`), in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Canvas pixels per image pixel.
    pub scale: f64,
    /// Horizontal offset.
    pub x: f64,
    /// Vertical offset.
    pub y: f64,
}

impl Default for View {
    fn default() -> Self {
        Self {
            scale: 1.0,
            x: 0.0,
            y: 0.0,
        }
    }
}

impl View {
    /// The view that shows the whole picture centred in a `width` x `height` canvas.
    pub fn fit(picture: (u32, u32), width: f64, height: f64) -> Self {
        let (pw, ph) = (f64::from(picture.0.max(1)), f64::from(picture.1.max(1)));
        let scale = (width / pw).min(height / ph);
        Self {
            scale,
            x: (width - pw * scale) / 2.0,
            y: (height - ph * scale) / 2.0,
        }
    }

    /// Zooms by `factor` keeping the canvas point (`cx`, `cy`) fixed.
    pub fn zoom(self, factor: f64, cx: f64, cy: f64) -> Self {
        let scale = (self.scale * factor).clamp(0.01, 64.0);
        let factor = scale / self.scale;
        Self {
            scale,
            x: cx - (cx - self.x) * factor,
            y: cy - (cy - self.y) * factor,
        }
    }

    /// Moves by (`dx`, `dy`) canvas pixels.
    pub fn pan(self, dx: f64, dy: f64) -> Self {
        Self {
            x: self.x + dx,
            y: self.y + dy,
            ..self
        }
    }
}

/// A picture with its outlines and thumbnails, put aside by [`set_picture`] so that a job that
/// fails before it starts can bring the previous review back ([`restore`]).
pub struct Saved {
    picture: Option<Picture>,
    outlines: HashMap<u64, Vec<Vec<[f64; 2]>>>,
    thumbnails: HashMap<u64, String>,
}

/// Replaces the picture (with no outlines or thumbnails yet) and returns the previous one.
///
/// # Errors
///
/// A message when the browser cannot hold the image; the previous picture then stays.
pub fn set_picture(rgb: Vec<u8>, width: u32, height: u32) -> Result<Saved, String> {
    let canvas = rgb_canvas(&rgb, width, height)?;
    let picture = PICTURE.with_borrow_mut(|p| {
        p.replace(Picture {
            width,
            height,
            rgb: Rc::new(rgb),
            canvas,
        })
    });
    Ok(Saved {
        picture,
        outlines: OUTLINES.with_borrow_mut(std::mem::take),
        thumbnails: THUMBNAILS.with_borrow_mut(std::mem::take),
    })
}

/// Brings back a picture put aside by [`set_picture`].
pub fn restore(saved: Saved) {
    PICTURE.with_borrow_mut(|p| *p = saved.picture);
    OUTLINES.with_borrow_mut(|o| *o = saved.outlines);
    THUMBNAILS.with_borrow_mut(|t| *t = saved.thumbnails);
}

/// The picture's size and pixels.
pub fn picture() -> Option<(u32, u32, Rc<Vec<u8>>)> {
    PICTURE.with_borrow(|p| p.as_ref().map(|p| (p.width, p.height, Rc::clone(&p.rgb))))
}

/// Computes the outlines of new `items` once.
pub fn add_outlines(items: &[Item]) {
    OUTLINES.with_borrow_mut(|outlines| {
        for item in items {
            let rings = mask_polygons(&item.mask)
                .map(|polygons| {
                    polygons
                        .into_iter()
                        .flat_map(|p| std::iter::once(p.exterior).chain(p.holes))
                        .collect()
                })
                .unwrap_or_default();
            outlines.insert(item.id, rings);
        }
    });
}

/// The colour of a counted outline: yellow at the threshold to red at probability 1.
fn colour(probability: f32, threshold: f64) -> String {
    let t = ((f64::from(probability) - threshold) / (1.0 - threshold).max(1e-6)).clamp(0.0, 1.0);
    format!("rgb(255, {}, 0)", (220.0 * (1.0 - t)).round())
}

/// Draws the picture and the outlines of the `listed` items of `review` (the ids of
/// [`Review::listed`]) on `canvas` under `view`; `selected` gets a wider outline.
pub fn draw(
    canvas: &HtmlCanvasElement,
    view: View,
    review: &Review,
    listed: &HashSet<u64>,
    selected: Option<u64>,
) {
    let Ok(context) = context_2d(canvas) else {
        return;
    };
    let (w, h) = (canvas.client_width().max(1), canvas.client_height().max(1));
    if canvas.width() != w as u32 || canvas.height() != h as u32 {
        canvas.set_width(w as u32);
        canvas.set_height(h as u32);
    }
    let _ = context.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0);
    context.set_fill_style_str("#2b2b2b");
    context.fill_rect(0.0, 0.0, f64::from(w), f64::from(h));
    PICTURE.with_borrow(|picture| {
        let Some(picture) = picture else {
            return;
        };
        let _ = context.set_transform(view.scale, 0.0, 0.0, view.scale, view.x, view.y);
        context.set_image_smoothing_enabled(view.scale < 2.0);
        let _ = context.draw_image_with_html_canvas_element(&picture.canvas, 0.0, 0.0);
    });
    OUTLINES.with_borrow(|outlines| {
        for item in &review.items {
            let (Some(rings), true) = (outlines.get(&item.id), listed.contains(&item.id)) else {
                continue;
            };
            let (style, dashed) = match item.decision {
                Decision::Accepted => ("rgb(0, 200, 83)".to_owned(), false),
                Decision::Rejected => ("rgba(170, 170, 170, 0.9)".to_owned(), true),
                Decision::Undecided => (
                    colour(item.probability.unwrap_or(1.0), review.threshold),
                    false,
                ),
            };
            let width = if selected == Some(item.id) { 4.0 } else { 2.0 };
            context.set_line_width(width / view.scale);
            context.set_stroke_style_str(&style);
            let dash = js_sys::Array::new();
            if dashed {
                dash.push(&(4.0 / view.scale).into());
                dash.push(&(3.0 / view.scale).into());
            }
            let _ = context.set_line_dash(&dash);
            context.begin_path();
            for ring in rings {
                for (i, [x, y]) in ring.iter().enumerate() {
                    if i == 0 {
                        context.move_to(*x, *y);
                    } else {
                        context.line_to(*x, *y);
                    }
                }
                context.close_path();
            }
            context.stroke();
        }
    });
    let _ = context.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0);
}

/// The crop thumbnail of `item`: the classifier's 64 x 64 input, as a data URL, made once.
pub fn thumbnail(item: &Item) -> String {
    if let Some(url) = THUMBNAILS.with_borrow(|t| t.get(&item.id).cloned()) {
        return url;
    }
    let Some((width, height, rgb)) = picture() else {
        return String::new();
    };
    let url = crop(&rgb, width, height, &item.mask)
        .ok()
        .and_then(|c| rgb_data_url(&c.rgb, CROP, CROP).ok())
        .unwrap_or_default();
    THUMBNAILS.with_borrow_mut(|t| t.insert(item.id, url.clone()));
    url
}
