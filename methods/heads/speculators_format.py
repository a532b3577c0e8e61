"""EAGLE heads in the `speculators` format (vLLM's speculators library): read them and write them.

What a folder holds (learned from vllm-project/speculators: the ``EagleSpeculator`` /
``EagleSpeculatorConfig`` model, registered as ``"eagle"``, and its EAGLE/HASS checkpoint
converter; vLLM's ``transformers_utils/configs/speculators`` reads the same config):

- ``config.json``::

    speculators_model_type   "eagle" (EAGLE-1, EAGLE-2 and HASS heads; "eagle3" is EAGLE-3)
    architectures            ["EagleSpeculator", "<decoder layer class>"]
    transformer_layer_architecture   "LlamaDecoderLayer", ... or "auto" (= from model_type)
    transformer_layer_config         the decoder layer's transformers config as a dict
                                     (model_type, hidden_size, intermediate_size, heads,
                                     rope_theta / rope_parameters, rms_norm_eps, vocab_size, ...;
                                     written with to_diff_dict, so a key left at the config class
                                     default may be absent, and num_hidden_layers is often the
                                     verifier's count: the head always has exactly one layer)
    layernorms               false, or true for a variant with three extra RMSNorms
    fusion_bias              whether the fc ("fusion") layer has a bias
    speculators_config       {algorithm: "eagle", proposal_methods: [{proposal_type: "greedy",
                              speculative_tokens, ...}], default_proposal_method: "greedy",
                              verifier: {name_or_path, architectures}}
                             (configs saved before mid-2025 also give the verifier's hidden_size,
                              intermediate_size, vocab_size, max_position_embeddings, bos/eos)

- ``model.safetensors`` (or shards named in ``model.safetensors.index.json``)::

    fusion_fc.weight [H, 2H], fusion_fc.bias [H] (only with fusion_bias)
    transformer.self_attn.{q,k,v,o}_proj.weight, transformer.mlp.{gate,up,down}_proj.weight,
    transformer.post_attention_layernorm.weight
    with layernorms: embedding_layernorm.weight, transformer.input_layernorm.weight,
                     pre_lm_head_layernorm.weight

  No embeddings and no lm_head: speculators takes both (and the rotary tables) from the verifier
  and leaves them out on save. A file that has them anyway gets a shape check and they are dropped.

The maths is ours exactly when layernorms is false: fc over [embedding, feature], one Llama-style
layer whose input norm speculators replaces with an identity, no final norm, the verifier's
lm_head. So ``fusion_fc.*`` -> ``fc.*`` and ``transformer.*`` -> ``layers.0.*``.

Refused rather than approximated: layernorms=true (our draft has no embedding norm, no layer-0
input norm and no pre-lm_head norm), decoder layers other than Llama and Qwen2 (others differ in
norms, activation or attention), attention or MLP biases beyond Qwen2's q/k/v biases, rope
scaling, a sliding window, any tensor we have no place for, and every other
speculators_model_type. EAGLE-3 heads ("eagle3") are read by methods/heads/eagle3_format.py, which
reuses this module's layer-config and verifier checks.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from methods.heads.artifact import ArtifactError, load_state
from methods.heads.eagle import EagleDraftModel, EagleShape

SPECULATORS_TYPE = "eagle"
ALGORITHM = "eagle"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Types other speculators releases write; named in the refusal so that users see what they have.
EAGLE3_TYPES = {"eagle3": "EAGLE-3", "peagle": "parallel-drafting EAGLE-3"}

# Decoder layers that are exactly our DecoderLayer. The defaults are those of the transformers
# config class for the keys we read: speculators rebuilds the layer config with
# AutoConfig.for_model, so a key missing from the JSON means the class default.
LAYER_FAMILIES = {
    "llama": {"decoder": "LlamaDecoderLayer", "qkv_bias": False},
    "qwen2": {"decoder": "Qwen2DecoderLayer", "qkv_bias": True},  # q/k/v biases, none on o_proj
}
LAYER_DEFAULTS = {"hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
REQUIRED_LAYER_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads")
REQUIRED_SPECULATORS_KEYS = ("algorithm", "proposal_methods", "default_proposal_method", "verifier")
# Tensors of the extra-layernorm variant, checked for even when the config says layernorms=false.
EXTRA_NORMS = ("embedding_layernorm.weight", "transformer.input_layernorm.weight", "pre_lm_head_layernorm.weight")
VERIFIER_TENSORS = ("embed_tokens.weight", "lm_head.weight")
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# ---------------------------------------------------------------------------------- names
def to_ours(name: str) -> str | None:
    """Our key for a speculators tensor name, or None when it has no counterpart."""
    if name.startswith("fusion_fc."):
        return "fc." + name[len("fusion_fc."):]
    if name.startswith("transformer."):
        return "layers.0." + name[len("transformer."):]
    return None


def to_speculators(key: str) -> str:
    if key.startswith("fc."):
        return "fusion_fc." + key[len("fc."):]
    if key.startswith("layers.0."):
        return "transformer." + key[len("layers.0."):]
    raise ArtifactError(f"tensor {key} has no place in the speculators EAGLE format (a second draft layer?)")


# ---------------------------------------------------------------------------------- target facts
def _target_facts(base_model) -> dict:
    head = base_model.get_output_embeddings().weight
    config = base_model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocabs = {int(head.shape[0])}
    if getattr(text, "vocab_size", None):
        vocabs.add(int(text.vocab_size))  # lm_head rows may be padded past the tokenizer's size
    return {
        "hidden": int(head.shape[1]), "vocab": int(getattr(text, "vocab_size", None) or head.shape[0]),
        "vocabs": vocabs, "shapes": {"embed_tokens.weight": tuple(base_model.get_input_embeddings().weight.shape),
                                     "lm_head.weight": tuple(head.shape)},
        "name": str(getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", "") or ""),
        "architectures": list(getattr(config, "architectures", None) or []),
    }


def _model_tail(name: str) -> str:
    """The model's own name in a hub id, a local folder or a hub cache snapshot path."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    for part in parts:
        if part.startswith("models--"):  # .../models--org--name/snapshots/<hash>
            return part.split("--")[-1].lower()
    return parts[-1].lower() if parts else ""


