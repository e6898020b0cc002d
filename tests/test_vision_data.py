"""MVTec-layout image folders, the synthetic generator, Fashion-MNIST IDX files."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

Image = pytest.importorskip("PIL.Image")

from usfad.errors import DataError  # noqa: E402
from usfad.vision.data import (  # noqa: E402
    FashionMNISTOneClass,
    ImageFolderDataset,
    ImageSample,
    is_fashion_mnist,
    make_synthetic_dataset,
    read_idx,
)
from vision_standin import fake_fashion_mnist  # noqa: E402

MAGNETIC_TILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "magnetic_tile"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "tex", n_train=6, n_test_good=3, n_test_defect=4)


def test_synthetic_set_has_mvtec_layout_and_labels(synthetic):
    train = ImageFolderDataset(synthetic, "train", image_size=32)
    test = ImageFolderDataset(synthetic, "test", image_size=32)
    assert len(train) == 6 and train.labels.sum() == 0
    assert len(test) == 7 and test.labels.sum() == 4
    assert test.counts()["good"] == 3 and sum(test.counts().values()) == 7
    assert set(test.defect_types) - {"good"} <= {"blob", "scratch"}
    assert test.has_masks


def test_items_are_rgb_unit_images_with_binary_masks(synthetic):
    test = ImageFolderDataset(synthetic, "test", image_size=(40, 48))
    for i in range(len(test)):
        item = test[i]
        assert isinstance(item, ImageSample)
        assert item.image.shape == (3, 40, 48) and item.image.dtype == torch.float32
        assert item.image.min() >= 0 and item.image.max() <= 1
        assert item.mask.shape == (1, 40, 48)
        assert set(item.mask.unique().tolist()) <= {0.0, 1.0}
        assert (item.mask.sum() > 0) == (item.label == 1)  # planted defects have masks; good images are zeros
    assert test.masks().shape == (7, 40, 48)


def test_planted_defect_lies_under_its_mask(synthetic):
    test = ImageFolderDataset(synthetic, "test", image_size=64)  # generated size: no resampling
    i = int(np.flatnonzero(test.labels)[0])
    item = test[i]
    inside = item.image[:, item.mask[0] > 0].mean(dim=0)
    expected = 30 / 255 if test.defect_types[i] == "blob" else 245 / 255
    assert torch.allclose(inside, torch.full_like(inside, expected), atol=1 / 255)


def test_synthetic_generator_is_deterministic(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_train=2, n_test_good=1, n_test_defect=2, seed=5)
    b = make_synthetic_dataset(tmp_path / "b", n_train=2, n_test_good=1, n_test_defect=2, seed=5)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def test_grayscale_images_become_three_equal_channels_and_masks_binarise_at_128(tmp_path):
    root = tmp_path / "gray"
    for d in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (root / d).mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "train/good/a.jpg")
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "test/good/a.png")
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(root / "test/dent/x.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[0, :] = 127  # anti-aliased edge: below the cut
    mask[1, :] = 128
    Image.fromarray(mask).save(root / "ground_truth/dent/x_mask.png")
    test = ImageFolderDataset(root, "test", image_size=8)
    item = test[test.defect_types.index("dent")]
    assert torch.equal(item.image[0], item.image[2]) and abs(item.image[0, 0, 0].item() - 200 / 255) < 1e-6
    assert item.mask[0, 0].sum() == 0 and item.mask[0, 1].sum() == 8 and item.mask.sum() == 8
    assert ImageFolderDataset(root, "train", image_size=8)[0].image.shape == (3, 8, 8)


def test_collated_batches_keep_the_sample_fields(synthetic):
    loader = torch.utils.data.DataLoader(ImageFolderDataset(synthetic, "test", image_size=16), batch_size=4)
    batch = next(iter(loader))
    assert batch.image.shape == (4, 3, 16, 16) and batch.mask.shape == (4, 1, 16, 16)
    assert batch.label.shape == (4,) and len(batch.path) == 4


def test_layout_errors_name_the_missing_folder(tmp_path, synthetic):
    with pytest.raises(DataError, match="no such directory"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing folder train/"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "empty" / "train").mkdir()
    with pytest.raises(DataError, match="train/good/"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="split must be one of"):
        ImageFolderDataset(synthetic, "val")


def test_missing_masks_are_an_error_unless_allowed(tmp_path, synthetic):
    root = tmp_path / "nomask"
    shutil.copytree(synthetic, root)
    shutil.rmtree(root / "ground_truth")
    with pytest.raises(DataError, match="missing ground_truth/"):
        ImageFolderDataset(root, "test")
    test = ImageFolderDataset(root, "test", image_size=16, require_masks=False)
    assert not test.has_masks and test.labels.sum() == 4 and test[len(test) - 1].mask.sum() == 0


def test_fashion_mnist_one_class_split(tmp_path):
    fake_fashion_mnist(tmp_path, n_train=20, n_test=10)
    assert is_fashion_mnist(tmp_path) and not is_fashion_mnist(tmp_path / "x")
    assert read_idx(tmp_path / "train-images-idx3-ubyte.gz").shape == (20, 28, 28)
    train = FashionMNISTOneClass(tmp_path, normal_class=3, split="train", image_size=28)
    test = FashionMNISTOneClass(tmp_path, normal_class=3, split="test", image_size=32)
    assert len(train) == 2 and train.labels.sum() == 0
    assert len(test) == 10 and test.labels.tolist() == [int(k != 3) for k in range(10)]
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")[3]
    assert torch.allclose(train[0].image[1], torch.from_numpy(raw).float() / 255)
    assert test[0].image.shape == (3, 32, 32)
    with pytest.raises(DataError, match="missing train-images"):
        FashionMNISTOneClass(tmp_path / "x")


@pytest.mark.skipif(not MAGNETIC_TILE.is_dir(), reason="Magnetic Tile data absent")
def test_magnetic_tile_counts_match_its_readme():
    train = ImageFolderDataset(MAGNETIC_TILE, "train")
    test = ImageFolderDataset(MAGNETIC_TILE, "test")
    assert len(train) == 761
    assert test.counts() == {"blowhole": 115, "break": 85, "crack": 57, "fray": 32, "good": 191, "uneven": 103}
    assert test.has_masks


def test_image_files_lists_files_and_folders_and_names_what_is_missing(tmp_path):
    from usfad.vision.data import image_files

    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/2.png", "a/b/1.JPG", "a/notes.txt", "c.webp"):
        (tmp_path / name).write_bytes(b"")
    assert image_files([tmp_path / "c.webp", tmp_path / "a"]) == [
        tmp_path / "c.webp",
        tmp_path / "a" / "2.png",
        tmp_path / "a" / "b" / "1.JPG",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files"):
        image_files([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="no image file or folder at"):
        image_files([tmp_path / "nope.png"])
