"""Prompt lookup decoding (PLD): draft by copying what followed an earlier occurrence of the tail.

Each step looks for the last n tokens of the whole sequence (prompt, earlier turns and generated
text, root included) earlier in the sequence, longest n first and the earliest occurrence first,
and proposes the tokens that followed it as a chain. Spec-Bench's rule needs a full
``num_pred_tokens`` continuation; with ``allow_short`` a shorter one is proposed instead (as
transformers' prompt lookup does). No match means no draft: the step is a plain 1-token forward
(Spec-Bench verifies a dummy token instead, which only costs time).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from methods.core.drafter import Drafter, check_options, resolve_options
from methods.core.tree import DraftTree

# Defaults chosen per device: on a CPU a forward over 11 tokens costs ~2x a 1-token forward, so
# drafts that are mostly rejected lose time; on a GPU extra tokens are nearly free. A match on a
# single token is the weakest evidence and its drafts are mostly rejected, so on the CPU only
# matches of 2 or 3 tokens draft (measured in docs/methods.md: 1.17x -> 1.39x on development
# prompts, with 2.5 instead of 5.7 tokens per forward).
CPU_DEFAULTS = {"max_ngram": 3, "min_ngram": 2, "num_pred": 10}
GPU_DEFAULTS = {"max_ngram": 3, "min_ngram": 1, "num_pred": 10}
MINIMUM = {"max_ngram": 1, "min_ngram": 1, "num_pred": 1}


def find_continuation(seq: np.ndarray, max_ngram: int, num_pred: int, allow_short: bool,
                      min_ngram: int = 1) -> np.ndarray:
    length = len(seq)
    for n in range(min(max_ngram, length - 1), min_ngram - 1, -1):
        tail = seq[length - n:]
        # Candidate starts s < length - n (the tail itself is excluded) whose n-gram equals the tail.
        windows = sliding_window_view(seq[: length - 1], n)
        starts = np.flatnonzero((windows == tail).all(axis=1))
        starts = starts[starts + n < length]  # the continuation must exist
        if not allow_short:
            starts = starts[starts + n + num_pred <= length]
        if starts.size:
            begin = int(starts[0]) + n
            return seq[begin: begin + num_pred]
    return seq[:0]


class PromptLookupDrafter(Drafter):
    name = "pld"

    def __init__(self, max_ngram: int = 3, num_pred: int = 10, allow_short: bool = False,
                 min_ngram: int = 1) -> None:
        if max_ngram < 1 or num_pred < 1:
            raise ValueError(f"PLD needs --pld-max-ngram >= 1 and --pld-num-pred >= 1 "
                             f"(got {max_ngram} and {num_pred})")
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"PLD needs 1 <= --pld-min-ngram <= --pld-max-ngram "
                             f"(got --pld-min-ngram {min_ngram}, --pld-max-ngram {max_ngram})")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.num_pred = num_pred
        self.allow_short = allow_short

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        if max_depth < 1:
            return DraftTree.empty()
        seq = np.asarray(context, dtype=np.int64)
        draft = find_continuation(seq, self.max_ngram, self.num_pred, self.allow_short,
                                  self.min_ngram)
        return DraftTree.chain(draft[:max_depth].tolist())

    def max_draft_length(self) -> int:
        return self.num_pred

    def params(self) -> dict:
        return {"max_ngram": self.max_ngram, "min_ngram": self.min_ngram, "num_pred": self.num_pred,
                "allow_short": self.allow_short}

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--pld-max-ngram", type=int, default=None,
                           help=f"longest n-gram to look up (default: {CPU_DEFAULTS['max_ngram']} on CPU, "
                                f"{GPU_DEFAULTS['max_ngram']} on GPU)")
        group.add_argument("--pld-min-ngram", type=int, default=None,
                           help="shortest n-gram to look up; 1 (Spec-Bench) also drafts after a "
                                f"single-token match (default: {CPU_DEFAULTS['min_ngram']} on CPU, "
                                f"{GPU_DEFAULTS['min_ngram']} on GPU)")
        group.add_argument("--pld-num-pred", type=int, default=None,
                           help=f"draft tokens copied after a match (default: {CPU_DEFAULTS['num_pred']} on CPU, "
                                f"{GPU_DEFAULTS['num_pred']} on GPU)")
        group.add_argument("--pld-allow-short", action="store_true",
                           help="also propose continuations shorter than --pld-num-pred "
                                "(Spec-Bench requires a full one)")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "pld", MINIMUM)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "PromptLookupDrafter":
        options = resolve_options(args, "pld", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        return cls(**options, allow_short=bool(getattr(args, "pld_allow_short", False)))
