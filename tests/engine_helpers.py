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


CONVERSATION_CONFIG = DecodingConfig(max_new_tokens=24)


def baseline_conversations(engine: SpeculativeEngine, vocab_size: int, seed: int,
                           config: DecodingConfig = CONVERSATION_CONFIG):
    """Six random prompts, each a two-turn conversation as the runner builds it (the second prompt
    holds the first turn and its answer): per conversation, (prompt, baseline answer) per turn;
    and, as a corpus for retrieval drafters, the text of every other conversation (prompt + answer
    per turn), so that they find real continuations on half of them."""
    out = []
    for prompt in random_prompts(6, vocab_size, seed=seed):
        history, turns = list(prompt), []
        for turn in range(2):
            history += [10 + turn, 11, 12]
            answer = baseline(engine, history, config)
            turns.append((list(history), answer))
            history += answer
        out.append(turns)
    return out, [prompt + answer for turns in out[::2] for prompt, answer in turns]


def run_conversations(engine: SpeculativeEngine, drafter: Drafter, conversations,
                      config: DecodingConfig = CONVERSATION_CONFIG):
    """Every turn of ``conversations`` through ``drafter`` (one drafter for all, as in a run);
    returns the outputs, the per-turn stats and the drafter's per-turn counts (turn_stats)."""
    outputs, stats, counts = [], [], []
    for turns in conversations:
        for prompt, _ in turns:
            out, s = engine.generate(prompt, drafter, config, seed=len(prompt))
            outputs.append(out)
            stats.append(s)
            counts.append(drafter.turn_stats())
    return outputs, stats, counts


def runner_records(tmp_path, method_args: list[str]) -> list[tuple[dict, dict]]:
    """The runner on a saved tiny model and two questions that repeat themselves (one of two
    turns), once with vanilla and once with ``method_args`` (``--method NAME`` and its options):
    the (vanilla record, method record) of each question."""
    import json

    from evaluation.inference import main
    from tests.test_inference import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    questions = tmp_path / "question.jsonl"
    rows = [{"question_id": 1, "category": "writing", "turns": ["w5 w6 w7 w5 w6 w7 w5", "w9 w10"]},
            {"question_id": 2, "category": "qa", "turns": ["w20 w21 w22 w20 w21"]}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--model-path", str(folder), "--dtype", "float64", "--device", "cpu", "--question-file",
              str(questions), "--max-new-tokens", "16", "--warmup", "1", "--no-progress"]
    assert main(["--method", "vanilla", "--answer-file", str(tmp_path / "v.jsonl"), *common]) == 0
    assert main([*method_args, "--answer-file", str(tmp_path / "m.jsonl"), *common]) == 0
    base, method = ([json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
                    for name in ("v.jsonl", "m.jsonl"))
    assert len(base) == len(method) == len(rows)
    return list(zip(base, method))
