"""Speedup of a method over the baseline, per subtask, from answer files: Spec-Bench's
speed.py command line, with its flaws fixed (see evaluation/compare/speedup.py for what and why, and
docs/evaluation.md for the definition of every figure).

    python evaluation/speed.py --file-path METHOD.jsonl --base-path BASELINE.jsonl [--db URL]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import glob
import json
import os
import warnings
from typing import Optional

from evaluation.record.answers import AnswerFileError, read_answer_file
from evaluation.compare.compatibility import CHECK_NAMES, parse_allowed
from evaluation.compare.spec_bench_speed import SpecBenchFigureUnavailable, spec_bench_figures
from evaluation.compare.speedup import (
    COUNT_AUTO,
    COUNT_RETOKENIZED,
    COUNTING_MODES,
    MAX_PLAUSIBLE_TOKENS_PER_S,
    SpeedInputError,
    SpeedReport,
    compare_speed,
)
from evaluation.compare.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from evaluation.record.subtasks import OVERALL, display_name
from evaluation.compare.tables import format_table, number
from leaderboard.store import StoreError, save_speed_report
from leaderboard.timeouts import add_db_timeout_option


# ---- output ---------------------------------------------------------------------------

def format_report(report: SpeedReport) -> str:
    if report.by_device_type:
        return format_mixed_report(report)
    lines = []
    for label, files in (("Method", report.method_files), ("Baseline", report.base_files)):
        for f in files:
            lines.append(f"{label + ':':10s}{f.path}  (model_id {f.model_id}, "
                         f"{f.run_field('method') or 'method not recorded'}, {f.source_format} format)")
    if len(report.pairs) > 1:
        lines.append(f"Runs: {len(report.pairs)} method/baseline pairs; figures are mean ± sample "
                     f"std across pairs, acceptance figures pool every method run")
    lines.append(f"Questions compared: {len(report.question_ids)}")
    for note in report.left_out:
        lines.append(f"  left out (--allow-partial): {note}")
    lines += settings_lines(report)
    lines.append(f"Token counting: {report.counting.reason}")
    if report.pairing is not None:
        lines.append(f"Pairing: {report.pairing.describe()}")
    lines.append("Speedup = (method total tokens / total time) / (baseline total tokens / total "
                 f"time); 95% CI: bootstrap over questions, {report.resamples} resamples, seed "
                 f"{report.seed}. Spec-Bench = its ratio of mean per-question tokens/s.")
    lines.append("")

    rows = []
    for s in report.subtasks:
        rows.append([
            s.display_name, str(s.num_questions),
            number(s.tokens_per_s, 2, s.tokens_per_s_std),
            number(s.base_tokens_per_s, 2, s.base_tokens_per_s_std),
            number(s.speedup, 3, s.speedup_std, "x"),
            f"[{s.speedup_ci_low:.3f}, {s.speedup_ci_high:.3f}]",
            number(s.speedup_spec_bench, 3, s.speedup_spec_bench_std, "x"),
            number(s.acceptance.mean_acceptance_length, 2),
        ])
    lines.append(format_table(
        ["Subtask", "Questions", "Method tok/s", "Base tok/s", "Speedup", "95% CI",
         "Spec-Bench speedup", "Mean accepted tokens"], rows))

    lines.append("")
    rows = []
    for s in report.subtasks:
        a = s.acceptance
        per_token_ms = milliseconds(a.time_per_proposal_token_s)
        rows.append([
            s.display_name, str(a.steps), number(a.mean_acceptance_length, 2),
            number(a.mean_acceptance_length_per_request, 2),
            number(a.draft_acceptance_rate, 3), number(a.system_efficiency, 3),
            number(per_token_ms, 3), number(milliseconds(a.draft_time_per_step_s), 3),
            number(milliseconds(a.verify_time_per_step_s), 3),
            number(a.verify_time_share, 3), number(a.draft_time_share, 3),
        ])
    lines.append(format_table(
        ["Subtask", "Steps", "AL pooled (vLLM)", "AL per request (SpecForge)",
         "Draft acceptance rate", "System efficiency", "ms / proposal token",
         "Draft ms / step", "Verify ms / step", "Verify time share", "Draft time share"], rows))

    overall = report.subtask(OVERALL).acceptance
    if overall.per_position_acceptance_rate:
        lines.append("")
        lines.append("Per-position acceptance rate, joint (overall; vLLM's): " + "  ".join(
            f"{k}: {rate:.3f}" for k, rate in enumerate(overall.per_position_acceptance_rate, 1)))
        lines.append("Per-position acceptance rate, conditional (overall): " + "  ".join(
            f"{k}: {number(rate, 3)}"
            for k, rate in enumerate(overall.per_position_conditional_acceptance_rate, 1)))
    if overall.acceptance_length_histogram:
        lines.append("Acceptance-length histogram (overall, steps): " + "  ".join(
            f"{k}: {n}" for k, n in overall.acceptance_length_histogram.items()))
    lines.append("")
    lines += prediction_lines(report)
    lines.append("")
    lines += spec_bench_lines(report)
    return "\n".join(lines)


def prediction_lines(report: SpeedReport) -> list[str]:
    """The device's cost curve and each subtask's predicted speedup beside the measured one."""
    curve = report.verify_cost
    if not curve:
        return ["Predicted speedup: not computed, the method run measured no verification cost "
                "curve (older runs, Spec-Bench's files, or --cost-curve-repeats 0)"]
    lines = ["Verification cost curve of this device (a k-token forward against a 1-token one, "
             f"{curve['context_tokens']} tokens of context): " + "  ".join(
                 f"{k}: {c:.2f}x" for k, c in zip(curve["tokens"], curve["relative"]))]
    rows = []
    for s in report.subtasks:
        p = s.prediction
        if p is None or p.predicted_speedup is None:
            rows.append([s.display_name, number(s.speedup, 3, suffix="x"), "-", "-",
                         p.unavailable if p is not None else "-"])
            continue
        rows.append([s.display_name, number(p.measured_speedup, 3, suffix="x"),
                     number(p.predicted_speedup, 3, suffix="x"), f"{p.gap:+.1%}",
                     "MORE THAN 10% OFF" if p.flagged else "within 10%"])
    lines.append("Predicted speedup = AL pooled / (cost of its forward + draft time / the baseline's "
                 "decode time per token) (docs/evaluation.md):")
    lines.append(format_table(["Subtask", "Measured", "Predicted", "Measured vs predicted",
                               "Check"], rows))
    return lines


def milliseconds(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else seconds * 1e3


def format_mixed_report(report: SpeedReport) -> str:
    """A run over several device types: one full report per type, never a pooled figure."""
    kinds = ", ".join(f"{kind} ({len(part.question_ids)} questions)"
                      for kind, part in report.by_device_type.items())
    lines = [f"These runs mix device types: {kinds}. Timings of different devices are not "
             f"comparable, so the speedup is given per device type (each method answer against "
             f"the baseline's from the same device), never pooled.", ""]
    for kind, part in report.by_device_type.items():
        lines += [f"=== Device type: {kind} ===", format_report(part), ""]
    return "\n".join(lines)


def settings_lines(report: SpeedReport) -> list[str]:
    """What the method/baseline settings check found: agreement, gaps, allowed mismatches."""
    found = report.compatibility
    differing = {m.setting for m in found.mismatches}
    agreed = [name for name in CHECK_NAMES if name not in differing and name not in found.unchecked]
    lines = [f"Settings that agree: {', '.join(agreed) or 'none could be checked'}"]
    if found.unchecked:
        lines.append(f"Settings not checked (not recorded in both files): "
                     f"{', '.join(found.unchecked)}")
    for mismatch in found.mismatches:
        lines.append(f"MISMATCH (--allow-mismatch {mismatch.setting}): {mismatch.describe()}")
    if found.mismatches:
        lines.append("  These runs are not comparable as measured: the figures below are stored "
                     "with the mismatch recorded, and the leaderboard never ranks them.")
    return lines


SPEC_BENCH_COUNTING = ("its counting: method tokens = new_tokens, baseline tokens = the "
                       "re-tokenised answer text minus one BOS per turn; tokens/s = the mean of "
                       "per-question tokens/s; every line of each file")


def add_spec_bench_figures(report: SpeedReport, tokenizer, tokenizer_problem: Optional[str]) -> None:
    """Attach what Spec-Bench's speed.py would print, or why it cannot be given."""
    if tokenizer is None:
        report.spec_bench_unavailable = tokenizer_problem or (
            "it re-tokenises the baseline's answer text, so it needs the target model's "
            "tokenizer: pass --tokenizer-path")
        return
    try:
        report.spec_bench_reported = spec_bench_figures(report.method_files, report.base_files,
                                                        report.pairs, tokenizer)
    except SpecBenchFigureUnavailable as exc:
        report.spec_bench_unavailable = str(exc)


