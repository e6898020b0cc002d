"""Attributions: how much each feature adds to a row's anomaly score, summing to it.

Path-integrated gradients (Aumann-Shapley; Sundararajan et al., ICML 2017). For a
differentiable score ``s`` and a path ``gamma`` from a baseline ``b = gamma(0)`` to the row
``x = gamma(1)``, feature ``i`` gets

    a_i = int_0^1  d s / d x_i (gamma(t)) * gamma_i'(t) dt,      sum_i a_i = s(x) - s(b)

(completeness: the fundamental theorem of calculus along the path). Attributions are in the
units of the score; a feature the path does not move gets 0. Standardising the features
does not change them (a per-feature affine map scales the gradient and the displacement
inversely), so they are computed on the standardised rows.

Two paths:

- **Latent path** (flows, :func:`latent_path_attributions`): straight in the flow's latent
  space, ``z(t) = z_b + t (z - z_b)``, mapped back by the inverse, ``gamma(t) =
  f^{-1}(z(t))``. For a uniformly scaling flow ``s(x) = ||f(x) - c||^2 / (2 s^2) + const``,
  so ``grad s = J^T w`` with ``w = (z(t) - c) / s^2`` and ``gamma'(t) = J^{-1} (z - z_b)``:
  the integrand summed over features is ``w . (z - z_b)``, linear in ``t``, and *any*
  Gauss-Legendre rule, even the one-point midpoint rule, gives the sum exactly. The number of
  points only refines how the sum is shared between features. For a flow whose log-det
  depends on the input the log-det's gradient adds a term that the rule integrates only
  approximately; so does a mixture or kernel base (``base_components > 1``,
  ``base="kernel"``), whose score is not quadratic along the path: both take
  :data:`DEFAULT_POINTS` points.
- **Straight path** (every other detector, :func:`straight_path_attributions`): ``gamma(t) =
  b + t (x - b)``, the usual integrated gradients. With LeakyReLU networks the integrand
  jumps wherever a unit changes sign, so a quadrature rule's error falls only like
  ``1 / n_points``.

Whatever the rule leaves out of the sum (the *residual*, ``s(x) - s(b) - sum_i a_i``) is
spread over the features in proportion to ``|a_i|`` (:func:`spread_residual`), so that every
row's attributions add up to ``s(x) - s(b)`` to rounding; :class:`Explanation` keeps the
residual before that step. For a USF it is rounding (see the last paragraph); for the others
it is the quadrature error (measured: ``benchmarks/results/explanations/``).

Baselines (:data:`BASELINES`, or an array of raw rows):

- ``"mean"``: the scaler's mean, i.e. the training mean (the origin of the standardised
  features; with ``standardize=False`` the raw origin). The same for every row.
- ``"typical"`` (uniformly scaling flows only): each row's own point of typical score,
  ``f^{-1}(c + r (z - c) / ||z - c||)``, the latent shrunk along its ray to the radius ``r``
  at which a USF scores the median training score. Rows already inside that radius are
  their own baseline (attributions 0: nothing to explain). Every explained row then sums to
  ``s(x) - median training score``: how far above a typical training row it scores. On a
  mixture or kernel base the ray runs to the mean (centre) of the component most
  responsible for ``z``, and the point of typical score on it is found by bisection
  (:func:`shrink_to_level`); where even that mean scores above the median, the mean is the
  baseline.
- ``"neighbours"`` (any detector; needs reference rows, normally the normal training rows):
  each row's baseline is the mean of its ``n_neighbours`` nearest reference rows (10 by
  default), nearest in the detector's standardised features ``(x - mean) / scale``
  (:func:`neighbour_baselines`). Made for *dependency* anomalies: a row whose features are
  each normal but whose combination is not (some of its values taken from another row).
  Its nearest normal rows agree with it on the features that were not changed and differ
  on the ones that were, so the path moves mostly the changed features and they take most
  of the score; from the training mean every feature moves and every one takes a share.
  A row's features outside the reference's central 98 % (per feature) are left out of its
  distances, so a value shifted far out (a *marginal* anomaly) does not draw the neighbours
  towards the reference's tail: they match the row on its other features, and the shifted
  feature moves the whole way from their ordinary value.
  Ten neighbours by default rather than one or five: a mean of ten depends less on which
  single reference rows happen to be nearest, and it named features shifted far out
  (*marginal* anomalies) more often than five did. It costs a nearest-neighbour search,
  ``n_rows x n_reference x d`` multiply-adds (in batches of bounded size, on the
  detector's device). A row that is itself among the reference rows counts as its own
  neighbour. The hit rates measured with every baseline are in
  ``benchmarks/results/explanations/``.

The network runs as the detector scores, in float32 (a float64 copy costs 2.5 times as
much); scores, sums and the residual are float64. For a USF, the few rows whose float32 sum
misses (:data:`EXACT_RTOL`) are explained again in float64, where it is exact to rounding.
Rows go through in batches, vectorised: the only Python loops are over batches of rows (and
the quadrature points share one batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from numpy.polynomial.legendre import leggauss
from torch import Tensor, nn

from .density import GaussianBase, KernelBase, MixtureBase
from .errors import DataError
from .flows.base import Bijection
from .validation import check_array

#: the named baselines (an array of raw rows is the fourth kind)
BASELINES = ("mean", "typical", "neighbours")

#: reference rows averaged per row by ``baseline="neighbours"`` when ``n_neighbours=None``
DEFAULT_NEIGHBOURS = 10

#: at most this many squared distances (rows x reference rows) are held at once by
#: :func:`neighbour_baselines` (a batch holds at least one row: all its distances)
NEIGHBOUR_BLOCK = 1 << 22

#: :func:`neighbour_baselines` leaves out of a row's distances the features outside the
#: reference's ``NEIGHBOUR_OUTSIDE`` and ``1 - NEIGHBOUR_OUTSIDE`` quantiles
NEIGHBOUR_OUTSIDE = 0.01

#: Gauss-Legendre points when ``n_points=None``: one for a USF on one Gaussian on its latent
#: path (the score is quadratic along it, so the sum is exact at any number of points), eight
#: for every other path, a USF on a mixture base included (quadrature error in the sum about
#: 0.2% of the score difference, measured).
DEFAULT_POINTS_EXACT = 1
DEFAULT_POINTS = 8

#: On a kernel base the score is a sum of bumps along the path, and ``n_points`` can leave a
#: sizeable quadrature residual (``benchmarks/results/explanations_kernel/``): a row whose
#: residual exceeds ``REFINE_RTOL`` of its score difference is integrated again with each of
#: ``REFINE_FACTORS`` times the points in turn, while any row still does.
REFINE_RTOL = 1e-3
REFINE_FACTORS = (4, 16)

Score = Callable[[Tensor], Tensor]


@dataclass
class Explanation:
    """Attributions of ``n`` rows and what they add up to (all float64 NumPy arrays).

    ``attributions.sum(1) == scores - baseline_scores`` to rounding, row by row.
    """

    attributions: np.ndarray  #: ``(n, n_features)``, in the units of the score
    scores: np.ndarray  #: ``(n,)`` the score of each row, as the network computes it
    baseline_scores: np.ndarray  #: ``(n,)`` the score of each row's baseline
    baselines: np.ndarray  #: ``(n, n_features)`` the baseline of each row, raw features
    residual: np.ndarray  #: ``(n,)`` ``scores - baseline_scores - sum(attributions)`` before spreading
    path: str  #: ``"latent"`` or ``"straight"``
    n_points: int  #: Gauss-Legendre points along the path
    float64_rows: np.ndarray  #: ``(n,)`` bool: the rows explained again in float64 (USFs only)


def gauss_legendre(n_points: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Nodes in ``(0, 1)`` and weights (summing to 1) of the ``n_points``-point Gauss-Legendre rule."""
    if int(n_points) < 1:
        raise ValueError(f"n_points must be an integer >= 1, got {n_points!r}")
    nodes, weights = leggauss(int(n_points))
    return torch.as_tensor((nodes + 1) / 2, dtype=dtype), torch.as_tensor(weights / 2, dtype=dtype)


