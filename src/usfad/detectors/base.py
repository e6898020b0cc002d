"""The detector contract shared by every usfad model.

scikit-learn's estimator rules (``__init__`` only stores parameters; ``fit`` returns
``self``; learned state ends in ``_``) plus PyOD's names:

- ``decision_function(X)``: anomaly score, higher = more anomalous;
- ``score_samples(X) = -decision_function(X)`` (scikit-learn sign);
- ``decision_scores_``, ``threshold_``, ``labels_`` (1 = anomaly) after ``fit``;
- ``predict(X)`` and ``predict_proba(X)`` (PyOD's linear scaling of the training scores);
  labels are PyOD's 0/1, not the -1/+1 of scikit-learn's ``OutlierMixin`` (whose
  ``fit_predict`` gives the same 0/1); ``tests/test_sklearn_checks.py`` runs scikit-learn's
  estimator checks and lists the few that do not apply, with the reason for each;
- ``p_values(X)`` with ``threshold="conformal"`` (split-conformal p-values).

Inputs: ``fit`` records ``feature_names_in_`` when ``X`` is a DataFrame whose column names are
all strings; scoring a DataFrame with other names, or the same names in another order, is
refused (arrays are taken positionally). Hyper-parameters are checked at ``fit`` against one
table, :data:`PARAMETER_CONSTRAINTS`.

Models are saved as one safetensors file (tensors) whose metadata holds a versioned JSON
config and SHA-256 checksums of both (:mod:`usfad.modelfile`); loading never unpickles
anything and checks every field it restores.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from torch import Tensor, nn

from ..density import NO_ALARM, calibration_split, conformal_p_values, conformal_threshold, rows_for_calibration
from ..errors import DataError, ModelFileError, NotFittedError, ThresholdWarning
from ..explain import Explanation, explain_rows
from ..export import OPSET, export_module, inference_copy
from ..modelfile import CHECKSUM_KEYS, check_permutations, read_model_file, write_model_file
from ..runtime import resolve_device, seeded
from ..train import History, TrainConfig
from ..validation import Constraint, check_array, check_feature_names, check_parameters, feature_names

FORMAT = "usfad-detector"
FORMAT_VERSION = 1
THRESHOLDS = ("contamination", "chi2", "conformal")

#: What each hyper-parameter of the tabular detectors may be, by name, in one place. ``fit``
#: checks the parameters the estimator has (``n_blocks`` applies to the flows and VAEFlow,
#: ``nu`` to DeepSVDD); rules that depend on the class (``flow``, ``mixing``, ``noise``,
#: ``objective``, ``score``, ``prior``) stay in each class's ``_check_params``.
PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    "epochs": Constraint("int", low=1),
    "batch_size": Constraint("int", low=1),
    "max_steps": Constraint("int", low=1, none=True),  # None: no cap on the optimiser steps
    "patience": Constraint("int", low=0),
    "n_blocks": Constraint("int", low=0),
    "base_components": Constraint("int", low=1),
    "latent_features": Constraint("int", low=1, none=True),
    "warm_up_epochs": Constraint("int", low=0),
    "lr": Constraint("real", low=0, low_open=True),
    "weight_decay": Constraint("real", low=0),
    "validation_fraction": Constraint("real", low=0, high=1, high_open=True),
    "clamp": Constraint("real", low=0),
    "contamination": Constraint("real", low=0, high=0.5, low_open=True),
    "threshold": Constraint("options", options=THRESHOLDS),
    "alpha": Constraint("real", low=0, high=1, low_open=True, high_open=True),
    "nu": Constraint("real", low=0, high=1, low_open=True),
    "eps": Constraint("real", low=0),
    "beta": Constraint("real", low=0),
    "svdd_weight": Constraint("real", low=0),
    "gaussian_weight": Constraint("real", low=0, high=1),
    "standardize": Constraint("bool"),
    "random_state": Constraint("int", none=True),
    "verbose": Constraint("bool"),
}

#: A column whose spread is at most this share of its own largest ``|value|`` is constant.
CONSTANT_SPREAD = 1e-12

#: A standardised feature beyond ``2**64`` (about 1.8e19, the square root of float32's largest
#: value; 1e39 itself is beyond float32) cannot get a finite float32 score: its row scores +inf.
FLOAT32_REACH = 2.0**64


def fit_scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, scale, constant)`` per column of ``X``, safe at any finite scale.

    The moments are taken on each column divided by its largest ``|value|`` (so values lie in
    ``[-1, 1]``: no square overflows near 1e154, no spread underflows below 1e-154) and
    scaled back. A column is ``constant`` when its spread is at most :data:`CONSTANT_SPREAD`
    times its own largest ``|value|``, whatever that magnitude; its scale is then that
    magnitude (1 for a column of zeros), so scaling ``X`` by any factor scales ``mean`` and
    ``scale`` by it and leaves the standardised data unchanged.
    """
    magnitude = np.abs(X).max(axis=0)
    unit = np.where(magnitude > 0, magnitude, 1.0)
    scaled = X / unit
    mean, spread = scaled.mean(axis=0), scaled.std(axis=0)
    constant = spread <= CONSTANT_SPREAD
    return mean * unit, np.where(constant, 1.0, spread) * unit, constant


