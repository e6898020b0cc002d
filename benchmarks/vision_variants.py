"""Head variants on Magnetic Tile, USF against affine: does more capacity close the gap?

The backbone features (MobileNetV2 ImageNet, 256 px) are extracted once and cached in
``--cache``; each variant is then trained with ``flow="usf"`` and ``flow="affine"`` on the
same features and seed, with the detector's defaults except what the variant changes:

- ``base``: the defaults;
- ``k3``: 3x3 conditioners in every block (FastFlow's ResNet-18 configuration);
- ``wide``: ``hidden_ratio=2``;
- ``deep``: 8 blocks;
- ``long``: 20 epochs.

One row per run (image AUROC, pixel AUROC, AUPRO, training loss per epoch, seconds) goes to the
``--results`` store (:class:`usfad.bench.store.ResultStore`), keyed by dataset, head and flow,
backbone and variant, and seed; finished runs are skipped.

    PYTHONPATH=src .venv/bin/python benchmarks/vision_variants.py --variants base k3 wide --seeds 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from usfad.bench.store import ResultStore, row_key
from usfad.commands.image import feature_cache, run_one
from usfad.flows import FLOWS
from usfad.vision import ImageDetector, ImageFolderDataset

ROOT = Path(__file__).resolve().parents[2] / "shared"
VARIANTS = {
    "base": {},
    "k3": {"head_params": {"kernel_sizes": [3]}},
    "wide": {"hidden_ratio": 2.0},
    "deep": {"n_blocks": 8},
    "long": {"epochs": 20},
}
KEPT = ("image_auroc", "pixel_auroc", "aupro", "train_loss", "fit_seconds", "fit_cpu_seconds", "status", "error")


def _features(args: argparse.Namespace) -> tuple[dict, object]:
    """The bench's feature cache, kept on disk between runs of this script; and the backbone."""
    extractor = ImageDetector(backbone=args.backbone, verbose=False)
    backbone = extractor.backbone_ = extractor._build_backbone()
    path = args.cache / f"{args.images.name}_{args.backbone}_256.pt"
    if path.exists():
        return torch.load(path, weights_only=False), backbone
    train, test = (ImageFolderDataset(args.images, split=split, image_size=256) for split in ("train", "test"))
    cache = feature_cache(extractor, train, test)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    return cache, backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/images/magnetic_tile")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--model", default="fastflow")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=["usf", "affine"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/usfad_features"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "vision_variants.jsonl")
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(args.results)
    done = store.keys()
    cache, backbone = _features(args)
    with store.writer() as writer:
        for seed in args.seeds:
            for variant in args.variants:
                for flow in args.flows:
                    row = {
                        "group": "image-variants",
                        "dataset": args.images.name,
                        "model": f"{args.model}-{flow}",
                        "preset": f"{args.backbone}-{variant}",
                        "seed": seed,
                        "head": args.model,
                        "flow": flow,
                        "variant": variant,
                    }
                    if row_key(row) in done:
                        continue
                    params = {**VARIANTS[variant], "verbose": False}
                    result, _, _ = run_one(args.model, flow, seed, params, backbone, cache, threads=1)
                    row.update({k: result.get(k) for k in KEPT})
                    writer.append(row)
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
