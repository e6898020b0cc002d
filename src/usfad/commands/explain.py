"""``usfad explain MODEL DATA -o OUT.csv``: which features make each row's score.

DATA is read in chunks, checked and scored exactly as ``usfad score`` does it (same
formats, same bad-row rules, same column-name check; see :mod:`usfad.commands.model`), and
OUT gets one line per input row, in order::

    score,label,feature_1,attribution_1,...,feature_K,attribution_K

``score`` and ``label`` are what ``usfad score`` writes; then the ``--top`` K features with
the largest attributions (:meth:`usfad.detectors.base.BaseDetector.explain`, from
``--baseline``), largest first, by column name (the model's ``feature_names_in_``, else
``x0``, ``x1``, ...). A row's attributions over all features add up to its score minus its
baseline's score; an attribution of exactly 0 is written without a name (with ``--baseline
typical`` every row no farther out than a typical training row: nothing to explain). A bad
row stops the run with status 1; the rows before it are written.

``--baseline neighbours --reference TRAIN_FILE [--neighbours K]`` starts each row from the
mean of its K (10) nearest rows of TRAIN_FILE (normally the training data), for anomalies
whose values are each normal but whose combination is not. TRAIN_FILE is read whole, by
the readers and the label rules of ``usfad fit``: ``--label-column`` is dropped from it as
from DATA, and its rows labelled 1 are left out; its columns must be the model's. Both
flags are refused with any other baseline, and the neighbours baseline without
``--reference``; every check on TRAIN_FILE is made before DATA is read.

``--plot DIR`` also draws, for the ``--plot-rows`` top-scoring rows, the attributions beside
each feature's value and its normal range (training mean +- 2 sd, from the saved scaler):
``DIR/row_<i>.png``, ``i`` counting rows from 0 as OUT does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data.files import feature_columns, iter_table, read_table, write_lines
from ..errors import DataError
from ..explain import BASELINES, DEFAULT_NEIGHBOURS
from ..outputs import check_output_dir, check_output_file
from ..validation import check_array, check_feature_names
from .args import add_streaming_args, add_threads_arg, positive_int, use_threads
from .model import new_stats, normal_rows, scored_chunks, stopped_at_bad_row


def _csv_field(text: str) -> str:
    """``text`` as one CSV field (quoted when it holds a comma, a quote or a line break)."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


class _TopRows:
    """The ``size`` highest-scoring rows seen so far: index, score, label, values, attributions."""

    def __init__(self, size: int):
        self.size = size
        self.index = np.empty(0, dtype=np.int64)
        self.scores = np.empty(0)
        self.labels = np.empty(0, dtype=np.int64)
        self.values: np.ndarray | None = None
        self.attributions: np.ndarray | None = None

    def add(self, start: int, scores: np.ndarray, labels: np.ndarray, X: np.ndarray, A: np.ndarray) -> None:
        keep = np.argsort(-scores, kind="stable")[: self.size]
        index = np.concatenate([self.index, start + keep])
        merged_scores = np.concatenate([self.scores, scores[keep]])
        labels = np.concatenate([self.labels, labels[keep]])
        values = X[keep] if self.values is None else np.concatenate([self.values, X[keep]])
        attributions = A[keep] if self.attributions is None else np.concatenate([self.attributions, A[keep]])
        best = np.argsort(-merged_scores, kind="stable")[: self.size]
        self.index, self.scores, self.labels = index[best], merged_scores[best], labels[best]
        self.values, self.attributions = values[best], attributions[best]


def _check_baseline_flags(args: argparse.Namespace) -> None:
    """``--reference`` and ``--neighbours`` go with ``--baseline neighbours``, which needs the first;
    without ``--baseline``, ``--reference`` means neighbours (sets ``args.baseline``)."""
    if args.baseline is None:
        if args.reference is None and args.neighbours is not None:
            raise ValueError(
                "--neighbours needs --reference TRAIN_FILE: the rows (normally the training data) whose nearest "
                "ones, averaged, are each row's baseline"
            )
        args.baseline = "mean" if args.reference is None else "neighbours"
    if args.baseline == "neighbours":
        if args.reference is None:
            raise ValueError(
                "--baseline neighbours needs --reference TRAIN_FILE: the rows (normally the training data) "
                "whose nearest ones, averaged, are each row's baseline"
            )
        return
    for flag, value in (("--reference", args.reference), ("--neighbours", args.neighbours)):
        if value is not None:
            raise ValueError(f"{flag} goes with --baseline neighbours; --baseline {args.baseline} does not use it")