def _same_model_name(verifier: str, target: str) -> bool:
    """Hub ids and local paths name the same model differently: compare the model names only."""
    return _model_tail(verifier) == _model_tail(target)


# ---------------------------------------------------------------------------------- config
def _need(mapping, key: str, where: str, what: str):
    if not isinstance(mapping, dict) or key not in mapping or mapping[key] is None:
        raise ArtifactError(f"{where}: {what} is missing {key!r} (a speculators EAGLE config needs it)")
    return mapping[key]


def _check_type(config: dict, where: str) -> None:
    kind = config.get("speculators_model_type")
    if kind == SPECULATORS_TYPE:
        return
    if kind in EAGLE3_TYPES:
        hint = "run it with --method eagle3 --eagle3-path" if kind == "eagle3" else "not supported"
        raise ArtifactError(f"{where}: speculators_model_type {kind!r} is {EAGLE3_TYPES[kind]}; eagle and eagle2 "
                            f"load EAGLE-1/EAGLE-2/HASS heads (speculators_model_type 'eagle') only: {hint}")
    if not isinstance(kind, str) or not kind:
        raise ArtifactError(f"{where}: speculators_model_type is {kind!r}; expected 'eagle'")
    raise ArtifactError(f"{where}: speculators_model_type {kind!r} is not an EAGLE head this loader reads; "
                        f"only 'eagle' (EAGLE-1/EAGLE-2/HASS) is supported")


def _layer_family(config: dict, layer: dict, where: str) -> dict:
    model_type = layer.get("model_type")
    if model_type not in LAYER_FAMILIES:
        raise ArtifactError(f"{where}: transformer_layer_config has model_type {model_type!r}; only "
                            f"{sorted(LAYER_FAMILIES)} decoder layers match our EAGLE draft")
    family = LAYER_FAMILIES[model_type]
    architecture = config.get("transformer_layer_architecture", "auto")
    if architecture not in ("auto", family["decoder"]):
        raise ArtifactError(f"{where}: transformer_layer_architecture {architecture!r} is not supported with a "
                            f"{model_type} layer config; our draft implements {family['decoder']} only")
    return family


