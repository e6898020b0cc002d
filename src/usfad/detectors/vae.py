"""VAE detectors: VAE-USFlow (a VAE with a flow prior) and Deep SVDD-VAE.

Both share :class:`VAENet`: an MLP encoder ``q(z|x) = N(mu(x), diag sigma^2(x))``, an MLP
decoder ``g(z)`` with Gaussian likelihood ``p(x|z) = N(g(z), RECON_SIGMA^2 I)`` and a prior
``p(z)`` given by a flow on the latent space with base ``N(0, I)``:

    log p(z) = log N(f(z); 0, I) + log|det J_f(z)|.

:class:`VAEFlow` chooses the prior with ``prior="usf"`` (a uniformly scaling flow),
``"affine"`` (the non-USF control) or ``"normal"`` (the identity flow, i.e. ``N(0, I)``).
Its training loss per sample, with one reparameterised draw ``z = mu + sigma * eps``, is

    recon(x, z) + beta * (log q(z|x) - log p(z)),   recon(x, z) = -log p(x|z).

With a USF prior ``-log p(z) = ||f(z)||^2 / 2 + const - kappa``: the KL term holds a
Deep SVDD term on the flow-transformed code.

:class:`DeepSVDDVAE` (Zhou et al., Neurocomputing 2021) keeps the ``N(0, I)`` prior and
adds ``svdd_weight * ||mu(x) - c||^2`` (``lambda`` in the paper) with the centre ``c``
taken from the initial encoder means (Deep SVDD's rule, see :mod:`usfad.detectors.svdd`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..density import GaussianBase
from ..flows import FLOWS, Sequential, build_flow
from ..train import History, TrainConfig, fit_module
from .base import BaseDetector
from .flow import FlowModel
from .svdd import center_with_eps_guard

#: standard deviation of the Gaussian reconstruction likelihood (standardised data)
RECON_SIGMA = 0.1
#: bounds on the encoder's log-variance: keeps ``exp`` finite early in training
LOG_VAR_RANGE = (-12.0, 8.0)
PRIORS = (*FLOWS, "normal")
#: draws of the fixed Monte Carlo estimate behind the ``neg_elbo`` score
ELBO_SAMPLES = 16


def default_latent_features(n_features: int) -> int:
    """``max(2, min(32, d // 2))``: half the input dimension, at least 2, at most 32."""
    return max(2, min(32, n_features // 2))


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


class VAENet(nn.Module):
    """Encoder, decoder and prior of a VAE on vectors.

    The encoder is ``d -> hidden... -> 2 * latent`` (mean and log-variance), the decoder
    mirrors it (``latent -> reversed(hidden)... -> d``); ``prior`` is a
    :class:`~usfad.detectors.flow.FlowModel` on the latent space.
    """

    def __init__(self, n_features: int, latent_features: int, hidden_features: Sequence[int], prior: FlowModel):
        super().__init__()
        hidden = [int(h) for h in hidden_features]
        self.n_features = n_features
        self.latent_features = latent_features
        self.encoder = _mlp([n_features, *hidden, 2 * latent_features])
        self.decoder = _mlp([latent_features, *reversed(hidden), n_features])
        self.prior = prior
        # The fixed draws behind ``neg_elbo``: a buffer (moves with the model, a constant in
        # exported graphs) that is not saved, since it is always the same.
        draws = torch.randn(ELBO_SAMPLES, latent_features, generator=torch.Generator().manual_seed(0))
        self.register_buffer("elbo_draws", draws, persistent=False)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)`` of ``q(z|x)``, each ``(batch, latent)``."""
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(*LOG_VAR_RANGE)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def recon_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """``-log N(x; g(z), RECON_SIGMA^2 I)`` per sample."""
        sq = (x - self.decode(z)).pow(2).flatten(1).sum(1)
        return sq / (2 * RECON_SIGMA**2) + 0.5 * self.n_features * math.log(2 * math.pi * RECON_SIGMA**2)

    def prior_nll(self, z: Tensor) -> Tensor:
        """``-log p(z)`` per sample."""
        return self.prior.nll(z)

    def sampled_kl(self, mu: Tensor, log_var: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log q(z|x) - log p(z))`` at ``z = mu + exp(log_var / 2) * eps``."""
        z = mu + torch.exp(0.5 * log_var) * eps
        log_q = -0.5 * (eps.pow(2) + log_var + math.log(2 * math.pi)).sum(1)
        return z, log_q + self.prior_nll(z)

    def sampled_loss(self, x: Tensor, beta: float, eps: Tensor) -> Tensor:
        """``recon(x, z) + beta * (log q(z|x) - log p(z))`` per sample, for the noise ``eps``."""
        mu, log_var = self.encode(x)
        z, kl = self.sampled_kl(mu, log_var, eps)
        return self.recon_nll(x, z) + beta * kl

    def neg_elbo(self, x: Tensor, beta: float) -> Tensor:
        """The expected training loss, estimated with :data:`ELBO_SAMPLES` fixed draws.

        The draws are the same for every sample (common random numbers), so a sample's
        score depends on nothing but the sample: not on its batch, not on a generator.
        """
        draws = self.elbo_draws.to(x)
        total = x.new_zeros(x.shape[0])
        for eps in draws:
            total = total + self.sampled_loss(x, beta, eps.expand(x.shape[0], -1))
        return total / ELBO_SAMPLES


class SVDDVAENet(VAENet):
    """:class:`VAENet` with Deep SVDD's centre ``c`` kept as a buffer (saved with the weights)."""

    def __init__(self, n_features: int, latent_features: int, hidden_features: Sequence[int], prior: FlowModel):
        super().__init__(n_features, latent_features, hidden_features, prior)
        self.register_buffer("center", torch.zeros(latent_features))

    def sq_distance(self, mu: Tensor) -> Tensor:
        return (mu - self.center).pow(2).sum(1)


def latent_prior(
    latent_features: int, prior: str, n_blocks: int, hidden_features: Sequence[int], clamp: float
) -> FlowModel:
    """The prior ``p(z)``: a USF or affine flow with base ``N(0, I)``, or ``N(0, I)`` itself."""
    if prior == "normal":
        flow = Sequential([])  # the identity: log p(z) = log N(z; 0, I)
    else:
        flow = build_flow(latent_features, prior, n_blocks=n_blocks, hidden_features=hidden_features, clamp=clamp)
    return FlowModel(flow, GaussianBase(latent_features))


class _VAEDetector(BaseDetector):
    """What the two VAE detectors share: parameter checks, scores by name, latent = ``mu``."""

    #: the score names this detector knows (the first is the default)
    scores: ClassVar[tuple[str, ...]] = ()

    def _latent_size(self, n_features: int) -> int:
        return default_latent_features(n_features) if self.latent_features is None else int(self.latent_features)

    def _check_vae_params(self) -> None:
        if self.score not in self.scores:
            raise ValueError(f"score must be one of {self.scores}, got {self.score!r}")
        if self.latent_features is not None and int(self.latent_features) < 1:
            raise ValueError(f"latent_features must be >= 1 or None, got {self.latent_features}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.threshold == "chi2":
            self._chi2_threshold()

    def _latent(self, batch: Tensor) -> Tensor:
        return self.model_.encode(batch)[0]

    def _components(self, batch: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """The scores ``names`` of ``batch``, float64 ``(batch,)`` each."""
        raise NotImplementedError

    def _score(self, batch: Tensor) -> Tensor:
        return self._components(batch, (self.score,))[self.score]

    def score_components(self, X: Any) -> dict[str, np.ndarray]:
        """Every score this detector knows, ``{name: (n,) float64 array}``, computed together."""
        data = self._validated(X)
        self.model_.eval()
        parts: dict[str, list[Tensor]] = {name: [] for name in self.scores}
        with torch.no_grad():
            for i in range(0, data.shape[0], self.score_batch_size):
                for name, value in self._components(data[i : i + self.score_batch_size], self.scores).items():
                    parts[name].append(value.cpu())
        return {name: torch.cat(values).numpy() for name, values in parts.items()}


class VAEFlow(_VAEDetector):
    """VAE-USFlow: a VAE whose prior ``p(z)`` is a flow (or ``N(0, I)``).

    Scores (all at the encoder mean ``mu = mu(x)`` except ``neg_elbo``; float64):

    - ``"anomaly"`` (default): ``recon + latent``;
    - ``"recon"``: ``-log N(x; g(mu), RECON_SIGMA^2 I)``;
    - ``"latent"``: ``-log p(mu)`` under the prior;
    - ``"neg_elbo"``: the expected training loss ``E_q[recon + beta (log q - log p)]``
      (beta = 1: the negative ELBO), from 16 fixed Monte Carlo draws.

    :meth:`score_components` returns all four.

    Parameters
    ----------
    prior: ``"usf"`` or ``"usf-gin"`` (uniformly scaling flows), ``"affine"`` (the non-USF control) or
        ``"normal"`` (``N(0, I)``, a plain VAE).
    latent_features: size of the code; ``None`` takes ``max(2, min(32, d // 2))``.
    beta: weight of the KL term ``log q(z|x) - log p(z)``.
    score: which score ``decision_function`` returns (see above).
    n_blocks, clamp: the prior flow's blocks and affine clamp (see
        :func:`usfad.flows.build_flow`).
    hidden_features: hidden widths of the encoder (the decoder mirrors them) and of the
        prior flow's conditioners.
    Other parameters as in :class:`usfad.detectors.flow.FlowDetector`.
    """

    scores = ("anomaly", "recon", "latent", "neg_elbo")

    def __init__(
        self,
        prior: str = "usf",
        latent_features: int | None = None,
        beta: float = 1.0,
        score: str = "anomaly",
        n_blocks: int = 4,
        hidden_features: Sequence[int] = (128, 64),
        clamp: float = 2.0,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
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
        self.prior = prior
        self.latent_features = latent_features
        self.beta = beta
        self.score = score
        self.n_blocks = n_blocks
        self.hidden_features = hidden_features
        self.clamp = clamp
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
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if int(self.n_blocks) < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}")
        self._check_vae_params()

    def _build_model(self, n_features: int) -> VAENet:
        latent = self._latent_size(n_features)
        prior = latent_prior(latent, self.prior, int(self.n_blocks), self.hidden_features, self.clamp)
        return VAENet(n_features, latent, self.hidden_features, prior)

    def _loss(self, batch: Tensor) -> Tensor:
        eps = torch.randn(batch.shape[0], self.model_.latent_features).to(batch)
        return self.model_.sampled_loss(batch, self.beta, eps)

    def _components(self, batch: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if {"anomaly", "recon", "latent"} & set(names):
            mu, _ = self.model_.encode(batch)
            out["recon"] = self.model_.recon_nll(batch, mu).double()
            out["latent"] = self.model_.prior_nll(mu).double()
            out["anomaly"] = out["recon"] + out["latent"]
        if "neg_elbo" in names:  # 16 passes: only when asked for
            out["neg_elbo"] = self.model_.neg_elbo(batch, self.beta).double()
        return {name: out[name] for name in names}


class DeepSVDDVAE(_VAEDetector):
    """Deep SVDD-VAE (Zhou et al., Neurocomputing 2021): a VAE pulled towards a centre.

    Loss per sample: ``recon(x, z) + beta * (log q(z|x) - log N(z; 0, I))
    + svdd_weight * ||mu(x) - c||^2``, with ``c`` the mean of the initial encoder means
    (coordinates closer to 0 than ``eps`` pushed to ``+-eps``).

    Scores (float64): ``"distance"`` (default) ``||mu(x) - c||^2``; ``"distance+recon"``
    the loss's deterministic part ``svdd_weight * ||mu(x) - c||^2 + recon(x, mu)``;
    ``"recon"`` the reconstruction term alone. :meth:`score_components` returns all three.

    Parameters
    ----------
    svdd_weight: ``lambda``, the weight of the one-class term.
    eps: the centre's guard against near-zero coordinates.
    latent_features, beta, hidden_features: as in :class:`VAEFlow`.
    Other parameters as in :class:`usfad.detectors.flow.FlowDetector`.
    """

    scores = ("distance", "distance+recon", "recon")

    def __init__(
        self,
        svdd_weight: float = 1.0,
        eps: float = 0.1,
        latent_features: int | None = None,
        beta: float = 1.0,
        score: str = "distance",
        hidden_features: Sequence[int] = (128, 64),
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
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
        self.svdd_weight = svdd_weight
        self.eps = eps
        self.latent_features = latent_features
        self.beta = beta
        self.score = score
        self.hidden_features = hidden_features
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
        if not self.svdd_weight >= 0:
            raise ValueError(f"svdd_weight must be >= 0, got {self.svdd_weight}")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        self._check_vae_params()

    def _build_model(self, n_features: int) -> SVDDVAENet:
        latent = self._latent_size(n_features)
        return SVDDVAENet(n_features, latent, self.hidden_features, latent_prior(latent, "normal", 0, (), 0.0))

    def _loss(self, batch: Tensor) -> Tensor:
        mu, log_var = self.model_.encode(batch)
        eps = torch.randn(batch.shape[0], self.model_.latent_features).to(mu)
        z, kl = self.model_.sampled_kl(mu, log_var, eps)
        return self.model_.recon_nll(batch, z) + self.beta * kl + self.svdd_weight * self.model_.sq_distance(mu)

    def _components(self, batch: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        mu, _ = self.model_.encode(batch)
        distance = self.model_.sq_distance(mu).double()
        recon = self.model_.recon_nll(batch, mu).double()
        out = {"distance": distance, "distance+recon": self.svdd_weight * distance + recon, "recon": recon}
        return {name: out[name] for name in names}

    @torch.no_grad()
    def _init_center(self, data: Tensor) -> None:
        mu = torch.cat([self.model_.encode(data[i : i + 4096])[0] for i in range(0, data.shape[0], 4096)])
        self.model_.center.copy_(center_with_eps_guard(mu.mean(0), self.eps))

    def _fit_model(self, data: Tensor, config: TrainConfig, generator: torch.Generator) -> History:
        self.model_.eval()
        self._init_center(data)
        return fit_module(self.model_, self._loss, data, config, generator)
