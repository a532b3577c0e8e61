"""Token Recycling: template, adjacency-matrix drafting and update, hot/cold start, losslessness."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from methods.core.drafter import DecodingConfig, DraftSession, StepResult
from methods.core.backends import BACKENDS
from methods.core.engine import SpeculativeEngine
from methods.drafters.recycling import CPU_DEFAULTS, GPU_DEFAULTS, TokenRecyclingDrafter, tree_template
from methods.core.tree import DraftTree
from methods.drafters.vanilla import VanillaDrafter
from tests.tiny_model import make_tiny_llama

VOCAB = 97


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request):
    return SpeculativeEngine(make_tiny_llama(vocab_size=VOCAB, seed=0), backend=request.param)


def session(vocab=VOCAB):
    return DraftSession(model=None, config=DecodingConfig(), device=torch.device("cpu"),
                        dtype=torch.float64, vocab_size=vocab)


# ---------------------------------------------------------------------------------- template
@pytest.mark.parametrize("nodes,depth", [(80, 6), (12, 5), (1, 1), (30, 3)])
def test_template_is_a_tree_of_the_asked_size_and_depth(nodes, depth):
    template = tree_template(nodes, depth, topk=8)
    assert len(template) == nodes == len(set(template))
    assert max(len(p) for p in template) <= depth
    assert all(p[:-1] in template for p in template if len(p) > 1)  # every parent is there
    assert all(0 <= r < 8 for p in template for r in p)


def test_template_is_imbalanced_towards_the_likely_candidates():
    template = tree_template(80, 6, topk=8)
    def subtree(prefix):
        return sum(1 for p in template if p[: len(prefix)] == prefix)
    sizes = [subtree((r,)) for r in range(8)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 2 * sizes[1] > 0
    deepest = [max(len(p) for p in template if p[0] == r) for r in range(8)]
    assert deepest[0] == 6 and deepest == sorted(deepest, reverse=True) and deepest[7] < 6


# ---------------------------------------------------------------------------------- matrix
def test_draft_reads_each_node_from_its_parents_row():
    drafter = TokenRecyclingDrafter(topk=3, tree_nodes=12, tree_depth=3)
    drafter.begin([1, 2], session())
    for t in range(VOCAB):
        drafter.matrix[t] = [(t + 1) % VOCAB, (t + 2) % VOCAB, (t + 3) % VOCAB]
    drafter.known[:] = True
    tree = drafter.propose([1, 2, 10], max_depth=10)
    assert len(tree) == 12
    tokens, parents = tree.tokens.tolist(), tree.parents.tolist()
    ranks = drafter.ranks.tolist()
    for i in range(len(tree)):
        parent_token = 10 if parents[i] < 0 else tokens[parents[i]]
        assert tokens[i] == drafter.matrix[parent_token, ranks[i]]
    assert len(drafter.propose([1, 2, 10], max_depth=1)) == sum(1 for p in parents if p < 0)


def test_unknown_rows_propose_nothing():
    drafter = TokenRecyclingDrafter(topk=4, tree_nodes=20, tree_depth=4)
    drafter.begin([1, 2], session())
    assert len(drafter.propose([1, 2, 3], max_depth=10)) == 0  # cold: not even the root is known
    drafter.matrix[3] = [5, 6, 7, 8]
    drafter.known[3] = True
    tree = drafter.propose([1, 2, 3], max_depth=10)
    assert sorted(tree.tokens.tolist()) == [5, 6, 7, 8] and bool((tree.parents == -1).all())


def test_update_writes_the_topk_of_every_node_and_the_accepted_path_wins():
    drafter = TokenRecyclingDrafter(topk=2, tree_nodes=4, tree_depth=2)
    drafter.begin([1], session())
    # root 9; nodes: 20 (under root), 21 (under 20), 20 again (under root), 30 (under root)
    tree = DraftTree(torch.tensor([20, 21, 20, 30]), torch.tensor([-1, 0, -1, -1]))
    logits = torch.zeros(5, VOCAB, dtype=torch.float64)
    best = {0: (40, 41), 1: (42, 43), 2: (44, 45), 3: (46, 47), 4: (48, 49)}  # row -> top-2
    for row, (a, b) in best.items():
        logits[row, a], logits[row, b] = 2.0, 1.0
    step = StepResult(tree=tree, accepted_nodes=[0, 1], committed=[20, 21, 44], logits=logits,
                      context=[1, 9, 20, 21, 44])
    drafter.accept(step)
    assert drafter.matrix[9].tolist() == [40, 41]  # the root's row
    assert drafter.matrix[20].tolist() == [42, 43]  # accepted node 0, not the later duplicate node 2
    assert drafter.matrix[21].tolist() == [44, 45]
    assert drafter.matrix[30].tolist() == [48, 49]  # a rejected node is learned from too
    assert set(np.flatnonzero(drafter.known)) == {9, 20, 21, 30}


def test_matrix_is_kept_across_turns_unless_cold_start():
    hot, cold = TokenRecyclingDrafter(tree_nodes=4, tree_depth=2), TokenRecyclingDrafter(tree_nodes=4, tree_depth=2, cold_start=True)
    for drafter in (hot, cold):
        drafter.begin([1], session())
        drafter.matrix[5] = 7
        drafter.known[5] = True
        drafter.begin([1, 2], session())
    assert hot.known[5] and hot.matrix[5, 0] == 7
    assert not cold.known.any() and not cold.matrix.any()


# ---------------------------------------------------------------------------------- end to end
def random_prompts(count, length=12, seed=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (length,), generator=g).tolist() for _ in range(count)]


def run_turns(engine, drafter, prompt, config):
    first, s1 = engine.generate(prompt, drafter, config)
    second, s2 = engine.generate(prompt + first + [40, 41, 42], drafter, config)
    return (first, second), (s1, s2)


@pytest.mark.parametrize("nodes,depth,cold", [(80, 6, False), (12, 5, False), (12, 5, True), (3, 1, False)])
def test_greedy_output_is_the_baseline_token_for_token(engine, nodes, depth, cold):
    config = DecodingConfig(max_new_tokens=32)
    drafter = TokenRecyclingDrafter(topk=8, tree_nodes=nodes, tree_depth=depth, cold_start=cold)
    tokens = steps = 0
    for prompt in random_prompts(8):
        expected, _ = run_turns(engine, VanillaDrafter(), prompt, config)
        got, stats = run_turns(engine, drafter, prompt, config)
        assert got == expected
        assert all(s.draft_tokens <= nodes * s.decoding_steps for s in stats)
        tokens += sum(s.new_tokens for s in stats)
        steps += sum(s.decoding_steps for s in stats)
    assert tokens / steps > 1.3  # recycled candidates are accepted


def test_sampling_runs_through_lossless_acceptance(engine):
    config = DecodingConfig(max_new_tokens=32, temperature=1.0, top_k=20)
    drafter = TokenRecyclingDrafter(topk=8, tree_nodes=12, tree_depth=5)
    for prompt in random_prompts(4, seed=9):
        outputs, stats = run_turns(engine, drafter, prompt, config)
        for tokens, s in zip(outputs, stats):
            assert all(0 <= t < VOCAB for t in tokens)
            assert sum(s.accept_lengths) == s.new_tokens == len(tokens) == 32


def test_from_args_takes_cpu_defaults_unless_given():
    model = make_tiny_llama(vocab_size=VOCAB)
    args = SimpleNamespace(recycling_topk=None, recycling_tree_nodes=None, recycling_tree_depth=None,
                           recycling_cold_start=False)
    drafter = TokenRecyclingDrafter.from_args(args, model, None)
    assert (drafter.tree_nodes, drafter.tree_depth) == (CPU_DEFAULTS["tree_nodes"], CPU_DEFAULTS["tree_depth"])
    assert GPU_DEFAULTS["tree_nodes"] == 80 and GPU_DEFAULTS["tree_depth"] == 6
    args.recycling_tree_nodes = 30
    assert TokenRecyclingDrafter.from_args(args, model, None).tree_nodes == 30
