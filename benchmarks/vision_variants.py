"""Head variants on Magnetic Tile, USF against affine: does more capacity close the gap?

The backbone features (MobileNetV2 ImageNet, 256 px) are extracted once and cached in
``--cache``; each variant is then trained with ``flow="usf"`` and ``flow="affine"`` on the
same features and seed, with the detector's defaults except what the variant changes:

- ``base``: the defaults;
- ``k3``: 3x3 conditioners in every block (FastFlow's ResNet-18 configuration);
- ``wide``: ``hidden_ratio=2``;
- ``deep``: 8 blocks;
- ``long``: 20 epochs.

One JSON line per run (image AUROC, pixel AUROC, AUPRO, final training loss, seconds) is
appended to ``--results``; finished (variant, flow, seed, model) runs are skipped.

    PYTHONPATH=src .venv/bin/python benchmarks/vision_variants.py --variants base k3 wide --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from usfad.vision import ImageDetector, ImageFolderDataset, vision_metrics

ROOT = Path(__file__).resolve().parents[2] / "shared"
VARIANTS = {
    "base": {},
    "k3": {"head_params": {"kernel_sizes": [3]}},
    "wide": {"hidden_ratio": 2.0},
    "deep": {"n_blocks": 8},
    "long": {"epochs": 20},
}


def _features(args: argparse.Namespace) -> dict:
    cache = args.cache / f"magnetic_tile_{args.backbone}_256.pt"
    if cache.exists():
        return torch.load(cache)
    extractor = ImageDetector(backbone=args.backbone)
    test = ImageFolderDataset(args.images, split="test", image_size=256)
    masks = np.asarray(test.masks())
    data = {
        "train": extractor.features(args.images, split="train"),
        "test": extractor.features(test, split="test"),
        "labels": torch.as_tensor(np.asarray(test.labels)),
        "masks": torch.as_tensor((masks[:, 0] if masks.ndim == 4 else masks).astype(np.uint8)),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/images/magnetic_tile")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--model", default="fastflow")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/usfad_features"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "vision_variants.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    done = set()
    if args.results.exists():
        for line in args.results.read_text().splitlines():
            r = json.loads(line)
            done.add((r["model"], r["variant"], r["flow"], r["seed"]))
    data = _features(args)
    for seed in args.seeds:
        for variant in args.variants:
            for flow in ("usf", "affine"):
                if (args.model, variant, flow, seed) in done:
                    continue
                det = ImageDetector(args.model, flow, backbone=args.backbone, random_state=seed, **VARIANTS[variant])
                start = time.perf_counter()
                det.fit_features(data["train"])
                seconds = time.perf_counter() - start
                scores, maps = det.predict_features(data["test"])
                metrics = vision_metrics(data["labels"].numpy(), scores, data["masks"].numpy(), maps)
                row = {"model": args.model, "variant": variant, "flow": flow, "seed": seed}
                row.update({k: round(float(v), 4) for k, v in metrics.items()})
                row.update({"final_loss": round(det.history_.train_loss[-1], 4), "fit_seconds": round(seconds)})
                print(json.dumps(row), flush=True)
                args.results.parent.mkdir(parents=True, exist_ok=True)
                with open(args.results, "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
