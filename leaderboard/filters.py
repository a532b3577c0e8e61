"""Cascading filter choices: each filter offers only values that still have results.

Selections arrive newest first, so the first option of every filter is the newest result: the
app opens on the latest comparison without anyone choosing anything.
"""

from __future__ import annotations

from typing import Any, Iterable

from leaderboard.queries import SELECTION_FIELDS, Selection

FILTER_LABELS: dict[str, str] = {
    "device_name": "Device",
    "model": "Model",
    "dtype": "Dtype",
    "temperature": "Temperature",
    "bench": "Bench",
    "backend": "Backend",
    "question_set": "Question set",
    "max_new_tokens": "Token cap (max new tokens)",
}


def options_for(selections: Iterable[Selection], field: str, chosen: dict[str, Any]) -> list:
    """Values of `field` among selections that agree with everything chosen so far."""
    values: list = []
    for selection in selections:
        if all(getattr(selection, name) == value for name, value in chosen.items()):
            value = getattr(selection, field)
            if value not in values:
                values.append(value)
    return values


def format_value(field: str, value: Any) -> str:
    if field == "temperature":
        return f"{value:g} (greedy)" if value == 0 else f"{value:g}"
    if field == "question_set":
        return question_set_text(value)
    if field == "max_new_tokens":
        return "not recorded" if value is None else f"{value} tokens"
    return str(value)


def question_set_text(question_set: str) -> str:
    """"80 questions (set 3f2a9c1b)" for store.question_set_key's "<count>:<hash>"."""
    count, _, digest = question_set.partition(":")
    noun = "question" if count == "1" else "questions"
    return f"{count} {noun}" + (" (set not recorded)" if digest == "unrecorded" else f" (set {digest[:8]})")


def describe(selection: Selection) -> str:
    """One line naming a selection, for captions and headings."""
    return " · ".join(format_value(name, getattr(selection, name)) for name in SELECTION_FIELDS)


# What makes rows comparable beyond the setting itself: the questions asked and the token cap.
MEASUREMENT_FIELDS = ("question_set", "max_new_tokens")


def other_measurements(selections: Iterable[Selection], selection: Selection) -> list[Selection]:
    """Selections of the same setting (device, model, ...) measured on another question set or
    token cap: results that exist but are never ranked with this selection's rows."""
    same = [name for name in SELECTION_FIELDS if name not in MEASUREMENT_FIELDS]
    return [s for s in selections if s != selection
            and all(getattr(s, name) == getattr(selection, name) for name in same)]


def measurement_text(selection: Selection) -> str:
    return (f"{question_set_text(selection.question_set)}, token cap "
            f"{format_value('max_new_tokens', selection.max_new_tokens)}")
