"""DFlash: the block draft's maths, its context cache, chain and tree on the engine (greedy and
sampled), the z-lab and `speculators` layouts, the refusals, the command line and the trainer."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.dflash import CPU_DEFAULTS, GPU_DEFAULTS, DFlashDrafter, best_first_tree
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import ArtifactError
from methods.heads.dflash import DFlashDraftModel, DFlashShape, default_target_layer_ids
from methods.heads.dflash_format import load_dflash
from tests.engine_helpers import assert_sampling_uses_the_lossless_rule, baseline, random_prompts, run_turns
from tests.test_acceptance import assert_first_two_follow_the_model, sampling_check_model
from tests.test_eagle import randomised_and_bound
from tests.tiny_model import make_tiny_llama

VOCAB = 97
LAYERS = 6
MASK = 96
LAYER_IDS = (0, 2, 4)  # outputs of target layers 0, 2, 4 = inputs of layers 1, 3, 5
# A draft vocabulary with both edges of the target's and gaps between (our trained drafts' kind).
DRAFT_IDS = torch.tensor([0, 3, 4, 5, 9, 10, 11, 20, 33, 34, 50, 51, 52, 60, 70, 80, 90, 95, VOCAB - 1])


@pytest.fixture(scope="module")
def model():
    return make_tiny_llama(vocab_size=VOCAB, seed=0, layers=LAYERS)


def tiny_shape(model, layer_ids=LAYER_IDS, block_size=4, layers=2, draft_vocab_size=0) -> DFlashShape:
    c = model.config
    return DFlashShape(hidden_size=c.hidden_size, intermediate_size=48, num_attention_heads=c.num_attention_heads,
                       num_key_value_heads=c.num_key_value_heads, head_dim=c.hidden_size // c.num_attention_heads,
                       num_layers=layers, target_layer_ids=tuple(layer_ids), block_size=block_size,
                       mask_token_id=MASK, vocab_size=VOCAB, draft_vocab_size=draft_vocab_size,
                       rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_parameters["rope_theta"])


def random_draft(model, seed=0, draft_ids=None, scale=0.5, **shape) -> DFlashDraftModel:
    torch.manual_seed(seed)
    return randomised_and_bound(DFlashDraftModel(tiny_shape(model, **shape), draft_vocab=draft_ids), model, scale)


def layer_outputs(model, tokens, layer_ids):
    """Outputs of target layers ``layer_ids`` from a separate plain forward, side by side."""
    with torch.no_grad():
        states = model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
    return torch.cat([states[j + 1][0] for j in layer_ids], dim=-1)


def greedy_continuation(model, context, n):
    """The target's own next ``n`` greedy tokens after ``context`` (plain forwards, no cache)."""
    tokens = list(context)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(context):]


def steer(drafter, model, ranks=(0, 0, 0), margin=5.0):
    """Make the draft's logits rank the target's true continuation at ``ranks[r]`` in row r (0 =
    first, 1 = just below the draft's own best), so that steps accept several tokens and the
    context catch-up after long acceptances is exercised. The rest of the drafter runs as is."""
    draft = drafter.draft
    ids = list(range(VOCAB)) if draft.draft_vocab is None else draft.draft_vocab.tolist()
    column_of = {t: c for c, t in enumerate(ids)}
    real_logits, real_propose = draft.logits, drafter.propose
    current = {}

    def logits(hidden):
        out = real_logits(hidden).clone()
        truth = greedy_continuation(model, current["context"], min(len(out), len(ranks)))
        for r, token in enumerate(truth):
            if token in column_of:
                out[r, column_of[token]] = out[r].max() + (margin if ranks[r] == 0 else -1e-3)
        return out

    def propose(context, max_depth):
        current["context"] = list(context)
        return real_propose(context, max_depth)

    draft.logits, drafter.propose = logits, propose
    return drafter


# ---------------------------------------------------------------------------------- the block forward
def test_default_target_layers_follow_the_published_rule():
    assert default_target_layer_ids(36, 5) == (1, 9, 17, 25, 33)  # Qwen3-4B/8B, the shipped configs
    assert default_target_layer_ids(30, 5) == (1, 8, 14, 20, 27)  # rounded half to even: 20.5 -> 20
    assert default_target_layer_ids(30, 3) == (1, 14, 27)
    assert default_target_layer_ids(64, 10) == (1, 8, 14, 21, 28, 34, 41, 48, 54, 61)
    assert default_target_layer_ids(36, 1) == (18,)