def spec_bench_lines(report: SpeedReport) -> list[str]:
    if report.spec_bench_reported is None:
        return [f"Spec-Bench's speed.py would report: not computed, {report.spec_bench_unavailable}"]
    rows = [[display_name(t.task), str(t.method_lines), str(t.base_lines),
             number(t.tokens_per_s, 2, t.tokens_per_s_std),
             number(t.base_tokens_per_s, 2, t.base_tokens_per_s_std),
             number(t.speedup, 3, t.speedup_std, "x"), number(t.mean_accepted_tokens, 2)]
            for t in report.spec_bench_reported]
    return [f"Spec-Bench's speed.py would report ({SPEC_BENCH_COUNTING}):",
            format_table(["Task", "Method lines", "Baseline lines", "Tokens/s",
                          "Baseline tokens/s", "Speedup ratio", "#Mean accepted tokens"], rows)]


# ---- command line ---------------------------------------------------------------------

def expand_paths(patterns: list[str], option: str) -> list[Path]:
    """Each argument is a path or a glob; a glob must match something."""
    paths = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise SpeedInputError(f"{option} {pattern!r} matches no file")
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(pattern))
    return paths


def load_tokenizer(path: str):
    """A tokenizer for --count retokenized (transformers imported only then: it is slow)."""
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # missing folder, no network for a hub id, bad files
        raise SpeedInputError(f"cannot load the tokenizer from {path!r}: {exc}") from None


