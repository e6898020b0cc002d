"""NLL = Deep SVDD term + log-det regulariser for a USF, and density alignment."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from usfad.density import GaussianBase, chi2_nll_threshold, latent_distance, nll, svdd_objective, usf_nll_terms
from usfad.flows import build_flow


def _flow(kind, d=5, seed=0, noise=0.1):
    torch.manual_seed(seed)
    f = build_flow(d, kind, n_blocks=3, hidden_features=(16,))
    with torch.no_grad():
        for p in f.parameters():
            # couplings move away from the identity, the linear maps away from their initial
            # permutation, and volumes change (kappa != 0)
            p.add_(noise * torch.randn_like(p))
    return f.double().eval()


def test_gaussian_base_matches_scipy(float64):
    base = GaussianBase(3, center=torch.tensor([1.0, -1.0, 0.5]), scale=2.0)
    z = torch.randn(10, 3)
    expected = stats.multivariate_normal([1.0, -1.0, 0.5], 4.0 * np.eye(3)).logpdf(z.numpy())
    assert np.allclose(base.log_prob(z).numpy(), expected)


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_usf_nll_is_svdd_term_plus_logdet_regulariser(float64, scale):
    f = _flow("usf")
    base = GaussianBase(5, center=0.7, scale=scale)
    x = torch.randn(50, 5)
    z, logdet = f(x)
    terms = usf_nll_terms(f, base, x)
    direct = nll(f, base, x)
    expected = (z - 0.7).pow(2).sum(1) / (2 * scale**2) + 2.5 * math.log(2 * math.pi * scale**2) - logdet[0]
    assert abs(logdet[0].item()) > 1e-3
    assert torch.allclose(direct, expected, atol=1e-10)
    assert torch.allclose(terms.total, direct, atol=1e-10)
    # mean NLL = (Deep SVDD objective + regulariser) / (2 s^2) + const
    svdd = svdd_objective(z, base.center)
    lhs = direct.mean()
    rhs = (svdd + terms.regularizer) / (2 * scale**2) + terms.log_normalizer
    assert torch.allclose(lhs, rhs, atol=1e-10)


def test_usf_nll_terms_refuses_a_non_usf():
    with pytest.raises(ValueError, match="USF"):
        usf_nll_terms(build_flow(3, "affine", n_blocks=1), GaussianBase(3), torch.randn(2, 3))


def test_usf_ranks_by_nll_exactly_as_by_latent_distance(float64):
    f, base = _flow("usf"), GaussianBase(5)
    x = torch.randn(500, 5) * 2
    with torch.no_grad():
        rho = stats.spearmanr(nll(f, base, x).numpy(), latent_distance(f, base, x).numpy())[0]
    assert rho == 1.0


def test_nonusf_rankings_disagree(float64):
    f, base = _flow("affine"), GaussianBase(5)
    x = torch.randn(500, 5)
    with torch.no_grad():
        rho = stats.spearmanr(nll(f, base, x).numpy(), latent_distance(f, base, x).numpy())[0]
    assert rho < 0.99


def test_chi2_threshold_inverts_the_chi2_quantile():
    d, alpha, kappa, s = 4, 0.05, 1.3, 0.5
    t = chi2_nll_threshold(d, alpha, kappa, s)
    q = 2 * (t - 0.5 * d * math.log(2 * math.pi * s**2) + kappa)
    assert math.isclose(stats.chi2.cdf(q, d), 1 - alpha, rel_tol=1e-9)
    with pytest.raises(ValueError, match="alpha"):
        chi2_nll_threshold(d, 1.5, kappa)
