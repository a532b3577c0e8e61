"""What one target forward costs per backend, against the memory floor, and what that makes of
greedy decoding.

    python benchmarks/forward_cost.py                       # the embedded model, float32
    python benchmarks/forward_cost.py --kernel-rows         # where the native kernel stops paying

1. The floor: the model's weight bytes over the read bandwidth measured here (a sum over a
   buffer larger than the caches). A forward cannot read its weights faster than that.
2. The cost curve: a verification forward over k tokens (root + a chain of k-1) after a
   --context-token prefix, for each k and backend, interleaved, median of --reps. The cache is
   reset after each forward, so every one sees the same context.
3. Decoding: tokens/s of our baseline (vanilla drafter) under each backend and of transformers'
   generate (greedy, its own cache), interleaved, --rounds rounds of --new-tokens tokens.

With --kernel-rows it measures instead, over 1-256 rows, the lean backend's native layer
(lean_ops.c with the kernel), the native kernel with torch's element-wise ops, and torch alone:
where the native path stops paying (the SKINNY_MAX_ROWS threshold).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm import tqdm

from methods.core.backends import BACKENDS, make_target
from methods.core.backends.lean import SKINNY_MAX_ROWS, LeanTarget
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import EMBEDDED, load_model
from methods.core.tree import DraftTree
from methods.drafters.vanilla import VanillaDrafter

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def read_bandwidth(megabytes: int = 512, reps: int = 7) -> float:
    """Bytes per second that one pass reading a large float32 buffer achieves (median)."""
    buffer = torch.ones(megabytes * 2**20 // 4)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        buffer.sum()
        times.append(time.perf_counter() - start)
    return buffer.numel() * 4 / statistics.median(times)


def weight_bytes(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:  # tied embeddings / lm_head count once
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def forward_ms(target, cache, past: int, tokens: list[int]) -> float:
    tree = DraftTree.chain(tokens[1:])
    start = time.perf_counter()
    target.verify(cache, past, tokens[0], tree)
    elapsed = time.perf_counter() - start
    if hasattr(cache, "length"):
        cache.length = past
    else:
        cache.crop(-len(tokens))
    return elapsed * 1e3


def prefilled(target, ids: list[int]):
    cache = target.new_cache()
    target.prefill(cache, ids)
    return cache


def cost_curve(targets: dict, ids: list[int], context: int, ks: list[int], reps: int) -> dict:
    caches = {name: prefilled(t, ids[:context]) for name, t in targets.items()}
    times = {(name, k): [] for name in targets for k in ks}
    for name, t in targets.items():  # warm-up: first calls allocate and fault pages in
        for k in ks:
            forward_ms(t, caches[name], context, ids[context: context + k])
    with tqdm(total=reps * len(ks) * len(targets), desc="forwards", unit="fwd", file=sys.stderr) as bar:
        for _ in range(reps):
            for k in ks:
                for name, t in targets.items():
                    times[(name, k)].append(forward_ms(t, caches[name], context, ids[context: context + k]))
                    bar.update()
    return {key: statistics.median(v) for key, v in times.items()}


def decoding_rates(model, tokenizer, backends: list[str], new_tokens: int, rounds: int) -> dict:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    if isinstance(prompt, dict) or hasattr(prompt, "input_ids"):
        prompt = list(prompt["input_ids"])
    config = DecodingConfig(max_new_tokens=new_tokens)
    engines = {b: SpeculativeEngine(model, tokenizer, backend=b) for b in backends}
    ids = torch.tensor([prompt])
    outputs, rates = {}, {name: [] for name in [*backends, "transformers generate"]}

    def ours(name):
        start = time.perf_counter()
        out, stats = engines[name].generate(prompt, VanillaDrafter(), config)
        outputs[name] = out
        return len(out) / (time.perf_counter() - start)

    def theirs():
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
        outputs["transformers generate"] = out[0, len(prompt):].tolist()
        return (out.shape[1] - len(prompt)) / (time.perf_counter() - start)

    for name in backends:  # warm-up
        ours(name)
    theirs()
    for _ in tqdm(range(rounds), desc="decoding rounds", unit="round", file=sys.stderr):
        for name in backends:
            rates[name].append(ours(name))
        rates["transformers generate"].append(theirs())
    return {name: statistics.median(v) for name, v in rates.items()}, outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=EMBEDDED, help="target model [the embedded one]")
    parser.add_argument("--context", type=int, default=200, help="cached tokens before each forward [200]")
    parser.add_argument("--ks", default="1,2,3,4,8,16,32", help="tokens per forward [1,2,3,4,8,16,32]")
    parser.add_argument("--reps", type=int, default=15, help="timed forwards per (k, backend) [15]")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per decoding run [64]")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved decoding rounds [3]; 0 = skip")
    parser.add_argument("--threads", type=int, default=0, help="torch threads [0 = torch's default]")
    parser.add_argument("--kernel-rows", action="store_true",
                        help="instead: the lean backend's native layer, the native kernel with torch's "
                             "element-wise ops, and torch alone, at 1-256 rows (where SKINNY_MAX_ROWS should lie)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    loaded = load_model(args.model_path, dtype="float32", device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.context + max(ks + [128]),), generator=gen).tolist()
    print(f"{loaded.source}: float32, {torch.get_num_threads()} threads", flush=True)

    if args.kernel_rows:
        native = LeanTarget(model)
        if not native.native_kernel:
            print("the native kernel is not available here; nothing to compare", file=sys.stderr)
            return 1
        native.skinny_max_rows = 10**9
        kernel_only = LeanTarget(model)
        kernel_only.skinny_max_rows, kernel_only.fused = 10**9, False
        plain = LeanTarget(model, native_kernel=False)
        rows = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
        variants = {"native layer": native, "kernel, torch ops": kernel_only, "torch": plain}
        curve = cost_curve(variants, ids, args.context, rows, args.reps)
        print(f"\nms per forward over k rows after {args.context} cached (median of {args.reps}); the lean "
              f"backend switches to torch above {SKINNY_MAX_ROWS} rows")
        print(f"{'rows':>5} " + " ".join(f"{name:>18}" for name in variants))
        for k in rows:
            print(f"{k:5d} " + " ".join(f"{curve[(name, k)]:18.1f}" for name in variants))
        return 0

    bandwidth = read_bandwidth()
    floor_ms = weight_bytes(model) / bandwidth * 1e3
    print(f"weights {weight_bytes(model) / 2**20:.0f} MiB, read bandwidth {bandwidth / 1e9:.1f} GB/s "
          f"-> floor {floor_ms:.1f} ms per forward", flush=True)
    targets = {name: make_target(name, model) for name in BACKENDS}
    if "lean" in targets and not targets["lean"].native_kernel:
        from methods.core.backends import native_kernels
        print(f"note: lean runs without the native kernel ({native_kernels.why_not()})", flush=True)
    curve = cost_curve(targets, ids, args.context, ks, args.reps)
    print(f"\nforward over k tokens after {args.context} cached (median of {args.reps}, ms; x = / 1-token)")
    print(f"{'k':>4} " + " ".join(f"{name:>16}" for name in targets))
    for k in ks:
        cells = [f"{curve[(n, k)]:7.1f} ({curve[(n, k)] / curve[(n, ks[0])]:4.2f}x)" for n in targets]
        print(f"{k:4d} " + " ".join(f"{c:>16}" for c in cells))
    print(f"floor {floor_ms:.1f} ms: " + ", ".join(f"{n} 1-token = {curve[(n, ks[0])] / floor_ms:.2f}x floor"
                                                 for n in targets))
    if args.rounds > 0:
        rates, outputs = decoding_rates(model, tokenizer, list(BACKENDS), args.new_tokens, args.rounds)
        print(f"\ngreedy decoding, {args.new_tokens} tokens, median of {args.rounds} interleaved rounds")
        reference = rates["transformers generate"]
        for name, rate in rates.items():
            same = "same tokens" if outputs[name] == outputs["transformers generate"] else "DIFFERENT tokens"
            print(f"  {name:22s} {rate:6.1f} tok/s  {rate / reference:4.2f}x generate  ({same})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
