"""Golden fixture for the Rust port of OMG-Net's mask-aware ResNet18 classifier.

    tests/reference/.venv/bin/python tests/reference/make_classifier_fixture.py

Writes, deterministically, into tests/fixtures/classifier/:

  classifier.ckpt       the network with seeded random weights, stored in float16 as a PyTorch
                        Lightning checkpoint: the weights under `state_dict` with the key names of
                        OMG-Net's `Classifier` (`backbone.`, `mask_encoder.`, `encoder_4d.`,
                        `loss_fcn.`), beside the entries Lightning adds (`epoch`,
                        `hyper_parameters`, a trimmed `optimizer_states`, `callbacks`...);
  four_channel.ckpt     a few kilobytes: `hyper_parameters` saying `Input_Type = "4_Channel"`
                        (the reference's other input mode, which Mitoscope refuses) and one tensor;
  imagenet_head.pth     a few kilobytes: the first keys of a bare torchvision resnet18 state
                        dict with ImageNet's 1000-class head, which Mitoscope refuses;
  outputs.safetensors   16 crops of a real H&E tile, the network's input and its outputs;
  config.json           where the crops come from and how the weights were drawn.

The crops are cut around the first 16 proposals of
tests/fixtures/proposals_lite_medsam_seeds/proposals.json on their tile
(tests/fixtures/proposals_lite_medsam/tile.png) exactly as mitoscope_core::crop does and as
OMG-Net's inference does: centre ((x0 + x1) // 2, (y0 + y1) // 2) on the inclusive box, window
[c - 32, c + 32) on each axis, zeros outside the tile. setup.sh must have been run first. Runs on
one CPU thread so the numbers do not depend on the machine's thread count.
"""

import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.numpy import save_file
from segment_anything.utils.amg import rle_to_mask
from torch import nn
from torchvision.transforms.functional import normalize, to_tensor

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
OUT = FIXTURES / "classifier"
TILE = FIXTURES / "proposals_lite_medsam" / "tile.png"
PROPOSALS = FIXTURES / "proposals_lite_medsam_seeds" / "proposals.json"

SEED = 0
CROPS = 16
SIDE = 64
# ImageNet statistics, as OMG-Net's CellClassification normalises its crops.
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# The head's weights are drawn this many times wider than PyTorch's default, so that the logits
# (a few units) and the probabilities (spread over (0, 1)) are far from trivial.
FC_GAIN = 4.0

# `hyper_parameters` as OMG-Net's Lightning module saves them (`save_hyperparameters()` on
# `__init__(config, label_encoder=None)`), with the values of Configs/SAM_Classifier_config.ini
# that matter to inference.
BASEMODEL = {
    "Mask_Input": True,
    "Input_Type": "3_Channel",
    "Activation": "Identity",
    "Backbone": "resnet18",
    "Loss_Function": "CrossEntropyLoss",
    "Precision": "16-mixed",
}
DATA = {"Input_Size": [64, 64], "Num_of_Classes": 2, "weights": [0.5, 0.5]}
REGULARIZATION = {"Label_Smoothing": 0.03}


