"""The engine's per-token logit margins equal those of one plain forward over the whole text."""

from __future__ import annotations

import pytest
import torch

from methods.core.drafter import DecodingConfig
from methods.core.backends import BACKENDS
from methods.core.engine import SpeculativeEngine
from methods.drafters.pld import PromptLookupDrafter
from methods.drafters.sps import DraftModelDrafter, truncated_self_draft
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import RandomTreeDrafter, baseline, random_prompts
from tests.tiny_model import make_tiny_llama

VOCAB = 97


@pytest.fixture(scope="module")
def model():
    return make_tiny_llama(vocab_size=VOCAB, seed=0, layers=3)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(model, request):
    return SpeculativeEngine(model, backend=request.param)


def reference_margins(model, prompt: list[int], generated: list[int]) -> list[float]:
    """Top-1 minus top-2 logit of the rows that predict each generated token, from one forward
    over prompt + generated with no cache and no drafts."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + generated])).logits[0]
    rows = logits[len(prompt) - 1: len(prompt) - 1 + len(generated)]
    top = torch.topk(rows, k=2, dim=-1).values
    return (top[:, 0] - top[:, 1]).tolist()


@pytest.mark.parametrize("kind", ["vanilla", "pld-chain", "sps-chain", "tree"])
def test_margins_match_a_full_forward(model, engine, kind):
    config = DecodingConfig(max_new_tokens=30)
    accepted_more_than_one = False
    for i, prompt in enumerate(random_prompts(6, VOCAB, seed=11)):
        if kind == "vanilla":
            drafter = VanillaDrafter()
        elif kind == "pld-chain":
            drafter = PromptLookupDrafter(max_ngram=2, num_pred=4, allow_short=True)
        elif kind == "sps-chain":
            drafter = DraftModelDrafter(truncated_self_draft(model, 2), gamma=4)
        else:
            drafter = RandomTreeDrafter(VOCAB, seed=i, oracle=baseline(engine, prompt, config))
        tokens, stats = engine.generate(prompt, drafter, config)
        assert len(stats.margins) == len(tokens)
        assert all(m >= 0 for m in stats.margins)
        torch.testing.assert_close(torch.tensor(stats.margins, dtype=torch.float64),
                                   torch.tensor(reference_margins(model, prompt, tokens), dtype=torch.float64),
                                   rtol=1e-7, atol=1e-9)
        accepted_more_than_one |= max(stats.accept_lengths) > 1
    if kind != "vanilla":
        assert accepted_more_than_one, "no draft was accepted: the rows of drafts were not tested"


def test_margins_are_cut_at_the_stop_token_like_the_tokens(model, engine):
    prompt = random_prompts(2, VOCAB, seed=6)[1]
    free_run = baseline(engine, prompt, DecodingConfig(max_new_tokens=30))
    config = DecodingConfig(max_new_tokens=30, stop_token_ids=frozenset({free_run[7]}))
    drafter = RandomTreeDrafter(VOCAB, seed=1, oracle=free_run)
    tokens, stats = engine.generate(prompt, drafter, config)
    assert len(tokens) < len(free_run)
    assert len(stats.margins) == len(tokens)
    torch.testing.assert_close(torch.tensor(stats.margins, dtype=torch.float64),
                               torch.tensor(reference_margins(model, prompt, tokens), dtype=torch.float64),
                               rtol=1e-7, atol=1e-9)
