"""EAGLE heads in the `speculators` format: the published layout read, our writer, the refusals.

The synthetic folders are written here by hand in the layout speculators' EagleSpeculator saves
(config.json with speculators_model_type "eagle"; model.safetensors with fusion_fc.* and
transformer.*, no embeddings, no lm_head), independently of write_speculators_eagle, so that a
wrong reader and a wrong writer are both caught.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from methods.heads.artifact import ArtifactError
from methods.heads.eagle import EagleDraftModel, EagleShape
from methods.heads.eagle_format import load_eagle
from methods.heads.speculators_format import write_speculators_eagle
from tests.tiny_model import make_tiny_llama

VOCAB = 97
HIDDEN = 32  # tests/tiny_model.py
# The draft's own layer differs from the base's (4 heads of 16, 2 KV heads, intermediate 48) so
# that every size must come from the head's config, not from the target.
HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE = 4, 2, 16, 48


def published_config(**layer_overrides) -> dict:
    layer = {
        "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": 2,  # the verifier's count, as from_training_args writes it: still one layer
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": None,
        "max_position_embeddings": 512, "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": False,
    }
    layer.update(layer_overrides)
    return {
        "architectures": ["EagleSpeculator", "LlamaDecoderLayer"],
        "speculators_model_type": "eagle",
        "speculators_version": "0.1.0",
        "transformer_layer_architecture": "LlamaDecoderLayer",
        "transformer_layer_config": layer,
        "layernorms": False,
        "fusion_bias": True,
        "speculators_config": {
            "algorithm": "eagle",
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": 3,
                                  "verifier_accept_k": 1, "accept_tolerance": 0.0}],
            "default_proposal_method": "greedy",
            "verifier": {"name_or_path": "test/tiny-llama", "architectures": ["LlamaForCausalLM"]},
        },
        "torch_dtype": "float64",
        "transformers_version": "4.53.0",
    }


def published_tensors(seed=1, fc_bias=True, qkv_bias=False, hidden=HIDDEN) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    t = {
        "fusion_fc.weight": rand(hidden, 2 * hidden),
        "transformer.self_attn.q_proj.weight": rand(HEADS * HEAD_DIM, hidden),
        "transformer.self_attn.k_proj.weight": rand(KV_HEADS * HEAD_DIM, hidden),
        "transformer.self_attn.v_proj.weight": rand(KV_HEADS * HEAD_DIM, hidden),
        "transformer.self_attn.o_proj.weight": rand(hidden, HEADS * HEAD_DIM),
        "transformer.mlp.gate_proj.weight": rand(INTERMEDIATE, hidden),
        "transformer.mlp.up_proj.weight": rand(INTERMEDIATE, hidden),
        "transformer.mlp.down_proj.weight": rand(hidden, INTERMEDIATE),
        "transformer.post_attention_layernorm.weight": 1.0 + rand(hidden, scale=0.1),
    }
    if fc_bias:
        t["fusion_fc.bias"] = rand(hidden)
    if qkv_bias:
        for p in "qkv":
            t[f"transformer.self_attn.{p}_proj.bias"] = rand(t[f"transformer.self_attn.{p}_proj.weight"].shape[0])
    return t


def write_folder(folder, config, tensors):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


def manual_forward(t, config, embed, features, tokens):
    """The EAGLE head's maths written out from the speculators tensors: fc over [E(x), f], a
    Llama layer without input norm (RoPE rotate-half, GQA, causal), SiLU-gated MLP, no final norm."""
    layer = config["transformer_layer_config"]
    m = tokens.shape[0]
    theta, eps, hd = layer.get("rope_theta", 10000.0), layer.get("rms_norm_eps", 1e-6), HEAD_DIM

    def linear(x, name):
        out = x @ t[f"{name}.weight"].T
        return out + t[f"{name}.bias"] if f"{name}.bias" in t else out

    x = linear(torch.cat([embed[tokens], features], -1), "fusion_fc")
    q = linear(x, "transformer.self_attn.q_proj").view(m, HEADS, hd)
    k = linear(x, "transformer.self_attn.k_proj").view(m, KV_HEADS, hd)
    v = linear(x, "transformer.self_attn.v_proj").view(m, KV_HEADS, hd)
    angles = torch.arange(m, dtype=torch.float64)[:, None] * theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]

    def rotate(z):  # dimension i pairs with i + hd/2
        a, b = z[..., : hd // 2], z[..., hd // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    q, k = rotate(q), rotate(k)
    causal = torch.ones(m, m, dtype=torch.bool).tril()
    heads = []
    for h in range(HEADS):
        g = h // (HEADS // KV_HEADS)
        scores = (q[:, h] @ k[:, g].T / math.sqrt(hd)).masked_fill(~causal, float("-inf"))
        heads.append(scores.softmax(-1) @ v[:, g])
    x = x + linear(torch.cat(heads, -1), "transformer.self_attn.o_proj")
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * t["transformer.post_attention_layernorm.weight"]
    mlp = linear(F.silu(linear(normed, "transformer.mlp.gate_proj")) * linear(normed, "transformer.mlp.up_proj"),
                 "transformer.mlp.down_proj")
    return x + mlp


def draft_forward(draft, features, tokens):
    m = tokens.shape[0]
    visible = torch.ones(1, m, m, dtype=torch.bool).tril()
    out, _ = draft(features[None], draft.embed(tokens[None]), torch.arange(m)[None], None, visible)
    return out[0]


def random_inputs(seed=3, m=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, HIDDEN, generator=g, dtype=torch.float64), torch.randint(0, VOCAB, (m,), generator=g)


def as_loaded(tensors):
    """The values load_eagle ends up with on the float64 base: the file's, cast to the base's dtype."""
    return {k: v.double() for k, v in tensors.items()}


def load_quietly(folder, model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean published folder loads without a single warning
        return load_eagle(folder, model)


# ---------------------------------------------------------------------------------- reading
def test_published_folder_loads_with_the_right_shape(model, tmp_path):
    draft = load_quietly(write_folder(tmp_path / "head", published_config(), published_tensors()), model)
    assert draft.shape == EagleShape(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS,
                                     num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, num_layers=1,
                                     rms_norm_eps=1e-5, rope_theta=500000.0, fc_bias=True, attention_bias=False)
    assert draft.draft_vocab is None  # the whole vocabulary, through the target's lm_head


def test_weights_land_where_the_maths_needs_them(model, tmp_path):
    config, tensors = published_config(), published_tensors()
    draft = load_quietly(write_folder(tmp_path / "head", config, tensors), model)
    features, tokens = random_inputs()
    expected = manual_forward(as_loaded(tensors), config, model.get_input_embeddings().weight.detach(), features, tokens)
    torch.testing.assert_close(draft_forward(draft, features, tokens), expected, rtol=0, atol=1e-10)


def test_qwen2_layer_with_qkv_biases_maps_exactly(model, tmp_path):
    config = published_config(model_type="qwen2")
    config["transformer_layer_architecture"] = "auto"
    for key in ("attention_bias", "mlp_bias"):
        del config["transformer_layer_config"][key]
    tensors = published_tensors(qkv_bias=True)
    draft = load_quietly(write_folder(tmp_path / "head", config, tensors), model)
    assert draft.shape.attention_bias
    features, tokens = random_inputs()
    expected = manual_forward(as_loaded(tensors), config, model.get_input_embeddings().weight.detach(), features, tokens)
    torch.testing.assert_close(draft_forward(draft, features, tokens), expected, rtol=0, atol=1e-10)


def test_defaults_are_the_layer_config_class_defaults(model, tmp_path):
    config = published_config()
    for key in ("rope_theta", "rms_norm_eps", "head_dim", "num_key_value_heads", "rope_scaling"):
        del config["transformer_layer_config"][key]
    config["fusion_bias"] = False
    tensors = published_tensors(fc_bias=False)
    # Without head_dim and KV heads the layer is 4 heads of 8 with 4 KV heads.
    for p in "qkv":
        tensors[f"transformer.self_attn.{p}_proj.weight"] = torch.randn(HIDDEN, HIDDEN, dtype=torch.float64)
    tensors["transformer.self_attn.o_proj.weight"] = torch.randn(HIDDEN, HIDDEN, dtype=torch.float64)
    shape = load_quietly(write_folder(tmp_path / "head", config, tensors), model).shape
    assert (shape.rope_theta, shape.rms_norm_eps, shape.head_dim, shape.num_key_value_heads, shape.fc_bias) == \
        (10000.0, 1e-6, HIDDEN // HEADS, HEADS, False)


def test_transformers_5_rope_parameters_are_read(model, tmp_path):
    config = published_config(rope_parameters={"rope_type": "default", "rope_theta": 123456.0})
    del config["transformer_layer_config"]["rope_theta"]
    assert load_quietly(write_folder(tmp_path / "head", config, published_tensors()), model).shape.rope_theta == 123456.0


def test_sharded_weights_load(model, tmp_path):
    tensors = published_tensors()
    folder = tmp_path / "head"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(published_config()))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:4], "model-00002-of-00002.safetensors": names[4:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    draft = load_quietly(folder, model)
    assert torch.equal(draft.fc.weight, as_loaded(tensors)["fusion_fc.weight"])


def test_embeddings_in_the_file_are_checked_and_the_targets_used(model, tmp_path):
    tensors = published_tensors()
    tensors["embed_tokens.weight"] = torch.zeros(VOCAB, HIDDEN, dtype=torch.float64)
    draft = load_quietly(write_folder(tmp_path / "ok", published_config(), tensors), model)
    assert torch.equal(draft.embed(torch.tensor([5])), model.get_input_embeddings().weight[5:6].detach())
    assert not torch.equal(draft.embed(torch.tensor([5])), torch.zeros(1, HIDDEN, dtype=torch.float64))
    tensors["embed_tokens.weight"] = torch.zeros(VOCAB + 3, HIDDEN, dtype=torch.float64)
    with pytest.raises(ArtifactError, match=r"embed_tokens\.weight has shape \[100, 32\].*\[97, 32\]"):
        load_eagle(write_folder(tmp_path / "bad", published_config(), tensors), model)


# ---------------------------------------------------------------------------------- writing
def our_draft(model, fc_bias=True, seed=5):
    torch.manual_seed(seed)
    shape = EagleShape(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS,
                       num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, rms_norm_eps=1e-5, rope_theta=50000.0,
                       fc_bias=fc_bias)
    draft = EagleDraftModel(shape).to(torch.float64)
    with torch.no_grad():
        for p in draft.parameters():
            p.normal_(0, 0.2)
    draft.bind(model)
    return draft


@pytest.mark.parametrize("fc_bias", [True, False])
def test_writer_produces_the_published_layout(model, tmp_path, fc_bias):
    folder = write_speculators_eagle(tmp_path / "out", our_draft(model, fc_bias), "test/tiny-llama", model)
    stored = load_file(str(folder / "model.safetensors"))
    assert set(stored) == set(published_tensors(fc_bias=fc_bias))  # no embeddings, no lm_head
    config = json.loads((folder / "config.json").read_text())
    assert config["speculators_model_type"] == "eagle" and config["layernorms"] is False
    assert config["fusion_bias"] is fc_bias
    assert config["transformer_layer_architecture"] == "LlamaDecoderLayer"
    spec = config["speculators_config"]
    assert spec["algorithm"] == "eagle" and spec["default_proposal_method"] == "greedy"
    assert spec["proposal_methods"][0]["proposal_type"] == "greedy"
    assert spec["verifier"] == {"name_or_path": "test/tiny-llama", "architectures": ["LlamaForCausalLM"]}
    layer = config["transformer_layer_config"]
    assert (layer["model_type"], layer["hidden_size"], layer["intermediate_size"], layer["num_attention_heads"],
            layer["num_key_value_heads"], layer["head_dim"], layer["vocab_size"], layer["rope_theta"],
            layer["rms_norm_eps"]) == ("llama", HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, HEAD_DIM, VOCAB, 50000.0, 1e-5)


def test_write_then_load_round_trips(model, tmp_path):
    draft = our_draft(model)
    loaded = load_quietly(write_speculators_eagle(tmp_path / "out", draft, "test/tiny-llama", model), model)
    assert loaded.shape == draft.shape
    mine, theirs = draft.state_dict(), loaded.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    features, tokens = random_inputs()
    assert torch.equal(draft_forward(loaded, features, tokens), draft_forward(draft, features, tokens))


def test_writer_refuses_a_restricted_draft_vocabulary_unless_told(model, tmp_path):
    draft = our_draft(model)
    draft.draft_vocab = torch.arange(10)
    with pytest.raises(ArtifactError, match="draft_vocab"):
        write_speculators_eagle(tmp_path / "out", draft, "test/tiny-llama", model)
    with pytest.warns(UserWarning, match="whole vocabulary"):
        write_speculators_eagle(tmp_path / "out", draft, "test/tiny-llama", model, drop_draft_vocab=True)
    assert load_eagle(tmp_path / "out", model).draft_vocab is None


# ---------------------------------------------------------------------------------- refusals
def set_path(config, path, value):
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


DELETE = object()

CONFIG_REFUSALS = [
    ("speculators_model_type", "dflash", r"speculators_model_type 'dflash' is not an EAGLE head"),
    ("speculators_model_type", "eagle3", r"speculators_model_type 'eagle3' is EAGLE-3.*--method eagle3"),
    ("speculators_model_type", "peagle", r"speculators_model_type 'peagle' is parallel-drafting EAGLE-3.*not supported"),
    ("speculators_config.algorithm", "medusa", r"speculators_config\.algorithm is 'medusa'"),
    ("speculators_config", DELETE, r"config\.json is missing 'speculators_config'"),
    ("speculators_config.verifier", DELETE, r"speculators_config is missing 'verifier'"),
    ("speculators_config.verifier.name_or_path", DELETE, r"verifier is missing 'name_or_path'"),
    ("transformer_layer_config", DELETE, r"missing 'transformer_layer_config'"),
    ("transformer_layer_config.hidden_size", DELETE, r"transformer_layer_config is missing 'hidden_size'"),
    ("transformer_layer_config.model_type", "gemma", r"model_type 'gemma'"),
    ("transformer_layer_architecture", "MistralDecoderLayer", r"transformer_layer_architecture 'MistralDecoderLayer'"),
    ("transformer_layer_config.hidden_act", "gelu", r"hidden_act 'gelu'"),
    ("transformer_layer_config.attention_bias", True, r"attention_bias=true"),
    ("transformer_layer_config.mlp_bias", True, r"mlp_bias=true"),
    ("transformer_layer_config.rope_scaling", {"rope_type": "llama3", "factor": 8.0}, r"rope scaling"),
    ("layernorms", True, r"layernorms=true .* not implemented"),
]


@pytest.mark.parametrize("path,value,message", CONFIG_REFUSALS, ids=[f"{p}={v!r}"[:60] for p, v, _ in CONFIG_REFUSALS])
def test_unsupported_configs_are_refused(model, tmp_path, path, value, message):
    config = published_config()
    set_path(config, path, value)
    with pytest.raises(ArtifactError, match=message):
        load_eagle(write_folder(tmp_path / "head", config, published_tensors()), model)


def test_the_extra_layernorm_variant_is_refused_with_its_tensors(model, tmp_path):
    config = published_config()
    config["layernorms"] = True
    tensors = published_tensors()
    for name in ("embedding_layernorm.weight", "transformer.input_layernorm.weight", "pre_lm_head_layernorm.weight"):
        tensors[name] = torch.ones(HIDDEN, dtype=torch.float64)
    with pytest.raises(ArtifactError, match="layernorms=true"):
        load_eagle(write_folder(tmp_path / "with-config", config, tensors), model)
    # The tensors alone, under a config that does not admit them, are refused too.
    with pytest.raises(ArtifactError, match=r"pre_lm_head_layernorm\.weight.*inconsistent"):
        load_eagle(write_folder(tmp_path / "tensors-only", published_config(), tensors), model)


def test_a_bias_the_config_does_not_declare_is_refused(model, tmp_path):
    config = published_config()
    config["fusion_bias"] = False
    with pytest.raises(ArtifactError, match=r"fusion_fc\.bias but config\.json says fusion_bias=false"):
        load_eagle(write_folder(tmp_path / "head", config, published_tensors(fc_bias=True)), model)


def test_a_declared_bias_that_is_missing_is_named(model, tmp_path):
    with pytest.raises(ArtifactError, match=r"fusion_fc\.bias'\] missing"):
        load_eagle(write_folder(tmp_path / "head", published_config(), published_tensors(fc_bias=False)), model)


def test_a_tensor_with_no_place_is_named(model, tmp_path):
    tensors = published_tensors()
    tensors["transformer.self_attn.q_norm.weight"] = torch.ones(HEAD_DIM, dtype=torch.float64)  # a Qwen3 layer
    with pytest.raises(ArtifactError, match=r"no place for: \['transformer\.self_attn\.q_norm\.weight'\]"):
        load_eagle(write_folder(tmp_path / "head", published_config(), tensors), model)


@pytest.mark.parametrize("name", ["transformer.mlp.gate_proj.weight", "fusion_fc.weight",
                                  "transformer.self_attn.k_proj.weight"])
def test_a_shape_mismatch_names_the_tensor(model, tmp_path, name):
    tensors = published_tensors()
    rows, cols = tensors[name].shape
    tensors[name] = torch.zeros(rows + 1, cols, dtype=torch.float64)
    with pytest.raises(ArtifactError, match=rf"tensor {name.replace('.', '[.]')} has shape \[{rows + 1}, {cols}\]"):
        load_eagle(write_folder(tmp_path / "head", published_config(), tensors), model)


def test_a_missing_tensor_is_named(model, tmp_path):
    tensors = published_tensors()
    del tensors["transformer.mlp.up_proj.weight"]
    with pytest.raises(ArtifactError, match=r"transformer\.mlp\.up_proj\.weight'\] missing"):
        load_eagle(write_folder(tmp_path / "head", published_config(), tensors), model)


# ---------------------------------------------------------------------------------- the verifier
def test_a_verifier_of_another_hidden_size_is_refused(model, tmp_path):
    # The layer config is built from the verifier's config: its hidden size is the verifier's.
    config = published_config(hidden_size=48)
    with pytest.raises(ArtifactError, match=r"verifier's hidden size is 48 .*target's is 32"):
        load_eagle(write_folder(tmp_path / "layer", config, published_tensors(hidden=48)), model)
    # Configs saved by early speculators releases also give it in the verifier block.
    config = published_config()
    config["speculators_config"]["verifier"].update(hidden_size=64, vocab_size=VOCAB)
    with pytest.raises(ArtifactError, match=r"verifier's hidden size is 64 \(speculators_config\.verifier.*target's is 32"):
        load_eagle(write_folder(tmp_path / "verifier", config, published_tensors()), model)


def test_a_verifier_of_another_vocabulary_is_refused(model, tmp_path):
    with pytest.raises(ArtifactError, match=r"vocabulary size is 100 .*target's is 97"):
        load_eagle(write_folder(tmp_path / "layer", published_config(vocab_size=100), published_tensors()), model)
    config = published_config()
    config["speculators_config"]["verifier"]["vocab_size"] = 128256
    with pytest.raises(ArtifactError, match=r"vocabulary size is 128256 \(speculators_config\.verifier.*target's is 97"):
        load_eagle(write_folder(tmp_path / "verifier", config, published_tensors()), model)


def test_another_verifier_name_only_warns(tmp_path):
    other = make_tiny_llama(vocab_size=VOCAB, seed=0)
    other.config.name_or_path = "someone/different-model"
    folder = write_folder(tmp_path / "head", published_config(), published_tensors())
    with pytest.warns(UserWarning, match=r"verifier 'test/tiny-llama'.*someone/different-model"):
        assert load_eagle(folder, other) is not None
    # A local copy or hub cache path of the same model is not "another name".
    other.config.name_or_path = "/cache/models--test--tiny-llama/snapshots/0123abc"
    load_quietly(folder, other)


def test_load_eagle_reports_the_speculators_folder(model, tmp_path):
    folder = write_folder(tmp_path / "head", published_config(), published_tensors())
    draft = load_quietly(folder, model)
    assert draft.source == str(folder) and draft.config["speculators_model_type"] == "eagle"
    assert draft.config == published_config()
