"""Leaderboard rows as display tables: column names, number formats, best-in-column marks."""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd
from pandas.io.formats.style import Styler

from evaluation.record.subtasks import display_name
from leaderboard.queries import LOSSLESS, NOT_EQUAL, LeaderboardRow, subtasks_of

METHOD = "Method"
MEAN_ACCEPTED = "Mean accepted tokens"
OVERALL = "Overall"
OVERALL_CI = "Overall 95% CI"
EQUALITY = "Lossless"
TOKENS_PER_S = "Tokens/s"
BASE_TOKENS_PER_S = "Baseline tokens/s"

BEST_STYLE = "font-weight: bold; background-color: rgba(255, 215, 0, 0.35);"


def _number(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def equality_badge(row: LeaderboardRow) -> str:
    # Plain symbols rather than emoji: they render with the common fonts of headless browsers.
    if row.equality == LOSSLESS:
        badge = "✔ lossless"
    elif row.equality == NOT_EQUAL:
        badge = f"✘ not equal ({row.num_equal}/{row.num_compared} equal)"
    else:
        badge = "○ not checked"
    # A knowingly lossy option (e.g. typical acceptance) is worth saying even before equal.py ran.
    return badge + (" · lossy option" if row.lossy_option else "")


def interval_text(low: Optional[float], high: Optional[float]) -> str:
    if low is None or high is None:
        return "–"
    return f"{low:.2f}x – {high:.2f}x"


def leaderboard_frame(rows: list[LeaderboardRow]) -> pd.DataFrame:
    """One line per row, subtask columns in report order under their display names."""
    subtasks = subtasks_of(rows)
    records = []
    for row in rows:
        record = {METHOD: row.method}
        record.update({display_name(s): _number(row.speedups.get(s)) for s in subtasks})
        record[MEAN_ACCEPTED] = _number(row.mean_accepted_tokens)
        record[OVERALL] = _number(row.overall)
        record[OVERALL_CI] = interval_text(row.ci_low, row.ci_high)
        record[EQUALITY] = equality_badge(row)
        record[TOKENS_PER_S] = _number(row.tokens_per_s)
        record[BASE_TOKENS_PER_S] = _number(row.base_tokens_per_s)
        records.append(record)
    columns = [METHOD, *(display_name(s) for s in subtasks), MEAN_ACCEPTED, OVERALL, OVERALL_CI,
               EQUALITY, TOKENS_PER_S, BASE_TOKENS_PER_S]
    return pd.DataFrame.from_records(records, columns=columns)


def _speedup_columns(frame: pd.DataFrame) -> list[str]:
    first, last = frame.columns.get_loc(METHOD) + 1, frame.columns.get_loc(MEAN_ACCEPTED)
    return [*frame.columns[first:last], OVERALL]


def styled_leaderboard(frame: pd.DataFrame) -> Styler:
    """Speedups as "2.14x", the best value of each measured column highlighted."""
    speedups = _speedup_columns(frame)
    best_columns = [*speedups, MEAN_ACCEPTED, TOKENS_PER_S]
    return (
        frame.style.hide(axis="index")
        .format("{:.2f}x", subset=speedups, na_rep="–")
        .format("{:.2f}", subset=[MEAN_ACCEPTED], na_rep="–")
        .format("{:.1f}", subset=[TOKENS_PER_S, BASE_TOKENS_PER_S], na_rep="–")
        .highlight_max(subset=best_columns, props=BEST_STYLE)
    )


def comparison_frame(rows_a: list[LeaderboardRow], rows_b: list[LeaderboardRow]) -> pd.DataFrame:
    """Methods present on both sides, side by side; ordered by side A's overall speedup.

    Columns end in "A" / "B" rather than the compared names: device names are long enough to
    make a header per column unreadable, so the page says once which side is which.
    """
    by_method_b = {row.method: row for row in rows_b}
    pairs = [(a, by_method_b[a.method]) for a in rows_a if a.method in by_method_b]
    subtasks = subtasks_of([row for pair in pairs for row in pair])
    records = []
    for a, b in pairs:
        record = {METHOD: a.method,
                  f"{OVERALL} A": _number(a.overall), f"{OVERALL} B": _number(b.overall),
                  f"{MEAN_ACCEPTED} A": _number(a.mean_accepted_tokens),
                  f"{MEAN_ACCEPTED} B": _number(b.mean_accepted_tokens)}
        for subtask in subtasks:
            record[f"{display_name(subtask)} A"] = _number(a.speedups.get(subtask))
            record[f"{display_name(subtask)} B"] = _number(b.speedups.get(subtask))
        records.append(record)
    return pd.DataFrame.from_records(records)


def styled_comparison(frame: pd.DataFrame) -> Styler:
    accepted = [c for c in frame.columns if c.startswith(MEAN_ACCEPTED)]
    speedups = [c for c in frame.columns if c != METHOD and c not in accepted]
    return (
        frame.style.hide(axis="index")
        .format("{:.2f}x", subset=speedups, na_rep="–")
        .format("{:.2f}", subset=accepted, na_rep="–")
    )


MISMATCH = "Settings that differ (method vs baseline)"
BASELINE = "Baseline"


def unmatched_frame(rows: list[LeaderboardRow]) -> pd.DataFrame:
    """Comparisons stored despite differing settings: shown apart, never ranked or highlighted."""
    records = [{METHOD: row.method, BASELINE: row.base_method, OVERALL: _number(row.overall),
                MISMATCH: row.mismatch_text} for row in rows]
    return pd.DataFrame.from_records(records, columns=[METHOD, BASELINE, OVERALL, MISMATCH])


def styled_unmatched(frame: pd.DataFrame) -> Styler:
    return frame.style.hide(axis="index").format("{:.2f}x", subset=[OVERALL], na_rep="–")
