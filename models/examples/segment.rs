//! Segments one object in an image from a point or a box prompt, with the embedded LiteMedSAM
//! or a published SAM checkpoint, and writes the mask as a PNG.
//!
//! ```text
//! cargo run -p mitoscope-models --example segment -- IMAGE (--point X,Y | --box X0,Y0,X1,Y1) \
//!     [--sam sam_vit_h_4b8939.pth] [--out mask.png]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::prelude::*;
use mitoscope_models::sam::{Prompt, RgbImage, Sam};

// burn allocates a fresh buffer for nearly every operation: mimalloc reuses them where the system
// allocator returns large ones to the kernel and faults them in again (measured: ViT-B encoder
// 15.5 s -> 13.9 s; with `MIMALLOC_PURGE_DELAY=-1` in the environment, 9.1 s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn numbers<const N: usize>(flag: &str, text: &str) -> anyhow::Result<[f32; N]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} takes {N} comma-separated numbers, got `{text}`"))?;
    values
        .try_into()
        .map_err(|_| anyhow::anyhow!("{flag} takes {N} comma-separated numbers, got `{text}`"))
}

fn main() -> anyhow::Result<()> {
    let mut image_path = None;
    let mut prompt = None;
    let mut sam_path: Option<PathBuf> = None;
    let mut out = PathBuf::from("mask.png");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--point" => {
                let [x, y] = numbers("--point", &value()?)?;
                prompt = Some(Prompt::point(x, y));
            }
            "--box" => {
                let [x0, y0, x1, y1] = numbers("--box", &value()?)?;
                prompt = Some(Prompt::bbox(x0, y0, x1, y1));
            }
            "--sam" => sam_path = Some(value()?.into()),
            "--out" => out = value()?.into(),
            other if !other.starts_with("--") && image_path.is_none() => {
                image_path = Some(PathBuf::from(other));
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    let (Some(image_path), Some(prompt)) = (image_path, prompt) else {
        bail!(
            "usage: segment IMAGE (--point X,Y | --box X0,Y0,X1,Y1) [--sam CHECKPOINT] [--out mask.png]"
        );
    };

    let decoded = image::open(&image_path)
        .with_context(|| format!("cannot read the image {}", image_path.display()))?
        .to_rgb8();
    let (width, height) = (decoded.width(), decoded.height());
    let image = RgbImage::new(width as usize, height as usize, decoded.into_raw())?;

    let device = Device::flex();
    let start = Instant::now();
    let sam = match &sam_path {
        Some(path) => Sam::load(path, &device)?,
        None => Sam::embedded(&device)?,
    };
    eprintln!(
        "{} loaded in {:.1} s",
        sam.config().name,
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let embedding = sam.embed(&image);
    eprintln!("image embedded in {:.1} s", start.elapsed().as_secs_f64());
    // As SAM advises: three candidate masks for an ambiguous single point, one for a box.
    let multimask = prompt.bbox.is_none();
    let prediction = sam.predict(&embedding, &[prompt], multimask)?;

    // The mask with the highest predicted IoU, thresholded at logit 0.
    let iou = prediction.iou.clone().into_data().try_into_vec::<f32>()?;
    let best = (0..iou.len())
        .max_by(|&a, &b| iou[a].total_cmp(&iou[b]))
        .unwrap_or(0);
    let logits = sam.upscale_masks(prediction.low_res_logits, &embedding);
    let [_, masks, h, w] = logits.dims();
    let mask = logits
        .slice([0..1, best..best + 1, 0..h, 0..w])
        .into_data()
        .try_into_vec::<f32>()?;
    let pixels: Vec<u8> = mask
        .iter()
        .map(|&v| if v > 0.0 { 255 } else { 0 })
        .collect();
    let area = pixels.iter().filter(|&&p| p > 0).count();
    image::GrayImage::from_raw(width, height, pixels)
        .context("mask size")?
        .save(&out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "mask {} of {masks}: predicted IoU {:.3}, {area} px, written to {}",
        best + 1,
        iou[best],
        out.display()
    );
    Ok(())
}
