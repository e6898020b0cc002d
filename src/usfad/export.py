"""ONNX export of usfad models, and the check that the exported graph scores like PyTorch.

Generic machinery (any ``nn.Module``, also the image detectors' several-output heads):

- :func:`inference_copy` returns a copy of a module ready for export: every
  :class:`~usfad.flows.LULinear` frozen into a :class:`~usfad.flows.FixedLinear` (ONNX has
  no triangular solve; the inverse ``W^-1`` inside each conjugated coupling block becomes
  one matrix product), in eval mode, on the CPU;
- :func:`export_module` writes ``module(*inputs)`` to an ONNX file with named inputs and
  outputs (one or several) and a dynamic batch axis (axis 0 of every input and output);
- :func:`onnx_session`, :func:`run_onnx` and :func:`relative_difference` run a file with
  ONNX Runtime, batch by batch, and compare its outputs with PyTorch's;
  :func:`verify_module` does all of it for a module and its exported file.

The detectors build their own graphs and call :func:`export_module`; this module imports
neither :mod:`usfad.detectors` nor :mod:`usfad.vision` (it lies below them):

- tabular: ``detector.export_onnx(path)`` exports ``detector.scoring_module()``, RAW
  features, float64 ``(batch, n_features)`` as in ``decision_function``, to float64 scores
  (input ``"X"``, output ``"score"``; the threshold and feature count in the file's
  metadata). :func:`verify_onnx` scores data with ONNX Runtime at several batch sizes and
  reports the largest difference from ``decision_function``;
- image: ``ImageDetector.export_onnx(path)`` exports ``detector.scoring_module()``, the
  whole of ``score_maps`` as one graph: input ``"images"`` (float32 ``(batch, 3, S, S)``, RGB
  in ``[0, 1]``), outputs ``"scores"`` (float32 ``(batch,)``) and ``"maps"`` (float32
  ``(batch, S, S)``). :func:`verify_image_onnx` checks it against ``score_maps`` at batch
  sizes 1 and 8 (tolerance :data:`IMAGE_RTOL`).

Both checks work on any object with the detector's public methods (duck typing).

Exporter: PyTorch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``, at opset
:data:`OPSET` (ONNX Runtime >= 1.12 runs it). The dynamo exporter gives the same graphs for
these models but takes several times longer and prints progress; the TorchScript one is
robust for every op the flows use (matrix products, gathers for the permutations, slices
and concatenations for the coupling splits, ``clamp * tanh``, ``exp``).

``onnx`` and ``onnxruntime`` are optional (``pip install 'usfad[onnx]'``); they are imported
only here, with an error that says how to install them.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .flows.linear import LULinear
from .outputs import atomic_path

#: the ONNX opset of exported files
OPSET = 17
#: relative tolerance of :func:`verify_onnx` (float32 networks)
RTOL = 1e-5
#: batch sizes :func:`verify_onnx` checks by default
VERIFY_BATCH_SIZES = (1, 1000)

PathLike = str | os.PathLike[str]


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"ONNX export needs the optional package {module!r}; install it with pip install 'usfad[onnx]'"
        ) from None


# --- generic machinery -----------------------------------------------------------------


def inference_copy(module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A deep copy of ``module`` in eval mode on the CPU, LU layers frozen to plain matrices.

    ``dtype``: the copy's floating-point type, set before the LU layers are frozen (so a
    float64 copy multiplies its factors in float64); ``None`` keeps the module's.
    """
    module = copy.deepcopy(module).cpu().eval()
    if dtype is not None:
        module = module.to(dtype)
    if isinstance(module, LULinear):
        return module.frozen()
    for name, child in list(module.named_modules()):
        if name and isinstance(child, LULinear):
            parent_name, _, attr = name.rpartition(".")
            setattr(module.get_submodule(parent_name), attr, child.frozen())
    return module


