"""Stand-ins for fast vision tests: a tiny frozen backbone (two levels, strides 2 and 4), textured
images, and a fake Fashion-MNIST folder (the original IDX file names and format)."""

import gzip
import struct

import numpy as np
import torch
from torch import nn


class TinyBackbone(nn.Module):
    """Random two-level conv net with the Backbone interface: ``name``, ``channels``, ``reductions``."""

    name = "tiny"
    channels = [8, 16]
    reductions = [2, 4]

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        a = torch.tanh(self.a(images))
        return [a, torch.tanh(self.b(a))]


def textured_images(n: int, size: int = 32, seed: int = 0, defect: bool = False) -> torch.Tensor:
    """``[n, 3, size, size]`` stripes plus noise in [0, 1]; ``defect=True`` adds a dark square."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(size, dtype=torch.float32)
    stripes = 0.5 + 0.3 * torch.sin(x / 2.0)[None, :].expand(size, size)
    images = (stripes + 0.05 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    if defect:
        images[:, :, size // 4 : size // 2, size // 4 : size // 2] = 0.0
    return images


def write_idx(path, array) -> None:
    """``array`` (unsigned bytes) as a gzipped IDX file."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(root, n_train: int = 20, n_test: int = 10, seed: int = 0):
    """Random 28x28 images with labels ``0, 1, ..., 9, 0, ...`` in Fashion-MNIST's four IDX files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root
