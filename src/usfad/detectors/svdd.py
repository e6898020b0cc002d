"""Deep SVDD (Ruff et al., ICML 2018): map normal data close to a centre ``c``.

One-class objective: minimise ``mean ||phi(x) - c||^2``; score = ``||phi(x) - c||^2``.
Soft-boundary objective: minimise ``R^2 + (1/nu) mean max(0, ||phi(x) - c||^2 - R^2)``
with ``R`` set each epoch (after a warm-up) to the ``1 - nu`` quantile of the distances;
score = ``||phi(x) - c||^2 - R^2``.

``c`` is the mean of the initial forward pass, with coordinates closer to zero than
``eps`` pushed to ``+-eps`` (a zero coordinate is trivially matched by zero weights).
A network with bias terms can map every input to ``c``: the hypersphere collapse. Hence
``bias=False`` by default, and a :class:`~usfad.errors.RepresentationCollapseWarning`
when the learned representation has collapsed anyway. (A USF cannot collapse: see
:mod:`usfad.density`.)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import RepresentationCollapseWarning
from ..train import History, TrainConfig, fit_module
from .base import BaseDetector

OBJECTIVES = ("one-class", "soft-boundary")


def center_with_eps_guard(mean: Tensor, eps: float) -> Tensor:
    """Deep SVDD's centre: ``mean`` with coordinates closer to 0 than ``eps`` set to ``+-eps``.

    A zero coordinate is trivially matched by zero weights, so it is pushed away from 0.
    """
    c = mean.clone()
    small = c.abs() < eps
    c[small & (c < 0)] = -eps
    c[small & (c >= 0)] = eps
    return c


class SVDDNet(nn.Module):
    """MLP ``phi`` with the centre and radius kept as buffers (saved with the weights)."""

    def __init__(self, n_features: int, hidden_features: Sequence[int], latent_features: int, bias: bool):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden_features:
            layers += [nn.Linear(width, h, bias=bias), nn.LeakyReLU()]
            width = h
        layers.append(nn.Linear(width, latent_features, bias=bias))
        self.net = nn.Sequential(*layers)
        self.register_buffer("center", torch.zeros(latent_features))
        self.register_buffer("radius", torch.tensor(0.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def sq_distance(self, x: Tensor) -> Tensor:
        return (self.net(x) - self.center).pow(2).sum(1)


class DeepSVDD(BaseDetector):
    """Deep Support Vector Data Description.

    Parameters
    ----------
    objective: ``"one-class"`` or ``"soft-boundary"``.
    nu: the soft-boundary's share of training points allowed outside the sphere.
    hidden_features, latent_features: widths of the MLP and size of its output.
    bias: whether the network has bias terms (``False`` guards against collapse).
    eps: coordinates of the centre with ``|c_i| < eps`` are set to ``+-eps``.
    warm_up_epochs: soft-boundary epochs before the radius is first updated.
    Other parameters as in :class:`usfad.detectors.flow.FlowDetector`.
    """

    def __init__(
        self,
        objective: str = "one-class",
        nu: float = 0.1,
        hidden_features: Sequence[int] = (128, 64),
        latent_features: int = 32,
        bias: bool = False,
        eps: float = 0.1,
        warm_up_epochs: int = 10,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        validation_fraction: float = 0.1,
        patience: int = 10,
        max_steps: int | None = 3000,
        standardize: bool = True,
        contamination: float = 0.1,
        threshold: str = "contamination",
        alpha: float = 0.01,
        random_state: int | None = 0,
        device: str = "cpu",
        verbose: bool = False,
    ):
        self.objective = objective
        self.nu = nu
        self.hidden_features = hidden_features
        self.latent_features = latent_features
        self.bias = bias
        self.eps = eps
        self.warm_up_epochs = warm_up_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.max_steps = max_steps
        self.standardize = standardize
        self.contamination = contamination
        self.threshold = threshold
        self.alpha = alpha
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _check_params(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 0 < self.nu <= 1:
            raise ValueError(f"nu must be in (0, 1], got {self.nu}")
        if self.latent_features is None:
            raise ValueError("latent_features must be an integer >= 1 for DeepSVDD, got None")
        if self.threshold == "chi2":
            self._chi2_threshold()

    def _build_model(self, n_features: int) -> SVDDNet:
        return SVDDNet(n_features, self.hidden_features, self.latent_features, self.bias)

    def _loss(self, batch: Tensor) -> Tensor:
        dist = self.model_.sq_distance(batch)
        if self.objective == "soft-boundary":
            r2 = self.model_.radius**2
            return r2 + torch.clamp(dist - r2, min=0) / self.nu
        return dist

    def _score(self, batch: Tensor) -> Tensor:
        dist = self.model_.sq_distance(batch)
        return dist - self.model_.radius**2 if self.objective == "soft-boundary" else dist

    def _latent(self, batch: Tensor) -> Tensor:
        return self.model_(batch)

    @torch.no_grad()
    def _init_center(self, data: Tensor) -> None:
        z = torch.cat([self.model_(data[i : i + 4096]) for i in range(0, data.shape[0], 4096)])
        self.model_.center.copy_(center_with_eps_guard(z.mean(0), self.eps))

    def _fit_model(self, data: Tensor, config: TrainConfig, generator: torch.Generator) -> History:
        self.model_.eval()
        self._init_center(data)
        initial_spread = float(self._batched(self.model_.sq_distance, data).mean())

        def update_radius(epoch: int) -> None:
            if self.objective == "soft-boundary" and epoch + 1 >= self.warm_up_epochs:
                dist = torch.as_tensor(self._batched(self.model_.sq_distance, data))
                self.model_.radius.fill_(float(torch.quantile(dist.sqrt(), 1 - self.nu)))

        history = fit_module(self.model_, self._loss, data, config, generator, on_epoch_end=update_radius)
        self._warn_if_collapsed(data, initial_spread)
        return history

    def _warn_if_collapsed(self, data: Tensor, initial_spread: float) -> None:
        z = self._batched(self.model_, data)
        spread = float(np.mean(np.sum((z - z.mean(0)) ** 2, axis=1)))
        # "collapsed" = the spread is negligible next to both where it started and the
        # size of the centre: the network has become (numerically) a constant map.
        reference = max(initial_spread, float(self.model_.center.pow(2).sum()))
        self.collapsed_ = bool(spread < 1e-5 * reference)
        if self.collapsed_:
            advice = "a larger weight decay or fewer epochs" if not self.bias else "bias=False"
            warnings.warn(
                f"DeepSVDD's representation collapsed: the training data's spread in latent space fell from "
                f"{initial_spread:.3g} to {spread:.3g}, so its scores carry little information "
                f"(near-constant training data does this too). Try {advice}, or a USFlow, which cannot collapse",
                RepresentationCollapseWarning,
                stacklevel=4,
            )

    def _extra_state(self) -> dict[str, Any]:
        return {"collapsed_": bool(getattr(self, "collapsed_", False))}
