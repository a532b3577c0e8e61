"""Comparing a method's answers with the baseline's, question by question (the core of
evaluation/equal.py; summary.py and the store read its result too).

Questions are matched by id; token ids are compared when both files carry them (cleaned text
otherwise, as Spec-Bench compares); every differing turn is named with where it first diverges,
and each first divergence is called a near-tie or a real difference from the baseline's logit
margin there (evaluation/compare/near_ties.py), or inherited when an earlier turn of the same
question diverged: the later turn's prompt holds the differing answer, so it decodes another
context than the baseline's and no margin of the baseline's can judge it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from evaluation.compare.near_ties import INHERITED, NEAR_TIE, REAL, UNKNOWN, classify, near_tie_threshold
from evaluation.record.answers import Answer, AnswerFile, question_sort_key
from evaluation.record.subtasks import ordered_subtasks

COMPARE_AUTO, COMPARE_TOKEN_IDS, COMPARE_TEXT = "auto", "token_ids", "text"
EXCERPT_BEFORE, EXCERPT_AFTER = 20, 40  # characters shown around a divergence (tokens: 5, 10)


class EqualInputError(ValueError):
    pass


@dataclass
class TurnDifference:
    question_id: str
    category: str
    turn: int  # 0-based index, as stored in the database (printed 1-based)
    first_divergence: int  # index of the first differing token or character
    unit: str  # "token" | "char"
    excerpt: str  # the method's side from a little before the divergence
    base_excerpt: str
    lengths: tuple[int, int]  # (method, baseline) length of the turn in `unit`s; -1 if absent
    # The baseline's top-1 minus top-2 logit margin at the divergence (None: not recorded, or
    # not a token divergence) and what it makes of it: near-tie, real or unknown; inherited when
    # an earlier turn of the question diverged (this turn's context already differs).
    base_margin: Optional[float] = None
    margin_verdict: str = UNKNOWN


@dataclass
class SubtaskEquality:
    subtask: str
    questions: int
    equal_questions: int
    turns: int
    equal_turns: int

    @property
    def exact_match_rate(self) -> float:
        """Share of question turns that are identical."""
        return self.equal_turns / self.turns if self.turns else 1.0


@dataclass
class EqualityResult:
    method_file: AnswerFile
    base_file: AnswerFile
    compared_on: str  # "token_ids" | "text"
    question_ids: list[str]
    left_out: list[str]
    subtasks: list[SubtaskEquality]
    differences: list[TurnDifference] = field(default_factory=list)
    dtype: Optional[str] = None  # the precision the near-tie threshold is for
    near_tie_threshold: Optional[float] = None

    def verdict_counts(self) -> dict[str, int]:
        counts = {NEAR_TIE: 0, REAL: 0, UNKNOWN: 0, INHERITED: 0}
        for d in self.differences:
            counts[d.margin_verdict] += 1
        return counts

    @property
    def num_compared(self) -> int:
        return sum(s.turns for s in self.subtasks)

    @property
    def num_equal(self) -> int:
        return sum(s.equal_turns for s in self.subtasks)

    @property
    def all_equal(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        return {
            "base_file": str(self.base_file.path), "method_file": str(self.method_file.path),
            "compared_on": self.compared_on, "num_questions": len(self.question_ids),
            "left_out": self.left_out, "num_compared_turns": self.num_compared,
            "num_equal_turns": self.num_equal, "all_equal": self.all_equal,
            "subtasks": [dict(asdict(s), exact_match_rate=s.exact_match_rate) for s in self.subtasks],
            "differences": [asdict(d) for d in self.differences],
            "dtype": self.dtype, "near_tie_threshold": self.near_tie_threshold,
            "verdicts": self.verdict_counts(),
        }


# ---- comparing --------------------------------------------------------------------------

def first_divergence(a: Sequence, b: Sequence) -> Optional[int]:
    """Index of the first position where a and b differ (the shorter length if one is a
    prefix of the other); None if they are equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def excerpt(sequence: Optional[Sequence], index: int, unit: str) -> str:
    """A short piece of one side starting a little before the divergence."""
    if sequence is None:
        return "(no such turn)"
    before, after = (EXCERPT_BEFORE, EXCERPT_AFTER) if unit == "char" else (5, 10)
    start, end = max(0, index - before), index + after
    if unit == "char":
        body = sequence[start:end]
    else:
        body = ", ".join(str(t) for t in sequence[start:end])
    return ("…" if start > 0 else "") + body + ("…" if end < len(sequence) else "")


