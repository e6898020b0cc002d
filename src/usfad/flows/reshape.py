"""Invertible reshapes of feature maps: depth-to-space and its inverse.

:class:`DepthToSpace` with factor ``r`` maps ``(batch, C * r^2, h, w)`` to
``(batch, C, h * r, w * r)`` (pixel shuffle): every number keeps its value and only moves,
so it is a permutation of the coordinates and ``log|det J| = 0`` for every input. U-Flow
uses it to bring part of a coarse scale's flow output up to the next finer scale.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import Bijection


class DepthToSpace(Bijection):
    """``(B, C r^2, h, w) -> (B, C, h r, w r)``; the inverse is space-to-depth."""

    constant_logdet = True
    linear = True

    def __init__(self, factor: int = 2):
        super().__init__()
        if int(factor) < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] % self.factor**2:
            raise ValueError(
                f"DepthToSpace({self.factor}) needs (batch, C * {self.factor**2}, h, w) maps, "
                f"got shape {tuple(x.shape)}"
            )
        return F.pixel_shuffle(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        if y.dim() != 4 or y.shape[2] % self.factor or y.shape[3] % self.factor:
            raise ValueError(
                f"the inverse of DepthToSpace({self.factor}) needs maps whose sides are multiples of {self.factor}, "
                f"got shape {tuple(y.shape)}"
            )
        return F.pixel_unshuffle(y, self.factor)
