"""Input-independent linear bijections: LU-parameterised maps and permutations.

:class:`LULinear` is ``y = W x`` with ``W = P L (U + diag(sign * exp(log_diag)))``
(``P`` a fixed permutation, ``L`` unit lower-triangular, ``U`` strictly upper-triangular),
so ``log|det W| = sum(log_diag)``. On a feature map it acts on the channels at every
position, i.e. it is a 1x1 convolution, and the log-det is multiplied by the number of
positions. Either way the log-det does not depend on the input.

On 2-D feature maps ``(batch, C, h, w)`` the layer forms ``W`` and ``W^-1`` (``C x C``,
from the factors by two triangular solves) and runs one 1x1 convolution each way: with
many positions per sample that is several times faster than applying the factors to every
position. Vectors keep the factor-by-factor path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Bijection, positions


def _as_rows(x: Tensor) -> Tensor:
    """``(batch, C, *spatial) -> (batch * positions, C)``; vectors pass unchanged."""
    # Non-negative axes throughout: the ONNX exporter mistranslates movedim(..., -1).
    return x if x.dim() == 2 else x.movedim(1, x.dim() - 1).reshape(-1, x.shape[1])


def _from_rows(rows: Tensor, like: Tensor) -> Tensor:
    last = like.dim() - 1
    return rows if like.dim() == 2 else rows.reshape(like.movedim(1, last).shape).movedim(last, 1)


class LULinear(Bijection):
    """Invertible linear map (or 1x1 convolution) in LU form.

    Initialised as a random permutation drawn from torch's global generator (``P``
    random, ``L = I``, ``U = 0``, unit diagonal), so that consecutive layers split and mix
    coordinates differently; the mixing itself is learned. Not the LU factors of a random
    rotation (Glow's start): those are well-conditioned only by their exact structure, and
    Adam moves every entry by about the learning rate per step, so at hundreds of channels
    the rotation's factors soon became ill-conditioned and FastFlow training blew up, while
    from a permutation the condition number stayed small and the loss kept falling
    (measurements: ``benchmarks/results/lu_conditioning.md``). On vectors
    ``W`` is never formed: the factors are applied one after the other (``O(d^2)`` per
    sample), and the inverse is two triangular solves.
    """

    constant_logdet = True
    linear = True

    def __init__(self, features: int):
        super().__init__()
        if features < 1:
            raise ValueError(f"features must be >= 1, got {features}")
        self.features = features
        dtype = torch.get_default_dtype()
        # (P v)[i] = v[order[i]]
        order = torch.randperm(features)
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))
        # the diagonal's signs: all +1 from this start; kept as a buffer so that models saved
        # when layers started from a rotation's LU factors (signs +-1) load unchanged
        self.register_buffer("sign", torch.ones(features, dtype=dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(features, features, dtype=dtype), -1))
        self.lower = nn.Parameter(torch.zeros(features, features, dtype=dtype))
        self.upper = nn.Parameter(torch.zeros(features, features, dtype=dtype))
        self.log_diag = nn.Parameter(torch.zeros(features, dtype=dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.features, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W = P L U`` (for inspection; the layer itself never forms it)."""
        lower, upper = self._factors()
        return (lower @ upper)[self.order]

    def inverse_weight(self) -> Tensor:
        """``W^-1 = U^-1 L^-1 P^T``, by two triangular solves on the permuted identity."""
        lower, upper = self._factors()
        eye = torch.eye(self.features, dtype=lower.dtype, device=lower.device)[self.inverse_order]
        cols = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, cols, upper=True)

    def logabsdet(self) -> Tensor:
        """``log|det W|`` (a scalar)."""
        return self.log_diag.sum()

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = (self.logabsdet() * positions(x)).expand(x.shape[0])
        if x.dim() == 4:
            return F.conv2d(x, self.weight()[:, :, None, None]), logdet
        lower, upper = self._factors()
        rows = _as_rows(x) @ upper.T @ lower.T  # rows of (L U x)
        y = _from_rows(rows.index_select(1, self.order), x)
        return y, logdet

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        if y.dim() == 4:
            return F.conv2d(y, self.inverse_weight()[:, :, None, None])
        lower, upper = self._factors()
        cols = _as_rows(y).index_select(1, self.inverse_order).T  # P^T y, one column per sample
        cols = torch.linalg.solve_triangular(lower, cols, upper=False, unitriangular=True)
        cols = torch.linalg.solve_triangular(upper, cols, upper=True)
        return _from_rows(cols.T, y)

    @torch.no_grad()
    def frozen(self) -> FixedLinear:
        """This map as a :class:`FixedLinear` (``W`` and ``W^-1`` formed once, in float64)."""
        lower, upper = (f.double() for f in self._factors())
        weight = (lower @ upper)[self.order]
        return FixedLinear(weight, torch.linalg.inv(weight), self.logabsdet().double()).to(self.lower.dtype)


class FixedLinear(Bijection):
    """``y = W x`` with ``W`` and ``W^-1`` stored as plain matrices (buffers, no training).

    The inference form of :class:`LULinear` (:meth:`LULinear.frozen`): both directions are
    one matrix product, so the layer exports to graph formats without a triangular solve
    (ONNX has none) and runs faster. Vectors or feature maps, as :class:`LULinear`.
    """

    constant_logdet = True
    linear = True

    def __init__(self, weight: Tensor, inverse_weight: Tensor, logabsdet: Tensor):
        super().__init__()
        self.register_buffer("weight_t", weight.T.contiguous())
        self.register_buffer("inverse_weight_t", inverse_weight.T.contiguous())
        self.register_buffer("logabsdet", torch.as_tensor(logabsdet).reshape(()))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = _from_rows(_as_rows(x) @ self.weight_t, x)
        return y, (self.logabsdet * positions(x)).expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return _from_rows(_as_rows(y) @ self.inverse_weight_t, y)


class LUConv1x1(LULinear):
    """The 1x1-convolution form of :class:`LULinear` (same parameters, feature maps)."""


class Permutation(Bijection):
    """A fixed permutation of the features (channels); log-det 0.

    Columns are gathered by ``index_select`` (here and in :class:`LULinear`), not by indexing
    with the order: the same numbers, forward and backward, in under a third of the time on 512 x
    1,555 rows (``benchmarks/results/block_ops.md``); indexing was a fifth of a training step on
    17_InternetAds."""

    constant_logdet = True
    linear = True

    def __init__(self, features: int, order: Tensor | None = None):
        super().__init__()
        if order is None:
            order = torch.randperm(features)
        order = torch.as_tensor(order, dtype=torch.long)
        if sorted(order.tolist()) != list(range(features)):
            raise ValueError(f"order must be a permutation of range({features})")
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.order), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y.index_select(1, self.inverse_order)
