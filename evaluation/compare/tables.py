"""Plain-text tables for the evaluators' terminal output."""

from __future__ import annotations

from typing import Optional, Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 right_align_from: int = 1) -> str:
    """Columns padded to their widest cell; columns from `right_align_from` on are numbers."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(cell).rjust(w) if i >= right_align_from else str(cell).ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(row) for row in rows])


def number(value: Optional[float], digits: int = 2, std: Optional[float] = None,
           suffix: str = "") -> str:
    """A figure, with ± its spread across runs when there is one; "-" when there is none."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}{suffix}"
    return text if std is None else f"{text} ± {std:.{digits}f}"
