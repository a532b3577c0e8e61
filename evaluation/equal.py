"""Are a method's answers the baseline's? (Spec-Bench's equal.py, aligned on question ids.)

    python evaluation/equal.py --file-path DIR --jsonfile1 BASELINE.jsonl --jsonfile2 METHOD.jsonl

As in Spec-Bench, jsonfile1 is the baseline and jsonfile2 the method, and the last line is
"Result totally Equal!" or "Not Equal!". Beyond Spec-Bench: questions are matched by id, not by
line; token ids are compared when both files carry them (text otherwise); every differing
question turn is named with where it first diverges, and each first divergence is called a
near-tie or a real difference from the baseline's logit margin there (evaluation/near_ties.py);
the exact-match rate is given per subtask.
Exit status: 0 equal, 1 not equal, 2 error.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from evaluation.answers import (Answer, AnswerFile, AnswerFileError, guess_from_model_id,
                                question_sort_key, read_answer_file)
from evaluation.near_ties import NEAR_TIE, REAL, UNKNOWN, classify, near_tie_threshold
from evaluation.subtasks import display_name, ordered_subtasks
from evaluation.tables import format_table
from leaderboard.store import StoreError, save_equality_result

EQUAL_LINE = "Result totally Equal!"  # Spec-Bench's wording, kept for scripts that grep it
NOT_EQUAL_LINE = "Not Equal!"
EXIT_EQUAL, EXIT_NOT_EQUAL, EXIT_ERROR = 0, 1, 2

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
    # not a token divergence) and what it makes of it: near-tie, real or unknown.
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
        counts = {NEAR_TIE: 0, REAL: 0, UNKNOWN: 0}
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
    env = answer_file.run_field("environment") or {}
    return env.get("dtype") or guess_from_model_id(answer_file.model_id).dtype


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
            question_equal = False
            margin = None if mine is None or other is None else base_margin_at(base, t, index, unit)
            differences.append(TurnDifference(
                question_id=qid, category=base.category, turn=t, first_divergence=index,
                unit=unit, excerpt=excerpt(mine, index, unit),
                base_excerpt=excerpt(other, index, unit),
                lengths=(-1 if mine is None else len(mine), -1 if other is None else len(other)),
                base_margin=margin, margin_verdict=classify(margin, threshold),
            ))
        stats.equal_questions += question_equal
    subtasks = [per_subtask[name] for name in ordered_subtasks(per_subtask)]
    return EqualityResult(method_file, base_file, compare, common, left_out, subtasks, differences,
                          dtype, threshold)


# ---- output -----------------------------------------------------------------------------

def format_result(result: EqualityResult, max_shown: int = 20) -> str:
    lines = [f"Baseline (jsonfile1): {result.base_file.path}  (model_id {result.base_file.model_id})",
             f"Method   (jsonfile2): {result.method_file.path}  (model_id {result.method_file.model_id})"]
    reason = ("both files carry token_ids" if result.compared_on == COMPARE_TOKEN_IDS
              else "cleaned answer text, as Spec-Bench compares")
    lines.append(f"Compared on: {result.compared_on} ({reason}); questions matched by id: "
                 f"{len(result.question_ids)}")
    for note in result.left_out:
        lines.append(f"  left out (--allow-partial): {note}")
    lines.append("")
    rows = [[display_name(s.subtask), str(s.questions), str(s.equal_questions), str(s.turns),
             str(s.equal_turns), f"{s.exact_match_rate:.3f}"] for s in result.subtasks]
    total = result.num_compared
    rows.append(["Overall", str(len(result.question_ids)),
                 str(sum(s.equal_questions for s in result.subtasks)), str(total),
                 str(result.num_equal), f"{result.num_equal / total if total else 1.0:.3f}"])
    lines.append(format_table(["Subtask", "Questions", "Equal questions", "Turns", "Equal turns",
                               "Exact-match rate"], rows))
    if result.differences:
        shown = result.differences[:max_shown]
        lines.append("")
        lines.append(f"Differing turns ({len(result.differences)}"
                     + (f", first {len(shown)} shown" if len(shown) < len(result.differences) else "")
                     + "):")
        for d in shown:
            lines.append(f"  question {d.question_id} ({d.category}) turn {d.turn + 1}: first "
                         f"divergence at {d.unit} {d.first_divergence} "
                         f"(lengths: method {d.lengths[0]}, baseline {d.lengths[1]})")
            lines.append(f"    {margin_note(d, result)}")
            lines.append(f"    baseline: {json.dumps(d.base_excerpt, ensure_ascii=False)}")
            lines.append(f"    method:   {json.dumps(d.excerpt, ensure_ascii=False)}")
        counts = result.verdict_counts()
        lines.append(f"First divergences: {counts[NEAR_TIE]} near-tie(s) (numerically fragile), "
                     f"{counts[REAL]} real difference(s), {counts[UNKNOWN]} unknown"
                     + (f"; near-tie = baseline margin below {result.near_tie_threshold:.3g} "
                        f"for {result.dtype}" if result.near_tie_threshold is not None else ""))
    lines.append("")
    lines.append(EQUAL_LINE if result.all_equal else NOT_EQUAL_LINE)
    return "\n".join(lines)


def margin_note(d: TurnDifference, result: EqualityResult) -> str:
    """One line on the baseline's margin at a divergence and what it means."""
    if d.margin_verdict == UNKNOWN:
        if d.unit != "token":
            why = "compared on text"
        elif result.near_tie_threshold is None:
            why = f"dtype {result.dtype or 'unknown'} has no threshold"
        else:
            why = "the baseline recorded no logit_margins there"
        return f"near-tie or real: unknown ({why})"
    verdict = ("near-tie: rounding alone can flip it" if d.margin_verdict == NEAR_TIE
               else "real difference: rounding cannot explain it")
    sign = "<" if d.margin_verdict == NEAR_TIE else ">="
    return (f"baseline margin there {d.base_margin:.3g} {sign} {result.near_tie_threshold:.3g} "
            f"({result.dtype}): {verdict}")


