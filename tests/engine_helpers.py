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


def assert_sampling_uses_the_lossless_rule(engine: SpeculativeEngine, drafter: Drafter, monkeypatch,
                                           prompts: list[list[int]]) -> None:
    """At T > 0 the drafter declares itself lossless and every step goes through the engine's
    shared rejection sampling; each turn commits exactly the tokens asked for."""
    import methods.core.engine as engine_module

    calls = []
    real = engine_module.accept_sampling
    monkeypatch.setattr(engine_module, "accept_sampling", lambda *a: calls.append(1) or real(*a))
    assert drafter.lossy is False and drafter.sampling_acceptance is None
    config = DecodingConfig(max_new_tokens=16, temperature=0.8, top_k=30)
    for prompt in prompts:
        out, stats = engine.generate(prompt, drafter, config, seed=3)
        assert len(out) == stats.new_tokens == sum(stats.accept_lengths) == 16
    assert len(calls) > 0


def check_random_trees_keep_baseline(engine: SpeculativeEngine, vocab_size: int, with_truth: bool, seed: int,
                                     max_new_tokens: int) -> None:
    """Random trees (with auxiliary nodes, and the true path planted when ``with_truth``) over
    8 random prompts give exactly the baseline's tokens; with the truth planted, some step must
    accept more than 2 tokens, or the check proved nothing."""
    config = DecodingConfig(max_new_tokens=max_new_tokens)
    longest = 1
    for i, prompt in enumerate(random_prompts(8, vocab_size, seed=seed)):
        expected = baseline(engine, prompt, config)
        drafter = RandomTreeDrafter(vocab_size, seed=i, oracle=expected if with_truth else None)
        got, stats = engine.generate(prompt, drafter, config)
        assert got == expected
        longest = max(longest, max(stats.accept_lengths))
    if with_truth:
        assert longest > 2
