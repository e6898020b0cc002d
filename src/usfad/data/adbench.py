"""ADBench ``.npz`` datasets: find them, list them by group, load one as float64/int arrays.

Each file holds ``X`` (n x d) and ``y`` (1 = anomaly). The directory comes from the
caller or the ``USFAD_DATA`` environment variable, never from a hard-coded path, and may be

- the ADBench root, with one folder per group (``Classical/``, ``CV_by_ResNet18/``, ...);
- a folder of ``.npz`` files (its own name is then the group name);
- a folder holding ``adbench/`` (as ``../shared/data`` does).

A dataset is named ``"6_cardio"`` or, to pick one group's copy, ``"Classical/6_cardio"``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

ENV_VAR = "USFAD_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    """One ``.npz`` file: its name (file stem), group (parent folder) and path."""

    name: str
    group: str
    path: Path

    @property
    def qualified_name(self) -> str:
        """``"group/name"``: unique within one data root."""
        return f"{self.group}/{self.name}"


def _natural_key(name: str) -> tuple[int, str]:
    """ADBench names start with a number (``6_cardio``): sort 2 before 10."""
    match = re.match(r"(\d+)_", name)
    return (int(match.group(1)) if match else 10**9, name.lower())


def _npz_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.npz") if p.is_file())


def _has_datasets(folder: Path) -> bool:
    return bool(_npz_files(folder)) or any(sub.is_dir() and _npz_files(sub) for sub in folder.iterdir())


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$USFAD_DATA``; checked to exist.

    A directory without ``.npz`` files of its own but with an ``adbench/`` sub-folder
    resolves to that sub-folder.
    """
    if root is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise FileNotFoundError(
                f"no ADBench data directory given: pass one (--data DIR) or set the {ENV_VAR} environment variable"
            )
        root, source = env, f"from ${ENV_VAR}"
    else:
        source = "given"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"ADBench data directory {path} ({source}) does not exist or is not a directory")
    if not _has_datasets(path) and (path / "adbench").is_dir():
        path = path / "adbench"
    if not _has_datasets(path):
        raise FileNotFoundError(
            f"no .npz datasets in {path} ({source}) nor in its sub-folders; "
            "expected the ADBench root (Classical/, CV_by_ResNet18/, ...) or a folder of .npz files"
        )
    return path.resolve()


def list_datasets(root: str | os.PathLike[str] | None = None, group: str | None = None) -> list[DatasetInfo]:
    """Every dataset under ``root`` (optionally of one ``group``), sorted by group then number."""
    base = data_root(root)
    found = [DatasetInfo(p.stem, base.name, p) for p in _npz_files(base)]
    for sub in sorted(p for p in base.iterdir() if p.is_dir()):
        found += [DatasetInfo(p.stem, sub.name, p) for p in _npz_files(sub)]
    if group is not None:
        found = [d for d in found if d.group == group]
    return sorted(found, key=lambda d: (d.group, *_natural_key(d.name)))


def datasets_by_group(root: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """``{group: [dataset names]}`` for every group under ``root``."""
    groups: dict[str, list[str]] = {}
    for info in list_datasets(root):
        groups.setdefault(info.group, []).append(info.name)
    return groups


def find_dataset(name: str, root: str | os.PathLike[str] | None = None) -> DatasetInfo:
    """The dataset called ``name`` (``"6_cardio"``, ``"Classical/6_cardio"``, ``.npz`` optional)."""
    base = data_root(root)
    wanted = name.removesuffix(".npz").strip("/")
    group, _, stem = wanted.rpartition("/")
    everything = list_datasets(base)
    matches = [d for d in everything if d.name == stem and (not group or d.group == group)]
    if not matches:
        close = [d.qualified_name for d in everything if stem.lower() in d.name.lower()][:10]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise FileNotFoundError(
            f"no dataset {name!r} in {base} (looked for {wanted}.npz in it and its sub-folders){hint}"
        )
    if len(matches) > 1:
        options = ", ".join(d.qualified_name for d in matches)
        raise FileNotFoundError(f"dataset name {name!r} is ambiguous in {base}; name one of: {options}")
    return matches[0]


def select_datasets(patterns: Iterable[str], root: str | os.PathLike[str] | None = None) -> list[DatasetInfo]:
    """Datasets matching any of ``patterns``, in pattern order, without repeats.

    A pattern is a dataset name (``"6_cardio"``, ``"Classical/6_cardio"``), a group name
    (``"Classical"``: every dataset in it) or a shell glob over ``group/name`` or ``name``
    (``"CV_by_ResNet18/MVTec-AD_*"``). A pattern that matches nothing is an error.
    """
    everything = list_datasets(root)
    groups = {d.group for d in everything}
    chosen: dict[Path, DatasetInfo] = {}
    for pattern in patterns:
        pattern = pattern.removesuffix(".npz").strip("/")
        if pattern in groups:
            hits = [d for d in everything if d.group == pattern]
        elif any(ch in pattern for ch in "*?["):
            hits = [
                d
                for d in everything
                if fnmatch.fnmatchcase(d.qualified_name, pattern) or fnmatch.fnmatchcase(d.name, pattern)
            ]
        else:
            hits = [find_dataset(pattern, root)]
        if not hits:
            raise FileNotFoundError(
                f"no dataset matches {pattern!r} in {data_root(root)} (groups: {', '.join(sorted(groups))})"
            )
        for info in hits:
            chosen.setdefault(info.path, info)
    return list(chosen.values())


def read_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from one ADBench file: ``X`` float64 (n, d), ``y`` int64 (n,) of 0/1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if not {"X", "y"} <= keys:
                raise DataError(f"{path} must hold arrays 'X' and 'y', found {sorted(keys)}")
            X = np.asarray(archive["X"], dtype=np.float64)
            y_raw = np.asarray(archive["y"]).ravel()
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[0] != y_raw.shape[0]:
        raise DataError(f"{path}: X must be (n, d) with one label per row, got X {X.shape} and y {y_raw.shape}")
    y = y_raw.astype(np.int64)
    if not np.array_equal(y, y_raw) or (set(np.unique(y).tolist()) - {0, 1}):
        raise DataError(f"{path}: y must hold only 0 (normal) and 1 (anomaly), got values {np.unique(y_raw)[:10]}")
    return X, y


def load_dataset(name: str, root: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of the dataset ``name`` under ``root`` (or ``$USFAD_DATA``)."""
    return read_npz(find_dataset(name, root).path)
