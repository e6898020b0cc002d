import numpy as np
import pytest
import torch

# One thread per test process: the models under test are small, and on a 2-core machine that also
# runs a benchmark or Ray workers, two threads per process oversubscribe the cores (a 7 s test took 63 s).
torch.set_num_threads(1)


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
