"""SpS's draft model built on the target: K decoder layers of the target's own kind on the target's
embeddings, final norm and lm_head (shared, never copied).

Two drafts are made this way:

- ``self:N`` (no training): the target's own first N layers, weights shared.
- the trained draft (``python -m training.train_drafter --method sps``): K layers of their own,
  initialised from K of the target's layers and distilled on the target's greedy answers.

Artifact of a trained draft (a folder, like the other trained drafters):

- ``config.json``: the draft's transformers config (the target's with ``num_hidden_layers`` = K),
  plus ``"method": "sps"``, the base's name and weight fingerprint, and which shared tensors it
  does not store;
- ``model.safetensors``: the K layers only, fp16, named ``model.layers.{i}.*`` as in any llama
  checkpoint, and ``draft_vocab`` (int64) where the draft was trained to choose among only those
  target ids: it then scores just those rows of the shared lm_head, which on the embedded model
  is most of a draft token's arithmetic;
- ``metadata.json``: the base, the target layers the draft started from, the training command,
  corpus and held-out metrics.

``load_sps_draft`` rebuilds the draft on a target and refuses one made for another hidden size,
vocabulary or base model (the fingerprint of the base's weights).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from methods.heads.artifact import (METADATA_FILE, ArtifactError, BaseMismatchError, base_fingerprint,
                                    check_draft_vocab, check_trained_base, find_weights, load_state, read_config,
                                    save_artifact)

METHOD = "sps"
WEIGHTS_FILE = "model.safetensors"
VOCAB_TENSOR = "draft_vocab"
# What a draft's layers must share with the target's to run on its embeddings and lm_head.
SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
              "vocab_size")


def decoder_layers(model) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError("an SpS draft on the target needs a model with model.layers (llama-family)")
    return layers


def draft_config(model, num_layers: int):
    """The target's config cut to ``num_layers`` decoder layers."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types[:num_layers])
    return config


def draft_with_layers(model, layers) -> nn.Module:
    """A model of the target's class that runs ``layers`` instead of the target's decoder layers and
    shares everything else (embeddings, rotary embedding, final norm, lm_head) with it. Shallow
    copies: each gets its own _modules dict, so swapping the layer list cannot change the target."""
    base = copy.copy(model.model)
    base._modules = dict(model.model._modules)
    base.layers = nn.ModuleList(list(layers))
    draft = copy.copy(model)
    draft._modules = dict(model._modules)
    draft.model = base
    draft.config = draft_config(model, len(layers))
    draft.model.config = draft.config
    return draft


def spread_layers(depth: int, count: int) -> list[int]:
    """``count`` target layers to start a draft from: the first and the last, the rest evenly
    between. The first layer turns token embeddings into the residual stream every later layer
    reads; the last one writes the stream into the form the final norm and lm_head read. The
    middle layers refine that stream, so they are what a draft leaves out. One layer: the first."""
    if not 1 <= count <= depth:
        raise ValueError(f"a draft of {count} layers cannot start from a target of {depth} layers")
    if count == 1:
        return [0]
    return sorted({round(i * (depth - 1) / (count - 1)) for i in range(count)})


def new_layers(model, count: int) -> nn.ModuleList:
    """``count`` fresh decoder layers of the target's kind (indices 0..count-1 for the cache)."""
    config = draft_config(model, count)
    cls = type(decoder_layers(model)[0])
    param = next(model.parameters())
    return nn.ModuleList([cls(config, layer_idx=i) for i in range(count)]).to(device=param.device, dtype=param.dtype)


def layers_from_target(model, sources: list[int]) -> nn.ModuleList:
    """Draft layers holding copies of the target's layers ``sources`` (trainable; the target's
    own stay untouched)."""
    target_layers = decoder_layers(model)
    bad = [s for s in sources if not 0 <= s < len(target_layers)]
    if bad:
        raise ValueError(f"target layers {bad} do not exist (the target has {len(target_layers)})")
    layers = new_layers(model, len(sources))
    with torch.no_grad():
        for layer, source in zip(layers, sources):
            layer.load_state_dict(target_layers[source].state_dict())
    layers.requires_grad_(True)
    return layers


def _shape_value(config, key: str):
    if key == "head_dim":
        return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return getattr(config, key, None)


