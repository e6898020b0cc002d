"""Coupling layers: the only input-dependent parts of a flow.

The input is split along dimension 1 into a conditioning part ``a`` and a transformed
part ``b`` (``swap`` exchanges the roles, so consecutive blocks alternate masks). A
conditioner network ``g`` reads ``a`` (and an optional context):

- :class:`AdditiveCoupling`: ``b' = b + t(a)``; ``log|det J| = 0`` for every input.
- :class:`AffineCoupling`: ``b' = b * exp(clamp * tanh(s(a))) + t(a)``;
  ``log|det J| = sum(clamp * tanh(s(a)))``, which varies with the input.
- :class:`GINCoupling`: the affine coupling with its log-scales centred, so that they sum
  to zero (the "general incompressible-flow" coupling of Sorrenson et al., ICLR 2020):
  ``log|det J| = 0`` for every input, yet each feature is rescaled depending on ``a``.

Additive or affine is the USF / non-USF switch. The GIN coupling differs from the affine
one only by the centring: the USF constraint itself, and nothing else, separates the two.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .base import Bijection
from .subnets import SubnetFactory, module_jvp


class _Coupling(Bijection):
    #: conditioner outputs per transformed feature
    params_per_feature: int = 1

    def __init__(self, features: int, subnet: SubnetFactory, swap: bool = False, context_features: int = 0):
        super().__init__()
        if features < 1:
            raise ValueError(f"features must be >= 1, got {features}")
        self.features = features
        self.swap = bool(swap)
        first = features // 2
        self.sizes = (first, features - first)
        n_cond, n_trans = (self.sizes[1], self.sizes[0]) if self.swap else self.sizes
        if n_trans == 0:  # one feature: condition on nothing, transform it
            n_cond, n_trans = 0, features
        self.n_cond, self.n_trans = n_cond, n_trans
        with warnings.catch_warnings():  # an empty conditioning input is fine: it learns a shift
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.conditioner = subnet(n_cond + context_features, self.params_per_feature * n_trans)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.swap:
            b, a = x[:, : self.n_trans], x[:, self.n_trans :]
        else:
            a, b = x[:, : self.n_cond], x[:, self.n_cond :]
        return a, b

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat((b, a) if self.swap else (a, b), dim=1)

    def _params(self, a: Tensor, context: Tensor | None) -> Tensor:
        inp = a if context is None else torch.cat((a, context), dim=1)
        return self.conditioner(inp)

    def _couple(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor | None]:
        a, b = self._split(x)
        b, log_scale = self._transform(b, self._params(a, context))
        return self._merge(a, b), log_scale

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, log_scale = self._couple(x, context)
        return y, x.new_zeros(x.shape[0]) if log_scale is None else log_scale.flatten(1).sum(1)

    def forward_positions(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, log_scale = self._couple(x, context)
        return y, x.new_zeros(x.shape[:1] + x.shape[2:]) if log_scale is None else log_scale.sum(1)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        a, b = self._split(y)
        return self._merge(a, self._untransform(b, self._params(a, context)))

    def _transform(self, b: Tensor, params: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(b', log-scale of every element of b)``; ``None`` for a volume-preserving transform."""
        raise NotImplementedError

    def _untransform(self, b: Tensor, params: Tensor) -> Tensor:
        raise NotImplementedError

    # --- derivatives along a direction: the conditioner's by hand, then the transform's
    def _params_jvp(self, a: Tensor, da: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if context is not None:
            a, da = torch.cat((a, context), dim=1), torch.cat((da, torch.zeros_like(context)), dim=1)
        return module_jvp(self.conditioner, a, da)

    def _transform_jvp(self, b: Tensor, db: Tensor, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor]:
        """``(b', db')`` of ``_transform`` along ``(db, dparams)``."""
        raise NotImplementedError

    def _untransform_jvp(self, b: Tensor, db: Tensor, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor]:
        """``(b, db)`` of ``_untransform`` along ``(db', dparams)``."""
        raise NotImplementedError

    def forward_jvp(self, x: Tensor, dx: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        (a, b), (da, db) = self._split(x), self._split(dx)
        params, dparams = self._params_jvp(a, da, context)
        b, db = self._transform_jvp(b, db, params, dparams)
        return self._merge(a, b), self._merge(da, db)

    def inverse_jvp(self, y: Tensor, dy: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        (a, b), (da, db) = self._split(y), self._split(dy)
        params, dparams = self._params_jvp(a, da, context)
        b, db = self._untransform_jvp(b, db, params, dparams)
        return self._merge(a, b), self._merge(da, db)


class AdditiveCoupling(_Coupling):
    """``b' = b + t(a)``: volume preserving, so a USF building block."""

    constant_logdet = True
    params_per_feature = 1

    def _transform(self, b: Tensor, params: Tensor) -> tuple[Tensor, None]:
        return b + params, None

    def _untransform(self, b: Tensor, params: Tensor) -> Tensor:
        return b - params

    def _transform_jvp(self, b: Tensor, db: Tensor, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor]:
        return b + params, db + dparams

    def _untransform_jvp(self, b: Tensor, db: Tensor, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor]:
        return b - params, db - dparams


class AffineCoupling(_Coupling):
    """``b' = b * exp(clamp * tanh(s(a))) + t(a)``: the non-USF control."""

    constant_logdet = False
    params_per_feature = 2

    def __init__(
        self,
        features: int,
        subnet: SubnetFactory,
        swap: bool = False,
        context_features: int = 0,
        clamp: float = 2.0,
    ):
        super().__init__(features, subnet, swap, context_features)
        if not clamp > 0:
            raise ValueError(f"clamp must be > 0, got {clamp}")
        self.clamp = float(clamp)

    def _log_scale_shift(self, params: Tensor) -> tuple[Tensor, Tensor]:
        s, t = params.chunk(2, dim=1)
        return self.clamp * torch.tanh(s), t

    def _transform(self, b: Tensor, params: Tensor) -> tuple[Tensor, Tensor | None]:
        log_scale, shift = self._log_scale_shift(params)
        return b * torch.exp(log_scale) + shift, log_scale

    def _untransform(self, b: Tensor, params: Tensor) -> Tensor:
        log_scale, shift = self._log_scale_shift(params)
        return (b - shift) * torch.exp(-log_scale)

    def _log_scale_shift_jvp(self, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(log_scale, shift, d log_scale, d shift)``."""
        (s, t), (ds, dt) = params.chunk(2, dim=1), dparams.chunk(2, dim=1)
        tanh = torch.tanh(s)
        return self.clamp * tanh, t, self.clamp * (1 - tanh * tanh) * ds, dt

    def _transform_jvp(self, b: Tensor, db: Tensor, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift, dlog, dshift = self._log_scale_shift_jvp(params, dparams)
        scale = torch.exp(log_scale)
        return b * scale + shift, (db + b * dlog) * scale + dshift

    def _untransform_jvp(self, b: Tensor, db: Tensor, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift, dlog, dshift = self._log_scale_shift_jvp(params, dparams)
        x = (b - shift) * torch.exp(-log_scale)
        return x, (db - dshift) * torch.exp(-log_scale) - x * dlog


class GINCoupling(AffineCoupling):
    """``b' = b * exp(l - mean(l)) + t(a)`` with ``l = clamp * tanh(s(a))``: volume preserving.

    The log-scales are centred over the transformed features (over the channels at each
    position of a feature map), so every position keeps its volume while the coupling
    still stretches some features and shrinks others depending on the input: a USF
    building block with input-dependent anisotropic scaling, which additive couplings lack.
    """

    constant_logdet = True

    def _log_scale_shift(self, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = super()._log_scale_shift(params)
        return log_scale - log_scale.mean(1, keepdim=True), shift

    def _log_scale_shift_jvp(self, params: Tensor, dparams: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        log_scale, shift, dlog, dshift = super()._log_scale_shift_jvp(params, dparams)
        return log_scale - log_scale.mean(1, keepdim=True), shift, dlog - dlog.mean(1, keepdim=True), dshift

    def _transform(self, b: Tensor, params: Tensor) -> tuple[Tensor, None]:
        y, _ = super()._transform(b, params)
        return y, None  # the centred log-scales sum to 0 at every position (up to rounding)
