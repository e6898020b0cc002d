"""The alignment and stability studies: exact mixture density, correlations, reports."""

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from helpers import DATA, needs_data
from usfad.commands.study import add_commands
from usfad.detectors import DeepSVDD, NonUSFlow, USFlow
from usfad.metrics import latent_distance
from usfad.studies.alignment import (
    alignment_mixture,
    autograd_log_abs_det,
    log_abs_det_jacobian,
    run_alignment,
)
from usfad.studies.stability import run_stability

PNG = b"\x89PNG\r\n\x1a\n"
FAST = {"epochs": 3, "hidden_features": (16,), "n_blocks": 2}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def study(argv):
    """Run ``usfad study ...`` through a parser built from the command module alone."""
    parser = argparse.ArgumentParser(prog="usfad")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", *argv, "--no-progress"])
    return args.func(args)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_mixture_nll_equals_scipys_mixture_logpdf(d):
    mixture = alignment_mixture(d)
    X = mixture.sample(200, np.random.default_rng(d)) * 1.5
    expected = np.log(
        0.5 * stats.multivariate_normal(-np.ones(d), np.eye(d)).pdf(X)
        + 0.5 * stats.multivariate_normal(np.ones(d), np.diag([5.0] * (d // 2) + [0.5] * (d - d // 2))).pdf(X)
    )
    assert np.allclose(mixture.log_prob(X), expected.reshape(-1), rtol=1e-10, atol=1e-10)
    assert np.array_equal(mixture.nll(X), -mixture.log_prob(X))


def test_mixture_sampler_has_the_mixture_moments():
    X = alignment_mixture(4).sample(40_000, np.random.default_rng(0))
    # mean 0; per-axis variance = 1 + (mean variance of the components) = 1 + (1 + v) / 2
    assert np.allclose(X.mean(0), 0.0, atol=0.05)
    assert np.allclose(X.var(0), [1 + (1 + 5) / 2] * 2 + [1 + (1 + 0.5) / 2] * 2, rtol=0.05)


def test_alignment_correlations_match_scipy_and_usf_is_self_aligned():
    result = run_alignment(dims=[2], n_train=300, n_eval=200, quick=True, progress=False)
    assert [(r.d, r.model) for r in result.rows] == [(2, "USFlow"), (2, "NonUSFlow"), (2, "DeepSVDD")]
    for row in result.rows:
        nll, dist = result.points[2][row.model]
        assert row.distance["pearson"] == pytest.approx(stats.pearsonr(nll, dist)[0], abs=1e-12)
        assert row.distance["spearman"] == pytest.approx(stats.spearmanr(nll, dist)[0], abs=1e-12)
        assert row.distance["kendall"] == pytest.approx(stats.kendalltau(nll, dist)[0], abs=1e-12)
    usf, nonusf, svdd = result.rows
    assert usf.self_spearman == pytest.approx(1.0, abs=1e-6)
    assert usf.density is not None and nonusf.density is not None and svdd.density is None
    z, logp, logdet, center = result.planes["USFlow"]
    assert z.shape == (200, 2) and np.ptp(logdet) < 1e-5  # a USF's log-det is one number


def test_alignment_measures_on_known_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    flow = NonUSFlow(**FAST).fit(X)
    svdd = DeepSVDD(epochs=3, hidden_features=(8,), latent_features=2).fit(X)
    # the flow's own log-det agrees with the autograd Jacobian of its forward map
    via_autograd = autograd_log_abs_det(flow._latent, flow._to_tensor(X[:20])).numpy()
    own = log_abs_det_jacobian(flow, X[:20]) + np.log(flow.scaler_scale_).sum()
    assert np.allclose(own, via_autograd, atol=1e-4)
    # a bias-free LeakyReLU network: log|det J| is finite and piecewise constant
    assert np.isfinite(log_abs_det_jacobian(svdd, X[:20])).all()
    usf = USFlow(**FAST, base="gaussian").fit(X)  # one Gaussian: the distance to its centre
    assert np.allclose(latent_distance(usf, X[:5]), np.linalg.norm(usf.latent(X[:5]), axis=1))


def test_alignment_command_writes_report_and_figures(tmp_path, capsys):
    out = tmp_path / "alignment"
    argv = ["alignment", "--dims", "2", "3", "--n-train", "300", "--n-eval", "200", "--quick", "-o", str(out)]
    assert study(argv) == 0
    assert "USFlow" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "| 2 | USFlow |" in report and "| 3 | DeepSVDD |" in report
    for png in ["alignment_scatter.png", "latent_plane_d2.png"]:
        assert (out / png).read_bytes()[:8] == PNG, png
        assert f"]({png})" in report
    table = pd.read_csv(out / "alignment.csv")
    assert len(table) == 6 and table["spearman_distance"].between(-1, 1).all()


@needs_data
def test_stability_study_on_a_small_dataset(tmp_path, capsys):
    result = run_stability(["42_WBC"], ["usflow", "deepsvdd"], [0, 1], data_dir=DATA, quick=True, progress=False)
    assert [(r.model, r.seed) for r in result.runs] == [("usflow", 0), ("usflow", 1), ("deepsvdd", 0), ("deepsvdd", 1)]
    assert all(r.status == "ok" and 0 <= r.roc_auc <= 1 and r.train_loss for r in result.runs)
    out = tmp_path / "stability"
    argv = ["stability", "--data", str(DATA), "--datasets", "42_WBC", "--models", "usflow", "nonusflow"]
    assert study([*argv, "--seeds", "0", "1", "--quick", "-o", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| 42_WBC | usflow | 2 | 0 | 0 | 0 |" in report and "nonusflow" in report
    for png in ["auc_spread.png", "loss_curves.png"]:
        assert (out / png).read_bytes()[:8] == PNG, png
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"ok"}
    assert "42_WBC" in capsys.readouterr().out
