"""Flow detectors: maximum likelihood on normal data, score = negative log-likelihood.

``FlowDetector(flow="usf")`` is a uniformly scaling flow: its NLL is the Deep SVDD
distance plus a constant, so its scores rank samples exactly like its latent distance and
``threshold="chi2"`` approximates a false-alarm rate without anomaly examples.
``flow="usf-gin"`` is a USF too (GIN couplings: affine with centred log-scales).
``flow="affine"`` is the non-USF control that differs only in its couplings.
:class:`USFlow` and :class:`NonUSFlow` are the two with the switch preset.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..density import GaussianBase, GaussianMixtureBase, KernelBase, chi2_nll_threshold
from ..errors import DataError
from ..flows import build_flow, check_flow, is_usf
from ..flows.base import Bijection
from ..flows.build import MIXINGS
from ..train import History, TrainConfig
from .base import BaseDetector

#: ``FlowDetector(base=...)``: score with the trained base, or with a kernel density of the training latents
BASES = ("auto", "gaussian", "kernel")


class FlowModel(nn.Module):
    """A flow and its base density: the whole network of a flow detector.

    ``input_base`` (optional): a :class:`~usfad.density.KernelBase` over the (standardised)
    training rows themselves, the base of a second USF whose flow is the identity. With it the
    NLL is the mean of the two flows' NLLs (``FlowDetector(input_kernel=True)``).

    ``trained_base`` (optional, with a kernel ``base``): the base the flow trained with, kept
    beside the kernels that replaced it, and ``trained_weight`` (a buffer, ``w``): the NLL is
    then ``(1 - w)`` times the kernels' NLL plus ``w`` times the flow's NLL under its trained
    base (``FlowDetector(gaussian_weight=...)``)."""

    def __init__(
        self,
        flow: Bijection,
        base: GaussianBase | GaussianMixtureBase | KernelBase,
        input_base: KernelBase | None = None,
        trained_base: GaussianBase | GaussianMixtureBase | None = None,
        trained_weight: float = 0.0,
    ):
        super().__init__()
        self.flow = flow
        self.base = base
        self.input_base = input_base
        self.trained_base = None
        self.register_buffer("trained_weight", torch.tensor(0.0), persistent=False)
        if trained_base is not None:
            self.keep_trained_base(trained_base, trained_weight)

    def keep_trained_base(self, base: GaussianBase | GaussianMixtureBase, weight: float) -> None:
        """Score with ``weight`` of the flow's NLL under ``base`` (and the rest of the kernels')."""
        self.trained_base = base
        self.register_buffer("trained_weight", torch.tensor(float(weight)).to(self.trained_weight), persistent=True)

    def nll(self, x: Tensor, exclude: Tensor | None = None) -> Tensor:
        """``-log p(x)`` per row. ``exclude`` (kernel bases only): the centre each row leaves out
        of both kernels' sums (:meth:`usfad.density.KernelBase.log_terms`; the two kernels' centres
        are the same training rows, in the same order), instead of the one it lies on. The
        trained base has no centres and reads no ``exclude``."""
        z, logdet = self.flow(x)
        nll = -((self.base.log_prob(z) if exclude is None else self.base.log_prob(z, exclude)) + logdet)
        if self.input_base is not None:
            nll = 0.5 * (nll - self.input_base.log_prob(x.flatten(1), exclude))
        if self.trained_base is None:
            return nll
        w = self.trained_weight
        return (1 - w) * nll + w * -(self.trained_base.log_prob(z) + logdet)


class FlowDetector(BaseDetector):
    """Normalizing-flow anomaly detector (scores are NLL of standardised data).

    Parameters
    ----------
    flow: ``"usf"`` (additive couplings; a uniformly scaling flow), ``"usf-gin"`` (GIN
        couplings, also a USF) or ``"affine"`` (the non-USF control). ``None`` takes the class
        default (``"usf"`` here).
    n_blocks, hidden_features, clamp: the flow's architecture (see
        :func:`usfad.flows.build_flow`).
    mixing: how each block mixes the features around its coupling: ``"lu"`` (a learned LU
        map), ``"permutation"`` (a fixed one: ``O(d)`` instead of ``O(d^2)`` per row) or
        ``"auto"``: LU up to :attr:`lu_mixing_max_features` features, permutations above.
    base_components: the base density: ``1``, one standard Gaussian (the latent distance
        ranks the rows; the chi-square threshold needs it), ``k > 1``, a mixture of ``k``
        unit Gaussians whose means (started at k-means centres of the training rows, seen
        through the untrained flow) and weights train with the flow
        (:class:`~usfad.density.GaussianMixtureBase`; at least ``2k`` training rows), or
        ``"auto"``: :attr:`auto_components` up to :attr:`auto_components_max_features`
        features, one Gaussian above, with ``threshold="chi2"`` or under ``2 x 8`` rows
        (:meth:`components_for`; the number used is ``base_components_``).
    base: the density the fitted detector scores with. ``"gaussian"``: the base it trained
        with (``base_components``). ``"kernel"``: after training, that base is replaced by a
        kernel density estimate over the training rows' latents
        (:class:`~usfad.density.KernelBase`: at most :meth:`kernel_centres_for` seeded rows as
        centres, the bandwidth, and each centre's width from its distance to its 5th nearest
        other centre, chosen by their leave-one-out likelihood, :meth:`build_kernel`), so a
        row scores by the soft distance of its latent to the
        nearest training latents; still a likelihood, and a USF's still ranks like its latent
        distance (:func:`usfad.metrics.latent_distance`). A row on a centre (a training row)
        is scored without its own kernel, at ``fit`` and whenever it is scored again. Not
        with ``threshold="chi2"``. ``"auto"`` (the
        default): the kernel, and the Gaussian with ``threshold="chi2"`` (:meth:`uses_kernel`).
    input_kernel: ``True``: with a kernel base, score with the mean of two NLLs: the trained flow's and
        that of a second USF whose flow is the identity, a kernel density of the standardised
        rows themselves (the same centre rows, its own bandwidth chosen the same way). A
        flow Gaussianises skewed features but also whitens correlated ones, and the
        z-scores' neighbourhoods are the better ones on some data; the mean keeps some of
        each (``benchmarks/results/tabular_kernel/``). The NLL is then no longer a function
        of the flow's latent alone: :func:`usfad.metrics.latent_distance` measures the pair of
        latents, and explanations take the straight path (no ``baseline="typical"``).
        ``"auto"`` (the default): whenever a kernel base scores (:meth:`uses_input_kernel`).
    gaussian_weight: with a kernel base, the weight ``w`` in ``[0, 1]`` of the flow's NLL under the
        base it trained with (one Gaussian by default: the USF's latent distance) in the score,
        the kernels' NLL taking ``1 - w``; ``"auto"`` (the default): the share of the training
        rows' non-constant features that take two values (:meth:`binary_share`). At ``w = 1``
        no kernel is built and the trained base scores alone, as with ``base="gaussian"`` (but
        with the kernel base's step budget). A kernel
        density is a poor one on a lattice of binary values: its neighbourhoods are exact
        matches and few Hamming steps, and the flow's smooth base ranks such rows better
        (``benchmarks/results/tabular_binary/``). The number used is ``gaussian_weight_``.
    epochs, batch_size, lr, weight_decay, validation_fraction, patience, max_steps:
        training (Adam; early stopping on a validation split of the training data).
        Above 128 features the step size is ``lr * sqrt(128 / n_features)``. ``epochs`` and
        ``patience`` take an integer or ``"auto"`` (the default): :attr:`auto_epochs` epochs
        but at least :attr:`auto_min_steps` optimiser steps, and a patience of
        :attr:`auto_patience` epochs but at least :attr:`auto_min_patience_steps` steps, so
        that a small training set (an epoch of one or two batches) is not stopped after a
        few dozen steps. The step floors apply up to :attr:`auto_floors_max_features`
        features; wider data train for ``auto_epochs`` and ``auto_patience`` epochs as given
        (a step there costs in proportion to the width; the floors made such fits 2.5 to 3.5
        times slower for changes within the seed-to-seed spread). ``max_steps`` takes an
        integer, ``None`` (no cap) or ``"auto"`` (the default): :attr:`auto_max_steps` steps,
        :attr:`auto_max_steps_kernel` when a kernel base scores (:meth:`uses_kernel`).
    noise: standard deviation of Gaussian noise added to standardised training batches, or
        ``"auto"``: :meth:`noise_for` the number of training rows (more rows, less noise).
    standardize: standardise features with the training mean and deviation first.
    contamination: expected anomaly share, sets ``threshold_`` when
        ``threshold="contamination"``.
    threshold: ``"contamination"``, ``"chi2"`` (USF only; approximate, see
        :func:`usfad.density.chi2_nll_threshold`) or ``"conformal"`` (any detector:
        held-out calibration rows, false-alarm rate at most ``alpha``; see
        :class:`~usfad.detectors.base.BaseDetector`).
    random_state, device, verbose: seed, torch device (``"auto"`` picks a GPU if any),
        progress bars (training, the kernel densities, scoring the training rows).
    """

    default_flow = "usf"

    def __init__(
        self,
        flow: str | None = None,
        n_blocks: int = 4,
        hidden_features: Sequence[int] = (256, 256),
        clamp: float = 2.0,
        mixing: str = "auto",
        base_components: int | str = 1,
        base: str = "auto",
        input_kernel: bool | str = "auto",
        gaussian_weight: float | str = "auto",
        epochs: int | str = "auto",
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.1,
        patience: int | str = "auto",
        max_steps: int | str | None = "auto",
        noise: float | str = "auto",
        standardize: bool = True,
        contamination: float = 0.1,
        threshold: str = "contamination",
        alpha: float = 0.01,
        random_state: int | None = 0,
        device: str = "cpu",
        verbose: bool = False,
    ):
        self.flow = flow
        self.n_blocks = n_blocks
        self.hidden_features = hidden_features
        self.clamp = clamp
        self.mixing = mixing
        self.base_components = base_components
        self.base = base
        self.input_kernel = input_kernel
        self.gaussian_weight = gaussian_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.max_steps = max_steps
        self.noise = noise
        self.standardize = standardize
        self.contamination = contamination
        self.threshold = threshold
        self.alpha = alpha
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    @property
    def flow_(self) -> str:
        """The switch value in effect (``flow`` or the class default)."""
        return self.default_flow if self.flow is None else self.flow

    def _check_params(self) -> None:
        check_flow(self.flow_)
        if type(self) is not FlowDetector and self.flow_ != self.default_flow:
            raise ValueError(
                f"{type(self).__name__} is flow={self.default_flow!r}; use FlowDetector(flow={self.flow!r}) instead"
            )
        if self.threshold == "chi2" and not is_usf(self.flow_):
            self._chi2_threshold()
        if self.threshold == "chi2" and self.base_components not in (1, "auto"):
            raise ValueError(
                f"threshold='chi2' reads the latent distance from one Gaussian; base_components="
                f"{self.base_components} has a mixture: use base_components=1 or threshold='conformal'"
            )
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        if self.threshold == "chi2" and self.base == "kernel":
            raise ValueError(
                "threshold='chi2' reads the latent distance from one Gaussian; base='kernel' scores with a "
                "kernel density: use base='gaussian' or threshold='conformal'"
            )
        if not (isinstance(self.input_kernel, bool) or self.input_kernel == "auto"):
            raise ValueError(f"input_kernel must be True, False or 'auto', got {self.input_kernel!r}")
        if self.input_kernel is True and not self.uses_kernel():
            raise ValueError(
                f"input_kernel=True averages two kernel densities' NLLs and needs a kernel base; base={self.base!r} "
                f"with threshold={self.threshold!r} scores with a Gaussian: use base='kernel' (or 'auto' without chi2)"
            )
        if self.gaussian_weight not in ("auto", 0) and not self.uses_kernel():
            raise ValueError(
                f"gaussian_weight weighs the trained base against the kernels and needs a kernel base; base="
                f"{self.base!r} with threshold={self.threshold!r} scores with the trained base alone: leave "
                f"gaussian_weight='auto' or use base='kernel'"
            )
        if self.noise != "auto" and not (isinstance(self.noise, int | float) and 0 <= self.noise < math.inf):
            raise ValueError(f"noise must be a number >= 0 or 'auto', got {self.noise!r}")
        if self.mixing not in ("auto", *MIXINGS):
            raise ValueError(f"mixing must be one of {('auto', *MIXINGS)}, got {self.mixing!r}")

    def _extra_state(self) -> dict[str, Any]:
        # a model restored from a file written before mixture bases has one Gaussian
        return {
            "noise_": self.noise_,
            "base_components_": getattr(self, "base_components_", 1),
            "kernel_centres_": getattr(self, "kernel_centres_", 0),
            "input_centres_": getattr(self, "input_centres_", 0),
            "gaussian_weight_": getattr(self, "gaussian_weight_", 0.0),
        }

    #: ``lr`` applies as given up to this many features; see :meth:`_train_config`.
    lr_reference_features: int = 128
    #: ``epochs="auto"`` / ``patience="auto"``: epochs and patience, with floors in steps
    auto_parameters = ("epochs", "patience", "base_components", "max_steps", "gaussian_weight")
    auto_epochs: int = 100
    auto_min_steps: int = 500
    auto_patience: int = 10
    auto_min_patience_steps: int = 50
    #: ... and the step floors apply up to this many features only
    auto_floors_max_features: int = 128

    def _train_config(self) -> TrainConfig:
        # Adam moves every weight by about lr per step, so a conditioner unit with fan-in k
        # sees its pre-activation move by about lr * k: in high dimension (InternetAds,
        # d = 1555) that compounds through the blocks and the loss blows up. Scaling lr by
        # sqrt(reference / d) above the reference keeps low-dimensional data untouched.
        config = super()._train_config()
        scale = min(1.0, math.sqrt(self.lr_reference_features / self.n_features_in_))
        config = dataclasses.replace(config, lr=config.lr * scale)
        # the step floors are for narrow data, where a step is cheap; above
        # auto_floors_max_features a step costs O(d) and the floors changed little (wide_floors.jsonl)
        floors = self.n_features_in_ <= self.auto_floors_max_features
        if self.epochs == "auto":
            config = dataclasses.replace(
                config, epochs=self.auto_epochs, min_steps=self.auto_min_steps if floors else 0
            )
        if self.patience == "auto":
            config = dataclasses.replace(
                config,
                patience=self.auto_patience,
                min_patience_steps=self.auto_min_patience_steps if floors else 0,
            )
        if self.max_steps == "auto":
            steps = self.auto_max_steps_kernel if self.uses_kernel() else self.auto_max_steps
            config = dataclasses.replace(config, max_steps=steps)
        return config

    #: ``max_steps="auto"``: the optimiser-step budget with one Gaussian (or a mixture) as the
    #: scoring base, and the budget when a kernel base scores: a kernel of the training
    #: latents needs a flow that has spread the data, not one trained to the last step
    #: (``benchmarks/results/tabular_kernel/``), and the larger sets spend a third of the time
    auto_max_steps: int = 1500
    auto_max_steps_kernel: int = 500

    def uses_kernel(self) -> bool:
        """Whether ``fit`` scores with a kernel base: ``base="kernel"``, or ``"auto"`` without
        the chi-square threshold (which reads the latent distance from one Gaussian)."""
        return self.base == "kernel" or (self.base == "auto" and self.threshold != "chi2")

    def uses_input_kernel(self) -> bool:
        """Whether ``fit`` adds the identity flow's kernel (``input_kernel``): ``True``, or
        ``"auto"`` (the default) whenever a kernel base scores (:meth:`uses_kernel`)."""
        return self.input_kernel is True or (self.input_kernel == "auto" and self.uses_kernel())

    #: with ``mixing="auto"``, blocks mix by a fixed permutation above this many features
    lu_mixing_max_features: int = 128

    def _mixing(self, n_features: int) -> str:
        if self.mixing != "auto":
            return self.mixing
        return "lu" if n_features <= self.lu_mixing_max_features else "permutation"

    def _build_model(self, n_features: int) -> FlowModel:
        flow = build_flow(
            n_features,
            self.flow_,
            n_blocks=self.n_blocks,
            hidden_features=self.hidden_features,
            clamp=self.clamp,
            mixing=self._mixing(n_features),
        )
        if getattr(self, "kernel_centres_", 0):  # a model file's kernel base (fit replaces it after training)
            inputs, weight = getattr(self, "input_centres_", 0), getattr(self, "gaussian_weight_", 0.0)
            return FlowModel(
                flow,
                KernelBase(n_features, self.kernel_centres_),
                KernelBase(n_features, inputs) if inputs else None,
                self._base(n_features, getattr(self, "base_components_", None)) if weight > 0 else None,
                weight,
            )
        return FlowModel(flow, self._base(n_features, getattr(self, "base_components_", None)))

    @staticmethod
    def _base(n_features: int, components: int | None) -> GaussianBase | GaussianMixtureBase:
        """One Gaussian (``components`` 1, or None: a model file from before mixtures) or a mixture."""
        if components is None or components == 1:
            return GaussianBase(n_features)
        return GaussianMixtureBase(n_features, components)

    #: ``base_components="auto"``: this many components up to :attr:`auto_components_max_features`
    #: features (and at least twice as many training rows), one Gaussian above
    auto_components: int = 8
    auto_components_max_features: int = 128

    def components_for(self, n_rows: int, n_features: int) -> int:
        """The number of base components ``fit`` uses on ``n_rows`` x ``n_features`` training rows."""
        if self.base_components != "auto":
            return int(self.base_components)
        if self.threshold == "chi2" or n_features > self.auto_components_max_features:
            return 1
        return self.auto_components if n_rows >= 2 * self.auto_components else 1

    #: ``base_components > 1``: k-means on at most this many (seeded) training rows sets the
    #: means the mixture base starts from
    kmeans_max_rows: int = 10_000

    def _start_mixture(self, data: Tensor, generator: torch.Generator) -> None:
        """Start a :class:`~usfad.density.GaussianMixtureBase`'s means at k-means centres of
        the (standardised) training rows, mapped through the untrained flow."""
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        k = self.base_components_
        if data.shape[0] < 2 * k:
            raise DataError(f"base_components={k} needs at least {2 * k} training rows, got {data.shape[0]}")
        rows = data
        if data.shape[0] > self.kmeans_max_rows:
            rows = data[torch.randperm(data.shape[0], generator=generator)[: self.kmeans_max_rows]]
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        with torch.no_grad():
            latent = self.model_.flow(rows.to(self.device_))[0].cpu().double().numpy()
        with warnings.catch_warnings():  # fewer distinct rows than k: some centres coincide, and the means still learn
            warnings.simplefilter("ignore", ConvergenceWarning)
            centres = KMeans(k, n_init=4, random_state=seed).fit(latent).cluster_centers_
        with torch.no_grad():
            self.model_.base.means.copy_(torch.as_tensor(centres, dtype=self.model_.base.means.dtype))

    #: ``noise="auto"``: ``noise_at_1000 * (n_rows / 1000) ** -noise_exponent``
    noise_at_1000: float = 0.2
    noise_exponent: float = 0.25

    @classmethod
    def noise_for(cls, n_rows: int) -> float:
        """The training noise ``noise="auto"`` uses for ``n_rows`` training rows.

        Like a kernel density estimate's bandwidth, the smoothing shrinks as the data grow:
        few rows need much of it not to memorise them, many rows can resolve finer detail.
        """
        return cls.noise_at_1000 * (max(int(n_rows), 2) / 1000.0) ** -cls.noise_exponent

    #: the training noise on a column that takes two values is at least this share of the gap
    #: between them (standardised): a dequantisation, so that the flow sees a smooth density, not
    #: two spikes. Off (0): at 0.25 and 0.5 every density ranked 8_celeba worse
    #: (``benchmarks/results/tabular_binary/``); kept for the probe that measured it
    binary_noise: float = 0.0

    def column_noise(self, data: Tensor, noise: float) -> Tensor | None:
        """The training noise's deviation per column of the standardised ``data``: ``noise``,
        and at least :attr:`binary_noise` times the gap on a column that takes two values
        (``None`` where that changes nothing)."""
        if self.binary_noise <= 0:
            return None
        two, gap = self.two_valued(data)
        if not bool(two.any()):
            return None
        gap_noise = self.binary_noise * gap
        return torch.where(two, gap_noise.clamp_min(noise), torch.full_like(gap_noise, noise)).to(self.device_)

    def _fit_model(self, data: Tensor, config: TrainConfig, generator: torch.Generator) -> History:
        self.noise_ = self.noise_for(data.shape[0]) if self.noise == "auto" else float(self.noise)
        self._column_noise = self.column_noise(data, self.noise_)
        self.base_components_ = self.components_for(data.shape[0], data.shape[1])
        self.kernel_centres_ = self.input_centres_ = 0
        self.gaussian_weight_ = 0.0
        self.model_.base = self._base(data.shape[1], self.base_components_).to(self.device_)
        self.model_.input_base = None
        if self.base_components_ > 1:
            self._start_mixture(data, generator)
        history = super()._fit_model(data, config, generator)
        if self.uses_kernel():
            weight = self.binary_share(data) if self.gaussian_weight == "auto" else float(self.gaussian_weight)
            self.gaussian_weight_ = weight
            if weight < 1:  # at 1 the kernels would weigh nothing: the trained base scores alone
                self._set_kernel_base(data, generator, weight)
        return history

    #: ``base="kernel"``: at most this many (seeded) training rows are the kernel's centres, and
    #: on wide rows at most ``kernel_max_values / d`` of them, but no fewer than
    #: ``kernel_min_centres`` (:meth:`kernel_centres_for`): scoring costs ``centres x d`` per row.
    #: More centres make a finer density; the cap bounds the cost on the largest tables
    #: (``benchmarks/results/tabular_centres/``)
    kernel_max_centres: int = 40_000
    kernel_max_values: int = 4_000_000
    kernel_min_centres: int = 2_000

    def kernel_centres_for(self, n_rows: int, n_features: int) -> int:
        """How many of ``n_rows`` training rows of ``n_features`` a kernel base keeps as centres."""
        cap = min(self.kernel_max_centres, max(self.kernel_min_centres, self.kernel_max_values // max(n_features, 1)))
        return min(n_rows, cap)

    #: ... and its bandwidth is the one of these multiples of the median distance from a centre
    #: to its 5th nearest other centre (:meth:`neighbour_radii`) whose leave-one-out
    #: log-likelihood of (at most ``kernel_selection_rows``) centres is highest
    kernel_multiples: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    kernel_selection_rows: int = 2_000

    @staticmethod
    def two_valued(data: Tensor) -> tuple[Tensor, Tensor]:
        """``(two, gap)`` per column of ``data``: whether it takes exactly two values, and its range."""
        low, high = data.amin(dim=0), data.amax(dim=0)
        return ((data == low) | (data == high)).all(dim=0) & (high > low), high - low

    @classmethod
    def binary_share(cls, data: Tensor) -> float:
        """The share of the non-constant columns of ``data`` that take exactly two values (0
        when every column is constant): ``gaussian_weight="auto"``."""
        two, gap = cls.two_valued(data)
        varies = int((gap > 0).sum())
        return float(two.sum()) / varies if varies else 0.0

    def _set_kernel_base(self, data: Tensor, generator: torch.Generator, weight: float = 0.0) -> None:
        """Replace the trained base by a :class:`~usfad.density.KernelBase` on the latents of
        (at most :meth:`kernel_centres_for` of) the rows the flow was fitted on, keeping the
        trained base beside it at ``weight`` if that is above 0."""
        rows = torch.arange(data.shape[0])
        keep = self.kernel_centres_for(data.shape[0], data.shape[1])
        if data.shape[0] > keep:
            rows = torch.randperm(data.shape[0], generator=generator)[:keep].sort().values
        from tqdm.auto import tqdm

        kernels = 2 if self.uses_input_kernel() else 1
        bar = tqdm(total=kernels, desc="kernel densities", disable=not self.verbose, leave=False)
        with bar:
            centres = torch.as_tensor(self._batched(self._latent, data[rows]), dtype=torch.float32)
            trained = self.model_.base
            self.model_.base = self.build_kernel(centres, generator).to(self.device_)
            if weight > 0:
                self.model_.keep_trained_base(trained, weight)
            self.kernel_centres_ = len(rows)
            bar.update()
            if kernels == 2:  # the identity flow's kernel: the same rows, standardised
                self.model_.input_base = self.build_kernel(data[rows].float().cpu(), generator).to(self.device_)
                self.input_centres_ = len(rows)
                bar.update()

    #: ... each centre's kernel as wide as ``(r_i / median r) ** power`` times the bandwidth, ``r_i``
    #: its distance to its 5th nearest other centre (a sample-point kernel density: narrow kernels
    #: where the centres crowd, wide ones where they are sparse), the power one of these (0: one
    #: width for all), picked with the bandwidth by the same leave-one-out likelihood
    kernel_local_powers: tuple[float, ...] = (0.0, 0.5, 1.0)
    #: ... the widths' ratio to the median within ``[1/c, c]``, ``c = min(kernel_local_clip,
    #: exp(kernel_local_nats / d))`` on ``d`` features: the kernels' normalisers ``w^-d`` then
    #: differ by at most ``2 kernel_local_nats`` nats, however wide the rows
    kernel_local_clip: float = 4.0
    kernel_local_nats: float = 32.0

    def build_kernel(self, centres: Tensor, generator: torch.Generator) -> KernelBase:
        """A :class:`~usfad.density.KernelBase` on ``centres``: its bandwidth and each centre's
        width are those of :attr:`kernel_multiples` x :attr:`kernel_local_powers` with the
        highest mean leave-one-out log-likelihood of (at most :attr:`kernel_selection_rows`
        seeded) centres. Reads the training rows only."""
        picked = torch.arange(centres.shape[0])
        if centres.shape[0] > self.kernel_selection_rows:
            picked = torch.randperm(centres.shape[0], generator=generator)[: self.kernel_selection_rows]
        centres = centres.float()  # float32 throughout: the choice needs no more, and it halves the memory traffic
        radii = self.neighbour_radii(centres)
        unit = float(radii[picked].median())
        unit = unit if unit > 0 else 1.0  # all centres at one point: any bandwidth ranks alike
        clip = min(self.kernel_local_clip, math.exp(self.kernel_local_nats / centres.shape[1]))
        base = KernelBase(centres.shape[1], len(centres))
        base.means.copy_(centres)
        settings = []
        for power in self.kernel_local_powers:
            local = (radii.clamp_min(1e-12 * unit) / unit).pow(power).clamp(1 / clip, clip)
            narrowest = float(local.min())
            settings.append((local / narrowest, [multiple * unit * narrowest for multiple in self.kernel_multiples]))
        with torch.no_grad():  # each picked centre without its own kernel
            held_out = base.mean_log_probs(centres[picked], settings, exclude=picked)
        best = int(torch.argmax(held_out.nan_to_num(nan=-math.inf)))  # the first of the best, in settings' order
        widths, bandwidths = settings[best // held_out.shape[1]]
        base.bandwidth.fill_(bandwidths[best % held_out.shape[1]])
        base.widths.copy_(widths)
        return base

    #: the 5th nearest other centre sets a centre's scale (as KNN's default ``k``)
    kernel_neighbours: int = 5

    def neighbour_radii(self, centres: Tensor) -> Tensor:
        """Each centre's distance to its :attr:`kernel_neighbours`-th nearest other centre
        (fewer where there are fewer centres), in blocks of rows.

        The squared distances are ``torch.cdist``'s own sum (``||a||^2 + ||b||^2 - 2 a.b`` by one
        matrix product, the same numbers), written into one buffer that every block reuses, and
        only each row's chosen one takes a square root. A fresh ``cdist`` block of ``2^22``
        distances each time made the allocator map and zero new memory for every block, and in a
        fit that was half of 5_campaign's kernel building (``benchmarks/results/kernel_scoring/``)."""
        k = min(self.kernel_neighbours + 1, centres.shape[0])  # the row itself, then its nearest
        step = max(1, (1 << 22) // centres.shape[0])
        norms = centres.pow(2).sum(1, keepdim=True)
        ones = torch.ones_like(norms)
        left = torch.cat([centres.mul(-2), norms, ones], 1)
        right = torch.cat([centres, ones, norms], 1).T
        buffer = centres.new_empty(min(step, centres.shape[0]), centres.shape[0])
        parts = []
        for i in range(0, centres.shape[0], step):
            block = buffer[: min(step, centres.shape[0] - i)]
            torch.mm(left[i : i + step], right, out=block)
            parts.append(block.clamp_min_(0).topk(k, dim=1, largest=False).values[:, -1].sqrt())
        return torch.cat(parts)

    def _loss(self, batch: Tensor) -> Tensor:
        if self.noise_ > 0 and self.model_.training:
            # Gaussian noise on the (standardised) training batch: smooths the density so
            # that features taking few distinct values cannot produce spikes of likelihood.
            noise = getattr(self, "_column_noise", None)
            batch = batch + (self.noise_ if noise is None else noise) * torch.randn_like(batch)
        return self.model_.nll(batch)

    def _score(self, batch: Tensor) -> Tensor:
        return self.model_.nll(batch)

    def _latent(self, batch: Tensor) -> Tensor:
        return self.model_.flow(batch)[0]

    @property
    def kappa_(self) -> float:
        """The USF's constant ``log|det J_f|`` (in standardised coordinates)."""
        self._check_fitted()
        if not self.model_.flow.constant_logdet:
            raise AttributeError("kappa_ exists only for a USF (flow='usf' or 'usf-gin')")
        probe = torch.zeros(1, self.n_features_in_, device=self.device_)
        with torch.no_grad():
            return float(self.model_.flow(probe)[1][0])

    def _chi2_threshold(self) -> float:
        if not is_usf(self.flow_):
            super()._chi2_threshold()
        return chi2_nll_threshold(self.n_features_in_, self.alpha, self.kappa_, float(self.model_.base.scale))


class USFlow(FlowDetector):
    """Uniformly scaling flow detector: :class:`FlowDetector` with ``flow="usf"``."""

    default_flow = "usf"


class NonUSFlow(FlowDetector):
    """The non-USF control: :class:`FlowDetector` with ``flow="affine"``."""

    default_flow = "affine"
