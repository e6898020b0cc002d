"""The detector contract shared by every usfad model.

scikit-learn's estimator rules (``__init__`` only stores parameters; ``fit`` returns
``self``; learned state ends in ``_``) plus PyOD's names:

- ``decision_function(X)``: anomaly score, higher = more anomalous;
- ``score_samples(X) = -decision_function(X)`` (scikit-learn sign);
- ``decision_scores_``, ``threshold_``, ``labels_`` (1 = anomaly) after ``fit``;
- ``predict(X)`` and ``predict_proba(X)`` (PyOD's linear scaling of the training scores).

Models are saved as one safetensors file (tensors) whose metadata holds a versioned JSON
config; loading never unpickles anything.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from torch import Tensor, nn

from ..errors import DataError, ModelFileError
from ..export import OPSET, export_module, inference_copy
from ..modelfile import read_model_file, write_model_file
from ..runtime import resolve_device, seeded
from ..train import History, TrainConfig
from ..validation import check_array

FORMAT = "usfad-detector"
FORMAT_VERSION = 1
THRESHOLDS = ("contamination", "chi2")

_REGISTRY: dict[str, type[BaseDetector]] = {}


class BaseDetector(OutlierMixin, BaseEstimator):
    """Common machinery; subclasses implement ``_build_model``, ``_loss`` and ``_score``."""

    #: scores computed per batch at inference
    score_batch_size: ClassVar[int] = 4096

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # --- to implement -------------------------------------------------------------
    def _build_model(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def _loss(self, batch: Tensor) -> Tensor:
        """Per-sample training loss."""
        raise NotImplementedError

    def _score(self, batch: Tensor) -> Tensor:
        """Per-sample anomaly score (higher = more anomalous)."""
        raise NotImplementedError

    def _latent(self, batch: Tensor) -> Tensor:
        raise NotImplementedError

    def _check_params(self) -> None:
        """Raise ValueError for invalid hyper-parameters (called by ``fit``)."""

    def _fit_model(self, data: Tensor, config: TrainConfig, generator: torch.Generator) -> History:
        from ..train import fit_module

        return fit_module(self.model_, self._loss, data, config, generator)

    def _chi2_threshold(self) -> float:
        raise ValueError(f"threshold='chi2' needs a uniformly scaling flow; {type(self).__name__} is not one")

    def _extra_state(self) -> dict[str, Any]:
        """JSON-serialisable fitted attributes other than tensors, for ``save``."""
        return {}

    # --- fitting ------------------------------------------------------------------
    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            validation_fraction=self.validation_fraction,
            patience=self.patience,
            max_steps=self.max_steps,
            verbose=self.verbose,
            desc=type(self).__name__,
        )

    def _check_common_params(self) -> None:
        if not 0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {THRESHOLDS}, got {self.threshold!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")

    def fit(self, X: Any, y: Any = None) -> BaseDetector:
        """Fit on normal data ``X`` (``y`` is ignored: training is unsupervised)."""
        self._check_common_params()
        self._check_params()
        X = check_array(X, min_samples=2)
        self.n_features_in_ = X.shape[1]
        if self.standardize:
            self.scaler_mean_ = X.mean(0)
            std = X.std(0)
            self.scaler_scale_ = np.where(std > 1e-12 * np.maximum(1.0, np.abs(self.scaler_mean_)), std, 1.0)
        else:
            self.scaler_mean_ = np.zeros(X.shape[1])
            self.scaler_scale_ = np.ones(X.shape[1])
        seed = self.random_state if self.random_state is not None else int(np.random.randint(2**31 - 1))
        self.device_ = resolve_device(self.device)
        data = self._to_tensor(X)
        with seeded(int(seed)):
            generator = torch.Generator().manual_seed(int(seed))
            self.model_ = self._build_model(X.shape[1]).to(self.device_)
            self.history_ = self._fit_model(data, self._train_config(), generator)
        self.model_.eval()
        self.decision_scores_ = self._scores_of(data)
        self.threshold_ = self._threshold()
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def _threshold(self) -> float:
        if self.threshold == "chi2":
            return float(self._chi2_threshold())
        return float(np.quantile(self.decision_scores_, 1 - self.contamination))

    # --- inference ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    def _to_tensor(self, X: np.ndarray) -> Tensor:
        Xs = (X - self.scaler_mean_) / self.scaler_scale_
        return torch.as_tensor(Xs, dtype=torch.float32, device=self.device_)

    def _validated(self, X: Any) -> Tensor:
        self._check_fitted()
        return self._to_tensor(check_array(X, n_features=self.n_features_in_))

    @torch.no_grad()
    def _batched(self, fn: Any, data: Tensor) -> np.ndarray:
        self.model_.eval()
        parts = [
            fn(data[i : i + self.score_batch_size]).cpu().double()
            for i in range(0, data.shape[0], self.score_batch_size)
        ]  # noqa: E501
        return torch.cat(parts).numpy()

    def _scores_of(self, data: Tensor) -> np.ndarray:
        scores = self._batched(self._score, data)
        if np.isnan(scores).any():
            raise DataError(
                f"{type(self).__name__} produced NaN scores for rows {np.flatnonzero(np.isnan(scores))[:10].tolist()}"
            )  # noqa: E501
        # +inf means "beyond float range": keep the order, stay finite for metrics.
        return np.nan_to_num(scores, posinf=np.finfo(np.float64).max, neginf=np.finfo(np.float64).min)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per sample, higher = more anomalous."""
        return self._scores_of(self._validated(X))

    def score_samples(self, X: Any) -> np.ndarray:
        """``-decision_function(X)`` (scikit-learn's sign: higher = more normal)."""
        return -self.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """1 for anomalies (score above ``threshold_``), 0 otherwise."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, 2)`` [normal, anomaly] by min-max scaling against the training scores."""
        scores = self.decision_function(X)
        lo, hi = float(self.decision_scores_.min()), float(self.decision_scores_.max())
        p = np.clip((scores - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        return np.column_stack([1 - p, p])

    def latent(self, X: Any) -> np.ndarray:
        """The latent representation (flow output or Deep SVDD embedding) of ``X``."""
        return self._batched(self._latent, self._validated(X))

    # --- deployment ---------------------------------------------------------------
    def scoring_module(self) -> nn.Module:
        """The fitted detector as one module: raw float64 features ``(batch, n_features)`` ->
        float64 scores ``(batch,)``, as ``decision_function`` computes them (see
        :class:`DetectorGraph`); in eval mode, on the CPU, LU layers frozen. What
        :meth:`export_onnx` exports."""
        return DetectorGraph(self).eval()

    def export_onnx(self, path: str | os.PathLike[str], *, opset: int | None = None) -> Path:
        """Write the fitted detector as an ONNX graph that scores like ``decision_function``.

        The graph (:meth:`scoring_module`) takes RAW features (input ``"X"``, float64, shape
        ``(batch, n_features)``, batch size free) and returns ``"score"`` (float64
        ``(batch,)``, higher = more anomalous): the standardisation is inside. The threshold
        and feature count are in the file's metadata (``usfad.threshold``,
        ``usfad.n_features``). Opset :data:`usfad.export.OPSET` unless ``opset`` is given.
        Check a file with :func:`usfad.export.verify_onnx`. Needs ``pip install 'usfad[onnx]'``.
        """
        from .. import __version__

        graph = self.scoring_module()
        example = torch.as_tensor(np.asarray(self.scaler_mean_, dtype=np.float64)).repeat(3, 1)
        example = example + torch.linspace(-1, 1, 3, dtype=torch.float64)[:, None] * graph.scale
        metadata = {
            "usfad.version": __version__,
            "usfad.class": type(self).__name__,
            "usfad.n_features": self.n_features_in_,
            "usfad.threshold": repr(float(self.threshold_)),
            "usfad.input": "X: float64 (batch, n_features), raw (unstandardised) features",
            "usfad.output": "score: float64 (batch,), anomaly score, higher = more anomalous; "
            "label = score > threshold",
        }
        return export_module(
            graph,
            example,
            path,
            input_names=("X",),
            output_names=("score",),
            opset=OPSET if opset is None else opset,
            metadata=metadata,
        )

    # --- persistence --------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted detector to one safetensors file; returns the path."""
        self._check_fitted()
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.model_.state_dict().items()}
        tensors["scaler_mean"] = torch.from_numpy(np.asarray(self.scaler_mean_, dtype=np.float64))
        tensors["scaler_scale"] = torch.from_numpy(np.asarray(self.scaler_scale_, dtype=np.float64))
        tensors["decision_scores"] = torch.from_numpy(np.asarray(self.decision_scores_, dtype=np.float64))
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        state = {"n_features_in_": self.n_features_in_, "threshold_": self.threshold_, **self._extra_state()}
        metadata = {
            "format": FORMAT,
            "version": str(FORMAT_VERSION),
            "class": type(self).__name__,
            "params": json.dumps(params),
            "state": json.dumps(state),
        }
        return write_model_file(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> BaseDetector:
        """Read a file written by :meth:`save`; validates format, version and class."""
        tensors, metadata = read_model_file(path, FORMAT, FORMAT_VERSION)
        name = metadata.get("class", "")
        klass = _REGISTRY.get(name)
        if klass is None:
            raise ModelFileError(f"{path} holds an unknown model class {name!r}")
        if cls is not BaseDetector and not issubclass(klass, cls):
            raise ModelFileError(f"{path} holds a {name}, not a {cls.__name__}")
        try:
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(metadata["params"]).items()}
            state = json.loads(metadata["state"])
            det = klass(**params)
            det.device_ = resolve_device(device)
            det.n_features_in_ = int(state.pop("n_features_in_"))
            det.threshold_ = float(state.pop("threshold_"))
            for key, value in state.items():
                setattr(det, key, value)
            det.scaler_mean_ = tensors.pop("scaler_mean").numpy()
            det.scaler_scale_ = tensors.pop("scaler_scale").numpy()
            det.decision_scores_ = tensors.pop("decision_scores").numpy()
            model = det._build_model(det.n_features_in_)
            model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items()}, strict=True)
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{path} could not be restored as a {name}: {exc}") from None
        det.model_ = model.to(det.device_).eval()
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(int)
        return det


