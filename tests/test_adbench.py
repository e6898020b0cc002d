"""The ADBench loader: where it looks, what it returns, and what it says when it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import DATA, needs_data
from usfad.data.adbench import (
    ENV_VAR,
    data_root,
    datasets_by_group,
    find_dataset,
    list_datasets,
    load_dataset,
    read_npz,
    select_datasets,
)
from usfad.errors import DataError


def _write(path: Path, X: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X, y=y, **extra)
    return path


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """An ADBench-shaped root: two groups, one name in both, int-typed features."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 18 + [1] * 2)
    _write(tmp_path / "adbench/Classical/2_small.npz", rng.integers(0, 5, (20, 3)).astype(np.int16), y)
    _write(tmp_path / "adbench/Classical/10_other.npz", rng.normal(size=(20, 2)).astype(np.float32), y)
    _write(tmp_path / "adbench/NLP_a/3_news.npz", rng.normal(size=(20, 4)), y)
    _write(tmp_path / "adbench/NLP_b/3_news.npz", rng.normal(size=(20, 4)), y)
    return tmp_path / "adbench"


def test_lists_by_group_in_numeric_order(fake_root: Path) -> None:
    groups = datasets_by_group(fake_root)
    assert groups == {"Classical": ["2_small", "10_other"], "NLP_a": ["3_news"], "NLP_b": ["3_news"]}
    assert [d.name for d in list_datasets(fake_root, group="Classical")] == ["2_small", "10_other"]


def test_loads_as_float64_and_int64(fake_root: Path) -> None:
    X, y = load_dataset("2_small", fake_root)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert X.shape == (20, 3) and y.tolist() == [0] * 18 + [1] * 2


def test_short_and_qualified_names_and_npz_suffix(fake_root: Path) -> None:
    assert find_dataset("2_small", fake_root) == find_dataset("Classical/2_small.npz", fake_root)
    assert find_dataset("NLP_b/3_news", fake_root).group == "NLP_b"


def test_ambiguous_name_asks_for_the_group(fake_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ambiguous.*NLP_a/3_news.*NLP_b/3_news"):
        find_dataset("3_news", fake_root)


def test_unknown_name_says_where_it_looked_and_suggests(fake_root: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"no dataset 'small'.*looked for small\.npz in .*similar: Classical/2_small"
    ):
        find_dataset("small", fake_root)


def test_accepts_the_parent_of_adbench_and_a_flat_folder(fake_root: Path) -> None:
    assert data_root(fake_root.parent) == fake_root.resolve()
    flat = list_datasets(fake_root / "Classical")
    assert [(d.group, d.name) for d in flat] == [("Classical", "2_small"), ("Classical", "10_other")]
    assert find_dataset("Classical/10_other", fake_root / "Classical").name == "10_other"


def test_reads_the_environment_variable(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(fake_root))
    assert load_dataset("10_other")[0].shape == (20, 2)


def test_no_directory_and_no_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        data_root()


def test_missing_directory_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*does not exist"):
        data_root(missing)
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=rf"{missing} \(from \${ENV_VAR}\)"):
        data_root()


def test_directory_without_datasets(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .npz datasets"):
        data_root(tmp_path / "empty")


def test_select_by_group_glob_and_name_without_repeats(fake_root: Path) -> None:
    chosen = select_datasets(["Classical", "2_small", "NLP_*/3_*"], fake_root)
    assert [d.qualified_name for d in chosen] == [
        "Classical/2_small",
        "Classical/10_other",
        "NLP_a/3_news",
        "NLP_b/3_news",
    ]
    with pytest.raises(FileNotFoundError, match="no dataset matches"):
        select_datasets(["CV_*"], fake_root)


def test_bad_files_raise_data_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", X=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError, match=r"'X' and 'y'.*\['X', 'labels'\]"):
        read_npz(tmp_path / "a.npz")
    with pytest.raises(DataError, match="only 0"):
        read_npz(_write(tmp_path / "b.npz", np.zeros((3, 2)), np.array([0, 1, 2])))
    with pytest.raises(DataError, match="one label per row"):
        read_npz(_write(tmp_path / "c.npz", np.zeros((3, 2)), np.array([0, 1])))
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        read_npz(tmp_path / "d.npz")


@needs_data
def test_real_adbench_groups_and_a_known_dataset() -> None:
    groups = datasets_by_group(DATA)
    assert len(groups["Classical"]) == 32
    assert sum(name.startswith("MVTec-AD_") for name in groups["CV_by_ResNet18"]) == 15
    X, y = load_dataset("Classical/14_glass", DATA)
    assert X.shape == (214, 7) and X.dtype == np.float64 and int(y.sum()) == 9
