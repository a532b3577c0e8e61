"""Medusa: choices trees, typical acceptance, the drafter on the engine, both weight formats."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import methods.core.engine as engine_module
from methods.core.acceptance import accept_typical
from methods.core.drafter import DecodingConfig
from methods.core.static_tree import MC_SIM_7B_63, ChoicesError, StaticTree, best_first_choices, parse_choices
from methods.core.tree import DraftTree
from methods.drafters.medusa import CPU_CHOICES, MedusaDrafter
from methods.heads.artifact import ArtifactError, BaseMismatchError, base_fingerprint, check_base
from methods.heads.medusa import MedusaHeads, load_medusa
from tests.engine_helpers import assert_sampling_uses_the_lossless_rule, baseline, random_prompts, run_turns
from tests.tiny_model import make_tiny_llama

VOCAB = 97
HIDDEN = 32  # tests/tiny_model.py


def random_heads(model, num_heads=4, num_layers=1, seed=0, own_projection=False):
    torch.manual_seed(seed)
    heads = MedusaHeads(HIDDEN, num_heads, num_layers, own_projection_vocab=VOCAB if own_projection else None)
    with torch.no_grad():
        for block in heads.blocks:
            block.linear.weight.normal_(0, 0.3)
        if own_projection:
            for p in heads.projections:
                p.normal_(0, 2.0)
    heads.to(torch.float64)
    heads.bind(model)
    return heads


# ---------------------------------------------------------------------------------- choices trees
def test_mc_sim_7b_63_has_the_published_shape():
    tree = StaticTree(MC_SIM_7B_63)
    assert len(tree) == 63 and tree.nodes_per_depth() == [10, 28, 23, 2] and tree.topk == 10
    internal = set(tree.parents.tolist()) - {-1}
    assert len(internal) == 21 and len(tree) - len(internal) == 42
    assert StaticTree(CPU_CHOICES).max_depth <= 4


def test_choices_become_a_tree_ordered_by_depth_then_path():
    tree = StaticTree([[1], [0, 0], [0], [0, 1], [0, 0, 0]])
    assert tree.paths == [(0,), (1,), (0, 0), (0, 1), (0, 0, 0)]
    assert tree.parents.tolist() == [-1, -1, 0, 0, 2]
    assert tree.ranks.tolist() == [0, 1, 0, 1, 0] and tree.depths.tolist() == [1, 1, 2, 2, 3]
    assert tree.truncated(2).paths == tree.paths[:4]


@pytest.mark.parametrize("bad", [[[0, 1]], [[0], [0]], [[]], [[-1]], []])
def test_bad_choices_are_refused(bad):
    with pytest.raises(ChoicesError):
        StaticTree(bad)


def test_choices_from_the_command_line():
    assert parse_choices("[[0], [0, 0], (1,)]") == [[0], [0, 0], [1]]
    with pytest.raises(ChoicesError):
        parse_choices("[[0], oops]")


def test_medusa_filling_takes_the_rank_r_token_of_head_d_minus_1():
    tree = StaticTree([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]])
    top = torch.tensor([[10, 11], [20, 21], [30, 31]])
    draft = tree.fill_by_depth(top)
    assert draft.tokens.tolist() == [10, 11, 20, 21, 20, 30]  # same token whatever the parent
    assert draft.parents.tolist() == tree.parents.tolist()
    shallow = tree.fill_by_depth(top[:2])  # only two heads: depth 3 is left out
    assert shallow.tokens.tolist() == [10, 11, 20, 21, 20]


def test_best_first_choices_keep_the_most_valuable_prefix_closed_paths():
    value = {(0,): 0.5, (1,): 0.2, (0, 0): 0.3, (0, 1): 0.05, (1, 0): 0.1, (2, 0): 0.4, (2,): 0.01}
    assert best_first_choices(value, 3) == [[0], [0, 0], [1]]
    chosen = best_first_choices(value, 7)
    assert all(p[:-1] in [q for q in chosen] or len(p) == 1 for p in chosen)
    assert chosen.index([2]) < chosen.index([2, 0])  # a child never comes before its parent


def test_offline_tree_sizing_counts_the_longest_path_in_the_tree():
    import numpy as np

    from training.size_medusa_tree import accepted_depth, forward_cost, parse_cost, path_frequencies

    ranks = np.array([[0, 0, -1], [1, 0, 0], [0, 2, 0], [-1, 0, 0], [0, -2, -2]])
    tree = {(0,), (0, 0), (1,), (0, 2), (0, 2, 0)}
    assert accepted_depth(ranks, tree).tolist() == [2, 1, 3, 0, 1]
    freq = path_frequencies(ranks)
    assert freq[(0,)] == 0.6 and freq[(0, 2, 0)] == 0.2 and (0, 0, -1) not in freq
    cost = parse_cost("1:65,4:130")
    assert forward_cost(2, cost) == pytest.approx(65 + 65 / 3) and forward_cost(5, cost) is None


# ---------------------------------------------------------------------------------- typical acceptance
def test_typical_acceptance_keeps_probable_tokens_and_prefers_the_likelier_path():
    logits = torch.full((4, 5), -10.0, dtype=torch.float64)
    logits[0, 1], logits[0, 2] = 3.0, 2.9  # root: two nearly equally likely children
    logits[1, 3] = 5.0  # after node 0 (token 1): token 3 is sure
    logits[2, 4] = 5.0  # after node 1 (token 2): token 4 is sure
    tree = DraftTree(torch.tensor([1, 2, 4]), torch.tensor([-1, -1, 1]))
    config = DecodingConfig(temperature=1.0)
    result = accept_typical(tree, logits, config, torch.Generator().manual_seed(0))
    assert result.accepted_nodes == [1, 2]  # the only depth-2 path
    tree = DraftTree(torch.tensor([1, 2, 3, 4]), torch.tensor([-1, -1, 0, 1]))
    logits = torch.cat([logits, logits[-1:]])
    result = accept_typical(tree, logits, config, torch.Generator().manual_seed(0))
    assert result.accepted_nodes == [0, 2]  # two depth-2 paths: the one through the likelier root child
    improbable = DraftTree(torch.tensor([0]), torch.tensor([-1]))
    assert accept_typical(improbable, logits[:2], config, None).accepted_nodes == []


# ---------------------------------------------------------------------------------- the drafter
@pytest.mark.parametrize("choices", [MC_SIM_7B_63, CPU_CHOICES, [[0], [0, 0], [0, 0, 0], [0, 0, 0, 0], [1]]],
                         ids=["mc_sim_7b_63", "cpu", "chain-ish"])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, choices):
    drafter = MedusaDrafter(random_heads(model), choices=choices)
    vanilla_config = DecodingConfig(max_new_tokens=24)
    for prompt in random_prompts(4, VOCAB, seed=21):
        expected = run_turns(engine, engine_module_vanilla(), prompt, vanilla_config)
        assert run_turns(engine, drafter, prompt, vanilla_config) == expected


def engine_module_vanilla():
    from methods.drafters.vanilla import VanillaDrafter

    return VanillaDrafter()


def test_heads_read_the_feature_of_the_last_accepted_position(engine, model):
    """Every draft comes from the final hidden state at the position before the root."""

    class Recording(MedusaHeads):
        def top_tokens(self, feature, k):
            seen.append((feature.clone(), list(current[-1])))
            return super().top_tokens(feature, k)

    seen, current = [], []
    heads = random_heads(model)
    heads.__class__ = Recording
    drafter = MedusaDrafter(heads, choices=CPU_CHOICES)
    real_propose = drafter.propose
    drafter.propose = lambda context, max_depth: (current.append(context), real_propose(context, max_depth))[1]
    prompt = random_prompts(3, VOCAB, seed=5)[2]
    engine.generate(prompt, drafter, DecodingConfig(max_new_tokens=10))
    assert len(seen) >= 5
    for feature, context in seen:
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([context[:-1]]), output_hidden_states=True).hidden_states
        torch.testing.assert_close(feature, hs[-1][0, -1], rtol=1e-9, atol=1e-9)


def test_sampling_goes_through_the_shared_lossless_acceptance(engine, model, monkeypatch):
    assert_sampling_uses_the_lossless_rule(engine, MedusaDrafter(random_heads(model), choices=CPU_CHOICES), monkeypatch,
                                           random_prompts(2, VOCAB, seed=8))


def test_typical_acceptance_marks_the_run_lossy_and_replaces_the_rule(engine, model, monkeypatch):
    drafter = MedusaDrafter(random_heads(model), choices=CPU_CHOICES, typical=True, posterior_threshold=0.2)
    assert drafter.lossy is True and drafter.params()["typical"] is True
    monkeypatch.setattr(engine_module, "accept_sampling", lambda *a: pytest.fail("lossless rule used"))
    out, stats = engine.generate([5, 6, 7, 8], drafter, DecodingConfig(max_new_tokens=12, temperature=1.0), seed=1)
    assert len(out) == 12
    # Greedy decoding never uses it: output stays the baseline's.
    greedy = DecodingConfig(max_new_tokens=12)
    assert engine.generate([5, 6, 7, 8], drafter, greedy)[0] == baseline(engine, [5, 6, 7, 8], greedy)


def test_from_args_refuses_a_non_embedded_model_without_heads(model):
    args = SimpleNamespace(model_path="/somewhere/else", medusa_path=None, medusa_choices=None)
    with pytest.raises(ArtifactError, match="--medusa-path"):
        MedusaDrafter.from_args(args, model, None)


# ---------------------------------------------------------------------------------- published format
def write_published(folder, heads_count=5, layers=1, declared=2, suffix=".pt", seed=0, hidden=HIDDEN,
                    vocab=VOCAB, corrupt=None):
    """A FasterDecoding Medusa folder with random weights (the published config's head count is wrong)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k in range(heads_count):
        weight, bias = torch.randn(hidden, hidden, generator=g) * 0.3, torch.randn(hidden, generator=g) * 0.1
        for j in range(layers):  # one shared block, repeated under every index
            state[f"{k}.{j}.linear.weight"], state[f"{k}.{j}.linear.bias"] = weight, bias
        state[f"{k}.{layers}.weight"] = torch.randn(vocab, hidden, generator=g)
    state = {k: v.to(torch.float16) for k, v in state.items()}
    if corrupt:
        state[corrupt] = torch.zeros(3, dtype=torch.float16)
    (folder / "config.json").write_text(json.dumps({
        "base_model_name_or_path": "tiny", "medusa_num_heads": declared, "medusa_num_layers": layers,
        "transformers_version": "4.33.0"}))
    if suffix == ".pt":
        torch.save(state, folder / "medusa_lm_head.pt")
    else:
        from safetensors.torch import save_file

        save_file({k: v.clone() for k, v in state.items()}, str(folder / "medusa_lm_head.safetensors"))
    return folder


@pytest.mark.parametrize("suffix,layers", [(".pt", 1), (".safetensors", 1), (".pt", 2)])
def test_published_checkpoint_loads_with_the_head_count_from_its_keys(engine, model, tmp_path, suffix, layers):
    folder = write_published(tmp_path / "medusa", suffix=suffix, layers=layers)
    with pytest.warns(UserWarning, match="medusa_num_heads=2"):
        heads = load_medusa(folder, model)
    assert heads.num_heads == 5 and heads.num_layers == layers and heads.projections is not None
    assert heads.blocks[0].linear.weight.dtype == torch.float64
    drafter = MedusaDrafter(heads, choices=MC_SIM_7B_63)
    config = DecodingConfig(max_new_tokens=20)
    for prompt in random_prompts(3, VOCAB, seed=31):
        expected = run_turns(engine, engine_module_vanilla(), prompt, config)
        assert run_turns(engine, drafter, prompt, config) == expected


def test_published_projection_is_used_for_the_drafts(model, tmp_path):
    heads = load_medusa(write_published(tmp_path / "m"), model)
    feature = torch.randn(HIDDEN, dtype=torch.float64)
    top = heads.top_tokens(feature, 3)
    h = heads.head_features(feature)
    for k in range(5):
        assert top[k].tolist() == (h[k] @ heads.projections[k].T).topk(3).indices.tolist()


@pytest.mark.parametrize("corrupt", ["2.0.linear.bias", "4.1.weight", "0.0.linear.weight"])
def test_a_shape_mismatch_names_the_tensor(model, tmp_path, corrupt):
    folder = write_published(tmp_path / "bad", corrupt=corrupt)
    with pytest.raises(ArtifactError, match=corrupt.replace(".", r"\.")):
        with pytest.warns(UserWarning):
            load_medusa(folder, model)


def test_heads_for_another_hidden_size_are_refused(model, tmp_path):
    folder = write_published(tmp_path / "wide", hidden=48)
    with pytest.raises(ArtifactError, match=r"0\.0\.linear\.weight has shape \[48, 48\]"):
        with pytest.warns(UserWarning):
            load_medusa(folder, model)


def test_missing_weights_file_is_a_clear_error(model, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="medusa_lm_head"):
        load_medusa(tmp_path, model)


# ---------------------------------------------------------------------------------- fingerprint
def test_fingerprint_accepts_the_same_base_in_another_dtype_and_refuses_another_base(model):
    saved = base_fingerprint(model)
    check_base(saved, make_tiny_llama(vocab_size=VOCAB, seed=0, dtype=torch.float32), "heads")
    check_base(saved, make_tiny_llama(vocab_size=VOCAB, seed=0, dtype=torch.bfloat16), "heads")
    with pytest.raises(BaseMismatchError, match="another base"):
        check_base(saved, make_tiny_llama(vocab_size=VOCAB, seed=1), "heads")
    with pytest.raises(BaseMismatchError):
        check_base(saved, make_tiny_llama(vocab_size=VOCAB, seed=0, layers=3), "heads")
