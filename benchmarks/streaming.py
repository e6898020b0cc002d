"""Peak memory and speed of ``usfad score`` on CSV files of growing length.

Fits a small USFlow (default architecture, a few training steps) on d = 10 Gaussian data,
writes CSV files of the chosen row counts to a temporary directory (chunk by chunk: ten
distinct blocks of rows repeated, so writing stays fast and nothing big is held in memory),
and scores each with ``usfad score MODEL DATA -o OUT`` in a subprocess (one torch thread).
Records the child's peak resident memory (``os.wait4`` rusage, per child), its wall time,
rows/s after subtracting the start-up time (a 10-row file), and checks that the output has
one row per input row. Writes ``streaming.csv`` and ``streaming.md`` to ``--out``.

    PYTHONPATH=src .venv/bin/python benchmarks/streaming.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BLOCK_ROWS = 100_000
N_BLOCKS = 10


def write_csv(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    """``rows`` rows of ``dim`` Gaussian features, written a block at a time."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(min(N_BLOCKS, -(-rows // BLOCK_ROWS))):
        X = rng.normal(size=(min(BLOCK_ROWS, rows), dim))
        lines = "\n".join(",".join(f"{v:.6f}" for v in row) for row in X.tolist())
        blocks.append(lines + "\n")
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(dim)) + "\n")
        left, i = rows, 0
        while left > 0:
            block = blocks[i % len(blocks)]
            if left < BLOCK_ROWS:
                block = "".join(block.splitlines(keepends=True)[:left])
            f.write(block)
            left -= min(left, BLOCK_ROWS)
            i += 1


def score_in_child(model: Path, data: Path, out: Path) -> tuple[float, float, int]:
    """``(wall seconds, peak RSS in MiB, exit code)`` of ``usfad score`` in a subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "usfad.cli", "score", str(model), str(data), "-o", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"usfad score failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024, proc.returncode  # ru_maxrss is in KiB on Linux


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=float, default=[1e5, 1e6], help="row counts (default 1e5 1e6)")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50, help="training steps of the USFlow")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tmp", type=Path, default=None, help="directory for the data files (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from usfad.detectors import USFlow

    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        X = np.random.default_rng(1).normal(size=(5000, args.dim))
        model = USFlow(max_steps=args.steps, random_state=0).fit(X).save(tmp / "usflow.safetensors")
        write_csv(tmp / "tiny.csv", 10, args.dim)
        startup, startup_rss, _ = score_in_child(model, tmp / "tiny.csv", tmp / "tiny_scores.csv")
        print(f"start-up (10 rows): {startup:.2f} s, peak RSS {startup_rss:.0f} MiB")
        for rows in (int(r) for r in args.rows):
            data, out = tmp / f"data_{rows}.csv", tmp / f"scores_{rows}.csv"
            start = time.perf_counter()
            write_csv(data, rows, args.dim)
            size_mb = data.stat().st_size / 2**20
            print(f"{rows} rows: wrote {size_mb:.0f} MiB in {time.perf_counter() - start:.0f} s", flush=True)
            wall, rss, _ = score_in_child(model, data, out)
            out_rows = count_lines(out) - 1
            if out_rows != rows:
                raise RuntimeError(f"{out_rows} output rows for {rows} input rows")
            row = {
                "rows": rows,
                "file_mib": round(size_mb, 1),
                "wall_s": round(wall, 2),
                "startup_s": round(startup, 2),
                "rows_per_s": round(rows / max(wall - startup, 1e-9)),
                "peak_rss_mib": round(rss, 1),
                "output_rows_ok": True,
            }
            results.append(row)
            print(row, flush=True)
            data.unlink()
            out.unlink()
    with open(args.out / "streaming.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    lines = [
        f"# usfad score: streaming a CSV file (USFlow, d = {args.dim}, default architecture)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores SHARED with other jobs (figures are noisy); "
        "child runs with one torch thread. Start-up (a 10-row file): "
        f"{startup:.2f} s, peak RSS {startup_rss:.0f} MiB. rows/s excludes the start-up.",
        "",
        "| rows | file (MiB) | wall (s) | rows/s | peak RSS (MiB) | one output row per input row |",
        "|---:|---:|---:|---:|---:|:---:|",
    ]
    lines += [
        f"| {r['rows']:,} | {r['file_mib']:.0f} | {r['wall_s']:.1f} | {r['rows_per_s']:,} | "
        f"{r['peak_rss_mib']:.0f} | yes |"
        for r in results
    ]
    (args.out / "streaming.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
