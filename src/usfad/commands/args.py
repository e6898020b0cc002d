"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse


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
