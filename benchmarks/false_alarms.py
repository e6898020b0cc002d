"""False alarms on fresh normal rows: USFlow's chi-square and split-conformal thresholds.

For each set, ``USFlow(threshold="conformal", alpha=a)`` for each ``a`` in 0.01 and 0.05
(the calibration split is sized to ``alpha``) and one ``USFlow(threshold="chi2")`` (defaults
otherwise, ``random_state=0``) are fitted on normal training rows, and the flagged share of
fresh normal rows is measured at ``alpha`` 0.01 and 0.05:

- synthetic (5,000 training rows, 20,000 fresh rows, 10 features, seed 0): a correlated
  Gaussian (correlation ``0.7^|i-j|``), a mixture of 3 Gaussians (random centres and
  covariances), a uniform on ``[0, 1]^10``;
- ADBench Classical sets under Protocol T (seed 42): training = the normal training rows,
  fresh = the normal test rows.

Conformal flags ``predict(X)`` of the fit at that alpha (checked equal to ``p_values(X) <=
alpha``); the one chi2 fit flags scores above ``usfad.density.chi2_nll_threshold(d, alpha,
kappa_)`` (checked equal to ``threshold_`` at 0.01). Two bounds per row: the binomial 99%
interval of the flagged share when every fresh row is flagged with probability exactly
``alpha`` (the issue's bar), and the 99% upper end of the share split-conformal calibration
promises with ``n_cal`` calibration rows (beta-binomial ``(l, n_cal + 1 - l)``,
``l = floor((n_cal + 1) alpha)``: the spread of one calibration draw included).

Rows are appended to the CSV as each set finishes; a rerun skips the sets already there
(``--fresh`` measures ``--thresholds`` on this run's sets over again, keeping every other row) and
rewrites the Markdown report from the CSV.

    .venv/bin/python benchmarks/false_alarms.py                      # synthetic + Classical < 10,000 rows
    .venv/bin/python benchmarks/false_alarms.py --datasets 6_cardio 38_thyroid --no-synthetic
    .venv/bin/python benchmarks/false_alarms.py --fresh --thresholds conformal --max-rows 10000000
"""

from __future__ import annotations

import argparse
import csv
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from usfad import USFlow
from usfad.data.adbench import list_datasets, load_dataset
from usfad.data.protocol import protocol_t
from usfad.density import chi2_nll_threshold, exceedances_allowed

ALPHAS = (0.01, 0.05)
THRESHOLDS = ("conformal", "chi2")
SYNTHETIC = ("gaussian", "mixture", "uniform")
N_TRAIN, N_FRESH, N_FEATURES = 5000, 20000, 10
FIELDS = [
    "set",
    "kind",
    "n_train",
    "n_features",
    "n_calibration",
    "n_fresh",
    "alpha",
    "threshold",
    "flagged",
    "share",
    "binomial_low99",
    "binomial_high99",
    "conformal_high99",
    "fit_seconds",
]
RESULTS = Path(__file__).resolve().parent / "results" / "false_alarms"


