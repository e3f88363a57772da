"""Full-size Segment Anything checkpoints with seeded random weights.

    tests/reference/.venv/bin/python tests/reference/make_random_checkpoints.py OUT_DIR \
        [--sizes vit_b,vit_l,vit_h] [--force]

Writes OUT_DIR/sam_<size>_random.pth for each size: the state dict of
`segment_anything.sam_model_registry[size]()` built after `torch.manual_seed(0)` (the package's
own default initialisation), saved with `torch.save(sam.state_dict(), ...)`, i.e. exactly the key
layout of the official checkpoints (sam_vit_b_01ec64.pth and friends). The Rust benchmarks load
these files so that both sides run the very same weights. Existing files are kept unless --force.

bench_reference.py imports `random_sam` from here.
"""

import argparse
import logging
import os
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

SIZES = ("vit_b", "vit_l", "vit_h")
SEED = 0

log = logging.getLogger("make_random_checkpoints")


def checkpoint_path(out_dir: Path, size: str) -> Path:
    """Where the random checkpoint of `size` lives in `out_dir`."""
    return out_dir / f"sam_{size}_random.pth"


def build_random_sam(size: str) -> Sam:
    """SAM `size` with the package's default initialisation under torch.manual_seed(SEED)."""
    torch.manual_seed(SEED)
    return sam_model_registry[size](checkpoint=None).eval()


def save_state_dict(sam: Sam, path: Path) -> None:
    """Saves `sam.state_dict()` to `path` through a temporary file.

    state_dict() returns references to the live parameters and torch.save streams each storage
    into the zip archive, so even ViT-H (~2.5 GB) is never held twice in memory. The rename makes
    an interrupted run leave no truncated checkpoint behind to be reused later.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(sam.state_dict(), tmp)
    os.replace(tmp, path)


def random_sam(size: str, out_dir: Path) -> Sam:
    """The random SAM `size` whose weights are in `out_dir`, writing the checkpoint if missing.

    When the checkpoint exists it is loaded (memory-mapped, and assigned in place of the freshly
    initialised tensors, which are then freed), so the model runs exactly the weights in the
    file even if that was written by another torch version.
    """
    path = checkpoint_path(out_dir, size)
    sam = build_random_sam(size)
    if path.exists():
        log.info("loading %s", path)
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        sam.load_state_dict(state, assign=True)
    else:
        log.info("writing %s", path)
        save_state_dict(sam, path)
    return sam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder that receives sam_<size>_random.pth")
    parser.add_argument(
        "--sizes",
        default=",".join(SIZES),
        help=f"comma-separated subset of {','.join(SIZES)} (default: all)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {SIZES}")

    for size in sizes:
        path = checkpoint_path(args.out_dir, size)
        if path.exists() and not args.force:
            log.info("%s exists, kept (use --force to rewrite)", path)
            continue
        sam = build_random_sam(size)
        save_state_dict(sam, path)
        del sam  # free this size before building the next one
        log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
