//! Small helpers over the browser's API: time, sleeping, the URL, files and downloads.

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag, HtmlAnchorElement, HtmlCanvasElement, Url};

/// The page's window (always there in the app).
pub fn window() -> web_sys::Window {
    web_sys::window().expect("the app runs in a browser window")
}

/// Milliseconds since the page started loading (`performance.now()`).
pub fn now_ms() -> f64 {
    window().performance().map_or(0.0, |p| p.now())
}

/// Waits `ms` milliseconds, letting the browser paint and handle input meanwhile.
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// The value of query parameter `name` in the page's URL.
pub fn query_param(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// Whether the browser exposes WebGPU (`navigator.gpu`).
pub fn has_webgpu() -> bool {
    js_sys::Reflect::get(&window().navigator(), &JsValue::from_str("gpu"))
        .is_ok_and(|gpu| !gpu.is_undefined() && !gpu.is_null())
}

/// The bytes of a file the user chose.
///
/// # Errors
///
/// A message when the browser cannot read the file.
pub async fn file_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|err| format!("the file could not be read ({})", describe(&err)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Offers `text` to the user as a download named `name`.
pub fn download(name: &str, text: &str, mime: &str) -> Result<(), String> {
    let parts = Array::of1(&JsValue::from_str(text));
    let options = BlobPropertyBag::new();
    options.set_type(mime);
    let blob =
        Blob::new_with_str_sequence_and_options(&parts, &options).map_err(|err| describe(&err))?;
    let url = Url::create_object_url_with_blob(&blob).map_err(|err| describe(&err))?;
    let document = window().document().ok_or("no document")?;
    let anchor: HtmlAnchorElement = document
        .create_element("a")
        .map_err(|err| describe(&err))?
        .unchecked_into();
    anchor.set_href(&url);
    anchor.set_download(name);
    anchor.click();
    let _ = Url::revoke_object_url(&url);
    Ok(())
}

/// A canvas element that is not in the page.
pub fn offscreen_canvas(width: u32, height: u32) -> Result<HtmlCanvasElement, String> {
    let document = window().document().ok_or("no document")?;
    let canvas: HtmlCanvasElement = document
        .create_element("canvas")
        .map_err(|err| describe(&err))?
        .unchecked_into();
    canvas.set_width(width);
    canvas.set_height(height);
    Ok(canvas)
}

/// The 2D context of `canvas`.
pub fn context_2d(canvas: &HtmlCanvasElement) -> Result<web_sys::CanvasRenderingContext2d, String> {
    canvas
        .get_context("2d")
        .map_err(|err| describe(&err))?
        .ok_or_else(|| "the canvas has no 2D context".to_owned())
        .map(JsCast::unchecked_into)
}

/// Draws `rgb` (three bytes a pixel) on a new off-page canvas of `width` x `height`.
///
/// # Errors
///
/// A message when the browser refuses the canvas (too large for its memory).
pub fn rgb_canvas(rgb: &[u8], width: u32, height: u32) -> Result<HtmlCanvasElement, String> {
    let canvas = offscreen_canvas(width, height)?;
    let context = context_2d(&canvas)?;
    let mut rgba = Vec::with_capacity(rgb.len() / 3 * 4);
    for pixel in rgb.chunks_exact(3) {
        rgba.extend_from_slice(&[pixel[0], pixel[1], pixel[2], 255]);
    }
    let data = web_sys::ImageData::new_with_u8_clamped_array_and_sh(
        wasm_bindgen::Clamped(&rgba),
        width,
        height,
    )
    .map_err(|err| format!("the browser could not hold the image ({})", describe(&err)))?;
    context
        .put_image_data(&data, 0.0, 0.0)
        .map_err(|err| describe(&err))?;
    Ok(canvas)
}

/// A PNG data URL of `rgb` (three bytes a pixel), for thumbnails.
pub fn rgb_data_url(rgb: &[u8], width: u32, height: u32) -> Result<String, String> {
    rgb_canvas(rgb, width, height)?
        .to_data_url()
        .map_err(|err| describe(&err))
}

/// A JavaScript error or value as text.
pub fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
