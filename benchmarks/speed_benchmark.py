"""Interleaved speed benchmark of the baseline and methods against transformers' own generate.

    python benchmarks/speed_benchmark.py --questions data/spec_bench/question.jsonl \
        --methods vanilla,hf,pld,hf_pld --per-group 3 --max-new-tokens 128

Prompts: the first ``--per-group`` questions of each Spec-Bench group (mt_bench first turns,
translation, summarization, qa, math_reasoning, rag), or with ``--per-subtask N`` the first N
questions of every subtask of the file, the selection of the runner's ``--per-subtask`` (for the
bundled set, Spec-Bench's six and our law_analytics and grammar_correction). For every prompt,
every method runs once, in an order rotated per prompt, so that machine noise hits all of them
alike; greedy throughout.
Reported: tokens/s (total tokens / total time), speedup against our baseline with a 95% bootstrap
interval over prompts (paired), mean accepted tokens, exact equality with our baseline's tokens,
and the process's peak resident memory.

Pseudo-methods: ``hf`` = transformers' ``generate`` (greedy), ``hf_pld`` = its prompt lookup
(``prompt_lookup_num_tokens``). Everything else is a method name of methods/registry.py run
through our engine with its default options for the device.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm
import torch

from methods.core.conversation import new_conversation
from evaluation.record.questions import first_per_subtask, load_questions
from evaluation.record.subtasks import subtask_of
from methods.core.drafter import DecodingConfig
from methods.core.backends import CHOICES as BACKEND_CHOICES, resolve_backend
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import EMBEDDED, load_model
from methods.registry import drafter_class

GROUPS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")


# Printed when the run has both sides; pairs given on the command line must name two methods of the run.
DEFAULT_PAIRS = "vanilla/hf,pld/hf_pld"


def split_pair(pair: str, methods: list[str]) -> tuple[str, str]:
    """``A/B`` into A and B, at the slash whose two sides are both methods of the run: a method
    with options may hold a path (``eagle:--eagle-path=results/new``), and so slashes. A side may
    also be a method's position in ``methods`` counted from 1 (``5/2``), which spares repeating a
    long method with options."""
    def named(side: str) -> str:
        return methods[int(side) - 1] if side.isdigit() and 1 <= int(side) <= len(methods) else side

    cuts = [i for i, c in enumerate(pair) if c == "/"]
    for i in cuts:
        a, b = named(pair[:i]), named(pair[i + 1:])
        if a in methods and b in methods:
            return a, b
    return (named(pair[:cuts[0]]), named(pair[cuts[0] + 1:])) if cuts else (pair, "")


def pairs_outside(pairs: str, methods: list[str]) -> list[str]:
    """The pairs of ``pairs`` (comma-separated ``A/B``) whose two sides are not both in ``methods``."""
    return [pair for pair in filter(None, pairs.split(","))
            if not all(side in methods for side in split_pair(pair, methods))]


def pick_prompts(path: str, per_group: int, per_subtask: int | None = None) -> list[tuple[str, str]]:
    """(subtask, first turn) of the prompts to time: ``per_subtask`` questions of every subtask of
    the file when given (the runner's selection), else ``per_group`` of each Spec-Bench group."""
    if per_subtask is not None:
        return [(q.subtask, q.turns[0]) for q in first_per_subtask(load_questions(path), per_subtask)]
    chosen: dict[str, list] = defaultdict(list)
    for q in load_questions(path):
        group = subtask_of(q.category)
        if group in GROUPS and len(chosen[group]) < per_group:
            chosen[group].append((group, q.turns[0]))
    return [item for g in GROUPS for item in chosen[g]]


def make_drafter(spec: str, drafter_path: str | None, model, tokenizer):
    """A drafter from NAME or NAME:--option=value:--flag, read by the runner's own parser so that
    option names, types and checks are the runner's; unset options take the device defaults.
    ``drafter_path`` None leaves SpS's draft model to the runner's default (for the embedded model,
    the shipped trained draft), so that ``sps`` here is the ``sps`` of eval.sh."""
    from evaluation.inference import build_parser as runner_parser

    name, *options = spec.split(":")
    given = [] if drafter_path is None else ["--drafter-path", drafter_path]
    args = runner_parser().parse_args(["--method", name, *given, *options])
    return drafter_class(name).from_args(args, model, tokenizer)


def bootstrap_ratio(ours_tokens, ours_time, base_tokens, base_time, rounds=2000, seed=0):
    rng = np.random.default_rng(seed)
    n = len(ours_tokens)
    idx = rng.integers(0, n, size=(rounds, n))
    ours = ours_tokens[idx].sum(1) / ours_time[idx].sum(1)
    base = base_tokens[idx].sum(1) / base_time[idx].sum(1)
    return np.percentile(ours / base, [2.5, 97.5])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", required=True, help="Spec-Bench question.jsonl")
    parser.add_argument("--methods", default="vanilla,hf,pld,hf_pld",
                        help="comma-separated, first = baseline. A method may carry runner options "
                             "as NAME:--option=value:--flag (e.g. pld:--pld-min-ngram=1), to "
                             "compare a configuration with the defaults")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS,
                        help="extra paired comparisons A/B (A's tokens/s over B's, with a 95%% "
                             "bootstrap interval), printed when both are in --methods: each side as written "
                             "there (options and paths included) or its position there counted from 1 "
                             "(e.g. 5/2); a pair you give must name two of them, checked before "
                             "anything runs [vanilla/hf,pld/hf_pld: printed when the run has them]")
    parser.add_argument("--model-path", default=EMBEDDED)
    parser.add_argument("--per-group", type=int, default=3,
                        help="questions of each Spec-Bench group (mt_bench first turns, translation, summarization, "
                             "qa, math_reasoning, rag) [3]")
    parser.add_argument("--per-subtask", type=int, default=None,
                        help="instead of --per-group: the first N questions of every subtask of the file, as the "
                             "runner's --per-subtask picks them (the bundled set's eight subtasks)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--drafter-path", default=None,
                        help="SpS draft model of every sps in --methods (default: the runner's, i.e. the shipped "
                             "trained draft for the embedded model; self:N = the target's first N layers)")
    parser.add_argument("--json", default=None, help="write per-prompt results here")
    parser.add_argument("--backend", default="auto", choices=list(BACKEND_CHOICES),
                        help="target forwards of our engine (hf, lean; auto = lean on the CPU) [auto]")
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    for name in ("per_group", "per_subtask"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.pairs != DEFAULT_PAIRS:
        bad = pairs_outside(args.pairs, args.methods.split(","))
        if bad:
            parser.error(f"--pairs: {', '.join(bad)} not two of --methods (each side as written there, or its "
                         f"position counted from 1)")
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(args.model_path, dtype="auto", device="auto")
    model, tokenizer = loaded.model, loaded.tokenizer
    engine = SpeculativeEngine(model, tokenizer, backend=resolve_backend(args.backend, model))
    conv = new_conversation(tokenizer, model)
    config = DecodingConfig(max_new_tokens=args.max_new_tokens, stop_token_ids=conv.stop_token_ids,
                            stop_strings=conv.stop_strings)
    stop_ids = sorted(conv.stop_token_ids)
    methods = args.methods.split(",")
    drafters = {m: make_drafter(m, args.drafter_path, model, tokenizer)
                for m in methods if m not in ("hf", "hf_pld")}

    def run(method: str, prompt: list[int]) -> tuple[list[int], float, list[int]]:
        if method in ("hf", "hf_pld"):
            ids = torch.tensor([prompt], device=loaded.device)
            extra = {"prompt_lookup_num_tokens": 10} if method == "hf_pld" else {}
            start = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                     do_sample=False, eos_token_id=stop_ids, pad_token_id=stop_ids[0], **extra)
            if loaded.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            return out[0, len(prompt):].tolist(), elapsed, []
        tokens, stats = engine.generate(prompt, drafters[method], config)
        return tokens, stats.wall_time, stats.accept_lengths

    prompts = [(g, conv_prompt) for g, conv_prompt in pick_prompts(args.questions, args.per_group, args.per_subtask)]
    encoded = [(g, new_conversation(tokenizer, model).prompt_ids(text)) for g, text in prompts]
    print(f"{len(encoded)} prompts, {args.max_new_tokens} new tokens, methods {methods}, "
          f"device {loaded.device}, threads {torch.get_num_threads()}, backend {engine.backend}", flush=True)
    warm = new_conversation(tokenizer, model).prompt_ids("Write two sentences about the sea.")
    for m in methods:
        run(m, warm)

    results = {m: {"tokens": [], "time": [], "accept": [], "equal": 0, "ids": []} for m in methods}
    for i, (group, prompt) in enumerate(tqdm(encoded, desc="prompts", unit="prompt", file=sys.stderr)):
        order = methods[i % len(methods):] + methods[: i % len(methods)]
        outputs = {}
        for m in order:
            ids, elapsed, accept = run(m, prompt)
            outputs[m] = ids
            results[m]["tokens"].append(len(ids))
            results[m]["time"].append(elapsed)
            results[m]["accept"].extend(accept)
        base_ids = outputs[methods[0]]
        for m in methods:
            results[m]["equal"] += int(outputs[m] == base_ids)
        line = " ".join(f"{m}={results[m]['tokens'][-1] / results[m]['time'][-1]:.1f}" for m in methods)
        tqdm.write(f"[{i + 1:2d}/{len(encoded)}] {group:15s} tok/s {line}")

    def paired_ratio(a: str, b: str) -> tuple[float, float, float]:
        """a's tokens/s over b's on the same prompts, with a 95% bootstrap interval."""
        ta, sa = np.array(results[a]["tokens"], float), np.array(results[a]["time"], float)
        tb, sb = np.array(results[b]["tokens"], float), np.array(results[b]["time"], float)
        low, high = bootstrap_ratio(ta, sa, tb, sb)
        return (ta.sum() / sa.sum()) / (tb.sum() / sb.sum()), low, high

    print(f"\n{'method':10s} {'tok/s':>7s} {'vs ' + methods[0]:>10s} {'95% CI':>15s} {'MAT':>5s} {'equal':>7s}")
    summary = {}
    for m in methods:
        tokens_per_s = sum(results[m]["tokens"]) / sum(results[m]["time"])
        ratio, low, high = paired_ratio(m, methods[0])
        mat = float(np.mean(results[m]["accept"])) if results[m]["accept"] else float("nan")
        prompts = len(results[m]["tokens"])
        summary[m] = {"tokens_per_s": tokens_per_s, "ratio": ratio, "ci": [low, high], "mat": mat,
                      "equal": results[m]["equal"], "prompts": prompts}
        print(f"{m:10s} {tokens_per_s:7.2f} {ratio:9.3f}x [{low:5.3f}, {high:5.3f}] {mat:5.2f} "
              f"{results[m]['equal']:3d}/{prompts}")
    for pair in filter(None, args.pairs.split(",")):
        a, b = split_pair(pair, methods)
        if a in results and b in results:
            ratio, low, high = paired_ratio(a, b)
            summary[f"{a} vs {b}"] = {"ratio": ratio, "ci": [low, high]}
            print(f"{a} vs {b}: {ratio:.3f}x [{low:.3f}, {high:.3f}]")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak_mib:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "peak_rss_mib": peak_mib,
                                               "per_prompt": {m: {k: results[m][k] for k in ("tokens", "time")}
                                                              for m in methods}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
