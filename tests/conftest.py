import numpy as np
import pytest
import torch


@pytest.fixture
def float64():
    """Run a test in float64 so exactness checks are meaningful."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def gaussian_data():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    return rng.multivariate_normal([1.0, -2.0, 0.5], cov, size=400)
