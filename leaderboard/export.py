"""The shown leaderboard as Markdown in the layout of Spec-Bench's Leaderboard.md.

Same columns, "2.14x" speedups, the best value of each column in bold and medals for the top
three, so a table from this platform can sit next to (or replace) one of Spec-Bench's. Subtasks
outside Spec-Bench's six (our bundled extras) get their own columns before the accepted tokens,
rather than being silently dropped while still counting in "Overall".
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from evaluation.record.subtasks import SPEC_BENCH_SUBTASKS, display_name, ordered_subtasks
from leaderboard.queries import LOSSLESS, NOT_EQUAL, LeaderboardRow, Selection

MEDALS = ("🏅", "🥈", "🥉")
MISSING = "-"


def _finite(value: Optional[float]) -> bool:
    return value is not None and not math.isnan(value)


def _cells(values: list[Optional[float]], fmt: Callable[[float], str]) -> list[str]:
    """Formatted cells with the column's best value in bold, as Spec-Bench marks it."""
    finite = [v for v in values if _finite(v)]
    best = max(finite) if finite else None
    cells = []
    for value in values:
        if not _finite(value):
            cells.append(MISSING)
        elif value == best:
            cells.append(f"**{fmt(value)}**")
        else:
            cells.append(fmt(value))
    return cells


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
        "",
    ]


def _notes(rows: list[LeaderboardRow]) -> list[str]:
    """What Spec-Bench's table cannot say: intervals, equality, the baseline's throughput."""
    notes = []
    for row in rows:
        parts = []
        if _finite(row.ci_low) and _finite(row.ci_high):
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
    columns = [_cells([row.speedups.get(s) for row in rows], _speedup) for s in subtasks]
    columns.append(_cells([row.mean_accepted_tokens for row in rows], lambda v: f"{v:.2f}"))
    columns.append(_cells([row.overall for row in rows], _speedup))

    medalled = min(len(MEDALS), sum(_finite(row.overall) for row in rows))  # NaN rows sort last
    lines = _settings_lines(selection) if selection is not None else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---", *([":---:"] * (len(header) - 1))]) + " |")
    for i, row in enumerate(rows):
        medal = MEDALS[i] if i < medalled else ""
        name = row.method.replace("|", "\\|")  # a pipe would split the cell
        cells = [f"{name}{medal}", *(column[i] for column in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _notes(rows)
    return "\n".join(lines) + "\n"
