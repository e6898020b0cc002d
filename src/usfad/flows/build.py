"""Builders: one switch, ``flow="usf" | "affine"``, and nothing else differs.

A block is ``W^-1 o coupling o W`` with ``W`` an LU linear map (1x1 convolution on feature
maps) and the coupling additive (``"usf"``) or affine (``"affine"``); masks alternate
between blocks. After the blocks come one LU linear layer and one per-feature scale
layer. With additive couplings every layer has an input-independent log-det, so the whole
flow is a uniformly scaling flow (USF) with ``log|det J| = kappa(theta)`` for every input;
the LU and scale layers at the end are its only volume-changing parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Bijection, Conjugate, Sequential
from .coupling import AdditiveCoupling, AffineCoupling
from .linear import LULinear
from .scale import Scale
from .subnets import SubnetFactory, mlp

FLOWS = ("usf", "affine")


def check_flow(flow: str) -> str:
    """Validate the switch value and return it."""
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
    return flow


def coupling(
    flow: str,
    features: int,
    subnet: SubnetFactory,
    swap: bool,
    clamp: float = 2.0,
    context_features: int = 0,
) -> Bijection:
    """The coupling layer for ``flow``: additive for ``"usf"``, affine otherwise."""
    if check_flow(flow) == "usf":
        return AdditiveCoupling(features, subnet, swap=swap, context_features=context_features)
    return AffineCoupling(features, subnet, swap=swap, context_features=context_features, clamp=clamp)


def build_flow(
    features: int,
    flow: str = "usf",
    n_blocks: int = 4,
    hidden_features: Sequence[int] = (256, 256),
    clamp: float = 2.0,
    subnet: SubnetFactory | None = None,
    context_features: int = 0,
) -> Sequential:
    """A flow on ``features``-dimensional vectors (or feature maps, given a conv ``subnet``).

    Parameters
    ----------
    features: dimension of the data (number of channels for feature maps).
    flow: ``"usf"`` (additive couplings: a uniformly scaling flow) or ``"affine"``
        (affine couplings with scale ``clamp * tanh(s)``: the non-USF control).
    n_blocks: number of coupling blocks.
    hidden_features: widths of the MLP conditioners' hidden layers.
    clamp: bound on the affine couplings' log-scale (ignored for ``"usf"``).
    subnet: conditioner factory ``(in, out) -> nn.Module``; default an MLP.
    context_features: size of a conditioning input concatenated to each conditioner's.
    """
    check_flow(flow)
    if n_blocks < 0:
        raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
    subnet = subnet or mlp(hidden_features)
    layers: list[Bijection] = [
        Conjugate(
            coupling(flow, features, subnet, swap=i % 2 == 1, clamp=clamp, context_features=context_features),
            LULinear(features),
        )
        for i in range(n_blocks)
    ]
    layers += [LULinear(features), Scale(features)]
    return Sequential(layers)
