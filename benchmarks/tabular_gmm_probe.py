"""Probe: how a plain Gaussian mixture ranks anomalies as its number of components grows.

Protocol T, seed 0, scikit-learn ``GaussianMixture`` (full covariance, ``reg_covar=1e-3``,
``random_state=0``) fitted on the normal training rows (at most 20,000, drawn with seed 0),
score = -log density. One line per set: ROC-AUC and BIC per training row for 1, 2, 4, 8 and 16
components (stopping once ``2 k d`` exceeds the rows). Not a detector usfad ships: it shows
whether a better density fit (lower BIC) detects better on a given set.

    USFAD_DATA=../shared/data/adbench .venv/bin/python benchmarks/tabular_gmm_probe.py 19_landsat 6_cardio
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t


def main() -> None:
    warnings.filterwarnings("ignore")
    for name in sys.argv[1:]:
        X, y = load_dataset(name)
        split = protocol_t(X, y, 0)
        train = split.X_train
        if len(train) > 20_000:
            train = train[np.random.default_rng(0).choice(len(train), 20_000, replace=False)]
        cells = []
        for k in (1, 2, 4, 8, 16):
            if 2 * k * train.shape[1] > len(train):
                break
            mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=0).fit(train)
            auc = roc_auc_score(split.y_test, -mixture.score_samples(split.X_test))
            cells.append(f"k{k}:{auc:.3f}/bic{mixture.bic(train) / len(train):.1f}")
        print(name, " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
