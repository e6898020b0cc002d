"""Experiments: one engine for every grid of runs, and the image grid built on it.

- :mod:`~usfad.experiments.engine`: a job gives one result row with one status vocabulary
  (``ok`` / ``failed``, ``diverged``); executors run jobs in this process, in a process pool
  or on Ray;
- :mod:`~usfad.experiments.health`: :func:`~usfad.experiments.health.training_health`, the
  one reading of a finished run's losses (exploded, blew up, jumped, largest rise);
- :mod:`~usfad.experiments.store`: the result store, one JSON line per row, resumable;
- :mod:`~usfad.experiments.image`: the image benchmark grid (``usfad image bench``);
- :mod:`~usfad.experiments.demo`: the demo's run (``usfad demo``), one short in-process loop.

The tabular grid (``usfad bench``, :mod:`usfad.bench`) and the stability study
(:mod:`usfad.studies.stability`) run :class:`usfad.bench.runner.CellJob` jobs on this engine;
their tables are written by :mod:`usfad.bench.report`, :mod:`usfad.studies` and
:mod:`usfad.reporting` (the image grid's and the demo's).
"""