def _annotate(
    onnx: Any,
    path: Path,
    output_names: Sequence[str],
    metadata: Mapping[str, Any] | None,
    output_shapes: Mapping[str, Sequence[int | str]] | None,
) -> None:
    """Add ``metadata`` and declared output shapes to the ONNX file at ``path``, in place."""
    model = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    for name, shape in (output_shapes or {}).items():
        (output,) = [o for o in model.graph.output if o.name == name] or [None]
        if output is None:
            raise ValueError(f"output_shapes names {name!r}, not an output of the graph ({list(output_names)})")
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for size in shape:
            dim = dims.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = int(size)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_module(
    module: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    path: PathLike,
    *,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
    dynamic_batch: bool = True,
    opset: int = OPSET,
    metadata: Mapping[str, Any] | None = None,
    output_shapes: Mapping[str, Sequence[int | str]] | None = None,
) -> Path:
    """Write ``module(*example_inputs)`` as an ONNX graph to ``path``; returns the path.

    ``module`` returns one tensor or a tuple of tensors (e.g. image scores and anomaly
    maps), named by ``output_names`` in order; the inputs are named by ``input_names``.
    With ``dynamic_batch`` axis 0 of every input and output is a symbolic ``"batch"``
    dimension (give an example batch of 2 or more, so that no size-1 axis is specialised).
    Export :func:`inference_copy` of a model that holds LU layers. ``metadata`` goes into
    the model's ``metadata_props`` (values written as strings). ``output_shapes`` declares
    the shapes of named outputs (an int is a fixed size, a string a symbolic one such as
    ``"batch"``) where the exporter's own shape inference leaves them vague or wrong (it
    does after a convolution on a reshaped map, e.g. the image detectors' smoothing).
    """
    onnx = _require("onnx")  # torch's exporter needs it too: fail with the install hint first
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if len(input_names) != len(inputs):
        raise ValueError(f"{len(inputs)} example input(s) but {len(input_names)} input name(s)")
    with torch.no_grad():
        outputs = module(*inputs)
    n_outputs = 1 if isinstance(outputs, Tensor) else len(outputs)
    if len(output_names) != n_outputs:
        raise ValueError(f"the module returns {n_outputs} output(s) but {len(output_names)} output name(s) were given")
    dynamic_axes = {name: {0: "batch"} for name in (*input_names, *output_names)} if dynamic_batch else None
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter is flagged as legacy, and tracing warns about Python ints
        # taken from shapes (the feature count, fixed per model): both are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(tmp),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=int(opset),
            dynamo=False,
        )
        if metadata or output_shapes:
            _annotate(onnx, tmp, output_names, metadata, output_shapes)
    return path


def onnx_session(path: PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session on ``path``; ``threads`` sets ``intra_op_num_threads``."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(
    session: Any, inputs: np.ndarray | Sequence[np.ndarray], batch_size: int | None = None
) -> list[np.ndarray]:
    """Every output of ``session`` on ``inputs`` (in input order), ``batch_size`` rows per run."""
    arrays = (inputs,) if isinstance(inputs, np.ndarray) else tuple(inputs)
    names = [i.name for i in session.get_inputs()]
    n = arrays[0].shape[0]
    step = max(1, n if batch_size is None else int(batch_size))
    parts = [
        session.run(None, {name: a[i : i + step] for name, a in zip(names, arrays)}) for i in range(0, max(n, 1), step)
    ]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max(|expected|, 1)``: relative, absolute for values below 1.

    (A purely relative error is meaningless where a score crosses zero, e.g. an NLL near 0.)
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    if actual.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1.0)))