def _rope_theta(layer: dict, where: str) -> float:
    """rope_theta from a transformers 4 (rope_theta, rope_scaling) or 5 (rope_parameters) config."""
    params = layer.get("rope_parameters") or {}
    scaling = layer.get("rope_scaling") or {}
    for source in (params, scaling):
        kind = source.get("rope_type") or source.get("type")
        if kind not in (None, "default"):
            raise ArtifactError(f"{where}: transformer_layer_config uses rope scaling {source}, which our "
                                f"EAGLE draft does not implement (plain RoPE only)")
    theta = params.get("rope_theta") or layer.get("rope_theta") or LAYER_DEFAULTS["rope_theta"]
    return float(theta)


def _shape_from_layer(config: dict, layer: dict, family: dict, where: str) -> EagleShape:
    for key in REQUIRED_LAYER_KEYS:
        _need(layer, key, where, "transformer_layer_config")
    if layer.get("hidden_act", LAYER_DEFAULTS["hidden_act"]) != "silu":
        raise ArtifactError(f"{where}: transformer_layer_config has hidden_act {layer['hidden_act']!r}; "
                            f"our EAGLE draft's MLP is SiLU-gated")
    if layer.get("attention_bias"):
        # Llama puts the bias on o_proj as well; our attention has none there.
        raise ArtifactError(f"{where}: transformer_layer_config has attention_bias=true (biases on q/k/v and "
                            f"o_proj); our EAGLE draft has no o_proj bias")
    if layer.get("mlp_bias"):
        raise ArtifactError(f"{where}: transformer_layer_config has mlp_bias=true; our EAGLE draft's MLP has no biases")
    layer_types = layer.get("layer_types") or ["full_attention"]
    if layer.get("use_sliding_window") or layer_types[0] != "full_attention":
        raise ArtifactError(f"{where}: transformer_layer_config uses sliding-window attention, which our "
                            f"EAGLE draft does not implement")
    fusion_bias = config.get("fusion_bias", False)
    if not isinstance(fusion_bias, bool):
        raise ArtifactError(f"{where}: fusion_bias must be true or false, not {fusion_bias!r}")
    try:
        hidden = int(layer["hidden_size"])
        heads = int(layer["num_attention_heads"])
        return EagleShape(
            hidden_size=hidden, intermediate_size=int(layer["intermediate_size"]), num_attention_heads=heads,
            num_key_value_heads=int(layer.get("num_key_value_heads") or heads),
            head_dim=int(layer.get("head_dim") or hidden // heads),
            num_layers=1,  # speculators' EAGLE head has one layer whatever num_hidden_layers says
            rms_norm_eps=float(layer.get("rms_norm_eps") or LAYER_DEFAULTS["rms_norm_eps"]),
            rope_theta=_rope_theta(layer, where), fc_bias=fusion_bias, attention_bias=family["qkv_bias"],
        )
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: transformer_layer_config has a malformed size ({exc})") from None


def _size(values: dict, key: str, source: str, where: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ArtifactError(f"{where}: {source}.{key} is {value!r}, not a size") from None


def _check_verifier(config: dict, layer: dict, target: dict, where: str) -> None:
    verifier = config["speculators_config"]["verifier"]
    name = _need(verifier, "name_or_path", where, "speculators_config.verifier")
    # The verifier block of older configs carries its sizes; newer ones leave them to the layer
    # config, which speculators builds from the verifier's own config.
    sources = [("speculators_config.verifier", verifier), ("transformer_layer_config", layer)]
    for source, values in sources:
        hidden, vocab = _size(values, "hidden_size", source, where), _size(values, "vocab_size", source, where)
        if hidden is not None and hidden != target["hidden"]:
            raise ArtifactError(f"{where}: the verifier's hidden size is {hidden} ({source}.hidden_size), the "
                                f"target's is {target['hidden']}: this head was made for another model ({name})")
        if vocab is not None and vocab not in target["vocabs"]:
            raise ArtifactError(f"{where}: the verifier's vocabulary size is {vocab} ({source}.vocab_size), "
                                f"the target's is {target['vocab']}: this head was made for another model ({name})")
    if target["name"] and not _same_model_name(str(name), target["name"]):
        warnings.warn(f"{where}: this head was made for verifier {name!r}; the target is {target['name']!r} "
                      f"(its sizes match, so it is loaded)")
    architectures = verifier.get("architectures") or []
    if architectures and target["architectures"] and set(architectures) != set(target["architectures"]):
        warnings.warn(f"{where}: this head's verifier architectures are {architectures}; the target's are "
                      f"{target['architectures']}")


def validate_config(config: dict, base_model, where: str) -> EagleShape:
    """The draft shape of a speculators EAGLE config, after checking it against the target."""
    _check_type(config, where)
    spec = _need(config, "speculators_config", where, "config.json")
    for key in REQUIRED_SPECULATORS_KEYS:
        _need(spec, key, where, "speculators_config")
    if spec["algorithm"] != ALGORITHM:
        raise ArtifactError(f"{where}: speculators_config.algorithm is {spec['algorithm']!r}; an "
                            f"{SPECULATORS_TYPE!r} head must say {ALGORITHM!r}")
    if config.get("layernorms"):
        raise ArtifactError(f"{where}: layernorms=true (the EAGLE variant with an embedding norm, a layer-0 input "
                            f"norm and a pre-lm_head norm) is not implemented by our EAGLE draft")
    layer = _need(config, "transformer_layer_config", where, "config.json")
    if not isinstance(layer, dict):
        raise ArtifactError(f"{where}: transformer_layer_config must be an object, not {type(layer).__name__}")
    family = _layer_family(config, layer, where)
    _check_verifier(config, layer, _target_facts(base_model), where)
    return _shape_from_layer(config, layer, family, where)


# ---------------------------------------------------------------------------------- weights
def _weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return dict(load_state(folder / name)), folder / name
    for name in INDEX_FILES:
        index = folder / name
        if not index.is_file():
            continue
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{index}: not a weight index with a weight_map ({exc})") from None
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            path = folder / shard
            if path.parent != folder or not path.is_file():  # a shard must sit beside its index
                raise ArtifactError(f"{index}: shard {shard} is missing")
            state.update(load_state(path))
        return state, index
    raise ArtifactError(f"{folder}: no speculators weights ({', '.join(WEIGHT_FILES + INDEX_FILES)})")


def _expected_shapes(shape: EagleShape) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only, no memory
        return {k: tuple(v.shape) for k, v in EagleDraftModel(shape).state_dict().items()}


def map_weights(state: dict[str, torch.Tensor], shape: EagleShape, target: dict, where: str) -> dict[str, torch.Tensor]:
    """The speculators tensors under our keys; every tensor checked, every mismatch named."""
    extra_norms = [k for k in EXTRA_NORMS if k in state]
    if extra_norms:
        raise ArtifactError(f"{where}: holds {extra_norms}, the extra layernorms of the layernorms=true variant, "
                            f"but config.json says layernorms=false: the folder is inconsistent")
    if "fusion_fc.bias" in state and not shape.fc_bias:
        raise ArtifactError(f"{where}: holds fusion_fc.bias but config.json says fusion_bias=false")
    for name in VERIFIER_TENSORS:
        tensor = state.get(name)
        if tensor is not None and tuple(tensor.shape) != target["shapes"][name]:
            raise ArtifactError(f"{where}: tensor {name} has shape {list(tensor.shape)}, but the target model's is "
                                f"{list(target['shapes'][name])}: this head was made for another model")
    expected = _expected_shapes(shape)
    ours: dict[str, torch.Tensor] = {}
    unplaced = []
    for name, tensor in state.items():
        if name in VERIFIER_TENSORS or name.endswith(IGNORED_SUFFIXES):
            continue  # the target's own embeddings and lm_head are used, as in speculators
        key = to_ours(name)
        if key not in expected:
            unplaced.append(name)
            continue
        if tuple(tensor.shape) != expected[key]:
            raise ArtifactError(
                f"{where}: tensor {name} has shape {list(tensor.shape)}, but the config's layer needs "
                f"{list(expected[key])} (hidden {shape.hidden_size}, intermediate {shape.intermediate_size}, "
                f"{shape.num_attention_heads} heads / {shape.num_key_value_heads} KV heads of {shape.head_dim})")
        ours[key] = tensor
    if unplaced:
        raise ArtifactError(f"{where}: tensors our EAGLE draft has no place for: {sorted(unplaced)[:6]} "
                            f"(a decoder layer other than a plain Llama/Qwen2 one?)")
    missing = [to_speculators(k) for k in expected if k not in ours]
    if missing:
        raise ArtifactError(f"{where}: tensor(s) {missing} missing")
    return ours


def read_speculators_eagle(folder: Path, config: dict, base_model) -> tuple[EagleShape, dict[str, torch.Tensor], Path]:
    """Shape, state dict under our keys, and the weights path of a speculators EAGLE folder."""
    folder = Path(folder)
    shape = validate_config(config, base_model, str(folder / "config.json"))
    state, path = _weights(folder)
    return shape, map_weights(state, shape, _target_facts(base_model), str(path)), path


# ---------------------------------------------------------------------------------- writing
def write_speculators_eagle(folder: str | Path, draft_model: EagleDraftModel, verifier_name: str, base_model,
                            *, speculative_tokens: int = 5, drop_draft_vocab: bool = False) -> Path:
    """Write ``draft_model`` as a speculators EAGLE folder (config.json + model.safetensors).

    Tensors keep the draft's dtype. Embeddings and lm_head are not written: the format takes
    them from the verifier. ``speculative_tokens`` only fills the greedy proposal entry that
    vLLM reads as its default draft length.

    The format has no draft vocabulary: a head trained to choose among ``draft_vocab`` would be
    run over the whole vocabulary elsewhere, so that is refused unless ``drop_draft_vocab``.
    """
    from safetensors.torch import save_file

    s = draft_model.shape
    if not verifier_name:
        raise ArtifactError("write_speculators_eagle needs the verifier's name (a hub id or path)")
    if s.num_layers != 1:
        raise ArtifactError(f"the speculators EAGLE format holds one decoder layer; this draft has {s.num_layers}")
    target = _target_facts(base_model)
    if s.hidden_size != target["hidden"]:
        raise ArtifactError(f"the draft's hidden size is {s.hidden_size}, the verifier's {target['hidden']}")
    if draft_model.draft_vocab is not None:
        if not drop_draft_vocab:
            raise ArtifactError("this draft chooses among a restricted draft_vocab, which the speculators EAGLE "
                                "format cannot store (it always uses the verifier's whole lm_head); pass "
                                "drop_draft_vocab=True to export it for use over the whole vocabulary")
        warnings.warn("exporting without draft_vocab: the head will be run over the whole vocabulary")
    family = "qwen2" if s.attention_bias else "llama"  # q/k/v biases without an o_proj bias = Qwen2's layer
    decoder = LAYER_FAMILIES[family]["decoder"]
    base_text = base_model.config.get_text_config() if hasattr(base_model.config, "get_text_config") else base_model.config
    layer = {
        "model_type": family, "vocab_size": target["vocab"], "hidden_size": s.hidden_size,
        "intermediate_size": s.intermediate_size, "num_hidden_layers": 1,
        "num_attention_heads": s.num_attention_heads, "num_key_value_heads": s.num_key_value_heads,
        "head_dim": s.head_dim, "hidden_act": "silu", "rms_norm_eps": s.rms_norm_eps,
        # Both spellings, so that transformers 4 (rope_theta) and 5 (rope_parameters) agree.
        "rope_theta": s.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": s.rope_theta},
        "max_position_embeddings": int(getattr(base_text, "max_position_embeddings", 2048) or 2048),
        "tie_word_embeddings": False,
    }
    if family == "llama":
        layer.update(attention_bias=False, mlp_bias=False)
    dtype = draft_model.fc.weight.dtype
    config = {
        "architectures": ["EagleSpeculator", decoder],
        "speculators_model_type": SPECULATORS_TYPE,
        "transformer_layer_architecture": decoder,
        "transformer_layer_config": layer,
        "layernorms": False,
        "fusion_bias": bool(s.fc_bias),
        "speculators_config": {
            "algorithm": ALGORITHM,
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": int(speculative_tokens),
                                  "verifier_accept_k": 1, "accept_tolerance": 0.0}],
            "default_proposal_method": "greedy",
            "verifier": {"name_or_path": str(verifier_name),
                         "architectures": target["architectures"] or [type(base_model).__name__]},
        },
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    tensors = {to_speculators(k): v.detach().to("cpu").contiguous().clone()
               for k, v in draft_model.state_dict().items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # transformers refuses safetensors files whose metadata does not say format "pt".
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
