"""Everything the app reads from the results database, as plain rows and data frames.

The app never touches the ORM itself: each page asks one function here. A leaderboard row is the
newest speed comparison of one method configuration (method name and parameters) for a selection
(device, model, dtype, temperature, bench), where the selection is read off the comparison's
method run (the device type off the comparison itself where it has one: a run sharded over
several device types is compared per type, and each type is its own selection). Two
configurations of one method get two rows, labelled by the parameters in which they differ,
rather than the older silently disappearing.

Only comparisons whose method and baseline settings matched are ranked. One that speed.py was
told to store despite a differing setting (--allow-mismatch) is shown apart, by
`unmatched_rows`, labelled with what differs; it never appears among the ranked rows.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

import pandas as pd
from sqlalchemy import String, and_, cast, func, select
from sqlalchemy.orm import Session, selectinload

from evaluation.record.answers import question_sort_key
from evaluation.compare.compatibility import Mismatch
from evaluation.record.subtasks import OVERALL, ordered_subtasks
from leaderboard.models import (
    Answer,
    Difference,
    EqualityCheck,
    QuestionResult,
    Run,
    SpeedComparison,
    SubtaskResult,
)

# Equality badges.
LOSSLESS = "lossless"
NOT_EQUAL = "not equal"
NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class Selection:
    device_name: str
    model: str
    dtype: str
    temperature: float
    bench: str
    backend: str = "hf"  # results of different backends are never ranked together
    # Rows measured on other questions or with another token cap are not comparable either.
    question_set: str = "0:unrecorded"  # "<count>:<hash>" (store.question_set_key)
    max_new_tokens: Optional[int] = None  # None: the answer files do not say

    def matches(self):
        """SQL condition: a comparison (joined with its method run) made under this selection."""
        cap = (Run.max_new_tokens.is_(None) if self.max_new_tokens is None
               else Run.max_new_tokens == self.max_new_tokens)
        return and_(
            COMPARISON_DEVICE == self.device_name,
            Run.model == self.model,
            Run.dtype == self.dtype,
            Run.temperature == self.temperature,
            Run.bench == self.bench,
            Run.backend == self.backend,
            COMPARISON_QUESTIONS == self.question_set,
            cap,
        )

    @property
    def num_questions(self) -> int:
        return int(self.question_set.partition(":")[0])


SELECTION_FIELDS: tuple[str, ...] = ("device_name", "model", "dtype", "temperature", "bench", "backend",
                                     "question_set", "max_new_tokens")
# The device type of a comparison: its own (one per type for a run over mixed devices), else its
# method run's.
COMPARISON_DEVICE = func.coalesce(SpeedComparison.device_name, Run.device_name)
# A comparison's question set; comparisons stored before it was recorded are grouped by count.
COMPARISON_QUESTIONS = func.coalesce(
    SpeedComparison.question_set, cast(SpeedComparison.num_questions, String) + ":unrecorded")
_SELECTION_COLUMNS = (COMPARISON_DEVICE, Run.model, Run.dtype, Run.temperature, Run.bench, Run.backend,
                      COMPARISON_QUESTIONS, Run.max_new_tokens)


@dataclass
class LeaderboardRow:
    method: str  # display name: the method, with its differing parameters if it has several rows
    comparison_id: int
    method_run_id: int
    method_run_ids: list[int]
    base_run_id: int
    base_method: str
    created: datetime
    num_questions: int
    speedups: dict[str, float]  # subtask -> speedup; OVERALL is kept apart below
    intervals: dict[str, tuple[float, float]]  # subtask or OVERALL -> 95% interval, where known
    overall: float  # NaN when speed.py wrote no overall row
    ci_low: Optional[float]
    ci_high: Optional[float]
    mean_accepted_tokens: Optional[float]
    tokens_per_s: Optional[float]
    base_tokens_per_s: Optional[float]
    equality: str = NOT_CHECKED
    num_equal: Optional[int] = None
    num_compared: Optional[int] = None
    lossy_option: bool = False  # the run itself says a knowingly lossy option was used
    # The settings check of speed.py: what differed (only for unmatched rows) and what could
    # not be checked because one file did not record it.
    mismatches: list[dict] = field(default_factory=list)
    unchecked_settings: list[str] = field(default_factory=list)
    # Run context: what the method run records of itself.
    method_params: dict = field(default_factory=dict)
    native_code: Optional[str] = None
    max_new_tokens: Optional[int] = None
    versions: str = ""  # "torch 2.13.0, transformers 5.24.0, CUDA 12.8" as recorded
    num_threads: Optional[str] = None  # torch threads of the method run; None: not recorded
    draft_acceptance_rate: Optional[float] = None
    question_counts: dict[str, int] = field(default_factory=dict)  # subtask or OVERALL -> questions
    # [k-1]: share of steps that accepted at least k drafted tokens (overall)
    per_position_acceptance: list[float] = field(default_factory=list)

    @property
    def mismatch_text(self) -> str:
        """"dtype float16 vs float32; ..." (method value first, then the baseline's)."""
        return "; ".join(Mismatch(**m).short() for m in self.mismatches)


def available_selections(session: Session) -> list[Selection]:
    """Every selection with at least one speed comparison, newest comparison first."""
    newest = func.max(SpeedComparison.created)
    stmt = (
        select(*_SELECTION_COLUMNS, newest)
        .join(SpeedComparison, SpeedComparison.method_run_id == Run.id)
        .where(SpeedComparison.settings_match.is_(True))
        .group_by(*_SELECTION_COLUMNS)
        .order_by(newest.desc(), COMPARISON_DEVICE, Run.model)
    )
    return [Selection(*row[:len(_SELECTION_COLUMNS)]) for row in session.execute(stmt)]


def _newest_comparison_per_method(session: Session, selection: Selection,
                                  matched: bool = True) -> list[SpeedComparison]:
    stmt = (
        select(SpeedComparison)
        .join(Run, SpeedComparison.method_run_id == Run.id)
        .where(selection.matches(), SpeedComparison.settings_match.is_(matched))
        .options(selectinload(SpeedComparison.subtasks), selectinload(SpeedComparison.method_run),
                 selectinload(SpeedComparison.base_run))
        .order_by(SpeedComparison.created.desc(), SpeedComparison.id.desc())
    )
    newest: dict[tuple[str, str, Optional[str]], SpeedComparison] = {}
    for comparison in session.scalars(stmt):
        newest.setdefault(_configuration_key(comparison.method_run), comparison)
    return list(newest.values())


def _configuration_key(run: Run) -> tuple[str, str, Optional[str]]:
    """What one leaderboard row stands for: the method, its parameters and the native code that
    ran (a torch-ops fallback is its own row, never a replacement of the native layer's)."""
    return run.method, json.dumps(run.method_params or {}, sort_keys=True, default=str), run.native_code


def configuration_labels(runs: list[Run]) -> dict[tuple[str, str, Optional[str]], str]:
    """A display name per method configuration: the bare method name when the method has one
    configuration here, else the name followed by the parameters (and native code) that differ
    between them."""
    by_method: dict[str, dict[tuple, Run]] = defaultdict(dict)
    for run in runs:
        by_method[run.method][_configuration_key(run)] = run
    labels = {}
    for method, configurations in by_method.items():
        if len(configurations) == 1:
            labels.update({key: method for key in configurations})
            continue
        all_params = [run.method_params or {} for run in configurations.values()]
        names = sorted({name for params in all_params for name in params})
        differing = [n for n in names if len({json.dumps(p.get(n), sort_keys=True, default=str)
                                              for p in all_params}) > 1]
        native_differs = len({run.native_code for run in configurations.values()}) > 1
        for key, run in configurations.items():
            shown = [f"{n}={(run.method_params or {}).get(n)}" for n in differing]
            if native_differs:
                shown.append(run.native_code or "native code not recorded")
            labels[key] = f"{method} ({', '.join(shown)})"
    return labels


def _equality_of(session: Session, run_id: int, base_run_id: int) -> Optional[EqualityCheck]:
    return session.scalar(
        select(EqualityCheck).where(
            EqualityCheck.run_id == run_id, EqualityCheck.base_run_id == base_run_id
        )
    )


def _row_of(session: Session, comparison: SpeedComparison, label: str) -> LeaderboardRow:
    by_subtask = {result.subtask: result for result in comparison.subtasks}
    overall = by_subtask.get(OVERALL)
    run = comparison.method_run
    row = LeaderboardRow(
        method=label,
        comparison_id=comparison.id,
        method_run_id=comparison.method_run_id,
        method_run_ids=list(comparison.method_run_ids or [comparison.method_run_id]),
        base_run_id=comparison.base_run_id,
        base_method=comparison.base_run.method,
        created=comparison.created,
        num_questions=comparison.num_questions,
        speedups={name: r.speedup for name, r in by_subtask.items() if name != OVERALL},
        intervals={name: (r.speedup_ci_low, r.speedup_ci_high) for name, r in by_subtask.items()
                   if r.speedup_ci_low is not None and r.speedup_ci_high is not None},
        question_counts={name: r.num_questions for name, r in by_subtask.items()},
        overall=overall.speedup if overall else math.nan,
        ci_low=overall.speedup_ci_low if overall else None,
        ci_high=overall.speedup_ci_high if overall else None,
        mean_accepted_tokens=overall.mean_accepted_tokens if overall else None,
        tokens_per_s=overall.tokens_per_s if overall else None,
        base_tokens_per_s=overall.base_tokens_per_s if overall else None,
        lossy_option=bool(comparison.method_run.lossy),
        mismatches=list(comparison.mismatches or []),
        unchecked_settings=list(comparison.unchecked_settings or []),
        method_params=dict(run.method_params or {}),
        native_code=run.native_code,
        max_new_tokens=run.max_new_tokens,
        versions=", ".join(f"{name} {value}" for name, value in (
            ("torch", run.torch_version), ("transformers", run.transformers_version),
            ("CUDA", run.cuda_version)) if value),
        num_threads=run.num_threads,
        draft_acceptance_rate=overall.draft_acceptance_rate if overall else None,
        per_position_acceptance=list((overall.extra or {}).get("per_position_acceptance_rate") or [])
        if overall else [],
    )
    check = _equality_of(session, comparison.method_run_id, comparison.base_run_id)
    if check is not None:
        row.equality = LOSSLESS if check.all_equal else NOT_EQUAL
        row.num_equal, row.num_compared = check.num_equal, check.num_compared
    return row


def _overall_sort_key(row: LeaderboardRow) -> tuple:
    # NaN overall (no overall row) sorts last rather than poisoning the order.
    return (math.isnan(row.overall), -row.overall if not math.isnan(row.overall) else 0, row.method)


def leaderboard_rows(session: Session, selection: Selection) -> list[LeaderboardRow]:
    """One row per method configuration (its newest comparison), best overall speedup first."""
    comparisons = _newest_comparison_per_method(session, selection)
    labels = configuration_labels([c.method_run for c in comparisons])
    rows = [_row_of(session, c, labels[_configuration_key(c.method_run)]) for c in comparisons]
    return sorted(rows, key=_overall_sort_key)


def unmatched_rows(session: Session, selection: Selection) -> list[LeaderboardRow]:
    """Comparisons stored despite differing settings (speed.py --allow-mismatch), newest per
    method configuration, for showing apart from the ranking; never part of leaderboard_rows."""
    comparisons = _newest_comparison_per_method(session, selection, matched=False)
    labels = configuration_labels([c.method_run for c in comparisons])
    rows = [_row_of(session, c, labels[_configuration_key(c.method_run)]) for c in comparisons]
    return sorted(rows, key=lambda row: row.method)


def subtasks_of(rows: list[LeaderboardRow]) -> list[str]:
    """The subtask columns of these rows, in report order."""
    return ordered_subtasks({name for row in rows for name in row.speedups})


def question_results(session: Session, rows: list[LeaderboardRow]) -> pd.DataFrame:
    """Per-question throughput of each row's method run and its baseline run."""
    method_of = {row.comparison_id: row.method for row in rows}
    stmt = select(QuestionResult).where(QuestionResult.comparison_id.in_(method_of))
    records = [
        {
            "method": method_of[q.comparison_id],
            "question_id": q.question_id,
            "subtask": q.subtask,
            "tokens_per_s": q.tokens_per_s,
            "base_tokens_per_s": q.base_tokens_per_s,
            "speedup": q.speedup,
            "mean_accepted_tokens": q.mean_accepted_tokens,
        }
        for q in session.scalars(stmt)
    ]
    columns = ["method", "question_id", "subtask", "tokens_per_s", "base_tokens_per_s",
               "speedup", "mean_accepted_tokens"]
    return pd.DataFrame.from_records(records, columns=columns)


def accept_length_counts(session: Session, rows: list[LeaderboardRow]) -> pd.DataFrame:
    """How many decoding steps accepted k tokens, per method, over all its method runs."""
    records = []
    for row in rows:
        counts: Counter[int] = Counter()
        stmt = select(Answer.accept_lengths).where(Answer.run_id.in_(row.method_run_ids))
        for lengths in session.scalars(stmt):
            counts.update(int(n) for n in (lengths or []))
        total = sum(counts.values())
        records += [
            {"method": row.method, "accepted": k, "steps": n, "share": n / total}
            for k, n in sorted(counts.items())
        ]
    return pd.DataFrame.from_records(records, columns=["method", "accepted", "steps", "share"])


TIME_PARTS: tuple[str, ...] = ("prefill", "draft", "verify", "other")


def time_split(session: Session, rows: list[LeaderboardRow]) -> pd.DataFrame:
    """Milliseconds per generated token spent in each part, per method run and its baseline.

    Only answers that carry draft and verify times count (files written by Spec-Bench itself do
    not); a run without any is left out. Prefill time is its own part when recorded, otherwise
    it is inside "other" (everything the engine did not attribute).
    """
    # Each run is measured on its comparison's questions only: a comparison of a run sharded over
    # two device types holds one type's questions, and the other type's timings must not count.
    labelled_runs: dict[int, tuple[str, int]] = {}
    for row in rows:
        labelled_runs.setdefault(row.base_run_id, (f"{row.base_method} (baseline)", row.comparison_id))
        labelled_runs.setdefault(row.method_run_id, (row.method, row.comparison_id))
    records = []
    for run_id, (label, comparison_id) in labelled_runs.items():
        stmt = (
            select(
                func.sum(Answer.new_tokens),
                func.sum(Answer.wall_time),
                func.sum(func.coalesce(Answer.prefill_time, 0.0)),
                func.sum(Answer.draft_time),
                func.sum(Answer.verify_time),
            )
            .join(QuestionResult, and_(QuestionResult.question_id == Answer.question_id,
                                       QuestionResult.comparison_id == comparison_id))
            .where(
                Answer.run_id == run_id,
                Answer.draft_time.is_not(None),
                Answer.verify_time.is_not(None),
            )
        )
        tokens, wall, prefill, draft, verify = session.execute(stmt).one()
        if not tokens:
            continue
        other = max(wall - prefill - draft - verify, 0.0)
        for part, seconds in zip(TIME_PARTS, (prefill, draft, verify, other)):
            records.append({"run": label, "part": part,
                            "ms_per_token": 1000.0 * seconds / tokens})
    frame = pd.DataFrame.from_records(records, columns=["run", "part", "ms_per_token"])
    order = [label for label, _ in labelled_runs.values()]
    return frame.sort_values("run", key=lambda runs: runs.map(order.index), kind="stable")


@dataclass
class QuestionChoice:
    question_id: str
    subtask: str
    speedup: Optional[float]


def question_choices(session: Session, row: LeaderboardRow) -> list[QuestionChoice]:
    """The questions of a row's method run, in subtask order, with their speedups if known."""
    speedups = dict(session.execute(
        select(QuestionResult.question_id, QuestionResult.speedup)
        .where(QuestionResult.comparison_id == row.comparison_id)
    ).all())
    answers = session.execute(
        select(Answer.question_id, Answer.subtask).where(Answer.run_id == row.method_run_id)
    ).all()
    order = {name: i for i, name in enumerate(ordered_subtasks({s for _, s in answers}))}
    answers = sorted(answers, key=lambda a: (order[a.subtask], question_sort_key(a.question_id)))
    return [QuestionChoice(qid, subtask, speedups.get(qid)) for qid, subtask in answers]


def diverging_questions(session: Session, row: LeaderboardRow) -> set[str]:
    """Questions whose output equal.py found to differ from the baseline's (empty: not checked
    or all equal)."""
    return set(session.scalars(
        select(Difference.question_id)
        .join(EqualityCheck, Difference.check_id == EqualityCheck.id)
        .where(EqualityCheck.run_id == row.method_run_id, EqualityCheck.base_run_id == row.base_run_id)
    ))


@dataclass
class QuestionDetail:
    question_id: str
    subtask: str
    method_turns: list[str]
    base_turns: list[str]
    method_accept_lengths: list[int]
    method_token_ids: Optional[list[list[int]]]  # per turn; None where the file has none
    method_error: Optional[str]
    base_error: Optional[str]
    result: Optional[QuestionResult]  # speed.py's per-question numbers, if written
    differences: list[Difference]  # equal.py's rows for this question, if checked
    near_tie_threshold: Optional[float] = None  # equal.py's threshold for these runs
    threshold_dtype: Optional[str] = None
    # Per turn, each token's decoded text; None where no tokenizer was available at import.
    method_token_pieces: Optional[list[list[str]]] = None
    # The question's user turns as stored at import; None where the question file was not found
    # then (or the run was imported before version 7 of the schema).
    question_turns: Optional[list[str]] = None


def question_detail(session: Session, row: LeaderboardRow, question_id: str) -> QuestionDetail:
    def answer_of(run_id: int) -> Optional[Answer]:
        return session.scalar(
            select(Answer).where(Answer.run_id == run_id, Answer.question_id == question_id)
        )

    method_answer, base_answer = answer_of(row.method_run_id), answer_of(row.base_run_id)
    result = session.scalar(
        select(QuestionResult).where(
            QuestionResult.comparison_id == row.comparison_id,
            QuestionResult.question_id == question_id,
        )
    )
    check = session.scalar(select(EqualityCheck).where(
        EqualityCheck.run_id == row.method_run_id, EqualityCheck.base_run_id == row.base_run_id))
    differences = list(session.scalars(
        select(Difference)
        .join(EqualityCheck, Difference.check_id == EqualityCheck.id)
        .where(
            EqualityCheck.run_id == row.method_run_id,
            EqualityCheck.base_run_id == row.base_run_id,
            Difference.question_id == question_id,
        )
        .order_by(Difference.turn)
    ))
    return QuestionDetail(
        question_id=question_id,
        subtask=(method_answer or base_answer).subtask if (method_answer or base_answer) else "",
        method_turns=list(method_answer.turns) if method_answer else [],
        base_turns=list(base_answer.turns) if base_answer else [],
        method_accept_lengths=list(method_answer.accept_lengths or []) if method_answer else [],
        method_token_ids=method_answer.token_ids if method_answer else None,
        method_token_pieces=method_answer.token_pieces if method_answer else None,
        question_turns=next((a.question_turns for a in (method_answer, base_answer)
                             if a is not None and a.question_turns), None),
        method_error=method_answer.error if method_answer else None,
        base_error=base_answer.error if base_answer else None,
        result=result,
        differences=differences,
        near_tie_threshold=check.near_tie_threshold if check else None,
        threshold_dtype=check.threshold_dtype if check else None,
    )


# ---- the metric set and the cost curve (issue: numbers every engine can compare) ------

ACCEPTANCE_COLUMNS: tuple[str, ...] = (
    "method", "al_pooled", "al_per_request", "draft_acceptance_rate", "system_efficiency",
    "max_draft_length", "per_position_joint", "per_position_conditional",
    "draft_ms_per_step", "verify_ms_per_step",
)


def _overall_extras(session: Session, rows: list[LeaderboardRow]) -> dict[int, SubtaskResult]:
    """comparison id -> its overall SubtaskResult (where speed.py wrote one)."""
    ids = [row.comparison_id for row in rows]
    stmt = select(SubtaskResult).where(SubtaskResult.comparison_id.in_(ids),
                                       SubtaskResult.subtask == OVERALL)
    return {result.comparison_id: result for result in session.scalars(stmt)}


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else 1000.0 * seconds


def acceptance_metrics(session: Session, rows: list[LeaderboardRow]) -> pd.DataFrame:
    """Per method (overall): both accepted-length means (vLLM's pooled, SpecForge's per request),
    per-position acceptance joint and conditional, and draft and verify time per step."""
    overall = _overall_extras(session, rows)
    records = []
    for row in rows:
        result = overall.get(row.comparison_id)
        extra = (result.extra or {}) if result is not None else {}
        records.append({
            "method": row.method,
            "al_pooled": result.mean_accepted_tokens if result is not None else None,
            "al_per_request": extra.get("mean_acceptance_length_per_request"),
            "draft_acceptance_rate": result.draft_acceptance_rate if result is not None else None,
            "system_efficiency": extra.get("system_efficiency"),
            "max_draft_length": extra.get("max_draft_length"),
            "per_position_joint": extra.get("per_position_acceptance_rate") or [],
            "per_position_conditional": extra.get("per_position_conditional_acceptance_rate") or [],
            "draft_ms_per_step": _ms(extra.get("draft_time_per_step_s")),
            "verify_ms_per_step": _ms(extra.get("verify_time_per_step_s")),
        })
    return pd.DataFrame.from_records(records, columns=list(ACCEPTANCE_COLUMNS))


PREDICTION_COLUMNS: tuple[str, ...] = (
    "method", "measured", "predicted", "gap", "flagged", "forward_tokens_per_step",
    "relative_verify_cost", "unavailable",
)


@dataclass
class CostCurveView:
    """The verification cost curve of the selection's device and each ranked method's predicted
    speedup beside its measured one (evaluation/compare/cost_model.py)."""

    curve: pd.DataFrame  # tokens, relative, ms: the newest curve measured in the selection
    curves_found: int  # distinct curves among the ranked comparisons (runs measure their own)
    predictions: pd.DataFrame  # PREDICTION_COLUMNS, in ranking order

    @property
    def flagged_methods(self) -> list[str]:
        """Methods whose measured speedup is more than 10% away from the prediction."""
        return [m for m, f in zip(self.predictions["method"], self.predictions["flagged"]) if f]


def cost_curve_view(session: Session, selection: Selection) -> CostCurveView:
    rows = leaderboard_rows(session, selection)
    overall = _overall_extras(session, rows)
    curves, records = [], []
    for row in rows:
        result = overall.get(row.comparison_id)
        extra = (result.extra or {}) if result is not None else {}
        if extra.get("verify_cost"):
            curves.append((row.created, extra["verify_cost"]))
        p = extra.get("prediction") or {}
        records.append({
            "method": row.method, "measured": row.overall,
            "predicted": p.get("predicted_speedup"), "gap": p.get("gap"),
            "flagged": bool(p.get("flagged")),
            "forward_tokens_per_step": p.get("forward_tokens_per_step"),
            "relative_verify_cost": p.get("relative_verify_cost"),
            "unavailable": p.get("unavailable") if p else "stored before predictions were made",
        })
    newest = max(curves, key=lambda c: c[0])[1] if curves else None
    curve = pd.DataFrame({"tokens": newest["tokens"], "relative": newest["relative"],
                          "ms": [1000.0 * s for s in newest["seconds"]]}) if newest else \
        pd.DataFrame(columns=["tokens", "relative", "ms"])
    distinct = {json.dumps(c, sort_keys=True) for _, c in curves}
    return CostCurveView(curve, len(distinct),
                         pd.DataFrame.from_records(records, columns=list(PREDICTION_COLUMNS)))
