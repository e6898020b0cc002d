import numpy as np
import pytest

from usfad.data.embedded import EMBEDDED, load_digits, load_embedded, load_gmm, load_wine
from usfad.errors import DataError


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_every_embedded_dataset_is_a_float_matrix_with_binary_labels(name):
    X, y = EMBEDDED[name](random_state=0)
    assert X.dtype == np.float64 and X.ndim == 2 and X.flags.c_contiguous
    assert y.dtype.kind == "i" and y.shape == (X.shape[0],)
    assert set(np.unique(y).tolist()) == {0, 1}
    assert np.isfinite(X).all()
    assert 0 < y.mean() < 0.5  # anomalies are the minority


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_embedded_datasets_are_deterministic_for_a_seed(name):
    X1, y1 = load_embedded(name, random_state=3)
    X2, y2 = load_embedded(name, random_state=3)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


def test_breast_cancer_marks_the_malignant_tumours_as_anomalies():
    X, y = load_embedded("breast_cancer")
    assert X.shape == (569, 30)
    assert y.sum() == 212


@pytest.mark.parametrize("loader", [load_wine, load_digits])
def test_one_vs_rest_subsamples_anomalies_to_a_tenth_of_the_normals(loader):
    X, y = loader(random_state=0)
    n_normal, n_anomaly = int((y == 0).sum()), int(y.sum())
    assert n_anomaly == round(0.1 * n_normal)
    # another seed draws other anomalies, the normal class is the same
    X2, y2 = loader(random_state=1)
    np.testing.assert_array_equal(X[y == 0], X2[y2 == 0])
    assert not np.array_equal(X[y == 1], X2[y2 == 1])


def test_one_vs_rest_rejects_an_unknown_class():
    with pytest.raises(DataError, match="normal_class"):
        load_wine(normal_class=7)


def test_gmm_outliers_lie_away_from_the_normal_clusters():
    X, y = load_gmm(n_normal=400, n_outliers=20, n_features=3, random_state=0)
    assert X.shape == (420, 3) and y.sum() == 20
    normal, outliers = X[y == 0], X[y == 1]
    # nearest normal neighbour of an outlier is farther than that of a typical normal point
    d_out = np.min(np.linalg.norm(outliers[:, None] - normal[None], axis=2), axis=1)
    d_in = np.sort(np.linalg.norm(normal[:50, None] - normal[None], axis=2), axis=1)[:, 1]
    assert np.median(d_out) > 2 * np.median(d_in)


def test_unknown_embedded_name_lists_the_choices():
    with pytest.raises(DataError, match="breast_cancer"):
        load_embedded("iris")
