"""The bijection contract and its composition.

Every layer maps data to latent in ``forward`` and returns ``(y, logdet)`` where
``logdet`` has shape ``(batch,)`` and equals ``log|det J_f(x)|`` per sample; ``inverse``
maps latent back to data. Tensors are either vectors ``(batch, features)`` or feature
maps ``(batch, channels, *spatial)``; layers act along dimension 1 and treat any
trailing dimensions as positions.

A class attribute ``constant_logdet`` says whether the layer's log-det is independent of
its input. It has no default: every layer declares it (a composite such as
:class:`Sequential` derives it per instance from its parts), and a layer that does not is
refused when it is instantiated. :class:`Sequential` combines it: a stack is a uniformly
scaling flow (USF) exactly when every layer in it has ``constant_logdet = True``.

Derivatives along a direction (``forward_jvp``, ``inverse_jvp``: the map and its Jacobian
times a tangent, as explanations need them) default to PyTorch's forward-mode autodiff. That
also carries tangents for the weights (zero, yet multiplied) and costs several passes; the
layers usfad builds its flows from override it with their own derivative at about one extra
pass: a layer whose class sets ``linear = True`` applies itself to the tangent, a composite
chains its parts, a coupling differentiates its conditioner
(:func:`usfad.flows.subnets.module_jvp`) and then its transform.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn


def autodiff_jvp(fn: Callable[[Tensor], Tensor], x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
    """``(fn(x), J_fn(x) dx)`` by PyTorch's forward-mode autodiff."""
    with warnings.catch_warnings():
        # PyTorch's first forward-mode derivative in a process loads its rules through
        # torch.jit.script (about 3 s, once) and warns that torch.jit.script is deprecated:
        # its business, not the user's.
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        return torch.func.jvp(fn, (x,), (dx,))


def positions(x: Tensor) -> int:
    """Number of positions per sample (1 for vectors, H*W for a 2-D feature map)."""
    n = 1
    for s in x.shape[2:]:
        n *= s
    return n


