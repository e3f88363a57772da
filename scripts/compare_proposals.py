#!/usr/bin/env python3
"""Compares two `mitoscope propose` GeoJSON files of the same image (e.g. CPU and GPU backends).

Each proposal of A is paired with the proposal of B whose box overlaps it most. Prints the counts,
how many pairs have a box IoU of at least 0.9, and the largest score differences. Exits 1 unless
the counts are within 2 % and 95 % of A's proposals have such a partner: GPU kernels sum in
another order, so scores differ in the last digits and a mask on the edge of a threshold may
flip. Standard library only.
"""
import json
import sys


def boxes(path):
    out = []
    for f in json.load(open(path))["features"]:
        g = f["geometry"]
        rings = g["coordinates"] if g["type"] == "Polygon" else [r for p in g["coordinates"] for r in p]
        xs = [p[0] for r in rings for p in r]
        ys = [p[1] for r in rings for p in r]
        out.append(((min(xs), min(ys), max(xs), max(ys)), f["properties"]["measurements"]))
    return out


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def main(a_path, b_path):
    a, b = boxes(a_path), boxes(b_path)
    matched, worst = 0, {"predicted_iou": 0.0, "stability": 0.0}
    for box, m in a:
        best = max(b, key=lambda o: iou(box, o[0]), default=None)
        if best is not None and iou(box, best[0]) >= 0.9:
            matched += 1
            for k in worst:
                worst[k] = max(worst[k], abs(m[k] - best[1][k]))
    print(f"A: {len(a)} proposals, B: {len(b)} proposals")
    print(f"A's proposals with a partner in B at box IoU >= 0.9: {matched} ({matched / max(len(a), 1):.1%})")
    print(f"largest score differences among partners: {worst}")
    ok = abs(len(a) - len(b)) <= 0.02 * max(len(a), 1) and matched >= 0.95 * len(a)
    print("agree" if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
