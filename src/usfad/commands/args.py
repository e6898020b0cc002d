"""Helpers shared by the sub-commands: argument lists, and what a report command prints."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from ..data.files import DEFAULT_CHUNK_SIZE
from ..reporting.tables import text_table


def split_list(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (comma- or space-separated lists both work)."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def int_list(values: list[str] | None, what: str) -> list[int]:
    """:func:`split_list` as integers; a non-integer is a ValueError naming ``what``."""
    out = []
    for item in split_list(values):
        try:
            out.append(int(item))
        except ValueError:
            raise ValueError(f"{what} must be integers, got {item!r}") from None
    return out


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def print_tables(*tables: tuple[Sequence[str], Sequence[Sequence[str]]]) -> None:
    """Print ``(headers, rows)`` tables as plain text, a blank line between two."""
    print("\n\n".join(text_table(headers, rows) for headers, rows in tables))


def print_report_written(path: Path, start: float) -> None:
    """The last line of a command that wrote a report folder: where, and the seconds since ``start``."""
    print(f"\nreport written to {path} ({time.perf_counter() - start:.0f} s)")


def auto_or_positive_int(text: str) -> int | str:
    """argparse type: ``auto`` or an integer >= 1 (``--threads``, ``--base-components``)."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}") from None


def add_threads_arg(p: argparse.ArgumentParser, note: str = "") -> None:
    """``--threads N|auto``: torch's (and the BLAS/OpenMP pools') threads for this command.

    ``auto``, the default, takes the cores that other work leaves idle (the 1-minute load
    average; :func:`~usfad.experiments.engine.idle_cores`). A tabular model's layers are
    small: on an idle machine more threads shorten a fit somewhat, and beside other work
    torch's own default of one thread per core makes it several times longer, as the
    threads wait for each other (``benchmarks/results/fit_threads_idle.md``,
    ``fit_threads_loaded.md``)."""
    p.add_argument(
        "--threads",
        type=auto_or_positive_int,
        default="auto",
        metavar="N|auto",
        help=f"torch threads{note} (default: auto, the cores that other work leaves idle, at least one)",
    )


def use_threads(args: argparse.Namespace) -> None:
    """Set the threads ``--threads`` asks for, before any work."""
    from ..experiments.engine import idle_cores, limit_threads

    limit_threads(idle_cores() if args.threads == "auto" else args.threads)


def add_streaming_args(p: argparse.ArgumentParser) -> None:
    """``--chunk-size`` and ``--label-column``: the options of the commands that stream a data file."""
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"rows read at a time (default: {DEFAULT_CHUNK_SIZE})",
    )
    p.add_argument("--label-column", metavar="NAME", help="a label column to leave out of the features")
