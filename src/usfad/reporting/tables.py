"""The project's tables: one markdown table, one plain-text table, one ``mean ± std``.

Cells are strings, formatted by the caller; these functions only lay them out. The spread
over seeds is the sample standard deviation, ``ddof = 1`` (:data:`DDOF`), everywhere: the
seeds are a sample of the seeds one could have run, and with the three to five seeds of a
usfad table the population formula (``ddof = 0``) understates the spread (by 18 % for
three seeds). It is what the benchmark report (``usfad report``, :mod:`usfad.bench.report`)
has always used; the demo, the image benchmark table and the stability study used
``ddof = 0`` before they shared this module.

No usfad imports: every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

#: delta degrees of freedom of every standard deviation over seeds in a usfad table
DDOF = 1


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table: a header row, a ``|---|`` rule, one line per row (no trailing newline)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table for a terminal: columns left-aligned, two spaces apart, a dashed rule
    under the header (no trailing newline)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def std(values: Iterable[float | None]) -> float:
    """The standard deviation (``ddof =`` :data:`DDOF`) of the finite values; NaN for fewer than two."""
    vals = _finite(values)
    return float(np.std(vals, ddof=DDOF)) if len(vals) > DDOF else math.nan


def mean_std(values: Iterable[float | None], digits: int = 3, sign: str = "") -> str:
    """``mean ± std`` of the finite values (:func:`std`, ``ddof =`` :data:`DDOF`), both with
    ``digits`` decimals; just the mean when there is one value, ``-`` when there is none.
    ``sign="+"`` writes the mean's sign always (for differences)."""
    vals = _finite(values)
    if not vals:
        return "-"
    mean = f"{np.mean(vals):{sign}.{digits}f}"
    return f"{mean} ± {std(vals):.{digits}f}" if len(vals) > 1 else mean
