#!/usr/bin/env python3
"""Copies a data set made by `mitoscope dataset` with the sides of the two TUPAC-16 cases that
hold look-alikes swapped: case 30 goes to training and case 32 to validation. Everything else
keeps its side. Used to measure the look-alikes of a case that training never saw in the other
direction (docs/classifier.md, "Look-alikes of an unseen case").

Usage: scripts/swap_look_alike_cases.py target/dataset-full target/dataset-swap

Standard library only. `split.csv` and `summary.json` are copied unchanged, so they describe
the original split, not this one.
"""
import json
import os
import shutil
import sys

SIDES = {"tupac/30": "train", "tupac/32": "val"}


def main(src, dst):
    os.makedirs(dst, exist_ok=True)
    moved = 0
    with open(os.path.join(src, "proposals.jsonl")) as lines, open(
        os.path.join(dst, "proposals.jsonl.tmp"), "w"
    ) as out:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            side = SIDES.get(record["group"])
            if side is not None:
                moved += record["split"] != side
                record["split"] = side
            out.write(json.dumps(record) + "\n")
    os.replace(os.path.join(dst, "proposals.jsonl.tmp"), os.path.join(dst, "proposals.jsonl"))
    for name in ("split.csv", "summary.json"):
        shutil.copy(os.path.join(src, name), dst)
    print(f"{moved} images changed sides; wrote {dst}")
    if moved == 0:
        sys.exit("no image of cases 30 and 32 changed sides: is this a data set of ../shared/data?")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
