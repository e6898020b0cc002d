"""usfad model files: one safetensors file, tensors plus string metadata (a versioned JSON config).

Nothing is ever unpickled. Reading takes the whole file into memory and parses that copy,
so a loaded model never depends on the file staying as it was (no memory map: replacing
or truncating the file later cannot change or crash a detector already in memory).
Writing goes to a temporary file that is renamed over the target only when complete.

Integrity: :func:`write_model_file` stores a SHA-256 of the tensors (names, dtypes, shapes
and bytes) and one of the rest of the metadata (the JSON config) under
:data:`CHECKSUM_KEYS`; :func:`read_model_file` recomputes both and refuses a file whose
checksums do not match (flipped bytes, an edited config). Files written before checksums
existed have none and are read as they are. A checksum guards against corruption and
careless edits, not against someone who rewrites it too. :func:`check_permutations`
checks a loaded module's permutation buffers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import ModelFileError
from .outputs import atomic_path

PathLike = str | os.PathLike[str]

#: a safetensors header is a little-endian u64 length, then that many bytes of JSON
_HEADER_LIMIT = 100 * 2**20

#: metadata keys of the SHA-256 checksums: of the tensors, of the other metadata
CHECKSUM_KEYS = ("sha256.tensors", "sha256.config")

#: buffer names that hold a permutation of ``range(n)`` (LULinear, Permutation)
PERMUTATION_BUFFERS = ("order", "inverse_order")


def tensors_checksum(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode("utf-8"))
        # a fresh copy: a one-element buffer made by expand() counts as contiguous with stride 0,
        # which view(uint8) refuses (GaussianBase's centre with one feature)
        flat = t.reshape(-1).clone(memory_format=torch.contiguous_format)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def config_checksum(metadata: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the metadata other than the checksums, as JSON with sorted keys."""
    config = {k: v for k, v in metadata.items() if k not in CHECKSUM_KEYS}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def write_model_file(path: PathLike, tensors: dict[str, Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` and string ``metadata`` to one safetensors file, atomically; returns the path.

    The checksums of both are added to the metadata (:data:`CHECKSUM_KEYS`).
    """
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {k: v for k, v in metadata.items() if k not in CHECKSUM_KEYS}
    metadata[CHECKSUM_KEYS[0]] = tensors_checksum(tensors)
    metadata[CHECKSUM_KEYS[1]] = config_checksum(metadata)
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
    """Tensors (in memory, owning their storage) and metadata of a model file.

    Checks the format, the version and, when the file has them (every file written since
    they exist), the checksums: a mismatch is a :class:`ModelFileError` naming the file.
    """
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
    _check_checksums(path, tensors, metadata)
    return {k: v.clone() for k, v in tensors.items()}, metadata


def _check_checksums(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> None:
    present = [key for key in CHECKSUM_KEYS if key in metadata]
    if not present:  # written before checksums existed
        return
    if len(present) < len(CHECKSUM_KEYS):
        missing = sorted(set(CHECKSUM_KEYS) - set(present))
        raise ModelFileError(f"{path} has a checksum but not {missing}: the file was edited or is corrupted")
    for key, actual, what in (
        (CHECKSUM_KEYS[0], tensors_checksum(tensors), "its tensors"),
        (CHECKSUM_KEYS[1], config_checksum(metadata), "its config"),
    ):
        if metadata[key] != actual:
            raise ModelFileError(
                f"{path}: the SHA-256 of {what} is {actual}, but the file says {metadata[key]}: "
                f"the file is corrupted or was edited; refit or restore the model"
            )


def check_permutations(module: nn.Module, path: PathLike) -> None:
    """Raise :class:`ModelFileError` unless every ``order`` / ``inverse_order`` buffer of
    ``module`` holds each index of ``range(n)`` exactly once (and, where a layer has both,
    one undoes the other): a corrupted one would index out of range later, or scramble."""
    for prefix, layer in module.named_modules():
        found = {}
        for name in PERMUTATION_BUFFERS:
            buffer = layer._buffers.get(name)
            if buffer is None:
                continue
            where = f"{prefix}.{name}" if prefix else name
            n = buffer.numel()
            if buffer.dim() != 1 or buffer.is_floating_point() or buffer.is_complex() or buffer.dtype == torch.bool:
                raise ModelFileError(
                    f"{path}: {where} must be a vector of indices, got {buffer.dtype} {tuple(buffer.shape)}"
                )
            if not torch.equal(torch.sort(buffer.long()).values, torch.arange(n)):
                raise ModelFileError(
                    f"{path}: {where} is not a permutation of 0..{n - 1} (each index exactly once): "
                    f"the file is corrupted"
                )
            found[name] = buffer.long()
        if len(found) == 2 and not torch.equal(
            found["order"][found["inverse_order"]], torch.arange(len(found["order"]))
        ):
            raise ModelFileError(f"{path}: {prefix}.inverse_order does not undo {prefix}.order: the file is corrupted")
