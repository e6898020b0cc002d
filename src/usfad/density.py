"""Base density, negative log-likelihood, latent distance and chi-square calibration.

With base ``N(c, s^2 I)`` on ``R^d`` a flow ``f`` gives

    log p(x) = -||f(x) - c||^2 / (2 s^2) - (d/2) log(2 pi s^2) + log|det J_f(x)|.

For a uniformly scaling flow ``log|det J_f(x)| = kappa`` for every ``x``, hence

    NLL(x) = ||f(x) - c||^2 / (2 s^2) + (d/2) log(2 pi s^2) - kappa,

i.e. the Deep SVDD term on the network ``f`` with centre ``c`` plus the regulariser
``-kappa`` (:func:`usf_nll_terms`), and ``NLL`` is a strictly increasing function of the
latent distance ``||f(x) - c||``. If the USF fits the data, ``||f(x) - c||^2 / s^2`` of
normal samples follows ``chi2(d)``: :func:`chi2_nll_threshold` turns a false-alarm rate
into an NLL threshold without any anomaly examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor, nn

from .flows.base import Bijection


class GaussianBase(nn.Module):
    """Isotropic Gaussian ``N(c, s^2 I)``; ``c`` and ``s`` are fixed (buffers)."""

    def __init__(self, features: int, center: float | Tensor = 0.0, scale: float = 1.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.features = features
        center_t = torch.as_tensor(center, dtype=torch.get_default_dtype())
        self.register_buffer("center", center_t.expand(features).clone())
        self.register_buffer("scale", torch.tensor(float(scale)))

    def sq_distance(self, z: Tensor) -> Tensor:
        """``||z - c||^2`` per sample, shape ``(batch,)``."""
        diff = z - self.center.view(1, -1, *([1] * (z.dim() - 2)))
        return diff.pow(2).flatten(1).sum(1)

    def log_normalizer(self, z: Tensor) -> Tensor:
        """``(D/2) log(2 pi s^2)`` with ``D`` the number of entries per sample."""
        dim = z[0].numel()
        return 0.5 * dim * torch.log(2 * math.pi * self.scale**2)

    def log_prob(self, z: Tensor) -> Tensor:
        return -self.sq_distance(z) / (2 * self.scale**2) - self.log_normalizer(z)


def nll(flow: Bijection, base: GaussianBase, x: Tensor, context: Tensor | None = None) -> Tensor:
    """``-log p(x)`` per sample under the flow."""
    z, logdet = flow(x, context)
    return -(base.log_prob(z) + logdet)


def latent_distance(flow: Bijection, base: GaussianBase, x: Tensor, context: Tensor | None = None) -> Tensor:
    """``||f(x) - c||`` per sample."""
    z, _ = flow(x, context)
    return base.sq_distance(z).sqrt()


def svdd_objective(z: Tensor, center: Tensor) -> Tensor:
    """Deep SVDD's one-class objective ``mean ||z - c||^2`` (a scalar)."""
    return (z - center).pow(2).flatten(1).sum(1).mean()


@dataclass
class NLLTerms:
    """``NLL(x) = svdd / (2 s^2) + log_normalizer - kappa`` for a USF (per sample)."""

    svdd: Tensor  #: ``||f(x) - c||^2`` per sample
    log_normalizer: Tensor  #: ``(d/2) log(2 pi s^2)``
    kappa: Tensor  #: the constant ``log|det J_f|``
    scale: Tensor  #: the base's ``s``

    @property
    def total(self) -> Tensor:
        return self.svdd / (2 * self.scale**2) + self.log_normalizer - self.kappa

    @property
    def regularizer(self) -> Tensor:
        """The term added to the Deep SVDD objective: ``-2 s^2 kappa``."""
        return -2 * self.scale**2 * self.kappa


def usf_nll_terms(flow: Bijection, base: GaussianBase, x: Tensor, context: Tensor | None = None) -> NLLTerms:
    """Split a USF's NLL into its Deep SVDD term and its log-det regulariser."""
    if not flow.constant_logdet:
        raise ValueError("usf_nll_terms needs a flow with constant_logdet=True (a USF)")
    z, logdet = flow(x, context)
    return NLLTerms(base.sq_distance(z), base.log_normalizer(z), logdet[0], base.scale)


def chi2_nll_threshold(dim: int, alpha: float, kappa: float, scale: float = 1.0) -> float:
    """NLL above which a sample is flagged at false-alarm rate ``alpha`` under a fitted USF.

    ``||f(x) - c||^2 / s^2 ~ chi2(dim)`` for normal data, so the ``1 - alpha`` quantile
    ``q`` maps to ``NLL = q / 2 + (dim/2) log(2 pi s^2) - kappa``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    q = float(stats.chi2.ppf(1 - alpha, dim))
    return q / 2 + 0.5 * dim * math.log(2 * math.pi * scale**2) - kappa
