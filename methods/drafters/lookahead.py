"""Lookahead decoding (Fu et al., 2024): Jacobi iteration makes n-grams, an n-gram pool verifies them.

Everything happens in ONE target forward per step, laid out as one tree under the root:

- the lookahead window (auxiliary nodes, never accepted): N-1 levels of recent Jacobi iterates.
  Level 0 (the trunk, W-1 tokens) is a chain under the root; the token of level 1 in column c
  hangs under trunk token c-1 (under the root for c = 0); the token of level l >= 2 in column c
  hangs under level l-1's token in column c. Every position id is prefix + depth, so column c of
  level l sits at offset l + c: this is exactly the layout of Spec-Bench's lookahead mask.
- the verification branch (candidates): the n-grams the pool holds for the root token, each a
  chain of N-1 guessed tokens under the root, merged into a trie.

From the logits of the newest level the drafter reads the next Jacobi iterate (argmax), files
every column's trajectory as a new n-gram in the pool (key = the token before the column), and
shifts the window up one level. The pool is an LRU per key with at most G n-grams.

Window filling: a turn starts with only level 0 (W + N - 3 tokens drawn from the prompt with a
fixed seed). Each of the first N - 2 steps drops the first column of every level and adds the new
iterate as the next level; only then do complete N-grams exist and the pool starts to fill.

Re-anchoring when a step accepts several tokens: the window always moves one column forward,
whatever the step committed (Spec-Bench's and upstream's default ALWAYS_FWD_ONE). Moving it by the
accepted length instead would throw away accepted-length - 1 columns of every level and leave the
right edge without iterates (they would have to be refilled with random tokens and need N - 2
steps to become useful again). The window is a generator of plausible n-grams, and the pool is
keyed by token, not by position, so a window lagging a few positions behind the text still feeds
it useful n-grams; a fresh window would not.

Differences from Spec-Bench, on purpose:
- a fully matched guess also commits the target's bonus token (Spec-Bench drops it and commits at
  most N-1 tokens per step), so the mean accepted length is a little higher;
- guesses sharing a prefix are merged into a trie (same acceptance, fewer tokens per forward);
- T > 0 is supported through the engine's lossless acceptance (the window stays greedy);
- options (off by default, as in Spec-Bench): seed the pool from the prompt's n-grams and keep
  feeding it the committed text (upstream's POOL_FROM_PROMPT), and keep the pool across turns.
"""

from __future__ import annotations

import argparse
import random
from collections import OrderedDict
from typing import Any, Optional

import torch

from methods.core.drafter import DraftSession, Drafter, StepResult, check_options, resolve_options
from methods.core.tree import DraftTree

# Spec-Bench runs N=5, W=7, G=7 (28 window tokens + up to 28 guess tokens per forward). On a
# 2-core CPU every token of a forward costs time, so the CPU default is the smallest window and
# one guess (re-measured on the lean backend's cost curve, see docs/methods.md: 1.09x against
# 0.99x for W=2, G=2 and less for anything larger).
GPU_DEFAULTS = {"level": 5, "window": 7, "guess": 7, "pool_from_prompt": False}
CPU_DEFAULTS = {"level": 3, "window": 1, "guess": 1, "pool_from_prompt": True}
# level 3 is the shortest n-gram worth a pool; guess 0 is allowed: the window runs, nothing is verified.
MINIMUM = {"level": 3, "window": 1, "guess": 0}
WINDOW_SEED = 10  # Spec-Bench re-seeds Python's RNG with 10 at every generate call


class NgramPool:
    """key token -> its most recent (N-1)-grams, oldest first; at most ``cap`` per key (0: no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.table: dict[int, OrderedDict[tuple[int, ...], None]] = {}

    def insert(self, key: int, gram: tuple[int, ...]) -> None:
        grams = self.table.setdefault(key, OrderedDict())
        if gram in grams:
            grams.move_to_end(gram)  # seen again: now the most recent
            return
        grams[gram] = None
        if self.cap > 0 and len(grams) > self.cap:
            grams.popitem(last=False)  # forget the least recently seen

    def guesses(self, key: int) -> list[tuple[int, ...]]:
        """The key's n-grams, most recent first."""
        grams = self.table.get(key)
        return list(reversed(grams)) if grams else []

    def clear(self) -> None:
        self.table.clear()

    def __len__(self) -> int:
        return sum(len(g) for g in self.table.values())


