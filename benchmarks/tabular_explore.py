"""Candidate changes to USFlow's default, one seed at a time, on the Protocol T split.

Each row is one ``USFlow`` fit (or an ensemble of ``--members`` fits whose score is the mean
of the members' NLLs) on one dataset and seed, after an optional per-feature transform of
the raw features fitted on the training rows only:

- ``none``: the detector's own standardisation only (today's default);
- ``quantile``: scikit-learn's ``QuantileTransformer(output_distribution="normal")``, which
  clips values beyond the training range to its bounds;
- ``quantile-tail``: normal scores by mid-rank (ties share the middle of their step), Hazen
  plotting positions ``(i - 0.5) / n``, linear beyond the training range with slope one
  per training standard deviation, so an extreme value stays extreme;
- ``quantile-skewed``: ``quantile-tail`` only on the features whose training skewness
  exceeds 1 in absolute value, the others untouched;
- ``yeo-johnson``: z-scores, then scikit-learn's ``PowerTransformer`` (Yeo-Johnson);
- ``log-skewed``: on the features whose training skewness exceeds 2 in absolute value, a
  signed log of the distance from the training minimum (maximum, for a left skew),
  ``sign(v) log(1 + |v| / c)`` with ``c`` the median of the training rows' positive ``v``:
  monotone, no clipping, a zero spike stays at 0 and the long tail is compressed.

Other candidates: ``--member-params`` (members with different parameters, mean NLL),
``--gaussian-weights`` (the same fits' scores mixed with a closed-form Gaussian's NLL:
:func:`gaussian_nll`), ``--clusters`` (a mixture of USFs over k-means clusters, k chosen by
held-out NLL: :func:`cluster_mixture`) and ``--noise-exponent`` (how fast ``noise="auto"``
falls with the rows). Rows and readings: ``benchmarks/results/tabular_v2/explore/README.md``.

``--table`` writes the mean ROC-AUC per variant over the seed-0 cells every variant has,
against the default's and KNN's rows of one quiet run (``--reference``).

    .venv/bin/python benchmarks/tabular_explore.py --datasets 14_glass 6_cardio --seeds 0 \\
        --tag quantile-tail --transform quantile-tail >> ROWS.jsonl
    .venv/bin/python benchmarks/tabular_explore.py --table ROWS.jsonl -o TABLE.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from usfad import USFlow
from usfad.data.adbench import load_dataset
from usfad.data.protocol import protocol_t
from usfad.metrics import detection_metrics

TRANSFORMS = ("none", "quantile", "quantile-tail", "quantile-skewed", "yeo-johnson", "log-skewed")
REFERENCE = Path(__file__).resolve().parent / "results" / "tabular_v2" / "results_seed0_quiet.jsonl"


def quantile_tail(X_train: np.ndarray, n_quantiles: int = 1000):
    """The ``quantile-tail`` map fitted on ``X_train``: a function of raw feature rows."""
    from scipy.special import ndtri

    n = X_train.shape[0]
    levels = np.linspace(0.0, 1.0, min(n_quantiles, n))
    knots = np.quantile(X_train, levels, axis=0)
    spread = X_train.std(axis=0)
    spread[spread == 0] = 1.0
    z_top = ndtri((n - 0.5) / n)

    def transform(X: np.ndarray) -> np.ndarray:
        out = np.empty(X.shape, dtype=np.float64)
        for j in range(X.shape[1]):
            x, q = X[:, j], knots[:, j]
            # the ECDF from below and from above; their mean puts a tied value mid-step
            up = np.interp(x, q, levels)
            down = 1.0 - np.interp(-x, -q[::-1], 1.0 - levels[::-1])
            z = ndtri(0.5 * (up + down) * (n - 1) / n + 0.5 / n)
            z = np.where(x > q[-1], z_top + (x - q[-1]) / spread[j], z)
            out[:, j] = np.where(x < q[0], -z_top - (q[0] - x) / spread[j], z)
        return out

    return transform


def log_skewed(X_train: np.ndarray, X_test: np.ndarray, limit: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The ``log-skewed`` map fitted on ``X_train``, applied to both."""
    from scipy import stats

    train, test = X_train.copy(), X_test.copy()
    skewness = np.nan_to_num(stats.skew(X_train, axis=0))
    for j in np.flatnonzero(np.abs(skewness) > limit):
        sign = 1.0 if skewness[j] > 0 else -1.0
        origin = X_train[:, j].min() if sign > 0 else X_train[:, j].max()
        v_train, v_test = sign * (X_train[:, j] - origin), sign * (X_test[:, j] - origin)
        positive = v_train[v_train > 0]
        c = float(np.median(positive)) if positive.size else 1.0
        train[:, j] = sign * np.sign(v_train) * np.log1p(np.abs(v_train) / c)
        test[:, j] = sign * np.sign(v_test) * np.log1p(np.abs(v_test) / c)
    return train, test


