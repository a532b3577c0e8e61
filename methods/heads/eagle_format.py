"""EAGLE draft weights on disk: the published folder layout, ours, and the `speculators` format.

- Published (SafeAILab, e.g. yuhuili/EAGLE-Vicuna-7B-v1.3, used by EAGLE-1 and EAGLE-2): a
  Llama-style ``config.json`` with ``num_hidden_layers: 1`` (optional ``bias`` for fc.bias, default
  true; ``rope_theta`` when the release sets one) and ``pytorch_model.bin`` or
  ``model.safetensors`` holding ``embed_tokens.weight`` (a copy of the base's embeddings: checked
  for shape, otherwise the base's own are used), ``fc.weight/bias`` and ``layers.0.*`` without an
  input layernorm. Never open it with AutoModelForCausalLM: it is not a causal LM.
- Ours (training/train_drafter.py --method eagle): the same keys minus the embeddings, plus
  ``draft_vocab`` (the ids the draft was trained to choose among), in ``model.safetensors``; the
  config has ``"method": "eagle"``, ``"shares_base_lm_head": true``, the draft shape and the base's
  fingerprint, and loading onto another base is refused.
- `speculators` (``speculators_model_type`` in config.json): read by
  methods/heads/speculators_format.py into the same shape and keys.

Every tensor's shape is checked against what the target needs, and an error names the tensor.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from methods.heads.artifact import (ArtifactError, check_trained_base, check_draft_vocab, find_weights, load_state,
                                    read_config, ready_for_drafting)
from methods.heads.eagle import EagleDraftModel, EagleShape

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def shape_from_config(config: dict, state: dict[str, torch.Tensor], where: str) -> EagleShape:
    """The draft shape of a published EAGLE config (Llama-style keys)."""
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        intermediate = int(config["intermediate_size"])
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{where}: config.json needs hidden_size, num_attention_heads and "
                            f"intermediate_size (a Llama-style EAGLE config)") from None
    scaling = config.get("rope_scaling")
    if scaling and (scaling.get("rope_type") or scaling.get("type")) not in (None, "default"):
        raise ArtifactError(f"{where}: rope_scaling {scaling} is not supported by this EAGLE draft")
    layers = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("layers.")), default=0)
    declared = config.get("num_hidden_layers")
    if declared is not None and int(declared) != layers:
        warnings.warn(f"{where}: config.json says num_hidden_layers={declared}; the weights hold {layers} "
                      f"layer(s), which are used")
    return EagleShape(
        hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads,
        num_key_value_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads), num_layers=layers,
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        # EAGLE's draft uses the config's rope_theta when it has one, else Llama's 10000.
        rope_theta=float(config.get("rope_theta") or 10000.0),
        fc_bias=bool(config.get("bias", True)),
        attention_bias="layers.0.self_attn.q_proj.bias" in state,
    )


def build_filled(make: Callable[[], nn.Module], state: dict[str, torch.Tensor], where: str, hint: str,
                 like: torch.Tensor) -> nn.Module:
    """The module ``make()`` builds, on ``like``'s device and dtype, filled from ``state``.

    It is built on the meta device first (shapes only, no memory) and every expected tensor
    checked against the file's: a config.json whose sizes disagree with its weights (an
    intermediate size of 1e9, say) is refused as malformed before anything is allocated for it.
    Built in the target's dtype, so the file's values are rounded once (not via float32)."""
    with torch.device("meta"):
        expected = make().state_dict()
    unexpected = [k for k in state if k not in expected and not k.endswith(IGNORED_SUFFIXES)]
    if unexpected:
        warnings.warn(f"{where}: ignoring unexpected tensors {unexpected[:5]}")
    for key, target in expected.items():
        tensor = state.get(key)
        if tensor is None:
            raise ArtifactError(f"{where}: tensor {key} is missing")
        if tuple(tensor.shape) != tuple(target.shape):
            raise ArtifactError(f"{where}: tensor {key} has shape {list(tensor.shape)}, but config.json's draft "
                                f"shape needs {list(target.shape)} ({hint}): the checkpoint is malformed (its "
                                f"config and weights disagree) or was made for another model")
    model = make().to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        for key, target in model.state_dict().items():
            target.copy_(state[key].to(target.dtype))
    return model


def check_embeddings(state: dict, base_model, where: str) -> None:
    embed = state.pop("embed_tokens.weight", None)
    if embed is None:
        return
    mine = tuple(base_model.get_input_embeddings().weight.shape)
    if tuple(embed.shape) != mine:
        raise ArtifactError(f"{where}: tensor embed_tokens.weight has shape {list(embed.shape)}, but the target "
                            f"model's embeddings are {list(mine)}: this draft was made for another model")


def load_eagle(folder: str | Path, base_model) -> EagleDraftModel:
    """An EAGLE draft from a published, trained or `speculators` folder, checked against the base."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"EAGLE folder not found: {folder}")
    config = read_config(folder)
    base_hidden = int(base_model.get_output_embeddings().weight.shape[1])
    base_vocab = int(base_model.get_output_embeddings().weight.shape[0])
    if "speculators_model_type" in config:
        from methods.heads.speculators_format import read_speculators_eagle

        shape, state, path = read_speculators_eagle(folder, config, base_model)
        draft_vocab = None
    else:
        path = find_weights(folder, WEIGHT_FILES, "EAGLE")
        state = dict(load_state(path))
        draft_vocab = state.pop("draft_vocab", None)
        if config.get("shares_base_lm_head"):
            if config.get("method") not in (None, "eagle"):
                raise ArtifactError(f"{folder}: a {config.get('method')} artifact, not an EAGLE draft")
            check_trained_base(config, base_model, "EAGLE draft", folder)
            shape = EagleShape(**config["draft_shape"])
        else:
            check_embeddings(state, base_model, str(path))
            shape = shape_from_config(config, state, str(folder / "config.json"))
    if shape.hidden_size != base_hidden:
        raise ArtifactError(f"{folder}: the draft's hidden size is {shape.hidden_size}, the target's {base_hidden}: "
                            f"this draft was made for another model")
    check_draft_vocab(draft_vocab, base_vocab, path)
    model = build_filled(lambda: EagleDraftModel(shape, draft_vocab=draft_vocab), state, str(path),
                         f"hidden {shape.hidden_size}, intermediate {shape.intermediate_size}, "
                         f"{shape.num_attention_heads} heads / {shape.num_key_value_heads} KV heads",
                         next(base_model.parameters()))
    return ready_for_drafting(model, base_model, folder, config)