@dataclass
class VerifyReport:
    """What :func:`verify_onnx` or :func:`verify_module` found: the largest difference per batch size."""

    model: str
    n_rows: int
    rtol: float
    #: batch size -> :func:`relative_difference` of ONNX Runtime's outputs from PyTorch's (worst output)
    max_rel_diff: dict[int, float] = field(default_factory=dict)
    #: batch size -> largest absolute difference
    max_abs_diff: dict[int, float] = field(default_factory=dict)
    #: output name -> batch size -> relative difference of that output (when the outputs are named)
    output_rel_diff: dict[str, dict[int, float]] = field(default_factory=dict)
    torch_seconds: float = float("nan")
    onnx_seconds: float = float("nan")

    @property
    def worst(self) -> float:
        return max(self.max_rel_diff.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return self.worst <= self.rtol

    def differences(self) -> str:
        """The relative differences by batch size (``1.2e-07 at batch 1, ...``), per output when
        there are several (``scores 1.2e-07 at batch 1; maps ...``)."""
        if len(self.output_rel_diff) > 1:
            return "; ".join(
                f"{name} " + ", ".join(f"{v:.2e} at batch {b}" for b, v in diffs.items())
                for name, diffs in self.output_rel_diff.items()
            )
        return ", ".join(f"{v:.2e} at batch {b}" for b, v in self.max_rel_diff.items())

    def __str__(self) -> str:
        verdict = "OK" if self.passed else f"FAILED (tolerance {self.rtol:g})"
        return (
            f"{self.model}: ONNX vs PyTorch on {self.n_rows} rows, max relative difference {self.differences()}: "
            f"{verdict}"
        )


def _compare(
    report: VerifyReport,
    session: Any,
    inputs: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    batch_sizes: Sequence[int],
) -> VerifyReport:
    """Fill ``report`` with the worst difference over the outputs, per batch size (and per output)."""
    names = [o.name for o in session.get_outputs()]
    for b in batch_sizes:
        start = time.perf_counter()
        actual = run_onnx(session, inputs, batch_size=b)
        if b == max(batch_sizes):
            report.onnx_seconds = time.perf_counter() - start
        diffs = [relative_difference(a, e) for a, e in zip(actual, expected)]
        for name, d in zip(names, diffs):
            report.output_rel_diff.setdefault(name, {})[int(b)] = d
        report.max_rel_diff[int(b)] = max(diffs)
        report.max_abs_diff[int(b)] = max(float(np.max(np.abs(a - e), initial=0.0)) for a, e in zip(actual, expected))
    return report


def verify_module(
    module: nn.Module,
    path: PathLike,
    inputs: Tensor | Sequence[Tensor],
    *,
    batch_sizes: Sequence[int] = VERIFY_BATCH_SIZES,
    rtol: float = RTOL,
    threads: int | None = 1,
) -> VerifyReport:
    """Run ``module(*inputs)`` in PyTorch and the ONNX file at ``path`` in batches; compare.

    Every output counts (the report keeps the worst per batch size). For modules exported
    with :func:`export_module`, e.g. an image head returning scores and anomaly maps.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    session = onnx_session(path, threads=threads)
    start = time.perf_counter()
    with torch.no_grad():
        out = module.eval()(*inputs)
    outputs = [out] if isinstance(out, Tensor) else list(out)
    report = VerifyReport(type(module).__name__, len(inputs[0]), rtol, torch_seconds=time.perf_counter() - start)
    arrays = [t.detach().cpu().numpy() for t in inputs]
    return _compare(report, session, arrays, [o.detach().cpu().numpy() for o in outputs], batch_sizes)


# --- tabular detectors -------------------------------------------------------------------


def verify_onnx(
    detector: Any,
    path: PathLike,
    X: Any,
    *,
    batch_sizes: Sequence[int] = VERIFY_BATCH_SIZES,
    rtol: float = RTOL,
    threads: int | None = 1,
) -> VerifyReport:
    """Score ``X`` with the ONNX file at ``path`` and with ``detector.decision_function``.

    ``detector``: a fitted tabular detector (anything with ``n_features_in_`` and
    ``decision_function``), e.g. the one whose ``export_onnx`` wrote ``path``.

    ONNX Runtime runs ``X`` (raw features) in batches of each size in ``batch_sizes``; the
    report holds, per batch size, the :func:`relative_difference` from PyTorch's scores
    (``passed`` when all are within ``rtol``) and the time each side took on the whole of
    ``X`` (PyTorch's ``decision_function``; ONNX at the largest batch size). ONNX Runtime
    uses ``threads`` intra-op threads (``None``: its default, all cores).
    """
    from .validation import check_array

    X = check_array(X, n_features=detector.n_features_in_)
    session = onnx_session(path, threads=threads)
    start = time.perf_counter()
    expected = detector.decision_function(X)
    report = VerifyReport(type(detector).__name__, len(X), rtol, torch_seconds=time.perf_counter() - start)
    return _compare(report, session, [X], [expected], batch_sizes)


# --- image detectors ---------------------------------------------------------------------

#: relative tolerance of :func:`verify_image_onnx` (see its docstring)
IMAGE_RTOL = 1e-4
#: batch sizes :func:`verify_image_onnx` checks by default (images are large)
IMAGE_VERIFY_BATCH_SIZES = (1, 8)


def random_images(n: int, size: int, seed: int = 0) -> Tensor:
    """``[n, 3, size, size]`` float32 images in ``[0, 1]``: smooth random colour blobs plus pixel noise."""
    generator = torch.Generator().manual_seed(int(seed))
    coarse = torch.rand(n, 3, max(2, size // 16), max(2, size // 16), generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (smooth + 0.1 * torch.randn(n, 3, size, size, generator=generator)).clamp(0.0, 1.0)


def verify_image_onnx(
    detector: Any,
    path: PathLike,
    images: Any,
    *,
    batch_sizes: Sequence[int] = IMAGE_VERIFY_BATCH_SIZES,
    rtol: float = IMAGE_RTOL,
    threads: int | None = 1,
) -> VerifyReport:
    """Score ``images`` with the ONNX file at ``path`` and with ``detector.score_maps``; compare.

    ``detector``: a fitted image detector (anything with ``as_images``, ``score_maps`` and the
    ``model``, ``flow`` and ``backbone_name`` that name it), e.g. the one whose
    ``export_onnx`` wrote ``path``.

    ``images``: ``[N, 3, S, S]`` in ``[0, 1]`` at the file's input size. The report holds,
    per batch size, the worst :func:`relative_difference` over scores and maps (each one in
    ``output_rel_diff``), and ``passed`` when it is within ``rtol``.

    Why 1e-4 and not the tabular 1e-5: in float32 the whole path (CNN backbone, flow head,
    upsampling, blur) cannot be held to 1e-5 in general. Where a head's maps are large (U-Flow
    ``affine``, whose couplings' ``exp`` amplify float32 rounding), both freezing the LU
    layers into plain matrices (:func:`inference_copy`, needed because ONNX has no
    triangular solve) and ONNX Runtime's kernels (summing in another order than PyTorch's)
    move the maps. The differences per head and flow (MobileNetV2, 256 px) are in
    ``benchmarks/results/export_check_vision.md``.
    """
    x = detector.as_images(images)
    session = onnx_session(path, threads=threads)
    expected_shape = session.get_inputs()[0].shape[1:]
    if list(x.shape[1:]) != [int(d) for d in expected_shape]:
        raise ValueError(
            f"{path} takes images of shape [batch, {', '.join(map(str, expected_shape))}], got {list(x.shape)}"
        )
    start = time.perf_counter()
    scores, maps = detector.score_maps(x)
    name = f"ImageDetector({detector.model}, {detector.flow}, {detector.backbone_name})"
    report = VerifyReport(name, len(x), rtol, torch_seconds=time.perf_counter() - start)
    return _compare(report, session, [x.numpy()], [scores, maps], batch_sizes)