def transformed(name: str, X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if name == "none":
        return X_train, X_test
    if name == "quantile":
        from sklearn.preprocessing import QuantileTransformer

        qt = QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, len(X_train)), random_state=0)
        qt.fit(X_train)
        return qt.transform(X_train), qt.transform(X_test)
    if name == "yeo-johnson":
        from sklearn.preprocessing import PowerTransformer

        mean, sd = X_train.mean(0), X_train.std(0)
        sd[sd == 0] = 1.0
        pt = PowerTransformer(method="yeo-johnson").fit((X_train - mean) / sd)
        test = np.nan_to_num(pt.transform((X_test - mean) / sd), nan=0.0, posinf=1e30, neginf=-1e30)
        return pt.transform((X_train - mean) / sd), test
    if name == "log-skewed":
        return log_skewed(X_train, X_test)
    transform = quantile_tail(X_train)
    train, test = transform(X_train), transform(X_test)
    if name == "quantile-skewed":
        from scipy import stats

        keep = np.nan_to_num(np.abs(stats.skew(X_train, axis=0))) <= 1.0
        train[:, keep], test[:, keep] = X_train[:, keep], X_test[:, keep]
    return train, test


def standardised(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in the training rows' z-scores (a constant feature keeps its scale)."""
    mean, scale = X_train.mean(0), X_train.std(0)
    scale[scale == 0] = 1.0
    return (X_train - mean) / scale, (X_test - mean) / scale


def gaussian_nll(X_train: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    """NLL of a full-covariance Gaussian fitted in closed form to the standardised training rows,
    its covariance widened by USFlow's training noise (``noise="auto"``), in USFlow's units
    (standardised coordinates), as the member ``{"closed_form_gaussian": true}``."""
    U, V = standardised(X_train, X_test)
    cov = np.cov(U, rowvar=False).reshape(U.shape[1], U.shape[1]) + USFlow.noise_for(len(U)) ** 2 * np.eye(U.shape[1])
    chol = np.linalg.cholesky(cov)
    from scipy.linalg import solve_triangular

    z = solve_triangular(chol, V.T, lower=True).T
    return 0.5 * (z**2).sum(1) + np.log(np.diag(chol)).sum() + 0.5 * U.shape[1] * np.log(2 * np.pi)


def cluster_mixture(X_train: np.ndarray, X_test: np.ndarray, ks: list[int], seed: int, params: dict) -> tuple:
    """Test scores of a mixture of USFs over k-means clusters, k chosen among ``ks`` by held-out NLL.

    The rows are standardised once (training mean and deviation); a seeded fifth of the
    training rows is held out to choose k. For each k, k-means on the other rows, one
    ``USFlow(standardize=False)`` per cluster, weights = cluster shares; the mixture's NLL is
    ``-logsumexp_j(log w_j - NLL_j(x))``, a likelihood in the standardised coordinates (every
    member is one). Every member trains with the noise ``noise="auto"`` gives all the rows. A k
    whose smallest cluster has under 20 rows is skipped. The chosen k's models (fitted on the
    four fifths) score the test rows. Returns ``(scores, chosen k,
    {k: held-out NLL}, {k: test scores})``: every k's scores too, to show what the choice missed.
    """
    from scipy.special import logsumexp
    from sklearn.cluster import KMeans

    U, V = standardised(X_train, X_test)
    held = np.random.default_rng(seed).permutation(len(U))
    n_held = max(1, len(U) // 5)
    fit_rows, val_rows = U[held[n_held:]], U[held[:n_held]]
    found: dict[int, float] = {}
    every: dict[int, np.ndarray] = {}
    best = None
    for k in ks:
        labels = KMeans(k, n_init=4, random_state=seed).fit_predict(fit_rows) if k > 1 else np.zeros(len(fit_rows))
        sizes = np.bincount(labels.astype(int), minlength=k)
        if sizes.min() < 20:
            continue
        # one noise level for every k (noise="auto" of all the rows): a member's own, larger for a
        # smaller cluster, would blur its density and its held-out NLL could not compare k fairly
        member = {"noise": USFlow.noise_for(len(fit_rows)), **params, "standardize": False}
        models = [USFlow(random_state=seed * 100 + j, **member).fit(fit_rows[labels == j]) for j in range(k)]
        log_w = np.log(sizes / sizes.sum())

        def nll(rows: np.ndarray, models=models, log_w=log_w) -> np.ndarray:
            return -logsumexp(np.stack([lw - m.decision_function(rows) for lw, m in zip(log_w, models)]), axis=0)

        found[k] = float(nll(val_rows).mean())
        every[k] = nll(V)
        if best is None or found[k] < found[best]:
            best = k
    return every[best], best, found, every


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    if args.noise_exponent is not None:  # noise="auto": noise_at_1000 * (n_rows / 1000) ** -exponent
        USFlow.noise_exponent = args.noise_exponent
    params = json.loads(args.params)
    if args.member_params:
        members = [{**params, **extra} for extra in json.loads(args.member_params)]
    else:
        members = [params] * args.members
    for dataset in args.datasets:
        X, y = load_dataset(dataset)
        for seed in args.seeds:
            split = protocol_t(X, y, seed)
            X_train, X_test = transformed(args.transform, split.X_train, split.X_test)
            if args.clusters:
                start = time.perf_counter()
                scores, k, found, every = cluster_mixture(X_train, X_test, args.clusters, seed, params)
                roc = detection_metrics(split.y_test, scores)["roc_auc"]
                per_k = {j: round(detection_metrics(split.y_test, v)["roc_auc"], 4) for j, v in every.items()}
                row = {"tag": args.tag, "dataset": dataset, "seed": seed, "roc": round(roc, 4), "k": k}
                row |= {"roc_per_k": per_k, "heldout_nll": {j: round(v, 4) for j, v in found.items()}}
                row |= {"t": round(time.perf_counter() - start, 2), "n": len(X_train)}
                print(json.dumps(row), flush=True)
                continue
            start, scores, steps = time.perf_counter(), 0.0, []
            for k, member in enumerate(members):
                member_seed = seed * 1000 + k if len(members) > 1 else seed
                if member.get("closed_form_gaussian"):
                    scores = scores + gaussian_nll(X_train, X_test) / len(members)
                    steps.append(0)
                    continue
                model = USFlow(random_state=member_seed, **member).fit(X_train)
                scores = scores + model.decision_function(X_test) / len(members)
                steps.append(model.history_.steps)
            seconds = time.perf_counter() - start
            roc = detection_metrics(split.y_test, scores)["roc_auc"]
            row = {"tag": args.tag, "dataset": dataset, "seed": seed, "roc": round(roc, 4), "t": round(seconds, 2)}
            print(json.dumps({**row, "steps": steps, "n": len(X_train)}), flush=True)
            if args.gaussian_weights:  # the same fits, their score mixed with a closed-form Gaussian's NLL
                gauss = gaussian_nll(X_train, X_test)
                for w in args.gaussian_weights:
                    mixed = detection_metrics(split.y_test, (1 - w) * scores + w * gauss)["roc_auc"]
                    tag = "cfgauss" if w == 1 else f"{args.tag}+cfgauss{w:g}"
                    print(json.dumps({**row, "tag": tag, "roc": round(mixed, 4), "n": len(X_train)}), flush=True)


def _number(dataset: str) -> int:
    return int(dataset.split("_")[0])


def _wins_ties_losses(a: np.ndarray, ref: np.ndarray, tie: float = 1e-3) -> str:
    return f"{int((a > ref + tie).sum())} / {int((abs(a - ref) <= tie).sum())} / {int((a < ref - tie).sum())}"


def table(args: argparse.Namespace) -> None:
    found: dict[str, dict[str, float]] = defaultdict(dict)
    cells: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for path in args.table:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            cells[r["tag"]][(r["dataset"], r["seed"])] = r["roc"]
            if r["seed"] == 0:
                found[r["tag"]][r["dataset"]] = r["roc"]
    reference: dict[str, dict[str, float]] = defaultdict(dict)
    for line in args.reference.read_text().splitlines():
        r = json.loads(line)
        if r["status"] == "ok" and r["seed"] == 0:
            reference[r["model"]][r["dataset"]] = r["roc_auc"]
    base, knn = reference["usflow"], reference["knn"]
    lines = [
        "# Candidate USFlow changes, seed 0, against the default and KNN of one quiet run",
        "",
        f"`benchmarks/tabular_explore.py {' '.join(sys.argv[1:])}`",
        "",
        "Per variant, over the datasets it ran: mean ROC-AUC of the variant, of the default "
        "(`usflow`) and of KNN on the same datasets; wins / ties / losses (ties within 0.001). "
        "The default's rows are those of the reference run (the same code, so seed 0 reproduces them).",
        "",
        "| variant | datasets | mean ROC-AUC | default | KNN | vs default | vs KNN | largest gain | largest loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tag in sorted(found, key=lambda t: (-len(found[t]), t)):
        ds = sorted(set(found[tag]) & set(base) & set(knn), key=_number)
        if not ds:
            continue
        v = np.array([found[tag][d] for d in ds])
        b = np.array([base[d] for d in ds])
        k = np.array([knn[d] for d in ds])
        gain, loss = int(np.argmax(v - b)), int(np.argmin(v - b))
        lines.append(
            f"| {tag} | {len(ds)} | {v.mean():.4f} | {b.mean():.4f} | {k.mean():.4f} "
            f"| {_wins_ties_losses(v, b)} | {_wins_ties_losses(v, k)} "
            f"| {ds[gain]} {v[gain] - b[gain]:+.3f} | {ds[loss]} {v[loss] - b[loss]:+.3f} |"
        )
    none = cells.get("none", {})
    lines += [
        "",
        "Every seed a variant ran, against `none` (this script, no change) on the same (dataset, seed) cells:",
        "",
        "| variant | cells | seeds | mean ROC-AUC | none | vs none |",
        "|---|---|---|---|---|---|",
    ]
    for tag in sorted(cells):
        common = sorted(set(cells[tag]) & set(none))
        if tag == "none" or not common:
            continue
        v = np.array([cells[tag][c] for c in common])
        b = np.array([none[c] for c in common])
        seeds = sorted({seed for _, seed in common})
        lines.append(
            f"| {tag} | {len(common)} | {seeds} | {v.mean():.4f} | {b.mean():.4f} | {_wins_ties_losses(v, b)} |"
        )
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--params", default="{}", help="USFlow parameters as JSON")
    parser.add_argument("--members", type=int, default=1, help="ensemble size (mean of member NLLs)")
    parser.add_argument(
        "--clusters",
        type=int,
        nargs="+",
        help="a mixture of USFs over k-means clusters, k chosen among these by held-out NLL (see cluster_mixture)",
    )
    parser.add_argument(
        "--noise-exponent", type=float, help="USFlow.noise_exponent for noise='auto' (default: the class's)"
    )
    parser.add_argument(
        "--gaussian-weights",
        type=float,
        nargs="+",
        help="also print, from the same fits, rows whose score is (1 - w) x the score + w x the NLL of a "
        "full-covariance Gaussian fitted in closed form (tag TAG+cfgaussW; w = 1: the Gaussian alone, tag cfgauss)",
    )
    parser.add_argument(
        "--member-params",
        help="JSON list of per-member parameters over --params, e.g. '[{}, {\"n_blocks\": 0}]' (the default "
        "flow and a Gaussian, a flow without couplings); the score is the mean of the members' NLLs",
    )
    parser.add_argument("--transform", choices=TRANSFORMS, default="none")
    parser.add_argument("--tag", default="")
    parser.add_argument("--table", nargs="+", help="row files to summarise instead of running")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if args.table:
        if args.output is None:
            parser.error("--table needs -o")
        table(args)
    elif not args.datasets:
        parser.error("give --datasets (or --table)")
    else:
        run(args)


if __name__ == "__main__":
    main()