# ---- command line -----------------------------------------------------------------------

def resolve(directory: Optional[str], name: str) -> Path:
    """A name inside --file-path (Spec-Bench's way), or a full path as given."""
    if directory:
        inside = Path(directory) / name  # an absolute name stays itself
        if inside.exists() or not Path(name).exists():
            return inside
    return Path(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equal.py",
        description="Check that a method's answers equal the baseline's, question by question "
                    "(exit status 0 equal, 1 not equal, 2 error). See docs/evaluation.md.")
    parser.add_argument("--file-path", metavar="DIR",
                        help="folder holding both answer files (Spec-Bench's option); without "
                             "it, --jsonfile1/2 are paths")
    parser.add_argument("--jsonfile1", required=True, metavar="A",
                        help="baseline answer file: a name inside DIR or a full path")
    parser.add_argument("--jsonfile2", required=True, metavar="B",
                        help="method answer file: a name inside DIR or a full path")
    parser.add_argument("--compare", choices=(COMPARE_AUTO, COMPARE_TOKEN_IDS, COMPARE_TEXT),
                        default=COMPARE_AUTO,
                        help="auto (default): token ids when both files carry them, else text")
    parser.add_argument("--allow-partial", action="store_true",
                        help="compare only the questions both files answer instead of stopping "
                             "when the question sets differ")
    parser.add_argument("--show", type=int, default=20, metavar="N",
                        help="differing turns to print (all are stored; default 20)")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")
    parser.add_argument("--db", metavar="URL",
                        help="results database: SQLAlchemy URL (e.g. postgresql://...) or SQLite "
                             "file path (default: $SDBENCH_DB, else results/leaderboard.db)")
    parser.add_argument("--no-db", action="store_true", help="do not write to the database")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base_file = read_answer_file(resolve(args.file_path, args.jsonfile1))
            method_file = read_answer_file(resolve(args.file_path, args.jsonfile2))
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        result = compare_answers(method_file, base_file, args.compare, args.allow_partial)
        print(format_result(result, args.show))
        if args.json:
            try:
                Path(args.json).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
            except OSError as exc:
                raise EqualInputError(f"cannot write {args.json}: {exc.strerror or exc}") from None
        if not args.no_db:
            url = save_equality_result(args.db, result)
            print(f"Stored in {url}", file=sys.stderr)
    except (AnswerFileError, EqualInputError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_EQUAL if result.all_equal else EXIT_NOT_EQUAL


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
