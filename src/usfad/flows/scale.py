"""Per-feature (per-channel) scaling: the volume-changing layers of a USF.

``y = x * exp(log_scale) (+ bias)``, so ``log|det J| = positions * sum(log_scale)``,
independent of the input. :class:`ActNorm` sets ``bias`` and ``log_scale`` from the
first batch it sees in training (zero mean, unit variance per channel; a channel whose
spread there is below ``floor`` times the mean channel spread is scaled as if it had that
spread) and is a plain input-independent affine map from then on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Bijection, positions


def _broadcast(param: Tensor, x: Tensor) -> Tensor:
    return param.view(1, -1, *([1] * (x.dim() - 2)))


class Scale(Bijection):
    """``y = x * exp(log_scale)``; starts as the identity."""

    constant_logdet = True
    linear = True

    def __init__(self, features: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = x * torch.exp(_broadcast(self.log_scale, x))
        return y, (self.log_scale.sum() * positions(x)).expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y * torch.exp(-_broadcast(self.log_scale, y))


class ActNorm(Bijection):
    """``y = (x + bias) * exp(log_scale)`` with data-dependent initialisation.

    ``floor``: the smallest spread, as a fraction of the mean channel spread of the first
    batch, a channel is scaled for (see the module docstring).
    """

    constant_logdet = True

    def __init__(self, features: int, eps: float = 1e-6, floor: float = 0.1):
        super().__init__()
        self.eps = eps
        self.floor = floor
        self.bias = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        flat = x.movedim(1, -1).reshape(-1, x.shape[1])
        self.bias.copy_(-flat.mean(0))
        std = flat.std(0) if flat.shape[0] > 1 else torch.ones_like(self.log_scale)
        # A channel that is (nearly) constant in the first batch, e.g. a ReLU unit that is off
        # there, must not get a scale of 1/eps: one later step that moves its bias, or one later
        # input where it is on, would then be multiplied by ~1e6 and the loss would blow up.
        # Floor its spread at a tenth of the typical channel's (the feature scaler's rule).
        typical = float(std.mean()) if bool((std > 0).any()) else 1.0
        self.log_scale.copy_(-torch.log(torch.clamp(std, min=self.floor * typical) + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        y = (x + _broadcast(self.bias, x)) * torch.exp(_broadcast(self.log_scale, x))
        return y, (self.log_scale.sum() * positions(x)).expand(x.shape[0])

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        return y * torch.exp(-_broadcast(self.log_scale, y)) - _broadcast(self.bias, y)

    def forward_jvp(self, x: Tensor, dx: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self(x, context)[0], dx * torch.exp(_broadcast(self.log_scale, dx))

    def inverse_jvp(self, y: Tensor, dy: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inverse(y, context), dy * torch.exp(-_broadcast(self.log_scale, dy))