def _gradient(score: Score, points: Tensor) -> Tensor:
    """``d score / d x`` at each row of ``points`` (rows are independent)."""
    points = points.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score(points).sum(), points)
    return grad


def straight_path_attributions(score: Score, u: Tensor, u_base: Tensor, n_points: int) -> Tensor:
    """Integrated gradients along ``u_base + t (u - u_base)``: ``(u - u_base) * mean_t grad``.

    ``u``, ``u_base``: ``(n, d)``. The ``n_points`` points of every row go through the network
    as one batch of ``n * n_points`` rows.
    """
    t, w = gauss_legendre(n_points, u.dtype)
    t, w = t.to(u.device), w.to(u.device)
    step = u - u_base
    points = (u_base[None] + t[:, None, None] * step[None]).reshape(-1, u.shape[1])
    grad = _gradient(score, points).reshape(len(t), *u.shape)
    return step * torch.einsum("k,knd->nd", w, grad)


def latent_path_attributions(score: Score, flow: Bijection, z: Tensor, z_base: Tensor, n_points: int) -> Tensor:
    """Path-integrated gradients along ``f^{-1}(z_base + t (z - z_base))`` (see the module docstring).

    ``z = f(u)`` and ``z_base`` are ``(n, d)`` latents. At each point the path's velocity
    ``J^{-1} (z - z_base)`` comes from the flow's derivative of its inverse
    (:meth:`~usfad.flows.Bijection.inverse_jvp`) and the score's gradient from one backward pass.
    """
    t, w = gauss_legendre(n_points, z.dtype)
    t, w = t.to(z.device), w.to(z.device)
    step = z - z_base
    latents = (z_base[None] + t[:, None, None] * step[None]).reshape(-1, z.shape[1])
    steps = step[None].expand(len(t), *step.shape).reshape(-1, z.shape[1])
    with torch.no_grad():
        points, velocity = flow.inverse_jvp(latents, steps)
    grad = _gradient(score, points)
    return torch.einsum("k,knd->nd", w, (grad * velocity).reshape(len(t), *z.shape))


