"""EAGLE-3 draft weights on disk: the published layout, ours, and the `speculators` format.

- Published (SafeAILab, e.g. yuhuili/EAGLE3-Vicuna1.3-13B or the LLaMA-3.1 releases): a
  Llama-style ``config.json`` with ``num_hidden_layers: 1`` and ``draft_vocab_size`` (optionally
  ``target_hidden_size``, ``rope_theta``), and ``model.safetensors`` or ``pytorch_model.bin`` with
  ``fc.weight`` [H, 3H_t], ``midlayer.*`` (q/k/v_proj reading 2H, three RMSNorms), ``norm.weight``,
  ``lm_head.weight`` [N, H], ``d2t`` [N] int64 offsets and ``t2d`` [V] bool. The embeddings are
  absent (the published loader takes the base's); a copy, if present, is checked for shape.
  When N equals the target's vocabulary the maps are the identity and may be absent.
- Ours (training/train_drafter.py --method eagle3): the same keys and config, plus
  ``"method": "eagle3"``, the feature layers and the base's fingerprint (loading onto another
  base is refused).
- `speculators` (``speculators_model_type: "eagle3"``): the layer config in
  ``transformer_layer_config``, the decoder layer under ``layers.0.*`` (read into ``midlayer.*``),
  an fc that may have a bias, optional ``eagle_aux_hidden_state_layer_ids`` and
  ``norm_before_residual``.

The head must fit the target: three features of the target's hidden size into fc, the target's
embedding width and vocabulary. A head made for another model is refused with an error that says
what does not fit, instead of being run (Spec-Bench's eval.sh pairs the Vicuna-13B EAGLE-3 head,
fc 15360 wide, with Vicuna-7B, whose three features are 12288 wide).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from methods.heads.artifact import (ArtifactError, check_trained_base, find_weights, load_state, read_config,
                                    ready_for_drafting)
from methods.heads.eagle3 import Eagle3DraftModel, Eagle3Shape
from methods.heads.eagle_format import build_filled

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
VOCAB_MAPS = ("d2t", "t2d")


def _target(base_model) -> dict:
    head = base_model.get_output_embeddings().weight
    text = base_model.config.get_text_config()
    vocabs = {int(head.shape[0])}
    if getattr(text, "vocab_size", None):
        vocabs.add(int(text.vocab_size))  # lm_head rows may be padded past the tokenizer's size
    return {"hidden": int(head.shape[1]), "vocab": int(head.shape[0]), "vocabs": vocabs,
            "layers": int(text.num_hidden_layers),
            "embed": tuple(base_model.get_input_embeddings().weight.shape)}


def _int(config: dict, key: str, where: str, default=None):
    value = config.get(key, default)
    if value is None:
        raise ArtifactError(f"{where}: config.json needs {key} (a Llama-style EAGLE-3 config)")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ArtifactError(f"{where}: {key} is {value!r}, not a size") from None


def _layers(value, where: str) -> tuple[int, ...]:
    if value in (None, [], ()):
        return ()
    try:
        layers = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ArtifactError(f"{where}: feature layers {value!r} are not layer indices") from None
    if len(layers) != 3:
        raise ArtifactError(f"{where}: EAGLE-3 fuses three target layers, {len(layers)} given ({list(layers)})")
    return layers


def shape_from_config(config: dict, state: dict, where: str) -> Eagle3Shape:
    """The draft shape of a published (or our) EAGLE-3 config; the fc bias is read off the weights."""
    scaling = config.get("rope_scaling")
    if scaling and (scaling.get("rope_type") or scaling.get("type")) not in (None, "default"):
        raise ArtifactError(f"{where}: rope_scaling {scaling} is not supported by this EAGLE-3 draft")
    hidden = _int(config, "hidden_size", where)
    heads = _int(config, "num_attention_heads", where)
    vocab = _int(config, "vocab_size", where)
    rope = config.get("rope_parameters") or {}
    return Eagle3Shape(
        hidden_size=hidden, intermediate_size=_int(config, "intermediate_size", where), num_attention_heads=heads,
        num_key_value_heads=_int(config, "num_key_value_heads", where, heads),
        head_dim=_int(config, "head_dim", where, hidden // heads), num_layers=1,
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0),
        fc_bias="fc.bias" in state, attention_bias="midlayer.self_attn.q_proj.bias" in state,
        vocab_size=vocab, draft_vocab_size=_int(config, "draft_vocab_size", where, vocab),
        target_hidden_size=int(config.get("target_hidden_size") or 0),
        feature_layers=_layers(config.get("feature_layers") or config.get("eagle_aux_hidden_state_layer_ids"), where),
        norm_before_residual=bool(config.get("norm_before_residual", False)),
    )


def _speculators(folder: Path, config: dict, base_model) -> tuple[Eagle3Shape, dict, Path]:
    """A speculators "eagle3" folder as (shape, state under the published keys, weights path)."""
    from methods.heads import speculators_format as spec

    where = str(folder / "config.json")
    layer = spec._need(config, "transformer_layer_config", where, "config.json")
    if not isinstance(layer, dict):
        raise ArtifactError(f"{where}: transformer_layer_config must be an object")
    family = spec._layer_family(config, layer, where)
    if "speculators_config" in config:
        spec._check_verifier(config, layer, spec._target_facts(base_model), where)
    inner = spec._shape_from_layer(config, layer, family, where)
    raw, path = spec._weights(folder)
    state = {("midlayer." + k[len("layers.0."):] if k.startswith("layers.0.") else k): v for k, v in raw.items()}
    vocab = _int(layer, "vocab_size", where)
    shape = Eagle3Shape(**{**inner.to_dict(), "fc_bias": "fc.bias" in state,
                           "feature_layers": _layers(config.get("eagle_aux_hidden_state_layer_ids"), where)},
                        vocab_size=vocab, draft_vocab_size=_int(config, "draft_vocab_size", where, vocab),
                        target_hidden_size=int(config.get("target_hidden_size") or 0),
                        norm_before_residual=bool(config.get("norm_before_residual", False)))
    return shape, state, path


def _replace(shape: Eagle3Shape, **changes) -> Eagle3Shape:
    values = shape.to_dict()
    values.update(changes)
    values["feature_layers"] = tuple(values["feature_layers"])
    return Eagle3Shape(**values)


def check_fits_target(shape: Eagle3Shape, state: dict, target: dict, where: str) -> None:
    """Refuse a head whose verifier had other shapes than this target."""
    fc = state.get("fc.weight")
    features = shape.feature_width if fc is None else int(fc.shape[1])
    if features != 3 * target["hidden"]:
        raise ArtifactError(
            f"{where}: fc takes {features} inputs, three features of hidden size {features // 3}; the target's hidden "
            f"size is {target['hidden']} (fc would need {3 * target['hidden']}): this EAGLE-3 head was made for "
            f"another model and cannot run on this one")
    if shape.hidden_size != target["hidden"]:
        raise ArtifactError(f"{where}: the draft's hidden size is {shape.hidden_size}, but it embeds tokens with the "
                            f"target's embeddings of width {target['hidden']}: made for another model")
    if shape.vocab_size not in target["vocabs"]:
        raise ArtifactError(f"{where}: the head's target vocabulary is {shape.vocab_size} tokens, this target's is "
                            f"{target['vocab']}: made for another model")
    embed = state.pop("embed_tokens.weight", None)
    if embed is not None and tuple(embed.shape) != target["embed"]:
        raise ArtifactError(f"{where}: embed_tokens.weight has shape {list(embed.shape)}, the target's embeddings "
                            f"are {list(target['embed'])}: made for another model")
    layers = shape.feature_layers or ()
    bad = [i for i in layers if not 0 <= i < target["layers"]]
    if bad:
        raise ArtifactError(f"{where}: feature layers {list(layers)} name layers the target (of {target['layers']}) "
                            f"does not have")


def vocab_maps(state: dict, shape: Eagle3Shape, target_vocab: int, where: str):
    """d2t as offsets [N] (None = identity), after checking both maps against the shapes."""
    d2t, t2d = state.pop("d2t", None), state.pop("t2d", None)
    n = shape.draft_vocab_size
    if t2d is not None and t2d.numel() != shape.vocab_size:
        raise ArtifactError(f"{where}: t2d has {t2d.numel()} entries, the vocabulary {shape.vocab_size}")
    if d2t is None:
        if n != shape.vocab_size:
            raise ArtifactError(f"{where}: the draft vocabulary has {n} of {shape.vocab_size} tokens but there is no "
                                f"d2t map to the target's ids")
        return None
    if d2t.numel() != n:
        raise ArtifactError(f"{where}: d2t has {d2t.numel()} entries, the draft vocabulary {n}")
    ids = torch.arange(n) + d2t.long().reshape(-1)
    if n and (int(ids.min()) < 0 or int(ids.max()) >= target_vocab):
        raise ArtifactError(f"{where}: d2t maps draft tokens outside the target's vocabulary of {target_vocab}")
    if n > 1 and not bool((ids[1:] > ids[:-1]).all()):
        raise ArtifactError(f"{where}: d2t maps two draft tokens to one target id (or out of order)")
    if t2d is not None and int(t2d.bool().sum()) != n:
        warnings.warn(f"{where}: t2d marks {int(t2d.bool().sum())} target ids, d2t maps {n}; d2t is used")
    if n == shape.vocab_size and not bool(d2t.any()):
        return None
    return d2t.long().reshape(-1)


def load_eagle3(folder: str | Path, base_model, feature_layers=None) -> Eagle3DraftModel:
    """An EAGLE-3 draft from a published, trained or `speculators` folder, checked against the base.
    ``feature_layers`` (three target layer indices) overrides what the folder says."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"EAGLE-3 folder not found: {folder}")
    config = read_config(folder)
    target = _target(base_model)
    kind = config.get("speculators_model_type")
    if kind is not None:
        if kind != "eagle3":
            raise ArtifactError(f"{folder}: speculators_model_type {kind!r} is not an EAGLE-3 head"
                                + (" (an EAGLE-1/2 head: use --method eagle or eagle2 with --eagle-path)"
                                   if kind == "eagle" else ""))
        shape, state, path = _speculators(folder, config, base_model)
    else:
        if config.get("method") not in (None, "eagle3"):
            raise ArtifactError(f"{folder}: a {config.get('method')} artifact, not an EAGLE-3 draft")
        path = find_weights(folder, WEIGHT_FILES, "EAGLE-3")
        state = dict(load_state(path))
        if "midlayer.self_attn.q_proj.weight" not in state:
            hint = (" (it looks like an EAGLE-1/2 draft: use --method eagle or eagle2)"
                    if "layers.0.self_attn.q_proj.weight" in state else "")
            raise ArtifactError(f"{path}: no midlayer.self_attn.q_proj.weight, not an EAGLE-3 draft{hint}")
        if config.get("method") == "eagle3":  # ours: the base's embeddings, trained on one base
            check_trained_base(config, base_model, "EAGLE-3 draft", folder)
        shape = shape_from_config(config, state, str(folder / "config.json"))
    if feature_layers is not None:
        shape = _replace(shape, feature_layers=_layers(feature_layers, "--eagle3-layers"))
    check_fits_target(shape, state, target, str(path))
    d2t = vocab_maps(state, shape, target["vocab"], str(path))
    model = build_filled(lambda: Eagle3DraftModel(shape, d2t=d2t), state, str(path),
                         f"hidden {shape.hidden_size}, intermediate {shape.intermediate_size}, "
                         f"{shape.num_attention_heads} heads / {shape.num_key_value_heads} KV heads, "
                         f"draft vocabulary {shape.draft_vocab_size}", next(base_model.parameters()))
    return ready_for_drafting(model, base_model, folder, config)
