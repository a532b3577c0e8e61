"""Acceptance rules: greedy picks the longest valid path; sampling preserves the target distribution.

The statistical tests draw many times with a fixed seed and compare the empirical distribution of
the committed tokens with the exact target distribution by a chi-square test. Each test also
runs a deliberately wrong residual through the same check and requires it to FAIL, so the test
is tight enough to catch that bug.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from methods.core.acceptance import accept_greedy, accept_sampling
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.sampling import target_probs
from methods.core.tree import DraftTree
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import RandomTreeDrafter
from tests.tiny_model import make_tiny_llama

Z_999 = 3.090  # one-sided normal quantile for alpha = 0.001


def chi2_critical(df: int, z: float = Z_999) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2_statistic(counts: Counter, probs: dict, total: int) -> tuple[float, int]:
    stat, df = 0.0, -1
    for outcome, p in probs.items():
        expected = p * total
        if expected < 5:  # pool tiny cells away from the test instead of inflating it
            continue
        stat += (counts.get(outcome, 0) - expected) ** 2 / expected
        df += 1
    return stat, df


def test_greedy_takes_the_deepest_accepted_path():
    vocab = 6
    # Tree: root -> a(1) -> b(2); root -> c(3) -> d(4) -> e(5)
    tree = DraftTree(torch.tensor([1, 2, 3, 4, 5]), torch.tensor([-1, 0, -1, 2, 3]))
    logits = torch.zeros(6, vocab)
    argmax = {0: 3, 1: 2, 2: 0, 3: 4, 4: 0, 5: 1}  # row -> predicted token
    for row, tok in argmax.items():
        logits[row, tok] = 1.0
    result = accept_greedy(tree, logits)
    assert result.accepted_nodes == [2, 3]  # c, d accepted; e rejected (argmax at d is 0)
    assert result.next_token == 0


def test_greedy_never_accepts_auxiliary_nodes():
    tree = DraftTree(torch.tensor([3]), torch.tensor([-1]), is_candidate=torch.tensor([False]))
    logits = torch.zeros(2, 5)
    logits[0, 3] = 1.0
    result = accept_greedy(tree, logits)
    assert result.accepted_nodes == [] and result.next_token == 3


def _first_two(tree, logits, config, draws, seed, accept=accept_sampling):
    """Counts of the first committed token. With draft_probs, each draw drafts from q afresh."""
    gen = torch.Generator().manual_seed(seed)
    counts = Counter()
    for _ in range(draws):
        if tree.draft_probs is not None:
            drafted = [int(torch.multinomial(q, 1, generator=gen)) for q in tree.draft_probs]
            tree = DraftTree.chain(drafted, draft_probs=tree.draft_probs)
        result = accept(tree, logits, config, gen)
        committed = tree.tokens[result.accepted_nodes].tolist() + [result.next_token]
        counts[committed[0]] += 1
    return counts


def _wrong_residual(tree, logits, config, gen):
    """A classic bug: after a rejection, sample from p itself instead of the residual."""
    probs = target_probs(logits, config)
    x = int(tree.tokens[0])
    if torch.rand((), generator=gen) < probs[0, x]:
        return type("R", (), {"accepted_nodes": [0], "next_token": int(torch.multinomial(probs[1], 1, generator=gen))})
    return type("R", (), {"accepted_nodes": [], "next_token": int(torch.multinomial(probs[0], 1, generator=gen))})


@pytest.mark.parametrize("with_draft_probs", [False, True])
def test_chain_sampling_preserves_the_target_distribution(with_draft_probs):
    torch.manual_seed(0)
    vocab = 8
    logits = torch.randn(3, vocab, dtype=torch.float64) * 1.5
    config = DecodingConfig(temperature=0.8)
    p = target_probs(logits, config)
    q = None
    if with_draft_probs:
        q = torch.softmax(torch.randn(2, vocab, dtype=torch.float64), dim=-1)
    tree = DraftTree.chain([int(p[0].argmin()), 2], draft_probs=q)  # an unlikely first draft
    draws = 20000
    counts = _first_two(tree, logits, config, draws, seed=1)
    exact = {t: float(p[0, t]) for t in range(vocab)}
    stat, df = chi2_statistic(counts, exact, draws)
    assert stat < chi2_critical(df), (stat, df)
    if not with_draft_probs:
        bad = _first_two(tree, logits, config, draws, seed=1, accept=_wrong_residual)
        bad_stat, bad_df = chi2_statistic(bad, exact, draws)
        assert bad_stat > chi2_critical(bad_df), "the test cannot tell a wrong residual apart"


def test_tree_sampling_over_siblings_preserves_the_target_distribution():
    torch.manual_seed(1)
    vocab = 6
    # root has three candidate children (tokens 0, 1, 2); child 0 has two children (3, 4).
    tree = DraftTree(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([-1, -1, -1, 0, 0]))
    logits = torch.randn(6, vocab, dtype=torch.float64)
    config = DecodingConfig(temperature=1.0)
    p = target_probs(logits, config)
    gen = torch.Generator().manual_seed(2)
    draws = 30000
    pairs = Counter()
    for _ in range(draws):
        result = accept_sampling(tree, logits, config, gen)
        committed = tree.tokens[result.accepted_nodes].tolist() + [result.next_token]
        if committed[0] == 0:  # the second token is drafted only after token 0
            pairs[(0, committed[1])] += 1
        else:
            pairs[(committed[0], None)] += 1
    exact = {(0, t): float(p[0, 0] * p[1, t]) for t in range(vocab)}
    exact.update({(t, None): float(p[0, t]) for t in range(1, vocab)})
    stat, df = chi2_statistic(pairs, exact, draws)
    assert stat < chi2_critical(df), (stat, df)


def exact_first_two(model, prompt: list[int], config: DecodingConfig) -> dict:
    """The model's exact joint distribution of the first two sampled tokens after ``prompt``."""
    vocab = model.config.vocab_size
    with torch.inference_mode():
        first = target_probs(model(torch.tensor([prompt])).logits[0, -1], config)
        exact = {}
        for a in range(vocab):
            second = target_probs(model(torch.tensor([prompt + [a]])).logits[0, -1], config)
            for b in range(vocab):
                exact[(a, b)] = float(first[a] * second[b])
    return exact