def run_dtype(answer_file: AnswerFile) -> Optional[str]:
    """The dtype a run computed in: our environment field, else Spec-Bench's model-id naming."""
    return answer_file.run_value("environment.dtype")


def coarser_dtype(a: Optional[str], b: Optional[str]) -> Optional[str]:
    """Of two dtypes, the one with the larger rounding (its threshold covers both runs)."""
    known = [d for d in (a, b) if near_tie_threshold(d) is not None]
    return max(known, key=near_tie_threshold) if known else None


def base_margin_at(base: Answer, turn: int, index: int, unit: str) -> Optional[float]:
    """The baseline's margin of its token `index` in `turn`, if it recorded one."""
    if unit != "token" or base.logit_margins is None or turn >= len(base.logit_margins):
        return None
    margins = base.logit_margins[turn]
    return margins[index] if index < len(margins) else None


def _turns(answer: Answer, compared_on: str) -> list:
    return answer.token_ids if compared_on == COMPARE_TOKEN_IDS else answer.turns


def compare_answers(method_file: AnswerFile, base_file: AnswerFile,
                    compare: str = COMPARE_AUTO, allow_partial: bool = False) -> EqualityResult:
    both_have_ids = method_file.has_all("token_ids") and base_file.has_all("token_ids")
    if compare == COMPARE_AUTO:
        compare = COMPARE_TOKEN_IDS if both_have_ids else COMPARE_TEXT
    elif compare == COMPARE_TOKEN_IDS and not both_have_ids:
        raise EqualInputError("--compare token_ids, but not every answer of both files has token_ids")
    unit = "token" if compare == COMPARE_TOKEN_IDS else "char"

    method_ids, base_ids = set(method_file.answers), set(base_file.answers)
    left_out = []
    for f, ids in ((method_file, method_ids - base_ids), (base_file, base_ids - method_ids)):
        if ids:
            shown = sorted(ids, key=question_sort_key)
            left_out.append(f"only in {f.path}: question(s) {', '.join(shown[:12])}"
                            + (f", ... ({len(shown)} in all)" if len(shown) > 12 else ""))
    if left_out and not allow_partial:
        raise EqualInputError("question sets differ:\n  " + "\n  ".join(left_out) +
                              "\npass --allow-partial to compare only the common questions")
    common = sorted(method_ids & base_ids, key=question_sort_key)
    if not common:
        raise EqualInputError("the two files have no question in common")

    dtype = coarser_dtype(run_dtype(base_file), run_dtype(method_file))
    threshold = near_tie_threshold(dtype)
    per_subtask: dict[str, SubtaskEquality] = {}
    differences = []
    for qid in common:
        answer, base = method_file.answers[qid], base_file.answers[qid]
        ours, theirs = _turns(answer, compare), _turns(base, compare)
        stats = per_subtask.setdefault(base.subtask, SubtaskEquality(base.subtask, 0, 0, 0, 0))
        stats.questions += 1
        question_equal = True
        for t in range(max(len(ours), len(theirs))):
            mine = ours[t] if t < len(ours) else None
            other = theirs[t] if t < len(theirs) else None
            stats.turns += 1
            index = 0 if mine is None or other is None else first_divergence(mine, other)
            if index is None:
                stats.equal_turns += 1
                continue
            inherited = not question_equal  # an earlier turn diverged: this context differs
            question_equal = False
            margin = None if mine is None or other is None else base_margin_at(base, t, index, unit)
            differences.append(TurnDifference(
                question_id=qid, category=base.category, turn=t, first_divergence=index,
                unit=unit, excerpt=excerpt(mine, index, unit),
                base_excerpt=excerpt(other, index, unit),
                lengths=(-1 if mine is None else len(mine), -1 if other is None else len(other)),
                base_margin=margin,
                margin_verdict=INHERITED if inherited else classify(margin, threshold),
            ))
        stats.equal_questions += question_equal
    subtasks = [per_subtask[name] for name in ordered_subtasks(per_subtask)]
    return EqualityResult(method_file, base_file, compare, common, left_out, subtasks, differences,
                          dtype, threshold)