class ReferenceClassifier(nn.Module):
    """The module tree of OMG-Net's `Classifier` (Models/SAM_Classifier.py, a LightningModule
    there) and its inference forward with `Mask_Input = true` and `Input_Type = "3_Channel"`.

    Attributes are created in the reference's order, so the state dict lists the same keys in
    the same order: `loss_fcn.weight`, `backbone.*`, `mask_encoder.*`, `encoder_4d.weight`.
    """

    def __init__(self) -> None:
        super().__init__()
        # The class weights make CrossEntropyLoss hold a `weight` buffer, saved in the state dict.
        self.loss_fcn = nn.CrossEntropyLoss(
            weight=torch.tensor(DATA["weights"], dtype=torch.float32),
            label_smoothing=REGULARIZATION["Label_Smoothing"],
        )
        self.activation = nn.Identity()
        # The reference takes torchvision's ImageNet weights and swaps `fc` for a 2-class layer:
        # the same module tree as resnet18(num_classes=2).
        self.backbone = torchvision.models.resnet18(num_classes=DATA["Num_of_Classes"])
        self.mask_encoder = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=True)
        # Used only with Input_Type = "4_Channel", but always built, so always in the checkpoint.
        self.encoder_4d = nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def forward(self, img: torch.Tensor, msk: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        # The mask's encoding joins the image's first convolution before the first batch norm.
        x = b.conv1(img) + self.mask_encoder(msk)
        x = b.maxpool(b.relu(b.bn1(x)))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        # Global average over height, then width (the reference's two means, not b.avgpool).
        x = x.mean(dim=2).mean(dim=2)
        return self.activation(b.fc(x))


def cut_crops(tile: np.ndarray, proposals: list[dict]) -> tuple[np.ndarray, np.ndarray, list]:
    """The RGB crops uint8 [n, 64, 64, 3], mask crops uint8 [n, 64, 64] and crop centres."""
    half = SIDE // 2
    height, width, _ = tile.shape
    padded_tile = np.zeros((height + SIDE, width + SIDE, 3), dtype=np.uint8)
    padded_tile[half : half + height, half : half + width] = tile
    rgbs, masks, centres = [], [], []
    for proposal in proposals:
        x0, y0, x1, y1 = proposal["box"]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        mask = rle_to_mask(proposal["rle"]).astype(np.uint8)
        padded_mask = np.zeros((height + SIDE, width + SIDE), dtype=np.uint8)
        padded_mask[half : half + height, half : half + width] = mask
        # Window [c - 32, c + 32) in tile coordinates is [c, c + 64) in padded coordinates.
        rgbs.append(padded_tile[cy : cy + SIDE, cx : cx + SIDE])
        masks.append(padded_mask[cy : cy + SIDE, cx : cx + SIDE])
        centres.append([cx, cy])
    return np.stack(rgbs), np.stack(masks), centres


def network_input(rgbs: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's input as OMG-Net's inference builds it: ToTensor (/255), ImageNet
    normalisation, and the mask as 0/1 floats."""
    img = torch.stack([normalize(to_tensor(rgb), MEAN, STD) for rgb in rgbs])
    msk = torch.from_numpy(masks.astype(np.float32)).unsqueeze(1)
    return img, msk


def randomise(model: ReferenceClassifier, img: torch.Tensor, msk: torch.Tensor) -> None:
    """Seeded weights where nothing is 0 or 1: PyTorch's initialisation, a wider head, batch-norm
    statistics measured on the crops (so activations keep their scale through the 8 blocks) and
    then perturbed, and affine parameters around 1 and 0."""
    with torch.no_grad():
        model.backbone.fc.weight.mul_(FC_GAIN)
        model.backbone.fc.bias.uniform_(-0.5, 0.5)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        # Cumulative averages over one pass in training mode: the crops' own statistics.
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        model(img, msk)
        model.eval()
        for norm in norms:
            n = norm.num_features
            norm.momentum = 0.1
            norm.running_mean.add_(0.2 * norm.running_var.sqrt() * torch.randn(n))
            norm.running_var.mul_(torch.empty(n).uniform_(0.7, 1.4))
            norm.weight.copy_(torch.empty(n).uniform_(0.6, 1.4))
            norm.bias.copy_(0.2 * torch.randn(n))


def round_to_f16(model: nn.Module) -> None:
    """Rounds every float parameter and buffer to float16 and back, so that the reference
    outputs come from exactly the weights the float16 checkpoint holds."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def lightning_checkpoint(model: ReferenceClassifier) -> dict:
    """A checkpoint with the entries PyTorch Lightning 2 writes, weights in float16."""
    state_dict = {
        key: value.half() if value.is_floating_point() else value
        for key, value in model.state_dict().items()
    }
    conv1 = state_dict["backbone.conv1.weight"]
    monitor = (
        "ModelCheckpoint{'monitor': 'val_loss_epoch', 'mode': 'min', 'every_n_train_steps': 0,"
        " 'every_n_epochs': 1, 'train_time_interval': None}"
    )
    return {
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 0}}}},
        "callbacks": {
            monitor: {
                "monitor": "val_loss_epoch",
                "best_model_score": torch.tensor(0.25),
                "best_model_path": "lightning_logs/epoch=00.ckpt",
                "best_k_models": {"lightning_logs/epoch=00.ckpt": torch.tensor(0.25)},
                "kth_value": torch.tensor(0.25),
            }
        },
        # Trimmed to the first parameter: AdamW keeps two moments per parameter (twice the
        # weights), which add nothing to what the reader has to cope with.
        "optimizer_states": [
            {
                "state": {
                    0: {
                        "step": torch.tensor(1.0),
                        "exp_avg": torch.zeros_like(conv1),
                        "exp_avg_sq": torch.zeros_like(conv1),
                    }
                },
                "param_groups": [
                    {
                        "lr": 1e-4,
                        "betas": (0.9, 0.999),
                        "eps": 1e-7,
                        "weight_decay": 1e-4,
                        "amsgrad": False,
                        "params": [0],
                    }
                ],
            }
        ],
        "lr_schedulers": [{"T_max": 50, "eta_min": 0.0, "base_lrs": [1e-4], "last_epoch": 1}],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "config": {"BASEMODEL": BASEMODEL, "DATA": DATA, "REGULARIZATION": REGULARIZATION},
            "label_encoder": None,
        },
    }


