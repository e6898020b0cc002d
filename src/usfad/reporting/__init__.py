"""Reporting: the tables every report and command prints (one markdown table, one text
table, one ``mean ± std``). Plots and the report writers are still beside their runners
(:mod:`usfad.plots`, :mod:`usfad.bench.report`, :mod:`usfad.studies`)."""

from .tables import DDOF, markdown_table, mean_std, std, text_table

__all__ = ["DDOF", "markdown_table", "mean_std", "std", "text_table"]
