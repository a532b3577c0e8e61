"""DFlash draft weights on disk: z-lab's layout, the `speculators` "dflash" type, and ours.

- z-lab (the released ``z-lab/*-DFlash*`` drafters, read by their ``DFlashDraftModel``):
  ``config.json`` is a Qwen3 config of the *draft* (``num_hidden_layers`` = draft layers,
  ``hidden_size``, heads, ``head_dim``, ``intermediate_size``, ``rms_norm_eps``, ``rope_theta``,
  ``vocab_size`` = the target's) plus ``num_target_layers`` (the target's depth), ``block_size``
  (top level, or inside ``dflash_config`` in later releases) and ``dflash_config: {mask_token_id,
  target_layer_ids}``; ``layer_types`` per draft layer. Weights (no prefix): ``fc.weight``
  [H, n·H], ``hidden_norm.weight``, ``layers.{i}.self_attn.{q,k,v,o}_proj.weight``,
  ``layers.{i}.self_attn.{q,k}_norm.weight`` [head_dim], ``layers.{i}.mlp.{gate,up,down}_proj``,
  ``layers.{i}.{input,post_attention}_layernorm.weight``, ``norm.weight``; no embeddings, no
  lm_head (both the target's). ``target_layer_ids`` j name the *output* of target layer j.
- `speculators` (``speculators_model_type: "dflash"``): the draft's layer config in
  ``transformer_layer_config`` (its ``num_hidden_layers`` = draft layers, ``vocab_size`` = the
  verifier's), ``aux_hidden_state_layer_ids`` k = j + 1 (the *input* of target layer k),
  ``mask_token_id``, ``block_size``, ``draft_vocab_size``, ``sample_from_anchor`` (false for
  DFlash), ``speculators_config.verifier``. The same body keys, plus ``lm_head.weight``
  [N, H] with ``d2t`` (offsets: column d is target id d + d2t[d]) and ``t2d`` when the draft
  vocabulary is reduced; a copy of the verifier's embeddings may be present (shape-checked and
  dropped), training-only ``verifier_*`` tensors likewise.
- Ours (``training/train_drafter.py --method dflash``): the z-lab config and keys, plus
  ``"method": "dflash"`` and the base's fingerprint (loading onto another base is refused), and
  ``draft_vocab`` (int, the target ids whose lm_head rows the draft scores; absent = all).

Read from safetensors only (one file or shards listed in ``model.safetensors.index.json``): a
pickle (``pytorch_model.bin``, ``.pt``) can run code when opened and is refused. Refused as well,
each with the reason: a draft made for another model (hidden size, vocabulary, target depth,
feature layers the target does not have or its last layer's output), variants whose maths differ
(sliding-window or causal draft layers, DFlash2's convolutions and candidate selector, Domino,
DSpark's ``sample_from_anchor``, logit scaling or soft-capping, rope scaling, non-SiLU MLPs), any
tensor with no place in the draft, any tensor of the wrong shape, any tensor missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from methods.heads import speculators_format as spec
from methods.heads.artifact import (ArtifactError, check_draft_vocab, check_trained_base, load_state, read_config,
                                    ready_for_drafting)
from methods.heads.dflash import DFlashDraftModel, DFlashShape
from methods.heads.eagle3_format import vocab_maps
from methods.heads.eagle_format import build_filled

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
ARCHITECTURE = "DFlashDraftModel"
# Tensors a speculators checkpoint may carry that the draft takes from the target or never uses.
VERIFIER_COPIES = ("embed_tokens.weight", "verifier_lm_head.weight", "verifier_norm.weight")
# Config keys of variants whose maths differ from the DFlash draft implemented here.
VARIANT_KEYS = {
    "conv_kernel_size": "DFlash2's dynamic convolutions", "selector_rank": "DFlash2's candidate selector",
    "selector_top_k": "DFlash2's candidate selector", "markov_rank": "DSpark's Markov head",
}


# ---------------------------------------------------------------------------------- files
def read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict of a DFlash folder, from safetensors only."""
    single, index = folder / WEIGHTS, folder / INDEX
    if single.is_file():
        return dict(load_state(single)), single
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"{index}: not a weight index with a weight_map ({exc})") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            path = folder / shard
            if not shard.endswith(".safetensors"):
                raise ArtifactError(f"{index}: shard {shard} is not a safetensors file; DFlash drafts are read from "
                                    f"safetensors only")
            if path.parent != folder or not path.is_file():  # a shard must sit beside its index
                raise ArtifactError(f"{index}: shard {shard} is missing")
            state.update(load_state(path))
        return state, index
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ArtifactError(f"{folder}: only pickle weights ({', '.join(pickles)}); DFlash drafts are read from "
                            f"safetensors only, because opening a pickle can run code. Convert the file to "
                            f"{WEIGHTS} with a tool you trust")
    raise ArtifactError(f"{folder}: no DFlash weights ({WEIGHTS} or {INDEX})")


