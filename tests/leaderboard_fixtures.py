"""A realistic results database for the leaderboard tests, built through the SQLAlchemy models.

Two devices × two models at greedy float16 on spec_bench, each with a vanilla baseline and three
methods, plus one sampling selection (A100, Vicuna, T=1.0, sps only). Every number the app shows
is derived here from per-question answers, the way speed.py derives it, so the tests can compare
the page against `FixtureDatabase.expected`.

Special cases the tests rely on:
- an older pld comparison (A100, Vicuna) with overall 0.50x that must be hidden by the newer one;
- equality on (A100, Vicuna): eagle2 lossless, sps not equal (with a Difference row), pld unchecked;
- pld on the RTX 3090 was imported from a Spec-Bench file: no draft/verify times.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.orm import Session

from evaluation.record.subtasks import OVERALL, SPEC_BENCH_SUBTASKS
from leaderboard.db import open_database
from leaderboard.queries import Selection
from leaderboard.store import question_set_key
from leaderboard.models import (
    Answer,
    Difference,
    EqualityCheck,
    QuestionResult,
    Run,
    SpeedComparison,
    SubtaskResult,
)

A100 = "NVIDIA A100-SXM4-80GB"
RTX3090 = "NVIDIA GeForce RTX 3090"
VICUNA = "vicuna-7b-v1.3"
SMOLLM = "SmolLM2-135M-Instruct"
DTYPE = "float16"
BENCH = "spec_bench"
METHODS = ("eagle2", "sps", "pld")

# Baseline tokens/s per (device, model).
BASE_SPEED = {(A100, VICUNA): 42.0, (RTX3090, VICUNA): 30.0, (A100, SMOLLM): 160.0,
              (RTX3090, SMOLLM): 120.0}
# Speedup per method and subtask before the device/model factor; pld wins summarization so the
# best-in-column marks are not all on one row.
METHOD_SPEEDUP = {
    "eagle2": {"mt_bench": 2.8, "translation": 1.9, "summarization": 2.2, "qa": 2.1,
               "math_reasoning": 2.7, "rag": 1.9},
    "sps": {"mt_bench": 2.0, "translation": 1.4, "summarization": 1.9, "qa": 1.9,
            "math_reasoning": 1.9, "rag": 1.7},
    "pld": {"mt_bench": 1.6, "translation": 1.1, "summarization": 2.4, "qa": 1.2,
            "math_reasoning": 1.6, "rag": 1.6},
}
DEVICE_MODEL_FACTOR = {(A100, VICUNA): 1.0, (RTX3090, VICUNA): 0.9, (A100, SMOLLM): 0.7,
                       (RTX3090, SMOLLM): 0.6}
# Accepted tokens per step cycle through these (bonus token included).
ACCEPT_PATTERN = {"vanilla": [1], "eagle2": [5, 3, 6, 4, 2, 4, 5, 1, 4, 3],
                  "sps": [3, 2, 1, 3, 2, 4, 1, 3], "pld": [1, 1, 4, 1, 2, 1, 6, 1]}
# Two questions per subtask; MT-bench ones carry their own categories.
QUESTIONS = [
    (str(qid), category, subtask)
    for qid, (category, subtask) in enumerate(
        [(c, s) for s in SPEC_BENCH_SUBTASKS for c in
         (("writing", "math") if s == "mt_bench" else (s, s))],
        start=81,
    )
]
QUESTION_SET = question_set_key([qid for qid, _, _ in QUESTIONS])
MAX_NEW_TOKENS = 1024


def selection(device: str, model: str, temperature: float = 0.0) -> Selection:
    """A selection of the fixture database (its runs share one question set and token cap)."""
    return Selection(device, model, DTYPE, temperature, BENCH, "hf", QUESTION_SET, MAX_NEW_TOKENS)


DIVERGING_QUESTION = "83"  # sps answers this one differently on (A100, Vicuna)
DIVERGENCE_AT = 27  # character index of the first difference in its first turn
NO_QUESTION_TEXT = DIVERGING_QUESTION  # its question file was not found when the runs were imported
# The runs of (A100, Vicuna, greedy) record token ids; all but sps's were decoded at import.
UNDECODED_METHOD = "sps"
THREADS = "4"

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class FixtureDatabase:
    path: Path
    # (device, model, temperature) -> method -> {"overall", subtask..., "mat", "ci", "base_tps"}
    expected: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


def _answer_pieces(qid: str, method: str, device: str, model: str, tokens: int) -> list[str]:
    """The answer as `tokens` word pieces (each with its leading space): joined, its text."""
    text = (f"Answer to question {qid}: the quick brown fox jumps over the lazy dog. "
            f"It was computed by a {model} model on one {device}.")
    if method == "sps" and qid == DIVERGING_QUESTION and (device, model) == (A100, VICUNA):
        text = text[:DIVERGENCE_AT] + "slow" + text[DIVERGENCE_AT + 5:]
    pieces, sentence = re.findall(r"\s*\S+", text), 0
    while len(pieces) < tokens:
        sentence += 1
        pieces += re.findall(r"\s*\S+", f" Then the fox ran on, {sentence} times.")
    return pieces[:tokens]


def question_text(qid: str, category: str) -> str:
    return (f"Question {qid} ({category}): explain why the quick brown fox jumps over the lazy dog, "
            "in <em>a few</em> sentences.")


def _accept_lengths(method: str, tokens: int) -> list[int]:
    pattern, lengths = ACCEPT_PATTERN[method], []
    while sum(lengths) < tokens:
        lengths.append(min(pattern[len(lengths) % len(pattern)], tokens - sum(lengths)))
    return lengths


class _Builder:
    def __init__(self, session: Session):
        self.session = session
        self.files = 0

    def run(self, method: str, device: str, model: str, temperature: float, created: datetime,
            speed_of: dict[str, float], spec_bench_file: bool = False) -> Run:
        """A run with one answer per question; `speed_of` maps subtask -> tokens/s."""
        self.files += 1
        run = Run(
            answer_sha256=hashlib.sha256(f"file{self.files}".encode()).hexdigest(),
            answer_path=f"data/spec_bench/model_answer/{model}-{method}-{self.files}.jsonl",
            model_id=f"{model}-{method}", model=model, method=method,
            method_params={}, device="cuda", device_name=device, dtype=DTYPE,
            temperature=temperature, bench=BENCH, max_new_tokens=MAX_NEW_TOKENS,
            num_threads=None if spec_bench_file else THREADS,
            torch_version=None if spec_bench_file else "2.13.0",
            transformers_version=None if spec_bench_file else "5.24.0",
            source_format="spec-bench" if spec_bench_file else "ours",
            num_questions=len(QUESTIONS), created=created,
        )
        for i, (qid, category, subtask) in enumerate(QUESTIONS):
            tokens = 180 + 20 * i
            # Per-question jitter keeps the scatter plot from being a single line.
            wall = tokens / (speed_of[subtask] * (1.0 + 0.04 * ((i + len(method)) % 3 - 1)))
            lengths = _accept_lengths(method, tokens)
            timed = not spec_bench_file
            draft = 0.12 * wall if timed and method != "vanilla" else (0.0 if timed else None)
            pieces = _answer_pieces(qid, method, device, model, tokens)
            with_ids = (device, model, temperature) == (A100, VICUNA, 0.0) and not spec_bench_file
            run.answers.append(Answer(
                question_id=qid, category=category, subtask=subtask,
                turns=["".join(pieces)],
                question_turns=None if qid == NO_QUESTION_TEXT else [question_text(qid, category)],
                token_ids=[[zlib.crc32(p.encode()) % 32000 for p in pieces]] if with_ids else None,
                token_pieces=[pieces] if with_ids and method != UNDECODED_METHOD else None,
                new_tokens=tokens, wall_time=wall, decoding_steps=len(lengths),
                accept_lengths=lengths, draft_time=draft,
                verify_time=0.75 * wall if timed else None,
                prefill_time=0.05 * wall if timed else None,
            ))
        self.session.add(run)
        self.session.flush()
        return run

    def compare(self, method_run: Run, base_run: Run, created: datetime) -> dict:
        """A speed comparison computed from the two runs' answers; returns the expected figures."""
        base_by_q = {a.question_id: a for a in base_run.answers}
        comparison = SpeedComparison(
            key=hashlib.sha256(f"{method_run.id}-{base_run.id}".encode()).hexdigest(),
            method_run_id=method_run.id, base_run_id=base_run.id,
            method_run_ids=[method_run.id], base_run_ids=[base_run.id],
            token_counting="token_ids", num_questions=len(QUESTIONS), question_set=QUESTION_SET,
            created=created,
        )
        groups: dict[str, list[tuple[Answer, Answer]]] = {}
        for answer in method_run.answers:
            base = base_by_q[answer.question_id]
            groups.setdefault(answer.subtask, []).append((answer, base))
            groups.setdefault(OVERALL, []).append((answer, base))
            comparison.questions.append(QuestionResult(
                question_id=answer.question_id, category=answer.category,
                subtask=answer.subtask, tokens=answer.new_tokens, wall_time=answer.wall_time,
                base_tokens=base.new_tokens, base_wall_time=base.wall_time,
                tokens_per_s=answer.new_tokens / answer.wall_time,
                base_tokens_per_s=base.new_tokens / base.wall_time,
                speedup=(answer.new_tokens / answer.wall_time) / (base.new_tokens / base.wall_time),
                mean_accepted_tokens=answer.new_tokens / answer.decoding_steps,
            ))
        expected = {}
        for subtask, pairs in groups.items():
            tps = sum(a.new_tokens for a, _ in pairs) / sum(a.wall_time for a, _ in pairs)
            base_tps = sum(b.new_tokens for _, b in pairs) / sum(b.wall_time for _, b in pairs)
            speedup = tps / base_tps
            mat = sum(a.new_tokens for a, _ in pairs) / sum(a.decoding_steps for a, _ in pairs)
            ci = (round(speedup * 0.93, 4), round(speedup * 1.06, 4))
            comparison.subtasks.append(SubtaskResult(
                subtask=subtask, num_questions=len(pairs), tokens_per_s=tps,
                base_tokens_per_s=base_tps, speedup=speedup, speedup_ci_low=ci[0],
                speedup_ci_high=ci[1], speedup_spec_bench=speedup, mean_accepted_tokens=mat,
                **(_acceptance(method_run) if subtask == OVERALL else
                   dict(draft_acceptance_rate=None, extra={})),
            ))
            expected[subtask] = speedup
            if subtask == OVERALL:
                expected.update(mat=mat, ci=ci, base_tps=base_tps, tps=tps)
        self.session.add(comparison)
        self.session.flush()
        return expected

    def equality(self, run: Run, base: Run, diverging: list[str]) -> None:
        check = EqualityCheck(
            run_id=run.id, base_run_id=base.id, compared_on="text",
            num_compared=len(QUESTIONS), num_equal=len(QUESTIONS) - len(diverging),
            all_equal=not diverging, per_subtask={}, created=T0 + timedelta(days=2),
        )
        answers = {a.question_id: a for a in run.answers}
        base_texts = {a.question_id: a.turns[0] for a in base.answers}
        texts = {qid: a.turns[0] for qid, a in answers.items()}
        for qid in diverging:
            check.differences.append(Difference(
                question_id=qid, category=answers[qid].category, turn=0,
                first_divergence=DIVERGENCE_AT,
                unit="char", excerpt=texts[qid][DIVERGENCE_AT - 10:DIVERGENCE_AT + 10],
                base_excerpt=base_texts[qid][DIVERGENCE_AT - 10:DIVERGENCE_AT + 10],
            ))
        self.session.add(check)