class LookaheadDrafter(Drafter):
    name = "lookahead"

    def __init__(self, level: int = 5, window: int = 7, guess: int = 7, pool_from_prompt: bool = False,
                 keep_pool: bool = False, seed: int = WINDOW_SEED) -> None:
        if level < 3:
            raise ValueError("lookahead needs --lookahead-level >= 3 (an n-gram of at least 3 tokens)")
        if window < 1 or guess < 0:
            raise ValueError("lookahead needs --lookahead-window >= 1 and --lookahead-guess >= 0")
        self.level, self.window, self.guess = level, window, guess
        self.pool_from_prompt = pool_from_prompt
        self.keep_pool = keep_pool
        self.seed = seed
        self.pool = NgramPool(cap=guess)
        self.levels: list[list[int]] = []
        self._tree: Optional[DraftTree] = None
        self._level_nodes: list[list[int]] = []  # node index of every window token, per level

    # ------------------------------------------------------------------ per turn
    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        if not self.keep_pool:
            self.pool.clear()
        rng = random.Random(self.seed)
        self.levels = [[rng.choice(prompt_ids) for _ in range(self.window + self.level - 3)]]
        if self.pool_from_prompt:
            for start in range(len(prompt_ids) - self.level + 1):
                self._insert_ngram(prompt_ids[start: start + self.level])

    def _insert_ngram(self, ngram: list[int]) -> None:
        self.pool.insert(ngram[0], tuple(ngram[1:]))

    @property
    def filling(self) -> bool:
        return len(self.levels) < self.level - 1

    # ------------------------------------------------------------------ drafting
    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        root = context[-1]
        guesses = [g[:max_depth] for g in self.pool.guesses(root)[: self.guess]] if max_depth > 0 else []
        candidates = DraftTree.from_paths(guesses)
        tokens = candidates.tokens.tolist()
        parents = candidates.parents.tolist()
        self._level_nodes = []
        # The window's deepest token sits at offset W+N-3; near the end of a turn (max_depth
        # smaller than that) the step runs without it and the window waits.
        if self._window_depth() <= max_depth:
            for l, row in enumerate(self.levels):
                nodes = []
                trunk = nodes if l == 0 else self._level_nodes[0]
                for c, token in enumerate(row):
                    if l <= 1:  # the trunk is a chain; level 1's column c hangs under trunk c-1
                        parent = -1 if c == 0 else trunk[c - 1]
                    else:  # deeper levels continue their column's trajectory
                        parent = self._level_nodes[l - 1][c]
                    nodes.append(len(tokens))
                    tokens.append(token)
                    parents.append(parent)
                self._level_nodes.append(nodes)
        is_candidate = [True] * len(candidates) + [False] * (len(tokens) - len(candidates))
        self._tree = DraftTree(torch.tensor(tokens, dtype=torch.long), torch.tensor(parents, dtype=torch.long),
                               is_candidate=torch.tensor(is_candidate, dtype=torch.bool))
        return self._tree

    def _window_depth(self) -> int:
        depth = len(self.levels[0])
        for l, row in enumerate(self.levels[1:], start=1):
            depth = max(depth, l + len(row) - 1)
        return depth

    # ------------------------------------------------------------------ learning from the step
    def accept(self, step: StepResult) -> None:
        if self.pool_from_prompt:
            # Feed every n-gram that ends in a newly committed token (upstream's POOL_FROM_PROMPT).
            context = step.context
            for end in range(len(context) - len(step.committed), len(context)):
                if end + 1 >= self.level:
                    self._insert_ngram(context[end + 1 - self.level: end + 1])
        if step.tree is not self._tree or not self._level_nodes:
            return  # the window was not run this step (end of turn, or the engine cut the tree)
        newest = self._level_nodes[-1]
        rows = torch.tensor(newest, dtype=torch.long) + 1  # logits rows: [root, node 0, ...]
        new = step.logits[rows].argmax(dim=-1).tolist()  # next Jacobi iterate of the newest level
        root = step.context[len(step.context) - len(step.committed) - 1]  # this step's root
        levels = self.levels
        if self.filling:
            if len(levels) == 1:
                # Trunk outputs predict one position further than the trunk: they form level 1.
                self.levels = [levels[0][1:], new]
            else:
                self.levels = [row[1:] for row in levels] + [new[1:]]
            return
        # Steady state: column c's trajectory is an n-gram following the token before column c.
        for c in range(self.window):
            key = root if c == 0 else levels[0][c - 1]
            gram = tuple(levels[l][c] for l in range(1, self.level - 1)) + (new[c],)
            self.pool.insert(key, gram)
        self.levels = [levels[1][1:]] + levels[2:] + [new]

    def max_draft_length(self) -> int:
        # A candidate is an n-gram of the pool minus its first token (the root).
        return self.level - 1

    def max_draft_tokens(self) -> int:
        # guess candidates of level - 1 tokens, and the window: W + N - 3 trunk tokens and at most
        # as many per further level (N - 2 of them), all in the same forward.
        return self.guess * (self.level - 1) + (self.level - 1) * (self.window + self.level - 3)

    def params(self) -> dict[str, Any]:
        return {"level": self.level, "window": self.window, "guess": self.guess,
                "pool_from_prompt": self.pool_from_prompt, "keep_pool": self.keep_pool,
                "always_fwd_one": True, "seed": self.seed}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--lookahead-level", type=int, default=None,
                           help=f"N, the n-gram size (CPU default {CPU_DEFAULTS['level']}, "
                                f"GPU {GPU_DEFAULTS['level']} as Spec-Bench)")
        group.add_argument("--lookahead-window", type=int, default=None,
                           help=f"W, the Jacobi window width (CPU default {CPU_DEFAULTS['window']}, "
                                f"GPU {GPU_DEFAULTS['window']})")
        group.add_argument("--lookahead-guess", type=int, default=None,
                           help=f"G, n-grams kept per key and verified per step (CPU default "
                                f"{CPU_DEFAULTS['guess']}, GPU {GPU_DEFAULTS['guess']})")
        group.add_argument("--lookahead-pool-from-prompt", action=argparse.BooleanOptionalAction,
                           default=None,
                           help="seed the pool with the prompt's n-grams and feed it the committed "
                                f"text (CPU default {CPU_DEFAULTS['pool_from_prompt']}, GPU "
                                f"{GPU_DEFAULTS['pool_from_prompt']} as Spec-Bench)")
        group.add_argument("--lookahead-keep-pool", action="store_true",
                           help="keep the n-gram pool across turns and questions "
                                "(Spec-Bench starts every turn with an empty pool)")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "lookahead", MINIMUM)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "LookaheadDrafter":
        options = resolve_options(args, "lookahead", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        return cls(**options, keep_pool=bool(getattr(args, "lookahead_keep_pool", False)))
