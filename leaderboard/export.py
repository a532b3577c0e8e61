"""The shown leaderboard as Markdown in the layout of Spec-Bench's Leaderboard.md.

Same columns, "2.14x" speedups, the best value of each column in bold and medals for the top
three (only where the data can tell them apart: leaderboard/emphasis.py), so a table from this platform can sit next to (or replace) one of Spec-Bench's. Subtasks
outside Spec-Bench's six (our bundled extras) get their own columns before the accepted tokens,
rather than being silently dropped while still counting in "Overall".
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from evaluation.record.subtasks import OVERALL, SPEC_BENCH_SUBTASKS, display_name, ordered_subtasks
from leaderboard.emphasis import best_index, best_unintervalled, medals, real_interval, speedup_measure
from leaderboard.filters import format_value, question_set_text
from leaderboard.queries import LOSSLESS, NOT_EQUAL, LeaderboardRow, Selection

MISSING = "-"


def _finite(value: Optional[float]) -> bool:
    return value is not None and not math.isnan(value)


def _cells(values: list[Optional[float]], fmt: Callable[[float], str],
           best: Optional[int]) -> list[str]:
    """Formatted cells with the column's clear best (if any) in bold, as Spec-Bench marks it."""
    return [MISSING if not _finite(value) else f"**{fmt(value)}**" if i == best else fmt(value)
            for i, value in enumerate(values)]


def _speedup_cells(rows: list[LeaderboardRow], subtask: str) -> list[str]:
    measures = [speedup_measure(row, subtask) for row in rows]
    return _cells([m.value for m in measures], _speedup, best_index(measures))


def _speedup(value: float) -> str:
    return f"{value:.2f}x"


def _settings_lines(selection: Selection) -> list[str]:
    decoding = ("greedy decoding" if selection.temperature == 0
                else f"sampling at temperature {selection.temperature:g}")
    return [
        f"## Leaderboard on {selection.device_name}",
        "",
        f"- Device: {selection.device_name}",
        f"- Experimental Settings: {selection.model}, {decoding}, {selection.dtype} precision, "
        f"bench {selection.bench}, {selection.backend} backend",
        f"- Questions: {question_set_text(selection.question_set)}; token cap: "
        f"{format_value('max_new_tokens', selection.max_new_tokens)}",
        "- Bold and medals only where the 95% intervals of more than one question set a result "
        "clearly apart (above 1.00x and above every other row); never for a method whose output "
        "differs from the baseline's.",
        "",
    ]


def _notes(rows: list[LeaderboardRow]) -> list[str]:
    """What Spec-Bench's table cannot say: intervals, equality, the baseline's throughput."""
    notes = []
    for row in rows:
        parts = []
        if real_interval(row.ci_low, row.ci_high):
            parts.append(f"overall 95% CI {row.ci_low:.2f}x–{row.ci_high:.2f}x")
        if row.equality == LOSSLESS:
            parts.append("lossless (output equal to the baseline)")
        elif row.equality == NOT_EQUAL:
            parts.append(f"not equal to the baseline ({row.num_equal}/{row.num_compared} equal)")
        else:
            parts.append("equality not checked")
        if _finite(row.base_tokens_per_s):
            parts.append(f"baseline {row.base_method} {row.base_tokens_per_s:.1f} tokens/s")
        notes.append(f"- {row.method}: " + "; ".join(parts))
    return ["", *notes] if notes else []


def leaderboard_markdown(rows: list[LeaderboardRow], selection: Optional[Selection] = None) -> str:
    """A Leaderboard.md-style section: settings (if a selection is given), table, notes."""
    rows = sorted(rows, key=lambda r: -r.overall if _finite(r.overall) else math.inf)
    present = {name for row in rows for name in row.speedups}
    extras = [s for s in ordered_subtasks(present) if s not in SPEC_BENCH_SUBTASKS]
    subtasks = [*SPEC_BENCH_SUBTASKS, *extras]

    header = ["Models", *(display_name(s) for s in subtasks), "#Mean Accepted Tokens", "Overall"]
    columns = [_speedup_cells(rows, s) for s in subtasks]
    accepted = [row.mean_accepted_tokens for row in rows]
    columns.append(_cells(accepted, lambda v: f"{v:.2f}", best_unintervalled(
        accepted, [row.question_counts.get(OVERALL, row.num_questions) for row in rows])))
    columns.append(_speedup_cells(rows, OVERALL))

    given = medals(rows)
    lines = _settings_lines(selection) if selection is not None else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---", *([":---:"] * (len(header) - 1))]) + " |")
    for i, row in enumerate(rows):
        medal = given[i]
        name = row.method.replace("|", "\\|")  # a pipe would split the cell
        cells = [f"{name}{medal}", *(column[i] for column in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _notes(rows)
    return "\n".join(lines) + "\n"