# ---------------------------------------------------------------------------------- config values
def _int(values: dict, key: str, where: str, default=None) -> int:
    value = values.get(key, default)
    if value is None:
        raise ArtifactError(f"{where}: needs {key}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ArtifactError(f"{where}: {key} is {value!r}, not a whole number")
    return int(value)


def _ids(value, key: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ArtifactError(f"{where}: {key} must be a non-empty list of layer indices, not {value!r}")
    return tuple(_int({key: v}, key, where) for v in value)


def _check_layer_config(layer: dict, draft_layers: int, where: str) -> None:
    """Refuse draft layers whose maths differ from the Qwen3-style DFlash layer."""
    if layer.get("hidden_act", "silu") != "silu":
        raise ArtifactError(f"{where}: hidden_act {layer['hidden_act']!r}; the DFlash draft's MLP is SiLU-gated")
    if layer.get("mlp_bias"):
        raise ArtifactError(f"{where}: mlp_bias=true; the DFlash draft's MLP has no biases")
    types = layer.get("layer_types") or ["full_attention"] * draft_layers
    others = sorted({t for t in types if t != "full_attention"})
    if others or layer.get("use_sliding_window"):
        raise ArtifactError(f"{where}: draft layers of type {others or ['sliding_attention']}; only full-attention "
                            f"(bidirectional) DFlash layers are implemented")
    if layer.get("is_causal"):
        raise ArtifactError(f"{where}: is_causal=true; DFlash layers here are bidirectional within the block")
    for key, default in (("input_embedding_scale", 1.0), ("output_multiplier", 1.0)):
        if float(layer.get(key) or default) != default:
            raise ArtifactError(f"{where}: {key} {layer[key]} is not implemented by this DFlash draft")
    if layer.get("final_logit_softcapping"):
        raise ArtifactError(f"{where}: final_logit_softcapping is not implemented by this DFlash draft")
    projector = layer.get("projector_type", "dflash")
    if projector != "dflash":
        raise ArtifactError(f"{where}: projector_type {projector!r} (a DFlash variant with a correction head) is "
                            f"not implemented; only plain DFlash drafts are")
    for key, what in VARIANT_KEYS.items():
        if layer.get(key) is not None:
            raise ArtifactError(f"{where}: {key} is set: {what}, which this DFlash draft does not implement")


def _shape(layer: dict, *, target_layer_ids, block_size, mask_token_id, draft_vocab_size, where) -> DFlashShape:
    hidden = _int(layer, "hidden_size", where)
    heads = _int(layer, "num_attention_heads", where)
    return DFlashShape(
        hidden_size=hidden, intermediate_size=_int(layer, "intermediate_size", where), num_attention_heads=heads,
        num_key_value_heads=_int(layer, "num_key_value_heads", where, heads),
        head_dim=_int(layer, "head_dim", where, hidden // heads), num_layers=_int(layer, "num_hidden_layers", where),
        target_layer_ids=target_layer_ids, block_size=block_size, mask_token_id=mask_token_id,
        vocab_size=_int(layer, "vocab_size", where), draft_vocab_size=draft_vocab_size,
        rms_norm_eps=float(layer.get("rms_norm_eps") or 1e-6), rope_theta=spec._rope_theta(layer, where),
        attention_bias=bool(layer.get("attention_bias", False)))


# ---------------------------------------------------------------------------------- the two layouts
def _zlab(config: dict, where: str) -> DFlashShape:
    architectures = config.get("architectures") or [ARCHITECTURE]
    if ARCHITECTURE not in architectures:
        raise ArtifactError(f"{where}: architectures {architectures}; only {ARCHITECTURE} (plain DFlash) drafts "
                            f"are implemented")
    dflash = config.get("dflash_config")
    if not isinstance(dflash, dict):
        raise ArtifactError(f"{where}: no dflash_config (a z-lab DFlash config has dflash_config with "
                            f"mask_token_id and target_layer_ids)")
    _check_layer_config({**config, **dflash}, _int(config, "num_hidden_layers", where), where)
    block = _int(dflash, "block_size", where, config.get("block_size", 16))
    ids = _ids(dflash.get("target_layer_ids", config.get("target_layer_ids")), "target_layer_ids", where)
    mask = _int(dflash, "mask_token_id", where, config.get("mask_token_id"))
    return _shape(config, target_layer_ids=ids, block_size=block, mask_token_id=mask, draft_vocab_size=0,
                  where=where)


def _speculators(config: dict, target: dict, where: str) -> DFlashShape:
    kind = config.get("speculators_model_type")
    if kind != "dflash":
        raise ArtifactError(f"{where}: speculators_model_type {kind!r} is not a DFlash draft ('dflash')"
                            + (" (an EAGLE head: use --method eagle, eagle2 or eagle3)" if kind in ("eagle", "eagle3")
                               else ""))
    layer = spec._need(config, "transformer_layer_config", where, "config.json")
    if not isinstance(layer, dict):
        raise ArtifactError(f"{where}: transformer_layer_config must be an object")
    algorithm = (config.get("speculators_config") or {}).get("algorithm", "dflash")
    if algorithm != "dflash":
        raise ArtifactError(f"{where}: speculators_config.algorithm is {algorithm!r}; a DFlash draft says 'dflash'")
    if config.get("sample_from_anchor"):
        raise ArtifactError(f"{where}: sample_from_anchor=true (DSpark: the anchor row is drafted too); DFlash "
                            f"drafts leave row 0 to the root and are the only kind implemented")
    if config.get("shift_label"):
        raise ArtifactError(f"{where}: shift_label=true shifts every prediction by one position, which this DFlash "
                            f"draft does not implement")
    _check_layer_config({**layer, "projector_type": config.get("projector_type", "dflash")},
                        _int(layer, "num_hidden_layers", where), where)
    hidden = _int(layer, "hidden_size", where)
    if config.get("target_hidden_size") not in (None, hidden):
        raise ArtifactError(f"{where}: target_hidden_size {config['target_hidden_size']} differs from the draft's "
                            f"{hidden}; the draft embeds tokens with the target's embeddings, so they must match")
    if "speculators_config" in config:
        spec._check_verifier(config, layer, target, where)
    aux = _ids(config.get("aux_hidden_state_layer_ids"), "aux_hidden_state_layer_ids", where)
    vocab = _int(layer, "vocab_size", where)
    draft_vocab = _int(config, "draft_vocab_size", where, vocab)
    return _shape(layer, target_layer_ids=tuple(k - 1 for k in aux), block_size=_int(config, "block_size", where, 8),
                  mask_token_id=_int(config, "mask_token_id", where), where=where,
                  draft_vocab_size=0 if draft_vocab == vocab else draft_vocab)


# ---------------------------------------------------------------------------------- checks
def check_fits_target(shape: DFlashShape, config: dict, target: dict, where: str) -> None:
    """Refuse a draft made for another model: widths, vocabulary, depth, layers, mask id."""
    if shape.hidden_size != target["hidden"]:
        raise ArtifactError(f"{where}: the draft's hidden size is {shape.hidden_size}, the target's {target['hidden']}: "
                            f"this DFlash draft was made for another model")
    if shape.vocab_size not in target["vocabs"]:
        raise ArtifactError(f"{where}: the draft's target vocabulary is {shape.vocab_size} tokens, this target's is "
                            f"{target['vocab']}: made for another model")
    depth = target["layers"]
    declared = config.get("num_target_layers")
    if declared is not None and _int(config, "num_target_layers", where) != depth:
        raise ArtifactError(f"{where}: num_target_layers is {declared}, the target has {depth} layers: made for "
                            f"another model")
    ids = list(shape.target_layer_ids)
    if any(j < -1 for j in ids) or any(j >= depth - 1 for j in ids):
        raise ArtifactError(f"{where}: target layer ids {ids} (outputs of those layers) must lie in -1 .. {depth - 2} "
                            f"for a target of {depth} layers; the last layer's raw output is not read (its normed "
                            f"version is what transformers reports as the last hidden state)")
    if not 0 <= shape.mask_token_id < target["embed"][0]:
        raise ArtifactError(f"{where}: mask_token_id {shape.mask_token_id} is not a row of the target's embeddings "
                            f"({target['embed'][0]} rows)")
    if shape.block_size < 2:
        raise ArtifactError(f"{where}: block_size {shape.block_size}; a block holds the root and at least one mask")


def _place(state: dict, shape: DFlashShape, target: dict, where: str) -> dict:
    """Drop checked copies of the target's tensors; refuse tensors with no place in the draft."""
    for name in VERIFIER_COPIES:
        tensor = state.pop(name, None)
        if name == "embed_tokens.weight" and tensor is not None and tuple(tensor.shape) != target["embed"]:
            raise ArtifactError(f"{where}: embed_tokens.weight has shape {list(tensor.shape)}, the target's embeddings "
                                f"are {list(target['embed'])}: made for another model")
    if not shape.draft_vocab_size:
        head = state.pop("lm_head.weight", None)  # a full-vocabulary copy of the verifier's head
        if head is not None and tuple(head.shape) != target["head"]:
            raise ArtifactError(f"{where}: lm_head.weight has shape {list(head.shape)}, the target's head is "
                                f"{list(target['head'])}: made for another model")
    with torch.device("meta"):  # names and shapes only
        expected = DFlashDraftModel(shape, draft_vocab=torch.zeros(shape.draft_vocab_size, dtype=torch.long)
                                    if shape.draft_vocab_size else None).state_dict()
    unplaced = sorted(k for k in state if k not in expected and not k.endswith("rotary_emb.inv_freq"))
    if unplaced:
        raise ArtifactError(f"{where}: tensors this DFlash draft has no place for: {unplaced[:6]} (a DFlash variant, "
                            f"or more layers than the config says?)")
    return state


def _target(base_model) -> dict:
    facts = spec._target_facts(base_model)
    text = base_model.config.get_text_config()
    facts.update(layers=int(text.num_hidden_layers), embed=facts["shapes"]["embed_tokens.weight"],
                 head=facts["shapes"]["lm_head.weight"])
    return facts


def load_dflash(folder: str | Path, base_model) -> DFlashDraftModel:
    """A DFlash draft from a z-lab, `speculators` or trained folder, checked against the target."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"DFlash folder not found: {folder}")
    config = read_config(folder)
    where = str(folder / "config.json")
    target = _target(base_model)
    if "speculators_model_type" in config:
        shape = _speculators(config, target, where)
    else:
        if config.get("method") not in (None, "dflash"):
            raise ArtifactError(f"{folder}: a {config.get('method')} artifact, not a DFlash draft")
        shape = _zlab(config, where)
    check_fits_target(shape, config, target, where)
    state, path = read_weights(folder)
    if config.get("method") == "dflash":  # ours: trained on one base, whose head rows it scores
        check_trained_base(config, base_model, "DFlash draft", folder)
    draft_vocab = state.pop("draft_vocab", None)
    columns = shape.draft_vocab_size or shape.vocab_size
    d2t = vocab_maps(state, SimpleNamespace(draft_vocab_size=columns, vocab_size=shape.vocab_size), target["vocab"],
                     str(path))  # also checks (and drops) identity maps of a full-vocabulary draft
    if shape.draft_vocab_size:
        draft_vocab = torch.arange(columns) + (0 if d2t is None else d2t)
    elif draft_vocab is not None:
        draft_vocab = draft_vocab.long().reshape(-1)
        check_draft_vocab(draft_vocab, target["vocab"], path)
    state = _place(state, shape, target, str(path))
    param = next(base_model.parameters())
    # Built on the meta device and checked against the file's shapes before any memory is taken.
    model = build_filled(lambda: DFlashDraftModel(shape, draft_vocab=draft_vocab), state, str(path), f"hidden {shape.hidden_size}, intermediate {shape.intermediate_size}, "
                                  f"{shape.num_attention_heads} heads / {shape.num_key_value_heads} KV heads of "
                                  f"{shape.head_dim}, {shape.num_layers} layers, {len(shape.target_layer_ids)} "
                                  f"target features", like=param)
    return ready_for_drafting(model, base_model, folder, config)
