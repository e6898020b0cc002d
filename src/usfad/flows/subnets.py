"""Conditioner networks for coupling layers.

Each maps the conditioning half (plus an optional context) to the coupling's parameters.
The last layer starts at zero, so every coupling starts as the identity map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .base import autodiff_jvp

SubnetFactory = Callable[[int, int], nn.Module]


def _zero_last(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def mlp(hidden_features: Sequence[int] = (256, 256), activation: type[nn.Module] = nn.ReLU) -> SubnetFactory:
    """Factory of fully connected conditioners ``in -> hidden... -> out`` for vectors."""
    hidden = tuple(int(h) for h in hidden_features)

    def make(in_features: int, out_features: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
            width = h
        layers.append(_zero_last(nn.Linear(width, out_features)))
        return nn.Sequential(*layers)

    return make


def conv(hidden_channels: int = 64, kernel_size: int = 3, activation: type[nn.Module] = nn.ReLU) -> SubnetFactory:
    """Factory of two-layer convolutional conditioners for feature maps (FastFlow style)."""

    def make(in_channels: int, out_channels: int) -> nn.Module:
        pad = kernel_size // 2
        return nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=pad),
            activation(),
            _zero_last(nn.Conv2d(hidden_channels, out_channels, kernel_size, padding=pad)),
        )

    return make


def module_jvp(module: nn.Module, x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
    """``(module(x), J(x) dx)`` for a conditioner: by hand through ``nn.Sequential``,
    ``nn.Linear``, ``nn.Conv2d``, ``nn.ReLU`` and ``nn.LeakyReLU`` (one product more per layer,
    the tangent's), by forward-mode autodiff through any other module. At a ReLU's kink the
    derivative taken is 0, as autodiff takes it."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            x, dx = module_jvp(layer, x, dx)
        return x, dx
    if isinstance(module, nn.Linear):
        return module(x), F.linear(dx, module.weight)
    if type(module) is nn.Conv2d:
        return module(x), module._conv_forward(dx, module.weight, None)
    if isinstance(module, nn.ReLU):
        return module(x), dx * (x > 0)
    if isinstance(module, nn.LeakyReLU):
        return module(x), dx.where(x > 0, dx * module.negative_slope)
    return autodiff_jvp(module, x, dx)
