"""Hydra: grounded level-by-level drafting on the engine, the published and trained formats, training."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import methods.core.engine as engine_module
import methods.drafters.hydra as hydra_drafter_module
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.static_tree import MC_SIM_7B_63
from methods.drafters.hydra import CPU_CHOICES, HydraDrafter
from methods.drafters.medusa import MedusaDrafter
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import ArtifactError, BaseMismatchError, base_fingerprint, save_artifact
from methods.heads.hydra import HydraHeads, PrefixCache, PrefixLayer, load_hydra
from methods.heads.medusa import load_medusa
from tests.engine_helpers import assert_sampling_uses_the_lossless_rule, baseline, random_prompts, run_turns
from tests.tiny_model import make_tiny_llama

VOCAB = 97
HIDDEN = 32  # tests/tiny_model.py
DEEP = [[0], [0, 0], [0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1], [0, 1], [1, 0], [0, 0, 1]]


def random_heads(model, num_heads=4, num_layers=1, grounded=True, seed=0):
    """Shared-projection heads with random weights; the embedding columns are scaled up so that the
    tiny model's small embeddings (std 0.02) really move the drafts."""
    torch.manual_seed(seed)
    heads = HydraHeads(HIDDEN, num_heads, num_layers, grounded=grounded)
    with torch.no_grad():
        for head in heads.heads:
            for block in (head.first, head.shared):
                if block is None:
                    continue
                block.linear.weight.normal_(0, 0.3)
                if hasattr(block, "res_connection"):
                    block.res_connection.weight.normal_(0, 0.3)
                    block.res_connection.weight[:, HIDDEN:] *= 25
                    block.linear.weight[:, HIDDEN:] *= 25
    heads.to(torch.float64)
    heads.bind(model)
    return heads


def assert_baseline_output(engine, drafter, prompts=4, seed=21, max_new_tokens=24):
    config = DecodingConfig(max_new_tokens=max_new_tokens)
    lengths = []
    for prompt in random_prompts(prompts, VOCAB, seed=seed):
        expected = run_turns(engine, VanillaDrafter(), prompt, config)
        assert run_turns(engine, drafter, prompt, config, lengths=lengths) == expected
    return lengths


# ---------------------------------------------------------------------------------- drafting
@pytest.mark.parametrize("choices,num_heads", [(MC_SIM_7B_63, 4), (CPU_CHOICES, 4), (DEEP, 6)],
                         ids=["mc_sim_7b_63", "cpu", "deep"])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, choices, num_heads):
    lengths = assert_baseline_output(engine, HydraDrafter(random_heads(model, num_heads), choices=choices))
    if choices is MC_SIM_7B_63:
        assert max(lengths) >= 2  # drafts were accepted, so accepted paths were exercised


@pytest.mark.parametrize("num_layers,grounded", [(3, True), (2, False)], ids=["3-layers", "ungrounded"])
def test_greedy_output_is_the_baseline_with_other_head_shapes(engine, model, num_layers, grounded):
    heads = random_heads(model, num_layers=num_layers, grounded=grounded)
    assert_baseline_output(engine, HydraDrafter(heads, choices=MC_SIM_7B_63), prompts=2)


def path_by_path(heads, context_feature, root, choices):
    """The definition, node by node: the token at [..., r] is the rank-r token of head d-1 fed with
    g, E(root) and the embeddings of the tokens on the path to the parent."""
    tokens = {}
    for path in sorted(map(tuple, choices), key=lambda p: (len(p), p)):
        on_path = [root] + [tokens[path[:j]] for j in range(1, len(path))]
        inputs = torch.cat([context_feature] + [heads.embed(torch.tensor([t]))[0] for t in on_path])
        tokens[path] = int(heads.top_tokens(len(path) - 1, inputs, path[-1] + 1)[path[-1]])
    return tokens