def load(path: str | os.PathLike[str], device: str = "cpu") -> BaseDetector:
    """Load any usfad detector saved with ``save``."""
    return BaseDetector.load(path, device=device)


class DetectorGraph(nn.Module):
    """A fitted tabular detector as one module: raw float64 features -> float64 scores.

    It calls the detector's own ``_score`` on a copy whose network is
    :func:`~usfad.export.inference_copy` of ``model_``, so the exported score is
    ``decision_function``'s by construction: standardise (float64), cast to float32, score,
    cast to float64, map ``+-inf`` to the largest finite float64. Build it with
    :meth:`BaseDetector.scoring_module`.
    """

    def __init__(self, detector: BaseDetector):
        super().__init__()
        detector._check_fitted()
        self.model = inference_copy(detector.model_)
        scorer = copy.copy(detector)
        scorer.model_ = self.model
        scorer.device_ = torch.device("cpu")
        self._scorer = scorer  # not a module: the parameters belong to self.model
        self.register_buffer("mean", torch.as_tensor(np.asarray(detector.scaler_mean_, dtype=np.float64)))
        self.register_buffer("scale", torch.as_tensor(np.asarray(detector.scaler_scale_, dtype=np.float64)))

    def forward(self, x: Tensor) -> Tensor:
        z = ((x - self.mean) / self.scale).to(torch.float32)
        s = self._scorer._score(z).to(torch.float64)
        big = float(np.finfo(np.float64).max)
        s = torch.where(s == float("inf"), torch.full_like(s, big), s)
        return torch.where(s == float("-inf"), torch.full_like(s, -big), s)
