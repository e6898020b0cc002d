"""The one table layer: markdown and text tables, and mean ± std with one ddof."""

import math

import numpy as np

from usfad.reporting.tables import DDOF, markdown_table, mean_std, std, text_table


def test_markdown_table_lays_out_header_rule_and_rows():
    assert markdown_table(["a", "bb"], [["1", "2"], ["x", ""]]) == "| a | bb |\n|---|---|\n| 1 | 2 |\n| x |  |"


def test_text_table_pads_columns_to_the_widest_cell():
    assert text_table(["a", "b"], [["long", "1"]]).splitlines() == ["a     b", "----  -", "long  1"]
    assert text_table(["a"], []) == "a\n-"


def test_mean_std_is_the_sample_standard_deviation_of_the_finite_values():
    assert DDOF == 1
    values = [0.5, 0.7, 0.9]
    assert mean_std(values) == f"0.700 ± {np.std(values, ddof=1):.3f}" == "0.700 ± 0.200"
    assert mean_std([0.5, float("nan"), None, 0.7, 0.9]) == "0.700 ± 0.200"
    assert mean_std([0.25]) == "0.250"
    assert mean_std([]) == mean_std([float("nan")]) == "-"
    assert mean_std([0.1, 0.3], digits=1, sign="+") == "+0.2 ± 0.1"


def test_std_needs_two_finite_values():
    assert math.isnan(std([1.0])) and math.isnan(std([1.0, float("inf")]))
    assert std([1.0, 3.0]) == np.std([1.0, 3.0], ddof=1)


def test_report_pieces(tmp_path):
    from pathlib import Path

    from usfad.reporting.report import QUICK_RUN_NOTE, figure_section, quick_note, write_markdown

    assert quick_note(False) == [] and quick_note(True) == ["", QUICK_RUN_NOTE]
    assert figure_section([], {"a": "A"}) == []
    assert figure_section([Path("x/a.png"), Path("b.png")], {"a": "The a."}) == [
        "## Figures", "", "The a.", "", "![a](a.png)", "", "", "", "![b](b.png)", "",
    ]  # fmt: skip
    assert write_markdown(["# t", "", "x"], tmp_path / "r.md").read_text(encoding="utf-8") == "# t\n\nx"
