"""Flow heads on frozen-backbone feature maps: FastFlow, CFlow and U-Flow.

Each head is a plain ``nn.Module`` (the network only: the training loop lives in
:mod:`usfad.vision.detector`, the map post-processing in :mod:`usfad.vision.anomaly_map`).
It reads the backbone's feature maps, one ``(batch, C_l, h_l, w_l)`` tensor per level, and
offers three things:

- ``loss(features) -> (batch,)``: negative log-likelihood per dimension under the base
  ``N(0, I)``, ``(||z||^2 / 2 - log|det J|) / D + log(2 pi) / 2`` (the training objective);
- ``anomaly_maps(features) -> [(batch, h_l, w_l), ...]``: one map per level, higher = more
  anomalous, at that level's resolution;
- ``logdet(features) -> (batch,)``: the head's total ``log|det J|``;
- ``density_maps(features)``: like ``anomaly_maps``, but always the head's density: the
  per-position NLL per dimension with the log-det included (split over the positions by
  :meth:`usfad.flows.Bijection.forward_positions`). A USF head's density map differs from
  its FastFlow or U-Flow map ``||z||^2 / 2k`` by one constant per level; an affine head's
  does not: there the two rank pixels differently. CFlow's map is its density already.

Every flow comes from :func:`usfad.flows.build_flow` with ``actnorm=True``; the switch
``flow="usf" | "usf-gin" | "affine"`` goes straight to it and changes nothing but the
couplings. With ``"usf"`` every block is ActNorm followed by an additive coupling conjugated
by an LU 1x1 convolution, so ``logdet`` is the same for every input (``constant_logdet`` is
``True``); ``"usf-gin"`` has GIN couplings there (affine, log-scales centred to sum zero over
the channels at each position), so it is a USF too, with input-dependent rescaling.

The heads follow the published models in shape, not in code:

- :class:`FastFlowHead` (Yu et al. 2021): per level a 2-D flow on the feature map,
  conditioners alternating 3x3 and 1x1 convolutions; map = ``||z||^2 / 2C`` per position.
- :class:`CFlowHead` (Gudovskiy et al. 2022): per level a flow on ``C``-dim fibres (the
  feature vector at one position) conditioned on a 2-D sinusoidal positional encoding,
  trained on ``fibres_per_image`` random positions per image; map = the fibre's NLL per
  dimension, log-det included.
- :class:`UFlowHead` (Tailanian et al. 2022): one U-shaped flow over all levels, coarsest
  first; each scale's output is split, one part is that scale's latent, the other goes up
  to the next finer scale by an invertible depth-to-space and joins its features. Map per
  scale = ``||z||^2 / 2k`` over its ``k`` latent channels. U-Flow merges scales by the
  product of their likelihoods; the detector's mean of per-scale NLL maps is the logarithm
  of that product (up to a factor), so the ranking of pixels is the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..flows import DepthToSpace, build_flow, check_flow, conv, mlp
from ..flows.base import spread_logdet

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _width(features: int, ratio: float) -> int:
    return max(1, int(round(features * ratio)))


def _check_levels(features: Sequence[Tensor], channels: Sequence[int]) -> None:
    got = [int(x.shape[1]) for x in features]
    if got != list(channels):
        raise ValueError(f"the head expects feature maps with channels {list(channels)}, got {got}")


class FlowHead(nn.Module):
    """The head contract (see the module docstring)."""

    #: ``True`` when ``logdet`` does not depend on the input (a USF head)
    constant_logdet: bool

    def __init__(self, channels: Sequence[int], flow: str):
        super().__init__()
        self.channels = [int(c) for c in channels]
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive integers, got {list(channels)}")
        self.flow = check_flow(flow)

    def _set_constant_logdet(self) -> None:
        flows: nn.ModuleList = self.flows  # every head keeps its flows there
        self.constant_logdet = all(f.constant_logdet for f in flows)

    def loss(self, features: Sequence[Tensor]) -> Tensor:
        raise NotImplementedError

    def anomaly_maps(self, features: Sequence[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def logdet(self, features: Sequence[Tensor]) -> Tensor:
        raise NotImplementedError

    def density_maps(self, features: Sequence[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Same as :meth:`anomaly_maps`."""
        return self.anomaly_maps(features)