class _DeclaresConstantLogdet(type(nn.Module)):
    """The type of :class:`Bijection`: an instance whose ``constant_logdet`` is not a bool once
    it is built (neither its class nor its ``__init__`` declared it) is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        layer = super().__call__(*args, **kwargs)
        if not isinstance(getattr(layer, "constant_logdet", None), bool):
            raise TypeError(
                f"{cls.__name__} does not declare constant_logdet: set it to True or False in the class "
                "(or, for a composite, in __init__ from its parts)"
            )
        return layer


class Bijection(nn.Module, metaclass=_DeclaresConstantLogdet):
    """An invertible map ``f`` with a tractable log-Jacobian determinant.

    Subclasses implement ``forward(x, context=None) -> (y, logdet)`` and
    ``inverse(y, context=None) -> x``. ``context`` is an optional conditioning tensor of
    the same batch (and spatial) shape, used by conditional couplings and ignored by
    everything else.
    """

    #: ``True`` when ``log|det J_f(x)|`` does not depend on ``x``. No default: every concrete
    #: layer declares it as a class attribute (a composite sets it in ``__init__`` from its
    #: parts); instantiating a layer that declares neither raises ``TypeError``.
    constant_logdet: bool

    #: ``True`` when the map is linear, ``f(a x + b v) = a f(x) + b f(v)`` (no offset): its
    #: derivative along a tangent is the map applied to the tangent.
    linear: bool = False

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def forward_jvp(self, x: Tensor, dx: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(f(x), J_f(x) dx)``: the map and its derivative along ``dx`` (the context held fixed)."""
        if self.linear:
            return self(x, context)[0], self(dx, context)[0]
        return autodiff_jvp(lambda v: self(v, context)[0], x, dx)

    def inverse_jvp(self, y: Tensor, dy: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(f^-1(y), J_{f^-1}(y) dy)``: the inverse and its derivative along ``dy``."""
        if self.linear:
            return self.inverse(y, context), self.inverse(dy, context)
        return autodiff_jvp(lambda v: self.inverse(v, context), y, dy)

    def forward_positions(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(y, logdet per position)``, the second of shape ``(batch, *spatial)`` (``(batch,)`` for
        vectors) and summing over the positions to ``forward``'s log-det.

        A layer with a constant log-det spreads it evenly over the positions of ``y`` (exact
        for layers that act on every position alike: ActNorm, LU 1x1 convolutions); a layer
        whose log-det depends on the input overrides this.
        """
        if not self.constant_logdet:
            raise NotImplementedError(f"{type(self).__name__} does not split its log-det over positions")
        y, logdet = self(x, context)
        return y, spread_logdet(logdet, y)


def spread_logdet(logdet: Tensor, y: Tensor) -> Tensor:
    """A per-sample log-det ``(batch,)`` shared evenly by the positions of ``y``."""
    return (logdet / positions(y)).view(-1, *[1] * (y.dim() - 2)).expand(y.shape[:1] + y.shape[2:])


class Sequential(Bijection):
    """Composition ``f = f_n o ... o f_1``; log-dets add up.

    ``constant_logdet`` is the conjunction over the layers (an instance attribute here,
    since it depends on what was composed).
    """

    def __init__(self, layers: Iterable[Bijection]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        for layer in self.layers:
            if not isinstance(layer, Bijection):
                raise TypeError(f"Sequential takes Bijection layers, got {type(layer).__name__}")
        self.constant_logdet = all(layer.constant_logdet for layer in self.layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, context)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y, context)
        return y

    def forward_jvp(self, x: Tensor, dx: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        for layer in self.layers:
            x, dx = layer.forward_jvp(x, dx, context)
        return x, dx

    def inverse_jvp(self, y: Tensor, dy: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        for layer in reversed(self.layers):
            y, dy = layer.inverse_jvp(y, dy, context)
        return y, dy

    def forward_positions(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = spread_logdet(x.new_zeros(x.shape[0]), x)
        for layer in self.layers:
            x, ld = layer.forward_positions(x, context)
            if ld.shape != total.shape:
                raise ValueError(
                    f"{type(layer).__name__} moves positions ({tuple(total.shape[1:])} to {tuple(ld.shape[1:])}): "
                    "a per-position log-det needs layers that keep them"
                )
            total = total + ld
        return x, total


class Conjugate(Bijection):
    """``outer^-1 o inner o outer``: the inner map seen in the basis chosen by ``outer``.

    ``outer`` must have a constant log-det, so its two contributions cancel exactly and the
    block's log-det is the inner one: an additive coupling conjugated by an LU linear map
    is still volume preserving, yet it mixes all coordinates.
    """

    def __init__(self, inner: Bijection, outer: Bijection):
        super().__init__()
        if not outer.constant_logdet:
            raise ValueError("Conjugate needs an outer map with a constant log-det")
        self.inner = inner
        self.outer = outer
        self.constant_logdet = inner.constant_logdet

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, ld_outer = self.outer(x, context)
        h, ld_inner = self.inner(h, context)
        # outer^-1 contributes exactly -ld_outer (a constant), so only ld_inner remains.
        del ld_outer
        return self.outer.inverse(h, context), ld_inner

    def forward_positions(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, _ = self.outer(x, context)
        h, ld_inner = self.inner.forward_positions(h, context)
        return self.outer.inverse(h, context), ld_inner

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        h, _ = self.outer(y, context)
        h = self.inner.inverse(h, context)
        return self.outer.inverse(h, context)

    def forward_jvp(self, x: Tensor, dx: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, dh = self.outer.forward_jvp(x, dx, context)
        h, dh = self.inner.forward_jvp(h, dh, context)
        return self.outer.inverse_jvp(h, dh, context)

    def inverse_jvp(self, y: Tensor, dy: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, dh = self.outer.forward_jvp(y, dy, context)
        h, dh = self.inner.inverse_jvp(h, dh, context)
        return self.outer.inverse_jvp(h, dh, context)
