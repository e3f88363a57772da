"""The reference side of `cargo bench -p mitoscope-models --bench proposals`: the proposal stage
in PyTorch on one field, timed, with the process's peak resident memory.

    tests/reference/.venv/bin/python tests/reference/bench_proposals.py CASE IMAGE [WEIGHTS]

CASE:
  lite      the embedded default as Mitoscope runs it (ProposalSettings::lite_medsam): LiteMedSAM
            on 256 px tiles overlapping by 64 px (the tile origins of mitoscope-core's
            `start_points`), per tile the encoder, the haematoxylin seeds, one 32 px box prompt
            per seed, single-mask decoding, IoU > 0.5, box area 36..3600 px^2, box NMS 0.1
            (make_proposal_fixture.generate with seed prompts).
  grid32    OMG-Net's proposal stage (Models/SAM_Masking.py as make_proposal_fixture.generate
  grid64    re-implements it) with SAM ViT-B: the image white-padded to one 1024 px tile, a point
            grid of 32 (or 64) per side, batches of 64, multimask, IoU > 0.8, stability > 0.8.
            WEIGHTS is the ViT-B checkpoint (make_random_checkpoints.py).

Prints one JSON line: {"case", "seconds", "peak_rss_mb", "proposals", "tiles"}. Two CPU threads,
as the machine the benchmark documents; the weights load outside the timed part.
"""

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_proposal_fixture import COMMON, MODELS, REFERENCE, Net, generate, seed_prompts  # noqa: E402

TILE, OVERLAP = 256, 64


def start_points(length: int, tile: int, overlap: int) -> list[int]:
    """mitoscope-core's tiles::start_points."""
    if length <= tile:
        return [0]
    stride, last = tile - overlap, length - tile
    return [s for s in range(0, last, stride)] + [last]


def lite(image: np.ndarray) -> tuple[int, int, float]:
    net = Net("lite_medsam_seeds")
    st = MODELS["lite_medsam_seeds"]["settings"]
    started = time.perf_counter()
    h, w = image.shape[:2]
    origins = [(x, y) for y in start_points(h, TILE, OVERLAP) for x in start_points(w, TILE, OVERLAP)]
    found = 0
    for x, y in origins:
        tile = np.full((TILE, TILE, 3), 255, np.uint8)
        part = image[y:y + TILE, x:x + TILE]
        tile[: part.shape[0], : part.shape[1]] = part
        with torch.no_grad():
            features = net.features(tile)
        _, prompts, _ = seed_prompts(tile, TILE)
        data, counts, _ = generate(net, features, st, prompts)
        found += counts["after_nms"]
    return found, len(origins), time.perf_counter() - started


def grid(image: np.ndarray, weights: Path, points: int) -> tuple[int, int, float]:
    from segment_anything import sam_model_registry

    sam = sam_model_registry["vit_b"]()
    sam.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    sam.eval()
    net = Net.__new__(Net)
    net.name, net.net, net.size = "sam_tiny", sam, 1024  # "sam_tiny": SAM's own preprocessing
    net.prompt_encoder, net.mask_decoder = sam.prompt_encoder, sam.mask_decoder
    tile = np.full((1024, 1024, 3), 255, np.uint8)
    part = image[:1024, :1024]
    tile[: part.shape[0], : part.shape[1]] = part
    st = {**REFERENCE, "points_per_side": points, "points_per_batch": COMMON["points_per_batch"]}
    started = time.perf_counter()
    with torch.no_grad():
        features = net.features(tile)
    data, counts, _ = generate(net, features, st)
    return counts["after_nms"], 1, time.perf_counter() - started


def main() -> None:
    case, image_path = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(2)
    image = np.asarray(Image.open(image_path).convert("RGB"))
    if case == "lite":
        proposals, tiles, seconds = lite(image)
    elif case in ("grid32", "grid64"):
        proposals, tiles, seconds = grid(image, Path(sys.argv[3]), int(case[4:]))
    else:
        raise SystemExit(f"unknown case {case}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": case, "seconds": seconds, "peak_rss_mb": peak,
                      "proposals": proposals, "tiles": tiles}))


if __name__ == "__main__":
    main()
