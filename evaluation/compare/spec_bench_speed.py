"""The figures Spec-Bench's own evaluation/speed.py would print for the same answer files, so a
user can check our numbers against the ones published with Spec-Bench.

Its arithmetic, per task (mt_bench = the eight MT-bench categories, the other tasks = the
category of that name, overall = every line), each file filtered on its own (nothing pairs the
questions of the two files):
- method tokens of a line: the sum of its `new_tokens`; baseline tokens of a line: for each turn
  the length of the tokenizer's ids for the answer text (special tokens added, as a plain call
  adds them) minus one, summed over turns;
- tokens/s of a side: the mean over its lines of line tokens / line wall time;
- speedup: method tokens/s / baseline tokens/s; mean accepted tokens: the mean of every
  `accept_lengths` entry of the method's lines.
Several runs: each figure per method/baseline pair, then mean and sample std across pairs (its
mean report pools the accepted lengths of all method runs, as done here).

The asymmetric count and the ratio of means are why our own figures differ (speedup.py). Every
line of a file is used, failed ones included, as Spec-Bench uses them; a line whose wall time
is not positive makes its division fail, so no figure is given then.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np

from evaluation.record.answers import Answer, AnswerFile
from evaluation.compare.stats import mean_and_std
from evaluation.record.subtasks import MT_BENCH_CATEGORIES, OVERALL, SPEC_BENCH_SUBTASKS

SPEC_BENCH_TASKS: tuple[str, ...] = (*SPEC_BENCH_SUBTASKS, OVERALL)


class SpecBenchFigureUnavailable(ValueError):
    """Spec-Bench's speed.py would not print a number for these files; the message says why."""


@dataclass
class SpecBenchTask:
    task: str  # a name of SPEC_BENCH_TASKS
    method_lines: int
    base_lines: int
    tokens_per_s: float
    tokens_per_s_std: Optional[float]
    base_tokens_per_s: float
    base_tokens_per_s_std: Optional[float]
    speedup: float
    speedup_std: Optional[float]
    mean_accepted_tokens: Optional[float]

    def as_dict(self) -> dict:
        return asdict(self)


def _in_task(answer: Answer, task: str) -> bool:
    if task == OVERALL:
        return True
    if task == "mt_bench":
        return answer.category in MT_BENCH_CATEGORIES
    return answer.category == task


def _seconds(f: AnswerFile, answer: Answer) -> float:
    seconds = sum(answer.wall_time)
    if not math.isfinite(seconds) or seconds <= 0:
        raise SpecBenchFigureUnavailable(
            f"{f.path}: question {answer.question_id} has a total wall time of {seconds!r} s, "
            f"where Spec-Bench's speed.py divides by it")
    return seconds


def _retokenized(answer: Answer, tokenizer: Callable) -> int:
    return sum(len(tokenizer(text)["input_ids"]) - 1 for text in answer.turns)


def spec_bench_figures(method_files: list[AnswerFile], base_files: list[AnswerFile],
                       pairs: list[tuple[int, int]], tokenizer: Callable) -> list[SpecBenchTask]:
    """One entry per Spec-Bench task that has lines in both files, in its report order."""
    # Per-line throughputs are independent of the task, so each file is tokenised once.
    method_rates = [{qid: sum(a.new_tokens) / _seconds(f, a) for qid, a in f.answers.items()}
                    for f in method_files]
    base_rates = [{qid: _retokenized(a, tokenizer) / _seconds(f, a) for qid, a in f.answers.items()}
                  for f in base_files]
    used_method_files = sorted({i for i, _ in pairs})
    tasks = []
    for task in SPEC_BENCH_TASKS:
        def lines(f: AnswerFile) -> list[str]:
            return [qid for qid, a in f.answers.items() if _in_task(a, task)]

        if not lines(method_files[pairs[0][0]]) or not lines(base_files[pairs[0][1]]):
            continue
        rates, base, ratios = [], [], []
        for i, j in pairs:
            rate = float(np.mean([method_rates[i][q] for q in lines(method_files[i])]))
            base_rate = float(np.mean([base_rates[j][q] for q in lines(base_files[j])]))
            rates.append(rate)
            base.append(base_rate)
            ratios.append(rate / base_rate if base_rate else math.inf)
        accepted = [n for i in used_method_files for q in lines(method_files[i])
                    for n in method_files[i].answers[q].accept_lengths]
        (tps, tps_std), (base_tps, base_std), (speedup, speedup_std) = (
            mean_and_std(rates), mean_and_std(base), mean_and_std(ratios))
        tasks.append(SpecBenchTask(
            task=task, method_lines=len(lines(method_files[pairs[0][0]])),
            base_lines=len(lines(base_files[pairs[0][1]])),
            tokens_per_s=tps, tokens_per_s_std=tps_std,
            base_tokens_per_s=base_tps, base_tokens_per_s_std=base_std,
            speedup=speedup, speedup_std=speedup_std,
            mean_accepted_tokens=float(np.mean(accepted)) if accepted else None,
        ))
    return tasks