SAMPLING_VOCAB = 7


def sampling_check_model():
    """A one-layer model over 7 tokens with flat logits, so that every pair of first two tokens
    gets samples in an end-to-end distribution test."""
    model = make_tiny_llama(vocab_size=SAMPLING_VOCAB, seed=3, layers=1)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.15)
    return model


def assert_first_two_follow_the_model(model, drafter, draws: int = 2000) -> None:
    """The first two tokens the engine samples with ``drafter`` (one seed per draw) pass a
    chi-square test against the model's exact joint distribution."""
    engine = SpeculativeEngine(model)
    config = DecodingConfig(max_new_tokens=2, temperature=1.0)
    prompt = [3, 4, 5]
    exact = exact_first_two(model, prompt, config)
    counts = Counter(tuple(engine.generate(prompt, drafter, config, seed=i)[0]) for i in range(draws))
    stat, df = chi2_statistic(counts, exact, draws)
    assert stat < chi2_critical(df), (stat, df)


def test_engine_sampling_with_random_trees_matches_the_model_distribution():
    """End to end: the first two sampled tokens follow the model's exact joint distribution."""
    model = sampling_check_model()
    assert_first_two_follow_the_model(model, RandomTreeDrafter(SAMPLING_VOCAB, seed=0, max_nodes=6, aux_fraction=0.2))
    # The baseline samples from the same distribution through the same engine.
    assert_first_two_follow_the_model(model, VanillaDrafter())


def test_top_p_and_top_k_restrict_the_distribution():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    p = target_probs(logits, DecodingConfig(temperature=1.0, top_k=2))
    assert p[0, 2] == 0 and p[0, 3] == 0 and abs(float(p.sum()) - 1) < 1e-6
    p = target_probs(logits, DecodingConfig(temperature=1.0, top_p=0.5))
    assert p[0, 0] == 1.0