def spread_residual(attributions: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``(attributions that sum to target, residual before)``: the residual shared by ``|a_i|``.

    A row whose attributions are all 0 shares it evenly.
    """
    residual = target - attributions.sum(1)
    weight = attributions.abs()
    total = weight.sum(1, keepdim=True)
    share = torch.where(total > 0, weight / total.clamp_min(torch.finfo(total.dtype).tiny), 1.0 / weight.shape[1])
    return attributions + residual[:, None] * share, residual


def shrink_to_radius(z: Tensor, center: Tensor, radius: float) -> Tensor:
    """``c + min(r, ||z - c||) (z - c) / ||z - c||``: each latent moved along its ray to radius ``r`` at most."""
    diff = z - center
    norm = diff.norm(dim=1, keepdim=True)
    factor = torch.where(norm > radius, radius / norm.clamp_min(torch.finfo(z.dtype).tiny), 1.0)
    return center + diff * factor


def shrink_to_level(
    z: Tensor, base: MixtureBase, level: Tensor, steps: int = 40, exclude: Tensor | None = None
) -> Tensor:
    """Each latent moved toward a mean ``m`` until the base's
    :meth:`~usfad.density.GaussianMixtureBase.sq_distance` is ``level`` (per row): ``m + t (z -
    m)`` with ``t`` in ``[0, 1]`` by bisection (``t = 1`` where ``z`` is already at or below
    the level, ``t = 0`` where even ``m`` is above it). ``m`` is the most responsible of the
    means at or below the row's level (of all the means when none is). ``exclude`` (a kernel
    base only): the centre each row leaves out along the way (:meth:`~usfad.density.KernelBase.log_terms`)."""

    def sq_distance(points: Tensor) -> Tensor:
        return base.sq_distance(points) if exclude is None else base.sq_distance(points, exclude)

    with torch.no_grad():
        means = base.means.to(z)
        terms = base.log_terms(z)
        reachable = base.sq_distance(means)[None, :] <= level[:, None]
        terms = torch.where(reachable.any(1, keepdim=True), terms.masked_fill(~reachable, -math.inf), terms)
        m = means[terms.argmax(1)]
        low, high = torch.zeros(len(z), 1, dtype=z.dtype, device=z.device), torch.ones_like(z[:, :1])
        for _ in range(steps):  # sq_distance(m + t (z - m)) crosses the level between low and high
            middle = (low + high) / 2
            above = sq_distance(m + middle * (z - m)) > level
            high = torch.where(above[:, None], middle, high)
            low = torch.where(above[:, None], low, middle)
        t = torch.where((base.sq_distance(z) <= level)[:, None], torch.ones_like(low), low)
        t = torch.where((sq_distance(m) > level)[:, None], torch.zeros_like(t), t)
    return torch.where(t == 1, z, m + t * (z - m))  # a row at or below the level is its own point, exactly


def reads_beyond_latent(model: nn.Module) -> bool:
    """Whether a flow model's score reads more than its base at the latent: a kernel of the
    input rows (``input_base``) or the trained base beside its kernel (``trained_base``)."""
    return getattr(model, "input_base", None) is not None or getattr(model, "trained_base", None) is not None


def flow_parts(model: nn.Module) -> tuple[Bijection, GaussianBase | MixtureBase] | None:
    """``(flow, base)`` of a flow detector's network (attributes ``flow`` and ``base``: one
    Gaussian, a mixture or a kernel density), else ``None``; ``None`` too when the score also
    reads a kernel of the input rows or the trained base (:func:`reads_beyond_latent`): the
    latent path's shortcuts read the score from ``(flow, base)`` alone."""
    if reads_beyond_latent(model):
        return None
    flow, base = getattr(model, "flow", None), getattr(model, "base", None)
    if isinstance(flow, Bijection) and isinstance(base, GaussianBase | MixtureBase):
        return flow, base
    return None