def reference_logits(draft, model, features, context_positions, block, block_positions):
    """The DFlash block forward written out head by head from the parameters (no shared code)."""
    s = draft.shape
    p = {k: v.detach() for k, v in draft.named_parameters()}
    embed = model.get_input_embeddings().weight.detach()
    head = model.get_output_embeddings().weight.detach()

    def rms(x, weight):
        return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + s.rms_norm_eps)

    def rope(x, positions):
        half = s.head_dim // 2
        freq = s.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / s.head_dim)
        angle = torch.tensor(positions, dtype=torch.float64)[:, None] * freq
        x1, x2 = x[:, :half], x[:, half:]
        return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], dim=-1)

    c = rms(features @ p["fc.weight"].T, p["hidden_norm.weight"])
    x = embed[torch.tensor(block)]
    hd, group = s.head_dim, s.num_attention_heads // s.num_key_value_heads
    for i in range(s.num_layers):
        w = {k[len(f"layers.{i}."):]: v for k, v in p.items() if k.startswith(f"layers.{i}.")}
        h = rms(x, w["input_layernorm.weight"])
        heads = []
        for a in range(s.num_attention_heads):
            kv = a // group
            q = rope(rms(h @ w["self_attn.q_proj.weight"][a * hd:(a + 1) * hd].T, w["self_attn.q_norm.weight"]),
                     block_positions)
            wk, wv = w["self_attn.k_proj.weight"][kv * hd:(kv + 1) * hd], w["self_attn.v_proj.weight"][kv * hd:(kv + 1) * hd]
            keys = torch.cat([rope(rms(c @ wk.T, w["self_attn.k_norm.weight"]), context_positions),
                              rope(rms(h @ wk.T, w["self_attn.k_norm.weight"]), block_positions)])
            values = torch.cat([c @ wv.T, h @ wv.T])
            heads.append(torch.softmax(q @ keys.T / math.sqrt(hd), dim=-1) @ values)
        x = x + torch.cat(heads, dim=-1) @ w["self_attn.o_proj.weight"].T
        g = rms(x, w["post_attention_layernorm.weight"])
        x = x + (torch.nn.functional.silu(g @ w["mlp.gate_proj.weight"].T) * (g @ w["mlp.up_proj.weight"].T)) \
            @ w["mlp.down_proj.weight"].T
    return rms(x, p["norm.weight"]) @ head.T


def test_one_block_forward_matches_the_paper_maths_written_out(model):
    """Context rows enter as keys/values only (no input norm), block rows see everything both
    ways, queries at the block's positions and keys at the context's then the block's."""
    draft = random_draft(model, seed=1)
    tokens = [5, 9, 14, 3, 27, 31]
    features = layer_outputs(model, tokens, LAYER_IDS)
    block = [31, MASK, MASK, MASK]
    positions = list(range(6, 10))
    kv = draft.context_kv(features[None], torch.arange(6)[None])
    hidden = draft(draft.embed(torch.tensor([block])), torch.tensor([positions]), kv)
    torch.testing.assert_close(draft.logits(hidden[0]), reference_logits(draft, model, features, list(range(6)),
                                                                          block, positions))


def test_every_block_row_sees_the_rows_after_it_and_every_context_row(model):
    draft = random_draft(model, seed=2)
    features = layer_outputs(model, [5, 9, 14, 3], LAYER_IDS)
    positions = torch.arange(4, 8)[None]

    def rows(block_embeds, feats):
        return draft(block_embeds, positions, draft.context_kv(feats[None], torch.arange(4)[None]))[0]

    embeds = draft.embed(torch.tensor([[3, MASK, MASK, MASK]]))
    base = rows(embeds, features)
    later = embeds.clone()
    later[0, 3] += 1.0  # the last row changes: the first rows' outputs must too (no causal mask)
    assert not torch.allclose(rows(later, features)[1], base[1])
    early = features.clone()
    early[0] += 1.0  # the first context row changes: every block row sees it
    assert all(not torch.allclose(rows(embeds, early)[r], base[r]) for r in range(4))


# ---------------------------------------------------------------------------------- context on the engine
def test_the_context_cache_holds_exactly_the_committed_positions_before_the_root(engine, model):
    """At every step the cached keys/values equal the projection of the requested layers'
    outputs over context[:-1], taken from a separate plain forward, for several layer choices;
    the draft is steered to the truth so that steps accept several tokens."""
    for layer_ids in [LAYER_IDS, (4, 0), (1,)]:
        draft = random_draft(model, seed=3, layer_ids=layer_ids)
        drafter = DFlashDrafter(draft)
        assert drafter.hidden_state_request.layer_inputs == tuple(sorted({j + 1 for j in layer_ids}))
        checked, lengths = [], []
        real = drafter.propose

        def propose(context, max_depth, draft=draft, drafter=drafter, layer_ids=layer_ids, real=real):
            tree = real(context, max_depth)
            n = len(context) - 1
            if n:
                kv = draft.context_kv(layer_outputs(model, context[:-1], layer_ids)[None], torch.arange(n)[None])
                for (k, v), (ck, cv) in zip(kv, drafter.cache.layers()):
                    torch.testing.assert_close(ck, k, rtol=1e-7, atol=1e-7)
                    torch.testing.assert_close(cv, v, rtol=1e-7, atol=1e-7)
                checked.append(n)
            return tree

        drafter.propose = propose
        steer(drafter, model)
        run_turns(engine, drafter, [9, 14, 3, 22], DecodingConfig(max_new_tokens=12), lengths=lengths)
        assert len(checked) >= 4 and max(lengths) > 2


