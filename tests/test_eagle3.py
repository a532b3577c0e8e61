"""EAGLE-3: the fused-feature draft, its vocabulary maps, the drafter on the engine, the published
and speculators layouts, and the trainer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.eagle3 import Eagle3Drafter
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import ArtifactError
from methods.heads.eagle import EagleShape
from methods.heads.eagle3 import Eagle3DraftModel, Eagle3Shape, default_feature_layers
from methods.heads.eagle3_format import load_eagle3
from tests.engine_helpers import assert_sampling_uses_the_lossless_rule, random_prompts, run_turns
from tests.test_acceptance import assert_first_two_follow_the_model, sampling_check_model
from tests.test_eagle import randomised_and_bound
from tests.tiny_model import make_tiny_llama

VOCAB = 97
LAYERS = 8  # default feature layers 2, 4, 5: three distinct ones
# A draft vocabulary with both edges of the target's (ids 0 and VOCAB - 1) and gaps between.
DRAFT_IDS = torch.tensor([0, 3, 4, 5, 9, 10, 11, 20, 33, 34, 50, 51, 52, 60, 70, 80, 90, 95, VOCAB - 1])


@pytest.fixture(scope="module")
def model():
    return make_tiny_llama(vocab_size=VOCAB, seed=0, layers=LAYERS)


def shape_for(model, draft_ids=None, layers=()) -> Eagle3Shape:
    inner = EagleShape.like_base(model, fc_bias=False)
    vocab = int(model.config.vocab_size)
    return Eagle3Shape(**inner.to_dict(), vocab_size=vocab,
                       draft_vocab_size=vocab if draft_ids is None else len(draft_ids), feature_layers=tuple(layers))


def random_draft(model, seed=0, draft_ids=None, scale=0.5, layers=()) -> Eagle3DraftModel:
    torch.manual_seed(seed)
    d2t = None if draft_ids is None else draft_ids - torch.arange(len(draft_ids))
    return randomised_and_bound(Eagle3DraftModel(shape_for(model, draft_ids, layers), d2t=d2t), model, scale)


def fused_features(model, tokens, layers):
    """The inputs of ``layers`` from a separate plain forward (hidden_states[i] = input of layer i)."""
    with torch.no_grad():
        states = model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
    return torch.cat([states[i][0] for i in layers], dim=-1)


# ---------------------------------------------------------------------------------- the draft model
def test_default_feature_layers_are_2_half_and_three_from_the_top():
    assert default_feature_layers(30) == (2, 15, 27)
    assert default_feature_layers(32) == (2, 16, 29)
    assert default_feature_layers(40) == (2, 20, 37)
    assert default_feature_layers(2) == (1, 1, 0)  # tiny models keep three (repeated) features


def test_fc_is_skipped_for_the_drafts_own_outputs(model):
    draft = random_draft(model)
    h = model.config.hidden_size
    assert draft.fc.in_features == 3 * h
    own = torch.randn(1, 2, h, dtype=torch.float64)
    visible = torch.ones(1, 2, 2, dtype=torch.bool).tril()
    out, _ = draft(own, draft.embed(torch.tensor([[3, 4]])), torch.arange(2)[None], None, visible)
    calls = []
    draft.fc.register_forward_hook(lambda *a: calls.append(1))
    draft(own, draft.embed(torch.tensor([[3, 4]])), torch.arange(2)[None], None, visible)
    draft(torch.randn(1, 2, 3 * h, dtype=torch.float64), draft.embed(torch.tensor([[3, 4]])), torch.arange(2)[None],
          None, visible)
    assert len(calls) == 1 and out.shape == (1, 2, h)


def test_columns_map_to_target_ids_through_d2t_at_the_vocabulary_edges(model):
    draft = random_draft(model, draft_ids=DRAFT_IDS)
    n = len(DRAFT_IDS)
    assert draft.draft_logits(torch.zeros(1, model.config.hidden_size, dtype=torch.float64)).shape == (1, n)
    assert draft.to_token_ids(torch.arange(n)).tolist() == DRAFT_IDS.tolist()
    assert draft.to_token_ids(torch.tensor([0, n - 1])).tolist() == [0, VOCAB - 1]
    assert torch.equal(draft.draft_vocab, DRAFT_IDS)
    assert random_draft(model).draft_vocab is None  # N = V: the identity


@pytest.mark.parametrize("column", [0, len(DRAFT_IDS) - 1, 7])
def test_the_drafter_proposes_target_ids_for_the_winning_column(model, column):
    """Whatever column wins, the tree holds its target id (the edges included)."""
    draft = random_draft(model, draft_ids=DRAFT_IDS)
    n = len(DRAFT_IDS)

    def one_hot(outputs):
        logits = torch.full((*outputs.shape[:-1], n), -5.0, dtype=outputs.dtype)
        logits[..., column] = 5.0
        logits[..., (column + 1) % n] = 4.0
        return logits

    draft.draft_logits = one_hot
    drafter = Eagle3Drafter(draft, total_token=3, depth=1, top_k=2)
    trees = []
    real = drafter.propose
    drafter.propose = lambda c, d: trees.append(real(c, d)) or trees[-1]
    out, _ = SpeculativeEngine(model).generate([4, 8, 15], drafter, DecodingConfig(max_new_tokens=6))
    assert out == SpeculativeEngine(model).generate([4, 8, 15], VanillaDrafter(), DecodingConfig(max_new_tokens=6))[0]
    first = trees[0]
    assert int(first.tokens[0]) == int(DRAFT_IDS[column])
    assert set(first.tokens.tolist()) <= {int(DRAFT_IDS[column]), int(DRAFT_IDS[(column + 1) % n])}


# ---------------------------------------------------------------------------------- features
def test_the_three_feature_layers_are_the_ones_asked_for(engine, model):
    """The pairs the drafter caches hold exactly the inputs of the requested layers: its cache
    equals a causal pass over fused features taken from a separate forward."""
    for layers in [(2, 4, 5), (1, 6, 3), (0, 0, 7)]:
        draft = random_draft(model, seed=3, layers=layers)
        drafter = Eagle3Drafter(draft, total_token=6, depth=2, top_k=2)
        assert drafter.hidden_state_request.layer_inputs == tuple(sorted(set(layers)))
        checked = []
        real = drafter.propose

        def propose(context, max_depth, draft=draft, drafter=drafter, layers=layers, real=real):
            tree = real(context, max_depth)
            n = len(context) - 1
            if max_depth >= 1 and n:
                feats = fused_features(model, context[:-1], layers)
                causal = torch.ones(n, n, dtype=torch.bool).tril()
                _, kv = draft(feats[None], draft.embed(torch.tensor(context[1:]))[None], torch.arange(n)[None],
                              None, causal[None])
                cached_k, cached_v = drafter.tracker.cache.layers()[0]
                torch.testing.assert_close(cached_k, kv[0][0], rtol=1e-7, atol=1e-7)
                torch.testing.assert_close(cached_v, kv[0][1], rtol=1e-7, atol=1e-7)
                checked.append(n)
            return tree

        drafter.propose = propose
        run_turns(engine, drafter, [9, 14, 3, 22], DecodingConfig(max_new_tokens=10))
        assert len(checked) >= 4


def test_default_layers_follow_the_targets_depth(model):
    draft = random_draft(model)  # no layers in the shape: bind() picks them
    assert draft.feature_layers == (2, 4, 5)
    assert Eagle3Drafter(draft).hidden_state_request.layer_inputs == (2, 4, 5)


# ---------------------------------------------------------------------------------- engine
@pytest.mark.parametrize("draft_ids", [None, DRAFT_IDS], ids=["N=V", "N<V"])
@pytest.mark.parametrize("total,depth,top_k", [(60, 5, 10), (8, 3, 4), (3, 1, 2), (2, 0, 1)])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, draft_ids, total, depth, top_k):
    drafter = Eagle3Drafter(random_draft(model, seed=1, draft_ids=draft_ids), total_token=total, depth=depth,
                            top_k=top_k)
    config = DecodingConfig(max_new_tokens=24)
    for prompt in random_prompts(3, VOCAB, seed=31):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


def test_sampling_goes_through_the_lossless_rule(engine, model, monkeypatch):
    drafter = Eagle3Drafter(random_draft(model, seed=2, draft_ids=DRAFT_IDS), total_token=8, depth=3, top_k=3)
    assert_sampling_uses_the_lossless_rule(engine, drafter, monkeypatch, random_prompts(2, VOCAB, seed=32))


@pytest.mark.parametrize("draft_ids", [None, torch.tensor([0, 2, 3, 6])], ids=["N=V", "N<V"])
def test_engine_sampling_matches_the_model_distribution(draft_ids):
    """End to end at T = 1: the first two sampled tokens follow the target's exact joint law."""
    model = sampling_check_model()
    drafter = Eagle3Drafter(random_draft(model, seed=7, scale=0.3, draft_ids=draft_ids), total_token=6, depth=2,
                            top_k=2)
    assert_first_two_follow_the_model(model, drafter)