def _acceptance(run: Run, draft_length: int = 6) -> dict:
    """The overall acceptance figures speed.py stores, from the run's accept lengths (a method
    that drafts `draft_length` tokens a step)."""
    lengths = [n for answer in run.answers for n in answer.accept_lengths]
    if run.method == "vanilla" or not lengths:
        return dict(draft_acceptance_rate=None, extra={})
    accepted = [n - 1 for n in lengths]  # the bonus token is not a draft
    per_position = [sum(a >= k for a in accepted) / len(accepted) for k in range(1, draft_length + 1)]
    return dict(draft_acceptance_rate=sum(accepted) / (draft_length * len(accepted)),
                extra={"per_position_acceptance_rate": per_position})


def _selection_runs(builder: _Builder, device: str, model: str, temperature: float,
                    methods: tuple[str, ...], day: int) -> dict:
    base_tps = BASE_SPEED[(device, model)]
    factor = DEVICE_MODEL_FACTOR[(device, model)] * (0.8 if temperature else 1.0)
    created = T0 + timedelta(days=day)
    base = builder.run("vanilla", device, model, temperature, created,
                       {s: base_tps for s in SPEC_BENCH_SUBTASKS})
    expected, runs = {}, {"vanilla": base}
    for method in methods:
        speeds = {s: base_tps * v * factor for s, v in METHOD_SPEEDUP[method].items()}
        spec_bench_file = method == "pld" and device == RTX3090
        runs[method] = builder.run(method, device, model, temperature, created, speeds,
                                   spec_bench_file=spec_bench_file)
        expected[method] = builder.compare(runs[method], base, created)
    return {"expected": expected, "runs": runs}


