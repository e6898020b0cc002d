"""Builders: one switch, ``flow="usf" | "usf-gin" | "affine"``, and nothing else differs.

A block is ``W^-1 o coupling o W`` with ``W`` an LU linear map (1x1 convolution on feature
maps) and the coupling additive (``"usf"``, the paper's USF), GIN (``"usf-gin"``: affine
with log-scales centred to sum zero, also volume preserving) or affine (``"affine"``, the
non-USF control); masks alternate between blocks. After the blocks come one LU linear
layer and one per-feature scale layer. With additive or GIN couplings every layer has an
input-independent log-det, so the whole flow is a uniformly scaling flow (USF) with
``log|det J| = kappa(theta)`` for every input; the LU and scale layers at the end are its
only volume-changing parameters.

With ``actnorm=True`` each block starts with an :class:`ActNorm` layer: the block shape of
the image heads (FastFlow, CFlow, U-Flow use permutation, ActNorm, coupling; their USF
version conjugates the additive coupling by an LU 1x1 convolution). ActNorm is
input-independent once initialised, so the flow stays a USF; its scales change volume too.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Bijection, Conjugate, Sequential
from .coupling import AdditiveCoupling, AffineCoupling, GINCoupling
from .linear import LULinear, Permutation
from .scale import ActNorm, Scale
from .subnets import SubnetFactory, mlp

FLOWS = ("usf", "usf-gin", "affine")
#: how a block mixes coordinates around its coupling: a learned LU map, or a fixed random permutation
MIXINGS = ("lu", "permutation")
#: the switch values that build a uniformly scaling flow
USF_FLOWS = ("usf", "usf-gin")


def check_flow(flow: str) -> str:
    """Validate the switch value and return it."""
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
    return flow


def is_usf(flow: str) -> bool:
    """Whether ``flow`` builds a uniformly scaling flow (constant ``log|det J|``)."""
    return check_flow(flow) in USF_FLOWS


def coupling(
    flow: str,
    features: int,
    subnet: SubnetFactory,
    swap: bool,
    clamp: float = 2.0,
    context_features: int = 0,
) -> Bijection:
    """The coupling layer for ``flow``: additive (``"usf"``), GIN (``"usf-gin"``) or affine."""
    if check_flow(flow) == "usf":
        return AdditiveCoupling(features, subnet, swap=swap, context_features=context_features)
    kind = GINCoupling if flow == "usf-gin" else AffineCoupling
    return kind(features, subnet, swap=swap, context_features=context_features, clamp=clamp)


def block(
    flow: str,
    features: int,
    subnet: SubnetFactory,
    swap: bool,
    clamp: float = 2.0,
    context_features: int = 0,
    actnorm: bool = False,
    mixing: str = "lu",
) -> Bijection:
    """One block: ``[ActNorm ->] W^-1 o coupling(flow) o W``.

    ``W`` is an LU linear map (``mixing="lu"``) or a fixed random permutation
    (``mixing="permutation"``: ``O(d)`` instead of ``O(d^2)`` per sample, for wide data).
    """
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    # the coupling first, then the outer map: the order in which they draw from torch's generator,
    # so that a seeded flow starts from the same weights as before mixing= existed
    inner_coupling = coupling(flow, features, subnet, swap=swap, clamp=clamp, context_features=context_features)
    outer = LULinear(features) if mixing == "lu" else Permutation(features)
    inner = Conjugate(inner_coupling, outer)
    return Sequential([ActNorm(features), inner]) if actnorm else inner


def build_flow(
    features: int,
    flow: str = "usf",
    n_blocks: int = 4,
    hidden_features: Sequence[int] = (256, 256),
    clamp: float = 2.0,
    subnet: SubnetFactory | Sequence[SubnetFactory] | None = None,
    context_features: int = 0,
    actnorm: bool = False,
    mixing: str = "lu",
) -> Sequential:
    """A flow on ``features``-dimensional vectors (or feature maps, given a conv ``subnet``).

    Parameters
    ----------
    features: dimension of the data (number of channels for feature maps).
    flow: ``"usf"`` (additive couplings: a uniformly scaling flow), ``"usf-gin"`` (GIN
        couplings: affine with centred log-scales, also a USF) or ``"affine"`` (affine
        couplings with log-scale ``clamp * tanh(s)``: the non-USF control).
    n_blocks: number of coupling blocks.
    hidden_features: widths of the MLP conditioners' hidden layers.
    clamp: bound on the affine and GIN couplings' log-scale (ignored for ``"usf"``).
    subnet: conditioner factory ``(in, out) -> nn.Module``, or a sequence of them used in
        turn by consecutive blocks (e.g. FastFlow's 3x3 / 1x1 alternation); default an MLP.
    context_features: size of a conditioning input concatenated to each conditioner's.
    actnorm: start each block with an :class:`ActNorm` layer (input-independent once
        initialised, so a USF stays a USF).
    mixing: ``"lu"`` (a learned LU map around each coupling) or ``"permutation"`` (a fixed
        random permutation: cheaper in high dimension; the final LU layer stays either way).
    """
    check_flow(flow)
    if n_blocks < 0:
        raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
    subnets = [subnet or mlp(hidden_features)] if subnet is None or callable(subnet) else list(subnet)
    if not subnets:
        raise ValueError("subnet must be a factory or a non-empty sequence of factories")
    layers: list[Bijection] = [
        block(flow, features, subnets[i % len(subnets)], i % 2 == 1, clamp, context_features, actnorm, mixing)
        for i in range(n_blocks)
    ]
    layers += [LULinear(features), Scale(features)]
    return Sequential(layers)
