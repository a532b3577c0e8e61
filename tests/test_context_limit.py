"""The model's context bounds every turn: a prompt that leaves no room for one token is refused
with PromptTooLong (never answered with an empty answer), and a generation that fills the
context stops there, with the baseline's tokens, saying why."""

from __future__ import annotations

import pickle

import pytest

from methods.core.backends import BACKENDS
from methods.core.context_limit import PromptTooLong
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import RandomTreeDrafter, random_prompts
from tests.tiny_model import make_tiny_llama

VOCAB = 97
CONTEXT = 32


def engine_with_context(backend: str, context: int) -> SpeculativeEngine:
    model = make_tiny_llama(vocab_size=VOCAB, seed=0)  # the same weights for every context
    model.config.max_position_embeddings = context
    return SpeculativeEngine(model, backend=backend)


@pytest.fixture(scope="module", params=BACKENDS)
def short(request):
    return engine_with_context(request.param, CONTEXT)


@pytest.fixture(scope="module")
def long(short):
    return engine_with_context(short.backend, 512)


def test_a_prompt_that_leaves_no_room_is_refused(short):
    prompt = random_prompts(1, VOCAB, seed=1)[0]
    prompt = (prompt * CONTEXT)[:CONTEXT]
    with pytest.raises(PromptTooLong) as caught:
        short.generate(prompt, VanillaDrafter(), DecodingConfig(max_new_tokens=8))
    assert isinstance(caught.value, ValueError)  # what callers that catch bad input already catch
    assert (caught.value.prompt_tokens, caught.value.context) == (CONTEXT, CONTEXT)
    assert f"{CONTEXT} tokens" in str(caught.value) and "shorten the prompt" in str(caught.value)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses process boundaries


def test_a_prompt_one_short_of_the_context_gets_exactly_one_token(short, long):
    prompt = (random_prompts(1, VOCAB, seed=2)[0] * CONTEXT)[:CONTEXT - 1]
    config = DecodingConfig(max_new_tokens=8)
    ids, stats = short.generate(prompt, VanillaDrafter(), config)
    assert ids == long.generate(prompt, VanillaDrafter(), config)[0][:1]
    assert stats.stop_reason == "context_limit" and stats.new_tokens == 1


@pytest.mark.parametrize("drafter", ["vanilla", "deep random trees"])
def test_generation_stops_at_the_context_with_the_baselines_tokens(short, long, drafter):
    config = DecodingConfig(max_new_tokens=40)
    for seed, prompt in enumerate(random_prompts(3, VOCAB, seed=3)):
        prompt = (prompt * CONTEXT)[:20]
        expected = long.generate(prompt, VanillaDrafter(), config)[0]
        assert len(expected) == 40
        make = (VanillaDrafter if drafter == "vanilla" else
                lambda: RandomTreeDrafter(VOCAB, seed=seed, oracle=expected, max_nodes=16))
        ids, stats = short.generate(prompt, make(), config)
        assert ids == expected[: CONTEXT - len(prompt)]
        assert stats.stop_reason == "context_limit"
        assert sum(stats.accept_lengths) == stats.new_tokens == CONTEXT - len(prompt)


def test_other_turns_say_why_they_ended(long):
    prompt = random_prompts(1, VOCAB, seed=4)[0]
    ids, stats = long.generate(prompt, VanillaDrafter(), DecodingConfig(max_new_tokens=6))
    assert stats.stop_reason == "max_new_tokens" and len(ids) == 6
    config = DecodingConfig(max_new_tokens=20, stop_token_ids=frozenset({ids[2]}))
    ids, stats = long.generate(prompt, VanillaDrafter(), config)
    assert stats.stop_reason == "stop" and ids[-1] in config.stop_token_ids