def test_grounded_filling_conditions_every_node_on_its_parent_path(model):
    heads = random_heads(model)
    drafter = HydraDrafter(heads, choices=MC_SIM_7B_63)
    session = SimpleNamespace(model=model, prompt_features=None)
    drafter.begin([5], session)
    differ = 0
    for seed in range(3):
        drafter._context = torch.randn(HIDDEN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        tree = drafter.propose([3, 4, 5], max_depth=10)
        expected = path_by_path(heads, drafter._context, 5, MC_SIM_7B_63)
        assert tree.tokens.tolist() == [expected[p] for p in drafter.tree.paths]
        assert tree.parents.tolist() == drafter.tree.parents.tolist()
        # Unlike Medusa, the rank-0 children of different parents differ.
        differ += len({expected[(r, 0)] for r in range(10)}) > 1
    assert differ == 3
    # A shallower budget drafts only the levels it can use.
    assert drafter.propose([3, 4, 5], max_depth=2).depth.max() == 2


def test_heads_read_the_feature_of_the_last_accepted_position(engine, model):
    seen = []
    drafter = HydraDrafter(random_heads(model), choices=CPU_CHOICES)
    real_propose = drafter.propose
    drafter.propose = lambda context, max_depth: (seen.append((drafter._context.clone(), list(context))),
                                                  real_propose(context, max_depth))[1]
    engine.generate(random_prompts(3, VOCAB, seed=5)[2], drafter, DecodingConfig(max_new_tokens=10))
    assert len(seen) >= 5
    for feature, context in seen:
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([context[:-1]]), output_hidden_states=True).hidden_states
        torch.testing.assert_close(feature, hs[-1][0, -1], rtol=1e-9, atol=1e-9)


def test_sampling_goes_through_the_shared_lossless_acceptance(engine, model, monkeypatch):
    assert_sampling_uses_the_lossless_rule(engine, HydraDrafter(random_heads(model), choices=MC_SIM_7B_63), monkeypatch,
                                           random_prompts(2, VOCAB, seed=8))


def test_typical_acceptance_marks_the_run_lossy_and_replaces_the_rule(engine, model, monkeypatch):
    drafter = HydraDrafter(random_heads(model), choices=CPU_CHOICES, typical=True, posterior_threshold=0.2)
    params = drafter.params()
    assert drafter.lossy is True and params["typical"] is True and params["posterior_threshold"] == 0.2
    monkeypatch.setattr(engine_module, "accept_sampling", lambda *a: pytest.fail("lossless rule used"))
    out, _ = engine.generate([5, 6, 7, 8], drafter, DecodingConfig(max_new_tokens=12, temperature=1.0), seed=1)
    assert len(out) == 12
    greedy = DecodingConfig(max_new_tokens=12)
    assert engine.generate([5, 6, 7, 8], drafter, greedy)[0] == baseline(engine, [5, 6, 7, 8], greedy)


def test_params_record_the_heads_and_the_tree(model):
    params = HydraDrafter(random_heads(model, num_heads=3), choices=MC_SIM_7B_63, choices_name="mc_sim_7b_63").params()
    assert params == {"heads": "in memory", "num_heads": 3, "num_layers": 1, "arch": "mlp", "grounded": True,
                      "choices": "mc_sim_7b_63", "tree_nodes": 61, "tree_nodes_per_depth": [10, 28, 23],
                      "typical": False}


# ---------------------------------------------------------------------------------- command line
def test_from_args_refuses_a_non_embedded_model_without_heads(model):
    args = SimpleNamespace(model_path="/somewhere/else", hydra_path=None, hydra_choices=None)
    with pytest.raises(ArtifactError, match="--hydra-path"):
        HydraDrafter.from_args(args, model, None)