def four_channel_checkpoint(model: ReferenceClassifier) -> dict:
    """A checkpoint whose hyper-parameters select the 4-channel input: one tensor only, since
    the loader refuses it before reading any weight."""
    config = {"BASEMODEL": {**BASEMODEL, "Input_Type": "4_Channel"}, "DATA": DATA}
    return {
        "epoch": 0,
        "state_dict": {"encoder_4d.weight": model.encoder_4d.weight.detach().half()},
        "hyper_parameters": {"config": config, "label_encoder": None},
    }


def imagenet_head_state_dict(model: ReferenceClassifier) -> dict:
    """The keys of a bare torchvision resnet18 state dict that the loader reads before it
    refuses a 1000-class (ImageNet) head: `conv1.weight` and the head. The head's weight is a
    broadcast view of one value (PyTorch saves the single-element storage and the strides), so
    the file stays at a few kilobytes; only its shape is ever read."""
    return {
        "conv1.weight": model.backbone.conv1.weight.detach().half(),
        "fc.weight": torch.full((), 0.01, dtype=torch.float16).expand(1000, 512),
        "fc.bias": torch.zeros(1000, dtype=torch.float16),
    }


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    with Image.open(TILE) as image:
        tile = np.array(image.convert("RGB"), dtype=np.uint8)
    proposals = json.loads(PROPOSALS.read_text())["proposals"][:CROPS]
    rgbs, masks, centres = cut_crops(tile, proposals)
    img, msk = network_input(rgbs, masks)

    torch.manual_seed(SEED)
    model = ReferenceClassifier()
    randomise(model, img, msk)
    round_to_f16(model)
    model.eval()

    with torch.no_grad():
        logits = model(img, msk)
        probabilities = torch.softmax(logits, dim=1)[:, 1]
        # torchvision's own forward (avgpool, flatten, fc) of the backbone alone: what a bare
        # resnet18 state dict computes, the reference with Mask_Input = false.
        logits_no_mask = model.backbone(img)

    torch.save(lightning_checkpoint(model), OUT / "classifier.ckpt")
    torch.save(four_channel_checkpoint(model), OUT / "four_channel.ckpt")
    torch.save(imagenet_head_state_dict(model), OUT / "imagenet_head.pth")
    outputs = {
        "rgb": rgbs,
        "mask": masks,
        "input": img.numpy(),
        "logits": logits.numpy(),
        "probabilities": probabilities.numpy(),
        "logits_no_mask": logits_no_mask.numpy(),
    }
    # safetensors writes an array's buffer as it lies: views (a column of the softmax) must be
    # made contiguous first.
    outputs = {key: np.ascontiguousarray(value) for key, value in outputs.items()}
    save_file(outputs, str(OUT / "outputs.safetensors"))
    write_json(
        OUT / "config.json",
        {
            "description": (
                "OMG-Net's mask-aware ResNet18 (Models/SAM_Classifier.py, Mask_Input true, "
                "Input_Type 3_Channel, Activation Identity) with seeded random weights stored "
                "in float16, run in float32 on 64x64 crops of a real H&E tile. Written by "
                "tests/reference/make_classifier_fixture.py."
            ),
            "checkpoint": "classifier.ckpt",
            "weights": {
                "seed": SEED,
                "dtype": "float16",
                "fc_gain": FC_GAIN,
                "batch_norm": "running statistics of the crops (one training-mode pass), then "
                "mean += 0.2 * std * N(0, 1), var *= U(0.7, 1.4); weight U(0.6, 1.4), "
                "bias 0.2 * N(0, 1)",
            },
            "tile": "../proposals_lite_medsam/tile.png",
            "proposals": "../proposals_lite_medsam_seeds/proposals.json",
            "crops": CROPS,
            "crop_side": SIDE,
            "centres": centres,
            "normalisation": {"scale": "1/255", "mean": MEAN, "std": STD},
        },
    )
    print(f"logits:\n{logits}")
    print(f"P(mitotic figure): {probabilities.numpy().round(3).tolist()}")
    print(f"max |logits - logits_no_mask|: {(logits - logits_no_mask).abs().max():.3f}")
    files = ["classifier.ckpt", "four_channel.ckpt", "imagenet_head.pth", "outputs.safetensors"]
    for name in files:
        print(f"{name}: {(OUT / name).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
