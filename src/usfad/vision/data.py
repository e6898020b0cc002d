"""Image data for the image detectors: folders in MVTec AD layout, a synthetic generator, Fashion-MNIST.

The MVTec AD layout of one category (``root``)::

    root/train/good/*.png|jpg|...           defect-free training images
    root/test/good/*                         defect-free test images (label 0)
    root/test/<defect>/*                     defective test images (label 1)
    root/ground_truth/<defect>/<name>_mask.png   pixel mask of test/<defect>/<name>.*

Every item is an :class:`ImageSample` ``(image, label, mask, path)``: the image ``float
[3, S, S]`` RGB in ``[0, 1]`` (grayscale images are repeated on three channels), the label
0/1, the mask ``float [1, S, S]`` with values 0/1 (all zeros for good images; masks are
binarised at ``>= 128`` after resizing) and the file path. ``torch``'s default collate turns
a batch into an ``ImageSample`` of stacked tensors and a list of paths.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
GOOD = "good"
SPLITS = ("train", "test")

PathLike = str | os.PathLike[str]


class ImageSample(NamedTuple):
    image: Tensor  # [3, H, W] float in [0, 1]
    label: int  # 0 good, 1 defective
    mask: Tensor  # [1, H, W] float 0/1
    path: str


def _pil() -> object:
    try:
        from PIL import Image  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading images needs pillow: pip install usfad[vision] ({err})") from err
    return Image


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width)."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return h, w


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_resized(path: PathLike, image_size: int | tuple[int, int], mode: str, what: str) -> np.ndarray:
    """The file at ``path`` in PIL ``mode``, resized (bilinear) to ``image_size``, as an array."""
    Image = _pil()
    h, w = _size(image_size)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode).resize((w, h), Image.BILINEAR), dtype=np.uint8).copy()
    except OSError as err:
        raise DataError(f"{path}: not a readable {what} ({err})") from err


def read_image(path: PathLike, image_size: int | tuple[int, int]) -> Tensor:
    """An image file as ``float [3, H, W]`` RGB in ``[0, 1]``, resized (bilinear) to ``image_size``."""
    rgb = _read_resized(path, image_size, "RGB", "image")
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def read_mask(path: PathLike, image_size: int | tuple[int, int]) -> Tensor:
    """A mask file as ``float [1, H, W]`` 0/1: resized (bilinear, area-aware) then binarised at ``>= 128``."""
    gray = _read_resized(path, image_size, "L", "mask")
    return torch.from_numpy((gray >= 128).astype(np.float32))[None]


def image_files(paths: Iterable[PathLike]) -> list[Path]:
    """The image files (:data:`IMAGE_EXTENSIONS`) that ``paths`` name, in order: a file as itself,
    a folder as every image below it (recursively, sorted). A folder without images is a
    :class:`~usfad.errors.DataError`, a missing path a ``FileNotFoundError``."""
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no image file or folder at {path}")
    return files


class ImageFolderDataset(Dataset):
    """One category in MVTec AD layout (see the module docstring).

    ``require_masks=False`` accepts defective test images without a mask file (their mask is
    all zeros and ``has_masks`` is False, so pixel metrics must be skipped).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        image_size: int | tuple[int, int] = 256,
        require_masks: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.image_size = _size(image_size)
        self.samples = self._scan(require_masks)  # (image path, label, mask path or None, defect type)
        self.has_masks = all(m is not None for _, y, m, _ in self.samples if y == 1)

    def _scan(self, require_masks: bool) -> list[tuple[Path, int, Path | None, str]]:
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such directory (expected a category folder in MVTec AD layout)")
        split_dir = self.root / self.split
        if not split_dir.is_dir():
            raise DataError(f"{self.root}: missing folder {self.split}/ (MVTec AD layout: train/good, test/<type>)")
        if self.split == "train":
            classes = [GOOD]
            if not (split_dir / GOOD).is_dir():
                raise DataError(f"{self.root}: missing folder train/good/ holding the defect-free training images")
        else:
            classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
            if not classes:
                raise DataError(f"{split_dir}: no sub-folders; expected test/good/ and test/<defect type>/")
        samples = []
        for cls in classes:
            files = _images_in(split_dir / cls)
            if not files:
                raise DataError(f"{split_dir / cls}: no images ({', '.join(IMAGE_EXTENSIONS)})")
            for f in files:
                if cls == GOOD:
                    samples.append((f, 0, None, cls))
                    continue
                mask = self.root / "ground_truth" / cls / f"{f.stem}_mask.png"
                if not mask.is_file():
                    if require_masks:
                        missing = "ground_truth/" if not (self.root / "ground_truth").is_dir() else f"mask {mask}"
                        raise DataError(
                            f"{self.root}: missing {missing} for defective image {f.name} "
                            f"(expected ground_truth/{cls}/{f.stem}_mask.png; require_masks=False to go without)"
                        )
                    mask = None
                samples.append((f, 1, mask, cls))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> ImageSample:
        path, label, mask_path, _ = self.samples[index]
        image = read_image(path, self.image_size)
        mask = torch.zeros(1, *self.image_size) if mask_path is None else read_mask(mask_path, self.image_size)
        return ImageSample(image, label, mask, str(path))

    @property
    def labels(self) -> np.ndarray:
        """0/1 label of every image, in item order."""
        return np.array([y for _, y, _, _ in self.samples], dtype=np.int64)

    @property
    def defect_types(self) -> list[str]:
        """Sub-folder name of every image (``"good"`` or the defect type), in item order."""
        return [t for _, _, _, t in self.samples]

    @property
    def paths(self) -> list[str]:
        return [str(p) for p, _, _, _ in self.samples]

    def counts(self) -> dict[str, int]:
        """Number of images per sub-folder."""
        types, n = np.unique(self.defect_types, return_counts=True)
        return {str(t): int(c) for t, c in zip(types, n)}

    def masks(self) -> np.ndarray:
        """All masks as ``uint8 [N, H, W]`` 0/1 (reads only the mask files)."""
        out = np.zeros((len(self), *self.image_size), dtype=np.uint8)
        for i, (_, _, mask_path, _) in enumerate(self.samples):
            if mask_path is not None:
                out[i] = read_mask(mask_path, self.image_size)[0].numpy().astype(np.uint8)
        return out

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r}, split={self.split!r}, n={len(self)}, counts={self.counts()})"


