"""USF against affine image heads on Magnetic Tile, backbone by backbone: issue 4's bar in one place.

Trains nothing: it reads the committed rows of the image runs, one file per backbone
(``SOURCES``), and writes ``--out`` (markdown) and a PNG beside it. Per backbone and head:

- per flow, the mean ± standard deviation over seeds of image AUROC, pixel AUROC and AUPRO, the
  number of runs, of diverged runs (non-finite loss), of runs that blew up, the largest rise of
  any run's epoch loss above its best so far, the number of runs where that rise was more than
  ``JUMP_NATS`` (0.1 nats per dimension: ``jumped``), all read by
  :func:`usfad.experiments.health.training_health`, and the training CPU seconds
  (:func:`usfad.reporting.image.run_cells`);
- per USF flow, its difference from the affine head, paired by seed (mean ± standard deviation of
  the per-seed differences over the seeds both flows ran).

The plot shows those paired differences, one panel per metric, and a last panel with every run's
largest rise (the stability the table counts).

    PYTHONPATH=src .venv/bin/python benchmarks/vision_summary.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from usfad.experiments.health import JUMP_NATS, training_health
from usfad.experiments.store import ResultStore
from usfad.flows import FLOWS, is_usf
from usfad.reporting.image import METRIC_LABELS, finished_runs, group_runs, run_cells
from usfad.reporting.tables import mean_std, std
from usfad.vision.heads import HEADS

RESULTS = Path(__file__).parent / "results"
#: backbone -> (rows, how its LU layers started, where the rows came from)
SOURCES = {
    "mobilenet_v2": ("vision_magnetic_tile/results.jsonl", "permutation", "`benchmarks/vision.sh`"),
    "efficientnet_lite0": (
        "vision_magnetic_tile_efficientnet_lite0/results.jsonl",
        "rotation",
        "`benchmarks/vision.sh` (before the permutation start; not rerun)",
    ),
    "squeezenet1_1": (
        "vision_squeezenet_permutation.jsonl",
        "permutation",
        "`benchmarks/vision_variants.py --backbone squeezenet1_1`",
    ),
}


def _paired(usf: list[dict], affine: list[dict], metric: str) -> list[float]:
    """USF minus affine, seed by seed, over the seeds where both finished."""
    theirs = {r["seed"]: r.get(metric) for r in finished_runs(affine)}
    return [
        r[metric] - theirs[r["seed"]]
        for r in finished_runs(usf)
        if r.get(metric) is not None and theirs.get(r["seed"]) is not None
    ]


def load(results: Path) -> dict[str, dict[tuple[str, str], list[dict]]]:
    """backbone -> (head, flow) -> rows (Magnetic Tile only)."""
    out: dict[str, dict[tuple[str, str], list[dict]]] = {}
    for backbone, (name, _, _) in SOURCES.items():
        path = results / name
        if not path.exists():
            continue
        rows = [
            r
            for r in ResultStore(path).rows()
            if r.get("dataset") == "magnetic_tile" and r.get("head") in HEADS and r.get("flow") in FLOWS
        ]
        out[backbone] = {(head, flow): group for (_, head, flow), group in group_runs(rows).items()}
    return out


def _backbone_lines(backbone: str, groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    name, start, origin = SOURCES[backbone]
    lines = [
        f"## {backbone}",
        "",
        f"Rows: `{name}`, from {origin}; LU layers started as a {start}.",
        "",
        "| head | flow | seeds | image AUROC | pixel AUROC | AUPRO | diverged | blew up | jumped "
        "| largest rise | train CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cols = [*METRIC_LABELS.values(), "diverged", "blew up", "jumped", "largest rise", "train CPU s"]
    for (head, flow), rows in groups.items():
        cells = run_cells(rows)
        seeds = ", ".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
        lines.append("| " + " | ".join([head, flow, seeds, *(cells[c] for c in cols)]) + " |")
    lines += [
        "",
        "USF minus affine, paired by seed (mean ± standard deviation over the seeds both ran):",
        "",
        "| head | flow | seeds | image AUROC | pixel AUROC | AUPRO | USF >= affine on |",
        "|---|---|---|---|---|---|---|",
    ]
    for (head, flow), rows in groups.items():
        affine = groups.get((head, "affine"))
        if not is_usf(flow) or not affine:
            continue
        diffs = {m: _paired(rows, affine, m) for m in METRIC_LABELS}
        if not diffs["image_auroc"]:
            continue
        cells = [head, flow, str(len(diffs["image_auroc"]))]
        cells += [mean_std(diffs[m], sign="+") for m in METRIC_LABELS]
        ahead = [label for m, label in METRIC_LABELS.items() if diffs[m] and np.mean(diffs[m]) >= 0]
        cells.append(", ".join(ahead) if ahead else "none")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _stability(ax, data: dict[str, dict[tuple[str, str], list[dict]]]) -> None:
    """Every run's largest rise of the epoch loss above its best so far, by head, backbone and flow
    (symmetric log scale; a non-finite loss is drawn at the top as a cross). Rows without their
    epoch losses (EfficientNet-Lite0's oldest) are left out."""
    backbones = list(data)
    width = 0.8 / max(len(backbones), 1)
    rises_of = {
        (backbone, head, flow): [
            training_health(r["train_loss"]).largest_rise for r in finished_runs(rows) if r.get("train_loss")
        ]
        for backbone, groups in data.items()
        for (head, flow), rows in groups.items()
    }
    top = 10 * max([x for rises in rises_of.values() for x in rises if np.isfinite(x)] + [1.0])
    for b, backbone in enumerate(backbones):
        for h, head in enumerate(HEADS):
            for flow, marker, nudge in (("usf", "o", -0.3), ("usf-gin", "s", 0.0), ("affine", "^", 0.3)):
                rises = rises_of.get((backbone, head, flow), [])
                for i, rise in enumerate(rises):
                    x = h + (b - (len(backbones) - 1) / 2 + nudge) * width + (i - (len(rises) - 1) / 2) * 0.015
                    finite = np.isfinite(rise)
                    ax.plot(
                        x,
                        rise if finite else top,
                        "x" if not finite else marker,
                        color=f"C{b}",
                        mfc=f"C{b}" if flow == "affine" else "white",
                        ms=5,
                    )
    ax.axhline(JUMP_NATS, color="grey", lw=0.8, ls="--")
    ax.set_yscale("symlog", linthresh=JUMP_NATS)
    ax.set_ylim(0, 3 * top)
    decades = range(-1, int(np.log10(top)) + 1, max(1, int(np.log10(top)) // 5))
    ax.set_yticks([0, *(10.0**k for k in decades)])
    ax.set_xticks(range(len(HEADS)), HEADS)
    ax.set_title("largest loss rise per run (nats/dim)")
    ax.text(0.02, 0.97, "o usf   s usf-gin   ^ affine (filled)", transform=ax.transAxes, va="top", fontsize="x-small")
    ax.grid(axis="y", alpha=0.3)


def plot(data: dict[str, dict[tuple[str, str], list[dict]]], path: Path) -> None:
    panels = len(METRIC_LABELS) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8))
    for ax in axes[1:-1]:
        ax.sharey(axes[0])
    _stability(axes[-1], data)
    backbones = list(data)
    width = 0.8 / max(len(backbones), 1)
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        for b, backbone in enumerate(backbones):
            groups = data[backbone]
            for h, head in enumerate(HEADS):
                affine = groups.get((head, "affine"))
                for flow, marker, nudge in (("usf", "o", -0.25), ("usf-gin", "s", 0.25)):
                    rows = groups.get((head, flow))
                    diffs = _paired(rows, affine, metric) if rows and affine else []
                    if not diffs:
                        continue
                    x = h + (b - (len(backbones) - 1) / 2 + nudge) * width
                    ax.errorbar(
                        x,
                        np.mean(diffs),
                        yerr=std(diffs) if len(diffs) > 1 else None,
                        fmt=marker,
                        color=f"C{b}",
                        mfc=f"C{b}" if flow == "usf" else "white",
                        capsize=3,
                        label=f"{backbone}, {flow}" if metric == next(iter(METRIC_LABELS)) and h == 0 else None,
                    )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(HEADS)), HEADS)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("USF minus affine (paired by seed)")
    fig.legend(loc="lower center", ncol=min(6, 2 * len(backbones)), fontsize="small", frameon=False)
    fig.suptitle("Magnetic Tile: USF heads against affine ones (above 0: the USF is ahead)", fontsize="medium")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=RESULTS / "vision_summary.md")
    args = parser.parse_args()
    data = load(args.results)
    if not data:
        raise SystemExit(f"no image rows under {args.results}")
    lines = [
        "# Image heads on Magnetic Tile: USF against affine, by backbone",
        "",
        "Detector defaults, published maps (FastFlow, U-Flow: latent distance; CFlow: the fibre's NLL),",
        "256 px. `largest rise`: how far any run's epoch loss climbed above its best so far (nats per",
        f"dimension; 0 = it fell every epoch); `jumped`: runs where it rose more than {JUMP_NATS}. `blew up`:",
        f"the last epoch more than 1 above the best, or above 10. Plot: `{args.out.with_suffix('.png').name}`.",
        "",
    ]
    for backbone, groups in data.items():
        lines += _backbone_lines(backbone, groups)
    lines.append(
        "Reproduce: `PYTHONPATH=src .venv/bin/python benchmarks/vision_summary.py` (reads the rows, trains nothing)."
    )
    args.out.write_text("\n".join(lines) + "\n")
    plot(data, args.out.with_suffix(".png"))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