# ---------------------------------------------------------------------------------- lossless
@pytest.mark.parametrize("draft_ids,block_size,depth,tree_nodes,top_k", [
    (None, 4, None, 0, 1), (DRAFT_IDS, 2, None, 0, 1), (None, 8, 3, 0, 1), (DRAFT_IDS, 4, None, 6, 3),
    (None, 8, None, 12, 2)], ids=["chain-b4", "chain-b2-draft-vocab", "chain-b8-depth3", "tree-6x3-draft-vocab",
                                  "tree-12x2"])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, draft_ids, block_size, depth,
                                                                   tree_nodes, top_k):
    drafter = DFlashDrafter(random_draft(model, seed=4, draft_ids=draft_ids, block_size=block_size), depth=depth,
                            tree_nodes=tree_nodes, top_k=top_k)
    config = DecodingConfig(max_new_tokens=24)
    for prompt in random_prompts(3, VOCAB, seed=41):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


@pytest.mark.parametrize("tree_nodes", [0, 8], ids=["chain", "tree"])
def test_a_draft_that_knows_the_answer_is_accepted_block_by_block(engine, model, tree_nodes):
    """Rows 1..B-1 of the block are the tokens at P+1..P+B-1: a draft whose argmax is the truth
    commits the whole block every step (in the tree the truth is the first-ranked path)."""
    prompt = [7, 8, 9, 30, 31]
    config = DecodingConfig(max_new_tokens=25)
    drafter = steer(DFlashDrafter(random_draft(model, seed=5, block_size=5), tree_nodes=tree_nodes, top_k=2),
                    model, ranks=(0, 0, 0, 0))
    out, stats = engine.generate(prompt, drafter, config)
    assert out == baseline(engine, prompt, config) and stats.accept_lengths == [5] * 5


def test_the_tree_finds_the_truth_ranked_second_at_every_depth(engine, model):
    """Each depth takes its candidates from its own row, whatever the parent: with the truth
    second in every row, only the tree (not the chain) accepts more than the root's token."""
    prompt = [7, 8, 9, 30, 31]
    config = DecodingConfig(max_new_tokens=24)
    expected = baseline(engine, prompt, config)
    lengths = {}
    for tree_nodes in (0, 14):
        drafter = steer(DFlashDrafter(random_draft(model, seed=6, block_size=4), tree_nodes=tree_nodes, top_k=2),
                        model, ranks=(1, 1, 1))
        out, stats = engine.generate(prompt, drafter, config)
        assert out == expected
        lengths[tree_nodes] = stats.accept_lengths
    assert max(lengths[14]) == 4 and max(lengths[0]) <= 2


def test_a_small_tree_scores_only_the_rows_it_can_reach(engine, model, monkeypatch):
    """A tree of n nodes is at most n deep: the block forward reads n rows, not the chain's depth,
    and they are the first rows of the whole block's (up to the rounding of a product over fewer
    rows), so the tree is the one grown from all of them."""
    drafter = DFlashDrafter(random_draft(model, seed=9, block_size=6), tree_nodes=2, top_k=2)
    assert drafter.depth == 5 and drafter.max_draft_length() == 2
    read = []
    real = DFlashDrafter.block_logits

    def spy(self, context, depth):
        rows = real(self, context, depth)
        assert torch.allclose(rows, real(self, context, self.depth)[:depth], rtol=1e-9, atol=1e-9)
        read.append(depth)
        return rows

    monkeypatch.setattr(DFlashDrafter, "block_logits", spy)
    prompt = [7, 8, 9, 30, 31, 5]
    config = DecodingConfig(max_new_tokens=16)
    assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)
    assert max(read) == 2  # 1 where the token budget leaves one


def test_best_first_tree_keeps_the_highest_scoring_paths():
    scores = [[-0.1, -1.0, -2.5], [-0.3, -0.4, -3.0], [-0.2, -2.0, -2.1]]
    paths = {}
    for depth in range(1, 4):
        for ranks in itertools.product(range(3), repeat=depth):
            paths[ranks] = sum(scores[d][r] for d, r in enumerate(ranks))
    for budget in range(1, 12):
        nodes = best_first_tree(scores, budget)
        assert len(nodes) == budget
        taken = []
        for i, (depth, rank, parent) in enumerate(nodes):
            assert parent < i and depth == (0 if parent < 0 else nodes[parent][0] + 1)
            taken.append((() if parent < 0 else taken[parent]) + (rank,))
        cut = sorted(paths.values(), reverse=True)[budget - 1]
        assert all(paths[t] >= cut - 1e-12 for t in taken)  # the best ``budget`` paths (ties aside)
    assert best_first_tree(scores, 0) == [] and best_first_tree([], 3) == []


def test_sampling_goes_through_the_lossless_rule(engine, model, monkeypatch):
    for tree_nodes in (0, 6):
        drafter = DFlashDrafter(random_draft(model, seed=7, draft_ids=DRAFT_IDS), tree_nodes=tree_nodes, top_k=3)
        assert_sampling_uses_the_lossless_rule(engine, drafter, monkeypatch, random_prompts(2, VOCAB, seed=42))


