"""Input-independent linear bijections: LU-parameterised maps and permutations.

:class:`LULinear` is ``y = W x`` with ``W = P L (U + diag(sign * exp(log_diag)))``
(``P`` a fixed permutation, ``L`` unit lower-triangular, ``U`` strictly upper-triangular),
so ``log|det W| = sum(log_diag)``. On a feature map it acts on the channels at every
position, i.e. it is a 1x1 convolution, and the log-det is multiplied by the number of
positions. Either way the log-det does not depend on the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Bijection, positions


def _apply_channels(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` along dimension 1 (channels) at every position."""
    if x.dim() == 2:
        return x @ matrix.T
    return torch.einsum("ij,bj...->bi...", matrix, x)


class LULinear(Bijection):
    """Invertible linear map (or 1x1 convolution) in LU form.

    Initialised from the LU decomposition of a random rotation drawn from torch's global
    generator, so that consecutive layers mix coordinates differently.
    """

    constant_logdet = True

    def __init__(self, features: int):
        super().__init__()
        if features < 1:
            raise ValueError(f"features must be >= 1, got {features}")
        self.features = features
        q, _ = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign", torch.sign(diag).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(features, features), -1))
        self.lower = nn.Parameter(torch.tril(lower, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_diag = nn.Parameter(torch.log(diag.abs()).to(dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.features, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W``."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def logabsdet(self) -> Tensor:
        """``log|det W|`` (a scalar)."""
        return self.log_diag.sum()

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = _apply_channels(self.weight(), x)
        logdet = (self.logabsdet() * positions(x)).expand(x.shape[0])
        return y, logdet

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        lower, upper = self._factors()
        cols = y.movedim(1, -1).reshape(-1, self.features).T  # (features, n)
        cols = self.permutation.T @ cols
        cols = torch.linalg.solve_triangular(lower, cols, upper=False, unitriangular=True)
        cols = torch.linalg.solve_triangular(upper, cols, upper=True)
        moved_shape = y.movedim(1, -1).shape
        return cols.T.reshape(moved_shape).movedim(-1, 1)


class LUConv1x1(LULinear):
    """The 1x1-convolution form of :class:`LULinear` (same parameters, feature maps)."""


class Permutation(Bijection):
    """A fixed permutation of the features (channels); log-det 0."""

    constant_logdet = True

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
        return x[:, self.order], x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y[:, self.inverse_order]