class _LatentMapHead(FlowHead):
    """A head whose bijection maps all feature maps of an image to latent maps at once."""

    def levels(self, features: Sequence[Tensor], per_position: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """Latent maps ``(batch, k, h, w)`` and their log-dets, one of each per level (in level
        order); a log-det is ``(batch,)``, or ``(batch, h, w)`` split over the positions."""
        raise NotImplementedError

    def latents(self, features: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Latent maps ``(batch, k, h, w)`` (one per level, in level order) and the total log-det."""
        zs, logdets = self.levels(features)
        return zs, sum(logdets[1:], logdets[0])

    def loss(self, features: Sequence[Tensor]) -> Tensor:
        zs, logdet = self.latents(features)
        sq = sum(z.pow(2).flatten(1).sum(1) for z in zs)
        dims = sum(z[0].numel() for z in zs)
        return (0.5 * sq - logdet) / dims + HALF_LOG_2PI

    def anomaly_maps(self, features: Sequence[Tensor]) -> list[Tensor]:
        zs, _ = self.latents(features)
        return [0.5 * z.pow(2).mean(1) for z in zs]

    def logdet(self, features: Sequence[Tensor]) -> Tensor:
        return self.latents(features)[1]

    def density_maps(self, features: Sequence[Tensor]) -> list[Tensor]:
        zs, logdets = self.levels(features, per_position=True)
        return [(0.5 * z.pow(2).sum(1) - ld) / z.shape[1] + HALF_LOG_2PI for z, ld in zip(zs, logdets)]


def _conv_subnets(channels: int, hidden_ratio: float, kernel_sizes: Sequence[int]) -> list:
    hidden = _width(channels, hidden_ratio)
    sizes = [int(k) for k in kernel_sizes]
    if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError(f"kernel_sizes must be a non-empty list of odd positive integers, got {list(kernel_sizes)}")
    return [conv(hidden, kernel_size=k) for k in sizes]


class FastFlowHead(_LatentMapHead):
    """FastFlow: one 2-D flow per level (conv conditioners alternating 3x3 and 1x1).

    Parameters
    ----------
    channels: the backbone's channels per level.
    flow: ``"usf"``, ``"usf-gin"`` or ``"affine"``.
    n_blocks: blocks per level (ActNorm, LU 1x1 conv, coupling, its inverse).
    hidden_ratio: conditioner width as a multiple of the level's channels.
    clamp: bound on the affine couplings' log-scale.
    kernel_sizes: conditioner kernel sizes used by consecutive blocks in turn (FastFlow:
        3x3 / 1x1 in most of its configurations, 3x3 only for ResNet-18).
    """

    def __init__(
        self,
        channels: Sequence[int],
        flow: str = "usf",
        n_blocks: int = 4,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        kernel_sizes: Sequence[int] = (3, 1),
    ):
        super().__init__(channels, flow)
        self.flows = nn.ModuleList(
            build_flow(
                c, flow, n_blocks, clamp=clamp, subnet=_conv_subnets(c, hidden_ratio, kernel_sizes), actnorm=True
            )
            for c in self.channels
        )
        self._set_constant_logdet()

    def levels(self, features: Sequence[Tensor], per_position: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        _check_levels(features, self.channels)
        # No per-image layer norm (the original FastFlow's): it rescales a whole image by its
        # own spread, which shrinks a large defect with it. The detector standardises the
        # features per position with training statistics instead (ImageDetector.standardize).
        out = [f.forward_positions(x) if per_position else f(x) for x, f in zip(features, self.flows)]
        return [z for z, _ in out], [ld for _, ld in out]


def positional_encoding(dim: int, height: int, width: int) -> Tensor:
    """2-D sinusoidal encoding ``(dim, height, width)``: half the channels code x, half y."""
    if dim < 4 or dim % 4:
        raise ValueError(f"the positional encoding needs a dimension divisible by 4, got {dim}")
    half = dim // 2
    freq = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(10000.0) / half))
    x = torch.arange(width, dtype=torch.float64)[:, None] * freq  # (width, half/2)
    y = torch.arange(height, dtype=torch.float64)[:, None] * freq
    pe = torch.zeros(dim, height, width, dtype=torch.float64)
    pe[0:half:2] = torch.sin(x).T[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = torch.cos(x).T[:, None, :].expand(-1, height, -1)
    pe[half::2] = torch.sin(y).T[:, :, None].expand(-1, -1, width)
    pe[half + 1 :: 2] = torch.cos(y).T[:, :, None].expand(-1, -1, width)
    return pe.to(torch.get_default_dtype())


class CFlowHead(FlowHead):
    """CFlow: per level a flow on fibres, conditioned on the position's sinusoidal encoding.

    Parameters
    ----------
    channels, flow, n_blocks, clamp: as for :class:`FastFlowHead` (MLP conditioners here).
    hidden_ratio: conditioner width as a multiple of ``C + context_features``.
    context_features: size of the positional encoding (a multiple of 4).
    fibres_per_image: random positions per image and level in each training step
        (all positions in evaluation mode).
    """

    def __init__(
        self,
        channels: Sequence[int],
        flow: str = "usf",
        n_blocks: int = 4,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        context_features: int = 64,
        fibres_per_image: int = 256,
    ):
        super().__init__(channels, flow)
        positional_encoding(context_features, 1, 1)  # validates the size
        if fibres_per_image < 1:
            raise ValueError(f"fibres_per_image must be >= 1, got {fibres_per_image}")
        self.context_features = int(context_features)
        self.fibres_per_image = int(fibres_per_image)
        self.flows = nn.ModuleList(
            build_flow(
                c,
                flow,
                n_blocks,
                clamp=clamp,
                subnet=mlp((_width(c + context_features, hidden_ratio),)),
                context_features=context_features,
                actnorm=True,
            )
            for c in self.channels
        )
        self._set_constant_logdet()

    def _fibre_nll(self, level: int, x: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-fibre NLL per dimension and log-det, ``(batch, n_positions)`` each."""
        b, c, h, w = x.shape
        fibres = x.flatten(2).transpose(1, 2)  # (batch, h*w, C)
        context = positional_encoding(self.context_features, h, w).to(x).flatten(1).T  # (h*w, D)
        context = context.expand(b, -1, -1)
        if positions is not None:  # (batch, k) indices into h*w
            fibres = fibres.gather(1, positions[..., None].expand(-1, -1, c))
            context = context.gather(1, positions[..., None].expand(-1, -1, self.context_features))
        n = fibres.shape[1]
        z, ld = self.flows[level](fibres.reshape(b * n, c), context.reshape(b * n, -1))
        nll = (0.5 * z.pow(2).sum(1) - ld) / c + HALF_LOG_2PI
        return nll.view(b, n), ld.view(b, n)

    def loss(self, features: Sequence[Tensor]) -> Tensor:
        _check_levels(features, self.channels)
        total = features[0].new_zeros(features[0].shape[0])
        for level, x in enumerate(features):
            b, _, h, w = x.shape
            positions = None
            if self.training and self.fibres_per_image < h * w:
                positions = torch.randint(h * w, (b, self.fibres_per_image), device=x.device)
            total = total + self._fibre_nll(level, x, positions)[0].mean(1)
        return total / len(features)

    def anomaly_maps(self, features: Sequence[Tensor]) -> list[Tensor]:
        _check_levels(features, self.channels)
        return [self._fibre_nll(level, x, None)[0].view(x.shape[0], *x.shape[2:]) for level, x in enumerate(features)]

    density_maps = anomaly_maps  # CFlow's map is already the fibre's NLL, log-det included

    def logdet(self, features: Sequence[Tensor]) -> Tensor:
        """Sum of every fibre's log-det at every level (the head as one bijection per image)."""
        _check_levels(features, self.channels)
        return sum(self._fibre_nll(level, x, None)[1].sum(1) for level, x in enumerate(features))


class UFlowHead(_LatentMapHead):
    """U-Flow: one U-shaped flow over the levels, coarsest first (see the module docstring).

    At every scale but the finest, ``up`` channels of the flow's output (about half, rounded
    down to a multiple of ``r^2``, with ``r`` the stride ratio to the next finer level) are
    moved to the finer scale by :class:`~usfad.flows.DepthToSpace` and concatenated to its
    features; the rest is that scale's latent. Consecutive levels (sorted by stride) must
    have integer stride ratios and matching map sizes.

    Parameters
    ----------
    channels, reductions: the backbone's channels and strides per level.
    flow, n_blocks, hidden_ratio, clamp, kernel_sizes: as for :class:`FastFlowHead`.
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        flow: str = "usf",
        n_blocks: int = 4,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        kernel_sizes: Sequence[int] = (3, 1),
    ):
        super().__init__(channels, flow)
        self.reductions = [int(r) for r in reductions]
        if len(self.reductions) != len(self.channels):
            raise ValueError(f"one reduction per level expected: channels {self.channels}, reductions {reductions}")
        #: level indices from the coarsest (largest stride) to the finest
        self.order = sorted(range(len(self.channels)), key=lambda i: -self.reductions[i])
        strides = [self.reductions[i] for i in self.order]
        if any(a <= b or a % b for a, b in zip(strides, strides[1:])):
            raise ValueError(f"U-Flow needs distinct strides, each a multiple of the next finer one; got {reductions}")
        flows, ups, self.up_channels = [], [], []
        carried = 0
        for step, level in enumerate(self.order):
            features = self.channels[level] + carried
            flows.append(
                build_flow(
                    features,
                    flow,
                    n_blocks,
                    clamp=clamp,
                    subnet=_conv_subnets(features, hidden_ratio, kernel_sizes),
                    actnorm=True,
                )
            )
            if step + 1 < len(self.order):
                r = strides[step] // strides[step + 1]
                up = (features // 2) // (r * r) * (r * r)
                ups.append(DepthToSpace(r))
                carried = up // (r * r)
            else:
                up = 0
            self.up_channels.append(up)
        self.flows = nn.ModuleList(flows)
        self.ups = nn.ModuleList(ups)
        self._set_constant_logdet()

    def levels(self, features: Sequence[Tensor], per_position: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """Each scale's log-det is that of its own flow (the whole input: its features and what
        came up from the coarser scale) and is counted at that scale."""
        _check_levels(features, self.channels)
        zs: list[Tensor | None] = [None] * len(features)
        logdets: list[Tensor | None] = [None] * len(features)
        carried = None
        for step, level in enumerate(self.order):
            x = features[level]
            if carried is not None:
                if carried.shape[2:] != x.shape[2:]:
                    raise ValueError(
                        f"U-Flow: level {level} has maps of size {tuple(x.shape[2:])} but the coarser scale brings "
                        f"{tuple(carried.shape[2:])}; use an image size divisible by {max(self.reductions)}"
                    )
                x = torch.cat((x, carried), dim=1)
            y, ld = self.flows[step].forward_positions(x) if per_position else self.flows[step](x)
            keep = y.shape[1] - self.up_channels[step]
            zs[level] = y[:, :keep]
            if step < len(self.ups):
                carried, ld_up = self.ups[step](y[:, keep:])  # a reshape: 0, but counted all the same
                ld = ld + (spread_logdet(ld_up, y) if per_position else ld_up)
            logdets[level] = ld
        kept = [level for level, z in enumerate(zs) if z is not None]
        return [zs[level] for level in kept], [logdets[level] for level in kept]


HEADS = ("fastflow", "cflow", "uflow")


def build_head(
    model: str,
    channels: Sequence[int],
    reductions: Sequence[int] | None = None,
    flow: str = "usf",
    **params: float | int,
) -> FlowHead:
    """The head named ``model`` (``"fastflow"``, ``"cflow"`` or ``"uflow"``) for a backbone."""
    if model == "fastflow":
        return FastFlowHead(channels, flow, **params)
    if model == "cflow":
        return CFlowHead(channels, flow, **params)
    if model == "uflow":
        if reductions is None:
            raise ValueError("U-Flow needs the backbone's reductions (strides) per level")
        return UFlowHead(channels, reductions, flow, **params)
    raise ValueError(f"model must be one of {HEADS}, got {model!r}")