def test_missing_default_heads_are_a_clear_error(model, tmp_path, monkeypatch):
    monkeypatch.setattr(hydra_drafter_module, "EMBEDDED_HEADS", tmp_path / "no-such-hydra")
    args = SimpleNamespace(model_path="embedded", hydra_path=None, hydra_choices=None)
    for call in (lambda: HydraDrafter.check_args(args), lambda: HydraDrafter.from_args(args, model, None)):
        with pytest.raises(ArtifactError, match=r"no hydra weights for the embedded model.*train_drafter --method hydra"):
            call()


def test_check_args_refuses_a_missing_folder_and_a_bad_tree(tmp_path):
    with pytest.raises(ValueError, match="--hydra-path"):
        HydraDrafter.check_args(SimpleNamespace(hydra_path=str(tmp_path / "nope"), hydra_choices=None))
    with pytest.raises(ValueError, match="--hydra-choices"):
        HydraDrafter.check_args(SimpleNamespace(hydra_path=str(tmp_path), hydra_choices="[[0, 1]]"))


def test_from_args_loads_a_folder_with_the_device_default_tree(model, tmp_path):
    folder = write_published(tmp_path / "h", heads=4, declared=4)
    args = SimpleNamespace(model_path="x", hydra_path=str(folder), hydra_choices=None, hydra_typical=False,
                           hydra_posterior_threshold=0.09, hydra_posterior_alpha=0.3)
    drafter = HydraDrafter.from_args(args, model, None)
    assert drafter.params()["choices"] == "cpu" and drafter.tree.paths == [(0,), (1,), (0, 0)]


