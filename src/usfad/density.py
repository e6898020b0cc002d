"""Base density, negative log-likelihood, latent distance and chi-square calibration.

With base ``N(c, s^2 I)`` on ``R^d`` a flow ``f`` gives

    log p(x) = -||f(x) - c||^2 / (2 s^2) - (d/2) log(2 pi s^2) + log|det J_f(x)|.

For a uniformly scaling flow ``log|det J_f(x)| = kappa`` for every ``x``, hence

    NLL(x) = ||f(x) - c||^2 / (2 s^2) + (d/2) log(2 pi s^2) - kappa,

i.e. the Deep SVDD term on the network ``f`` with centre ``c`` plus the regulariser
``-kappa`` (:func:`usf_nll_terms`), and ``NLL`` is a strictly increasing function of the
latent distance ``||f(x) - c||``. If the USF fits the data, ``||f(x) - c||^2 / s^2`` of
normal samples follows ``chi2(d)``: :func:`chi2_nll_threshold` turns a false-alarm rate
into an NLL threshold without any anomaly examples. That holds only as far as the fitted
flow is the data's density, so the chi-square threshold is approximate.

The distribution-free alternative is split-conformal calibration (any score, any model):
hold out :func:`calibration_size` normal rows (:func:`calibration_split`), fit on the rest,
and threshold at :func:`conformal_threshold` of the held-out scores; :func:`conformal_p_values`
gives each row's p-value against them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from .errors import DataError
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


class GaussianMixtureBase(nn.Module):
    """``sum_k w_k N(m_k, I)``: ``components`` unit Gaussians with learned means and weights.

    A flow with this base is still a USF when its layers are (the base does not enter the
    Jacobian), so its NLL is still a likelihood, but it ranks rows by their latent distance
    to the nearest means (a soft minimum), not to one centre: a multi-centre Deep SVDD with
    the flow's regulariser. Data made of separate groups need not be pulled into one blob,
    which puts density between the groups. ``means`` start at zero; the detector sets them
    (k-means of the training rows) before training.
    """

    def __init__(self, features: int, components: int):
        super().__init__()
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        self.features = features
        self.means = nn.Parameter(torch.zeros(components, features))
        self.logits = nn.Parameter(torch.zeros(components))

    def sq_distance(self, z: Tensor) -> Tensor:
        """``-2 log sum_k w_k exp(-||z - m_k||^2 / 2)`` per sample, ``>= 0``: the squared radius
        at which one standard Gaussian has this mixture's density at ``z`` (``||z - m||^2``
        for one component), so the NLL is ``sq_distance / 2 + (d/2) log(2 pi)`` as for
        :class:`GaussianBase`, and a USF's NLL increases with it."""
        return -2 * torch.logsumexp(self.log_terms(z), dim=1)

    def log_terms(self, z: Tensor) -> Tensor:
        """``log w_k - ||z - m_k||^2 / 2`` per sample and component, ``(batch, k)``: the
        components' shares of the density at ``z`` up to one constant (largest = most responsible)."""
        # ||z - m_k||^2 by broadcasting: exact (no cancellation), batch x k x d memory
        sq = (z.flatten(1)[:, None, :] - self.means[None]).pow(2).sum(-1)
        return torch.log_softmax(self.logits, 0) - 0.5 * sq

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * self.sq_distance(z) - 0.5 * self.features * math.log(2 * math.pi)

    @property
    def scale(self) -> Tensor:
        """The components' standard deviation (1): ``NLL = sq_distance / (2 scale^2) + ...``."""
        return torch.ones((), dtype=self.means.dtype, device=self.means.device)


#: terms this far below a row's largest add less than ``M e^-80`` of it to the sum: nothing in
#: float32 or float64 for any number of centres ``M`` a kernel base can hold
NEGLIGIBLE_LOG_TERM: float = 80.0


