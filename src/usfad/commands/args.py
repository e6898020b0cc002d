"""Argument helpers shared by the sub-commands."""

from __future__ import annotations


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
