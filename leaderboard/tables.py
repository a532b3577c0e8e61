"""Leaderboard rows as display tables: column names, number formats, best-in-column marks."""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd
from pandas.io.formats.style import Styler

from evaluation.record.subtasks import OVERALL as OVERALL_SUBTASK, display_name
from leaderboard.emphasis import best_index, best_unintervalled, real_interval, speedup_measure
from leaderboard.queries import LOSSLESS, NOT_EQUAL, LeaderboardRow, subtasks_of

METHOD = "Method"
MEAN_ACCEPTED = "Mean accepted tokens"
OVERALL = "Overall"
OVERALL_CI = "Overall 95% CI"
EQUALITY = "Lossless"
TOKENS_PER_S = "Tokens/s"
BASE_TOKENS_PER_S = "Baseline tokens/s"
DRAFT_ACCEPTANCE = "Draft acceptance"
QUESTIONS = "Questions"
TOKEN_CAP = "Token cap"
THREADS = "Threads"
DATE = "Date"
VERSIONS = "Versions"
NATIVE_CODE = "Native code"
PARAMETERS = "Parameters"

# A definition for every column, shown when the reader hovers its header.
COLUMN_HELP: dict[str, str] = {
    METHOD: "The method, with the parameters (or native code) that tell its rows apart when it "
            "has several configurations here.",
    MEAN_ACCEPTED: "Mean tokens committed per decoding step, the bonus token included "
                   "(1.00 for the baseline). Over all questions.",
    DRAFT_ACCEPTANCE: "Share of drafted tokens the target accepted (accepted drafts ÷ drafted).",
    OVERALL: "Overall speedup: the method's tokens/s over the baseline's, total tokens over "
             "total time across all questions. Highlighted only where its 95% interval lies "
             "above 1.00x and above every other row's.",
    OVERALL_CI: "95% bootstrap interval of the overall speedup (questions resampled). "
                "\"-\" where there is none or it is a single point (one question).",
    EQUALITY: "equal.py's check of this run's output against the same baseline run: lossless "
              "(every turn equal), not equal (k/n turns equal) or not checked.",
    TOKENS_PER_S: "Generated tokens per second of the method run (total tokens ÷ total time).",
    BASE_TOKENS_PER_S: "Generated tokens per second of the baseline run on the same questions.",
    QUESTIONS: "Questions the speedup was measured on.",
    TOKEN_CAP: "max_new_tokens of the runs: answers stop at this many tokens.",
    THREADS: "torch's intra-op threads of the method run (environment.num_threads of its answer "
             "file; \"4 + 8\" for a run sharded over devices that differ). CPU timings depend on "
             "it; \"not recorded\" for files that do not say (Spec-Bench's own).",
    DATE: "When speed.py stored this row's comparison (UTC); importing the same files again "
          "updates it.",
    VERSIONS: "torch, transformers and CUDA versions the method run recorded.",
    NATIVE_CODE: "What computed the forwards: the lean backend's native layer, its torch-ops "
                 "fallback, or none (the Hugging Face forward).",
    PARAMETERS: "The method's parameters as recorded in its answer file.",
}


# Short header labels so that the table fits a laptop screen; the full name is in the help.
SHORT_LABELS: dict[str, str] = {
    "Multi-turn Conversation": "MT-bench", "Translation": "Transl.", "Summarization": "Summ.",
    "Question Answering": "QA", "Mathematical Reasoning": "Math", "Retrieval-aug. Generation": "RAG",
    "Law Analytics": "Law", "Grammar Correction": "Grammar", MEAN_ACCEPTED: "Accepted/step", OVERALL_CI: "95% CI", BASE_TOKENS_PER_S: "Base tok/s",
    TOKENS_PER_S: "Tok/s", DRAFT_ACCEPTANCE: "Draft acc.",
}


def subtask_help(subtask_name: str) -> str:
    return (f"{subtask_name}: speedup on these questions (method tokens/s ÷ baseline tokens/s). "
            "Highlighted only where its 95% interval, over more than one question, lies above "
            "1.00x and above every other row's.")

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
    """"1.80x – 2.10x"; "-" where there is no interval or only a point (one question)."""
    if real_interval(low, high) is None:
        return "-"
    return f"{low:.2f}x – {high:.2f}x"


def best_cells(rows: list[LeaderboardRow]) -> dict[str, int]:
    """Column -> the row index of its clear best (leaderboard/emphasis.py); columns without one
    are left out."""
    best = {display_name(s): best_index([speedup_measure(row, s) for row in rows])
            for s in [*subtasks_of(rows), OVERALL_SUBTASK]}
    best[OVERALL] = best.pop(display_name(OVERALL_SUBTASK))
    best[MEAN_ACCEPTED] = best_unintervalled(
        [row.mean_accepted_tokens for row in rows],
        [row.question_counts.get(OVERALL_SUBTASK, row.num_questions) for row in rows])
    return {column: index for column, index in best.items() if index is not None}


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
        record[DRAFT_ACCEPTANCE] = _number(row.draft_acceptance_rate)
        record[QUESTIONS] = row.num_questions
        record[TOKEN_CAP] = "-" if row.max_new_tokens is None else str(row.max_new_tokens)
        record[THREADS] = row.num_threads or "not recorded"
        record[DATE] = f"{row.created:%Y-%m-%d %H:%M}"
        record[NATIVE_CODE] = row.native_code or "not recorded"
        record[VERSIONS] = row.versions or "not recorded"
        record[PARAMETERS] = parameters_text(row.method_params)
        records.append(record)
    columns = [METHOD, *(display_name(s) for s in subtasks), MEAN_ACCEPTED, OVERALL, OVERALL_CI,
               EQUALITY, TOKENS_PER_S, BASE_TOKENS_PER_S, DRAFT_ACCEPTANCE, QUESTIONS, TOKEN_CAP,
               THREADS, DATE, NATIVE_CODE, VERSIONS, PARAMETERS]
    return pd.DataFrame.from_records(records, columns=columns)