# ---------------------------------------------------------------------------------- published format
def write_published(folder, heads=5, layers=1, declared=4, suffix=".pt", grounded=True, arch="mlp", offset=0,
                    hidden=HIDDEN, vocab=VOCAB, corrupt=None, differ=False, seed=0):
    """A released-layout Hydra folder with random weights (the config's head count is declared separately)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    prefix = arch == "prefix-mlp"

    def rand(*shape, scale=0.3):
        return (torch.randn(*shape, generator=g) * scale).to(torch.float16)

    index = (lambda j: 2 * j + 1) if prefix else (lambda j: j)  # prefix-mlp: a dropout before each block
    state = {}
    for i in range(heads):
        width = (i + 2) * hidden
        if grounded:
            for name in ("linear", "res_connection"):
                state[f"hydra_mlp.{i}.{index(0)}.{name}.weight"] = rand(hidden, width)
                state[f"hydra_mlp.{i}.{index(0)}.{name}.bias"] = rand(hidden, scale=0.1)
        shared_weight, shared_bias = rand(hidden, hidden), rand(hidden, scale=0.1)
        for j in range(1 if grounded else 0, layers):  # one module repeated: the same tensor under every index
            state[f"hydra_mlp.{i}.{index(j)}.linear.weight"] = shared_weight
            state[f"hydra_mlp.{i}.{index(j)}.linear.bias"] = shared_bias
        lm = f"hydra_lm_head.{i}.1" if prefix else f"hydra_lm_head.{i}"
        state[f"{lm}.weight"], state[f"{lm}.bias"] = rand(vocab, hidden, scale=2.0), rand(vocab, scale=0.5)
    if differ:
        key = f"hydra_mlp.0.{index(layers - 1)}.linear.bias"
        state[key] = state[key] + 1
    if prefix:
        p = "prefix_embeding_layer."
        for name, shape in {"self_attn.q_proj": (32, hidden), "self_attn.k_proj": (16, hidden),
                            "self_attn.v_proj": (16, hidden), "self_attn.o_proj": (hidden, 32),
                            "mlp.gate_proj": (64, hidden), "mlp.up_proj": (64, hidden),
                            "mlp.down_proj": (hidden, 64)}.items():
            state[f"{p}layers.0.{name}.weight"] = rand(*shape)
        for name in ("layers.0.input_layernorm", "layers.0.post_attention_layernorm", "norm"):
            state[f"{p}{name}.weight"] = (1 + rand(hidden, scale=0.1)).to(torch.float16)
        state[f"{p}embed_tokens.weight"] = rand(vocab, hidden)  # in the module, never used
    if corrupt:
        state[corrupt] = torch.zeros(3, dtype=torch.float16)
    (folder / "config.json").write_text(json.dumps({
        "base_model_name_or_path": "tiny", "hydra_num_heads": declared, "hydra_num_layers": layers,
        "hydra_head_arch": arch, "grounded_heads": grounded, "hidden_state_offset": offset,
        "transformers_version": "4.33.0"}))
    if suffix == ".pt":
        torch.save(state, folder / "hydra_lm_head.pt")
    else:
        from safetensors.torch import save_file

        save_file({k: v.clone() for k, v in state.items()}, str(folder / "hydra_lm_head.safetensors"))
    return folder


@pytest.mark.parametrize("suffix,layers", [(".pt", 1), (".safetensors", 1), (".pt", 3)])
def test_published_checkpoint_loads_with_the_head_count_from_its_keys(engine, model, tmp_path, suffix, layers):
    folder = write_published(tmp_path / "hydra", suffix=suffix, layers=layers)
    with pytest.warns(UserWarning, match="hydra_num_heads=4"):
        heads = load_hydra(folder, model)
    assert heads.num_heads == 5 and heads.num_layers == layers and heads.grounded and heads.projections is not None
    assert [h.first.linear.weight.shape[1] for h in heads.heads] == [2 * HIDDEN, 3 * HIDDEN, 4 * HIDDEN,
                                                                        5 * HIDDEN, 6 * HIDDEN]
    assert heads.heads[0].first.linear.weight.dtype == torch.float64
    assert_baseline_output(engine, HydraDrafter(heads, choices=MC_SIM_7B_63), prompts=3, seed=31)


def test_published_projection_and_bias_are_used_for_the_drafts(model, tmp_path):
    folder = write_published(tmp_path / "h", declared=5)
    heads = load_hydra(folder, model)
    state = torch.load(folder / "hydra_lm_head.pt", weights_only=True)
    inputs = torch.randn(3 * HIDDEN, dtype=torch.float64)
    x = inputs.float()
    block = {n: state[f"hydra_mlp.1.0.{n}"].float() for n in ("linear.weight", "linear.bias",
                                                              "res_connection.weight", "res_connection.bias")}
    h = (x @ block["res_connection.weight"].T + block["res_connection.bias"]
         + torch.nn.functional.silu(x @ block["linear.weight"].T + block["linear.bias"]))
    logits = h @ state["hydra_lm_head.1.weight"].float().T + state["hydra_lm_head.1.bias"].float()
    assert heads.top_tokens(1, inputs, 3).tolist() == logits.topk(3).indices.tolist()


@pytest.mark.parametrize("corrupt", ["hydra_mlp.2.0.res_connection.weight", "hydra_lm_head.4.bias",
                                     "hydra_mlp.0.0.linear.bias"])
def test_a_shape_mismatch_names_the_tensor(model, tmp_path, corrupt):
    folder = write_published(tmp_path / "bad", declared=5, corrupt=corrupt)
    with pytest.raises(ArtifactError, match=corrupt.replace(".", r"\.") + " has shape"):
        load_hydra(folder, model)


def test_heads_for_another_hidden_size_are_refused(model, tmp_path):
    folder = write_published(tmp_path / "wide", declared=5, hidden=48)
    with pytest.raises(ArtifactError, match=r"hydra_mlp\.0\.0\.linear\.weight has shape \[48, 96\].*\[32, 64\]"):
        load_hydra(folder, model)


def test_differing_shared_blocks_are_refused(model, tmp_path):
    folder = write_published(tmp_path / "differ", declared=5, layers=3, differ=True)
    with pytest.raises(ArtifactError, match=r"hydra_mlp\.0\.2\.\* must equal hydra_mlp\.0\.1\.\*"):
        load_hydra(folder, model)


def test_other_architectures_and_missing_files_are_clear_errors(model, tmp_path):
    folder = write_published(tmp_path / "x", declared=5)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"hydra_head_arch": "cross-attn"}))
    with pytest.raises(ArtifactError, match="'cross-attn' is not supported"):
        load_hydra(folder, model)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="hydra_lm_head"):
        load_hydra(tmp_path / "empty", model)


def test_ungrounded_heads_draft_exactly_as_medusa(model, tmp_path):
    """grounded_heads false: the blocks are one shared Medusa block; drafts ignore the parent."""
    folder = write_published(tmp_path / "ungrounded", declared=4, heads=4, layers=2, grounded=False)
    heads = load_hydra(folder, model)
    assert not heads.grounded
    state = torch.load(folder / "hydra_lm_head.pt", weights_only=True)
    medusa = {}
    for i in range(4):  # the same weights in FasterDecoding's layout (no projection bias there: make it 0)
        for j in range(2):
            medusa[f"{i}.{j}.linear.weight"] = state[f"hydra_mlp.{i}.{j}.linear.weight"]
            medusa[f"{i}.{j}.linear.bias"] = state[f"hydra_mlp.{i}.{j}.linear.bias"]
        medusa[f"{i}.2.weight"] = state[f"hydra_lm_head.{i}.weight"]
        heads.projection_biases[i].zero_()
    (tmp_path / "medusa").mkdir()
    (tmp_path / "medusa" / "config.json").write_text(json.dumps({"medusa_num_heads": 4, "medusa_num_layers": 2}))
    torch.save(medusa, tmp_path / "medusa" / "medusa_lm_head.pt")
    hydra, medusa = HydraDrafter(heads, MC_SIM_7B_63), MedusaDrafter(load_medusa(tmp_path / "medusa", model), MC_SIM_7B_63)
    for seed in range(3):
        feature = torch.randn(HIDDEN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        hydra._context, medusa._feature = feature, feature
        a, b = hydra.propose([1, 2, 3], 10), medusa.propose([1, 2, 3], 10)
        assert a.tokens.tolist() == b.tokens.tolist() and a.parents.tolist() == b.parents.tolist()


def test_hidden_state_offset_reads_an_earlier_layer(engine, model, tmp_path):
    heads = load_hydra(write_published(tmp_path / "offset", declared=5, offset=1), model)
    drafter = HydraDrafter(heads, choices=CPU_CHOICES)
    assert drafter.hidden_state_request.layer_inputs == (1,) and not drafter.hidden_state_request.final
    seen = []
    real_propose = drafter.propose
    drafter.propose = lambda context, max_depth: (seen.append((drafter._context.clone(), list(context))),
                                                  real_propose(context, max_depth))[1]
    prompt = [5, 6, 7, 8, 9]
    config = DecodingConfig(max_new_tokens=8)
    assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)
    feature, context = seen[-1]
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([context[:-1]]), output_hidden_states=True).hidden_states
    torch.testing.assert_close(feature, hs[-2][0, -1], rtol=1e-9, atol=1e-9)  # hidden_states[-(1 + 1)]


# ---------------------------------------------------------------------------------- prefix-mlp
def test_prefix_layer_is_a_llama_decoder_layer_with_its_own_cache(model):
    from transformers import LlamaModel

    layer = PrefixLayer(model.config).to(torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    config = model.config.__class__(**(model.config.to_dict() | {"num_hidden_layers": 1}))
    stock = LlamaModel(config).to(torch.float64).eval()
    with torch.no_grad():
        for key in layer.published_shapes():
            target = stock.norm.weight if key == "norm.weight" else stock.get_parameter(key)
            target.copy_(layer.published_tensor(key))
        features = torch.randn(9, HIDDEN, dtype=torch.float64)
        expected = stock(inputs_embeds=features[None]).last_hidden_state[0]
        cache = PrefixCache()
        chunks = [layer(features[:4], cache), layer(features[4:5], cache), layer(features[5:], cache)]
    torch.testing.assert_close(torch.cat(chunks), expected, rtol=1e-10, atol=1e-10)
    assert cache.length == 9
    assert layer.to(torch.float16).inv_freq.dtype == torch.float32  # RoPE frequencies stay exact


def test_published_prefix_mlp_checkpoint_drafts_losslessly_with_its_draft_cache(engine, model, tmp_path):
    folder = write_published(tmp_path / "prefix", heads=4, layers=4, arch="prefix-mlp")
    heads = load_hydra(folder, model)
    assert heads.arch == "prefix-mlp" and heads.num_heads == 4 and heads.num_layers == 4
    drafter = HydraDrafter(heads, choices=MC_SIM_7B_63)
    lengths = []
    real_propose = drafter.propose

    def propose(context, max_depth):
        # The prefix layer has seen exactly the positions whose target KV is cached.
        lengths.append((drafter._prefix_cache.length, len(context) - 1))
        return real_propose(context, max_depth)

    drafter.propose = propose
    accepted = assert_baseline_output(engine, drafter, prompts=3, seed=31)
    config = DecodingConfig(max_new_tokens=12)
    assert engine.generate([7], drafter, config)[0] == baseline(engine, [7], config)  # nothing prefilled
    assert lengths and all(a == b for a, b in lengths)
    assert max(accepted) >= 2
    assert drafter.params()["arch"] == "prefix-mlp"


def test_prefix_layer_keys_are_checked(model, tmp_path):
    folder = write_published(tmp_path / "prefix", heads=2, layers=2, arch="prefix-mlp", declared=2,
                             corrupt="prefix_embeding_layer.layers.0.mlp.down_proj.weight")
    with pytest.raises(ArtifactError, match=r"prefix_embeding_layer\.layers\.0\.mlp\.down_proj\.weight has shape"):
        load_hydra(folder, model)


# ---------------------------------------------------------------------------------- our format
def test_trained_format_shares_the_lm_head_and_refuses_another_base(engine, model, tmp_path):
    heads = random_heads(model, num_heads=3, num_layers=2)
    vocab = torch.arange(3, VOCAB, 2)
    tensors = heads.hydra_state() | {"draft_vocab": vocab.to(torch.int32)}
    assert tensors["hydra_mlp.1.1.linear.weight"] is heads.heads[1].shared.linear.weight
    config = {"method": "hydra", "hydra_num_heads": 3, "hydra_num_layers": 2, "hydra_head_arch": "mlp",
              "grounded_heads": True, "hidden_state_offset": 0, "shares_base_lm_head": True,
              "base_fingerprint": base_fingerprint(model)}
    folder = save_artifact(tmp_path / "ours", config, tensors, "hydra_lm_head.safetensors")
    loaded = load_hydra(folder, model)
    assert loaded.projections is None and loaded.draft_vocab.tolist() == vocab.tolist()
    drafter = HydraDrafter(loaded, choices=MC_SIM_7B_63)
    drafter.begin([5], SimpleNamespace(model=model, prompt_features=None))
    drafter._context = torch.randn(HIDDEN, dtype=torch.float64)
    assert set(drafter.propose([5], 10).tokens.tolist()) <= set(vocab.tolist())
    assert_baseline_output(engine, drafter, prompts=2)
    with pytest.raises(BaseMismatchError, match="another base"):
        load_hydra(folder, make_tiny_llama(vocab_size=VOCAB, seed=1))


# ---------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from methods.core.model_loading import load_model
    from tests.test_inference import save_tiny_model

    folder = save_tiny_model(tmp_path_factory.mktemp("tiny-base"))
    return folder, load_model(str(folder), dtype="float32", device="cpu")


def test_trainer_trains_hydra_heads_and_writes_a_loadable_artifact(tiny, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from tests.test_train_drafter import write_corpus
    from training.train_drafter import main

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder, loaded = tiny
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded)
    out = tmp_path / "hydra"
    assert main(["--method", "hydra", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--epochs", "2", "--batch-size", "64", "--hydra-heads", "3", "--hydra-layers", "2",
                 "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "hydra" and config["hydra_num_heads"] == 3 and config["hydra_head_arch"] == "mlp"
    assert config["grounded_heads"] and config["shares_base_lm_head"] and config["base_fingerprint"]["tensors"]
    assert config["recipe"] == {"decay": 0.8, "feature_noise_alpha": 5.0}
    assert config["training"]["lr"] == 1e-3
    epochs = config["metrics"]["heldout"]
    assert len(epochs) == 2 and all(len(e["top1"]) == 3 for e in epochs) and min(epochs[-1]["positions"]) > 0
    state = load_file(str(out / "hydra_lm_head.safetensors"))
    expected = {f"hydra_mlp.{i}.0.{n}.{p}" for i in range(3) for n in ("linear", "res_connection")
                for p in ("weight", "bias")} | {f"hydra_mlp.{i}.1.linear.{p}" for i in range(3)
                                                 for p in ("weight", "bias")} | {"draft_vocab"}
    assert set(state) == expected  # no lm_head: the base's is shared
    assert state["hydra_mlp.2.0.linear.weight"].shape == (HIDDEN, 4 * HIDDEN)

    heads = load_hydra(out, loaded.model)
    assert heads.num_heads == 3 and heads.num_layers == 2 and heads.draft_vocab is not None
    drafter = HydraDrafter(heads, choices=[[0], [1], [0, 0], [0, 0, 0]])
    engine = SpeculativeEngine(loaded.model)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(3, VOCAB, seed=50):
        assert engine.generate(prompt, drafter, config)[0] == engine.generate(prompt, VanillaDrafter(), config)[0]

    other = load_model_other(tmp_path)
    with pytest.raises(BaseMismatchError, match="another base"):
        load_hydra(out, other)


def load_model_other(tmp_path):
    from methods.core.model_loading import load_model
    from tests.test_inference import save_tiny_model

    return load_model(str(save_tiny_model(tmp_path / "other", seed=1)), dtype="float32", device="cpu").model


def test_recipe_feeds_the_heads_what_drafting_feeds_them_and_noise_only_in_training(tiny, tmp_path, monkeypatch):
    from tests.test_train_drafter import write_corpus
    from training.features import build_features
    from training.recipes.hydra import HydraRecipe
    from training.train_drafter import build_parser

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    _, loaded = tiny
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded, count=8)
    args = build_parser().parse_args(["--method", "hydra", "--out", "x"])
    recipe = HydraRecipe(args)
    features = build_features(loaded.model, loaded.tokenizer, corpus, recipe.request(), progress=False)
    heads = recipe.build(loaded.model, features, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for head in heads.heads:
            head.first.linear.weight.normal_(0, 0.3)
    heads.bind(loaded.model)
    t = int(recipe.train_positions[3])
    with torch.no_grad():
        logits = recipe.head_logits(np.array([t]), training=False)[:, 0]  # [K, draft vocab]
        f = torch.from_numpy(features.final[t].astype(np.float32))
        for i in range(3):  # drafting: g_t, then E(root = x_{t+1}), then E(the drafts on the path)
            ahead = torch.from_numpy(features.tokens[t + 1: t + 2 + i].astype(np.int64))
            inputs = torch.cat([f, heads.embed(ahead).reshape(-1)])
            torch.testing.assert_close(logits[i], heads.head_logits(i, inputs))
        again = recipe.head_logits(np.array([t]), training=False)[:, 0]
        noisy = recipe.head_logits(np.array([t]), training=True)[:, 0]
    assert torch.equal(logits, again) and not torch.allclose(logits, noisy)