def build_fixture_database(path: Path) -> FixtureDatabase:
    """Write the fixture database to `path` (which must not exist yet)."""
    sessions = open_database(str(path), create=True)
    fixture = FixtureDatabase(path=Path(path))
    with sessions() as session, session.begin():
        builder = _Builder(session)
        # The older pld comparison comes first so the newer one must win on `created`.
        old_base = builder.run("vanilla", A100, VICUNA, 0.0, T0 - timedelta(days=30),
                               {s: 40.0 for s in SPEC_BENCH_SUBTASKS})
        old_pld = builder.run("pld", A100, VICUNA, 0.0, T0 - timedelta(days=30),
                              {s: 20.0 for s in SPEC_BENCH_SUBTASKS})
        builder.compare(old_pld, old_base, T0 - timedelta(days=30))

        # Newest last: the app opens on the newest selection, (A100, Vicuna, greedy).
        sampled = _selection_runs(builder, A100, VICUNA, 1.0, ("sps",), day=-1)
        fixture.expected[(A100, VICUNA, 1.0)] = sampled["expected"]
        for day, (device, model) in enumerate(
            [(RTX3090, SMOLLM), (A100, SMOLLM), (RTX3090, VICUNA), (A100, VICUNA)]
        ):
            made = _selection_runs(builder, device, model, 0.0, METHODS, day)
            fixture.expected[(device, model, 0.0)] = made["expected"]
            if (device, model) == (A100, VICUNA):
                runs = made["runs"]
                builder.equality(runs["eagle2"], runs["vanilla"], diverging=[])
                builder.equality(runs["sps"], runs["vanilla"], diverging=[DIVERGING_QUESTION])
    sessions.kw["bind"].dispose()
    return fixture


if __name__ == "__main__":  # build one to look at: python -m tests.leaderboard_fixtures OUT.db
    import sys

    print(build_fixture_database(Path(sys.argv[1])).url)