def parameters_text(params: dict) -> str:
    """"gamma=4, tree=default" in name order; "-" for none."""
    return ", ".join(f"{name}={params[name]}" for name in sorted(params)) or "-"


def screen_order(frame: pd.DataFrame) -> list[str]:
    """The interactive table's column order: the ranking and its verdicts first (Overall, its
    interval, lossless, accepted tokens), so that they show without scrolling at 1500 px however
    many subtasks follow; then the subtasks and the run context. The Markdown export keeps
    Spec-Bench's order (subtasks, then Overall)."""
    first = [METHOD, OVERALL, OVERALL_CI, EQUALITY, MEAN_ACCEPTED]
    return [c for c in first if c in frame.columns] + [c for c in frame.columns if c not in first]


def column_help(frame: pd.DataFrame) -> dict[str, str]:
    """The definition of each column of a leaderboard frame."""
    return {column: COLUMN_HELP.get(column) or subtask_help(column) for column in frame.columns}


def _speedup_columns(frame: pd.DataFrame) -> list[str]:
    first, last = frame.columns.get_loc(METHOD) + 1, frame.columns.get_loc(MEAN_ACCEPTED)
    return [*frame.columns[first:last], OVERALL]


def styled_leaderboard(frame: pd.DataFrame, best: dict[str, int]) -> Styler:
    """Speedups as "2.14x"; each column's clear best (see best_cells) highlighted."""
    speedups = _speedup_columns(frame)

    def highlight(column: pd.Series) -> list[str]:
        chosen = best.get(column.name)
        return [BEST_STYLE if i == chosen else "" for i in range(len(column))]

    return (
        frame.style.hide(axis="index")
        .format("{:.2f}x", subset=speedups, na_rep="-")
        .format("{:.2f}", subset=[MEAN_ACCEPTED], na_rep="-")
        .format("{:.1f}", subset=[TOKENS_PER_S, BASE_TOKENS_PER_S], na_rep="-")
        .format("{:.0%}", subset=[DRAFT_ACCEPTANCE], na_rep="-")
        .apply(highlight, axis=0)
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


SUBTASK = "Subtask"


def configuration_pair_frame(a: LeaderboardRow, b: LeaderboardRow) -> pd.DataFrame:
    """Two rows of one leaderboard subtask by subtask, with B's speedup relative to A's."""
    records = []
    for subtask in [*subtasks_of([a, b]), OVERALL_SUBTASK]:
        value_a = _number(a.overall if subtask == OVERALL_SUBTASK else a.speedups.get(subtask))
        value_b = _number(b.overall if subtask == OVERALL_SUBTASK else b.speedups.get(subtask))
        records.append({SUBTASK: display_name(subtask), "A": value_a, "B": value_b,
                        "B / A": value_b / value_a if value_a else math.nan})
    records.append({SUBTASK: MEAN_ACCEPTED, "A": _number(a.mean_accepted_tokens),
                    "B": _number(b.mean_accepted_tokens), "B / A": math.nan})
    return pd.DataFrame.from_records(records, columns=[SUBTASK, "A", "B", "B / A"])


def styled_configuration_pair(frame: pd.DataFrame) -> Styler:
    return frame.style.hide(axis="index").format("{:.2f}", subset=["A", "B", "B / A"], na_rep="-")


MISMATCH = "Settings that differ (method vs baseline)"
BASELINE = "Baseline"


def unmatched_frame(rows: list[LeaderboardRow]) -> pd.DataFrame:
    """Comparisons stored despite differing settings: shown apart, never ranked or highlighted."""
    records = [{METHOD: row.method, BASELINE: row.base_method, OVERALL: _number(row.overall),
                MISMATCH: row.mismatch_text} for row in rows]
    return pd.DataFrame.from_records(records, columns=[METHOD, BASELINE, OVERALL, MISMATCH])


def styled_unmatched(frame: pd.DataFrame) -> Styler:
    return frame.style.hide(axis="index").format("{:.2f}x", subset=[OVERALL], na_rep="–")


QUICK_TOKEN_CAP = 64  # ./eval.sh --quick answers with 32 new tokens


def quick_run_warning(rows: list[LeaderboardRow]) -> Optional[str]:
    """A warning for results too small to rank methods by (./eval.sh --quick: one question per
    subtask, 32 new tokens), else None."""
    if not rows:
        return None
    per_subtask = max((n for row in rows for s, n in row.question_counts.items()
                       if s != OVERALL_SUBTASK), default=0)
    caps = {row.max_new_tokens for row in rows if row.max_new_tokens is not None}
    short = bool(caps) and max(caps) <= QUICK_TOKEN_CAP
    if per_subtask > 1 and not short:
        return None
    reasons = []
    if per_subtask <= 1:
        reasons.append("at most one question per subtask")
    if short:
        reasons.append(f"answers capped at {max(caps)} new tokens")
    return ("Quick run: " + " and ".join(reasons) + ". These figures check that everything runs; "
            "they are too small to rank methods by. Run ./eval.sh without --quick for a measurement.")
