"""The engine is lossless: every drafter's greedy output is the baseline's, token for token."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from methods.core.backends import BACKENDS
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.pld import PromptLookupDrafter, find_continuation
from methods.drafters.sps import DraftModelDrafter, truncated_self_draft
from methods.core.tree import DraftTree
from tests.engine_helpers import RandomTreeDrafter, baseline, check_random_trees_keep_baseline, random_prompts
from tests.tiny_model import make_tiny_llama

VOCAB = 97


@pytest.fixture(scope="module")
def model():
    return make_tiny_llama(vocab_size=VOCAB, seed=0, layers=3)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(model, request):
    return SpeculativeEngine(model, backend=request.param)


def test_baseline_equals_transformers_generate(model, engine):
    config = DecodingConfig(max_new_tokens=30)
    for prompt in random_prompts(6, VOCAB, seed=1):
        ours = baseline(engine, prompt, config)
        theirs = model.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False,
                                eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
        assert ours == theirs


@pytest.mark.parametrize("make_drafter", [
    lambda m: PromptLookupDrafter(max_ngram=3, num_pred=5),
    lambda m: PromptLookupDrafter(max_ngram=2, num_pred=3, allow_short=True),
    lambda m: PromptLookupDrafter(max_ngram=3, min_ngram=2, num_pred=4),
    lambda m: DraftModelDrafter(truncated_self_draft(m, 1), gamma=4),
    lambda m: DraftModelDrafter(truncated_self_draft(m, 2), gamma=3, schedule="heuristic"),
], ids=["pld", "pld-short", "pld-min2", "sps-self1", "sps-self2-heuristic"])
def test_chain_drafters_greedy_equal_baseline(model, engine, make_drafter):
    config = DecodingConfig(max_new_tokens=40)
    drafter = make_drafter(model)
    accepted_more_than_one = False
    for prompt in random_prompts(10, VOCAB, seed=2):
        expected = baseline(engine, prompt, config)
        got, stats = engine.generate(prompt, drafter, config)
        assert got == expected
        assert sum(stats.accept_lengths) == stats.new_tokens == len(got)
        assert stats.decoding_steps == len(stats.accept_lengths)
        accepted_more_than_one |= max(stats.accept_lengths) > 1
    assert accepted_more_than_one, "the drafter never got a token accepted: the test proves nothing"


@pytest.mark.parametrize("with_truth", [False, True])
def test_random_trees_with_auxiliary_nodes_keep_baseline_output(engine, with_truth):
    check_random_trees_keep_baseline(engine, VOCAB, with_truth, seed=3, max_new_tokens=25)


def test_multi_turn_conversation_equal_baseline(engine, model):
    """Turn 2's prompt holds turn 1's answer; drafter state carries over between turns."""
    config = DecodingConfig(max_new_tokens=20)
    drafters = [PromptLookupDrafter(num_pred=4), DraftModelDrafter(truncated_self_draft(model, 1), gamma=3)]
    for prompt in random_prompts(4, VOCAB, seed=4):
        history_base = list(prompt)
        histories = [list(prompt) for _ in drafters]
        for turn in range(3):
            user = [10 + turn, 11 + turn, 12]
            history_base += user
            answer = baseline(engine, history_base, config)
            history_base += answer
            for drafter, history in zip(drafters, histories):
                history += user
                got, _ = engine.generate(history, drafter, config)
                assert got == answer
                history += got


def _cache_rows(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The valid (keys, values) of each layer as [heads, seq, dim], for either backend's cache."""
    if hasattr(cache, "layers"):
        return [(layer.keys[0].clone(), layer.values[0].clone()) for layer in cache.layers]
    return [(k[:, : cache.length].clone(), v[:, : cache.length].clone()) for k, v in zip(cache.keys, cache.values)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_compacted_cache_equals_fresh_prefill(model, monkeypatch, backend):
    """After every step the cache is exactly the cache of a fresh prefill of the kept sequence."""
    engine = SpeculativeEngine(model, backend=backend)
    prompt = random_prompts(2, VOCAB, seed=5)[1]
    expected = baseline(engine, prompt, DecodingConfig(max_new_tokens=20))
    snapshots = []
    real_compact = engine.target.compact

    def checked_compact(cache, past_len, block_len, accepted_nodes):
        real_compact(cache, past_len, block_len, accepted_nodes)
        snapshots.append(_cache_rows(cache))

    monkeypatch.setattr(engine.target, "compact", checked_compact)
    drafter = RandomTreeDrafter(VOCAB, seed=7, oracle=expected)
    got, stats = engine.generate(prompt, drafter, DecodingConfig(max_new_tokens=20))
    assert got == expected and max(stats.accept_lengths) > 1
    assert len(snapshots) >= 3
    full = prompt + got
    for layers in snapshots:
        kept = layers[0][0].shape[1]  # every kept entry is a final token: a prefix of the output
        fresh = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=torch.tensor([full[:kept]]), cache=fresh, use_cache=True)
        for (keys, values), ref in zip(layers, fresh.layers):
            torch.testing.assert_close(keys, ref.keys[0], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(values, ref.values[0], rtol=1e-9, atol=1e-9)


def test_stop_token_cuts_output_the_same_way_for_every_method(model, engine):
    prompt = random_prompts(2, VOCAB, seed=6)[1]
    free_run = baseline(engine, prompt, DecodingConfig(max_new_tokens=30))
    stop = free_run[7]
    config = DecodingConfig(max_new_tokens=30, stop_token_ids=frozenset({stop}))
    expected = baseline(engine, prompt, config)
    assert expected == free_run[: free_run.index(stop) + 1]  # the stop token is counted, nothing after
    oracle = RandomTreeDrafter(VOCAB, seed=1, oracle=free_run)
    for drafter in (PromptLookupDrafter(num_pred=5), oracle,
                    DraftModelDrafter(truncated_self_draft(model, 2), gamma=6)):
        got, stats = engine.generate(prompt, drafter, config)
        assert got == expected
        assert stats.new_tokens == sum(stats.accept_lengths) == len(expected)


def test_max_new_tokens_is_never_exceeded(engine):
    prompt = random_prompts(1, VOCAB, seed=8)[0]
    long_run = baseline(engine, prompt, DecodingConfig(max_new_tokens=40))
    for cap in (1, 2, 5, 13):
        drafter = RandomTreeDrafter(VOCAB, seed=cap, oracle=long_run, max_nodes=20)
        got, stats = engine.generate(prompt, drafter, DecodingConfig(max_new_tokens=cap))
        assert got == long_run[:cap]
        assert stats.new_tokens == cap == sum(stats.accept_lengths)


def test_one_token_prompt_works(engine):
    got, stats = engine.generate([5], PromptLookupDrafter(), DecodingConfig(max_new_tokens=8))
    assert got == baseline(engine, [5], DecodingConfig(max_new_tokens=8))
    assert stats.prefill_time >= 0


class MaskIgnoringModel(torch.nn.Module):
    """Wraps a model whose attention ignores custom masks (as some implementations do)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, attention_mask=None, **kwargs):
        return self.inner(**kwargs)


def test_model_that_ignores_tree_masks_falls_back_to_chains(model):
    engine = SpeculativeEngine(MaskIgnoringModel(model))
    assert engine.supports_tree_attention() is False
    config = DecodingConfig(max_new_tokens=20)
    reference = SpeculativeEngine(model)
    for i, prompt in enumerate(random_prompts(4, VOCAB, seed=9)):
        expected = baseline(reference, prompt, config)
        got, _ = engine.generate(prompt, RandomTreeDrafter(VOCAB, seed=i, oracle=expected), config)
        assert got == expected


def test_tree_attention_is_detected_on_a_real_model(engine):
    assert engine.supports_tree_attention() is True


def test_pld_finds_earliest_longest_match():
    import numpy as np

    seq = np.array([1, 2, 3, 9, 9, 1, 2, 3, 7, 7, 7, 1, 2, 3])
    assert find_continuation(seq, 3, 2, allow_short=False).tolist() == [9, 9]
    # Without a full continuation there is no draft, unless short ones are allowed.
    seq = np.array([4, 5, 6, 4, 5])
    assert find_continuation(seq, 2, 4, allow_short=False).tolist() == []
    assert find_continuation(seq, 2, 4, allow_short=True).tolist() == [6, 4, 5]


def test_pld_min_ngram_skips_single_token_matches():
    import numpy as np

    # The tail [.., 8, 5] matches only on its last token (5 at index 1).
    seq = np.array([3, 5, 6, 7, 8, 5])
    assert find_continuation(seq, 3, 2, allow_short=False).tolist() == [6, 7]
    assert find_continuation(seq, 3, 2, allow_short=False, min_ngram=2).tolist() == []
    with pytest.raises(ValueError, match="min-ngram"):
        PromptLookupDrafter(max_ngram=2, min_ngram=3)


def test_draft_tree_from_paths_merges_prefixes():
    tree = DraftTree.from_paths([[1, 2, 3], [1, 2, 4], [5]])
    assert tree.tokens.tolist() == [1, 2, 3, 4, 5]
    assert tree.parents.tolist() == [-1, 0, 1, 1, -1]
    assert tree.depth.tolist() == [1, 2, 3, 3, 1]
    with pytest.raises(ValueError):
        DraftTree(torch.tensor([1, 2]), torch.tensor([1, -1]))  # parent after child