def _reference_rows(args: argparse.Namespace, detector: Any, given: Any) -> np.ndarray:
    """TRAIN_FILE's rows as ``usfad fit`` reads them (label column dropped, rows labelled 1 left
    out), checked against the model: its columns, its width, and enough rows for ``--neighbours``."""
    path = args.reference
    X, y = read_table(path, label_column=args.label_column, finite=True)
    check_feature_names(feature_columns(path, label_column=args.label_column), given, what=str(path))
    if args.label_column is not None and y is not None:
        X = normal_rows(path, X, y, args.label_column)
    elif y is not None:  # an .npz with an array y, not named: every row, as usfad fit does, but say so
        print(f"note: {path} holds labels 'y'; pass --label-column y to use the rows labelled 0 only")
    X = check_array(X, n_features=detector.n_features_in_, what=str(path), fitted=type(detector).__name__)
    k = DEFAULT_NEIGHBOURS if args.neighbours is None else args.neighbours
    if k > len(X):
        raise ValueError(f"--neighbours {k} asks for more rows than the reference {path} has ({len(X)})")
    return X


def _attributions(detector: Any, X: np.ndarray, args: argparse.Namespace, bar: Any, options: dict) -> np.ndarray:
    """``detector.explain`` of ``X`` in batches, moving the progress bar after each."""
    parts = []
    step = int(detector.score_batch_size)
    for i in range(0, len(X), step):
        parts.append(detector.explain(X[i : i + step], args.baseline, n_points=args.points, **options))
        bar.update(len(parts[-1]))
    return np.concatenate(parts)


def _lines(scores: np.ndarray, labels: np.ndarray, A: np.ndarray, names: list[str], top: int) -> list[str]:
    """One CSV line per row: score, label, then the ``top`` largest attributions by name (0: no name)."""
    order = np.argsort(-A, axis=1, kind="stable")[:, :top]
    values = np.take_along_axis(A, order, axis=1)
    return [
        f"{s:.17g},{lab}," + ",".join(f"{names[j] if a != 0 else ''},{a:.17g}" for j, a in zip(row, vals)) + "\n"
        for s, lab, row, vals in zip(scores.tolist(), labels.tolist(), order.tolist(), values.tolist())
    ]


