"""The pieces every report folder's ``report.md`` shares: the quick-run note, the figure
section, and writing the file. No usfad imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

#: said at the top of a report whose models trained for a few steps only (``--quick``)
QUICK_RUN_NOTE = "**Quick run**: models trained for a handful of steps; the numbers mean nothing."


def quick_note(quick: bool) -> list[str]:
    """A blank line and :data:`QUICK_RUN_NOTE` for a quick run; nothing otherwise."""
    return ["", QUICK_RUN_NOTE] if quick else []


def figure_section(figures: Sequence[Path], captions: Mapping[str, str]) -> list[str]:
    """``## Figures`` with each figure under its caption (by file stem); nothing without figures."""
    if not figures:
        return []
    lines = ["## Figures", ""]
    for path in figures:
        lines += [captions.get(path.stem, ""), "", f"![{path.stem}]({path.name})", ""]
    return lines


def write_markdown(lines: Sequence[str], path: str | Path) -> Path:
    """Write ``lines`` joined by newlines (UTF-8) to ``path``; returns the path."""
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


__all__ = ["QUICK_RUN_NOTE", "figure_section", "quick_note", "write_markdown"]
