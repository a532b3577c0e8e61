"""One compact table of several methods against one baseline: what eval.sh prints at the end.

    python -m evaluation.summary --base-path vanilla.jsonl --file-path pld.jsonl sps.jsonl ...

One row per method: overall speedup with its 95% bootstrap interval, mean accepted tokens per
step, the speedup its acceptance and the device's verification cost curve predict (marked when the
measured one is more than 10% away; evaluation/compare/cost_model.py), and whether its answers
equal the baseline's (identical question turns / compared, and how many of the differences are
near-ties or inherited from an earlier diverged turn). The figures are speed.py's and equal.py's own
(the same functions, the same bootstrap seed), so they match the full reports and the
leaderboard; nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.record.answers import AnswerFile, AnswerFileError, read_answer_file
from evaluation.compare.equality import EqualInputError, EqualityResult, compare_answers
from evaluation.compare.near_ties import INHERITED, NEAR_TIE
from evaluation.compare.speedup import SpeedInputError, compare_speed
from evaluation.record.subtasks import OVERALL
from evaluation.compare.tables import format_table

HEADERS = ["Method", "Speedup [95% CI]", "Mean accepted tokens", "Predicted", "Lossless"]


def method_name(answer_file: AnswerFile) -> str:
    return answer_file.run_field("method") or answer_file.model_id


def lossless_cell(result: EqualityResult) -> str:
    """yes, or no with the count of identical turns and of near-ties among the differences."""
    if result.all_equal:
        return f"yes ({result.num_equal}/{result.num_compared} turns)"
    counts = result.verdict_counts()
    near_ties, inherited = counts[NEAR_TIE], counts[INHERITED]
    return (f"no ({result.num_equal}/{result.num_compared} turns equal"
            + (f", {near_ties} of {len(result.differences)} differences near-ties" if near_ties else "")
            + (f", {inherited} inherited" if inherited else "")
            + ")")


def predicted_cell(prediction) -> str:
    """The predicted speedup, with how far the measured one is when beyond 10%; "-" without one."""
    if prediction is None or prediction.predicted_speedup is None:
        return "-"
    text = f"{prediction.predicted_speedup:.2f}x"
    return f"{text} (measured {prediction.gap:+.0%})" if prediction.flagged else text


def summary_row(method_file: AnswerFile, base_file: AnswerFile) -> list[str]:
    name = method_name(method_file)
    try:
        overall = compare_speed([method_file], [base_file]).subtask(OVERALL)
        speed = (f"{overall.speedup:.2f}x [{overall.speedup_ci_low:.2f}, "
                 f"{overall.speedup_ci_high:.2f}]")
        accepted = overall.acceptance.mean_acceptance_length
        accepted_text = "-" if accepted is None else f"{accepted:.2f}"
        predicted = predicted_cell(overall.prediction)
    except SpeedInputError as exc:
        speed, accepted_text, predicted = f"error: {str(exc).splitlines()[0]}", "-", "-"
    try:
        lossless = lossless_cell(compare_answers(method_file, base_file))
    except EqualInputError as exc:
        lossless = f"error: {str(exc).splitlines()[0]}"
    return [name, speed, accepted_text, predicted, lossless]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.summary",
        description="One row per method against the baseline: speedup [95% CI], mean accepted "
                    "tokens, the speedup the device's cost curve predicts, lossless. The full reports are speed.py's and equal.py's.")
    parser.add_argument("--base-path", required=True, metavar="B", help="baseline answer file")
    parser.add_argument("--file-path", nargs="+", required=True, metavar="M",
                        help="method answer files, one per method")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # speed.py and equal.py already printed them
            base_file = read_answer_file(args.base_path)
            rows = [summary_row(read_answer_file(path), base_file) for path in args.file_path]
    except AnswerFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"All methods against {method_name(base_file)} ({len(base_file.answers)} questions):")
    print(format_table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
