"""The tabular benchmark: the grid, the model registry and the report.

``usfad bench`` runs (dataset x model x seed) cells under Protocol T, usfad's models and
the PyOD anchors side by side, as jobs of the experiment engine (:mod:`usfad.experiments`:
a local process pool or a Ray cluster); ``usfad report`` turns the result file into tables,
tests and plots. Modules: :mod:`~usfad.bench.runner` (the grid), :mod:`~usfad.bench.spec`
(the model registry and presets), :mod:`~usfad.bench.report` (the report). The result store
is :mod:`usfad.experiments.store` (``ResultStore`` and ``read_results`` are re-exported here).

Names are imported on first use, so that the command line starts without pandas or scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "write_report": ".report",
    "BenchResult": ".runner",
    "CellJob": ".runner",
    "LocalExecutor": ".runner",
    "RayExecutor": ".runner",
    "plan_jobs": ".runner",
    "run_benchmark": ".runner",
    "run_cell": ".runner",
    "DEFAULT_SETTINGS": ".spec",
    "MODELS": ".spec",
    "PAPER_SETTINGS": ".spec",
    "PRESETS": ".spec",
    "make_model": ".spec",
    "model_params": ".spec",
    "ResultStore": "..experiments.store",
    "read_results": "..experiments.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