def log_sum_exp(terms: Tensor, overwrite: bool = False) -> Tensor:
    """``log sum_i exp(terms[:, i])`` per row, as ``torch.logsumexp``, with every term raised to
    at least :data:`NEGLIGIBLE_LOG_TERM` below the row's largest first.

    A kernel base's terms are mostly far below the largest, and ``exp`` of those lands in
    float32's subnormal range (or passes through it to 0), which the CPU computes dozens of
    times slower than normal numbers: 78 % of a kernel density's time went there. ``e^-80`` is a
    normal number in both dtypes, and ``M`` of them add less than the rounding to the sum,
    whose largest term is 1; a left-out centre's ``-inf`` becomes one of them. Their gradient
    is 0 (it was below ``e^-80``). ``overwrite``: ``terms`` may be used as the scratch space
    (one pass less over it), unless it needs a gradient."""
    top = terms.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shifted = terms.sub_(top) if overwrite and not terms.requires_grad else terms - top
    return shifted.clamp_min_(-NEGLIGIBLE_LOG_TERM).exp_().sum(1).log_() + top[:, 0]


def _argmax_rows(terms: Tensor) -> Tensor:
    """The index of each row's largest entry (the first of equals), as ``terms.argmax(1)``.

    On the CPU through NumPy, which takes a fifteenth of torch's time for it on blocks of
    20,000 columns (``benchmarks/results/block_ops.md``)."""
    if terms.device.type != "cpu" or terms.dtype not in (torch.float32, torch.float64):
        return terms.argmax(1)
    return torch.from_numpy(terms.detach().numpy().argmax(1))