def test_engine_sampling_matches_the_model_distribution():
    """End to end at T = 1, with a tree (sibling candidates, one-hot drafts): the first two
    sampled tokens follow the target's exact joint law."""
    model = sampling_check_model()
    c = model.config
    shape = DFlashShape(hidden_size=c.hidden_size, intermediate_size=48, num_attention_heads=c.num_attention_heads,
                        num_key_value_heads=c.num_key_value_heads, head_dim=c.hidden_size // c.num_attention_heads,
                        num_layers=1, target_layer_ids=(-1, -1), block_size=3, mask_token_id=6,
                        vocab_size=c.vocab_size, rope_theta=c.rope_parameters["rope_theta"])
    torch.manual_seed(8)
    draft = randomised_and_bound(DFlashDraftModel(shape), model, 0.3)
    assert_first_two_follow_the_model(model, DFlashDrafter(draft, tree_nodes=4, top_k=2))


# ---------------------------------------------------------------------------------- z-lab layout
def zlab_config(model, layer_ids=LAYER_IDS, block_size=4, layers=2) -> dict:
    c = model.config
    return {"architectures": ["DFlashDraftModel"], "model_type": "qwen3", "auto_map": {"AutoModel": "dflash.DFlashDraftModel"},
            "hidden_size": c.hidden_size, "intermediate_size": 48, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "head_dim": c.hidden_size // c.num_attention_heads,
            "num_hidden_layers": layers, "num_target_layers": LAYERS, "rms_norm_eps": c.rms_norm_eps,
            "rope_theta": c.rope_parameters["rope_theta"], "vocab_size": VOCAB, "block_size": block_size,
            "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False,
            "layer_types": ["full_attention"] * layers, "sliding_window": None,
            "dflash_config": {"mask_token_id": MASK, "target_layer_ids": list(layer_ids)}}


