"""Which results deserve emphasis (a highlight in the table, a medal in the export).

Emphasis says "this one is better", so it is given only where the data can say so:
- the value is measured on more than one question (one question has no spread to judge by);
- its 95% interval is known and is not a single point;
- a speedup's interval lies above 1.0x (otherwise it is not shown to beat the baseline);
- every other row's interval (its value where it has none) lies below it: overlapping
  intervals are a tie, and a tie has no winner;
- the method's output is not known to differ from the baseline's (a not-equal method is never
  celebrated, whatever its speed).
The table and the Markdown export both ask this module, so they always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from evaluation.record.subtasks import OVERALL
from leaderboard.queries import NOT_EQUAL, LeaderboardRow

MEDALS = ("🏅", "🥈", "🥉")
BASELINE_SPEEDUP = 1.0


def _finite(value: Optional[float]) -> bool:
    return value is not None and not math.isnan(value)


def real_interval(low: Optional[float], high: Optional[float]) -> Optional[tuple[float, float]]:
    """The interval, or None when it is unknown or degenerate (a single point says nothing)."""
    if not (_finite(low) and _finite(high)) or high - low <= 1e-9 * max(abs(high), 1.0):
        return None
    return float(low), float(high)


@dataclass(frozen=True)
class Measure:
    """One cell: its value, its 95% interval (if any), how many questions it rests on, and
    whether its row may be emphasised at all."""

    value: Optional[float]
    interval: Optional[tuple[float, float]]
    questions: int
    eligible: bool = True

    @property
    def top(self) -> float:
        return self.interval[1] if self.interval else float(self.value)


def speedup_measure(row: LeaderboardRow, subtask: str) -> Measure:
    if subtask == OVERALL:
        value, interval = row.overall, real_interval(row.ci_low, row.ci_high)
        questions = row.question_counts.get(OVERALL, row.num_questions)
    else:
        value = row.speedups.get(subtask)
        interval = real_interval(*row.intervals.get(subtask, (None, None)))
        questions = row.question_counts.get(subtask, 0)
    return Measure(value, interval, questions, eligible=row.equality != NOT_EQUAL)


def stands_apart(measure: Measure, others: Sequence[Measure], floor: Optional[float]) -> bool:
    """True when `measure` is above every other measure by its whole interval (and above floor)."""
    if not (measure.eligible and _finite(measure.value) and measure.questions > 1
            and measure.interval is not None):
        return False
    if floor is not None and measure.interval[0] <= floor:
        return False
    return all(measure.interval[0] > other.top for other in others if _finite(other.value))


def best_index(measures: Sequence[Measure], floor: Optional[float] = BASELINE_SPEEDUP) -> Optional[int]:
    """The index of the column's clear best, or None where no value stands apart."""
    finite = [i for i, m in enumerate(measures) if _finite(m.value)]
    if not finite:
        return None
    best = max(finite, key=lambda i: measures[i].value)
    others = [m for i, m in enumerate(measures) if i != best]
    return best if stands_apart(measures[best], others, floor) else None


def best_unintervalled(values: Sequence[Optional[float]], questions: Sequence[int]) -> Optional[int]:
    """For figures without an interval (mean accepted tokens): the unique maximum over more than
    one question, else None."""
    finite = [i for i, v in enumerate(values) if _finite(v)]
    if not finite:
        return None
    top = max(values[i] for i in finite)
    winners = [i for i in finite if values[i] == top]
    return winners[0] if len(winners) == 1 and questions[winners[0]] > 1 else None


def medals(rows: Sequence[LeaderboardRow]) -> list[str]:
    """A medal (or "") per row, rows in rank order: the k-th row gets the k-th medal only where
    its Overall interval lies wholly between those of the rows above and below it."""
    measures = [speedup_measure(row, OVERALL) for row in rows]
    given = []
    for i, measure in enumerate(measures):
        above = measures[:i]
        clear_of_above = all(m.interval is not None and m.interval[0] > measure.top
                             for m in above if _finite(m.value))
        if (i < len(MEDALS) and clear_of_above
                and stands_apart(measure, measures[i + 1:], BASELINE_SPEEDUP)):
            given.append(MEDALS[i])
        else:
            given.append("")
    return given