def _baseline_rows(baseline: Any, n_rows: int, n_features: int, fitted: str) -> np.ndarray:
    """A raw baseline array, checked, as ``(n_rows, d)`` float64 rows (one row is repeated)."""
    arr = np.asarray(baseline) if not hasattr(baseline, "columns") else baseline
    if getattr(arr, "ndim", 2) == 1:
        arr = np.asarray(arr)[None, :]
    rows = check_array(arr, n_features=n_features, what="baseline", fitted=fitted)
    if len(rows) not in (1, n_rows):
        raise DataError(f"baseline has {len(rows)} rows; give one row, or one per row of X ({n_rows})")
    return np.broadcast_to(rows, (n_rows, n_features))


def _standardised(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return X / scale - mean / scale  # as base.standardised: no overflow for huge raw values


def neighbour_baselines(
    U: np.ndarray,
    reference: np.ndarray,
    reference_standardised: np.ndarray,
    n_neighbours: int,
    *,
    device: torch.device | str = "cpu",
    block: int = NEIGHBOUR_BLOCK,
    outside: float | None = NEIGHBOUR_OUTSIDE,
) -> np.ndarray:
    """The mean of the ``n_neighbours`` raw ``reference`` rows nearest each row of ``U``: ``(n, d)``.

    ``U``: standardised rows ``(n, d)``; ``reference`` ``(m, d)`` raw rows and
    ``reference_standardised`` the same rows standardised (nearness is measured there,
    Euclidean). A row's features that lie outside the reference's central ``1 - 2 outside``
    (per feature, between its ``outside`` and ``1 - outside`` quantiles) are left out of
    that row's distances: a value shifted far out would otherwise draw the neighbours
    towards the reference's tail, and the baseline would share the shift it should explain.
    The baseline then takes those features from neighbours that agree with the row on its
    other features. A row with every feature outside is measured on all of them;
    ``outside=None`` measures every row on every feature.

    On ``device``, for a batch of rows at a time: squared distances over the kept features
    ``k``, ``sum_k r_k^2 - 2 u_k r_k`` (``sum_k u_k^2`` does not change the order), by one
    float32 matrix product, the ``2 n_neighbours`` smallest of each row as candidates
    (``torch.topk``), and among them the ``n_neighbours`` nearest by float64 distances, so
    that float32 rounding changes the chosen rows only if it pushes a true neighbour behind
    ``n_neighbours`` others (a float32 product costs a fraction of a float64 one). A batch
    holds at most ``block`` numbers (its distances and its candidates' features; one row at
    least). Ties between equally near reference rows are broken arbitrarily.
    """
    m, d = reference.shape
    if not 1 <= n_neighbours <= m:
        raise ValueError(f"n_neighbours={n_neighbours} needs 1 to {m} reference rows (the reference has {m})")
    if outside is None:
        kept = np.ones(U.shape, dtype=bool)
    else:
        low, high = np.quantile(reference_standardised, [outside, 1.0 - outside], axis=0)
        kept = (low <= U) & (high >= U)
        kept[~kept.any(axis=1)] = True
    R = torch.as_tensor(np.ascontiguousarray(reference_standardised), dtype=torch.float64, device=device)
    # [K, K * u] @ [R^2, -2 R]^T = sum over kept features of r^2 - 2 u r
    stacked = torch.cat([R * R, -2.0 * R], dim=1).float()
    raw = torch.as_tensor(np.ascontiguousarray(reference), dtype=torch.float64, device=device)
    candidates = min(m, 2 * n_neighbours)
    out = np.empty((len(U), d))
    step = max(1, int(block) // (m + 2 * candidates * d))
    for start in range(0, len(U), step):
        u = torch.as_tensor(np.ascontiguousarray(U[start : start + step]), dtype=torch.float64, device=device)
        k = torch.as_tensor(kept[start : start + step], dtype=torch.float64, device=device)
        near = torch.topk(torch.cat([k, k * u], dim=1).float() @ stacked.T, candidates, dim=1, largest=False).indices
        exact = (k[:, None, :] * (R[near] - u[:, None, :]) ** 2).sum(2)
        chosen = near.gather(1, torch.topk(exact, n_neighbours, dim=1, largest=False).indices)
        out[start : start + len(u)] = raw[chosen].mean(1).cpu().numpy()
    return out


#: a USF row whose float32 attributions miss ``score(x) - score(baseline)`` by more than this
#: share of it is computed again in float64 (see :func:`explain_rows`)
EXACT_RTOL = 1e-5


def explain_rows(
    scorer: Callable[[torch.dtype], tuple[Score, nn.Module]],
    X: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    baseline: str | Any | None = None,
    *,
    typical_score: float | None = None,
    reference: np.ndarray | None = None,
    n_neighbours: int | None = None,
    n_points: int | None = None,
    batch_size: int = 4096,
    reach: float = np.inf,
    fitted: str = "the model",
) -> Explanation:
    """Attributions of the raw rows ``X`` (already checked: finite float64 ``(n, d)``).

    ``scorer(dtype)``: the detector's score of standardised rows ``(batch, d) -> (batch,)``
    (differentiable), computed in ``dtype``, and the network it runs (the rows take its
    device; its ``flow`` and ``base``, when it has them, select the latent path). Rows are
    explained in float32, as the detector scores; for a uniformly scaling flow, a row whose
    attributions miss its score difference by more than :data:`EXACT_RTOL` of it is explained
    again in float64 (a quadrature point within float32 rounding of a LeakyReLU's kink: the
    float32 inverse and gradient then see two different linear pieces; about one row in a
    thousand, measured); so is any row whose float32 attributions overflow (a non-USF's latent
    can reach 1e18 a few deviations from the training data), for any detector. ``mean``,
    ``scale``: the scaler. ``typical_score``: the median
    training score (``baseline="typical"``). ``reference``: raw rows (already checked:
    finite float64 ``(m, d)``), and ``n_neighbours`` (``None``: :data:`DEFAULT_NEIGHBOURS`)
    of them averaged per row, for ``baseline="neighbours"`` and only for it; each row's
    baseline is then a row of its own (the "raw rows" path). ``baseline=None``:
    ``"neighbours"`` when ``reference`` is given, else ``"mean"``. ``batch_size`` bounds the rows one network pass
    holds (points included). A row with a standardised feature beyond ``reach`` (where the
    detector's float32 score is +inf) is not computed: its beyond-reach features get the
    largest finite float64 each, the others 0.
    """
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    n, d = X.shape
    score, model = scorer(torch.float32)
    parts = flow_parts(model)
    usf = parts is not None and bool(parts[0].constant_logdet)
    # the latent path is exact at one point only on one Gaussian: the score is then quadratic along it
    exact = usf and isinstance(parts[1], GaussianBase)
    if baseline is None:
        baseline = "mean" if reference is None else "neighbours"
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES} or an array of rows, got {baseline!r}")
        flow = getattr(model, "flow", None)
        if baseline == "typical" and not (isinstance(flow, Bijection) and flow.constant_logdet):
            raise ValueError(
                f"baseline='typical' needs a uniformly scaling flow (its score is a function of the latent "
                f"radius); {fitted} is not one: use 'mean' or an array of rows"
            )
        if baseline == "typical" and getattr(model, "input_base", None) is not None:
            both = getattr(model, "trained_base", None) is not None  # then gaussian_weight too
            raise ValueError(
                f"baseline='typical' follows the latent radius of a uniformly scaling flow; {fitted} also scores "
                f"with a kernel of the input rows (input_kernel=True): use 'mean', 'neighbours' or an array of "
                f"rows, or fit with input_kernel=False"
                + (
                    " and gaussian_weight=0 (usfad fit --input-kernel off --gaussian-weight 0)"
                    if both
                    else " (usfad fit --input-kernel off)"
                )
            )
        if baseline == "typical" and getattr(model, "trained_base", None) is not None:
            raise ValueError(
                f"baseline='typical' follows the latent radius of one base; {fitted} scores with its kernel and "
                f"its trained base together (gaussian_weight > 0): use 'mean', 'neighbours' or an array of rows, "
                f"or fit with gaussian_weight=0 (usfad fit --gaussian-weight 0)"
            )
        if baseline == "typical" and typical_score is None:
            raise ValueError("baseline='typical' needs typical_score (the median training score)")
    neighbours = isinstance(baseline, str) and baseline == "neighbours"
    if neighbours:
        if reference is None:
            raise ValueError(
                "baseline='neighbours' needs reference rows (reference=..., normally the normal training rows): "
                "each row's baseline is the mean of its nearest reference rows"
            )
        if n_neighbours is None:
            n_neighbours = DEFAULT_NEIGHBOURS
        if isinstance(n_neighbours, bool) or not isinstance(n_neighbours, int | np.integer) or n_neighbours < 1:
            raise ValueError(f"n_neighbours must be an integer >= 1 or None, got {n_neighbours!r}")
    else:
        named = repr(baseline) if isinstance(baseline, str) else "rows"
        for name, value in (("reference", reference), ("n_neighbours", n_neighbours)):
            if value is not None:
                raise ValueError(f"{name} goes with baseline='neighbours' only; baseline {named} does not use it")
    if n_points is None:
        n_points = DEFAULT_POINTS_EXACT if exact else DEFAULT_POINTS
    if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 1:
        raise ValueError(f"n_points must be an integer >= 1 or None, got {n_points!r}")
    U = _standardised(X, mean, scale)
    far = np.abs(U) > reach
    far_rows = far.any(axis=1)
    U = np.where(far_rows[:, None], 0.0, U)
    if neighbours:
        probe = next(iter(model.parameters()), None)
        device = probe.device if probe is not None else torch.device("cpu")
        given = neighbour_baselines(
            U, reference, _standardised(reference, mean, scale), int(n_neighbours), device=device
        )
        kind = "rows"
    else:
        kind = baseline if isinstance(baseline, str) else "rows"
        given = _baseline_rows(baseline, n, d, fitted) if kind == "rows" else None
    job = _Job(X, U, given, kind, mean, scale, typical_score, int(n_points), batch_size)
    out = job.run(score, model, np.arange(n))

    def misses(rtol: float) -> np.ndarray:
        """The rows (not far out) whose residual exceeds ``rtol`` of their score difference."""
        with np.errstate(invalid="ignore"):
            loose = np.abs(out["residual"]) > rtol * np.abs(out["scores"] - out["baseline_scores"])
        return loose & ~far_rows

    def again(rows: np.ndarray, with_job: _Job, with_score: Score, with_model: nn.Module) -> None:
        """Explain the ``rows`` (a mask) again, with another rule or in another dtype, in place."""
        for key, value in with_job.run(with_score, with_model, np.flatnonzero(rows)).items():
            out[key][rows] = value

    redo = misses(EXACT_RTOL) if exact else np.zeros(n, dtype=bool)
    if redo.any():
        again(redo, job, *scorer(torch.float64))
    if (parts is not None and isinstance(parts[1], KernelBase)) or reads_beyond_latent(model):
        for factor in REFINE_FACTORS:
            loose = misses(REFINE_RTOL)
            if not loose.any():
                break
            again(loose, replace(job, n_points=job.n_points * factor), score, model)
    if far_rows.any():
        big = np.finfo(np.float64).max
        out["attributions"][far_rows] = np.where(far[far_rows], big, 0.0)
        out["scores"][far_rows] = big
        out["residual"][far_rows] = 0.0
    bad = ~np.isfinite(out["attributions"]).all(axis=1)
    if bad.any():  # a float32 overflow (a non-USF's latent can reach 1e18 a few deviations out): again in float64
        again(bad, job, *scorer(torch.float64))
        redo |= bad
        bad = ~np.isfinite(out["attributions"]).all(axis=1)
    if bad.any():
        raise DataError(
            f"{fitted} could not attribute the scores of rows {np.flatnonzero(bad)[:10].tolist()}: "
            f"the network overflows, even in float64, on values so far from the training data"
        )
    path = "latent" if parts is not None else "straight"
    return Explanation(**out, path=path, n_points=int(n_points), float64_rows=redo)


@dataclass
class _Job:
    """What every pass of :func:`explain_rows` shares: the rows, the baseline, the rule."""

    X: np.ndarray  #: raw rows
    U: np.ndarray  #: standardised rows
    given: np.ndarray | None  #: raw baseline rows (``kind == "rows"``)
    kind: str  #: ``"mean"``, ``"typical"`` or ``"rows"``
    mean: np.ndarray
    scale: np.ndarray
    typical_score: float | None
    n_points: int
    batch_size: int

    def run(self, score: Score, model: nn.Module, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Attributions, scores, baselines and residuals of ``rows``, by ``score`` on ``model``."""
        probe = next(iter(model.parameters()), None)
        dtype = probe.dtype if probe is not None else torch.float32
        device = probe.device if probe is not None else torch.device("cpu")
        parts = flow_parts(model)
        n, d = len(rows), self.U.shape[1]
        mean, scale = self.mean, self.scale

        def tensor(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

        out = {key: np.empty((n, d)) for key in ("attributions", "baselines")}
        out.update({key: np.empty(n) for key in ("scores", "baseline_scores", "residual")})
        if self.kind == "mean":  # one baseline for every row: its score once
            mean_row = torch.zeros(1, d, dtype=dtype, device=device)
            with torch.no_grad():
                mean_score = score(mean_row)
                mean_latent = parts[0](mean_row)[0] if parts is not None else None
        step = max(1, self.batch_size // self.n_points)
        for start in range(0, n, step):
            stop = min(n, start + step)
            index = rows[start:stop]
            u = tensor(self.U[index])
            row_score, own = score, None
            with torch.no_grad():
                z, s = _latent_and_score(score, parts, u)
                if parts is not None and isinstance(parts[1], KernelBase):
                    own = parts[1].own_centres(z)
                    if (own >= 0).any():  # training rows: explained without their own kernel, all along
                        row_score = _leaving_out(*parts, own)
                    else:
                        own = None
                elif reads_beyond_latent(model):  # the same, for both of its kernels (or the one beside its base)
                    own = (
                        model.input_base.own_centres(u)
                        if model.input_base is not None
                        else model.base.own_centres(model.flow(u)[0])
                    )
                    if (own >= 0).any():
                        row_score = _model_leaving_out(model, own)
                    else:
                        own = None
                if self.kind == "rows":
                    raw_base = self.given[index]
                    with np.errstate(over="ignore"):
                        u_base = tensor(raw_base / scale - mean / scale)
                    z_base, s_base = _latent_and_score(row_score, parts, u_base, own)
                elif self.kind == "mean":
                    raw_base = np.broadcast_to(mean, (stop - start, d))
                    u_base, s_base = torch.zeros_like(u), mean_score.expand_as(s)
                    if own is not None:
                        s_base = row_score(u_base)
                if parts is not None:
                    flow, base = parts
                    if self.kind == "mean":
                        z_base = mean_latent.expand_as(z)
                    elif self.kind == "typical" and isinstance(base, MixtureBase):
                        # a USF's score is sq_distance(z) / (2 scale^2) plus a constant: the level of the typical score
                        level = base.sq_distance(z) - 2 * base.scale.to(z) ** 2 * (s - self.typical_score)
                        z_base = shrink_to_level(z, base, level, exclude=own)
                    elif self.kind == "typical":  # shrink along the ray; rows inside the radius are their own baseline
                        radius = _typical_radius(score, flow, base, self.typical_score, u)
                        z_base = shrink_to_radius(z, base.center.to(z)[None], radius)
                    if self.kind == "typical":
                        inside = (z_base == z).all(dim=1, keepdim=True)
                        u_base = torch.where(inside, u, flow.inverse(z_base))
                        s_base = torch.where(inside[:, 0], s, row_score(u_base))
                        raw_base = np.where(
                            inside.cpu().numpy(), self.X[index], u_base.double().cpu().numpy() * scale + mean
                        )
            if parts is not None:
                attributions = latent_path_attributions(row_score, parts[0], z, z_base, self.n_points)
            else:
                attributions = straight_path_attributions(row_score, u, u_base, self.n_points)
            s, s_base = s.double(), s_base.double()
            attributions, residual = spread_residual(attributions.detach().double(), s - s_base)
            out["attributions"][start:stop] = attributions.cpu().numpy()
            out["residual"][start:stop] = residual.cpu().numpy()
            out["scores"][start:stop] = s.cpu().numpy()
            out["baseline_scores"][start:stop] = s_base.cpu().numpy()
            out["baselines"][start:stop] = raw_base
        return out


def _latent_and_score(
    score: Score, parts: tuple[Bijection, GaussianBase | MixtureBase] | None, u: Tensor, own: Tensor | None = None
) -> tuple[Tensor | None, Tensor]:
    """``(f(u), score(u))`` by one pass of the flow, or ``(None, score(u))`` without one.

    A flow's score is its NLL (what the latent path assumes: see the module docstring), so it
    is computed from the latent and log-det as the flow model's ``nll`` computes it, not by a
    second pass. ``own``: the kernel centre each row leaves out (:func:`_leaving_out`)."""
    if parts is None:
        return None, score(u)
    flow, base = parts
    z, logdet = flow(u)
    log_prob = base.log_prob(z) if own is None else base.log_prob(z, own)
    return z, -(log_prob + logdet)


def _leaving_out(flow: Bijection, base: KernelBase, own: Tensor) -> Score:
    """The NLL of a batch of ``n`` rows without the kernel centre each lies on (``own``, ``-1``:
    none), for batches of ``k n`` points, ``k`` per row, ordered point-major as the paths' are.

    A training row is scored without its own kernel (:class:`~usfad.density.KernelBase`); its
    path must be too, or the path would integrate a density with a spike at its end that the
    score does not have, and the attributions would not add up."""

    def score(points: Tensor) -> Tensor:
        z, logdet = flow(points)
        return -(base.log_prob(z, own.repeat(len(points) // len(own))) + logdet)

    return score


def _model_leaving_out(model: nn.Module, own: Tensor) -> Score:
    """:func:`_leaving_out` for a flow model whose score reads more than its base
    (:func:`reads_beyond_latent`): its ``nll`` leaves the centre out of its kernels."""

    def score(points: Tensor) -> Tensor:
        return model.nll(points, own.repeat(len(points) // len(own)))

    return score


def _typical_radius(score: Score, flow: Bijection, base: GaussianBase, typical_score: float, like: Tensor) -> float:
    """The latent radius at which a USF scores ``typical_score``: ``s sqrt(2 (typical - s(f^{-1}(c))))``."""
    center = base.center.to(like)[None]
    at_center = float(score(flow.inverse(center))[0])
    return float(base.scale) * float(np.sqrt(2.0 * max(float(typical_score) - at_center, 0.0)))