def standardised(x: Any, mean: Any, scale: Any) -> Any:
    """``(x - mean) / scale`` computed as ``x / scale - mean / scale`` (NumPy arrays or tensors).

    The difference of two huge values (``x - mean`` with both near 1e308) would overflow;
    the two quotients are small for the training data and stay finite beyond it.
    """
    return x / scale - mean / scale


def _beyond_float32(z: Tensor) -> Tensor:
    """Rows of the float32 batch ``z`` holding a feature beyond :data:`FLOAT32_REACH` (or infinite)."""
    return z.abs().amax(dim=1) > FLOAT32_REACH


_REGISTRY: dict[str, type[BaseDetector]] = {}


class BaseDetector(OutlierMixin, BaseEstimator):
    """Common machinery; subclasses implement ``_build_model``, ``_loss`` and ``_score``.

    Thresholds (``threshold=``; ``predict`` flags ``decision_function(X) > threshold_``):

    - ``"contamination"`` (the default): PyOD's rule, the ``1 - contamination`` quantile of
      the training scores. It flags that share of the training rows and promises nothing
      about fresh normal rows.
    - ``"chi2"`` (uniformly scaling flows only): a false-alarm rate ``alpha`` read from the
      chi-square law of the latent distance. Approximate: it holds only as far as the fitted
      flow is the data's density, and the training noise (``noise_``) widens that density,
      so fewer than ``alpha`` are flagged on Gaussian data and more or fewer on others
      (:func:`usfad.density.chi2_nll_threshold`; measured in
      ``benchmarks/results/false_alarms.md``).
    - ``"conformal"``: split-conformal, any detector. ``fit`` holds out a seeded calibration
      split of ``X`` (:func:`usfad.density.calibration_size` rows: about a fifth, fitted to
      ``alpha`` so that ``(n_cal + 1) alpha`` is whole, and up to three quarters of the rows,
      with a warning, when ``alpha`` needs more than half; fewer than 40 rows in ``X`` is a
      :class:`~usfad.errors.DataError`), fits the scaler and the network on the rest, and
      sets ``threshold_`` to the ``ceil((n_cal + 1)(1 - alpha))``-th smallest calibration
      score (:func:`usfad.density.conformal_threshold`). If fresh normal rows are
      exchangeable with the training rows, each is flagged with probability at most
      ``alpha`` and more than ``alpha - 1/(n_cal + 1)`` (over the calibration draw: one
      fit's rate varies around it by about ``sqrt(alpha / n_cal)``). When ``alpha <
      1/(n_cal + 1)`` no finite score can be flagged: ``fit`` warns (``UserWarning``).
      ``calibration_scores_`` (ascending, saved in the model file) gives ``p_values(X)``;
      ``predict(X) == (p_values(X) <= alpha)``. ``decision_scores_`` and ``labels_`` cover
      every row of ``X``, calibration rows included.

    The default stays ``"contamination"`` although only ``"conformal"`` keeps a promise about
    fresh rows: ``contamination=0.1`` is the default PyOD and ADBench code relies on, so
    switching (or switching whenever ``contamination`` is not passed, which needs a ``None``
    default) would change the labels of every existing caller, and conformal calibration
    withholds rows from the model. Ask for it with ``threshold="conformal"``.

    Standardisation (``standardize=True``, :func:`fit_scaler`) survives any finite scale and
    warns (``UserWarning``) about constant columns; ``fit`` also warns when ``X`` has more
    features than rows. A row whose standardised features are beyond float32's reach
    (:data:`FLOAT32_REACH`, e.g. a raw value of 1e39 on a column of spread 1) cannot be
    computed by the float32 network: its score is +inf, reported as the largest finite
    float64, so it is always flagged (``predict`` 1, ``predict_proba`` 1).
    """

    #: scores computed per batch at inference
    score_batch_size: ClassVar[int] = 4096

    #: The fitted attributes a model file's ``state`` may restore, and what each must be;
    #: ``load`` refuses any other key (one could shadow a method). ``_extra_state`` may only
    #: return keys declared here: ``noise_``, ``base_components_``, ``kernel_centres_``, ``input_centres_`` and
    #: ``gaussian_weight_`` are
    #: :class:`~usfad.detectors.flow.FlowDetector`'s,
    #: ``collapsed_`` :class:`~usfad.detectors.svdd.DeepSVDD`'s. ``feature_names_in_`` (a list
    #: of ``n_features_in_`` strings) is checked apart.
    saved_state: ClassVar[Mapping[str, Constraint]] = {
        "n_features_in_": Constraint("int", low=1),
        "threshold_": Constraint("real"),
        "noise_": Constraint("real", low=0),
        "base_components_": Constraint("int", low=1),
        "kernel_centres_": Constraint("int", low=0),
        "input_centres_": Constraint("int", low=0),
        "gaussian_weight_": Constraint("real", low=0, high=1),
        "collapsed_": Constraint("bool"),
    }

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

    #: parameters this class also accepts as ``"auto"`` (resolved in its ``_train_config``)
    auto_parameters: ClassVar[tuple[str, ...]] = ()

    def _check_common_params(self) -> None:
        """Raise ValueError for a parameter that breaks :data:`PARAMETER_CONSTRAINTS`."""
        constraints = dict(PARAMETER_CONSTRAINTS)
        for name in self.auto_parameters:
            constraints[name] = dataclasses.replace(constraints[name], auto=True)
        check_parameters(self.get_params(deep=False), constraints)

    def check_params(self) -> None:
        """Raise ValueError naming the first invalid hyper-parameter, without any data: what
        ``fit`` checks first, for callers that would rather know before they plan work (a
        benchmark grid checks every model's settings before its first cell)."""
        self._check_common_params()
        self._check_params()

    def fit(self, X: Any, y: Any = None) -> BaseDetector:
        """Fit on normal data ``X`` (``y`` is ignored: training is unsupervised).

        A DataFrame whose column names are all strings sets ``feature_names_in_``. With
        ``threshold="conformal"`` a seeded share of the rows is held out for calibration (see
        the class docstring) and everything is fitted on the rest.
        """
        self.check_params()
        names = feature_names(X)
        X = check_array(X, min_samples=2)
        seed = self.random_state if self.random_state is not None else int(np.random.randint(2**31 - 1))
        if self.threshold == "conformal":
            fit_rows, calibration_rows = calibration_split(X.shape[0], int(seed), self.alpha)
        else:
            fit_rows, calibration_rows = None, None
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if X.shape[1] > X.shape[0]:
            warnings.warn(
                f"X has more features ({X.shape[1]}) than rows ({X.shape[0]}): the model can memorise the "
                f"training rows, and fresh normal rows will be flagged far more often than the threshold says",
                UserWarning,
                stacklevel=2,
            )
        X_fit = X if fit_rows is None else X[fit_rows]  # the calibration rows stay out of everything fitted
        if self.standardize:
            self.scaler_mean_, self.scaler_scale_, constant = fit_scaler(X_fit)
            if constant.any():
                columns = np.flatnonzero(constant).tolist()
                named = [names[j] for j in columns] if names is not None else columns
                warnings.warn(
                    f"X has {len(columns)} constant column(s) {named[:20]}: they carry no information; "
                    f"each is scaled by its own largest |value| instead of its spread",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            self.scaler_mean_ = np.zeros(X.shape[1])
            self.scaler_scale_ = np.ones(X.shape[1])
        self.device_ = resolve_device(self.device)
        data = self._to_tensor(X)
        with seeded(int(seed)):
            generator = torch.Generator().manual_seed(int(seed))
            self.model_ = self._build_model(X.shape[1]).to(self.device_)
            fit_data = data if fit_rows is None else data[fit_rows]
            self.history_ = self._fit_model(fit_data, self._train_config(), generator)
        self.model_.eval()
        self.decision_scores_ = self._scores_of(data, desc="scoring the training rows")
        if calibration_rows is not None:
            self.calibration_scores_ = np.sort(self.decision_scores_[calibration_rows])
        elif hasattr(self, "calibration_scores_"):
            del self.calibration_scores_
        self.threshold_ = self._threshold()
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        if self.threshold == "contamination" and fit_rows is None:
            self._warn_if_held_out_rows_flagged(self.history_.validation_rows)
        return self

    def _warn_if_held_out_rows_flagged(self, held_out: np.ndarray) -> None:
        """Warn when the normal rows held out of training exceed ``threshold_`` far more often than ``contamination``.

        ``threshold_`` is a quantile of the training rows' scores; a model that fits its
        training rows much better than fresh ones (few rows for their width: 200 x 100
        flags most fresh normal rows) puts fresh normal rows above it far more often. The
        validation rows never took a gradient step, so their share above ``threshold_`` is
        a label-free estimate of the fresh false-alarm rate; the warning fires when it is
        over twice ``contamination`` and a one-sided binomial test gives p < 0.01 (a model whose
        fresh rate is ``contamination`` warns in at most one fit in a hundred). With the 20 rows
        a 200-row set holds out, that is 7 or more above the threshold at 0.1: the default USFlow
        flags 32 % of fresh rows on 200 x 100 correlated Gaussian rows, and 7 of its 20 held-out
        rows (p = 0.002; ``tests/test_conformal.py``).
        """
        if len(held_out) < 20:
            return
        from scipy.stats import binomtest

        above = int(np.sum(self.decision_scores_[held_out] > self.threshold_))
        share = above / len(held_out)
        unlikely = binomtest(above, len(held_out), self.contamination, alternative="greater").pvalue < 0.01
        if share > 2 * self.contamination and unlikely:
            warnings.warn(
                f"{above} of the {len(held_out)} training rows held out for validation ({share:.0%}) score above "
                f"threshold_, which flags contamination={self.contamination:g} of the rows the model was trained on: "
                f"it fits its training rows much better than fresh ones, and fresh normal rows will be flagged about "
                f"that often; threshold='conformal' (alpha = the false-alarm rate you accept) calibrates on held-out "
                f"rows instead",
                ThresholdWarning,
                stacklevel=3,
            )

    def _threshold(self) -> float:
        if self.threshold == "chi2":
            return float(self._chi2_threshold())
        if self.threshold == "conformal":
            threshold = conformal_threshold(self.calibration_scores_, self.alpha)
            if threshold == NO_ALARM:
                n_cal = len(self.calibration_scores_)
                needed = math.ceil(round(1 / self.alpha, 9)) - 1
                rows = rows_for_calibration(needed, self.alpha)
                lowest = f"use alpha >= {1 / (n_cal + 1):.3g}"
                hint = f"Fit on at least {rows} rows or {lowest}" if rows is not None else lowest.capitalize()
                warnings.warn(
                    f"threshold='conformal' at alpha={self.alpha} needs at least {needed} calibration rows; "
                    f"{n_cal} were held out of {len(self.decision_scores_)}: no row with a finite score will be "
                    f"flagged (p_values still rank rows). {hint}",
                    UserWarning,
                    stacklevel=3,
                )
            return threshold
        return float(np.quantile(self.decision_scores_, 1 - self.contamination))

    # --- inference ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    def _to_tensor(self, X: np.ndarray) -> Tensor:
        with np.errstate(over="ignore"):  # beyond float64: inf, scored as +inf (see _scores_of)
            Xs = standardised(X, self.scaler_mean_, self.scaler_scale_)
        return torch.as_tensor(Xs, dtype=torch.float32, device=self.device_)

    def _validated(self, X: Any) -> Tensor:
        self._check_fitted()
        check_feature_names(feature_names(X), getattr(self, "feature_names_in_", None), what="X")
        return self._to_tensor(check_array(X, n_features=self.n_features_in_, fitted=type(self).__name__))

    @torch.no_grad()
    def _batched(self, fn: Any, data: Tensor, desc: str | None = None) -> np.ndarray:
        """``fn`` over ``data`` in batches of :attr:`score_batch_size` rows, as one float64
        array; with ``desc`` and ``verbose``, a progress bar over the batches (when more than one)."""
        from tqdm.auto import tqdm

        self.model_.eval()
        step = self.score_batch_size
        starts = range(0, data.shape[0], step)
        quiet = desc is None or not getattr(self, "verbose", False) or len(starts) < 2
        parts = [fn(data[i : i + step]).cpu().double() for i in tqdm(starts, desc=desc, disable=quiet, leave=False)]
        return torch.cat(parts).numpy()

    #: at most this share of distinct rows among more than :attr:`score_batch_size`, and
    #: :meth:`_scores_of` scores each distinct row once
    distinct_share: ClassVar[float] = 0.9

    def _distinct_rows(self, data: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(rows to score, where each row of data is among them or None for all)``: every
        detector's score is a function of the row alone (in eval mode; the VAE's draws are
        fixed), so a repeated row need not be scored again. Tables of discrete values repeat
        most rows (11_donors: one distinct row in 18), and those are the largest, where a
        kernel density costs most per row. Where few rows repeat, the data stay as they are."""
        if data.shape[0] <= self.score_batch_size:
            return data, None
        distinct, where = torch.unique(data, dim=0, return_inverse=True)
        if distinct.shape[0] > self.distinct_share * data.shape[0]:
            return data, None
        return distinct, where

    def _scores_of(self, data: Tensor, desc: str | None = None) -> np.ndarray:
        far = _beyond_float32(data)
        if bool(far.any()):  # not computed (inf - inf would make NaN): +inf by definition
            data = torch.where(far[:, None], torch.zeros((), dtype=data.dtype, device=data.device), data)
        distinct, where = self._distinct_rows(data)
        scores = self._batched(self._score, distinct, desc)
        if where is not None:
            scores = scores[where.cpu().numpy()]
        scores[far.cpu().numpy()] = np.inf
        if np.isnan(scores).any():
            raise DataError(
                f"{type(self).__name__} produced NaN scores for rows {np.flatnonzero(np.isnan(scores))[:10].tolist()}"
            )
        # +inf means "beyond float range": keep the order, stay finite for metrics.
        return np.nan_to_num(scores, posinf=np.finfo(np.float64).max, neginf=np.finfo(np.float64).min)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per sample, higher = more anomalous.

        ``X``: an array (columns taken by position) or a DataFrame; after a ``fit`` on a
        DataFrame, its column names must be ``feature_names_in_`` in that order (other names,
        or the same in another order, raise :class:`~usfad.errors.DataError`). A row beyond
        float32's reach once standardised scores the largest finite float64 (+inf).
        """
        return self._scores_of(self._validated(X))

    def score_samples(self, X: Any) -> np.ndarray:
        """``-decision_function(X)`` (scikit-learn's sign: higher = more normal)."""
        return -self.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """1 for anomalies (score above ``threshold_``), 0 otherwise."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def p_values(self, X: Any) -> np.ndarray:
        """Split-conformal p-value of each row (``threshold="conformal"`` only), in ``(0, 1]``.

        ``(1 + #{calibration scores >= score}) / (n_cal + 1)``
        (:func:`usfad.density.conformal_p_values`): small = unlike the normal training rows.
        For a fresh normal row exchangeable with them, ``P(p <= a) <= a`` for every ``a``;
        ``predict(X) == (p_values(X) <= alpha)`` (rows scored +inf are flagged even when
        ``alpha < 1/(n_cal + 1)``). Other thresholds hold no calibration rows: ``ValueError``.
        """
        self._check_fitted()
        if not hasattr(self, "calibration_scores_"):
            raise ValueError(
                f"p_values needs calibration rows held out at fit: fit with threshold='conformal' "
                f"(this {type(self).__name__} has threshold={self.threshold!r})"
            )
        return conformal_p_values(self.calibration_scores_, self.decision_function(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, 2)`` [normal, anomaly] by min-max scaling against the training scores."""
        scores = self.decision_function(X)
        lo, hi = float(self.decision_scores_.min()), float(self.decision_scores_.max())
        with np.errstate(over="ignore"):  # a +inf row (the largest float64) gives p = 1
            p = np.clip((scores - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        return np.column_stack([1 - p, p])

    def latent(self, X: Any) -> np.ndarray:
        """The latent representation (flow output or Deep SVDD embedding) of ``X``."""
        return self._batched(self._latent, self._validated(X))

    # --- explanations -------------------------------------------------------------
    def explain(
        self,
        X: Any,
        baseline: str | Any | None = None,
        *,
        reference: Any = None,
        n_neighbours: int | None = None,
        n_points: int | None = None,
    ) -> np.ndarray:
        """Per-feature attributions ``(n_rows, n_features)``, float64, in the units of ``decision_function``.

        Each row's attributions sum to ``score(x) - score(baseline)``: path-integrated
        gradients of the score (:mod:`usfad.explain`), along a path straight in the latent
        space for flows and straight in the input space otherwise; positive = the feature
        makes the row more anomalous. ``baseline``: ``None`` (the default: ``"neighbours"``
        when ``reference`` is given, else ``"mean"``), ``"mean"`` (the training mean),
        ``"typical"`` (uniformly scaling flows: the row's own point of median training score
        on its latent ray), ``"neighbours"`` (each row's ``n_neighbours`` nearest rows of
        ``reference``, averaged; nearest in the standardised features; for anomalies whose
        values are each normal but whose combination is not) or raw rows, one or one per
        row of ``X``. ``reference``: rows such as the normal training rows, checked as
        ``X`` is, given with ``"neighbours"`` and only with it; ``n_neighbours``: ``None``
        for 10. ``n_points``: Gauss-Legendre points along the path (``None``: 1 for a USF on
        one Gaussian, whose sum is exact at any number, else 8). ``X`` is checked as in
        :meth:`decision_function`; a row beyond float32's reach (scored +inf) puts the
        largest finite float64 on each feature beyond it.
        """
        return self.explanation(
            X, baseline, reference=reference, n_neighbours=n_neighbours, n_points=n_points
        ).attributions

    def explanation(
        self,
        X: Any,
        baseline: str | Any | None = None,
        *,
        reference: Any = None,
        n_neighbours: int | None = None,
        n_points: int | None = None,
    ) -> Explanation:
        """:meth:`explain` with what the attributions add up to: :class:`usfad.explain.Explanation`
        (the scores of the rows and of their baselines, the baselines, the quadrature residual)."""
        self._check_fitted()
        check_feature_names(feature_names(X), getattr(self, "feature_names_in_", None), what="X")
        X = check_array(X, n_features=self.n_features_in_, fitted=type(self).__name__)
        if reference is not None:
            check_feature_names(feature_names(reference), getattr(self, "feature_names_in_", None), what="reference")
            reference = check_array(
                reference, n_features=self.n_features_in_, what="reference", fitted=type(self).__name__
            )

        def scorer(dtype: torch.dtype) -> tuple[Any, nn.Module]:  # the same _score, LU layers frozen
            copied = copy.copy(self)
            copied.model_ = inference_copy(self.model_, dtype).to(self.device_)
            return copied._score, copied.model_.requires_grad_(False)

        return explain_rows(
            scorer,
            X,
            self.scaler_mean_,
            self.scaler_scale_,
            baseline,
            typical_score=float(np.median(self.decision_scores_)),
            reference=reference,
            n_neighbours=n_neighbours,
            n_points=n_points,
            batch_size=self.score_batch_size,
            reach=FLOAT32_REACH,
            fitted=type(self).__name__,
        )

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
    def save(self, path: str | os.PathLike[str], *, annotations: Mapping[str, str] | None = None) -> Path:
        """Write the fitted detector to one safetensors file; returns the path.

        ``annotations``: extra string entries for the file's config (e.g. the record of the
        training data, :mod:`usfad.fitting`), covered by its checksum and ignored by
        :meth:`load`; they may not replace the detector's own entries.
        """
        self._check_fitted()
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.model_.state_dict().items()}
        tensors["scaler_mean"] = torch.from_numpy(np.asarray(self.scaler_mean_, dtype=np.float64))
        tensors["scaler_scale"] = torch.from_numpy(np.asarray(self.scaler_scale_, dtype=np.float64))
        tensors["decision_scores"] = torch.from_numpy(np.asarray(self.decision_scores_, dtype=np.float64))
        if hasattr(self, "calibration_scores_"):
            tensors["calibration_scores"] = torch.from_numpy(np.asarray(self.calibration_scores_, dtype=np.float64))
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        extra = self._extra_state()
        undeclared = sorted(set(extra) - set(self.saved_state))
        if undeclared:
            raise TypeError(
                f"{type(self).__name__} saves {undeclared}, which load() would refuse: add them to saved_state"
            )
        state = {"n_features_in_": self.n_features_in_, "threshold_": self.threshold_, **extra}
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(c) for c in self.feature_names_in_]
        metadata = {
            "format": FORMAT,
            "version": str(FORMAT_VERSION),
            "class": type(self).__name__,
            "params": json.dumps(params),
            "state": json.dumps(state),
        }
        clash = sorted(set(annotations or {}) & {*metadata, *CHECKSUM_KEYS})
        if clash:
            raise ValueError(f"annotations may not replace the model file's own entries {clash}")
        return write_model_file(path, tensors, {**metadata, **(annotations or {})})

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> BaseDetector:
        """Read a file written by :meth:`save`, checking everything it restores.

        :func:`usfad.modelfile.read_model_file` checks the format, the version and the
        SHA-256 checksums of the tensors and the config (files written before checksums
        existed have none and still load; a file with a checksum that does not match does
        not). Then every field is checked: the class, the hyper-parameters
        (:data:`PARAMETER_CONSTRAINTS` and the class's own rules), the ``state`` keys (only
        those in :attr:`saved_state`, each of its declared type and range; ``threshold_`` a
        finite number, ``n_features_in_`` a positive integer), the scaler and training
        scores (finite, one per feature or row), the calibration scores (present exactly when
        ``threshold="conformal"``; finite, ascending, giving ``threshold_``), every model
        tensor (finite) and every permutation buffer (``order`` / ``inverse_order``: each
        index exactly once). Any
        failure is a :class:`~usfad.errors.ModelFileError` naming the file.
        """
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
            det.check_params()
            det.device_ = resolve_device(device)
            det._restore_state(state)
            det.scaler_mean_ = _restored_vector(tensors.pop("scaler_mean"), "scaler_mean", det.n_features_in_)
            det.scaler_scale_ = _restored_vector(tensors.pop("scaler_scale"), "scaler_scale", det.n_features_in_)
            if not (det.scaler_scale_ > 0).all():
                raise ValueError("scaler_scale holds values <= 0")
            det.decision_scores_ = _restored_vector(tensors.pop("decision_scores"), "decision_scores")
            det._restore_calibration(tensors.pop("calibration_scores", None))
            model = det._build_model(det.n_features_in_)
            weights = {k[len("model.") :]: v for k, v in tensors.items()}
            bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
            if bad:
                raise ValueError(f"tensors {bad[:5]} hold NaN or infinite values")
            model.load_state_dict(weights, strict=True)
            check_permutations(model, path)
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{path} could not be restored as a {name}: {exc}") from None
        det.model_ = model.to(det.device_).eval()
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(int)
        return det

    def _restore_calibration(self, tensor: Tensor | None) -> None:
        """Set ``calibration_scores_`` from a model file; ValueError unless it fits ``threshold`` and ``threshold_``."""
        if (tensor is not None) != (self.threshold == "conformal"):
            has = "holds" if tensor is not None else "has no"
            raise ValueError(f"the file {has} calibration_scores, but threshold={self.threshold!r}")
        if tensor is None:
            return
        scores = _restored_vector(tensor, "calibration_scores")
        if (np.diff(scores) < 0).any():
            raise ValueError("calibration_scores are not in ascending order")
        expected = conformal_threshold(scores, self.alpha)
        if self.threshold_ != expected:
            raise ValueError(
                f"threshold_ {self.threshold_!r} is not the conformal threshold of its calibration_scores "
                f"at alpha={self.alpha} ({expected!r})"
            )
        self.calibration_scores_ = scores

    def _restore_state(self, state: Any) -> None:
        """Set the fitted attributes of a model file's ``state``; ValueError for anything unknown or out of range."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a JSON object, got {type(state).__name__}")
        names = state.pop("feature_names_in_", None)
        unknown = sorted(set(state) - set(self.saved_state))
        if unknown:
            raise ValueError(f"unknown state keys {unknown[:10]} (known: {sorted(self.saved_state)})")
        for key in ("n_features_in_", "threshold_"):
            if key not in state:
                raise ValueError(f"state has no {key}")
        check_parameters(state, self.saved_state)
        for key, value in state.items():
            setattr(self, key, value)
        self.n_features_in_ = int(self.n_features_in_)
        self.threshold_ = float(self.threshold_)
        if names is not None:
            if not (
                isinstance(names, list) and len(names) == self.n_features_in_ and all(isinstance(c, str) for c in names)
            ):
                raise ValueError(f"feature_names_in_ must be a list of {self.n_features_in_} strings")
            self.feature_names_in_ = np.asarray(names, dtype=object)


def load(path: str | os.PathLike[str], device: str = "cpu") -> BaseDetector:
    """Load any tabular detector saved with ``save`` (checked as :meth:`BaseDetector.load` says).

    :func:`usfad.load` loads image detectors too."""
    return BaseDetector.load(path, device=device)


def _restored_vector(tensor: Tensor, name: str, size: int | None = None) -> np.ndarray:
    """A finite float64 vector from a model file (of ``size`` entries when given)."""
    if tensor.dim() != 1 or (size is not None and tensor.shape[0] != size) or tensor.shape[0] == 0:
        expected = f"({size},)" if size is not None else "(n_rows,)"
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {expected}")
    values = tensor.to(torch.float64).numpy()
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return values


class DetectorGraph(nn.Module):
    """A fitted tabular detector as one module: raw float64 features -> float64 scores.

    It calls the detector's own ``_score`` on a copy whose network is
    :func:`~usfad.export.inference_copy` of ``model_``, so the exported score is
    ``decision_function``'s by construction: standardise (float64, :func:`standardised`),
    cast to float32, score (a row beyond :data:`FLOAT32_REACH` is not computed and scores
    +inf), cast to float64, map ``+-inf`` to the largest finite float64. Build it with
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
        z = standardised(x, self.mean, self.scale).to(torch.float32)
        far = _beyond_float32(z)
        z = torch.where(far[:, None], torch.zeros_like(z), z)
        s = self._scorer._score(z).to(torch.float64)
        s = torch.where(far, torch.full_like(s, float("inf")), s)
        big = float(np.finfo(np.float64).max)
        s = torch.where(s == float("inf"), torch.full_like(s, big), s)
        return torch.where(s == float("-inf"), torch.full_like(s, -big), s)