class KernelBase(nn.Module):
    """A kernel density estimate ``(1/M) sum_i N(c_i, h^2 I)`` over ``M`` fixed centres.

    With the training rows' latents as the centres, a USF with this base ranks a row by the
    (soft) distance of its latent to the nearest training latents: nearest-neighbour
    detection in the flow's Gaussianised coordinates, with a normalised likelihood as the
    score. Nothing here trains; :meth:`usfad.detectors.flow.FlowDetector.fit` sets the
    centres (``means``) and the bandwidth ``h`` (``scale``) after the flow has trained.

    ``sq_distance(z) = -2 h^2 log((1/M) sum_i exp(-||z - c_i||^2 / (2 h^2)))``, ``>= 0``: a
    soft minimum of the squared distances to the centres (the squared distance to the
    nearest plus at most ``2 h^2 log M``); ``NLL = sq_distance / (2 h^2) + (d/2) log(2 pi
    h^2) - kappa`` for a USF, as with :class:`GaussianBase` of scale ``h``.

    **A point never counts its own kernel**: where ``z`` coincides with a centre (to within
    :attr:`coincide_share` of their norms, :meth:`log_terms`), that centre is left out and the sum runs
    over the other ``M - 1``. So a training row scores the same whenever it is scored, at
    ``fit`` (``decision_scores_``, which the contamination threshold is a quantile of) or
    later from a file, as if it were fresh: with its own kernel in, every training row, the
    anomalies among them too, would look typical. The density changes only on the ``M``
    centres, a set of measure zero, so it is still the same density.

    **Each centre may have its own width** (a sample-point kernel density): ``widths`` ``w_i >=
    1``, centre ``i``'s kernel ``N(c_i, (h w_i)^2 I)``, so ``h`` is the narrowest kernel's
    bandwidth. Then ``sq_distance(z) = -2 h^2 log((1/M) sum_i w_i^-d exp(-||z - c_i||^2 / (2 h^2
    w_i^2)))``, still ``>= 0`` (every term is at most 1), and the NLL keeps the formula above.
    All widths 1 (the default, and every model file from before widths) is the plain kernel
    density. :meth:`usfad.detectors.flow.FlowDetector.build_kernel` sets them from the centres
    alone: wide kernels where the centres are sparse, narrow ones where they crowd.
    """

    def __init__(self, features: int, centres: int):
        super().__init__()
        if centres < 2:
            raise ValueError(f"a kernel base needs at least 2 centres, got {centres}")
        self.features = features
        self.register_buffer("means", torch.zeros(centres, features))
        self.register_buffer("bandwidth", torch.tensor(1.0))
        self.register_buffer("widths", torch.ones(centres))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        """A file from before per-centre widths has none: its kernels all have width 1."""
        key = prefix + "widths"
        if key not in state_dict and prefix + "means" in state_dict:
            state_dict[key] = torch.ones(state_dict[prefix + "means"].shape[0])
        elif key in state_dict and not bool((state_dict[key] >= 1).all()):
            raise ValueError(f"{key} holds widths below 1 (each is a multiple of the narrowest kernel's bandwidth)")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def scale(self) -> Tensor:
        """The bandwidth ``h``."""
        return self.bandwidth

    #: a point is on a centre when their distance, ``z - c`` subtracted directly, is at most this
    #: share of ``sqrt(1 + ||z||^2 + ||c||^2)``: an order of magnitude above what a training row's
    #: latent moves when the float32 network computes it in another batch (``latent_shift_alone`` in
    #: ``benchmarks/results/alignment_on_centre.jsonl``). The rule reads no dtype, so a float64 copy
    #: of the kernel (:func:`usfad.metrics.latent_distance`) leaves out the same centres
    coincide_share: float = 2.0**-14
    #: ... checked only for rows whose block term (``||z||^2 + ||c||^2 - 2 z.c``, about the
    #: centres' mean) comes that near, up to its rounding: this many machine epsilons times
    #: those squared norms
    coincide_eps: float = 64.0

    def _centre_side(self) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """What :meth:`_log_kernels` needs of the centres alone: ``(origin, the (d + 2, M)
        matrix that turns [z - origin, ||z - origin||^2, 1] into -||z - c_i||^2 / (2 h^2), the
        centres' squared norms about the origin, (w^-2, d log w) or None for all widths 1)``. Computed once per
        call of :meth:`sq_distance`, not once per block of rows (it touches all ``M x d``
        means: twice the time of the block's terms when it was)."""
        origin = self.means.mean(0)  # ||a||^2 + ||b||^2 - 2 a.b about the centres' mean: less cancellation
        cc = self.means - origin
        c_norms = cc.pow(2).sum(1)
        s = 0.5 / self.bandwidth**2
        # [z - origin, ||z - origin||^2, 1] @ this = 2s z.c - s ||z||^2 - s ||c||^2 = -s ||z - c||^2
        product = torch.cat([(2 * s) * cc, (-s).expand(len(cc), 1), (-s) * c_norms[:, None]], 1).T.contiguous()
        widths = None
        if self.adaptive:
            w = self.widths.to(cc.dtype)
            widths = (w.pow(-2), self.features * w.log())
        return origin, product, c_norms, widths

    def _log_kernels(
        self,
        z: Tensor,
        exclude: Tensor | None = None,
        centres: tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor] | None] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(terms, count, on_centre)``: ``terms[b, i] = -||z_b - c_i||^2 / (2 h^2)`` ``(batch, M)``
        with ``-inf`` at the centre row ``b`` leaves out, ``count`` the ``M'`` centres each row
        keeps, ``on_centre`` the index of the centre each row lies on (``-1``: none; ``exclude``
        itself where given).

        The ``(batch, M)`` block is what the time goes to, and it is memory-bound: one fused
        product writes it already scaled, it is then touched in place, and the left-out centre
        is set by index (one entry per row), not by a mask over the block. ``centres``: what
        :meth:`_centre_side` gives (computed here when ``None``)."""
        z = z.flatten(1)
        origin, product, c_norms, widths = centres if centres is not None else self._centre_side()
        terms, z_norms = self._block_terms(z, origin, product)
        s = 0.5 / self.bandwidth**2
        if exclude is None:  # the caller names no centre to leave out: the one each row lies on
            exclude = self._on_centre(terms, z, s, z_norms, c_norms, origin)
        if widths is not None:  # -||z - c_i||^2 / (2 h^2 w_i^2) - d log w_i
            inverse_squares, log_normalisers = widths
            scaled = terms.mul(inverse_squares[None]) if terms.requires_grad else terms.mul_(inverse_squares[None])
            terms = scaled.sub_(log_normalisers[None])
        column = exclude.clamp_min(0)[:, None]
        minus_inf = torch.full_like(z_norms[:, None], -math.inf)
        left_out = torch.where(exclude[:, None] >= 0, minus_inf, terms.gather(1, column))
        terms = terms.scatter(1, column, left_out) if terms.requires_grad else terms.scatter_(1, column, left_out)
        count = self.means.shape[0] - (exclude >= 0).to(terms.dtype)
        return terms, count, exclude

    @staticmethod
    def _block_terms(z: Tensor, origin: Tensor, product: Tensor) -> tuple[Tensor, Tensor]:
        """``(terms, z_norms)``: ``terms[b, i] = -||z_b - c_i||^2 / (2 h^2)``, at most 0, and the
        rows' squared norms about ``origin``, from :meth:`_centre_side`'s ``origin`` and ``product``."""
        zc = z - origin
        z_norms = zc.pow(2).sum(1)
        # -s ||z - c||^2 = 2s z.c - s ||z||^2 - s ||c||^2, at most 0: one product writes the block
        terms = torch.cat([zc, z_norms[:, None], torch.ones_like(z_norms)[:, None]], 1).mm(product).clamp_max_(0)
        return terms, z_norms

    def _on_centre(
        self, terms: Tensor, z: Tensor, s: Tensor, z_norms: Tensor, c_norms: Tensor, origin: Tensor
    ) -> Tensor:
        """The centre each row ``z`` of ``terms`` (``-s ||z - c_i||^2``) lies on, ``-1`` for none:
        one whose distance ``||z - c||``, subtracted directly, is at most :attr:`coincide_share`
        of ``sqrt(1 + ||z||^2 + ||c||^2)`` (the nearest by the block's terms where it is one,
        else the lowest-numbered; centres that close are one point to the density).

        The block's terms are rounded by about ``s eps (||z||^2 + ||c||^2)`` (``s = 1 / (2 h^2)``,
        the squared norms about the centres' mean ``origin``: ``z_norms``, ``c_norms``): on wide
        latents too coarse to tell a row from a near neighbour well inside the bandwidth
        (``benchmarks/results/tabular_on_centre/``). They only pick the rows that may lie on a centre
        (:meth:`_reach`), and only those search for the nearest (a maximum with its index costs 15
        times one without) and measure the distance to it directly; the rest of the block is read
        once. A traced graph measures every row's 8 nearest (its shapes cannot depend on data)."""
        share = self.coincide_share**2

        def lies_on(rows: Tensor, nearest: Tensor) -> Tensor:
            centre = self.means[nearest].to(z.dtype)
            direct = (z[rows] - centre).pow(2).sum(1)
            return direct <= share * (1 + z[rows].pow(2).sum(1) + centre.pow(2).sum(1))

        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # the 8 nearest by the block's terms
            top = terms.topk(min(8, terms.shape[1]), dim=1).indices
            every = torch.arange(z.shape[0], device=z.device)[:, None].expand_as(top)
            on = lies_on(every.reshape(-1), top.reshape(-1)).reshape(top.shape)
            first = torch.where(on, top, torch.full_like(top, terms.shape[1])).amin(1)
            return torch.where(first < terms.shape[1], first, torch.full_like(first, -1))
        with torch.no_grad():
            best = terms.amax(1)
            reach = self._reach(z, s, z_norms, c_norms, origin)
            rows = (-best <= reach).nonzero()[:, 0]
            on_centre = torch.full(best.shape, -1, dtype=torch.long, device=terms.device)
            if len(rows):
                candidates = terms.index_select(0, rows)  # under a fifth of indexing's time (block_ops.md)
                nearest = _argmax_rows(candidates)
                on = lies_on(rows, nearest)
                on_centre[rows[on]] = nearest[on]
                # a row on a centre whose rounded term lost to a near neighbour's: measure every
                # centre within the reach of its best term, and take the lowest-numbered it lies on
                missed = (~on).nonzero()[:, 0]
                if len(missed):
                    near = candidates.index_select(0, missed) >= (best - reach)[rows[missed], None]
                    pair_rows, pair_centres = near.nonzero(as_tuple=True)
                    missed = rows[missed]
                    on = lies_on(missed[pair_rows], pair_centres)
                    pair_rows, pair_centres = pair_rows[on], pair_centres[on]
                    first = torch.full_like(missed, terms.shape[1])  # the lowest-numbered such centre
                    first.scatter_reduce_(0, pair_rows, pair_centres, "amin")
                    found = first < terms.shape[1]
                    on_centre[missed[found]] = first[found]
        return on_centre

    def _reach(self, z: Tensor, s: Tensor, z_norms: Tensor, c_norms: Tensor, origin: Tensor) -> Tensor:
        """How far below 0 the block's term ``-s ||z - c||^2`` of a centre ``c`` that row ``z`` lies
        on can be: ``s`` times the squared distance the coincide share allows plus the term's rounding.

        Both grow with ``||c||``, which is read as the smaller of two bounds: the largest centre's
        (``c_norms`` holds the squared norms about ``origin``), and, since ``c`` is within ``delta``
        of ``z`` (``delta^2 <= share (1 + ||z||^2 + ||c||^2)``, so ``delta^2 <= 2 share (1 + 3
        ||z||^2)``), ``||c||^2 <= 2 ||z||^2 + 2 delta^2``. The rounding: the rule before the second
        bound took :attr:`coincide_eps` machine epsilons times ``||z||^2`` plus the largest centre's
        squared norm (about the origin). A dot product of ``d + 2`` terms is off by at most ``d + 2``
        epsilons times the sum of their sizes, here ``2 s (||z||^2 + ||c||^2)`` at most, and the
        rounding of its inputs adds ``d / 2 + 2`` more: ``2 (d + 5)`` epsilons (or
        :attr:`coincide_eps`, if more) times ``||z||^2 + ||c||^2`` bound it. The smaller of the two
        roundings is taken: where it is the second, it is a bound; where the first, the rule is as
        before. The second matters where a few centres lie far out, as on 16_http, where the first
        alone had nearly every row searched (``benchmarks/results/kernel_scoring/``)."""
        share = self.coincide_share**2
        eps = torch.finfo(z.dtype).eps
        zz = z.pow(2).sum(1)
        delta_sq = 2 * share * (1 + 3 * zz)
        largest = c_norms.max()
        near = 2 * z_norms + 2 * delta_sq  # ||c - origin||^2, c within delta of z
        rounding = torch.minimum(
            self.coincide_eps * eps * (z_norms + largest),
            max(self.coincide_eps, 2 * (z.shape[1] + 5)) * eps * (z_norms + torch.minimum(near, largest)),
        )
        c_squared = torch.minimum(2 * (largest + origin.pow(2).sum()), 2 * zz + 2 * delta_sq)  # ||c||^2
        return s * (rounding + 2 * share * (1 + zz + c_squared))

    @property
    def adaptive(self) -> bool:
        """Whether the centres' widths differ (always ``True`` while tracing for export, where
        the test would freeze into the graph)."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return True
        return bool((self.widths != 1).any())

    def own_centres(self, z: Tensor) -> Tensor:
        """The index of the centre each sample lies on (to the rounding of the distance), ``-1``
        where it lies on none: the centre that :meth:`log_terms` leaves out."""
        return self._log_kernels(z)[2]

    def log_terms(self, z: Tensor, exclude: Tensor | None = None) -> Tensor:
        """``-log M' - ||z - c_i||^2 / (2 h^2)`` per sample and centre, ``(batch, M)``: ``-inf``
        and ``M' = M - 1`` for the centre a sample lies on (:meth:`own_centres`), else ``M' = M``.

        ``exclude``: ``(batch,)`` indices of the centre to leave out of each sample's sum
        (``-1``: none) instead of the one it lies on; a training row's explanation leaves its own
        centre out all along its path, not only at the row (:mod:`usfad.explain`)."""
        terms, count, _ = self._log_kernels(z, exclude)
        return terms - count.log()[:, None]

    #: queries per block in :meth:`sq_distance`; ``None``: as many as keep a block of
    #: ``rows x M`` terms near :attr:`block_terms` (small enough to stay in the cache)
    block_rows: int | None = None
    block_terms: int = 1 << 20

    def sq_distance(self, z: Tensor, exclude: Tensor | None = None) -> Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # one block: the batch size stays dynamic
            return -2 * self.bandwidth**2 * log_sum_exp(self.log_terms(z, exclude))
        rows = self.block_rows or max(1, self.block_terms // self.means.shape[0])
        centres = self._centre_side()
        parts = []
        for start in range(0, z.shape[0], rows):
            block = slice(start, start + rows)
            terms, count, _ = self._log_kernels(z[block], None if exclude is None else exclude[block], centres)
            parts.append(-2 * self.bandwidth**2 * (log_sum_exp(terms, overwrite=True) - count.log()))
        return torch.cat(parts) if parts else z.new_zeros(0)

    def mean_log_probs(
        self, z: Tensor, settings: list[tuple[Tensor, list[float]]], exclude: Tensor | None = None
    ) -> Tensor:
        """The mean :meth:`log_prob` of ``z`` under each of several widths and bandwidths over
        these centres: ``settings`` holds ``(widths, bandwidths)`` pairs, the result is
        ``(len(settings), len(bandwidths))`` (float64; ``bandwidths`` as long in every pair).

        What choosing them by likelihood needs: each block's squared distances are computed
        once for every setting, not once per setting. The base's own widths and bandwidth are
        neither read nor changed."""
        unit = KernelBase(self.features, self.means.shape[0])  # bandwidth 1, widths 1: terms -||z - c||^2 / 2
        unit.means = self.means
        centres = unit._centre_side()
        totals = torch.zeros(len(settings), len(settings[0][1]), dtype=torch.float64, device=z.device)
        # each setting's w^-2 (None: all widths 1) and d log w, once, not per block
        per_width = []
        for widths, _ in settings:
            widths = widths.to(device=z.device, dtype=self.means.dtype)
            per_width.append(
                (None if bool((widths == 1).all()) else widths.pow(-2)[None], self.features * widths.log())
            )
        rows = self.block_rows or max(1, self.block_terms // self.means.shape[0])
        for start in range(0, z.shape[0], rows):
            block = slice(start, start + rows)
            half_sq, kept, _ = unit._log_kernels(z[block], None if exclude is None else exclude[block], centres)
            for j, ((inverse_squares, normalisers), (_, bandwidths)) in enumerate(zip(per_width, settings)):
                scaled = half_sq if inverse_squares is None else half_sq * inverse_squares
                for k, h in enumerate(bandwidths):
                    log_k = log_sum_exp(scaled.div(h * h).sub_(normalisers[None]), overwrite=True) - kept.log()
                    totals[j, k] += log_k.double().sum() - len(log_k) * 0.5 * self.features * math.log(
                        2 * math.pi * h * h
                    )
        return totals / max(z.shape[0], 1)

    def log_normalizer(self, z: Tensor) -> Tensor:
        """``(d/2) log(2 pi h^2)``."""
        return 0.5 * self.features * torch.log(2 * math.pi * self.bandwidth**2)

    def log_prob(self, z: Tensor, exclude: Tensor | None = None) -> Tensor:
        return -self.sq_distance(z, exclude) / (2 * self.bandwidth**2) - self.log_normalizer(z)


#: the bases with several components (:func:`usfad.explain.shrink_to_level` moves toward one)
MixtureBase = GaussianMixtureBase | KernelBase


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

    Approximate: the law holds only if the fitted flow *is* the data's density. It is not:
    the flow is fitted on training rows plus Gaussian noise (``noise_``), which widens the
    fitted density, so clean rows land closer to ``c`` than ``chi2(dim)`` says and fewer
    than ``alpha`` are flagged; a finite network misfits multimodal or bounded data
    (flagged share above or below ``alpha``). The measured false-alarm rates (Gaussian,
    mixture and uniform data, ADBench sets) are in ``benchmarks/results/false_alarms.md``;
    for a rate with a guarantee, use the split-conformal threshold (:func:`conformal_threshold`).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    q = float(stats.chi2.ppf(1 - alpha, dim))
    return q / 2 + 0.5 * dim * math.log(2 * math.pi * scale**2) - kappa


# --- split-conformal calibration ------------------------------------------------------

#: :func:`calibration_size`: a fifth of the rows, ...
CALIBRATION_FRACTION = 0.2
#: ... at least this many when that leaves half of the rows to fit on (100 rows give a
#: finite threshold down to ``alpha = 1/101``) ...
CALIBRATION_FLOOR = 100
#: ... and at most this many. The false-alarm rate one fit delivers varies with the
#: calibration draw by about ``sqrt(alpha / n_cal)``: with 5,000 rows that is a seventh of
#: ``alpha = 0.01``, more than the binomial spread of a test on 60,000 fresh rows, so a large
#: set's rate looked off by more than chance allows; 100,000 rows bring it to a 30th. A
#: large set loses nothing by it: the step budget, not the rows, limits what the model sees.
CALIBRATION_CAP = 100_000
#: fewer calibration rows than this are refused (``alpha`` would have to be above 1/21).
CALIBRATION_MIN = 20
#: when ``alpha`` needs more calibration rows than the share above, at most this share of
#: the rows is held out (the rest, at least a quarter, is fitted; ``fit`` warns above half).
CALIBRATION_MAX_SHARE = 0.75

#: The threshold when no calibration score may be exceeded (``alpha < 1/(n_cal + 1)``):
#: the largest float64 below the score of a row beyond float range, so only such rows
#: (scored +inf, reported as the largest float64) are flagged.
NO_ALARM = float(np.nextafter(np.finfo(np.float64).max, 0.0))


def calibration_size(n_rows: int, alpha: float | None = None) -> int:
    """How many of ``n_rows`` normal training rows are held out for calibration.

    ``n_rows // 5`` (:data:`CALIBRATION_FRACTION`), raised to ``min(n_rows // 2, 100)``
    (:data:`CALIBRATION_FLOOR`) and capped at 100,000 (:data:`CALIBRATION_CAP`): 100 rows for
    200 to 500 rows, half below, a fifth from 500 to 500,000 rows, 100,000 above.

    Given the false-alarm rate ``alpha`` the count is fitted to it, so that the rate the
    threshold delivers, ``floor((n_cal + 1) alpha) / (n_cal + 1)``, is as close to ``alpha``
    as the rows allow:

    - too few rows to flag anything (``(n_cal + 1) alpha < 1``): raised to the
      ``ceil(1/alpha) - 1`` rows that can, up to three quarters of ``n_rows``
      (:data:`CALIBRATION_MAX_SHARE`);
    - otherwise moved to the nearest count whose ``(n_cal + 1) alpha`` is whole: down to the
      fewest rows that allow as many calibration scores above the threshold
      (``ceil(l / alpha) - 1`` for ``l`` of them; the rows saved go back to the fit), or up
      to those that allow one more (at most half of the rows, unless the share above took
      more). 196 rows at ``alpha = 0.01`` deliver ``1/197``, half of ``alpha``; 199 rows
      deliver ``2/200`` exactly.

    It reads ``n_rows`` and ``alpha`` only, so the split never depends on the data's values.
    """
    n_rows = int(n_rows)
    floor = min(n_rows // 2, CALIBRATION_FLOOR)
    n_cal = min(max(int(n_rows * CALIBRATION_FRACTION), floor), CALIBRATION_CAP)
    if alpha is None:
        return n_cal
    allowed = exceedances_allowed(n_cal, alpha)
    if allowed < 1:
        needed = _fewest_for(1, alpha)
        return needed if needed <= n_rows * CALIBRATION_MAX_SHARE else n_cal
    down, up = _fewest_for(allowed, alpha), _fewest_for(allowed + 1, alpha)
    if up - n_cal < n_cal - down and up <= max(n_rows // 2, n_cal):
        return up
    return down


def _fewest_for(allowed: int, alpha: float) -> int:
    """The fewest calibration rows ``n`` with ``floor((n + 1) alpha) >= allowed``."""
    return max(math.ceil(round(allowed / float(alpha), 9)) - 1, 0)


def rows_for_calibration(n_cal: int, alpha: float | None = None) -> int | None:
    """The fewest rows whose :func:`calibration_size` (at ``alpha``) is at least ``n_cal`` (None: no number of rows)."""
    if n_cal > CALIBRATION_CAP:
        return None
    if alpha is None and n_cal <= CALIBRATION_FLOOR:
        return 2 * max(int(n_cal), 0)
    if alpha is None:
        return math.ceil(n_cal / CALIBRATION_FRACTION)
    low, high = 1, math.ceil(CALIBRATION_CAP / CALIBRATION_FRACTION) + 1  # calibration_size grows with the rows
    if calibration_size(high, alpha) < n_cal:
        return None
    while low < high:
        middle = (low + high) // 2
        if calibration_size(middle, alpha) >= n_cal:
            high = middle
        else:
            low = middle + 1
    return low


def calibration_split(n_rows: int, seed: int, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_rows, calibration_rows)``: sorted row indices, a random split seeded by ``seed``.

    ``calibration_rows`` has :func:`calibration_size` ``(n_rows, alpha)`` entries. Rows whose
    share (before it is fitted to ``alpha``) is under :data:`CALIBRATION_MIN` are a
    :class:`~usfad.errors.DataError`, more than half of the rows
    (``alpha`` needs them) a ``UserWarning``.
    """
    if calibration_size(n_rows) < CALIBRATION_MIN:  # the share alone, before it is fitted to alpha
        raise DataError(
            f"threshold='conformal' holds out calibration rows and needs at least "
            f"{rows_for_calibration(CALIBRATION_MIN)} training rows ({CALIBRATION_MIN} calibration rows); "
            f"got {n_rows}. Use threshold='contamination' or more rows"
        )
    n_cal = calibration_size(n_rows, alpha)
    if 2 * n_cal > n_rows:
        warnings.warn(
            f"threshold='conformal' at alpha={alpha} needs {n_cal} calibration rows to flag anything: "
            f"the model is fitted on the other {n_rows - n_cal} of {n_rows} rows only. A larger alpha "
            f"(at least {1 / (calibration_size(n_rows) + 1):.3g}) or more rows keeps more of them for the model",
            UserWarning,
            stacklevel=3,
        )
    order = np.random.default_rng(int(seed)).permutation(int(n_rows))
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def exceedances_allowed(n_cal: int, alpha: float) -> int:
    """``floor((n_cal + 1) alpha)``: how many calibration scores may lie above the threshold.

    (Rounded to 9 decimals first, so that ``100 * 0.01`` is 1 whatever its float error.)
    """
    return math.floor(round((int(n_cal) + 1) * float(alpha), 9))


