"""Are a method's answers the baseline's? (Spec-Bench's equal.py, aligned on question ids.)

    python evaluation/equal.py --file-path DIR --jsonfile1 BASELINE.jsonl --jsonfile2 METHOD.jsonl

As in Spec-Bench, jsonfile1 is the baseline and jsonfile2 the method, and the last line is
"Result totally Equal!" or "Not Equal!". Beyond Spec-Bench: questions are matched by id, not by
line; token ids are compared when both files carry them (text otherwise); every differing
question turn is named with where it first diverges, and each first divergence is called a
near-tie or a real difference from the baseline's logit margin there (evaluation/compare/near_ties.py);
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
from typing import Optional

from evaluation.compare.equality import (COMPARE_AUTO, COMPARE_TEXT, COMPARE_TOKEN_IDS, EqualInputError,
                                         EqualityResult, TurnDifference, compare_answers, excerpt,
                                         first_divergence)
from evaluation.compare.near_ties import INHERITED, NEAR_TIE, REAL, UNKNOWN
from evaluation.compare.tables import format_table
from evaluation.record.answers import AnswerFileError, read_answer_file
from evaluation.record.subtasks import display_name
from leaderboard.store import StoreError, save_equality_result
from leaderboard.timeouts import add_db_timeout_option

EQUAL_LINE = "Result totally Equal!"  # Spec-Bench's wording, kept for scripts that grep it
NOT_EQUAL_LINE = "Not Equal!"
EXIT_EQUAL, EXIT_NOT_EQUAL, EXIT_ERROR = 0, 1, 2


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
            if d.unit == "token":  # the ids say where; the text says what
                lines += text_excerpt_lines(result, d)
        counts = result.verdict_counts()
        lines.append(f"First divergences: {counts[NEAR_TIE]} near-tie(s) (numerically fragile), "
                     f"{counts[REAL]} real difference(s), {counts[UNKNOWN]} unknown, "
                     f"{counts[INHERITED]} inherited (a later turn of a question that had already "
                     f"diverged)"
                     + (f"; near-tie = baseline margin below {result.near_tie_threshold:.3g} "
                        f"for {result.dtype}" if result.near_tie_threshold is not None else ""))
    lines.append("")
    lines.append(EQUAL_LINE if result.all_equal else NOT_EQUAL_LINE)
    return "\n".join(lines)


def text_excerpt_lines(result: EqualityResult, d: TurnDifference) -> list[str]:
    """The two answers' text around their first differing character, for a difference found on
    token ids (empty where a side has no such turn or the texts read the same)."""
    texts = []
    for answer_file in (result.base_file, result.method_file):
        turns = answer_file.answers[d.question_id].turns
        texts.append(turns[d.turn] if d.turn < len(turns) else None)
    if None in texts:
        return []
    index = first_divergence(texts[1], texts[0])
    if index is None:
        return ["    text:     the two answers read the same (the tokens differ, the text does not)"]
    return [f"    baseline text: {json.dumps(excerpt(texts[0], index, 'char'), ensure_ascii=False)}",
            f"    method text:   {json.dumps(excerpt(texts[1], index, 'char'), ensure_ascii=False)}"]


def margin_note(d: TurnDifference, result: EqualityResult) -> str:
    """One line on the baseline's margin at a divergence and what it means."""
    if d.margin_verdict == INHERITED:
        return ("inherited: an earlier turn of this question diverged, so this turn's prompt "
                "already differs from the baseline's and its margins cannot judge it")
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
    add_db_timeout_option(parser)
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
            url = save_equality_result(args.db, result, timeout=args.db_timeout)
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
