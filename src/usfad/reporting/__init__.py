"""Reporting: what the commands print and write from results.

- :mod:`~usfad.reporting.tables`: one markdown table, one text table, one ``mean ± std``
  (one ddof, the sample standard deviation);
- :mod:`~usfad.reporting.report`: the pieces of a report folder's ``report.md`` (quick-run
  note, figure section);
- :mod:`~usfad.reporting.image`: the image benchmark's tables (``usfad image bench``);
- :mod:`~usfad.reporting.demo`: the demo's tables, report and figures (``usfad demo``).

The tabular benchmark's report (:mod:`usfad.bench.report`) and the studies' reports
(:mod:`usfad.studies`) are beside their runs and use these; the figures are
:mod:`usfad.plots` and :mod:`usfad.studies.plots`.
"""

from .tables import DDOF, markdown_table, mean_std, std, text_table

__all__ = ["DDOF", "markdown_table", "mean_std", "std", "text_table"]
