"""Answer tokens per second of the two corpus generators, measured in one process.

    python benchmarks/corpus_throughput.py                     # embedded model, 2 threads
    python benchmarks/corpus_throughput.py --rows 32 64 96 --prompts 128

Both answer the same prompts of training/corpus_prompts.jsonl greedily with the same budget:
- ``hf``: training/make_corpus.py's way, transformers' generate on left-padded batches of
  ``--hf-batch`` (a batch runs until its longest answer ends);
- ``rows N``: training/batched_decoding.py, N sequences as rows of one lean forward, a finished
  row handed to the next prompt at once.
Rounds alternate between the generators (--rounds), so both see the same machine conditions;
each figure is answer tokens over wall time, prefills included, and the ratio to ``hf`` is what
the corpus issue's target is stated in. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from methods.core.backends.lean import LeanTarget
from methods.core.backends.lean_rows import PRODUCTS
from methods.core.model_loading import EMBEDDED, load_model
from training.batched_decoding import Job, decode_jobs
from training.make_corpus import DEFAULT_PROMPTS, answer_batch, chat_prompt_ids, eos_ids, read_prompts


def hf_tokens(model, tokenizer, prompts, budget, stop_ids, batch) -> int:
    tokens = 0
    for i in range(0, len(prompts), batch):
        answers = answer_batch(model, tokenizer, prompts[i: i + batch], budget, stop_ids)
        tokens += sum(len(ids) for ids, _ in answers)
    return tokens


def rows_tokens(target, prompts, budget, stop_ids, rows, products) -> int:
    done = []
    jobs = [Job(id=str(i), prompt_ids=p, max_new_tokens=budget) for i, p in enumerate(prompts)]
    decode_jobs(target, jobs, rows, stop_ids, lambda f: done.append(len(f.token_ids)), products=products)
    return sum(done)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", default=EMBEDDED, help="the target (default: the embedded model)")
    parser.add_argument("--prompts", type=int, default=96, help="prompts answered per round (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="answer budget (default: %(default)s)")
    parser.add_argument("--rows", type=int, nargs="+", default=[64], help="row counts to measure (default: 64)")
    parser.add_argument("--products", nargs="+", default=["exact"], choices=PRODUCTS,
                        help="how the row generator computes its weight products (see lean_rows.PRODUCTS); "
                             "each is measured (default: exact)")
    parser.add_argument("--hf-batch", type=int, default=32, help="make_corpus's batch size (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch and native threads (default: %(default)s)")
    args = parser.parse_args(argv)
    if min(args.prompts, args.max_new_tokens, args.hf_batch, args.rounds, args.threads, *args.rows) < 1:
        parser.error("every count must be positive")
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model_path, dtype="float32", device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = eos_ids(model, tokenizer)
    prompts = [chat_prompt_ids(tokenizer, p["prompt"]) for p in read_prompts(DEFAULT_PROMPTS)[: args.prompts]]
    prompts.sort(key=len)  # make_corpus sorts by length too
    target = LeanTarget(model)
    runners = {"hf": lambda: hf_tokens(model, tokenizer, prompts, args.max_new_tokens, stop_ids, args.hf_batch)}
    for products in args.products:
        for rows in args.rows:
            name = f"rows {rows}" + ("" if products == "exact" else f" {products}")
            runners[name] = lambda rows=rows, products=products: rows_tokens(
                target, prompts, args.max_new_tokens, stop_ids, rows, products)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            tokens = run()
            rate = tokens / (time.perf_counter() - start)
            rates[name].append(rate)
            print(f"round {round_ + 1} {name:>14}: {tokens} tokens, {rate:7.1f} tok/s", file=sys.stderr, flush=True)
    base = statistics.median(rates["hf"])
    print(f"{'generator':>14} {'tok/s':>8} {'x hf':>6}   ({len(prompts)} prompts, {args.max_new_tokens} new tokens, "
          f"{args.threads} threads, median of {args.rounds})")
    for name, values in rates.items():
        print(f"{name:>14} {statistics.median(values):8.1f} {statistics.median(values) / base:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