def explain(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..detectors import load
    from ..plots import plot_attributions

    _check_baseline_flags(args)
    use_threads(args)
    inputs = [args.model, args.data, args.reference]
    check_output_file(args.output, inputs=inputs, what="output")
    if args.plot is not None:
        check_output_dir(args.plot, inputs=inputs, what="plot folder")
    detector = load(args.model)
    d = detector.n_features_in_
    if args.top > d:
        raise ValueError(f"--top {args.top} asks for more features than the model has ({d})")
    given = getattr(detector, "feature_names_in_", None)
    options: dict[str, Any] = {}
    baseline = args.baseline
    if args.baseline == "neighbours":
        reference = _reference_rows(args, detector, given)
        options = {"reference": reference, "n_neighbours": args.neighbours or DEFAULT_NEIGHBOURS}
        baseline = (
            f"neighbours: the mean of {options['n_neighbours']} nearest of {len(reference)} rows of {args.reference}"
        )
    names = [str(c) for c in given] if given is not None else [f"x{j}" for j in range(d)]
    fields = [_csv_field(c) for c in names]
    header = "score,label," + ",".join(f"feature_{i},attribution_{i}" for i in range(1, args.top + 1)) + "\n"
    stats = new_stats()
    done = {"rows": 0}
    top = _TopRows(args.plot_rows) if args.plot is not None else None
    held: list[np.ndarray] = []  # the chunk scored_chunks is on (it takes one, then yields its scores)

    def holding(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for X in chunks:
            held[:] = [np.asarray(X, dtype=np.float64)]
            yield X

    def explained(scored: Iterator[tuple[np.ndarray, np.ndarray]], bar: Any) -> Iterator[list[str]]:
        for scores, labels in scored:
            X = held[0]
            A = _attributions(detector, X, args, bar, options)
            if top is not None:
                top.add(done["rows"], scores, labels, X, A)
            done["rows"] += len(X)
            yield _lines(scores, labels, A, fields, args.top)

    with tqdm(desc="explain", unit=" rows", disable=args.quiet, file=sys.stderr) as bar:
        try:
            chunks = iter_table(args.data, chunk_size=args.chunk_size, label_column=args.label_column, finite=True)
            check_feature_names(chunks.feature_names, given, what=str(args.data))
            write_lines(args.output, header, explained(scored_chunks(detector, args.data, holding(chunks), stats), bar))
        except DataError as exc:
            raise stopped_at_bad_row(exc, done["rows"], args.output, "explained") from None
    n = done["rows"]
    summary = (
        f"explained {n} rows with {type(detector).__name__} (baseline {baseline}): "
        f"{int(stats['flagged'])} flagged as anomalies ({stats['flagged'] / n:.1%}) at threshold "
        f"{detector.threshold_:.6g}; the top {args.top} feature(s) of each row written to {args.output}"
    )
    if top is not None:
        for i, score, label, values, A in zip(top.index, top.scores, top.labels, top.values, top.attributions):
            flagged = "flagged" if label else "not flagged"
            plot_attributions(
                Path(args.plot) / f"row_{i}.png",
                A,
                values,
                names,
                detector.scaler_mean_,
                detector.scaler_scale_,
                title=f"{args.data}, row {i}: score {score:.4g} ({flagged}); attributions from the "
                f"{args.baseline} baseline, summing to {A.sum():.4g}",
            )
        summary += f"; {len(top.index)} plot(s) in {args.plot}"
    print(summary)
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "explain",
        help="which features make each row's score: attributions that add up to it, streamed in chunks",
        description="Score every row of DATA with the detector in MODEL and name the features that raise its "
        "score most: one score,label,feature_1,attribution_1,... row per input row.",
    )
    p.add_argument("model", metavar="MODEL", help="model file written by usfad fit")
    p.add_argument("data", metavar="DATA", help="data to explain: .csv, .npz (array X) or .parquet")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv", type=Path, help="CSV file to write")
    p.add_argument(
        "--top", type=positive_int, default=3, metavar="K", help="features named per row, largest first (default: 3)"
    )
    p.add_argument(
        "--baseline",
        choices=BASELINES,
        help="what the attributions start from: the training mean, (a usflow fitted with --base gaussian, or "
        "--input-kernel off and, on binary columns, --gaussian-weight 0) each row's point of typical score on its "
        "latent ray, or the mean of each row's "
        "nearest rows of --reference (default: neighbours "
        "with --reference, else mean)",
    )
    p.add_argument(
        "--reference",
        metavar="TRAIN_FILE",
        help="with --baseline neighbours: the rows to take neighbours from, normally the training data "
        "(.csv, .npz or .parquet, read as usfad fit reads it; --label-column applies to it too)",
    )
    p.add_argument(
        "--neighbours",
        type=positive_int,
        metavar="K",
        help=f"with --baseline neighbours: reference rows averaged per row (default: {DEFAULT_NEIGHBOURS})",
    )
    p.add_argument(
        "--points",
        type=positive_int,
        metavar="N",
        help="quadrature points along the path (default: 1 for a uniformly scaling flow, 8 otherwise)",
    )
    p.add_argument("--plot", metavar="DIR", type=Path, help="also draw the top-scoring rows' attributions here (PNG)")
    p.add_argument("--plot-rows", type=positive_int, default=5, metavar="N", help="rows drawn with --plot (default: 5)")
    add_streaming_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_arg(p)
    p.set_defaults(func=explain)
