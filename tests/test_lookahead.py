"""Lookahead decoding: n-gram pool, window layout and shifts, and losslessness on the engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from methods.core.drafter import DecodingConfig, DraftSession, StepResult
from methods.core.backends import BACKENDS
from methods.core.engine import SpeculativeEngine
from methods.drafters.lookahead import CPU_DEFAULTS, LookaheadDrafter, NgramPool
from methods.drafters.vanilla import VanillaDrafter
from tests.tiny_model import make_tiny_llama

VOCAB = 97


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request):
    return SpeculativeEngine(make_tiny_llama(vocab_size=VOCAB, seed=0), backend=request.param)


def session():
    return DraftSession(model=None, config=DecodingConfig(), device=torch.device("cpu"),
                        dtype=torch.float64, vocab_size=VOCAB)


def random_prompts(count, length=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (length,), generator=g).tolist() for _ in range(count)]


def fake_step(drafter, tree, context, predicted):
    """A StepResult in which the target's argmax after every node is predicted(node) (root: -1)
    and nothing is accepted: the root is followed by the token predicted at the root."""
    logits = torch.zeros(len(tree) + 1, VOCAB, dtype=torch.float64)
    for row in range(len(tree) + 1):
        logits[row, predicted(row - 1)] = 1.0
    bonus = predicted(-1)
    return StepResult(tree=tree, accepted_nodes=[], committed=[bonus], logits=logits,
                      context=context + [bonus])


# ---------------------------------------------------------------------------------- the pool
def test_pool_is_an_lru_per_key_with_the_guess_set_cap():
    pool = NgramPool(cap=2)
    pool.insert(5, (1, 2))
    pool.insert(5, (3, 4))
    assert pool.guesses(5) == [(3, 4), (1, 2)]  # most recent first
    pool.insert(5, (1, 2))  # seen again: becomes the most recent, nothing dropped
    assert pool.guesses(5) == [(1, 2), (3, 4)]
    pool.insert(5, (7, 8))  # over the cap: the least recently seen (3, 4) goes
    assert pool.guesses(5) == [(7, 8), (1, 2)]
    pool.insert(6, (9, 9))
    assert pool.guesses(6) == [(9, 9)] and pool.guesses(42) == [] and len(pool) == 3


def test_pool_without_cap_keeps_everything():
    pool = NgramPool(cap=0)
    for i in range(50):
        pool.insert(1, (i,))
    assert len(pool.guesses(1)) == 50


# ---------------------------------------------------------------------------------- the window
def test_first_window_is_drawn_from_the_prompt_deterministically():
    prompt = list(range(10, 30))
    a, b = LookaheadDrafter(level=5, window=7, guess=7), LookaheadDrafter(level=5, window=7, guess=7)
    a.begin(prompt, session())
    b.begin(prompt, session())
    assert a.levels == b.levels and len(a.levels) == 1
    assert len(a.levels[0]) == 7 + 5 - 3 and set(a.levels[0]) <= set(prompt)


def test_window_fills_in_level_minus_two_steps_to_the_steady_sizes():
    level, window = 5, 4
    drafter = LookaheadDrafter(level=level, window=window, guess=3)
    context = list(range(10, 22))
    drafter.begin(context, session())
    for _ in range(level - 2):
        assert drafter.filling
        tree = drafter.propose(context, max_depth=50)
        step = fake_step(drafter, tree, context, lambda node: 3 + node % 50)
        drafter.accept(step)
        context = step.context
        assert len(drafter.pool) == 0  # no complete n-gram exists while filling
    assert not drafter.filling
    assert [len(row) for row in drafter.levels] == [window - 1] + [window] * (level - 2)


def test_window_tree_has_the_lookahead_layout():
    """Level l >= 1, column c sits at offset l + c and sees the root, trunk tokens 0..c-1 and the
    column-c tokens of levels 1..l; the trunk is a chain; guesses are candidate chains."""
    drafter = LookaheadDrafter(level=4, window=3, guess=2)
    drafter.begin([5, 6, 7], session())
    drafter.levels = [[11, 12], [21, 22, 23], [31, 32, 33]]  # steady sizes W-1, W, W
    drafter.pool.insert(7, (40, 41, 42))
    drafter.pool.insert(7, (40, 43, 44))
    tree = drafter.propose([5, 6, 7], max_depth=10)
    guesses = 5  # trie of the two guesses: 40 shared
    assert tree.is_candidate.tolist() == [True] * guesses + [False] * 8
    assert sorted(tree.tokens[:guesses].tolist()) == [40, 41, 42, 43, 44]
    nodes = {tok: i for i, tok in enumerate(tree.tokens.tolist())}
    depth = tree.depth.tolist()
    sees = tree.ancestors_mask()
    assert [depth[nodes[t]] for t in (11, 12)] == [1, 2]
    for l, row in enumerate(([21, 22, 23], [31, 32, 33]), start=1):
        for c, token in enumerate(row):
            i = nodes[token]
            assert depth[i] == l + c
            seen = {tree.tokens[j].item() for j in range(len(tree)) if sees[i, j]}
            expected = {11, 12}.intersection([11, 12][:c]) | {[21, 22, 23][c]} | ({[31, 32, 33][c]} if l == 2 else set())
            assert seen == expected


def test_steady_step_files_every_column_as_an_ngram_and_moves_the_window_one_level():
    drafter = LookaheadDrafter(level=4, window=3, guess=5)
    drafter.begin([5, 6, 7], session())
    drafter.levels = [[11, 12], [21, 22, 23], [31, 32, 33]]
    tree = drafter.propose([5, 6, 7], max_depth=10)
    tokens = tree.tokens.tolist()
    # The target predicts 50 + column after the newest level's tokens, 2 after the root.
    new = {31: 50, 32: 51, 33: 52}
    step = fake_step(drafter, tree, [5, 6, 7], lambda node: 2 if node < 0 else new.get(tokens[node], 3))
    drafter.accept(step)
    # key = token before the column (root 7, then trunk tokens), gram = the column + new iterate
    assert drafter.pool.guesses(7) == [(21, 31, 50)]
    assert drafter.pool.guesses(11) == [(22, 32, 51)]
    assert drafter.pool.guesses(12) == [(23, 33, 52)]
    assert drafter.levels == [[22, 23], [31, 32, 33], [50, 51, 52]]


def test_window_waits_when_the_turn_has_no_room_left():
    drafter = LookaheadDrafter(level=5, window=7, guess=7)
    drafter.begin(list(range(10, 30)), session())
    before = [row[:] for row in drafter.levels]
    tree = drafter.propose(list(range(10, 30)), max_depth=3)
    assert len(tree) == 0
    drafter.accept(fake_step(drafter, tree, list(range(10, 30)), lambda node: 3))
    assert drafter.levels == before


def test_pool_from_prompt_seeds_ngrams_of_the_prompt():
    drafter = LookaheadDrafter(level=3, window=2, guess=4, pool_from_prompt=True)
    drafter.begin([5, 6, 7, 5, 6, 8], session())
    assert drafter.pool.guesses(5) == [(6, 8), (6, 7)]
    assert drafter.pool.guesses(6) == [(7, 5)] and drafter.pool.guesses(7) == [(5, 6)]
    assert drafter.pool.guesses(8) == []  # the last n-gram starts two tokens before the end


# ---------------------------------------------------------------------------------- end to end
def run_turns(engine, drafter, prompt, config, follow_up=(40, 41, 42)):
    """Two turns; turn 2's prompt is turn 1's prompt + answer + new user text."""
    first, s1 = engine.generate(prompt, drafter, config)
    second, s2 = engine.generate(prompt + first + list(follow_up), drafter, config)
    return (first, second), (s1, s2)


@pytest.mark.parametrize("level,window,guess,from_prompt", [(5, 7, 7, False), (3, 2, 2, True), (4, 3, 1, False)])
def test_greedy_output_is_the_baseline_token_for_token(engine, level, window, guess, from_prompt):
    config = DecodingConfig(max_new_tokens=40)
    drafter = LookaheadDrafter(level=level, window=window, guess=guess, pool_from_prompt=from_prompt)
    baseline = VanillaDrafter()
    steps = tokens = 0
    for prompt in random_prompts(6):
        expected, _ = run_turns(engine, baseline, prompt, config)
        got, stats = run_turns(engine, drafter, prompt, config)
        assert got == expected
        steps += sum(s.decoding_steps for s in stats)
        tokens += sum(s.new_tokens for s in stats)
    assert tokens / steps > 1.2  # the pool's guesses are accepted, not only verified


def test_stop_token_ends_the_turn_like_the_baseline(engine):
    prompt = random_prompts(1, seed=3)[0]
    free, _ = engine.generate(prompt, VanillaDrafter(), DecodingConfig(max_new_tokens=30))
    config = DecodingConfig(max_new_tokens=30, stop_token_ids=frozenset({free[12]}))
    expected, _ = engine.generate(prompt, VanillaDrafter(), config)
    got, _ = engine.generate(prompt, LookaheadDrafter(level=4, window=3, guess=3), config)
    assert got == expected and len(got) <= 13


def test_sampling_runs_through_lossless_acceptance(engine):
    config = DecodingConfig(max_new_tokens=40, temperature=0.8)
    drafter = LookaheadDrafter(level=4, window=3, guess=3, pool_from_prompt=True)
    for i, prompt in enumerate(random_prompts(4, seed=7)):
        (first, second), stats = run_turns(engine, drafter, prompt, config)
        for tokens, s in zip((first, second), stats):
            assert all(0 <= t < VOCAB for t in tokens)
            assert sum(s.accept_lengths) == s.new_tokens == len(tokens) == 40
            assert s.decoding_steps == len(s.accept_lengths)


def test_from_args_takes_cpu_defaults_unless_given():
    model = make_tiny_llama(vocab_size=VOCAB)
    args = SimpleNamespace(lookahead_level=None, lookahead_window=None, lookahead_guess=None,
                           lookahead_pool_from_prompt=None, lookahead_keep_pool=False)
    drafter = LookaheadDrafter.from_args(args, model, None)
    assert (drafter.level, drafter.window, drafter.guess, drafter.pool_from_prompt) == (
        CPU_DEFAULTS["level"], CPU_DEFAULTS["window"], CPU_DEFAULTS["guess"], CPU_DEFAULTS["pool_from_prompt"])
    args.lookahead_window, args.lookahead_pool_from_prompt = 9, False
    drafter = LookaheadDrafter.from_args(args, model, None)
    assert drafter.window == 9 and drafter.pool_from_prompt is False