def write_folder(folder, config, state, shards=1):
    """config.json and the tensors as safetensors (one file, or shards with their index)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if shards == 1:
        save_file(state, str(folder / "model.safetensors"))
        return folder
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in names[i::shards]}
        save_file(part, str(folder / shard))
        weight_map.update({k: shard for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def zlab_tensors(model, seed=9, dtype=torch.bfloat16, **shape) -> dict:
    return {k: v.to(dtype).contiguous() for k, v in random_draft(model, seed=seed, **shape).state_dict().items()}


@pytest.mark.parametrize("shards", [1, 2], ids=["one-file", "sharded"])
def test_zlab_checkpoint_loads_into_the_right_places_and_drafts_losslessly(engine, model, tmp_path, shards):
    state = zlab_tensors(model)
    folder = write_folder(tmp_path / "zlab", zlab_config(model), state, shards=shards)
    draft = load_dflash(folder, model)
    mine = draft.state_dict()
    assert set(mine) == set(state)
    for key, tensor in state.items():
        torch.testing.assert_close(mine[key], tensor.to(torch.float64))
    assert draft.shape.target_layer_ids == LAYER_IDS and draft.feature_layers == (1, 3, 5)
    assert draft.block_size == 4 and draft.shape.mask_token_id == MASK and draft.draft_vocab is None
    assert next(draft.parameters()).dtype == torch.float64  # the target's dtype
    drafter = DFlashDrafter(draft, tree_nodes=5, top_k=2)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(2, VOCAB, seed=43):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


def test_later_zlab_configs_with_the_block_size_inside_dflash_config_load(model, tmp_path):
    config = zlab_config(model, block_size=99)
    config["dflash_config"]["block_size"] = 6
    draft = load_dflash(write_folder(tmp_path / "zlab", config, zlab_tensors(model)), model)
    assert draft.block_size == 6


def other_llama(hidden=32, vocab=VOCAB, layers=LAYERS):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=64, num_hidden_layers=layers,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)).double()


@pytest.mark.parametrize("target,message", [
    (lambda: other_llama(hidden=48), r"hidden size is 32, the target's 48.*another model"),
    (lambda: other_llama(vocab=120), r"target vocabulary is 97 tokens, this target's is 120"),
    (lambda: other_llama(layers=8), r"num_target_layers is 6, the target has 8 layers"),
], ids=["hidden", "vocab", "depth"])
def test_a_draft_for_another_model_is_refused_not_run(model, tmp_path, target, message):
    folder = write_folder(tmp_path / "zlab", zlab_config(model), zlab_tensors(model))
    with pytest.raises(ArtifactError, match=message):
        load_dflash(folder, target())


def _config(path, value):
    def change(state, config):
        *parents, key = path
        for p in parents:
            config = config[p]
        config[key] = value
    return change


@pytest.mark.parametrize("change,message", [
    (_config(["dflash_config", "target_layer_ids"], [0, 2, 5]), r"target layer ids \[0, 2, 5\].*-1 \.\. 4.*last layer"),
    (_config(["dflash_config", "target_layer_ids"], [0, 9]), r"target layer ids \[0, 9\]"),
    (_config(["dflash_config", "target_layer_ids"], "1,2"), r"target_layer_ids must be a non-empty list"),
    (_config(["dflash_config", "mask_token_id"], 200), r"mask_token_id 200 is not a row of the target's embeddings"),
    (_config(["dflash_config"], None), r"no dflash_config"),
    (_config(["layer_types"], ["full_attention", "sliding_attention"]), r"sliding_attention.*only full-attention"),
    (_config(["architectures"], ["DFlash2DraftModel"]), r"only DFlashDraftModel"),
    (_config(["dflash_config", "conv_kernel_size"], 4), r"DFlash2's dynamic convolutions"),
    (_config(["dflash_config", "projector_type"], "domino"), r"projector_type 'domino'"),
    (_config(["rope_scaling"], {"rope_type": "yarn", "factor": 4.0}), r"rope scaling"),
    (_config(["hidden_act"], "gelu"), r"hidden_act 'gelu'"),
    (_config(["output_multiplier"], 2.0), r"output_multiplier 2.0 is not implemented"),
    (_config(["num_hidden_layers"], 1), r"no place for: \['layers\.1\."),
    (_config(["num_hidden_layers"], "two"), r"num_hidden_layers is 'two', not a whole number"),
    (lambda s, c: s.pop("norm.weight"), r"tensor norm.weight is missing"),
    (lambda s, c: s.update({"fc.weight": torch.zeros(32, 64)}), r"fc.weight has shape \[32, 64\].*3 target features"),
    (lambda s, c: s.update({"layers.0.self_attn.q_norm.weight": torch.ones(5)}), r"q_norm.weight has shape \[5\]"),
    (lambda s, c: s.update({"candidate_selector.hidden_projection.weight": torch.zeros(4, 32)}),
     r"no place for: \['candidate_selector"),
    (lambda s, c: s.update({"lm_head.weight": torch.zeros(50, 32)}), r"lm_head.weight has shape \[50, 32\]"),
], ids=["last-layer", "layer-range", "layer-list", "mask-id", "no-dflash-config", "sliding", "dflash2", "conv",
        "domino", "rope", "act", "multiplier", "fewer-layers", "malformed", "missing", "fc-shape", "qnorm-shape",
        "selector", "head-shape"])
def test_inconsistent_zlab_drafts_are_refused_with_the_reason(model, tmp_path, change, message):
    state, config = zlab_tensors(model), zlab_config(model)
    change(state, config)
    with pytest.raises(ArtifactError, match=message):
        load_dflash(write_folder(tmp_path / "zlab", config, state), model)


def test_pickle_weights_are_refused(model, tmp_path):
    folder = tmp_path / "zlab"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(zlab_config(model)))
    torch.save(zlab_tensors(model), folder / "pytorch_model.bin")
    with pytest.raises(ArtifactError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors only"):
        load_dflash(folder, model)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"fc.weight": "pytorch_model.bin"}}))
    with pytest.raises(ArtifactError, match=r"shard pytorch_model.bin is not a safetensors file"):
        load_dflash(folder, model)


# ---------------------------------------------------------------------------------- speculators layout
def speculators_folder(folder, model, draft_ids=None, layer_ids=LAYER_IDS, change=None):
    """A speculators "dflash" folder: the body under the same keys, the verifier's embeddings copied,
    and with a reduced vocabulary the draft's own lm_head rows plus d2t/t2d."""
    c = model.config
    state = zlab_tensors(model, seed=10, dtype=torch.float16, layer_ids=layer_ids)
    state["embed_tokens.weight"] = model.get_input_embeddings().weight.detach().to(torch.float16)
    n = VOCAB if draft_ids is None else len(draft_ids)
    if draft_ids is not None:
        torch.manual_seed(11)
        state["lm_head.weight"] = torch.randn(n, c.hidden_size).to(torch.float16)
        state["d2t"] = draft_ids - torch.arange(n)
        t2d = torch.zeros(VOCAB, dtype=torch.bool)
        t2d[draft_ids] = True
        state["t2d"] = t2d
    layer = {k: v for k, v in zlab_config(model).items() if k not in ("architectures", "auto_map", "dflash_config",
                                                                      "num_target_layers", "block_size")}
    config = {"speculators_model_type": "dflash", "architectures": ["DFlashSpeculator"],
              "transformer_layer_config": layer, "draft_vocab_size": n, "block_size": 4, "target_hidden_size": None,
              "aux_hidden_state_layer_ids": [j + 1 for j in layer_ids], "mask_token_id": MASK,
              "sliding_window_non_causal": False, "sample_from_anchor": False, "projector_type": "dflash",
              "speculators_config": {"algorithm": "dflash", "default_proposal_method": "greedy",
                                     "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": 3}],
                                     "verifier": {"name_or_path": "tiny", "architectures": ["LlamaForCausalLM"]}},
              "speculators_version": "0.3.0"}
    if change is not None:
        change(state, config)
    return write_folder(folder, config, state), state


