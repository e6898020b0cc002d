"""Fitting a detector on a sample drawn from files larger than memory, and the record of that sample.

- :func:`fit_on_sample` draws a uniform random sample of rows in one pass over a list of
  files (:func:`usfad.data.sample.sample_files`, reservoir sampling), fits the detector on
  it and returns the sample;
- :func:`save_with_training_data` saves the fitted detector with a record of its training
  data in the model file's config (metadata key :data:`TRAINING_DATA_KEY`, JSON): the
  sample's size (asked for and drawn), its seed, the rows it was drawn from and every
  source file with its row count. The key is covered by the file's config checksum;
  loading ignores it, so such a file loads like any other. :func:`training_data` reads it
  back (``None`` for a model saved without one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data.files import DEFAULT_CHUNK_SIZE, PathLike
from .data.sample import FileSample, sample_files
from .detectors.base import FORMAT, FORMAT_VERSION
from .errors import DataError
from .modelfile import read_model_file
from .validation import check_array

#: the model file metadata key of the training-data record
TRAINING_DATA_KEY = "training_data"


def fit_on_sample(
    detector: Any,
    paths: Sequence[PathLike],
    size: int,
    *,
    random_state: int | None = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    label_column: str | None = None,
) -> FileSample:
    """Fit ``detector`` on a uniform random sample of ``size`` rows of ``paths``; returns the sample.

    The sample is drawn as :func:`~usfad.data.sample.sample_files` draws it (seeded by
    ``random_state``; with ``label_column`` only rows labelled 0). Files with a header fit
    the detector on a DataFrame, so the column names are kept as ``feature_names_in_``.
    """
    sample = sample_files(paths, size, random_state=random_state, chunk_size=chunk_size, label_column=label_column)
    if len(sample.X) < 2:
        raise DataError(f"the files hold {len(sample.X)} usable row(s); fitting needs at least 2")
    X = check_array(sample.X, min_samples=2, what="the sample")
    if sample.feature_names is not None:
        import pandas as pd

        detector.fit(pd.DataFrame(X, columns=sample.feature_names, copy=False))
    else:
        detector.fit(X)
    return sample


def save_with_training_data(detector: Any, path: PathLike, record: dict[str, Any]) -> Path:
    """``detector.save(path)`` with ``record`` (JSON-serialisable) in the config, under :data:`TRAINING_DATA_KEY`."""
    return detector.save(path, annotations={TRAINING_DATA_KEY: json.dumps(record)})


def training_data(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The training-data record of a model file (see :func:`save_with_training_data`), or ``None``."""
    _, metadata = read_model_file(path, FORMAT, FORMAT_VERSION)
    text = metadata.get(TRAINING_DATA_KEY)
    return None if text is None else json.loads(text)
