"""Reference CPU timing of OMG-Net's mask-aware ResNet18 classifier, for the Rust benchmark
(`cargo bench -p mitoscope-models --bench classifier`) to compare with.

    tests/reference/.venv/bin/python tests/reference/bench_classifier.py \
        [--crops 1024] [--batch 256] [--repeats 3]

Loads the fixture checkpoint tests/fixtures/classifier/classifier.ckpt (the Lightning layout,
float16 weights read as float32) into the reference's module tree, takes the 16 real crops and
masks of tests/fixtures/classifier/outputs.safetensors repeated to --crops crops, and times the
whole classification as OMG-Net's inference does it: uint8 crops to normalised tensors, the
forward pass in eval mode under torch.no_grad(), softmax. Batches of --batch crops; torch's
default thread count. Prints one JSON object on stdout:

  {"crops": N, "batch": B, "threads": T, "classify": {"min_s", "median_s", "runs"},
   "forward_only": {...}}

each after one untimed warm-up run. The Rust side reads the same files.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from make_classifier_fixture import ReferenceClassifier, network_input

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "classifier"


def timed(repeats: int, run) -> dict:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"min_s": min(times), "median_s": statistics.median(times), "runs": repeats}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crops", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = ReferenceClassifier()
    checkpoint = torch.load(FIXTURE / "classifier.ckpt", map_location="cpu", weights_only=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()

    fixture = load_file(str(FIXTURE / "outputs.safetensors"))
    reps = -(-args.crops // len(fixture["rgb"]))
    rgbs = np.concatenate([fixture["rgb"]] * reps)[: args.crops]
    masks = np.concatenate([fixture["mask"]] * reps)[: args.crops]

    def classify() -> None:
        with torch.no_grad():
            for start in range(0, args.crops, args.batch):
                img, msk = network_input(rgbs[start : start + args.batch], masks[start : start + args.batch])
                torch.softmax(model(img, msk), dim=1)[:, 1].numpy()

    batches = [
        network_input(rgbs[s : s + args.batch], masks[s : s + args.batch])
        for s in range(0, args.crops, args.batch)
    ]

    def forward_only() -> None:
        with torch.no_grad():
            for img, msk in batches:
                model(img, msk)

    result = {
        "crops": args.crops,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "classify": timed(args.repeats, classify),
        "forward_only": timed(args.repeats, forward_only),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
