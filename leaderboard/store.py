"""Writing what speed.py and equal.py compute into the results database.

A run is keyed by the sha256 of its answer file, a speed comparison by the hashes of both sides,
an equality check by its two runs: storing the same thing again updates the rows in place,
never duplicates them. The save_* functions write everything of one command in one transaction,
after the inputs have been validated, so a failure leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from evaluation.record.answers import AnswerFile, model_name_of_path, read_answer_file, run_model
from evaluation.record.schema import RUN_FIELDS, line_value
from evaluation.record.subtasks import OVERALL
from evaluation.compare.stats import finite_or_none
from leaderboard.db import DatabaseError, failure_reason, open_database, writing
from leaderboard.question_text import question_turns, run_questions
from leaderboard.token_pieces import answer_pieces, run_decoder
from leaderboard.models import (
    Answer as AnswerRow,
    Difference,
    EqualityCheck,
    QuestionResult,
    Run,
    SpeedComparison,
    SubtaskResult,
    utc_now,
)

if TYPE_CHECKING:  # the evaluators import this module, not the other way round
    from evaluation.compare.equality import EqualityResult
    from evaluation.compare.speedup import SpeedReport


class StoreError(RuntimeError):
    """The results could not be stored (database unusable, or values it cannot hold)."""


# ---- runs -----------------------------------------------------------------------------

# Run columns when a file says nothing of them: Spec-Bench's files and ours from before the lean
# backend ran the Hugging Face forward; Spec-Bench names the temperature only for
# sampling-capable methods, and its default is 0.
_UNRECORDED = {"method": "unknown", "method_params": {}, "device": "unknown", "device_name": "unknown",
               "dtype": "unknown", "backend": "hf", "temperature": 0.0, "bench": "unknown"}


def run_columns(answer_file: AnswerFile) -> dict[str, Any]:
    """The Run columns for a file: the answer line's run fields that the schema stores
    (evaluation/record/schema.py, a field's `column`), as the file records them or else as
    Spec-Bench's model id and directory layout say, else _UNRECORDED."""
    columns = {}
    for field in RUN_FIELDS:
        if field.column is None or field.column == "model_id":
            continue
        value = _per_line(answer_file, field.name) if field.per_device else None
        value = value if value is not None else answer_file.run_value(field.name)
        if field.in_environment:
            value = _text(value)  # read leniently on reading: stored as text
        columns[field.column] = value if value is not None else _UNRECORDED.get(field.column)
    columns["temperature"] = float(columns["temperature"])
    env = answer_file.run_field("environment") or {}
    return columns | {
        "answer_path": str(answer_file.path),
        "model_id": answer_file.model_id,
        # The model id's prefix first: it names the model the same way in our files and in
        # Spec-Bench's (where no model path exists), so the leaderboard groups them together.
        "model": run_model(answer_file) or model_name_of_path(env.get("model_path")) or answer_file.model_id,
        "lossy": answer_file.lossy,  # true when any line is
        "source_format": answer_file.source_format,
        "num_questions": len(answer_file.answers),
    }


def _per_line(answer_file: AnswerFile, name: str) -> Optional[str]:
    """"A + B" when the lines of a sharded run ran on several kinds of device (each comparison
    then has its own device type); None when they agree (the run's environment says it)."""
    values = {_text(line_value(a.run_fields, name)) for a in answer_file.answers.values()} - {None}
    return " + ".join(sorted(values)) if len(values) > 1 else None


def _text(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


def _check_storable(answer_file: AnswerFile) -> None:
    """Times the database must not hold are refused before anything is written: NaN and infinity
    (it cannot hold them) and negative seconds (no clock gives them; stored, they would make every
    figure built on them wrong)."""
    for qid, answer in answer_file.answers.items():
        for name in ("wall_time", "prefill_time", "draft_time", "verify_time"):
            for turn, seconds in enumerate(getattr(answer, name) or [], start=1):
                if not (math.isfinite(seconds) and seconds >= 0):
                    raise StoreError(f"{answer_file.path}:{answer.line}: question {qid} turn {turn}: {name} "
                                     f"{seconds!r} is not a non-negative number of seconds; fix or answer "
                                     f"that question again (or use --no-db)")


def _optional_sum(values: Optional[list]) -> Optional[float]:
    return None if values is None else sum(values)


def import_run(session: Session, answer_file: AnswerFile | str | Path) -> Run:
    """The Run of an answer file, created or updated (with its answers) in this session."""
    if not isinstance(answer_file, AnswerFile):
        answer_file = read_answer_file(answer_file)
    _check_storable(answer_file)
    run = session.scalar(select(Run).where(Run.answer_sha256 == answer_file.sha256))
    if run is None:
        run = Run(answer_sha256=answer_file.sha256)
        session.add(run)
    for name, value in run_columns(answer_file).items():
        setattr(run, name, value)
    # Stored with the answers so that the app shows them wherever the database is read.
    questions = run_questions(answer_file, run.bench)
    decoder = run_decoder((answer_file.run_field("environment") or {}).get("model_path"),
                          [a.token_ids for a in answer_file.answers.values()])

    # Update rows in place: deleting and re-adding would hit the (run, question) unique key,
    # because a flush inserts before it deletes.
    existing = {row.question_id: row for row in run.answers}
    for qid, answer in answer_file.answers.items():
        row = existing.pop(qid, None)
        if row is None:
            row = AnswerRow(question_id=qid)
            run.answers.append(row)
        row.category = answer.category
        row.subtask = answer.subtask
        row.turns = answer.turns
        row.token_ids = answer.token_ids
        row.question_turns = question_turns(questions, qid, answer)
        row.token_pieces = answer_pieces(answer.token_ids, decoder)
        row.new_tokens = sum(answer.new_tokens)
        row.wall_time = sum(answer.wall_time)
        row.decoding_steps = sum(answer.decoding_steps)
        row.accept_lengths = answer.accept_lengths
        row.draft_time = _optional_sum(answer.draft_time)
        row.verify_time = _optional_sum(answer.verify_time)
        row.prefill_time = _optional_sum(answer.prefill_time)
        row.draft_tokens = _optional_sum(answer.draft_tokens)
        row.error = answer.error
    for row in existing.values():
        run.answers.remove(row)
    session.flush()
    return run


# ---- speed comparisons ----------------------------------------------------------------

def comparison_key(method_hashes: list[str], base_hashes: list[str]) -> str:
    """Identity of a comparison: the method side's and the baseline side's file hashes."""
    text = "method:" + ",".join(sorted(method_hashes)) + ";base:" + ",".join(sorted(base_hashes))
    return hashlib.sha256(text.encode()).hexdigest()


def question_set_key(question_ids: list[str]) -> str:
    """"<count>:<hash>" of a comparison's questions: equal exactly when the sets are equal."""
    text = "\n".join(sorted(str(q) for q in question_ids))
    return f"{len(question_ids)}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def store_speed(session: Session, report: "SpeedReport") -> SpeedComparison:
    """Store a speed report (importing its runs); replaces an earlier one of the same files.

    A report over several device types is stored as one comparison per type, each in its own
    leaderboard selection; the first is returned."""
    method_runs = [import_run(session, f) for f in report.method_files]
    base_runs = [import_run(session, f) for f in report.base_files]
    if report.by_device_type:
        return [_store_comparison(session, part, method_runs, base_runs, kind)
                for kind, part in report.by_device_type.items()][0]
    return _store_comparison(session, report, method_runs, base_runs, None)


def _store_comparison(session: Session, report: "SpeedReport", method_runs: list[Run],
                      base_runs: list[Run], device_type: Optional[str]) -> SpeedComparison:
    key = comparison_key([f.sha256 for f in report.method_files],
                         [f.sha256 for f in report.base_files])
    if device_type is not None:
        key = hashlib.sha256(f"{key};device:{device_type}".encode()).hexdigest()
    comparison = session.scalar(select(SpeedComparison).where(SpeedComparison.key == key))
    if comparison is None:
        comparison = SpeedComparison(key=key)
        session.add(comparison)
    else:
        comparison.subtasks.clear()  # flushed away before the new rows take their keys
        comparison.questions.clear()
        session.flush()
    comparison.created = utc_now()  # importing an older comparison again makes it the current one
    comparison.method_run_id = method_runs[0].id
    comparison.base_run_id = base_runs[report.pairs[0][1]].id
    comparison.method_run_ids = [run.id for run in method_runs]
    comparison.base_run_ids = [run.id for run in base_runs]
    comparison.token_counting = report.counting.mode
    comparison.num_questions = len(report.question_ids)
    comparison.question_set = question_set_key(report.question_ids)
    comparison.settings_match = report.compatibility.matched
    comparison.mismatches = _json_safe([m.as_dict() for m in report.compatibility.mismatches])
    comparison.unchecked_settings = list(report.compatibility.unchecked)
    comparison.device_name = device_type

    spec_bench = {t.task: t.as_dict() for t in report.spec_bench_reported or []}
    for s in report.subtasks:
        a = s.acceptance
        extra = {k: v for k, v in a.as_dict().items()
                 if k not in ("mean_acceptance_length", "draft_acceptance_rate")}
        extra.update({
            "tokens_per_s_std": s.tokens_per_s_std,
            "base_tokens_per_s_std": s.base_tokens_per_s_std,
            "speedup_spec_bench_std": s.speedup_spec_bench_std,
            "mean_paired_speedup": s.mean_paired_speedup,
            "per_run": s.per_run,
            "prediction": None if s.prediction is None else s.prediction.as_dict(),
        })
        if s.subtask == OVERALL and report.verify_cost:
            extra["verify_cost"] = report.verify_cost  # the device's curve, with the comparison
        if s.subtask in spec_bench:  # what Spec-Bench's own speed.py would print for it
            extra["spec_bench_reported"] = spec_bench[s.subtask]
        comparison.subtasks.append(SubtaskResult(
            subtask=s.subtask,
            num_questions=s.num_questions,
            tokens_per_s=s.tokens_per_s,
            base_tokens_per_s=s.base_tokens_per_s,
            speedup=s.speedup,
            speedup_ci_low=finite_or_none(s.speedup_ci_low),
            speedup_ci_high=finite_or_none(s.speedup_ci_high),
            speedup_std=s.speedup_std,
            speedup_spec_bench=s.speedup_spec_bench,
            mean_accepted_tokens=a.mean_acceptance_length,
            draft_acceptance_rate=a.draft_acceptance_rate,
            extra=_json_safe(extra),
        ))
    for q in report.questions:
        comparison.questions.append(QuestionResult(
            question_id=q.question_id, category=q.category, subtask=q.subtask,
            tokens=q.tokens, wall_time=q.wall_time,
            base_tokens=q.base_tokens, base_wall_time=q.base_wall_time,
            tokens_per_s=q.tokens_per_s, base_tokens_per_s=q.base_tokens_per_s,
            speedup=q.speedup, mean_accepted_tokens=q.mean_accepted_tokens,
        ))
    session.flush()
    return comparison


def _json_safe(value: Any) -> Any:
    """JSON columns must not hold NaN or infinity (PostgreSQL refuses them)."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ---- equality checks ------------------------------------------------------------------

def store_equality(session: Session, result: "EqualityResult") -> EqualityCheck:
    """Store an equality check (importing both runs); replaces an earlier check of the pair."""
    run = import_run(session, result.method_file)
    base_run = import_run(session, result.base_file)
    check = session.scalar(select(EqualityCheck).where(
        EqualityCheck.run_id == run.id, EqualityCheck.base_run_id == base_run.id))
    if check is None:
        check = EqualityCheck(run_id=run.id, base_run_id=base_run.id)
        session.add(check)
    else:
        check.differences.clear()
        session.flush()
    check.created = utc_now()
    check.compared_on = result.compared_on
    check.num_compared = result.num_compared
    check.num_equal = result.num_equal
    check.all_equal = result.all_equal
    check.per_subtask = {s.subtask: s.exact_match_rate for s in result.subtasks}
    check.near_tie_threshold = result.near_tie_threshold
    check.threshold_dtype = result.dtype
    check.num_near_ties = result.verdict_counts()["near-tie"]
    for d in result.differences:
        check.differences.append(Difference(
            question_id=d.question_id, category=d.category, turn=d.turn,
            first_divergence=d.first_divergence, unit=d.unit,
            excerpt=d.excerpt, base_excerpt=d.base_excerpt,
            base_margin=d.base_margin, margin_verdict=d.margin_verdict,
        ))
    session.flush()
    return check


# ---- one command, one transaction -----------------------------------------------------

def _save(db: Optional[str], write, timeout: Optional[float] = None) -> str:
    """Run write(session) in one transaction; returns the database URL (password hidden).
    ``timeout``: seconds a statement may wait for the server (leaderboard/timeouts.py)."""
    try:
        factory = open_database(db, timeout=timeout)
        # The write lock first: two imports at once then queue instead of one failing.
        with factory(bind=writing(factory)) as session, session.begin():
            write(session)
            return session.get_bind().url.render_as_string(hide_password=True)
    except DatabaseError as exc:
        raise StoreError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise StoreError(f"nothing stored, the database refused the results: "
                         f"{failure_reason(exc)}") from None


def save_speed_report(db: Optional[str], report: "SpeedReport", timeout: Optional[float] = None) -> str:
    """Store a speed report in the database at `db` (URL or path; None = the default)."""
    for answer_file in report.method_files + report.base_files:
        _check_storable(answer_file)  # before the database is even opened (or created)
    return _save(db, lambda session: store_speed(session, report), timeout)


def save_equality_result(db: Optional[str], result: "EqualityResult", timeout: Optional[float] = None) -> str:
    """Store an equality check in the database at `db` (URL or path; None = the default)."""
    for answer_file in (result.method_file, result.base_file):
        _check_storable(answer_file)
    return _save(db, lambda session: store_equality(session, result), timeout)