def conformal_threshold(calibration_scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold at false-alarm rate ``alpha``.

    With ``n`` calibration scores and ``l = floor((n + 1) alpha)``, the
    ``ceil((n + 1)(1 - alpha)) = (n + 1 - l)``-th smallest score. A fresh score exchangeable
    with the calibration scores exceeds it with probability ``l / (n + 1)`` (ties only
    lower it): at most ``alpha`` and more than ``alpha - 1/(n + 1)``. With ``l = 0``
    (``alpha < 1/(n + 1)``) no calibration score may be exceeded: :data:`NO_ALARM`.
    """
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    allowed = exceedances_allowed(scores.size, alpha)
    if allowed < 1:
        return NO_ALARM
    return float(scores[scores.size - allowed])


def conformal_p_values(calibration_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(1 + #{calibration scores >= s}) / (n + 1)`` for each score ``s``: in ``[1/(n + 1), 1]``.

    Under exchangeability ``P(p <= a) <= a`` for every ``a``; a score above the threshold of
    :func:`conformal_threshold` at ``alpha`` is exactly one whose p-value is at most ``alpha``.
    """
    reference = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    scores = np.asarray(scores, dtype=np.float64)
    at_least = reference.size - np.searchsorted(reference, scores, side="left")
    return (1.0 + at_least) / (reference.size + 1.0)
