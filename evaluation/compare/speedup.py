"""Comparing a method's speed with the baseline's from answer files: the checks and the
arithmetic behind speed.py (docs/evaluation.md defines every figure).

What differs from Spec-Bench's speed.py, and why:
- questions are matched by id; ids on one side only are an error (or, with allow_partial,
  left out and named), because comparing different question sets compares workloads;
- tokens are counted the same way on both sides (token ids, else new_tokens; re-tokenised text
  only when asked), because Spec-Bench counts the method by new_tokens and the baseline by
  re-tokenised text;
- the speedup is total tokens / total time on each side, with a bootstrap interval; Spec-Bench's
  ratio of mean per-question throughputs is kept as a compatibility column;
- a zero, negative, non-finite or implausible wall time is an error, never averaged in;
- the baseline must be a baseline run of the same settings (evaluation/compare/compatibility.py), and a
  file is never compared with itself;
- each method answer is paired with the baseline's answer to the same question, which a run
  interleaving them made on the same device; where the lines record their placement (node,
  device, worker), that is checked and reported, and a pair from two device types is refused;
- a run sharded over several device types (evaluation/run/sharded.py) is compared per device type,
  never pooled: timings of different devices are not comparable.
The figure Spec-Bench's speed.py would print is computed apart, in spec_bench_speed.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Optional

import numpy as np

from evaluation.compare.cost_model import SpeedPrediction, predict
from evaluation.compare.metrics import AcceptanceFigures, acceptance_figures, max_draft_length
from evaluation.record.answers import Answer, AnswerFile, question_sort_key
from evaluation.compare.compatibility import Compatibility, Mismatch, check_compatibility
from evaluation.compare.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_speedup_ci,
    finite_or_none,
    mean_and_std,
)
from evaluation.record.subtasks import OVERALL, display_name, ordered_subtasks, subtask_of

# No decoder of today comes near this on one sequence; a higher rate means a broken timer.
MAX_PLAUSIBLE_TOKENS_PER_S = 100_000.0

COUNT_AUTO = "auto"
COUNT_TOKEN_IDS = "token_ids"
COUNT_NEW_TOKENS = "new_tokens"
COUNT_RETOKENIZED = "retokenized"
COUNTING_MODES = (COUNT_AUTO, COUNT_TOKEN_IDS, COUNT_NEW_TOKENS, COUNT_RETOKENIZED)


class SpeedInputError(ValueError):
    """Answer files that cannot be compared as given; the message says which and why."""


# ---- inputs ---------------------------------------------------------------------------

@dataclass
class TokenCounting:
    mode: str  # COUNT_TOKEN_IDS | COUNT_NEW_TOKENS | COUNT_RETOKENIZED
    reason: str


def choose_token_counting(method_files: list[AnswerFile], base_files: list[AnswerFile],
                          requested: str = COUNT_AUTO, have_tokenizer: bool = False) -> TokenCounting:
    """One counting rule for both sides: token ids when every file has them, else new_tokens."""
    files = method_files + base_files
    without_ids = [f.path.name for f in files if not f.has_all("token_ids")]
    if requested == COUNT_RETOKENIZED:
        if not have_tokenizer:
            raise SpeedInputError("--count retokenized needs --tokenizer-path")
        return TokenCounting(COUNT_RETOKENIZED, "re-tokenised answer text on both sides "
                             "(asked for; special tokens not counted)")
    if requested == COUNT_TOKEN_IDS:
        if without_ids:
            raise SpeedInputError(
                f"--count token_ids, but these files lack token_ids on some answers: "
                f"{', '.join(without_ids)}")
        return TokenCounting(COUNT_TOKEN_IDS, "generated token ids on both sides (asked for)")
    if requested == COUNT_NEW_TOKENS:
        return TokenCounting(COUNT_NEW_TOKENS, "new_tokens on both sides (asked for)")
    if requested != COUNT_AUTO:
        raise SpeedInputError(f"unknown token counting {requested!r}; one of {COUNTING_MODES}")
    if not without_ids:
        return TokenCounting(COUNT_TOKEN_IDS, "every file carries token_ids; counted on both sides")
    return TokenCounting(COUNT_NEW_TOKENS,
                         f"new_tokens on both sides ({', '.join(without_ids)} without token_ids)")


def count_tokens(answer: Answer, mode: str, tokenizer: Optional[Callable] = None) -> int:
    if mode == COUNT_TOKEN_IDS:
        return sum(len(ids) for ids in answer.token_ids)
    if mode == COUNT_NEW_TOKENS:
        return sum(answer.new_tokens)
    # Spec-Bench subtracts 1 for a BOS it assumes; not adding special tokens is the same for
    # tokenizers with a BOS and right for those without.
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in answer.turns)


def _id_list(ids: list[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown}, ... ({len(ids)} in all)"


def select_questions(files: list[AnswerFile], allow_partial: bool) -> tuple[list[str], list[str]]:
    """Question ids answered (without error) in every file, and notes on what was left out.

    Without allow_partial, any id missing or failed somewhere is an error naming it.
    """
    every_id = set().union(*(f.answers for f in files))
    problems = []
    for f in files:
        missing = sorted(every_id - set(f.answers), key=question_sort_key)
        if missing:
            problems.append(f"{f.path} lacks question(s) {_id_list(missing)} present in another file")
        failed = sorted(f.failed(), key=question_sort_key)
        if failed:
            problems.append(f"{f.path} has failed answer(s) to question(s) {_id_list(failed)}")
    usable = [qid for qid in sorted(every_id, key=question_sort_key)
              if all(qid in f.answers and f.answers[qid].error is None for f in files)]
    for qid in usable:
        categories = {f.answers[qid].category for f in files}
        if len(categories) > 1:
            raise SpeedInputError(
                f"question {qid} has different categories in different files ({sorted(categories)}); "
                f"these files answer different question sets")
    if problems and not allow_partial:
        raise SpeedInputError("question sets differ:\n  " + "\n  ".join(problems) +
                              "\nrerun the missing questions, or pass --allow-partial to compare "
                              "only the questions every file answered")
    if not usable:
        raise SpeedInputError("no question is answered (without error) in every file")
    return usable, problems


def check_timings(f: AnswerFile, question_ids: list[str], tokens: dict[str, int],
                  max_tokens_per_s: float) -> list[str]:
    """Problems with the timings of the compared answers of one file (empty when sound)."""
    problems = []
    for qid in question_ids:
        answer = f.answers[qid]
        for turn, seconds in enumerate(answer.wall_time, start=1):
            if not math.isfinite(seconds) or seconds <= 0:
                problems.append(f"{f.path}: question {qid} turn {turn}: wall time {seconds!r} s "
                                f"(must be a positive number of seconds)")
        for name in ("prefill_time", "draft_time", "verify_time"):
            for turn, seconds in enumerate(getattr(answer, name) or [], start=1):
                if not math.isfinite(seconds) or seconds < 0:
                    problems.append(f"{f.path}: question {qid} turn {turn}: {name} {seconds!r} s "
                                    f"(must be a non-negative number of seconds)")
        total = sum(answer.wall_time)
        if total > 0 and math.isfinite(total) and tokens[qid] / total > max_tokens_per_s:
            problems.append(f"{f.path}: question {qid}: {tokens[qid]} tokens in {total:g} s = "
                            f"{tokens[qid] / total:.0f} tokens/s, implausible "
                            f"(limit {max_tokens_per_s:g}; see --max-tokens-per-s)")
    return problems


def pair_runs(method_count: int, base_count: int) -> list[tuple[int, int]]:
    """Run i of the method against run i of the baseline; one run on a side serves every run."""
    if method_count == base_count:
        return [(i, i) for i in range(method_count)]
    if base_count == 1:
        return [(i, 0) for i in range(method_count)]
    if method_count == 1:
        return [(0, j) for j in range(base_count)]
    raise SpeedInputError(
        f"{method_count} method runs and {base_count} baseline runs: give the same number on both "
        f"sides (paired in order) or one run on a side")


# ---- devices: same-device pairs, per-device-type reports ------------------------------

def device_type_of(answer: Answer) -> Optional[str]:
    """The kind of device a line was answered on (environment.device_name), None if unrecorded."""
    value = (answer.run_fields.get("environment") or {}).get("device_name")
    return None if value in (None, "") else str(value)


def placement_of(answer: Answer) -> Optional[tuple]:
    """(node, device, worker) of the line, None if unrecorded (older files, Spec-Bench's)."""
    placement = answer.run_fields.get("placement")
    if not isinstance(placement, dict):
        return None
    return placement.get("node"), placement.get("device"), placement.get("worker")


@dataclass
class Pairing:
    """How the compared method/baseline answer pairs were placed."""

    pairs: int
    same_device: int  # both answers recorded one placement
    same_type_elsewhere: list[str]  # question ids paired across two devices of one type
    unrecorded: int  # pairs where one side records no placement
    other_type: list[str] = field(default_factory=list)  # pairs from two device types (allowed)

    def describe(self) -> str:
        if self.unrecorded == self.pairs:
            return ("each method answer against the baseline's answer to the same question "
                    "(the files record no placement, so not checked to be the same device)")
        text = (f"each method answer against the baseline's answer to the same question from the "
                f"same device: {self.same_device} of {self.pairs} pairs")
        if self.same_type_elsewhere:
            text += (f"; {len(self.same_type_elsewhere)} pair(s) ran on two devices of one type "
                     f"(a resumed or retried question), questions {_id_list(self.same_type_elsewhere)}")
        if self.unrecorded:
            text += f"; {self.unrecorded} pair(s) without a recorded placement"
        return text


def check_pairing(method_files: list[AnswerFile], base_files: list[AnswerFile],
                  pairs: list[tuple[int, int]], question_ids: list[str],
                  allow_other_type: bool = False) -> Pairing:
    """Count same-device pairs; a pair from two device types is an error (not comparable)
    unless allowed (--allow-mismatch device_name, recorded as a mismatch of the files)."""
    total, same, elsewhere, unrecorded, crossed = 0, 0, [], 0, []
    for i, j in pairs:
        for qid in question_ids:
            answer, base = method_files[i].answers[qid], base_files[j].answers[qid]
            total += 1
            where, base_where = placement_of(answer), placement_of(base)
            kind, base_kind = device_type_of(answer), device_type_of(base)
            if kind is not None and base_kind is not None and kind != base_kind:
                crossed.append(f"question {qid}: {kind!r} in {method_files[i].path}, {base_kind!r} "
                               f"in {base_files[j].path}")
            elif where is None or base_where is None:
                unrecorded += 1
            elif where == base_where:
                same += 1
            else:
                elsewhere.append(qid)
    if crossed and not allow_other_type:
        raise SpeedInputError(
            f"{len(crossed)} method answer(s) ran on another device type than the baseline's "
            f"answer to the same question, so their times are not comparable:\n  " +
            "\n  ".join(crossed[:10]) + ("\n  ..." if len(crossed) > 10 else "") +
            "\nanswer those questions again with both methods on one device (remove their lines "
            "from both files and resume the run), or pass --allow-mismatch device_name to compare "
            "them anyway (stored with the mismatch recorded, never ranked)")
    return Pairing(total, same, sorted(set(elsewhere), key=question_sort_key), unrecorded, crossed)


def device_types(files: list[AnswerFile], question_ids: list[str]) -> dict[str, list[str]]:
    """Device type -> the compared questions answered on it (by the first file); empty when
    fewer than two types are recorded (nothing to break down)."""
    groups: dict[str, list[str]] = {}
    for qid in question_ids:
        kind = device_type_of(files[0].answers[qid])
        if kind is None:
            return {}
        groups.setdefault(kind, []).append(qid)
    return groups if len(groups) > 1 else {}


def _restricted(f: AnswerFile, question_ids: list[str]) -> AnswerFile:
    return replace(f, answers={qid: f.answers[qid] for qid in question_ids})


# ---- results --------------------------------------------------------------------------

@dataclass
class QuestionSpeed:
    """One question, first method run against first baseline run."""

    question_id: str
    category: str
    subtask: str
    tokens: int
    wall_time: float
    base_tokens: int
    base_wall_time: float
    tokens_per_s: float
    base_tokens_per_s: float
    speedup: float
    mean_accepted_tokens: Optional[float]


@dataclass
class SubtaskSpeed:
    subtask: str
    num_questions: int
    tokens_per_s: float  # mean over run pairs of total tokens / total time
    tokens_per_s_std: Optional[float]  # across run pairs (None for one)
    base_tokens_per_s: float
    base_tokens_per_s_std: Optional[float]
    speedup: float
    speedup_std: Optional[float]
    speedup_ci_low: float
    speedup_ci_high: float
    speedup_spec_bench: float  # mean per-question tok/s over the same of the baseline
    speedup_spec_bench_std: Optional[float]
    mean_paired_speedup: float  # mean over questions of the per-question speedup
    acceptance: AcceptanceFigures
    per_run: list[dict] = field(default_factory=list)
    # The speedup the device's cost curve and the method's acceptance and draft time predict
    # (evaluation/compare/cost_model.py), flagged when the measured one is more than 10% away.
    prediction: Optional[SpeedPrediction] = None

    @property
    def display_name(self) -> str:
        return display_name(self.subtask)


@dataclass
class SpeedReport:
    method_files: list[AnswerFile]
    base_files: list[AnswerFile]
    pairs: list[tuple[int, int]]
    counting: TokenCounting
    question_ids: list[str]
    left_out: list[str]  # notes on questions not compared (only with allow_partial)
    subtasks: list[SubtaskSpeed]  # report order, OVERALL last
    questions: list[QuestionSpeed]
    resamples: int
    seed: int
    compatibility: Compatibility = field(default_factory=lambda: Compatibility([], []))
    # What Spec-Bench's own speed.py would print for these files (evaluation/compare/spec_bench_speed.py),
    # or why it is not given; set by the caller that has a tokenizer.
    spec_bench_reported: Optional[list] = None  # list[SpecBenchTask]
    spec_bench_unavailable: Optional[str] = None
    pairing: Optional[Pairing] = None
    # A run over several device types: one report per type (the pooled figures above are then
    # not to be shown or stored); empty for a run on one device type.
    by_device_type: dict[str, "SpeedReport"] = field(default_factory=dict)
    device_type: Optional[str] = None  # set on each report of by_device_type
    # The verification cost curve the method run measured on its device (None: not measured).
    verify_cost: Optional[dict] = None

    def subtask(self, name: str) -> SubtaskSpeed:
        return next(s for s in self.subtasks if s.subtask == name)

    def as_dict(self) -> dict[str, Any]:
        def clean(value):
            if isinstance(value, float):
                return finite_or_none(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        subtasks = []
        for s in self.subtasks:
            row = {k: v for k, v in asdict(s).items() if k not in ("acceptance", "prediction")}
            row["display_name"] = s.display_name
            row.update(s.acceptance.as_dict())
            row["prediction"] = None if s.prediction is None else s.prediction.as_dict()
            subtasks.append(row)
        return clean({
            "method_files": [_describe(f) for f in self.method_files],
            "base_files": [_describe(f) for f in self.base_files],
            "run_pairs": [list(p) for p in self.pairs],
            "token_counting": self.counting.mode,
            "token_counting_reason": self.counting.reason,
            "num_questions": len(self.question_ids),
            "left_out": self.left_out,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "confidence": 0.95},
            "settings_match": self.compatibility.matched,
            "mismatches": [m.as_dict() for m in self.compatibility.mismatches],
            "unchecked_settings": self.compatibility.unchecked,
            "spec_bench_reported": (None if self.spec_bench_reported is None else
                                    [t.as_dict() for t in self.spec_bench_reported]),
            "spec_bench_unavailable": self.spec_bench_unavailable,
            "pairing": None if self.pairing is None else asdict(self.pairing),
            "device_type": self.device_type,
            "verify_cost": self.verify_cost,
            "by_device_type": {kind: report.as_dict() for kind, report in self.by_device_type.items()},
            "subtasks": subtasks,
            "questions": [asdict(q) for q in self.questions],
        })


def _describe(f: AnswerFile) -> dict[str, Any]:
    return {"path": str(f.path), "sha256": f.sha256, "model_id": f.model_id,
            "method": f.run_field("method"), "source_format": f.source_format}


# ---- the computation ------------------------------------------------------------------

def compare_speed(method_files: list[AnswerFile], base_files: list[AnswerFile], *,
                  counting: str = COUNT_AUTO, tokenizer: Optional[Callable] = None,
                  allow_partial: bool = False, allow_mismatch: Iterable[str] = (),
                  resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED,
                  max_tokens_per_s: float = MAX_PLAUSIBLE_TOKENS_PER_S) -> SpeedReport:
    """Validate the files against each other, then compute every figure. Raises SpeedInputError.

    allow_mismatch names settings (evaluation.compare.compatibility.CHECK_NAMES) that may differ between
    the method and the baseline; the report records each such difference.
    """
    if not method_files or not base_files:
        raise SpeedInputError("need at least one method file and one baseline file")
    if resamples < 1:
        raise SpeedInputError("--bootstrap must be at least 1")
    pairs = pair_runs(len(method_files), len(base_files))
    refuse_same_file(method_files, base_files)
    refuse_mixed_methods(method_files, "method")
    refuse_mixed_methods(base_files, "baseline")
    compatibility, refused = check_compatibility(method_files, base_files, pairs,
                                                 set(allow_mismatch))
    if refused:
        raise SpeedInputError(
            "these runs cannot be compared:\n  " + "\n  ".join(m.describe() for m in refused) +
            f"\npass --allow-mismatch {','.join(dict.fromkeys(m.setting for m in refused))} to "
            f"compare them anyway: the comparison is then stored with the mismatch recorded and "
            f"never ranked on the leaderboard")
    rule = choose_token_counting(method_files, base_files, counting, tokenizer is not None)
    question_ids, left_out = select_questions(method_files + base_files, allow_partial)

    def tokens_of(f: AnswerFile) -> dict[str, int]:
        return {qid: count_tokens(f.answers[qid], rule.mode, tokenizer) for qid in question_ids}

    method_tokens = [tokens_of(f) for f in method_files]
    base_tokens = [tokens_of(f) for f in base_files]
    problems = []
    for f, tokens in zip(method_files + base_files, method_tokens + base_tokens):
        problems += check_timings(f, question_ids, tokens, max_tokens_per_s)
    for f, tokens in zip(base_files, base_tokens):
        problems += [f"{f.path}: question {qid}: the baseline counted 0 tokens, so its speedup "
                     f"is undefined" for qid in question_ids if tokens[qid] == 0]
    if problems:
        raise SpeedInputError(f"{len(problems)} unusable answer(s):\n  " +
                              "\n  ".join(problems[:20]) +
                              ("\n  ..." if len(problems) > 20 else ""))

    first = method_files[0]
    categories = {qid: first.answers[qid].category for qid in question_ids}
    groups: dict[str, list[str]] = {}
    for qid in question_ids:
        groups.setdefault(subtask_of(categories[qid]), []).append(qid)
    groups = {name: groups[name] for name in ordered_subtasks(groups)}
    groups[OVERALL] = question_ids

    draft_length = max_draft_length(first.run_field("method_params"))
    curve = first.run_field("verify_cost")
    subtasks = []
    for name, qids in groups.items():
        arrays = _arrays(method_files, base_files, pairs, method_tokens, base_tokens, qids)
        answers = [f.answers[qid] for f in method_files for qid in qids]
        subtask = _subtask_speed(name, qids, arrays, answers, draft_length, resamples, seed)
        base_answers = [base_files[j].answers[qid] for _, j in pairs for qid in qids]
        subtask.prediction = predict(subtask.acceptance, answers, base_answers, curve, subtask.speedup)
        subtasks.append(subtask)

    questions = [_question_speed(qid, categories[qid], first.answers[qid],
                                 base_files[pairs[0][1]].answers[qid],
                                 method_tokens[0][qid], base_tokens[pairs[0][1]][qid])
                 for qid in question_ids]
    pairing = check_pairing(method_files, base_files, pairs, question_ids,
                            "device_name" in set(allow_mismatch))
    if pairing.other_type and not any(m.setting == "device_name" for m in compatibility.mismatches):
        # Allowed, but recorded: a comparison with such pairs is never ranked.
        compatibility.mismatches.append(Mismatch(
            "device_name", "per question", f"another device type for {len(pairing.other_type)} "
            f"question(s)", str(method_files[0].path), str(base_files[0].path)))
    report = SpeedReport(method_files, base_files, pairs, rule, question_ids, left_out, subtasks,
                         questions, resamples, seed, compatibility, pairing=pairing,
                         verify_cost=curve)
    for kind, qids in device_types(method_files, question_ids).items():
        part = compare_speed([_restricted(f, qids) for f in method_files],
                             [_restricted(f, qids) for f in base_files],
                             counting=rule.mode, tokenizer=tokenizer, allow_partial=allow_partial,
                             allow_mismatch=allow_mismatch, resamples=resamples, seed=seed,
                             max_tokens_per_s=max_tokens_per_s)
        part.device_type = kind
        report.by_device_type[kind] = part
    return report


def _method_and_params(f: AnswerFile) -> tuple[Any, str]:
    params = f.run_field("method_params") or {}
    return f.run_value("method"), json.dumps(params, sort_keys=True, default=str)


def refuse_mixed_methods(files: list[AnswerFile], side: str) -> None:
    """Several files on one side are runs of one configuration, averaged into one figure: files
    of different methods (eagle, eagle2, eagle3 matched by one glob) or of one method with other
    parameters would be averaged into a number that belongs to none of them."""
    first = files[0]
    for other in files[1:]:
        if _method_and_params(other) == _method_and_params(first):
            continue
        (method, params), (other_method, other_params) = (_method_and_params(first),
                                                          _method_and_params(other))
        what = (f"method {method!r} vs {other_method!r}" if method != other_method
                else f"method parameters {params} vs {other_params}")
        raise SpeedInputError(
            f"the {side} files are not runs of one method configuration ({what}): {first.path} "
            f"and {other.path}; several {side} files are averaged as repeated runs, so compare "
            f"each method in its own speed.py call")


def refuse_same_file(method_files: list[AnswerFile], base_files: list[AnswerFile]) -> None:
    """A file compared with itself measures nothing (its speedup is 1 by construction)."""
    for m in method_files:
        for b in base_files:
            if m.path.resolve() == b.path.resolve():
                given = f"{m.path} is given"
            elif m.sha256 == b.sha256:
                given = f"{m.path} and {b.path} are one file (same sha256), given"
            else:
                continue
            raise SpeedInputError(f"{given} as both the method and the baseline; a speedup "
                                  f"needs a method run and a separate baseline run")


def _arrays(method_files, base_files, pairs, method_tokens, base_tokens, qids):
    """[run pairs, questions] arrays: method tokens, method seconds, baseline tokens, seconds."""
    def tokens(counts, index):
        return [counts[index][q] for q in qids]

    def seconds(files, index):
        return [sum(files[index].answers[q].wall_time) for q in qids]

    return (np.array([tokens(method_tokens, i) for i, _ in pairs], dtype=float),
            np.array([seconds(method_files, i) for i, _ in pairs], dtype=float),
            np.array([tokens(base_tokens, j) for _, j in pairs], dtype=float),
            np.array([seconds(base_files, j) for _, j in pairs], dtype=float))


def _subtask_speed(name, qids, arrays, answers, draft_length, resamples, seed) -> SubtaskSpeed:
    tokens, times, base_tokens, base_times = arrays
    rate = tokens.sum(axis=1) / times.sum(axis=1)
    base_rate = base_tokens.sum(axis=1) / base_times.sum(axis=1)
    # Spec-Bench's arithmetic: mean of per-question throughputs on each side, then their ratio.
    spec_rate = (tokens / times).mean(axis=1)
    spec_base_rate = (base_tokens / base_times).mean(axis=1)
    paired = ((tokens / times) / (base_tokens / base_times)).mean(axis=1)
    low, high = bootstrap_speedup_ci(tokens, times, base_tokens, base_times, resamples, seed)

    speedup, speedup_std = mean_and_std(rate / base_rate)
    tps, tps_std = mean_and_std(rate)
    base_tps, base_tps_std = mean_and_std(base_rate)
    spec_speedup, spec_std = mean_and_std(spec_rate / spec_base_rate)
    per_run = [{"tokens_per_s": float(r), "base_tokens_per_s": float(b),
                "speedup": float(r / b), "speedup_spec_bench": float(sr / sb),
                "spec_bench_tokens_per_s": float(sr), "spec_bench_base_tokens_per_s": float(sb)}
               for r, b, sr, sb in zip(rate, base_rate, spec_rate, spec_base_rate)]
    return SubtaskSpeed(
        subtask=name, num_questions=len(qids),
        tokens_per_s=tps, tokens_per_s_std=tps_std,
        base_tokens_per_s=base_tps, base_tokens_per_s_std=base_tps_std,
        speedup=speedup, speedup_std=speedup_std, speedup_ci_low=low, speedup_ci_high=high,
        speedup_spec_bench=spec_speedup, speedup_spec_bench_std=spec_std,
        mean_paired_speedup=float(paired.mean()),
        acceptance=acceptance_figures(answers, draft_length),
        per_run=per_run,
    )


def _question_speed(qid, category, answer, base_answer, tokens, base_tokens) -> QuestionSpeed:
    seconds, base_seconds = sum(answer.wall_time), sum(base_answer.wall_time)
    rate, base_rate = tokens / seconds, base_tokens / base_seconds
    steps = answer.accept_lengths
    return QuestionSpeed(
        question_id=qid, category=category, subtask=subtask_of(category),
        tokens=tokens, wall_time=seconds, base_tokens=base_tokens, base_wall_time=base_seconds,
        tokens_per_s=rate, base_tokens_per_s=base_rate, speedup=rate / base_rate,
        mean_accepted_tokens=sum(steps) / len(steps) if steps else None,
    )
