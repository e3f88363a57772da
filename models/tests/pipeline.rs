//! The proposal stage on whole images (`pipeline::propose_image`) with the embedded LiteMedSAM:
//! one tile equals the tile-level stage, small images are padded and their masks clipped, blank
//! images give nothing, a callback can cancel, bad settings are refused.

use std::ops::ControlFlow;
use std::path::Path;

use burn::prelude::*;
use mitoscope_core::{ProposalSettings, rle};
use mitoscope_models::ModelError;
use mitoscope_models::pipeline::propose_image;
use mitoscope_models::proposals::{propose_counted, tile_prompts};
use mitoscope_models::sam::{RgbImage, Sam};

const MPP: f64 = 0.25;

fn tile() -> RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/proposals_lite_medsam/tile.png");
    let image = image::open(path).expect("fixture tile").to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    RgbImage::new(w, h, image.into_raw()).unwrap()
}

fn crop(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let at = 3 * y * image.width;
        pixels.extend_from_slice(&image.pixels[at..at + 3 * width]);
    }
    RgbImage::new(width, height, pixels).unwrap()
}

fn all(_: &mitoscope_models::pipeline::TileDone<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[test]
fn one_tile_images_equal_the_tile_stage() {
    let device = Device::flex();
    let sam = Sam::embedded(&device).unwrap();
    let settings = sam.config().default_proposal_settings();
    let image = tile();

    let whole = propose_image(&sam, &image, &settings, MPP, all).unwrap();
    assert_eq!((whole.tiles_total, whole.tiles_analysed), (1, 1));
    assert_eq!(whole.analysed_pixels, 256 * 256);

    let prompts = tile_prompts(&settings, &image, MPP).unwrap();
    let (direct, counts) =
        propose_counted(&sam, &sam.embed(&image), &prompts, &settings, MPP).unwrap();
    assert_eq!(whole.counts, counts);
    let ours: Vec<_> = whole.proposals.iter().map(|p| p.proposal.clone()).collect();
    assert_eq!(ours, direct);
    let ids: Vec<u64> = whole.proposals.iter().map(|p| p.id).collect();
    assert_eq!(ids, (0..direct.len() as u64).collect::<Vec<_>>());
}

#[test]
fn small_images_are_padded_and_masks_clipped() {
    let device = Device::flex();
    let sam = Sam::embedded(&device).unwrap();
    let settings = sam.config().default_proposal_settings();
    let small = crop(&tile(), 200, 150);
    let result = propose_image(&sam, &small, &settings, MPP, all).unwrap();
    assert_eq!(result.analysed_pixels, 200 * 150);
    assert!(!result.proposals.is_empty());
    for p in &result.proposals {
        let p = &p.proposal;
        assert!(p.bbox.x1() < 200 && p.bbox.y1() < 150, "{:?}", p.bbox);
        // The runs describe the box exactly and the areas follow the clipped mask.
        let mask = rle::decode(&p.mask, 200, 150).unwrap();
        assert_eq!(mitoscope_core::mask_area(&mask), p.mask_area);
        assert_eq!(mitoscope_core::mask_to_box(&mask), Some(p.bbox));
        assert_eq!(mitoscope_core::box_area(&p.bbox), p.box_area);
    }
}

#[test]
fn blank_images_give_no_proposals() {
    let device = Device::flex();
    let sam = Sam::embedded(&device).unwrap();
    let settings = sam.config().default_proposal_settings();
    for value in [255u8, 0] {
        let blank = RgbImage::new(300, 300, vec![value; 300 * 300 * 3]).unwrap();
        let result = propose_image(&sam, &blank, &settings, MPP, all).unwrap();
        assert!(result.proposals.is_empty(), "value {value}");
    }
}

#[test]
fn the_callback_cancels_and_bad_settings_are_refused() {
    let device = Device::flex();
    let sam = Sam::embedded(&device).unwrap();
    let settings = sam.config().default_proposal_settings();
    // 400 x 400 px: origins 0 and 144 on each axis, four tiles of tissue.
    let mut pixels = Vec::new();
    let image = tile();
    for y in 0..400 {
        for x in 0..400 {
            let at = 3 * ((y % 256) * 256 + x % 256);
            pixels.extend_from_slice(&image.pixels[at..at + 3]);
        }
    }
    let big = RgbImage::new(400, 400, pixels).unwrap();
    let mut calls = 0;
    let result = propose_image(&sam, &big, &settings, MPP, |done| {
        calls += 1;
        assert_eq!((done.done, done.total), (1, 4));
        ControlFlow::Break(())
    });
    assert!(matches!(result, Err(ModelError::Cancelled)), "{result:?}");
    assert_eq!(calls, 1);

    let wrong_tile = ProposalSettings {
        tile_size: 1024,
        ..settings.clone()
    };
    let err = propose_image(&sam, &big, &wrong_tile, MPP, all).unwrap_err();
    assert!(err.to_string().contains("input size 256"), "{err}");
    for mpp in [0.0, 3.0, f64::NAN] {
        assert!(matches!(
            propose_image(&sam, &big, &settings, mpp, all),
            Err(ModelError::InvalidInput(_))
        ));
    }
}
