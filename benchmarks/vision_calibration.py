"""Where the pixel-level gap between USF and affine heads comes from: localisation or calibration?

Pixel ROC-AUC pools the pixels of all test images, so it mixes two things: finding the defect
inside an image (localisation) and keeping the maps of different images on one scale
(calibration across images). This script trains one head per flow on Magnetic Tile
(MobileNetV2 features, cached on disk by :func:`usfad.experiments.image.cached_features`; detector defaults; per
seed in ``--seeds``) and splits the pixel metric:

- ``pixel AUROC``: the usual one, all pixels of all test images;
- ``within images``: mean over the defective images of the pixel ROC-AUC inside that image
  (localisation alone; no other image's scale matters);
- ``defect vs normal images``: defect pixels against the pixels of the defect-free test
  images (calibration across images matters here);
- ``normal-image spread``: over the defect-free test images, the standard deviation of each
  image's mean map value divided by the mean standard deviation inside an image (how far
  whole normal images move against one another, in units of the variation within one; free
  of shift and scale), and the Spearman correlation of that mean value with the image's
  feature energy (mean squared standardised feature, all levels). A head whose maps rise and
  fall with the energy of the whole image raises false alarms on busy normal images.

Each head is scored twice where the two differ (FastFlow, U-Flow): by its published map (``map``:
``latent``, ``||z||^2 / 2C`` per position) and by its density (``density``, the per-position
NLL with the log-det included: ``ImageDetector(maps="density")``). For a USF
the two differ by one constant per level; for the affine flow, whose log-det varies, they
rank pixels differently.

    PYTHONPATH=src .venv/bin/python benchmarks/vision_calibration.py --flows usf usf-gin affine --seeds 0 1 2

It writes ``--out`` (markdown) and a CSV beside it.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from usfad.experiments.image import cached_features
from usfad.flows import FLOWS
from usfad.metrics import roc_auc
from usfad.reporting.tables import mean_std
from usfad.vision import ImageDetector
from usfad.vision.heads import FlowHead
from usfad.vision.metrics import pixel_auroc, vision_metrics

ROOT = Path(__file__).resolve().parents[2] / "shared"


def _energy(detector: ImageDetector, features: list[torch.Tensor]) -> np.ndarray:
    """Mean squared standardised feature per image, averaged over the levels."""
    out = np.zeros(len(features[0]))
    for start in range(0, len(out), 64):
        batch = detector.standardized([f[start : start + 64].float() for f in features])
        out[start : start + 64] = np.mean([x.pow(2).mean((1, 2, 3)).numpy() for x in batch], axis=0)
    return out


def _own_density(detector: ImageDetector) -> bool:
    """Whether the head has density maps that are not its published maps (FastFlow, U-Flow)."""
    head = type(detector.head_)
    return head.density_maps not in (head.anomaly_maps, FlowHead.density_maps)


def split_pixel_metric(labels: np.ndarray, masks: np.ndarray, maps: np.ndarray, energy: np.ndarray) -> dict:
    """The columns described in the module docstring, from one head's test maps."""
    defect = labels == 1
    within = [pixel_auroc(m, a) for m, a in zip(masks[defect], maps[defect]) if 0 < m.sum() < m.size]
    positives, negatives = maps[defect][masks[defect]], maps[~defect].ravel()
    scores = np.concatenate((positives, negatives))
    versus = roc_auc(np.r_[np.ones(len(positives)), np.zeros(len(negatives))], scores)
    level = maps[~defect].mean((1, 2))
    return {
        "within images": float(np.mean(within)),
        "defect vs normal images": float(versus),
        "normal-image spread": float(level.std() / maps[~defect].std((1, 2)).mean()),
        "corr with energy": float(spearmanr(level, energy[~defect]).statistic),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/images/magnetic_tile")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--model", default="fastflow")
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=list(FLOWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/usfad_features"))
    parser.add_argument("--out", type=Path, help="default: results/vision_calibration_<model>[_<backbone>].md")
    args = parser.parse_args()
    suffix = "" if args.backbone == "mobilenet_v2" else f"_{args.backbone}"
    args.out = args.out or Path(__file__).parent / "results" / f"vision_calibration_{args.model}{suffix}.md"
    torch.set_num_threads(1)
    cache, backbone = cached_features(args.images, args.backbone, args.cache)
    labels, masks = np.asarray(cache["labels"]), np.asarray(cache["masks"]).astype(bool)
    rows, energy = [], None
    for seed in args.seeds:
        for flow in args.flows:
            start = time.perf_counter()
            detector = ImageDetector(args.model, flow, backbone=backbone, random_state=seed, verbose=False)
            detector.fit_features(cache["train"])
            if energy is None:  # the feature scaler is fitted on the same training features for every run
                energy = _energy(detector, cache["test"])
            predictions = {"latent": detector.score_maps_features(cache["test"])}
            if _own_density(detector):
                predictions["density"] = detector.set_params(maps="density").score_maps_features(cache["test"])
            for kind, (scores, maps) in predictions.items():
                metrics = vision_metrics(labels, scores, masks, maps)
                row = {"flow": flow, "map": kind, "seed": seed, "image AUROC": metrics["image_auroc"]}
                row.update({"pixel AUROC": metrics["pixel_auroc"], "AUPRO": metrics["aupro"]})
                row.update(split_pixel_metric(labels, masks, maps, energy))
                rows.append(row)
                print(row, f"({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cols = [c for c in rows[0] if c not in ("flow", "map", "seed")]
    seeds = " ".join(map(str, args.seeds))
    lines = [
        f"# Pixel-level gap: localisation or calibration? ({args.model}, {args.backbone}, "
        f"{args.images.name}, seeds {seeds}: mean ± standard deviation)",
        "",
        "| flow | map | " + " | ".join(cols) + " |",
        "|" + "---|" * (len(cols) + 2),
    ]
    for flow in args.flows:
        for kind in dict.fromkeys(r["map"] for r in rows):
            group = [r for r in rows if r["flow"] == flow and r["map"] == kind]
            cells = [mean_std([r[c] for r in group]) for c in cols]
            lines.append("| " + " | ".join([flow, kind, *cells]) + " |")
    lines += [
        "",
        "Columns: see `benchmarks/vision_calibration.py`. Reproduce: "
        f"`PYTHONPATH=src .venv/bin/python benchmarks/vision_calibration.py --model {args.model} "
        f"--backbone {args.backbone} "
        f"--flows {' '.join(args.flows)} --seeds {seeds}`; one row per run in the CSV beside this file.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
