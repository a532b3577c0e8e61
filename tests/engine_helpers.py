"""Drafters and baselines shared by the engine tests."""

from __future__ import annotations

import random

import torch

from methods.core.drafter import DecodingConfig, Drafter
from methods.core.engine import SpeculativeEngine
from methods.core.tree import DraftTree
from methods.drafters.vanilla import VanillaDrafter


def baseline(engine: SpeculativeEngine, prompt: list[int], config: DecodingConfig) -> list[int]:
    return engine.generate(prompt, VanillaDrafter(), config)[0]


class RandomTreeDrafter(Drafter):
    """Random trees, with auxiliary (non-candidate) nodes; optionally hides the true path inside.

    ``oracle`` is the baseline continuation of the prompt: when given, a random-length prefix of
    what the target will say next is planted as a path of the random tree, so acceptance has
    something to find (and the test shows accepted lengths > 1).
    """

    name = "random-tree"

    def __init__(self, vocab_size: int, seed: int = 0, oracle: list[int] | None = None,
                 max_nodes: int = 12, aux_fraction: float = 0.2):
        self.rng = random.Random(seed)
        self.vocab_size = vocab_size
        self.oracle = oracle
        self.max_nodes = max_nodes
        self.aux_fraction = aux_fraction

    def begin(self, prompt_ids, session):
        super().begin(prompt_ids, session)
        self.prompt_len = len(prompt_ids)

    def propose(self, context, max_depth):
        rng = self.rng
        tokens, parents, candidate = [], [], []
        for i in range(rng.randint(0, self.max_nodes)):
            parents.append(rng.randint(-1, i - 1))
            tokens.append(rng.randrange(self.vocab_size))
            candidate.append(rng.random() >= self.aux_fraction)
        if self.oracle is not None:
            done = len(context) - self.prompt_len  # tokens generated so far (root included)
            truth = self.oracle[done: done + rng.randint(0, 6)]
            parent = -1
            for tok in truth:  # plant the true path somewhere among the random nodes
                tokens.append(tok)
                parents.append(parent)
                candidate.append(True)
                parent = len(tokens) - 1
        return DraftTree(torch.tensor(tokens, dtype=torch.long), torch.tensor(parents, dtype=torch.long),
                         is_candidate=torch.tensor(candidate, dtype=torch.bool))


def random_prompts(count: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """Prompts of varied length; half of them repeat a phrase so copy-based drafters have hits."""
    rng = random.Random(seed)
    prompts = []
    for i in range(count):
        length = rng.randint(1, 24)
        prompt = [rng.randrange(3, vocab_size) for _ in range(length)]
        if i % 2:
            prompt = prompt + prompt[: rng.randint(2, 8)] + prompt
        prompts.append(prompt)
    return prompts


def run_turns(engine, drafter, prompt, config, turns=2, lengths=None):
    """A multi-turn conversation: each turn's prompt holds the earlier turns and their answers, as
    the runner builds it. ``lengths`` (a list) collects every step's accepted length."""
    history, outputs = list(prompt), []
    for turn in range(turns):
        history += [10 + turn, 11, 12]
        out, stats = engine.generate(history, drafter, config)
        outputs.append(out)
        if lengths is not None:
            lengths.extend(stats.accept_lengths)
        history += out
    return outputs
