"""ONNX export check: every tabular detector type, faithfulness and speed against PyTorch.

Each model type (default architecture, a few training steps, d = 10 Gaussian data) is
exported with ``export_onnx`` and checked with :func:`usfad.export.verify_onnx` on 1,000
fresh rows at batch sizes 1 and 1,000 (largest relative difference, tolerance 1e-5), then
timed on 10,000 rows: ONNX Runtime (batches of 4,096, one intra-op thread) against
``decision_function`` (one torch thread), medians of repeats. Writes ``export_check.csv``
and ``export_check.md`` to ``--out``.

    PYTHONPATH=src .venv/bin/python benchmarks/export_check.py
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch
from throughput import machine_note, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10000, help="rows per speed timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from usfad.detectors import DeepSVDD, DeepSVDDVAE, FlowDetector, NonUSFlow, USFlow, VAEFlow
    from usfad.export import onnx_session, run_onnx, verify_onnx

    common = {"max_steps": args.steps, "random_state": 0}
    models = {
        "USFlow": USFlow(**common),
        "NonUSFlow (FlowDetector flow='affine')": NonUSFlow(**common),
        "FlowDetector flow='usf'": FlowDetector(flow="usf", **common),
        "DeepSVDD (one-class)": DeepSVDD(**common),
        "DeepSVDD (soft-boundary)": DeepSVDD(objective="soft-boundary", warm_up_epochs=1, **common),
        "VAEFlow prior='usf' (score anomaly)": VAEFlow(**common),
        "VAEFlow prior='affine' (score anomaly)": VAEFlow(prior="affine", **common),
        "VAEFlow prior='usf' (score neg_elbo)": VAEFlow(score="neg_elbo", **common),
        "DeepSVDDVAE (score distance+recon)": DeepSVDDVAE(score="distance+recon", **common),
    }
    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(5000, args.dim)) * 3.0 + 10.0
    X_check = rng.normal(size=(1000, args.dim)) * 4.0 + 10.0
    X_speed = rng.normal(size=(args.rows, args.dim)) * 3.0 + 10.0
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, detector) in enumerate(models.items()):
            detector.fit(X_train)
            path = detector.export_onnx(Path(tmp) / f"model{i}.onnx")
            report = verify_onnx(detector, path, X_check, batch_sizes=(1, 1000))
            session = onnx_session(path, threads=1)
            t_torch = median_seconds(lambda d=detector: d.decision_function(X_speed), args.repeats)
            t_onnx = median_seconds(lambda s=session: run_onnx(s, X_speed, batch_size=4096), args.repeats)
            row = {
                "model": name,
                "max_rel_diff_batch_1": f"{report.max_rel_diff[1]:.2e}",
                "max_rel_diff_batch_1000": f"{report.max_rel_diff[1000]:.2e}",
                "passed_1e-5": report.passed,
                "pytorch_rows_per_s": round(args.rows / t_torch),
                "onnx_rows_per_s": round(args.rows / t_onnx),
                "onnx_over_pytorch_speed": round(t_torch / t_onnx, 2),
            }
            results.append(row)
            print(row, flush=True)
    with open(args.out / "export_check.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    lines = [
        "# ONNX export check (opset 17, TorchScript exporter; ONNX Runtime vs PyTorch)",
        "",
        f"d = {args.dim}, raw features (offset 10, scale 3-4: the scaler is inside the graph); relative difference "
        "= max |onnx - torch| / max(|torch|, 1) on 1,000 fresh rows; speed on "
        f"{args.rows:,} rows. " + machine_note(),
        "",
        "| model | max rel. diff, batch 1 | batch 1000 | within 1e-5 | PyTorch rows/s | ONNX rows/s | ONNX / PyTorch |",
        "|---|---:|---:|:---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['max_rel_diff_batch_1']} | {r['max_rel_diff_batch_1000']} | "
        f"{'yes' if r['passed_1e-5'] else 'NO'} | {r['pytorch_rows_per_s']:,} | {r['onnx_rows_per_s']:,} | "
        f"{r['onnx_over_pytorch_speed']:.2f} |"
        for r in results
    ]
    (args.out / "export_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
