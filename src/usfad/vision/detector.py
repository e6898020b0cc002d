"""``ImageDetector``: a frozen backbone, a flow head and the loop that trains the head.

``fit(data)`` runs the backbone once over the training images and keeps the feature maps
(on the CPU); the head (:mod:`usfad.vision.heads`) is then trained with Adam for ``epochs``
over that cache by :func:`usfad.train.fit_module`, so a non-finite loss raises
:class:`~usfad.errors.TrainingDivergedError`. ``score_maps(images)`` returns one score per
image and one anomaly map per image at the image's size (:mod:`usfad.vision.anomaly_map`:
levels upsampled, combined, smoothed per image; score = the map's maximum).
``decision_function`` gives the scores alone and ``predict`` labels (with a conformal
``threshold_``), as for the tabular detectors.

The switch is ``flow="usf" | "usf-gin" | "affine"``, as everywhere in usfad. ``fit_features`` and
``score_maps_features`` work on features extracted elsewhere, so a benchmark can run the
backbone once for many heads and seeds. ``scoring_module()`` is the whole of ``score_maps``
(backbone to scores and maps) as one module (:class:`ImageDetectorGraph`) and
``export_onnx(path)`` writes it as one ONNX graph (:func:`usfad.export.export_module`); it
and ``score_maps_features`` share one scoring function, ``_score_batch``.

``threshold="conformal"`` holds out calibration images at ``fit`` and sets ``threshold_``
and ``p_values(images)`` by split-conformal calibration, as the tabular detectors do
(:mod:`usfad.density`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor, nn

from ..density import NO_ALARM, calibration_split, conformal_p_values, conformal_threshold
from ..errors import DataError, NonFiniteScoresError
from ..export import OPSET, export_module, inference_copy, random_images
from ..flows import check_flow
from ..modelfile import check_permutations, read_model_file, write_model_file
from ..runtime import resolve_device, seeded
from ..train import History, TrainConfig, fit_module
from ..validation import Constraint, check_parameters
from .anomaly_map import COMBINE_RULES
from .heads import HEADS, FlowHead, build_head

FORMAT = "usfad-image-detector"
FORMAT_VERSION = 2  # 2: head tensors under "head.", the feature scaler under "scaler."

#: per-model defaults, chosen so that a Magnetic Tile run (761 training images, 256 x 256,
#: MobileNetV2 levels 24@4, 32@8, 96@16, batch 8; CFlow 256 fibres per image and level)
#: trains in minutes of one CPU core after feature caching; the training CPU seconds per
#: model are in ``benchmarks/results/vision_magnetic_tile/results.md``
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "fastflow": {"n_blocks": 4, "hidden_ratio": 1.0, "epochs": 10, "combine": "likelihood"},
    "cflow": {"n_blocks": 4, "hidden_ratio": 1.0, "epochs": 10, "combine": "likelihood"},
    "uflow": {"n_blocks": 4, "hidden_ratio": 1.0, "epochs": 8, "combine": "mean"},
}
#: what the per-level maps can be (``ImageDetector(maps=...)``)
MAPS = ("published", "density")
#: image-level thresholds (``ImageDetector(threshold=...)``): none, or split-conformal
THRESHOLDS = (None, "conformal")
#: what each numeric or named setting of :class:`ImageDetector` may be (``None``: the model's
#: default from :data:`MODEL_DEFAULTS`); ``flow``, ``combine`` (a rule name or a callable),
#: ``backbone`` and ``layers`` are checked by their own functions
PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    "model": Constraint("options", options=tuple(HEADS)),
    "image_size": Constraint("int", low=8),
    "n_blocks": Constraint("int", low=0, none=True),
    "hidden_ratio": Constraint("real", low=0, low_open=True, none=True),
    "clamp": Constraint("real", low=0, low_open=True),
    "sigma": Constraint("real", low=0),
    "maps": Constraint("options", options=MAPS),
    "epochs": Constraint("int", low=1, none=True),
    "batch_size": Constraint("int", low=1),
    "lr": Constraint("real", low=0, low_open=True),
    "weight_decay": Constraint("real", low=0),
    "standardize": Constraint("bool"),
    "noise": Constraint("real", low=0),
    "threshold": Constraint("options", options=("conformal",), none=True),
    "alpha": Constraint("real", low=0, high=1, low_open=True, high_open=True),
    "random_state": Constraint("int", none=True),
    "verbose": Constraint("bool"),
}


def _as_images(images: Any, what: str = "images") -> Tensor:
    """A float tensor ``[N, 3, H, W]`` in ``[0, 1]`` from a tensor or array (``[3, H, W]`` is one image)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{what} must be [N, 3, H, W] (or [3, H, W]) RGB in [0, 1], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty")
    x = x.float()
    if not torch.isfinite(x).all():
        raise DataError(f"{what} holds NaN or infinite values")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _mean_std(features: Tensor, chunk: int = 64, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation (n - 1) over the first axis (only ``rows`` when given),
    accumulated in float64 by chunks (a float64 copy of a large backbone's cached features
    would not fit in memory)."""
    rows = torch.arange(int(features.shape[0])) if rows is None else rows
    n = int(rows.shape[0])
    total = torch.zeros(features.shape[1:], dtype=torch.float64)
    for start in range(0, n, chunk):
        total += features[rows[start : start + chunk]].double().sum(0)
    mean = total / n
    squares = torch.zeros_like(mean)
    for start in range(0, n, chunk):
        squares += (features[rows[start : start + chunk]].double() - mean).pow(2).sum(0)
    return mean, (squares / max(n - 1, 1)).sqrt()


def _ordinary(t: Tensor) -> Tensor:
    """An inference-mode tensor as an ordinary one: training on slices of inference tensors is
    much slower."""
    if not t.is_inference():
        return t
    with torch.inference_mode(False):
        return t.clone()


class ImageDetector(BaseEstimator):
    """Image anomaly detector: frozen backbone + FastFlow, CFlow or U-Flow head.

    Parameters
    ----------
    model: ``"fastflow"``, ``"cflow"`` or ``"uflow"``.
    flow: ``"usf"`` (ActNorm + additive coupling conjugated by an LU 1x1 convolution: a
        uniformly scaling flow), ``"usf-gin"`` (GIN couplings: affine with log-scales centred
        to sum zero; also a USF) or ``"affine"`` (affine couplings; the only difference).
    backbone: a backbone name for :func:`usfad.vision.backbone.build_backbone`, or a
        module with ``name``, ``channels``, ``reductions`` and ``forward(images) -> maps``.
    weights: the backbone's weights: ``"default"`` (installed ImageNet weights), a file
        path, or ``None`` (random; seeded by ``random_state``).
    layers: backbone levels (default: the backbone's).
    image_size: side of the square the images are resized to.
    n_blocks, hidden_ratio, clamp: the head's flows (``None``: the model's default, see
        :data:`MODEL_DEFAULTS`).
    head_params: further head arguments (e.g. ``{"fibres_per_image": 128}`` for CFlow).
    combine, sigma: level combination rule (``None``: the model's) and Gaussian smoothing
        of the anomaly maps (see :mod:`usfad.vision.anomaly_map`).
    maps: what the per-level maps are: ``"published"``, the head's own (FastFlow and U-Flow:
        ``||z||^2 / 2k`` per position, the latent distance; CFlow: the fibre's NLL), or
        ``"density"``, the per-position NLL with the head's log-det included
        (:meth:`usfad.vision.heads.FlowHead.density_maps`). For a USF head the two differ by
        one constant per level, and not at all for CFlow; an affine FastFlow or U-Flow head
        ranks pixels differently by its density than by its latent distance.
    epochs, batch_size, lr, weight_decay: Adam on the cached features (``epochs=None``:
        the model's default). Small batches: more steps for the same compute, which is
        what a short CPU budget needs.
    standardize: standardise every feature at every position (channel, row, column) by its
        mean and standard deviation over the training images before the head, the image
        analogue of the tabular detectors' scaler. The statistics are fixed at ``fit`` and
        saved with the model; they take out what the backbone does at borders and what a
        category does at fixed positions, which a USF (one volume change for every input)
        cannot learn to scale away by itself.
    noise: standard deviation of Gaussian noise added to the standardised training features
        (not at test time), as the tabular flows do. A feature that never varies in the
        training images (a ReLU unit that is never on, as some of SqueezeNet's deepest
        channels on Magnetic Tile: ``benchmarks/results/noise_check.md``) otherwise has an
        unbounded likelihood: the flow keeps shrinking it and training blows up. ``0`` turns
        it off.
    threshold, alpha: ``None`` (the default: scores and maps only, every image trains the
        head) or ``"conformal"``: a seeded calibration split of the training images
        (:func:`usfad.density.calibration_size`, as for the tabular detectors: about a fifth,
        fitted to ``alpha``; fewer than 40 images is a :class:`~usfad.errors.DataError`) is held out,
        the scaler and the head are fitted on the rest, and ``threshold_`` is the
        ``ceil((n_cal + 1)(1 - alpha))``-th smallest image score of the held-out images
        (:func:`usfad.density.conformal_threshold`). A fresh normal image exchangeable with
        the training images scores above it with probability at most ``alpha`` (and more
        than ``alpha - 1/(n_cal + 1)``); when ``alpha < 1/(n_cal + 1)`` nothing can be
        flagged and ``fit`` warns. ``calibration_scores_`` (saved with the model) give
        ``p_values(images)``; an image is flagged (``scores > threshold_``) exactly when its
        p-value is at most ``alpha``.
    random_state, device, verbose: seed, ``"cpu" | "cuda" | "auto"``, progress bars.
    """

    def __init__(
        self,
        model: str = "fastflow",
        flow: str = "usf",
        backbone: str | nn.Module = "mobilenet_v2",
        weights: str | None = "default",
        layers: Sequence[int] | None = None,
        image_size: int = 256,
        n_blocks: int | None = None,
        hidden_ratio: float | None = None,
        clamp: float = 2.0,
        head_params: dict[str, Any] | None = None,
        combine: str | None = None,
        sigma: float = 4.0,
        maps: str = "published",
        epochs: int | None = None,
        batch_size: int = 8,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        standardize: bool = True,
        noise: float = 0.1,
        threshold: str | None = None,
        alpha: float = 0.01,
        random_state: int | None = 0,
        device: str = "cpu",
        verbose: bool = False,
    ):
        self.model = model
        self.flow = flow
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.image_size = image_size
        self.n_blocks = n_blocks
        self.hidden_ratio = hidden_ratio
        self.clamp = clamp
        self.head_params = head_params
        self.combine = combine
        self.sigma = sigma
        self.maps = maps
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.noise = noise
        self.threshold = threshold
        self.alpha = alpha
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # --- settings -----------------------------------------------------------------
    def _setting(self, name: str) -> Any:
        value = getattr(self, name)
        return MODEL_DEFAULTS[self.model][name] if value is None else value

    def _check_params(self) -> None:
        """Raise ValueError for a setting that breaks :data:`PARAMETER_CONSTRAINTS` (or ``flow``, ``combine``)."""
        check_parameters(self.get_params(deep=False), PARAMETER_CONSTRAINTS)
        check_flow(self.flow)
        if self.combine is not None and not callable(self.combine) and self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, a callable or None, got {self.combine!r}")

    def _check_maps(self) -> None:
        if self.maps not in MAPS:
            raise ValueError(f"maps must be one of {MAPS}, got {self.maps!r}")

    def _head_kwargs(self) -> dict[str, Any]:
        return {
            "n_blocks": int(self._setting("n_blocks")),
            "hidden_ratio": float(self._setting("hidden_ratio")),
            "clamp": float(self.clamp),
            **(self.head_params or {}),
        }

    @property
    def backbone_name(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else str(getattr(self.backbone, "name", "custom"))

    # --- backbone and features ----------------------------------------------------
    def _build_backbone(self) -> nn.Module:
        if not isinstance(self.backbone, str):
            for attr in ("channels", "reductions"):
                if not hasattr(self.backbone, attr):
                    raise ValueError(f"a backbone module needs a {attr!r} attribute (one entry per level)")
            return self.backbone.eval()
        from .backbone import build_backbone

        # weights=None is a random network: seed it, so that load() rebuilds the same one
        with seeded(int(self.random_state or 0)):
            return build_backbone(self.backbone, weights=self.weights, layers=self.layers)

    def _resized(self, images: Tensor) -> Tensor:
        size = (int(self.image_size), int(self.image_size))
        if tuple(images.shape[-2:]) == size:
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    def _dataset(self, data: Any, split: str) -> Any:
        if isinstance(data, (str, os.PathLike)):
            from .data import ImageFolderDataset

            return ImageFolderDataset(data, split=split, image_size=int(self.image_size))
        if isinstance(data, (Tensor, np.ndarray)):
            return self._resized(_as_images(data))
        return data  # a dataset or loader of [0, 1] images at image_size

    def features(self, data: Any, split: str = "test") -> list[Tensor]:
        """Backbone features of ``data`` (tensor, dataset, loader, or an MVTec-layout folder's ``split``)."""
        from .backbone import extract_features

        if not hasattr(self, "backbone_"):
            self.backbone_ = self._build_backbone()
        device = self.device_ if hasattr(self, "device_") else resolve_device(self.device)
        features = extract_features(
            self.backbone_,
            self._dataset(data, split),
            batch_size=int(self.batch_size),
            device=device,
            progress=self.verbose,
        )
        return [_ordinary(f) for f in features]

    # --- fitting ------------------------------------------------------------------
    def fit(self, data: Any, y: Any = None) -> ImageDetector:
        """Fit on normal images: a folder root (its ``train/good``), a tensor ``[N, 3, H, W]`` or a dataset."""
        self._check_params()
        self.device_ = resolve_device(self.device)
        self.backbone_ = self._build_backbone()
        return self.fit_features(self.features(data, split="train"))

    def fit_features(
        self, features: Sequence[Tensor], on_step: Callable[[int, float], None] | None = None
    ) -> ImageDetector:
        """Train the head on backbone features ``[N, C_l, h_l, w_l]`` per level (e.g. from :meth:`features`).

        ``on_step(step, loss)`` is called after every optimiser step (:func:`usfad.train.fit_module`);
        the head being trained is ``self.head_``. With ``threshold="conformal"`` the calibration
        images are held out of the scaler and the training, then scored (``calibration_scores_``)."""
        self._check_params()
        self.device_ = resolve_device(self.device)
        if not hasattr(self, "backbone_"):
            self.backbone_ = self._build_backbone()
        features = [_ordinary(torch.as_tensor(f)) for f in features]
        channels = [int(c) for c in self.backbone_.channels]
        got = [int(f.shape[1]) for f in features]
        if got != channels:
            raise DataError(f"features must have the backbone's channels {channels} per level, got {got}")
        n = int(features[0].shape[0])
        if n < 2 or any(int(f.shape[0]) != n for f in features):
            raise DataError(f"need at least 2 images with features at every level, got {[len(f) for f in features]}")
        self.channels_ = channels
        self.reductions_ = [int(r) for r in self.backbone_.reductions]
        seed = int(self.random_state) if self.random_state is not None else int(np.random.randint(2**31 - 1))
        if self.threshold == "conformal":
            fit_rows, calibration_rows = (torch.as_tensor(r) for r in calibration_split(n, seed, self.alpha))
        else:
            fit_rows, calibration_rows = torch.arange(n), None
        self._fit_scaler(features, fit_rows)
        with seeded(seed):
            generator = torch.Generator().manual_seed(seed)
            self.head_ = self._build_head().to(self.device_)

            def loss(index: Tensor) -> Tensor:
                batch = self.standardized([f[index].to(self.device_, torch.float32) for f in features])
                if self.noise > 0:
                    batch = [x + float(self.noise) * torch.randn_like(x) for x in batch]
                return self.head_.loss(batch)

            config = TrainConfig(
                epochs=int(self._setting("epochs")),
                batch_size=int(self.batch_size),
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                validation_fraction=0.0,
                patience=int(self._setting("epochs")),
                verbose=bool(self.verbose),
                desc=f"{self.model} ({self.flow})",
            )
            self.history_: History = fit_module(self.head_, loss, fit_rows, config, generator, on_step=on_step)
        self.head_.eval()
        for stale in ("calibration_scores_", "threshold_"):
            if hasattr(self, stale):
                delattr(self, stale)
        if calibration_rows is not None:
            scores = self.score_maps_features([f[calibration_rows] for f in features])[0]
            self._set_calibration(np.sort(scores), warn=True)
        return self

    def _set_calibration(self, scores: np.ndarray, warn: bool = False) -> None:
        """``calibration_scores_`` (ascending) and the ``threshold_`` they give at ``alpha``."""
        self.calibration_scores_ = scores
        self.threshold_ = conformal_threshold(scores, self.alpha)
        if warn and self.threshold_ == NO_ALARM:
            warnings.warn(
                f"threshold='conformal' at alpha={self.alpha} needs at least {math.ceil(round(1 / self.alpha, 9)) - 1} "
                f"calibration images; {len(scores)} were held out: no image will be flagged (p_values still "
                f"rank images). Use alpha >= {1 / (len(scores) + 1):.3g} or more training images",
                UserWarning,
                stacklevel=3,
            )

    def _fit_scaler(self, features: Sequence[Tensor], rows: Tensor | None = None) -> None:
        """Per-(channel, position) mean and scale of the training features (``rows`` of them when
        given; identity if not ``standardize``)."""
        self.feature_mean_, self.feature_scale_ = [], []
        for f in features:
            if self.standardize:
                mean, std = _mean_std(f, rows=rows)
                # A floor at a tenth of the channel's mean spread, so that no position where the
                # training images happen to agree (a border, a dead unit) blows up at test time.
                typical = std.flatten(1).mean(1)[:, None, None]
                scale = torch.where(typical > 0, torch.maximum(std, 0.1 * typical), torch.ones_like(std))
            else:
                mean, scale = torch.zeros(f.shape[1:]), torch.ones(f.shape[1:])
            # kept on the head's device, so that standardising a batch copies nothing (on CUDA)
            self.feature_mean_.append(mean.float().to(self.device_))
            self.feature_scale_.append(scale.float().to(self.device_))

    def standardized(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Backbone features as the fitted head sees them: per position, minus the training
        features' mean, divided by their scale (the scaler fitted by :meth:`fit_features`)."""
        out = []
        for f, mean, scale in zip(features, self.feature_mean_, self.feature_scale_):
            if tuple(f.shape[1:]) != tuple(mean.shape):
                raise DataError(
                    f"features of shape {tuple(f.shape[1:])} per image, the detector was fitted on "
                    f"{tuple(mean.shape)}: use images of the training size ({self.image_size} px)"
                )
            out.append((f - mean.to(f)) / scale.to(f))
        return out

    def _build_head(self) -> FlowHead:
        return build_head(self.model, self.channels_, self.reductions_, self.flow, **self._head_kwargs())

    # --- inference ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise RuntimeError("this ImageDetector is not fitted yet; call fit(images) first")

    def _score_batch(
        self, head: FlowHead, features: Sequence[Tensor], size: int | tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Scores ``[B]`` and maps ``[B, *size]`` of one batch of features, by ``head``.

        The one scoring path: :meth:`score_maps_features` calls it with ``head_``, and the ONNX
        graph (:class:`ImageDetectorGraph`) with its inference copy of ``head_``.
        """
        from .anomaly_map import anomaly_map, image_scores

        self._check_maps()  # may have been set after fit
        features = self.standardized(features)
        maps = anomaly_map(
            head.density_maps(features) if self.maps == "density" else head.anomaly_maps(features),
            size,
            combine=self._setting("combine"),
            sigma=float(self.sigma),
        )
        return image_scores(maps), maps

    @torch.no_grad()
    def score_maps_features(
        self, features: Sequence[Tensor], size: int | tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``[N]`` and anomaly maps ``[N, H, W]`` (``size``, default ``image_size``) from features."""
        self._check_fitted()
        size = size or int(self.image_size)
        n = int(features[0].shape[0])
        scores, maps = np.empty(n), None
        for start in range(0, n, int(self.batch_size)):
            batch = [f[start : start + int(self.batch_size)].to(self.device_, torch.float32) for f in features]
            s, m = self._score_batch(self.head_, batch, size)
            if maps is None:
                maps = np.empty((n, *m.shape[1:]), dtype=np.float32)
            maps[start : start + len(m)] = m.cpu().numpy()
            scores[start : start + len(m)] = s.double().cpu().numpy()
        if not np.isfinite(scores).all():
            raise NonFiniteScoresError(
                f"the {self.model} head produced non-finite scores for {int((~np.isfinite(scores)).sum())}"
                " image(s); the training probably diverged"
            )
        return scores, maps

    def score_maps(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [N], maps [N, H, W])`` for images ``[N, 3, H, W]`` in ``[0, 1]``; higher = more anomalous.

        Images of another size are resized to ``image_size`` for the network; the maps come
        back at the images' own size. A folder root or a dataset is read at ``image_size``.
        """
        self._check_fitted()
        if isinstance(images, (Tensor, np.ndarray)):
            x = _as_images(images)
            return self.score_maps_features(self.features(x), size=tuple(x.shape[-2:]))
        return self.score_maps_features(self.features(images, split="test"))

    def decision_function(self, images: Any) -> np.ndarray:
        """One anomaly score per image (the maximum of its smoothed map)."""
        return self.score_maps(images)[0]

    def predict(self, images: Any) -> np.ndarray:
        """Labels, as the tabular detectors give them: 1 where the score is above ``threshold_``, else 0.

        Only a detector fitted with ``threshold="conformal"`` has a ``threshold_``; any other
        raises ``ValueError`` (its scores and maps are :meth:`score_maps`)."""
        self._check_fitted()
        if not hasattr(self, "threshold_"):
            raise ValueError(
                f"predict needs a threshold: fit with threshold='conformal' (this ImageDetector has "
                f"threshold={self.threshold!r}); decision_function and score_maps give scores and maps"
            )
        return (self.decision_function(images) > self.threshold_).astype(int)

    def p_values(self, images: Any) -> np.ndarray:
        """Split-conformal p-value of each image (``threshold="conformal"`` only), in ``(0, 1]``:
        ``(1 + #{calibration scores >= score}) / (n_cal + 1)``; at most ``alpha`` exactly when
        the score is above ``threshold_``. Without calibration images: ``ValueError``."""
        self._check_fitted()
        if not hasattr(self, "calibration_scores_"):
            raise ValueError(
                f"p_values needs calibration images held out at fit: fit with threshold='conformal' "
                f"(this ImageDetector has threshold={self.threshold!r})"
            )
        return conformal_p_values(self.calibration_scores_, self.decision_function(images))

    @staticmethod
    def as_images(images: Any) -> Tensor:
        """``images`` as :meth:`score_maps` takes them: a float tensor ``[N, 3, H, W]`` from a tensor
        or array (``[3, H, W]`` is one image, one channel is repeated to three); raises
        :class:`~usfad.errors.DataError` for another shape, no image, or a non-finite value."""
        return _as_images(images)

    def scoring_module(self, image_size: int | None = None) -> nn.Module:
        """The fitted detector as one module: images ``[batch, 3, S, S]`` -> (scores, maps).

        ``S = image_size`` (default: the detector's; another is resized inside, as
        :meth:`score_maps` does). See :class:`ImageDetectorGraph`; in eval mode, on the CPU,
        LU layers frozen. What :meth:`export_onnx` exports.
        """
        return ImageDetectorGraph(self, image_size).eval()

    def export_onnx(
        self, path: str | os.PathLike[str], *, opset: int | None = None, image_size: int | None = None
    ) -> Path:
        """Write the whole detector, backbone to image scores, as one ONNX graph; returns the path.

        Input ``"images"``: float32 ``[batch, 3, S, S]``, RGB in ``[0, 1]`` (the backbone's
        normalisation is inside), ``S = image_size`` (default: the detector's; another size is
        resized inside, as :meth:`score_maps` does). Outputs ``"scores"`` float32 ``[batch]``
        (higher = more anomalous) and ``"maps"`` float32 ``[batch, S, S]``, as :meth:`score_maps`
        gives them (:meth:`scoring_module`). The batch axis is dynamic, the image size fixed;
        the file's metadata holds the model, flow, backbone and sizes (``usfad.*``). Opset
        :data:`usfad.export.OPSET` unless ``opset`` is given. Check a file with
        :func:`usfad.export.verify_image_onnx`. Needs ``pip install 'usfad[onnx]'``.
        """
        from .. import __version__

        graph = self.scoring_module(image_size)
        size = graph.image_size
        metadata = {
            "usfad.version": __version__,
            "usfad.class": type(self).__name__,
            "usfad.model": self.model,
            "usfad.flow": self.flow,
            "usfad.backbone": self.backbone_name,
            "usfad.image_size": size,
            "usfad.detector_image_size": int(self.image_size),
            "usfad.input": f"images: float32 (batch, 3, {size}, {size}), RGB in [0, 1] (normalisation is inside)",
            "usfad.output": f"scores: float32 (batch,), higher = more anomalous; maps: float32 (batch, {size}, {size})",
        }
        return export_module(
            graph,
            random_images(2, size),
            path,
            input_names=("images",),
            output_names=("scores", "maps"),
            opset=OPSET if opset is None else opset,
            metadata=metadata,
            output_shapes={"scores": ("batch",), "maps": ("batch", size, size)},
        )

    # --- persistence --------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the head's weights and the settings to one safetensors file (the backbone is rebuilt on load)."""
        self._check_fitted()
        params = self.get_params()
        params["backbone"] = self.backbone_name
        for key in ("layers",):
            if params[key] is not None:
                params[key] = [int(v) for v in params[key]]
        weights = params["weights"]
        params["weights"] = None if weights is None else str(weights)
        tensors = {f"head.{k}": v.detach().cpu().contiguous().clone() for k, v in self.head_.state_dict().items()}
        for level, (mean, scale) in enumerate(zip(self.feature_mean_, self.feature_scale_)):
            tensors[f"scaler.{level}.mean"] = mean.detach().cpu().contiguous()
            tensors[f"scaler.{level}.scale"] = scale.detach().cpu().contiguous()
        if hasattr(self, "calibration_scores_"):
            tensors["calibration_scores"] = torch.from_numpy(np.asarray(self.calibration_scores_, dtype=np.float64))
        state = {
            "channels_": self.channels_,
            "reductions_": self.reductions_,
            "train_loss": self.history_.train_loss,
        }
        metadata = {
            "format": FORMAT,
            "version": str(FORMAT_VERSION),
            "params": json.dumps(params),
            "state": json.dumps(state),
        }
        return write_model_file(path, tensors, metadata)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str = "cpu", backbone: nn.Module | None = None
    ) -> ImageDetector:
        """Read a file written by :meth:`save`; the backbone is rebuilt from its name and weights.

        Pass ``backbone`` to use a module instead (it must have the saved channels). The
        file's checksums are checked when it has them (:func:`usfad.modelfile.read_model_file`;
        files written before checksums existed still load) and so are the head's permutation
        buffers; any failure is a :class:`~usfad.errors.ModelFileError` naming the file.
        """
        from ..errors import ModelFileError

        tensors, metadata = read_model_file(path, FORMAT, FORMAT_VERSION)
        try:
            params = json.loads(metadata["params"])
            state = json.loads(metadata["state"])
            params["device"] = device
            if backbone is not None:
                params["backbone"] = backbone
            det = cls(**params)
            det.device_ = resolve_device(device)
            det.channels_ = [int(c) for c in state["channels_"]]
            det.reductions_ = [int(r) for r in state["reductions_"]]
            det.history_ = History(train_loss=[float(v) for v in state["train_loss"]])
            levels = len(det.channels_)
            det.feature_mean_ = [tensors[f"scaler.{i}.mean"].to(det.device_) for i in range(levels)]
            det.feature_scale_ = [tensors[f"scaler.{i}.scale"].to(det.device_) for i in range(levels)]
            det._check_params()
            calibration = tensors.get("calibration_scores")
            if (calibration is not None) != (det.threshold == "conformal"):
                has = "holds" if calibration is not None else "has no"
                raise ValueError(f"the file {has} calibration_scores, but threshold={det.threshold!r}")
            if calibration is not None:
                scores = calibration.to(torch.float64).numpy().copy()
                if calibration.dim() != 1 or not len(scores) or not np.isfinite(scores).all():
                    raise ValueError("calibration_scores must be a non-empty vector of finite numbers")
                if (np.diff(scores) < 0).any():
                    raise ValueError("calibration_scores are not in ascending order")
                det._set_calibration(scores)
            head = det._build_head()
            head.load_state_dict(
                {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}, strict=True
            )
            check_permutations(head, path)
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{path} could not be restored as an ImageDetector: {exc}") from None
        det.backbone_ = det._build_backbone()
        if [int(c) for c in det.backbone_.channels] != det.channels_:
            raise ModelFileError(
                f"{path}: the head expects backbone channels {det.channels_}, "
                f"the backbone {det.backbone_name!r} gives {list(det.backbone_.channels)}"
            )
        det.head_ = head.to(det.device_).eval()
        return det


class ImageDetectorGraph(nn.Module):
    """A fitted :class:`ImageDetector` as one module: images -> (scores, maps).

    ``forward(images)`` takes RGB images in ``[0, 1]``, float32 ``[batch, 3, S, S]`` with
    ``S = image_size`` (default: the detector's), and runs what ``score_maps`` runs on them:
    the detector's own resize to its ``image_size`` (a no-op when ``S`` is that size), the
    backbone (its normalisation included), and the detector's ``_score_batch`` (the head's
    level maps, upsampled to ``S``, combined, smoothed per image; score = the map's maximum)
    with :func:`~usfad.export.inference_copy` of the backbone and of the head. Returns
    scores float32 ``[batch]`` and maps float32 ``[batch, S, S]``. Build it with
    :meth:`ImageDetector.scoring_module`.
    """

    def __init__(self, detector: ImageDetector, image_size: int | None = None):
        super().__init__()
        detector._check_fitted()
        self.image_size = int(detector.image_size if image_size is None else image_size)
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        self.backbone = inference_copy(detector.backbone_)
        self.head = inference_copy(detector.head_)
        self._detector = detector  # not a module: the parameters belong to self.backbone and self.head

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(self._detector._resized(images))
        return self._detector._score_batch(self.head, features, (self.image_size, self.image_size))
