"""Where results may be written, and how: nothing the user gave as input is ever overwritten.

- :func:`check_output_file` runs *before* any work: it refuses an output that is one of the
  inputs (same resolved path or same inode), an existing folder, a path whose folder does
  not exist or cannot be written to. Training for an hour and then failing to save is data
  loss too.
- :func:`check_output_dir` does the same for commands that write a folder of results.
- :func:`atomic_path` yields a temporary file beside the target; only when the block ends
  without an error is it renamed over the target (one ``os.replace``), so an existing file
  is never left half-written.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputPathError

PathLike = str | os.PathLike[str]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_file(
    path: PathLike, *, inputs: Iterable[PathLike | None] = (), what: str = "output", example: str = "out"
) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` if a file may be written there, else raise.

    Raises :class:`~usfad.errors.OutputPathError` when ``path`` is an existing folder (the
    message suggests ``path / example``), when its folder is missing or not writable, or when
    it is the same file as one of ``inputs`` (``None`` entries are skipped).
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise OutputPathError(
                f"the {what} {path} is the input file {source}: writing there would destroy it; choose another path"
            )
    if path.is_dir():
        raise OutputPathError(f"the {what} {path} is a folder; give a file name (e.g. {path / example})")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputPathError(f"the folder of the {what} {path} does not exist ({parent}); create it first")
    if not parent.is_dir():
        raise OutputPathError(f"the {what} {path} cannot be written: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"the {what} {path} cannot be written: no write permission in {parent}")
    return path


def check_output_dir(
    path: PathLike, *, inputs: Iterable[PathLike | None] = (), what: str = "output folder", create: bool = True
) -> Path:
    """Return ``path`` if a folder of results may be made there (it is created), else raise.

    Refuses an existing file, an input (or a folder that is an input), and a location that
    cannot be created or written to. ``create=False``: only checks (the nearest existing
    folder on the way must be writable), for a command that reads its inputs before it
    writes, so that a run refused on a bad input leaves no empty folder behind.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise OutputPathError(f"the {what} {path} is the input {source}; choose another folder")
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"the {what} {path} is an existing file, not a folder")
    if not create:
        existing = next(folder for folder in (path.absolute(), *path.absolute().parents) if folder.exists())
        if not existing.is_dir():
            raise OutputPathError(f"the {what} {path} cannot be created: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputPathError(f"the {what} {path} cannot be written to (no permission in {existing})")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"the {what} {path} cannot be created ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"the {what} {path} cannot be written to (no permission)")
    return path


def temporary_sibling(path: PathLike) -> Path:
    """A fresh hidden name in ``path``'s folder (same file system, so a rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The block creates the file itself (so it gets the usual permissions). On any exception
    the temporary file is removed and ``path`` is left as it was. The temporary name is
    unique, so two writers never share one.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
