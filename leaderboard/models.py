"""The results database schema (SQLAlchemy 2.x declarative models).

A *run* is one answer file (one method on one model, device, dtype, temperature and bench).
A *speed comparison* is what speed.py computes from one or more method runs against one or more
baseline runs; it owns per-subtask and per-question rows. An *equality check* is what equal.py
computes from one run against a baseline run; it owns per-question/turn rows.
Answers themselves are stored per run so the app can show them without reading files.

Bump SCHEMA_VERSION whenever a table or column changes; opening an older database file then
fails with a clear message instead of a confusing SQL error.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 7  # 2: speed comparisons record their settings check; 3: near-tie verdicts; 4: backend;
# 5: a comparison's device type (runs sharded over mixed devices are compared per device type);
# 6: a run's native code and a comparison's question set (both part of a leaderboard row's key);
# 7: a run's torch threads, and per answer its question's text and its tokens' decoded pieces (so
# that a database viewed on another machine shows them without the question file or tokenizer)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Run(Base):
    """One answer file."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    answer_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    answer_path: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(256), index=True)  # --model-id of the runner
    model: Mapped[str] = mapped_column(String(256), index=True)  # model path/name, else model_id
    method: Mapped[str] = mapped_column(String(64), index=True)
    method_params: Mapped[dict] = mapped_column(JSON, default=dict)
    device: Mapped[str] = mapped_column(String(32), default="unknown")  # cpu / cuda / unknown
    device_name: Mapped[str] = mapped_column(String(256), default="unknown")  # e.g. "NVIDIA A100"
    dtype: Mapped[str] = mapped_column(String(32), default="unknown")
    # How the target's forwards ran (hf / lean); files that do not say ran the hf forward.
    backend: Mapped[str] = mapped_column(String(32), default="hf")
    # Which native code computed the forwards ("torch ops" for the lean backend's fallback,
    # "none" for hf); None where the file does not say. A fallback run is its own leaderboard row.
    native_code: Mapped[Optional[str]] = mapped_column(String(256), nullable=True)
    temperature: Mapped[float] = mapped_column(Float, default=0.0)
    bench: Mapped[str] = mapped_column(String(128), default="unknown")
    max_new_tokens: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    torch_version: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    transformers_version: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    cuda_version: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    # torch's intra-op threads as recorded ("4 + 8" for a run sharded over devices that differ);
    # None where the file does not say (Spec-Bench's files, databases upgraded from version 6).
    num_threads: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    lossy: Mapped[bool] = mapped_column(Boolean, default=False)
    source_format: Mapped[str] = mapped_column(String(32), default="ours")  # "ours" | "spec-bench"
    num_questions: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    answers: Mapped[list["Answer"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Answer(Base):
    """One question of one run (first choice), as read from the answer file."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("run_id", "question_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[str] = mapped_column(String(64))  # ids compared as strings
    category: Mapped[str] = mapped_column(String(128))
    subtask: Mapped[str] = mapped_column(String(128))
    turns: Mapped[list] = mapped_column(JSON)  # list[str]
    token_ids: Mapped[Optional[list]] = mapped_column(JSON, nullable=True)  # list[list[int]]
    # The question's user turns, read from the run's question file at import (list[str]); None
    # where that file was not found then, or did not hold this question as the answer has it.
    question_turns: Mapped[Optional[list]] = mapped_column(JSON, nullable=True)
    # Each token id decoded to its text piece, per turn (list[list[str]], parallel to token_ids);
    # None where the run's tokenizer was not available at import.
    token_pieces: Mapped[Optional[list]] = mapped_column(JSON, nullable=True)
    new_tokens: Mapped[int] = mapped_column(Integer)  # summed over turns
    wall_time: Mapped[float] = mapped_column(Float)  # summed over turns
    decoding_steps: Mapped[int] = mapped_column(Integer)
    accept_lengths: Mapped[list] = mapped_column(JSON)  # flat list[int]
    draft_time: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    verify_time: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    prefill_time: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    draft_tokens: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)

    run: Mapped[Run] = relationship(back_populates="answers")


class SpeedComparison(Base):
    """speed.py's result: method run(s) against baseline run(s)."""

    __tablename__ = "speed_comparisons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 over the sorted answer-file hashes of both sides: importing again updates this row.
    key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    method_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    base_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    method_run_ids: Mapped[list] = mapped_column(JSON)  # all method runs (first = method_run_id)
    base_run_ids: Mapped[list] = mapped_column(JSON)
    token_counting: Mapped[str] = mapped_column(String(64))  # "token_ids" | "new_tokens" | "retokenized"
    num_questions: Mapped[int] = mapped_column(Integer)
    # "<count>:<hash of the sorted question ids>": rows are ranked together only on one question
    # set. None in databases upgraded from version 5 (their rows are grouped by count alone).
    question_set: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    # The settings check of evaluation/compare/compatibility.py: False when speed.py was told to compare
    # despite a differing setting (--allow-mismatch); the leaderboard never ranks those.
    settings_match: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    # [{"setting", "method_value", "base_value", "method_file", "base_file"}, ...]
    mismatches: Mapped[list] = mapped_column(JSON, default=list)
    # Settings not recorded on one side (e.g. everything but the model id's for Spec-Bench's files).
    unchecked_settings: Mapped[list] = mapped_column(JSON, default=list)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    # The device type the comparison's answers ran on. A run sharded over several device types
    # gets one comparison per type (timings of different devices are never pooled); None: the
    # method run's device_name (a run on one device type).
    device_name: Mapped[Optional[str]] = mapped_column(String(256), nullable=True, default=None)

    method_run: Mapped[Run] = relationship(foreign_keys=[method_run_id])
    base_run: Mapped[Run] = relationship(foreign_keys=[base_run_id])
    subtasks: Mapped[list["SubtaskResult"]] = relationship(cascade="all, delete-orphan")
    questions: Mapped[list["QuestionResult"]] = relationship(cascade="all, delete-orphan")


class SubtaskResult(Base):
    """One subtask (or "overall") of a speed comparison."""

    __tablename__ = "subtask_results"
    __table_args__ = (UniqueConstraint("comparison_id", "subtask"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("speed_comparisons.id", ondelete="CASCADE"), index=True)
    subtask: Mapped[str] = mapped_column(String(128))  # "mt_bench", "translation", ..., "overall"
    num_questions: Mapped[int] = mapped_column(Integer)
    tokens_per_s: Mapped[float] = mapped_column(Float)  # method: total tokens / total time
    base_tokens_per_s: Mapped[float] = mapped_column(Float)
    speedup: Mapped[float] = mapped_column(Float)  # tokens_per_s / base_tokens_per_s
    speedup_ci_low: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # 95% bootstrap
    speedup_ci_high: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    speedup_std: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # across runs
    speedup_spec_bench: Mapped[float] = mapped_column(Float)  # mean per-question tok/s ratio
    mean_accepted_tokens: Mapped[Optional[float]] = mapped_column(Float, nullable=True)  # AL, bonus incl.
    draft_acceptance_rate: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    # Extra figures (per-position acceptance, histogram, time split, ...) as a JSON object.
    extra: Mapped[dict] = mapped_column(JSON, default=dict)


class QuestionResult(Base):
    """One question of a speed comparison (first method run against first baseline run)."""

    __tablename__ = "question_results"
    __table_args__ = (UniqueConstraint("comparison_id", "question_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("speed_comparisons.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(128))
    subtask: Mapped[str] = mapped_column(String(128))
    tokens: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float] = mapped_column(Float)
    base_tokens: Mapped[int] = mapped_column(Integer)
    base_wall_time: Mapped[float] = mapped_column(Float)
    tokens_per_s: Mapped[float] = mapped_column(Float)
    base_tokens_per_s: Mapped[float] = mapped_column(Float)
    speedup: Mapped[float] = mapped_column(Float)
    mean_accepted_tokens: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class EqualityCheck(Base):
    """equal.py's result: one run against a baseline run."""

    __tablename__ = "equality_checks"
    __table_args__ = (UniqueConstraint("run_id", "base_run_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    base_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    compared_on: Mapped[str] = mapped_column(String(32))  # "token_ids" | "text"
    num_compared: Mapped[int] = mapped_column(Integer)  # question-turns compared
    num_equal: Mapped[int] = mapped_column(Integer)
    all_equal: Mapped[bool] = mapped_column(Boolean)
    per_subtask: Mapped[dict] = mapped_column(JSON, default=dict)  # subtask -> exact-match rate
    # Divergences whose baseline margin is below this are near-ties (evaluation/compare/near_ties.py);
    # None when the runs' dtype is unknown.
    near_tie_threshold: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    threshold_dtype: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    num_near_ties: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    run: Mapped[Run] = relationship(foreign_keys=[run_id])
    base_run: Mapped[Run] = relationship(foreign_keys=[base_run_id])
    differences: Mapped[list["Difference"]] = relationship(cascade="all, delete-orphan")


class Difference(Base):
    """One question turn that differs from the baseline."""

    __tablename__ = "differences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("equality_checks.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(128))
    turn: Mapped[int] = mapped_column(Integer)
    first_divergence: Mapped[int] = mapped_column(Integer)  # index in the unit below
    unit: Mapped[str] = mapped_column(String(16))  # "token" | "char"
    excerpt: Mapped[str] = mapped_column(Text)  # the method's text around the divergence
    base_excerpt: Mapped[str] = mapped_column(Text)
    # The baseline's top-1 minus top-2 logit at the divergence (None: not recorded) and the
    # verdict: "near-tie" (rounding can flip it), "real", "unknown" or "inherited" (an earlier
    # turn of the question diverged, so this turn's context differs from the baseline's).
    base_margin: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    margin_verdict: Mapped[str] = mapped_column(String(16), default="unknown")
