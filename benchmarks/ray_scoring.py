"""Scoring a folder of Parquet files: the single-process streaming path against Ray Data with 1 and 2 workers.

Writes ``--rows`` rows (default 1e7) of ``--dim`` Gaussian features (default 10) into ``--files``
Parquet files (default 8) in a temporary folder, fits a USFlow (default architecture,
``--steps`` training steps) on a reservoir sample of ``--sample`` rows drawn from them
(:func:`usfad.fitting.fit_on_sample`, the code of ``usfad fit --sample``), then scores every
file, in one run:

- ``single``: the path ``usfad score`` takes (``iter_table`` -> ``scored_chunks`` ->
  ``write_scores``, file after file) in one child process with one torch thread;
- ``ray-1`` and ``ray-2``: :func:`usfad.distributed.score_files` with 1 and 2 workers, PyTorch
  engine (the same arithmetic as ``single``), each starting and stopping its own local Ray;
- ``ray-1-onnx`` and ``ray-2-onnx``: the same with ONNX Runtime (unless ``--no-onnx``).

For each: wall time, rows/s end to end and after the start-up, peak resident memory of each
worker process (``ru_maxrss`` read inside the worker), and how busy the workers were (the
seconds spent scoring files over wall time x workers). Scaling efficiency 1 -> 2 workers is
``rate(2) / (2 x rate(1))``. Ray's start-up cost is ``ray.init`` plus the time until the first
file starts on a worker (actor processes, imports, model load). One file is also scored with
each step timed (read, score, format and write) to show where a worker's time goes. Every
output is checked to hold one row per input row.

Results: ``ray_scoring.json``, ``ray_scoring.md`` and ``ray_scoring.png`` in ``--out``
(default ``benchmarks/results/ray_scoring/``).

    PYTHONPATH=src .venv/bin/python benchmarks/ray_scoring.py                 # 1e7 rows, 8 files
    PYTHONPATH=src .venv/bin/python benchmarks/ray_scoring.py --rows 2e5 --out /tmp/quick   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROW_GROUP = 131_072


def write_files(folder: Path, rows: int, n_files: int, dim: int, seed: int = 0) -> list[Path]:
    """``rows`` Gaussian rows split evenly over ``n_files`` Parquet files, a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(dim)]
    schema = pa.schema([(n, pa.float64()) for n in names])
    paths = []
    for i, n in enumerate(np.diff(np.linspace(0, rows, n_files + 1).round().astype(int))):
        path = folder / f"part-{i:02d}.parquet"
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, n, ROW_GROUP):
                X = rng.normal(size=(min(ROW_GROUP, n - start), dim))
                writer.write_table(pa.Table.from_arrays([pa.array(X[:, j]) for j in range(dim)], schema=schema))
        paths.append(path)
    return paths


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def single_process(model: str, files: list[str], out: str) -> dict[str, Any]:
    """``usfad score``'s path over every file, one after the other (runs in a child process)."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    from usfad.commands.model import new_stats, scored_chunks
    from usfad.data.files import iter_table, write_scores
    from usfad.detectors import load

    detector = load(model)
    loaded = time.perf_counter()
    rows, per_file = 0, []
    for path in files:
        file_start = time.perf_counter()
        stats = new_stats()
        chunks = iter_table(path, finite=True)
        n = write_scores(Path(out) / f"{Path(path).name}.scores.csv", scored_chunks(detector, path, chunks, stats))
        rows += n
        per_file.append(time.perf_counter() - file_start)
    end = time.perf_counter()
    return {
        "rows": rows,
        "wall_s": end - start,
        "startup_s": loaded - start,
        "busy_s": sum(per_file),
        "peak_rss_mib": {str(os.getpid()): _peak_rss_mib()},
    }


def breakdown(model: str, path: str, with_onnx: bool) -> dict[str, float]:
    """Seconds spent reading, scoring (PyTorch; ONNX Runtime too when asked), formatting and writing one file."""
    import torch

    torch.set_num_threads(1)
    from usfad.data.files import iter_table
    from usfad.detectors import load

    detector = load(model)
    session = None
    if with_onnx:
        from usfad.export import onnx_session

        with tempfile.TemporaryDirectory() as folder:
            onnx_path = Path(folder) / "m.onnx"
            detector.export_onnx(onnx_path)
            session = onnx_session(onnx_path, threads=1)
    times = {"read_s": 0.0, "score_torch_s": 0.0, "score_onnx_s": 0.0, "format_write_s": 0.0, "rows": 0}
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "out.csv", "w") as f:
        t0 = time.perf_counter()
        chunks = iter_table(path, finite=True)  # reads the first chunk
        times["read_s"] += time.perf_counter() - t0
        name = str(path)
        while True:
            t0 = time.perf_counter()
            X = next(chunks, None)
            t1 = time.perf_counter()
            times["read_s"] += t1 - t0
            if X is None:
                break
            scores = detector.decision_function(X)
            t2 = time.perf_counter()
            times["score_torch_s"] += t2 - t1
            if session is not None:
                session.run(None, {"X": X})
                times["score_onnx_s"] += time.perf_counter() - t2
            t3 = time.perf_counter()
            labels = (scores > detector.threshold_).astype(np.int64)
            start = int(times["rows"])
            f.writelines(
                f"{name},{r},{s:.17g},{lab}\n"
                for r, s, lab in zip(range(start, start + len(scores)), scores.tolist(), labels.tolist())
            )
            times["format_write_s"] += time.perf_counter() - t3
            times["rows"] += len(X)
    return times


def in_child(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a fresh (spawned) process, so that its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def ray_run(model: Path, folder: Path, out: Path, workers: int, engine: str) -> dict[str, Any]:
    from usfad.distributed import score_files

    start = time.perf_counter()
    run = score_files(model, folder, out, workers=workers, engine=engine, output_format="csv")
    wall = time.perf_counter() - start
    if any(f.status != "scored" for f in run.files):
        raise RuntimeError(f"not every file was scored: {[(f.input, f.status) for f in run.files]}")
    files_per_worker: dict[str, int] = {}
    for f in run.files:
        files_per_worker[str(f.pid)] = files_per_worker.get(str(f.pid), 0) + 1
    return {
        "rows": run.rows,
        "wall_s": wall,
        "ray_init_s": run.ray_init_seconds,
        "first_file_s": run.first_file_seconds,
        "export_s": run.export_seconds,
        "startup_s": run.ray_init_seconds + run.export_seconds + run.first_file_seconds,
        "busy_s": sum(f.seconds for f in run.files),
        "peak_rss_mib": {str(pid): rss for pid, rss in run.peak_rss_mib.items()},
        "model_load_s": {str(pid): s for pid, s in run.load_seconds.items()},
        "files_per_worker": files_per_worker,
    }


def count_rows(folder: Path) -> int:
    n = 0
    for path in folder.glob("*.scores.csv"):
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                n += block.count(b"\n")
        n -= 1  # the header
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e7, help="rows in all (default 1e7)")
    parser.add_argument("--files", type=int, default=8, help="Parquet files (default 8)")
    parser.add_argument("--dim", type=int, default=10, help="features (default 10)")
    parser.add_argument("--sample", type=int, default=20_000, help="rows the model is fitted on (default 20,000)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of the USFlow (default 200)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime runs")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the data (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_scoring")
    parser.add_argument("--machine-note", default="", help="a sentence on the machine, printed under the table")
    parser.add_argument(
        "--from-json", action="store_true", help="only redraw ray_scoring.md and .png from --out's ray_scoring.json"
    )
    args = parser.parse_args()
    if args.from_json:
        report = json.loads((args.out / "ray_scoring.json").read_text())
        write_markdown(report, args.out)
        plot(report, args.out / "ray_scoring.png")
        print((args.out / "ray_scoring.md").read_text())
        return
    import torch

    torch.set_num_threads(1)
    from usfad.data.files import find_data_files
    from usfad.detectors import USFlow
    from usfad.distributed import _onnx_available
    from usfad.fitting import fit_on_sample, save_with_training_data

    rows = int(args.rows)
    with_onnx = not args.no_onnx and _onnx_available()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "rows": rows,
        "files": args.files,
        "dim": args.dim,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "note": args.machine_note,
        },
        "runs": {},
    }
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        start = time.perf_counter()
        files = write_files(data, rows, args.files, args.dim)
        report["write_data_s"] = time.perf_counter() - start
        report["data_mib"] = sum(p.stat().st_size for p in files) / 2**20
        print(f"wrote {rows:,} rows in {len(files)} files ({report['data_mib']:.0f} MiB)", flush=True)

        start = time.perf_counter()
        detector = USFlow(max_steps=args.steps, random_state=0, verbose=False)
        sample = fit_on_sample(detector, find_data_files(data), args.sample, random_state=0)
        model = save_with_training_data(detector, tmp / "usflow.usfad", {"sample": sample.record()})
        report["fit"] = {"sample": len(sample.X), "seconds_sample_and_fit": time.perf_counter() - start}
        print(f"fitted on a sample of {len(sample.X):,} rows: {report['fit']}", flush=True)

        report["breakdown_one_file"] = in_child(breakdown, str(model), str(files[0]), with_onnx)
        print(f"one file, step by step: {report['breakdown_one_file']}", flush=True)

        plan = [("single", None, "torch"), ("ray-1", 1, "torch"), ("ray-2", 2, "torch")]
        if with_onnx:
            plan += [("ray-1-onnx", 1, "onnx"), ("ray-2-onnx", 2, "onnx")]
        for name, workers, engine in plan:
            out = tmp / f"out-{name}"
            out.mkdir()
            load_before = os.getloadavg()[0]
            if workers is None:
                result = in_child(single_process, str(model), [str(p) for p in files], str(out))
            else:
                result = ray_run(model, data, out, workers, engine)
            if count_rows(out) != rows or result["rows"] != rows:
                raise RuntimeError(f"{name}: {count_rows(out)} output rows for {rows} input rows")
            n_workers = workers or 1
            result.update(
                workers=n_workers,
                engine=engine,
                rows_per_s=rows / result["wall_s"],
                rows_per_s_after_startup=rows / max(result["wall_s"] - result["startup_s"], 1e-9),
                busy_share=result["busy_s"] / (result["wall_s"] * n_workers),
                load_average_before=load_before,
            )
            report["runs"][name] = result
            print(f"{name}: {json.dumps(result)}", flush=True)
            shutil.rmtree(out)
    runs = report["runs"]
    for suffix in ("", "-onnx"):
        one, two = runs.get(f"ray-1{suffix}"), runs.get(f"ray-2{suffix}")
        if one and two:
            report[f"scaling_efficiency{suffix or '-torch'}"] = {
                "end_to_end": two["rows_per_s"] / (2 * one["rows_per_s"]),
                "after_startup": two["rows_per_s_after_startup"] / (2 * one["rows_per_s_after_startup"]),
            }
    report["load_average_at_end"] = os.getloadavg()
    (args.out / "ray_scoring.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, args.out)
    plot(report, args.out / "ray_scoring.png")
    print((args.out / "ray_scoring.md").read_text())


def write_markdown(report: dict[str, Any], out: Path) -> None:
    runs = report["runs"]
    b = report["breakdown_one_file"]
    lines = [
        f"# Scoring {report['rows']:,} rows in {report['files']} Parquet files: one process against Ray Data",
        "",
        f"USFlow (default architecture, fitted on a reservoir sample of {report['fit']['sample']:,} rows), "
        f"{report['dim']} float64 features, {report['data_mib']:.0f} MiB of Parquet; every output a CSV of "
        "`file,row,score,label`, checked to hold one row per input row. Script: `benchmarks/ray_scoring.py`.",
        "",
        f"**Machine: {report['machine']['cpu_count']} cores.** 1-minute load average "
        f"{report['machine']['load_average_at_start'][0]:.2f} at the start, {report['load_average_at_end'][0]:.2f} "
        "at the end, and before each run in the table (the runs' own work raises it; other work on the machine "
        f"skews the figures low, the 2-worker ones most). {report['machine'].get('note') or ''}".rstrip(),
        "",
        "| run | engine | workers | wall (s) | rows/s | rows/s after start-up | start-up (s) | s per file | "
        "workers busy | peak RSS per worker (MiB) | load before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in runs.items():
        rss = ", ".join(f"{v:.0f}" for v in r["peak_rss_mib"].values())
        lines.append(
            f"| {name} | {r['engine']} | {r['workers']} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | "
            f"{r['rows_per_s_after_startup']:,.0f} | {r['startup_s']:.1f} | {r['busy_s'] / report['files']:.1f} | "
            f"{r['busy_share']:.0%} | {rss} | {r['load_average_before']:.2f} |"
        )
    lines += [
        "",
        "rows/s after start-up: rows / (wall - start-up). s per file: the seconds a worker spent on one file "
        "(read, score, write), averaged. Workers busy: those seconds over wall x workers (the rest is start-up, "
        "Ray Data's hand-over between files and the last file's tail).",
    ]
    lines += ["", "Scaling efficiency 1 -> 2 workers, `rate(2) / (2 rate(1))`, and where the 2-worker run loses:", ""]
    for key, suffix in (("scaling_efficiency-torch", ""), ("scaling_efficiency-onnx", "-onnx")):
        if key in report:
            e = report[key]
            one, two = runs[f"ray-1{suffix}"], runs[f"ray-2{suffix}"]
            slower = two["busy_s"] / one["busy_s"]
            lines.append(
                f"- {key.split('-')[1]}: {e['end_to_end']:.2f} end to end, {e['after_startup']:.2f} after the "
                f"start-up. Each file took {slower:.2f}x as long with two workers as with one (the same work per file: "
                f"the two workers share the cores with Ray's own processes, the driver's streaming executor and "
                f"the raylet, and with any other work), the start-up was "
                f"{two['startup_s'] / two['wall_s']:.0%} of the wall time, and the workers were busy "
                f"{two['busy_share']:.0%} of it."
            )
    startup = [
        f"{n}: `ray.init` {r['ray_init_s']:.1f} s, ONNX export {r['export_s']:.1f} s, first file started after "
        f"{r['first_file_s']:.1f} s"
        for n, r in runs.items()
        if n.startswith("ray")
    ]
    if startup:
        lines += ["", "Ray start-up (each Ray run starts and stops its own local Ray): " + "; ".join(startup) + "."]
    if "single" in runs:
        lines.append(f"The single process's start-up (imports, model load): {runs['single']['startup_s']:.1f} s.")
    total = b["read_s"] + b["score_torch_s"] + b["format_write_s"]
    lines += [
        "",
        f"Where one worker's time goes (one file, {int(b['rows']):,} rows, one thread, PyTorch): reading "
        f"{b['read_s']:.1f} s ({b['read_s'] / total:.0%}), scoring {b['score_torch_s']:.1f} s "
        f"({b['score_torch_s'] / total:.0%}), formatting and writing the CSV {b['format_write_s']:.1f} s "
        f"({b['format_write_s'] / total:.0%})"
        + (f"; ONNX Runtime scores the same rows in {b['score_onnx_s']:.1f} s." if b["score_onnx_s"] else "."),
        "",
        "![rows/s by run](ray_scoring.png)",
        "",
    ]
    (out / "ray_scoring.md").write_text("\n".join(lines))


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    names = list(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].bar(names, [runs[n]["rows_per_s"] for n in names], label="end to end")
    axes[0].bar(
        names, [runs[n]["rows_per_s_after_startup"] for n in names], fill=False, edgecolor="k", label="after start-up"
    )
    axes[0].set_ylabel("rows/s")
    axes[0].legend()
    axes[1].bar(names, [max(runs[n]["peak_rss_mib"].values()) for n in names])
    axes[1].set_ylabel("peak RSS per worker (MiB, largest)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{report['rows']:,} rows x {report['dim']} in {report['files']} Parquet files (2 shared cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
