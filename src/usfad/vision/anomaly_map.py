"""From per-level negative log-likelihood maps to one anomaly map per image, and an image score.

The heads give, for each feature level ``l``, a map ``[B, h_l, w_l]`` (higher = more
anomalous, typically the per-position NLL). :func:`anomaly_map` upsamples each level
bilinearly to the image size, combines the levels, and smooths every image with a Gaussian
(sigma 4 by default). Every step acts on each image alone: nothing is normalised over the
batch, so an image's map and score never depend on which other images share its batch.

Combination rules (``combine``):

- ``"mean"`` (default) / ``"sum"`` / ``"max"`` of the level maps;
- ``"likelihood"``: ``1 - mean_l exp(-m_l)``, the per-level likelihoods averaged (FastFlow's
  rule; meaningful when ``m_l`` is a per-dimension NLL, e.g. ``0.5 * mean_c z_c^2``);
- any callable taking the upsampled levels stacked as ``[L, B, H, W]`` and returning ``[B, H, W]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Combine = str | Callable[[Tensor], Tensor]

_RULES: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda s: s.mean(0),
    "sum": lambda s: s.sum(0),
    "max": lambda s: s.amax(0),
    "likelihood": lambda s: 1.0 - torch.exp(-s).mean(0),
}
COMBINE_RULES = tuple(_RULES)


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def upsample_levels(level_maps: Sequence[Tensor], image_size: int | Sequence[int]) -> Tensor:
    """Each ``[B, h_l, w_l]`` level bilinearly resized to the image size, stacked: ``[L, B, H, W]``."""
    if not level_maps:
        raise ValueError("need at least one level map")
    batch = level_maps[0].shape[0]
    for lm in level_maps:
        if lm.ndim != 3 or lm.shape[0] != batch:
            raise ValueError(
                f"level maps must be [B, h, w] with the same B; got {[tuple(m.shape) for m in level_maps]}"
            )
    size = _hw(image_size)
    return torch.stack(
        [F.interpolate(lm[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0] for lm in level_maps]
    )


def combine_levels(stacked: Tensor, combine: Combine = "mean") -> Tensor:
    """``[L, B, H, W]`` to ``[B, H, W]`` by the rule ``combine`` (a name or a callable)."""
    if callable(combine):
        out = combine(stacked)
    elif combine in _RULES:
        out = _RULES[combine](stacked)
    else:
        raise ValueError(f"combine must be one of {COMBINE_RULES} or a callable, got {combine!r}")
    if out.shape != stacked.shape[1:]:
        raise ValueError(f"combine must return [B, H, W] = {tuple(stacked.shape[1:])}, got {tuple(out.shape)}")
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tensor:
    """A normalised 1-D Gaussian of width ``2 * ceil(truncate * sigma) + 1``."""
    radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: Tensor, sigma: float = 4.0) -> Tensor:
    """Smooth each ``[H, W]`` map of ``[B, H, W]`` separately (reflect padding); ``sigma <= 0``: unchanged."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    r = len(k) // 2
    x = maps[:, None]
    # reflect padding needs pad < size; fall back to replicate on tiny maps
    mode = "reflect" if r < min(maps.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return x[:, 0]


def anomaly_map(
    level_maps: Sequence[Tensor], image_size: int | Sequence[int], combine: Combine = "mean", sigma: float = 4.0
) -> Tensor:
    """Per-level maps ``[B, h_l, w_l]`` to one anomaly map per image, ``[B, H, W]`` (see module docstring)."""
    return gaussian_blur(combine_levels(upsample_levels(level_maps, image_size), combine), sigma)


def image_scores(maps: Tensor, top_k: int | None = None) -> Tensor:
    """One score per image: the maximum of its map, or the mean of its ``top_k`` largest pixels."""
    flat = maps.flatten(1)  # not reshape(len(maps), -1): an exported graph must keep the batch dynamic
    if top_k is None:
        return flat.amax(1)
    if not 1 <= top_k <= flat.shape[1]:
        raise ValueError(f"top_k must be in 1..{flat.shape[1]} (pixels per map), got {top_k}")
    return flat.topk(top_k, dim=1).values.mean(1)