def synthetic(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train, fresh)`` rows of one synthetic distribution."""
    rng = np.random.default_rng(seed)
    n, d = N_TRAIN + N_FRESH, N_FEATURES
    if name == "gaussian":
        corr = 0.7 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
        X = rng.normal(size=(n, d)) @ np.linalg.cholesky(corr).T
    elif name == "mixture":
        centres = rng.normal(scale=3.0, size=(3, d))
        mixing = rng.normal(scale=0.5, size=(3, d, d))
        component = rng.integers(0, 3, n)
        X = centres[component] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mixing[component])
    elif name == "uniform":
        X = rng.uniform(size=(n, d))
    else:
        raise ValueError(f"unknown synthetic distribution {name!r}")
    return X[:N_TRAIN], X[N_TRAIN:]


def adbench(name: str, data: str) -> tuple[np.ndarray, np.ndarray]:
    """``(normal training rows, normal test rows)`` under Protocol T, seed 42."""
    split = protocol_t(*load_dataset(name, data), seed=42)
    return split.X_train, split.X_test[split.y_test == 0]


def binomial_interval(n: int, alpha: float) -> tuple[float, float]:
    """Central 99% interval of the flagged share of ``n`` rows, each flagged with probability ``alpha``."""
    low, high = stats.binom.ppf([0.005, 0.995], n, alpha)
    return float(low) / n, float(high) / n


def conformal_mean(n_cal: int, alpha: float) -> float:
    """The false-alarm rate split-conformal calibration with ``n_cal`` rows gives (no ties):
    ``floor((n_cal + 1) alpha) / (n_cal + 1)``, in ``(alpha - 1/(n_cal + 1), alpha]``."""
    return exceedances_allowed(n_cal, alpha) / (n_cal + 1)


def conformal_high(n: int, n_cal: int, alpha: float) -> float:
    """99.5% quantile of the flagged share of ``n`` fresh rows under split-conformal calibration."""
    allowed = exceedances_allowed(n_cal, alpha)
    if allowed < 1:
        return 0.0
    return float(stats.betabinom.ppf(0.995, n, allowed, n_cal + 1 - allowed)) / n


def chance_above(n: int, n_cal: int, alpha: float, high: float) -> float:
    """The chance that split-conformal calibration with ``n_cal`` exchangeable rows flags more than
    the share ``high`` of ``n`` fresh rows (beta-binomial, the calibration draw's spread included):
    how often a perfectly calibrated threshold fails the binomial bar on one set."""
    allowed = exceedances_allowed(n_cal, alpha)
    if allowed < 1:
        return 0.0
    return float(stats.betabinom.sf(round(high * n), n, allowed, n_cal + 1 - allowed))


def measure(name: str, kind: str, train: np.ndarray, fresh: np.ndarray, thresholds: tuple[str, ...] = THRESHOLDS):
    """One row per threshold and alpha: a conformal fit per alpha (its calibration split is sized
    to it), one chi2 fit read at every alpha."""
    rows = []
    n, d = train.shape
    fits = [(t, a) for t in thresholds for a in (ALPHAS if t == "conformal" else ALPHAS[:1])]
    for threshold, fit_alpha in fits:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. no finite conformal threshold at 0.01
            det = USFlow(threshold=threshold, alpha=fit_alpha, random_state=0).fit(train)
        seconds = time.perf_counter() - start
        scores = det.decision_function(fresh)
        if threshold == "conformal":
            n_cal = len(det.calibration_scores_)
            p = det.p_values(fresh)
            assert np.array_equal(det.predict(fresh), (p <= fit_alpha) | (scores >= np.finfo(np.float64).max))
            flags = {fit_alpha: p <= fit_alpha}
        else:
            n_cal = 0
            assert math.isclose(chi2_nll_threshold(d, fit_alpha, det.kappa_), det.threshold_, rel_tol=1e-12)
            flags = {alpha: scores > chi2_nll_threshold(d, alpha, det.kappa_) for alpha in ALPHAS}
        for alpha, flagged_rows in flags.items():
            low, high = binomial_interval(len(fresh), alpha)
            flagged = int(flagged_rows.sum())
            rows.append(
                {
                    "set": name,
                    "kind": kind,
                    "n_train": n,
                    "n_features": d,
                    "n_calibration": n_cal,
                    "n_fresh": len(fresh),
                    "alpha": alpha,
                    "threshold": threshold,
                    "flagged": flagged,
                    "share": flagged / len(fresh),
                    "binomial_low99": low,
                    "binomial_high99": high,
                    "conformal_high99": conformal_high(len(fresh), n_cal, alpha) if n_cal else "",
                    "fit_seconds": round(seconds, 1),
                }
            )
    return rows


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table(rows: list[dict[str, str]], data_sets: list[str], skipped: list[str], too_small: list[str]) -> str:
    """The Markdown report: one line per set and alpha, then the bar's checks."""
    measured: dict[str, set[str]] = {}
    for r in rows:
        measured.setdefault(r["set"], set()).add(r["threshold"])
    rows = [r for r in rows if measured[r["set"]] == set(THRESHOLDS)]  # a run in progress: both measured
    by_set: dict[tuple[str, float], dict[str, dict[str, str]]] = {}
    for r in rows:
        by_set.setdefault((r["set"], float(r["alpha"])), {})[r["threshold"]] = r
    lines = [
        "# False alarms on fresh normal rows: chi-square and split-conformal thresholds",
        "",
        "Written by `benchmarks/false_alarms.py` (see its docstring for the protocol): `USFlow` with",
        "default settings (`random_state=0`), a conformal fit per alpha, one chi2 fit, the flagged share of",
        "fresh normal rows at each `alpha`. Synthetic: 5,000 training and 20,000 fresh rows, 10",
        "features. ADBench Classical: Protocol T seed 42, fresh = the normal test rows. `binomial 99%`:",
        "where the share falls 99% of the time if each fresh row is flagged with probability exactly",
        "`alpha`; `conformal law`: the rate split-conformal calibration with `n_cal` rows gives,",
        "`floor((n_cal + 1) alpha) / (n_cal + 1)` (lower with tied scores), and the 99% upper end of",
        "the share one fit can show (the calibration draw's spread included). A `!` marks a",
        "conformal share above the binomial upper end. `P(above)`: the chance of that `!` under the",
        "conformal law itself, that is for a threshold that keeps its promise exactly (`chance_above`).",
        "",
        "| set | n_train | n_cal | n_fresh | alpha | conformal | chi2 | binomial 99% | conformal law, 99% high "
        "| P(above) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for (name, alpha), pair in by_set.items():
        c, x = pair["conformal"], pair["chi2"]
        mark = " !" if float(c["share"]) > float(c["binomial_high99"]) else ""
        lines.append(
            f"| {name} | {c['n_train']} | {c['n_calibration']} | {c['n_fresh']} | {alpha:g} | "
            f"{float(c['share']):.4f}{mark} | {float(x['share']):.4f} | "
            f"[{float(c['binomial_low99']):.4f}, {float(c['binomial_high99']):.4f}] | "
            f"{conformal_mean(int(c['n_calibration']), alpha):.4f}, {float(c['conformal_high99']):.4f} | "
            f"{chance_above(int(c['n_fresh']), int(c['n_calibration']), alpha, float(c['binomial_high99'])):.3f} |"
        )
    lines += ["", "## The bar", ""]
    lines += [
        "Conformal share above the binomial 99% upper end (per alpha), and the mean share over",
        "sets against `alpha +- 0.3 alpha`. `finite` = the sets whose calibration can flag at that",
        "`alpha` at all (`n_cal + 1 >= 1/alpha`; below, split-conformal flags nothing, by design).",
        "`expected above`: how many sets a threshold that keeps the conformal law exactly would put above",
        "the binomial high by chance (the sum of `P(above)`), with the calibration rows used here and",
        "with every training row calibrating (`n_cal = n_train`, what cross-conformal calibration",
        "would reach at best).",
        "",
        "| group | alpha | sets | conformal above binomial high | conformal above its law's 99% high | "
        "expected above (n_cal; n_train) | mean conformal (law) | within 0.3 alpha | mean chi2 |",
        "|---|---:|---:|---|---|---|---|---|---:|",
    ]
    n_cal = {(r["set"], r["alpha"]): int(r["n_calibration"]) for r in rows if r["threshold"] == "conformal"}
    groups = {
        "synthetic": lambda r: r["kind"] == "synthetic",
        "ADBench": lambda r: r["kind"] == "adbench",
        "ADBench, finite": lambda r: (
            r["kind"] == "adbench" and conformal_mean(n_cal[r["set"], r["alpha"]], float(r["alpha"])) > 0
        ),
        "all": lambda r: True,
    }
    for group, keep in groups.items():
        for alpha in ALPHAS:
            conf = [r for r in rows if r["threshold"] == "conformal" and float(r["alpha"]) == alpha and keep(r)]
            chi2 = [r for r in rows if r["threshold"] == "chi2" and float(r["alpha"]) == alpha and keep(r)]
            if not conf:
                continue
            above = [r["set"] for r in conf if float(r["share"]) > float(r["binomial_high99"])]
            above_own = [r["set"] for r in conf if float(r["share"]) > float(r["conformal_high99"])]
            expected = [
                sum(chance_above(int(r["n_fresh"]), int(r[field]), alpha, float(r["binomial_high99"])) for r in conf)
                for field in ("n_calibration", "n_train")
            ]
            mean = float(np.mean([float(r["share"]) for r in conf]))
            law = float(np.mean([conformal_mean(n_cal[r["set"], r["alpha"]], alpha) for r in conf]))
            mean_chi2 = float(np.mean([float(r["share"]) for r in chi2])) if chi2 else float("nan")
            within = "yes" if abs(mean - alpha) <= 0.3 * alpha else "no"
            lines.append(
                f"| {group} | {alpha:g} | {len(conf)} | {', '.join(above) or 'none'} | "
                f"{', '.join(above_own) or 'none'} | {expected[0]:.2f}; {expected[1]:.2f} | {mean:.4f} ({law:.4f}) | "
                f"{within} | {mean_chi2:.4f} |"
            )
    lines += ["", "## Sets not run", ""]
    if skipped:
        lines.append(f"Not run (10,000 rows or more; left out to keep this run on one CPU core): {', '.join(skipped)}.")
    if too_small:
        lines.append(f"Refused by `threshold='conformal'` (fewer than 40 training rows): {', '.join(too_small)}.")
    if not skipped and not too_small:
        lines.append("None.")
    lines.append(f"ADBench sets run: {len(data_sets)}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/adbench", help="ADBench root (default: %(default)s)")
    parser.add_argument(
        "--datasets", nargs="*", help="ADBench sets (default: the Classical sets below --max-rows rows)"
    )
    parser.add_argument("--max-rows", type=int, default=10_000, help="skip larger sets by default (%(default)s)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic distributions")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results stem: .csv and .md (%(default)s)")
    parser.add_argument("--fresh", action="store_true", help="measure --thresholds on this run's sets again")
    parser.add_argument(
        "--thresholds", nargs="+", choices=THRESHOLDS, default=list(THRESHOLDS), help="thresholds to measure"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    csv_path, md_path = args.output.with_suffix(".csv"), args.output.with_suffix(".md")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    thresholds = tuple(args.thresholds)
    skipped: list[str] = []
    if args.datasets:
        names = list(args.datasets)
    else:
        names = []
        for info in list_datasets(args.data, group="Classical"):
            n_rows = load_dataset(info.name, args.data)[0].shape[0]
            (names if n_rows < args.max_rows else skipped).append(info.name)
    jobs: list[tuple[str, str]] = [] if args.no_synthetic else [(s, "synthetic") for s in SYNTHETIC]
    jobs += [(name, "adbench") for name in names]
    if args.fresh and csv_path.exists():  # drop the rows this run measures again
        again = {name for name, _ in jobs}
        kept = [r for r in read_rows(csv_path) if not (r["threshold"] in thresholds and r["set"] in again)]
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(kept)
    have: dict[str, set[str]] = {}
    for r in read_rows(csv_path):
        have.setdefault(r["set"], set()).add(r["threshold"])
    too_small: list[str] = []
    for name, kind in jobs:
        if set(thresholds) <= have.get(name, set()):
            continue
        train, fresh = synthetic(name) if kind == "synthetic" else adbench(name, args.data)
        if len(train) < 40:
            too_small.append(name)
            print(f"{name}: {len(train)} training rows, too few for threshold='conformal'; not run", flush=True)
            continue
        rows = measure(name, kind, train, fresh, thresholds)
        new = not csv_path.exists()
        with csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
        shares = ", ".join(f"{r['threshold']}@{r['alpha']}: {r['share']:.4f}" for r in rows)
        print(f"{name} ({len(train)} train, {len(fresh)} fresh): {shares}", flush=True)
    rows = read_rows(csv_path)
    md_path.write_text(table(rows, sorted({r["set"] for r in rows if r["kind"] == "adbench"}), skipped, too_small))
    print(f"wrote {csv_path} and {md_path}")


if __name__ == "__main__":
    main()