# --- a synthetic category for tests and demos -------------------------------------------


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A woven-like RGB texture: two random gratings plus noise, uint8 [size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    f1, f2 = rng.uniform(0.15, 0.25, size=2)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    base = 0.5 + 0.2 * np.sin(f1 * xx + phase[0]) * np.sin(f2 * yy + phase[1])
    base = base + rng.normal(0, 0.03, size=(size, size))
    tint = np.array([0.9, 0.8, 0.6]) + rng.normal(0, 0.02, size=3)
    return (np.clip(base[..., None] * tint, 0, 1) * 255).astype(np.uint8)


def _defect(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A boolean defect region (a blob or a scratch) and its type."""
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.25, 0.75, size=2) * size
    if rng.random() < 0.5:
        r = rng.uniform(0.06, 0.12) * size
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2, "blob"
    angle = rng.uniform(0, np.pi)
    dist = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
    along = np.abs((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle))
    return (dist <= max(1.0, 0.02 * size)) & (along <= 0.3 * size), "scratch"


def make_synthetic_dataset(
    root: PathLike,
    n_train: int = 20,
    n_test_good: int = 5,
    n_test_defect: int = 5,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a small textured category with planted defects in MVTec AD layout under ``root``.

    Defects are dark blobs or bright scratches (types ``blob`` and ``scratch``); each has its
    ``_mask.png``. Deterministic in ``seed``. Returns ``root``.
    """
    Image = _pil()
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "train" / GOOD).mkdir(parents=True, exist_ok=True)
    (root / "test" / GOOD).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(_texture(rng, image_size)).save(root / "train" / GOOD / f"{i:03d}.png")
    for i in range(n_test_good):
        Image.fromarray(_texture(rng, image_size)).save(root / "test" / GOOD / f"{i:03d}.png")
    for i in range(n_test_defect):
        img = _texture(rng, image_size).astype(np.float64)
        region, kind = _defect(rng, image_size)
        img[region] = 30.0 if kind == "blob" else 245.0
        for sub in ("test", "ground_truth"):
            (root / sub / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(root / "test" / kind / f"{i:03d}.png")
        Image.fromarray(region.astype(np.uint8) * 255).save(root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root


# --- Fashion-MNIST (one class normal) ---------------------------------------------------

_FASHION_FILES = {"train": "train-{}-idx{}-ubyte.gz", "test": "t10k-{}-idx{}-ubyte.gz"}


def read_idx(path: PathLike) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes as a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read IDX file ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says shape {tuple(dims)} but holds {body.size} values")
    return body.reshape(tuple(int(d) for d in dims)).copy()  # writable, independent of the file buffer


def is_fashion_mnist(root: PathLike) -> bool:
    """Whether ``root`` holds Fashion-MNIST's training images file (the original IDX name)."""
    return (Path(root) / _FASHION_FILES["train"].format("images", 3)).is_file()


class FashionMNISTOneClass(Dataset):
    """Fashion-MNIST as a one-class task: ``normal_class`` is normal (0), the others anomalies (1).

    ``root`` holds the four original ``.gz`` IDX files. The train split keeps the normal
    class only; the test split keeps every test image. Items are :class:`ImageSample` with
    the 28x28 image resized to ``image_size``, repeated on three channels, and a zero mask.
    """

    has_masks = False  # image-level labels only

    def __init__(self, root: PathLike, normal_class: int = 0, split: str = "train", image_size: int = 32) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0 <= int(normal_class) <= 9:
            raise ValueError(f"normal_class must be in 0..9, got {normal_class}")
        root = Path(root)
        names = [root / _FASHION_FILES[split].format(kind, n) for kind, n in (("images", 3), ("labels", 1))]
        for f in names:
            if not f.is_file():
                raise DataError(f"{root}: missing {f.name} (the original Fashion-MNIST IDX files)")
        images, classes = read_idx(names[0]), read_idx(names[1])
        keep = classes == normal_class if split == "train" else np.ones(len(classes), dtype=bool)
        self.images = torch.from_numpy(images[keep])
        self.classes = classes[keep].astype(np.int64)
        self.normal_class = int(normal_class)
        self.image_size = _size(image_size)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        return (self.classes != self.normal_class).astype(np.int64)

    def __getitem__(self, index: int) -> ImageSample:
        x = self.images[index].float().div(255.0)[None, None]
        if tuple(x.shape[-2:]) != self.image_size:
            x = torch.nn.functional.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        image = x[0].expand(3, -1, -1).clone()
        label = int(self.classes[index] != self.normal_class)
        return ImageSample(image, label, torch.zeros(1, *self.image_size), f"fashion_mnist:{index}")
