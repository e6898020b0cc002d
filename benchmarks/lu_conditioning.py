"""Why wide heads blew up: the conditioning of the LU 1x1 convolutions under Adam.

FastFlow-USF on SqueezeNet 1.1 features of Magnetic Tile (128 / 256 / 512 channels) trained
well for a few epochs, then its epoch-mean loss climbed to 1e17 nats per dimension; the narrow
backbones (24-112 channels) never did this. This script trains the same head twice from the same seed
with the detector's own training (:meth:`usfad.vision.ImageDetector.fit_features`: features
standardised per position, training noise 0.1, Adam 1e-3, batches of 8 images, gradient norm
clipped at 10), changing only how every :class:`usfad.flows.LULinear` starts:

- ``rotation``: the LU factors of a random rotation (Glow's start; usfad's until this change);
- ``permutation``: a random permutation, ``L = I``, ``U = 0``, unit diagonal (usfad's now).

Every ``--every`` steps it records the batch loss and the largest condition number of any
LU layer's ``W`` (every layer's ``W^-1`` is applied too, so a near-singular ``W`` amplifies
whatever its coupling adds). It writes ``--out`` (markdown), a CSV and a PNG beside it.

    USFAD_WEIGHTS=../shared/weights PYTHONPATH=src .venv/bin/python benchmarks/lu_conditioning.py --steps 400
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from usfad.errors import TrainingDivergedError
from usfad.experiments.image import cached_features
from usfad.flows import LULinear
from usfad.vision import ImageDetector

ROOT = Path(__file__).resolve().parents[2] / "shared"

STARTS = ("rotation", "permutation")


def _rotation_start(layer: LULinear) -> None:
    """Set ``layer`` to the LU factors of a random rotation (the former initialisation)."""
    q, _ = torch.linalg.qr(torch.randn(layer.features, layer.features, dtype=torch.float64))
    p, lower, upper = torch.linalg.lu(q)
    diag = torch.diagonal(upper)
    with torch.no_grad():
        layer.order.copy_(p.argmax(dim=1))
        layer.inverse_order.copy_(torch.argsort(layer.order))
        layer.sign.copy_(torch.sign(diag))
        layer.lower.copy_(torch.tril(lower, -1))
        layer.upper.copy_(torch.triu(upper, 1))
        layer.log_diag.copy_(torch.log(diag.abs()))


def _max_condition(head: nn.Module) -> float:
    with torch.no_grad():
        return max(float(torch.linalg.cond(m.weight().double())) for m in head.modules() if isinstance(m, LULinear))


class _Detector(ImageDetector):
    """The detector, with every LU layer of its head set to ``lu_start`` before training."""

    lu_start = "permutation"

    def _build_head(self):
        head = super()._build_head()
        if self.lu_start == "rotation":
            for m in head.modules():
                if isinstance(m, LULinear):
                    _rotation_start(m)
        return head


def run(start: str, features: list[torch.Tensor], backbone: nn.Module, args: argparse.Namespace) -> list[dict]:
    """Train with the detector's own loop (:meth:`ImageDetector.fit_features`) for the epochs that
    cover ``args.steps`` steps, recording the first ``args.steps`` of them (all steps up to a
    non-finite loss, if one comes)."""
    det = _Detector(model=args.model, flow=args.flow, backbone=args.backbone, random_state=args.seed)
    det.lu_start, det.backbone_ = start, backbone
    per_epoch = math.ceil(len(features[0]) / det.batch_size)
    det.epochs = math.ceil(args.steps / per_epoch)
    rows, t0 = [], time.time()

    def record(step: int, loss: float) -> None:
        if step > args.steps or (step % args.every and step != 1):
            return
        row = {"start": start, "step": step, "loss": loss, "max_condition": _max_condition(det.head_)}
        rows.append(row)
        print(f"{start} step {step}: loss {loss:.4g}, max cond {row['max_condition']:.3g} ({time.time() - t0:.0f} s)")

    try:
        det.fit_features(features, on_step=record)
    except TrainingDivergedError as exc:
        print(f"{start}: {exc}")
    return rows


def _plot(rows: list[dict], path: Path, title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for start in STARTS:
        mine = [r for r in rows if r["start"] == start]
        steps = [r["step"] for r in mine]
        axes[0].plot(steps, [r["max_condition"] for r in mine], label=start)
        axes[1].plot(steps, [r["loss"] for r in mine], label=start)
    axes[0].set(yscale="log", xlabel="Adam step", ylabel="largest cond(W) of any LU layer")
    axes[1].set(yscale="log", xlabel="Adam step", ylabel="batch loss (nats/dim)")
    for ax in axes:
        ax.legend(title="LU start")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/images/magnetic_tile")
    parser.add_argument("--backbone", default="squeezenet1_1")
    parser.add_argument("--model", default="fastflow")
    parser.add_argument("--flow", default="usf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/usfad_features"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lu_conditioning.md")
    args = parser.parse_args()
    cache, backbone = cached_features(args.images, args.backbone, args.cache)
    rows = [row for start in STARTS for row in run(start, cache["train"], backbone, args)]
    with args.out.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = f"{args.model}-{args.flow} on {args.backbone} features ({args.images.name}), seed {args.seed}"
    _plot(rows, args.out.with_suffix(".png"), title)
    checkpoints = sorted({r["step"] for r in rows if r["step"] % 50 == 0 or r["step"] == 1})
    lines = [
        f"# LU conditioning under Adam: {title}",
        "",
        "Largest condition number of any LU layer's `W`, and the batch loss (nats/dim), by step;",
        f"see `benchmarks/lu_conditioning.py`. Plot: `{args.out.with_suffix('.png').name}`; each step in the CSV.",
        "",
        "| step | " + " | ".join(f"cond ({s}) | loss ({s})" for s in STARTS) + " |",
        "|---|" + "---|---|" * len(STARTS),
    ]
    by = {(r["start"], r["step"]): r for r in rows}
    for step in checkpoints:
        cells = []
        for s in STARTS:
            r = by.get((s, step))
            cells += [f"{r['max_condition']:.3g}", f"{r['loss']:.3g}"] if r else ["-", "-"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    worst = {s: max((r["loss"] for r in rows if r["start"] == s), default=math.nan) for s in STARTS}
    lines += ["", "Largest recorded batch loss: " + ", ".join(f"{s} {v:.3g}" for s, v in worst.items()) + "."]
    lines += [
        "",
        "Reproduce: `USFAD_WEIGHTS=../shared/weights PYTHONPATH=src .venv/bin/python "
        f"benchmarks/lu_conditioning.py --backbone {args.backbone} --model {args.model} --flow {args.flow} "
        f"--steps {args.steps}`",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
