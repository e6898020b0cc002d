"""usfad model files: one safetensors file, tensors plus string metadata (a versioned JSON config).

Nothing is ever unpickled. Reading takes the whole file into memory and parses that copy,
so a loaded model never depends on the file staying as it was (no memory map: replacing
or truncating the file later cannot change or crash a detector already in memory).
Writing goes to a temporary file that is renamed over the target only when complete.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from torch import Tensor

from .errors import ModelFileError
from .outputs import atomic_path

PathLike = str | os.PathLike[str]

#: a safetensors header is a little-endian u64 length, then that many bytes of JSON
_HEADER_LIMIT = 100 * 2**20


def write_model_file(path: PathLike, tensors: dict[str, Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` and string ``metadata`` to one safetensors file, atomically; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a file")
    return path.read_bytes()


def _metadata(path: Path, data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ModelFileError(f"{path} is not a readable usfad model file (only {len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_HEADER_LIMIT, len(data) - 8):
        raise ModelFileError(f"{path} is not a readable usfad model file (no valid safetensors header)")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is not a readable usfad model file ({exc})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or "format" not in meta:
        raise ModelFileError(f"{path} is a safetensors file but not a usfad model (no format in its metadata)")
    return {str(k): str(v) for k, v in meta.items()}


def model_file_format(path: PathLike) -> str:
    """The ``format`` a usfad model file declares (e.g. ``"usfad-detector"``)."""
    path = Path(path)
    return _metadata(path, _read_bytes(path))["format"]


def read_model_file(path: PathLike, fmt: str, version: int) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors (in memory, owning their storage) and metadata of a model file; format and version checked."""
    from safetensors.torch import load as load_bytes

    path = Path(path)
    data = _read_bytes(path)
    metadata = _metadata(path, data)
    if metadata.get("format") != fmt:
        raise ModelFileError(f"{path} is not a {fmt} file (format {metadata.get('format')!r})")
    if metadata.get("version") != str(version):
        raise ModelFileError(f"{path} has format version {metadata.get('version')}, this usfad reads version {version}")
    try:
        tensors = load_bytes(data)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable usfad model file ({exc})") from None
    return {k: v.clone() for k, v in tensors.items()}, metadata