@pytest.mark.parametrize("draft_ids", [None, DRAFT_IDS], ids=["full-vocab", "reduced-vocab"])
def test_speculators_dflash_folder_loads_and_drafts_losslessly(engine, model, tmp_path, draft_ids):
    folder, state = speculators_folder(tmp_path / "spec", model, draft_ids=draft_ids, layer_ids=(4, 1))
    draft = load_dflash(folder, model)
    assert draft.shape.target_layer_ids == (4, 1) and draft.feature_layers == (5, 2)  # aux ids are j + 1
    torch.testing.assert_close(draft.layers[1].mlp.up_proj.weight, state["layers.1.mlp.up_proj.weight"].double())
    if draft_ids is None:
        assert draft.lm_head is None and draft.draft_vocab is None
    else:
        torch.testing.assert_close(draft.lm_head.weight, state["lm_head.weight"].double())
        assert draft.to_token_ids(torch.arange(len(draft_ids))).tolist() == draft_ids.tolist()
    drafter = DFlashDrafter(draft, tree_nodes=4, top_k=2)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(2, VOCAB, seed=44):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


@pytest.mark.parametrize("draft_ids,change,message", [
    (None, _config(["transformer_layer_config", "vocab_size"], 500), r"vocabulary size is 500.*another model"),
    (None, _config(["transformer_layer_config", "hidden_size"], 48), r"hidden size is 48.*another model"),
    (None, _config(["aux_hidden_state_layer_ids"], [2, LAYERS]), r"target layer ids \[1, 5\].*last layer"),
    (None, _config(["aux_hidden_state_layer_ids"], None), r"aux_hidden_state_layer_ids must be a non-empty list"),
    (None, _config(["sample_from_anchor"], True), r"sample_from_anchor=true \(DSpark"),
    (None, _config(["projector_type"], "domino"), r"projector_type 'domino'"),
    (None, _config(["mask_token_id"], None), r"needs mask_token_id"),
    (None, _config(["speculators_model_type"], "eagle3"), r"not a DFlash draft.*--method eagle"),
    (None, lambda s, c: s.update({"embed_tokens.weight": torch.zeros(50, 32)}), r"embed_tokens.weight has shape"),
    (DRAFT_IDS, lambda s, c: s.pop("d2t"), r"no d2t map"),
    (DRAFT_IDS, lambda s, c: s.pop("lm_head.weight"), r"lm_head.weight is missing"),
    (DRAFT_IDS, lambda s, c: s.update(d2t=s["d2t"] + 200), r"outside the target's vocabulary"),
], ids=["vocab", "hidden", "last-layer", "no-layers", "dspark", "domino", "no-mask", "eagle3", "embed", "no-d2t",
        "no-head", "d2t-range"])
def test_inconsistent_speculators_drafts_are_refused_with_the_reason(model, tmp_path, draft_ids, change, message):
    folder, _ = speculators_folder(tmp_path / "spec", model, draft_ids=draft_ids, change=change)
    with pytest.raises(ArtifactError, match=message):
        load_dflash(folder, model)


# ---------------------------------------------------------------------------------- command line
def options(**values):
    base = dict(model_path="embedded", dflash_path=None, dflash_block_size=None, dflash_depth=None,
                dflash_tree_nodes=None, dflash_top_k=None, method="dflash")
    return SimpleNamespace(**{**base, **values})


