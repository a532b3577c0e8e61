"""The verification cost curve of a run's device: what a target forward over k tokens costs
against a 1-token forward, measured before the run's first question on its own target, backend,
dtype and device.

Why: a method's speedup is its accepted length divided by what its steps cost, and that cost
depends on the machine. On one CPU here 4 tokens cost about 1.05x a 1-token forward and 16 about
2.2x; on a large GPU 128 tokens cost little more than one. The same method therefore ranks
differently on two machines, and the curve, stored with every answer line, says why
(evaluation/compare/cost_model.py predicts each method's speedup from it).

How: one prefilled context of CONTEXT_TOKENS tokens; for each size k a forward over the root and a
chain of k - 1 tokens, exactly as the engine verifies a draft (Target.verify, then compact keeping
the root, as a step that accepts nothing does); every size is timed ``repeats`` times in
alternating order after one untimed pass, and the median kept. The context grows by one token per
forward, a few dozen in all, too few to change the cost.
"""

from __future__ import annotations

import statistics
import time
from typing import Iterable, Optional

import torch

from methods.core.tree import DraftTree

CONTEXT_TOKENS = 128  # the context the measured forwards attend to (a typical prompt's length)
DEFAULT_REPEATS = 3  # timed passes per size (median kept), after one untimed warm-up pass
# The curve of a run whose drafters all have a bound reaches the largest forward one of them can
# make; a drafter without a bound (SpS's heuristic schedule) extends it to this many tokens.
UNBOUNDED_FORWARD_TOKENS = 16
# Sizes measured up to the largest: dense where the curve bends on a CPU, sparse beyond.
_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256)


def largest_forward(drafters: Iterable) -> int:
    """The most tokens one verification forward of any of these drafters carries (root included)."""
    largest = 1
    for drafter in drafters:
        nodes = drafter.max_draft_tokens()
        largest = max(largest, (UNBOUNDED_FORWARD_TOKENS - 1 if nodes is None else nodes) + 1)
    return largest


def curve_sizes(largest: int) -> list[int]:
    """1, 2, ... up to and including ``largest`` (at least 1 and 2, so a curve has a slope)."""
    largest = max(2, largest)
    return [k for k in _GRID if k < largest] + [largest]


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.inference_mode()
def measure_verify_cost(target, vocab_size: int, sizes: list[int], repeats: int = DEFAULT_REPEATS,
                        context_tokens: int = CONTEXT_TOKENS) -> dict:
    """Time a verification forward over each size; the record stored with the run's answers."""
    if repeats < 1:
        raise ValueError("the cost curve needs at least one timed pass per size")
    if sizes[0] != 1:
        raise ValueError("the cost curve is relative to a 1-token forward: sizes must start at 1")
    started = time.perf_counter()
    device = target.device
    # Ordinary token ids spread over the vocabulary (the cost does not depend on which).
    forwards = (repeats + 1) * len(sizes)  # each leaves one token (its root) in the cache
    ids = [(7919 * i + 13) % vocab_size for i in range(context_tokens + forwards + max(sizes))]
    cache = target.new_cache()
    target.prefill(cache, ids[:context_tokens - 1])
    past_len = context_tokens - 1
    seconds: dict[int, list[float]] = {k: [] for k in sizes}
    for rep in range(repeats + 1):
        order = sizes if rep % 2 == 0 else sizes[::-1]  # no size always runs first or last
        for k in order:
            root = ids[past_len]
            tree = DraftTree.chain(ids[past_len + 1: past_len + k])
            t0 = _now(device)
            target.verify(cache, past_len, root, tree)
            t1 = _now(device)
            target.compact(cache, past_len, k, [])
            past_len += 1
            if rep > 0:  # the first pass warms every shape up and is not kept
                seconds[k].append(t1 - t0)
    medians = [statistics.median(seconds[k]) for k in sizes]
    return {
        "tokens": list(sizes),
        "seconds": medians,
        "relative": [s / medians[0] for s in medians],
        "context_tokens": context_tokens,
        "repeats": repeats,
        "measured_in_s": time.perf_counter() - started,
    }


def measure_for_run(engine, drafters: Iterable, repeats: int) -> Optional[dict]:
    """The curve for a run's target and methods, or None when asked not to measure (repeats 0)."""
    if repeats <= 0:
        return None
    sizes = curve_sizes(largest_forward(drafters))
    context = CONTEXT_TOKENS
    if engine.context_limit is not None:  # a short-context model: what fits besides the forwards
        context = min(context, engine.context_limit - (repeats + 1) * len(sizes) - max(sizes))
        if context < 2:
            return None
    return measure_verify_cost(engine.target, engine.vocab_size, sizes, repeats, context)
