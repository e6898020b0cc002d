"""The ``usfad`` command line: ``usfad demo | fit | score | explain | export | bench | report | study | image``.

Each sub-command lives in a module with ``add_commands(subparsers)`` that registers its
parsers and sets ``func`` (taking the parsed ``argparse.Namespace``, returning an exit
code). This file only wires them together and turns usfad's errors and warnings into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from . import __version__
from .errors import DataError, ModelFileError, TrainingDivergedError

COMMAND_MODULES = (
    "usfad.commands.demo",
    "usfad.commands.model",
    "usfad.commands.explain",
    "usfad.commands.export",
    "usfad.commands.bench",
    "usfad.commands.study",
    "usfad.commands.image",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usfad", description="Anomaly detection with uniformly scaling flows.")
    parser.add_argument("--version", action="version", version=f"usfad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the command line: ``usfad CMD: warning: MESSAGE`` on stderr,
    not Python's file name, line number and source line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"usfad {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except (DataError, ModelFileError, TrainingDivergedError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"usfad {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"usfad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