# ---------------------------------------------------------------------------------- published layout
def published_tensors(model, draft_ids=None, seed=0, fc_bias=False, embed=True) -> dict:
    draft = random_draft(model, seed=seed, draft_ids=draft_ids)
    state = {k: v.to(torch.float16) for k, v in draft.state_dict().items()}
    if fc_bias:
        state["fc.bias"] = torch.randn(model.config.hidden_size).to(torch.float16)
    ids = torch.arange(VOCAB) if draft_ids is None else draft_ids
    state["d2t"] = ids - torch.arange(len(ids))
    t2d = torch.zeros(VOCAB, dtype=torch.bool)
    t2d[ids] = True
    state["t2d"] = t2d
    if embed:
        state["embed_tokens.weight"] = model.get_input_embeddings().weight.detach().to(torch.float16)
    return state


def published_config(model, n) -> dict:
    c = model.config
    return {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "num_hidden_layers": 1, "rms_norm_eps": c.rms_norm_eps,
            "rope_theta": c.rope_parameters["rope_theta"], "vocab_size": VOCAB, "draft_vocab_size": n,
            "hidden_act": "silu", "torch_dtype": "float16"}


def write_published(folder, model, draft_ids=None, suffix=".bin", fc_bias=False, state=None, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    state = state if state is not None else published_tensors(model, draft_ids, fc_bias=fc_bias)
    if suffix == ".bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    n = VOCAB if draft_ids is None else len(draft_ids)
    (folder / "config.json").write_text(json.dumps(config or published_config(model, n)))
    return folder, state


@pytest.mark.parametrize("suffix,draft_ids,fc_bias", [(".bin", DRAFT_IDS, False), (".safetensors", None, False),
                                                      (".safetensors", DRAFT_IDS, True)],
                         ids=["bin-N<V", "safetensors-N=V", "fc-bias"])
def test_published_checkpoint_loads_into_the_right_places(engine, model, tmp_path, suffix, draft_ids, fc_bias):
    folder, state = write_published(tmp_path / "e3", model, draft_ids, suffix, fc_bias)
    draft = load_eagle3(folder, model)
    mine = draft.state_dict()
    for key, tensor in state.items():
        if key in mine:
            torch.testing.assert_close(mine[key], tensor.to(torch.float64))
    assert set(mine) == {k for k in state if k not in ("d2t", "t2d", "embed_tokens.weight")}
    assert (draft.d2t is None) == (draft_ids is None)
    if draft_ids is not None:
        assert draft.to_token_ids(torch.arange(len(draft_ids))).tolist() == draft_ids.tolist()
    assert draft.feature_layers == (2, 4, 5) and draft.fc.bias is not None if fc_bias else draft.fc.bias is None
    drafter = Eagle3Drafter(draft, total_token=8, depth=3, top_k=3)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(2, VOCAB, seed=33):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


def test_n_equal_v_without_the_maps_loads_as_the_identity(model, tmp_path):
    state = published_tensors(model)
    del state["d2t"], state["t2d"]
    folder, _ = write_published(tmp_path / "e3", model, state=state)
    assert load_eagle3(folder, model).d2t is None


def test_a_head_for_a_wider_target_is_refused_not_run(model, tmp_path):
    """The 13B-head-on-7B case: fc expects three features of another hidden size."""
    wide = make_tiny_llama(vocab_size=VOCAB, seed=1, layers=LAYERS)
    wide.config.hidden_size = 48  # only the shape bookkeeping matters here
    c = model.config
    h = c.hidden_size
    state = published_tensors(model, DRAFT_IDS)
    state["fc.weight"] = torch.zeros(h, 3 * 48, dtype=torch.float16)
    folder, _ = write_published(tmp_path / "e3", model, DRAFT_IDS, state=state)
    with pytest.raises(ArtifactError, match=r"fc takes 144 inputs.*hidden size is 32.*made for another model"):
        load_eagle3(folder, model)


@pytest.mark.parametrize("change,message", [
    (lambda s, c: c.update(vocab_size=120), r"target vocabulary is 120 tokens"),
    (lambda s, c: s.update(d2t=s["d2t"] + 200), r"outside the target's vocabulary"),
    (lambda s, c: s.pop("d2t"), r"no d2t map"),
    (lambda s, c: s.update(t2d=torch.zeros(5, dtype=torch.bool)), r"t2d has 5 entries"),
    (lambda s, c: s.update({"embed_tokens.weight": torch.zeros(50, 32)}), r"embed_tokens.weight has shape \[50, 32\]"),
    (lambda s, c: s.update({"midlayer.mlp.down_proj.weight": torch.zeros(32, 7)}), r"midlayer.mlp.down_proj.weight"),
    (lambda s, c: s.pop("norm.weight"), r"norm.weight is missing"),
    (lambda s, c: c.update(feature_layers=[2, 4, 9]), r"feature layers \[2, 4, 9\]"),
    (lambda s, c: c.update(draft_vocab_size=5), r"d2t has 19 entries, the draft vocabulary 5"),
], ids=["vocab", "d2t-range", "no-d2t", "t2d", "embed", "shape", "missing", "layers", "n"])
def test_inconsistent_heads_are_refused_with_the_reason(model, tmp_path, change, message):
    state = published_tensors(model, DRAFT_IDS)
    config = published_config(model, len(DRAFT_IDS))
    change(state, config)
    folder, _ = write_published(tmp_path / "e3", model, DRAFT_IDS, state=state, config=config)
    with pytest.raises(ArtifactError, match=message):
        load_eagle3(folder, model)


def test_an_eagle1_folder_is_refused_with_a_hint(model, tmp_path):
    from tests.test_eagle import write_published as write_eagle1

    folder = tmp_path / "e1"
    write_eagle1(folder, model)
    with pytest.raises(ArtifactError, match="--method eagle or eagle2"):
        load_eagle3(folder, model)


# ---------------------------------------------------------------------------------- speculators
def write_speculators(folder, model, draft_ids=DRAFT_IDS, layers=None):
    c = model.config
    state = published_tensors(model, draft_ids, fc_bias=True)
    state = {("layers.0." + k[len("midlayer."):] if k.startswith("midlayer.") else k): v for k, v in state.items()}
    layer = {"model_type": "llama", "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
             "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
             "rms_norm_eps": c.rms_norm_eps, "vocab_size": VOCAB, "num_hidden_layers": LAYERS,
             "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_parameters["rope_theta"]}}
    config = {"speculators_model_type": "eagle3", "architectures": ["Eagle3Speculator"],
              "transformer_layer_config": layer, "draft_vocab_size": len(draft_ids), "norm_before_residual": False,
              "speculators_config": {"algorithm": "eagle3", "proposal_methods": [], "default_proposal_method": "greedy",
                                     "verifier": {"name_or_path": "tiny", "architectures": ["LlamaForCausalLM"]}}}
    if layers is not None:
        config["eagle_aux_hidden_state_layer_ids"] = list(layers)
    folder.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder, state


def test_speculators_eagle3_folder_loads_and_drafts_losslessly(engine, model, tmp_path):
    folder, state = write_speculators(tmp_path / "spec", model, layers=[1, 3, 6])
    draft = load_eagle3(folder, model)
    torch.testing.assert_close(draft.midlayer.self_attn.q_proj.weight,
                               state["layers.0.self_attn.q_proj.weight"].to(torch.float64))
    assert draft.fc.bias is not None and draft.feature_layers == (1, 3, 6)
    drafter = Eagle3Drafter(draft, total_token=6, depth=2, top_k=2)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(2, VOCAB, seed=34):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


def test_speculators_eagle3_for_another_verifier_is_refused(model, tmp_path):
    folder, _ = write_speculators(tmp_path / "spec", model)
    config = json.loads((folder / "config.json").read_text())
    config["transformer_layer_config"]["vocab_size"] = 500
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="another model"):
        load_eagle3(folder, model)


# ---------------------------------------------------------------------------------- command line
def test_options_are_checked_before_loading(tmp_path):
    base = dict(eagle3_path=None, eagle3_layers=None, eagle3_total_token=None, eagle3_depth=None, eagle3_top_k=None)
    with pytest.raises(ValueError, match="--eagle3-path"):
        Eagle3Drafter.check_args(SimpleNamespace(**{**base, "eagle3_path": str(tmp_path / "none")}))
    with pytest.raises(ValueError, match="--eagle3-layers"):
        Eagle3Drafter.check_args(SimpleNamespace(**{**base, "eagle3_layers": "2,15"}))
    with pytest.raises(ValueError, match="--eagle3-layers"):
        Eagle3Drafter.check_args(SimpleNamespace(**{**base, "eagle3_layers": "a,b,c"}))
    with pytest.raises(ValueError, match="--eagle3-top-k"):
        Eagle3Drafter.check_args(SimpleNamespace(**{**base, "eagle3_top_k": 0}))


def test_from_args_refuses_a_non_embedded_model_without_a_draft(model):
    args = SimpleNamespace(model_path="/somewhere/else", eagle3_path=None, eagle3_layers=None,
                           eagle3_total_token=None, eagle3_depth=None, eagle3_top_k=None, method="eagle3")
    with pytest.raises(ArtifactError, match="--eagle3-path"):
        Eagle3Drafter.from_args(args, model, None)


def test_eagle3_layers_option_overrides_the_folder(model, tmp_path):
    folder, _ = write_published(tmp_path / "e3", model, DRAFT_IDS)
    args = SimpleNamespace(model_path="tiny", eagle3_path=str(folder), eagle3_layers="0,3,7",
                           eagle3_total_token=None, eagle3_depth=None, eagle3_top_k=None, method="eagle3")
    drafter = Eagle3Drafter.from_args(args, model, None)
    assert drafter.draft.feature_layers == (0, 3, 7) and drafter.params()["feature_layers"] == [0, 3, 7]
    args.eagle3_layers = "0,3,8"
    with pytest.raises(ArtifactError, match="does not have"):
        Eagle3Drafter.from_args(args, model, None)


# ---------------------------------------------------------------------------------- training
def test_trainer_writes_a_draft_that_loads_and_drafts_losslessly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from methods.core.model_loading import load_model
    from methods.heads.artifact import BaseMismatchError
    from tests.test_inference import save_tiny_model
    from tests.test_train_drafter import tiny_training_setup
    from training.train_drafter import main

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "eagle3"
    assert main(["--method", "eagle3", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--epochs", "2", "--batch-size", "128", "--eagle3-intermediate", "48", "--eagle3-draft-vocab", "40",
                 "--eagle3-ttt-steps", "3", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "eagle3" and config["draft_vocab_size"] <= 40 and config["intermediate_size"] == 48
    assert config["feature_layers"] == [1, 1, 0]  # the 2-layer base's defaults
    epochs = config["metrics"]["heldout"]
    assert len(epochs) == 2 and all(0 <= e["top1"][2] <= e["top1"][1] <= e["top1"][0] <= 1 for e in epochs)
    state = load_file(str(out / "model.safetensors"))
    assert "embed_tokens.weight" not in state and state["d2t"].dtype == torch.int64 and state["t2d"].dtype == torch.bool
    assert int(state["t2d"].sum()) == config["draft_vocab_size"] == state["lm_head.weight"].shape[0]
    assert all(v.dtype == torch.float16 for k, v in state.items() if k not in ("d2t", "t2d"))
    assert "depth 1+2+3" in (out / "README.md").read_text()

    draft = load_eagle3(out, loaded.model)
    engine = SpeculativeEngine(loaded.model)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(3, VOCAB, seed=50):
        drafter = Eagle3Drafter(draft, 8, 3, 3)
        assert engine.generate(prompt, drafter, config)[0] == engine.generate(prompt, VanillaDrafter(), config)[0]
    other = load_model(str(save_tiny_model(tmp_path / "other", seed=1)), dtype="float32", device="cpu")
    with pytest.raises(BaseMismatchError, match="another base"):
        load_eagle3(out, other.model)
    saved = json.loads((out / "config.json").read_text())
    del saved["base_fingerprint"]
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ArtifactError, match="records no base_fingerprint"):
        load_eagle3(out, loaded.model)