def allowed_setting(text: str) -> str:
    try:
        parse_allowed([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speed.py",
        description="Speedup of a speculative-decoding method over the baseline, per subtask "
                    "and overall, from answer files (ours or Spec-Bench's). Definitions of every "
                    "figure: docs/evaluation.md.")
    parser.add_argument("--file-path", action="extend", nargs="+", required=True, metavar="M",
                        help="method answer file(s); repeat the option or give a glob for several "
                             "runs (then mean ± std across runs is reported)")
    parser.add_argument("--base-path", action="extend", nargs="+", required=True, metavar="B",
                        help="baseline answer file(s); as many runs as the method (paired in "
                             "order) or one run for all")
    parser.add_argument("--count", choices=COUNTING_MODES, default=COUNT_AUTO,
                        help="how tokens are counted, the same way on both sides: auto (default) "
                             "= token_ids when every file has them, else new_tokens; "
                             "retokenized = re-tokenise the answer text with --tokenizer-path")
    parser.add_argument("--tokenizer-path", metavar="P",
                        help="the target model's tokenizer (folder or hub id): used by --count "
                             "retokenized, and to print the figures Spec-Bench's own speed.py "
                             "would report (it re-tokenises the baseline's text)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="compare only the questions answered (without error) in every file "
                             "instead of stopping when the question sets differ")
    parser.add_argument("--allow-mismatch", action="append", default=[], metavar="SETTING",
                        type=allowed_setting,
                        help="compare even though this setting differs between the method and "
                             "the baseline (repeat, or separate by commas); the comparison is "
                             "stored with the mismatch recorded and never ranked. Settings: "
                             f"{', '.join(CHECK_NAMES)} (see docs/evaluation.md)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES, metavar="N",
                        help=f"bootstrap resamples for the 95%% CI (default {BOOTSTRAP_RESAMPLES})")
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED,
                        help=f"bootstrap seed (default {BOOTSTRAP_SEED}), fixed so reruns agree")
    parser.add_argument("--max-tokens-per-s", type=float, default=MAX_PLAUSIBLE_TOKENS_PER_S,
                        metavar="R", help="a question faster than this is rejected as a broken "
                                          f"timing (default {MAX_PLAUSIBLE_TOKENS_PER_S:g})")
    parser.add_argument("--json", metavar="OUT", help="also write every figure as JSON to OUT")
    parser.add_argument("--db", metavar="URL",
                        help="results database: SQLAlchemy URL (e.g. postgresql://...) or SQLite "
                             "file path (default: $SDBENCH_DB, else results/leaderboard.db)")
    parser.add_argument("--no-db", action="store_true", help="do not write to the database")
    add_db_timeout_option(parser)
    parser.add_argument("--mean-report", action="store_true",
                        help="accepted for Spec-Bench's command line; several runs per side "
                             "already give the mean report")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            method_files = [read_answer_file(p) for p in expand_paths(args.file_path, "--file-path")]
            base_files = [read_answer_file(p) for p in expand_paths(args.base_path, "--base-path")]
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        tokenizer, tokenizer_problem = None, None
        if args.tokenizer_path:
            try:
                tokenizer = load_tokenizer(args.tokenizer_path)
            except SpeedInputError as exc:
                if args.count == COUNT_RETOKENIZED:
                    raise
                tokenizer_problem = str(exc)  # only Spec-Bench's own figure needed it
        report = compare_speed(method_files, base_files, counting=args.count, tokenizer=tokenizer,
                               allow_partial=args.allow_partial,
                               allow_mismatch=parse_allowed(args.allow_mismatch),
                               resamples=args.bootstrap,
                               seed=args.seed, max_tokens_per_s=args.max_tokens_per_s)
        for part in [report, *report.by_device_type.values()]:
            add_spec_bench_figures(part, tokenizer, tokenizer_problem)
        print(format_report(report))
        if args.json:
            write_json(args.json, report.as_dict())
        if not args.no_db:
            url = save_speed_report(args.db, report, timeout=args.db_timeout)
            print(f"\nStored in {url}")
    except (AnswerFileError, SpeedInputError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise SpeedInputError(f"cannot write {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