def test_options_are_checked_before_loading(tmp_path):
    with pytest.raises(ValueError, match="--dflash-path"):
        DFlashDrafter.check_args(options(dflash_path=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="--dflash-block-size 1: must be at least 2"):
        DFlashDrafter.check_args(options(dflash_block_size=1))
    with pytest.raises(ValueError, match="--dflash-depth 4: a block of 4 drafts at most 3"):
        DFlashDrafter.check_args(options(dflash_block_size=4, dflash_depth=4))
    with pytest.raises(ValueError, match="--dflash-top-k 0"):
        DFlashDrafter.check_args(options(dflash_top_k=0))


def test_from_args_reads_the_folder_and_the_options(model, tmp_path):
    folder = write_folder(tmp_path / "zlab", zlab_config(model, block_size=6), zlab_tensors(model))
    drafter = DFlashDrafter.from_args(options(model_path="tiny", dflash_path=str(folder)), model, None)
    assert (drafter.block_size, drafter.depth, drafter.tree_nodes) == (6, CPU_DEFAULTS["depth"],
                                                                        CPU_DEFAULTS["tree_nodes"])
    # The GPU default verifies the whole block; a CPU default deeper than a smaller block is cut to it.
    assert GPU_DEFAULTS["depth"] is None and DFlashDrafter(drafter.draft).depth == 5
    drafter = DFlashDrafter.from_args(options(model_path="tiny", dflash_path=str(folder), dflash_block_size=2),
                                      model, None)
    assert (drafter.block_size, drafter.depth) == (2, 1)
    drafter = DFlashDrafter.from_args(options(model_path="tiny", dflash_path=str(folder)), model, None)
    params = drafter.params()
    assert params["target_layer_ids"] == list(LAYER_IDS) and params["mask_token_id"] == MASK
    assert (params["tree_nodes"], params["top_k"]) == (CPU_DEFAULTS["tree_nodes"], CPU_DEFAULTS["top_k"])
    chain = DFlashDrafter.from_args(options(model_path="tiny", dflash_path=str(folder), dflash_tree_nodes=0), model,
                                    None)
    assert chain.tree_nodes == 0 and "top_k" not in chain.params()  # a chain records no top-k
    drafter = DFlashDrafter.from_args(options(model_path="tiny", dflash_path=str(folder), dflash_block_size=3,
                                              dflash_tree_nodes=5, dflash_top_k=2), model, None)
    assert (drafter.block_size, drafter.depth, drafter.tree_nodes, drafter.params()["top_k"]) == (3, 2, 5, 2)
    with pytest.raises(ArtifactError, match="--dflash-depth 6: a block of 6 drafts at most 5"):
        DFlashDrafter.from_args(options(model_path="tiny", dflash_path=str(folder), dflash_depth=6), model, None)


def test_from_args_refuses_a_non_embedded_model_without_a_draft(model):
    with pytest.raises(ArtifactError, match="--dflash-path"):
        DFlashDrafter.from_args(options(model_path="/somewhere/else"), model, None)


# ---------------------------------------------------------------------------------- training
def train_args(folder, corpus, out, *extra):
    return ["--method", "dflash", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
            "--epochs", "3", "--batch-size", "32", "--dflash-target-layers", "0", "--dflash-block-size", "4",
            "--dflash-intermediate", "48", "--dflash-draft-vocab", "40", "--dflash-anchors", "12", "--no-progress",
            *extra]


def test_trainer_writes_a_draft_that_loads_and_drafts_losslessly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from methods.core.model_loading import load_model
    from methods.heads.artifact import BaseMismatchError
    from tests.test_inference import save_tiny_model
    from tests.test_train_drafter import tiny_training_setup
    from training.train_drafter import main

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "dflash"
    assert main(train_args(folder, corpus, out)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "dflash" and config["dflash_config"]["target_layer_ids"] == [0]
    assert config["block_size"] == 4 and config["num_target_layers"] == 2 and config["draft_vocab_tokens"] <= 40
    mask = config["dflash_config"]["mask_token_id"]
    assert mask not in (1, 2)  # neither bos nor eos
    epochs = config["metrics"]["heldout"]
    assert len(epochs) == 3 and all(1 >= e["top1"][0] >= e["top1"][1] >= e["top1"][2] >= 0 for e in epochs)
    assert all(e["mean_accepted"] == pytest.approx(1 + sum(e["top1"]), abs=1e-3) for e in epochs)
    state = load_file(str(out / "model.safetensors"))
    assert "embed_tokens.weight" not in state and "lm_head.weight" not in state
    assert state["draft_vocab"].dtype == torch.int32 and len(state["draft_vocab"]) == config["draft_vocab_tokens"]
    assert all(v.dtype == torch.float16 for k, v in state.items() if k != "draft_vocab")
    readme = (out / "README.md").read_text()
    assert "depth 1-3" in readme and "mean accepted" in readme and "--method dflash" in readme
    assert not (out / "training-checkpoint.pt").exists()  # the run finished: no checkpoint left behind

    draft = load_dflash(out, loaded.model)
    assert draft.shape.mask_token_id == mask and draft.feature_layers == (1,)
    engine = SpeculativeEngine(loaded.model)
    decoding = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(3, VOCAB, seed=50):
        for drafter in (DFlashDrafter(draft), DFlashDrafter(draft, tree_nodes=5, top_k=2)):
            assert engine.generate(prompt, drafter, decoding)[0] == engine.generate(prompt, VanillaDrafter(), decoding)[0]
    other = load_model(str(save_tiny_model(tmp_path / "other", seed=1)), dtype="float32", device="cpu")
    with pytest.raises(BaseMismatchError, match="another base"):
        load_dflash(out, other.model)


def test_an_interrupted_run_resumes_to_the_weights_of_one_that_never_stopped(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from tests.test_train_drafter import interrupt_then_resume, tiny_training_setup
    from training.recipes.dflash import DFlashRecipe
    from training.train_drafter import main

    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(folder, corpus, straight, "--checkpoint-minutes", "0")) == 0

    # Crash on the seventeenth step, in the middle of the second epoch.
    interrupt_then_resume(monkeypatch, DFlashRecipe, main, train_args(folder, corpus, resumed), 17, ["--lr", "0.01"])

    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    one, two = (json.loads((f / "config.json").read_text()) for f in (straight, resumed))
    assert one["metrics"] == two["metrics"] and "--resume" not in two["training"]["command"]


def test_the_trainer_trains_exactly_the_block_the_drafter_runs(model):
    """For every anchor of a conversation, the recipe's batched training forward (all blocks at
    once, block-diagonal visibility over the whole conversation's context) gives the logits the
    drafter computes when that anchor's token is the root of a step."""
    from methods.core.drafter import DecodingConfig as Config, DraftSession
    from methods.core.hidden_states import HiddenStates
    from training.features import Features
    from training.recipes.dflash import DFlashRecipe
    from training.train_drafter import build_parser

    torch.manual_seed(12)
    tokens = [int(t) for t in torch.randint(3, VOCAB - 1, (30,))]
    with torch.no_grad():
        states = model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
    layers = {j + 1: states[j + 1][0].float().numpy() for j in LAYER_IDS}
    answer = np.zeros(len(tokens), dtype=bool)
    answer[9:] = True
    features = Features(tokens=np.array(tokens, dtype=np.int32), answer=answer, starts=np.array([0, len(tokens)]),
                        heldout=np.array([False]), final=None, layer_inputs=layers, folder=None)
    args = build_parser().parse_args(["--method", "dflash", "--out", "unused", "--dflash-target-layers", "0,2,4",
                                      "--dflash-block-size", "5", "--dflash-intermediate", "48",
                                      "--dflash-draft-vocab", "0", "--dflash-layers", "2"])
    recipe = DFlashRecipe(args)
    recipe.prepare(model)
    draft = recipe.build(model, features, torch.Generator().manual_seed(0)).double()
    randomised_and_bound(draft, model, 0.5)  # away from the initial weights, so that rows differ
    recipe.features = [f.astype(np.float64) for f in recipe.features]
    anchors = np.array([8, 11, 12, 20, 28])  # the last one has no room for a whole block
    feats, block_tokens, positions, labels, weights, visible = recipe._tensors([(0, anchors)])
    with torch.no_grad():
        trained = draft.logits(recipe._hidden(feats.double(), block_tokens, positions, visible))[0]
    assert labels[0, 4 * 5 + 2:].eq(-1).all() and weights[0, 4 * 5 + 2:].eq(0).all()  # past the end: no label
    drafter = DFlashDrafter(draft)
    for j, anchor in enumerate(anchors.tolist()):
        session = DraftSession(model=model, config=Config(), device=torch.device("cpu"), dtype=torch.float64,
                               vocab_size=VOCAB, prompt_features=HiddenStates(layer_inputs={
                                   i: torch.from_numpy(v[:anchor]).double() for i, v in layers.items()}))
        drafter.begin(tokens[: anchor + 1], session)
        with torch.no_grad():
            drafted = drafter.block_logits(tokens[: anchor + 1], 4)
        torch.testing.assert_close(drafted, trained[j * 5 + 1: (j + 1) * 5])


def test_a_deeper_draft_started_from_a_shallower_one_begins_where_it_was(tmp_path, monkeypatch):
    """--init-from with more --dflash-layers than the artifact: its layers come first and the added
    one passes its input through (zero output projections), so before any step the deeper draft
    gives the artifact's logits; at learning rate 0 the artifact's layer is written back unchanged."""
    from safetensors.torch import load_file

    from tests.test_train_drafter import tiny_training_setup
    from training.train_drafter import main

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    shallow, deep = tmp_path / "one-layer", tmp_path / "two-layers"
    assert main(train_args(folder, corpus, shallow, "--max-steps", "4", "--lr", "3e-2")) == 0
    assert main(train_args(folder, corpus, deep, "--dflash-layers", "2", "--init-from", str(shallow),
                           "--max-steps", "1", "--lr", "0")) == 0
    before, after = load_file(str(shallow / "model.safetensors")), load_file(str(deep / "model.safetensors"))
    assert set(after) - set(before) and all(k.startswith("layers.1.") for k in set(after) - set(before))
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert not after["layers.1.self_attn.o_proj.weight"].any() and not after["layers.1.mlp.down_proj.weight"].any()
    assert after["layers.1.self_attn.q_proj.weight"].any()  # the rest of the layer is initialised as usual
    record = json.loads((deep / "config.json").read_text())["training"]["initialised_from"]
    assert record["started_as_identity"] == len(set(after) - set(before))
    assert "started as identities" in (deep / "README.md").read_text()

    one, two = load_dflash(shallow, loaded.model), load_dflash(deep, loaded.model)
    assert two.shape.num_layers == 2 and one.shape.num_layers == 1
    prompt = random_prompts(1, VOCAB, seed=51)[0]
    engine = SpeculativeEngine(loaded.model)
    outputs = [engine.generate(prompt, DFlashDrafter(d), DecodingConfig(max_new_tokens=12)) for d in (one, two)]
    assert outputs[0][0] == outputs[1][0] and outputs[0][1].accept_lengths == outputs[1][1].accept_lengths


def test_init_from_refuses_a_shallower_draft_than_the_artifact(tmp_path, monkeypatch, capsys):
    from tests.test_train_drafter import tiny_training_setup
    from training.train_drafter import main

    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    deep = tmp_path / "two-layers"
    assert main(train_args(folder, corpus, deep, "--dflash-layers", "2", "--max-steps", "1")) == 0
    with pytest.raises(SystemExit):
        main(train_args(folder, corpus, tmp_path / "one", "--init-from", str(deep), "--max-steps", "1"))
    assert "has no place for layers.1." in capsys.readouterr().err