def draft_tensors(layers: nn.ModuleList, draft_vocab: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The artifact's tensors by their stored names (the layers' own, live, and the vocabulary)."""
    tensors = {f"model.layers.{i}.{name}": value for i, layer in enumerate(layers)
               for name, value in layer.state_dict().items()}
    if draft_vocab is not None:
        tensors[VOCAB_TENSOR] = torch.as_tensor(draft_vocab, dtype=torch.long)
    return tensors


def save_sps_draft(out, layers: nn.ModuleList, base, base_model: str, initialised_from: list[int],
                   metadata: dict, draft_vocab: torch.Tensor | None = None) -> Path:
    """Write the artifact: config.json, the layers in fp16 (and the draft vocabulary), metadata.json."""
    config = json.loads(draft_config(base, len(layers)).to_json_string())
    config.update({
        "method": METHOD,
        "base_model_name_or_path": base_model,
        "shares_base_embeddings": True, "shares_base_norm": True, "shares_base_lm_head": True,
        "base_fingerprint": base_fingerprint(base),
        "draft_vocab_size": None if draft_vocab is None else int(len(draft_vocab)),
    })
    folder = save_artifact(out, config, draft_tensors(layers, draft_vocab), WEIGHTS_FILE)
    meta = {"method": METHOD, "base_model": base_model, "layers": len(layers),
            "layers_initialised_from": list(initialised_from), **metadata}
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def is_sps_draft(folder) -> bool:
    """Whether ``folder`` holds a trained draft of ours (not a whole model)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("method") == METHOD
    except (OSError, ValueError, AttributeError):
        return False


def load_sps_draft(folder, target) -> nn.Module:
    """The trained draft in ``folder`` rebuilt on ``target`` (its embeddings, final norm and
    lm_head attached), on the target's device and dtype, frozen. Its ``draft_vocab`` attribute is
    the target ids it scores (None: all of them)."""
    folder = Path(folder)
    config = read_config(folder)
    if config.get("method") != METHOD:
        raise ArtifactError(f"{folder}: not an SpS draft (config.json has no \"method\": \"{METHOD}\")")
    mine = target.config.get_text_config()
    for key in SHAPE_KEYS:
        saved, here = config.get(key), _shape_value(mine, key)
        if key == "head_dim" and saved is None:
            saved = config.get("hidden_size", 0) // max(1, config.get("num_attention_heads", 1))
        if saved != here:
            raise BaseMismatchError(
                f"SpS draft {folder} was made for a target with {key} {saved}, this target has {here}; it "
                f"shares the target's embeddings and lm_head, so it cannot draft for this model")
    check_trained_base(config, target, "SpS draft", folder)
    count = config.get("num_hidden_layers")
    if not isinstance(count, int) or count < 1:
        raise ArtifactError(f"{folder}/config.json: num_hidden_layers must be a positive integer, not {count!r}")
    state = load_state(find_weights(folder, (WEIGHTS_FILE,), "SpS draft"))
    draft_vocab = state.pop(VOCAB_TENSOR, None)
    if draft_vocab is not None:
        if draft_vocab.dim() != 1 or draft_vocab.is_floating_point() or not len(draft_vocab):
            raise ArtifactError(f"{folder}/{WEIGHTS_FILE}: {VOCAB_TENSOR} must be a non-empty list of token ids")
        draft_vocab = draft_vocab.long()
        check_draft_vocab(draft_vocab, int(_shape_value(mine, "vocab_size")), folder)
    layers = new_layers(target, count)
    wanted = {f"model.layers.{i}.{name}" for i, layer in enumerate(layers) for name in layer.state_dict()}
    missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
    if missing or extra:
        raise ArtifactError(f"{folder}/{WEIGHTS_FILE} does not hold {count} draft layers "
                            f"(missing {missing[:3]}, unexpected {extra[:3]})")
    param = next(target.parameters())
    with torch.no_grad():
        for i, layer in enumerate(layers):
            prefix = f"model.layers.{i}."
            layer.load_state_dict({k[len(prefix):]: v.to(dtype=param.dtype, device=param.device)
                                   for k, v in state.items() if k.startswith(prefix)})
    layers.requires_grad_(False)
    draft = draft_with_layers(target, layers)
    draft.eval()
    object.__setattr__(draft, "source", str(folder))  # plain attributes, not module fields
    object.__setattr__(draft, "draft_vocab", None if draft_vocab is None else draft_vocab.to(param.device))
    return draft
