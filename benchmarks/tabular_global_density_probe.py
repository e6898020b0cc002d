"""Probe: would a global Gaussian density beside the default's two kernels rank better, and when?

The default USFlow scores with the mean of two kernel NLLs (:class:`usfad.detectors.flow.FlowModel`):
the trained flow's kernel over the training latents and the identity flow's kernel over the
standardised rows. Both are local densities. Two global densities come almost free beside them:

- ``latent``: the trained flow with the one standard Gaussian it was trained with
  (``0.5 |z|^2 + d/2 log 2 pi - log|det J|``; a USF's ``log|det J|`` is one constant);
- ``gauss``: one Gaussian over the standardised rows, scikit-learn's ``LedoitWolf`` covariance
  (a linear flow, also a USF).

Per (set, seed), one default USFlow is fitted (``random_state = seed``, the grid's cell;
``gaussian_weight=0``: the kernels alone, as before that parameter existed, so that each
density is read apart; ``--binary-noise c`` sets :attr:`usfad.FlowDetector.binary_noise`). The
output row holds the test ROC-AUC of each density alone and of the default, and each
density's mean NLL over the training rows: the kernels' leave-one-out (each training row
without its own kernel, as the detector scores them), ``gauss``'s from 5 folds, ``latent``'s
in sample. ``--save DIR`` writes ``DIR/<set>_<seed>.npz`` with ``y`` and, for the test rows
(``test_<name>``) and the training rows (``train_<name>``), each density's per-row NLL, so
that combinations and rules can be scored offline without refitting.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_global_density_probe.py \
        --datasets 6_cardio 8_celeba --seeds 0 --save /tmp/global/npz -o /tmp/global.jsonl
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from probe_cells import cells, probe_parser, test_roc, write_row  # this folder is on sys.path when run
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import KFold

from usfad import USFlow

#: rows the Gaussian's covariance is estimated from, at most (seeded)
GAUSS_ROWS = 50_000


def gaussian_nll(train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-row NLL of ``rows`` under a Ledoit-Wolf Gaussian fitted on ``train``."""
    if len(train) > GAUSS_ROWS:
        train = train[np.random.default_rng(0).choice(len(train), GAUSS_ROWS, replace=False)]
    fitted = LedoitWolf().fit(train)
    diff = rows - fitted.location_
    _, logdet = np.linalg.slogdet(fitted.covariance_)
    mahalanobis = np.einsum("ij,jk,ik->i", diff, fitted.precision_, diff)
    return 0.5 * (mahalanobis + logdet + train.shape[1] * math.log(2 * math.pi))


def gaussian_nll_folds(train: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each training row's NLL under the Gaussian fitted on the other folds."""
    out = np.empty(len(train))
    for fit_rows, held in KFold(folds, shuffle=True, random_state=0).split(train):
        out[held] = gaussian_nll(train[fit_rows], train[held])
    return out


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="folder for per-row NLLs (npz per set and seed)")
    parser.add_argument("--binary-noise", type=float, help="USFlow.binary_noise (default: the class's)")
    args = parser.parse_args()
    if args.binary_noise is not None:
        USFlow.binary_noise = args.binary_noise
    for dataset, seed, split in cells(args):
        start = time.perf_counter()
        det = USFlow(random_state=seed, gaussian_weight=0).fit(split.X_train)
        fit_s = time.perf_counter() - start
        model, d = det.model_, split.X_train.shape[1]
        start = time.perf_counter()
        nll = {}
        for part, X in (("train", split.X_train), ("test", split.X_test)):
            both = det.decision_function(X)
            input_base, model.input_base = model.input_base, None
            flow = det.decision_function(X)
            model.input_base = input_base
            z = np.asarray(det.latent(X), dtype=np.float64)
            rows = np.asarray((X - det.scaler_mean_) / det.scaler_scale_, dtype=np.float64)
            nll[f"{part}_flow"] = flow
            nll[f"{part}_input"] = 2 * both - flow
            nll[f"{part}_latent"] = 0.5 * (z**2).sum(1) + 0.5 * d * math.log(2 * math.pi) - det.kappa_
            if part == "test":
                train_rows = np.asarray((split.X_train - det.scaler_mean_) / det.scaler_scale_, dtype=np.float64)
                nll["test_gauss"] = gaussian_nll(train_rows, rows)
            else:
                nll["train_gauss"] = gaussian_nll_folds(rows)
        names = ("flow", "input", "latent", "gauss")
        row = {
            "dataset": dataset,
            "seed": seed,
            "n": len(split.X_train),
            "d": d,
            "fit_s": round(fit_s, 1),
            "score_s": round(time.perf_counter() - start, 1),
            "binary_noise": USFlow.binary_noise,
            "default": test_roc(split, 0.5 * (nll["test_flow"] + nll["test_input"])),
            **{name: test_roc(split, nll[f"test_{name}"]) for name in names},
            "train_nll": {name: round(float(np.mean(nll[f"train_{name}"])), 4) for name in names},
        }
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(args.save / f"{dataset}_{seed}.npz", y=split.y_test, **nll)
        write_row(args.output, row)


if __name__ == "__main__":
    main()
