"""SPACE's masks: what enters the target at a mask position, in the method's two variants.

SPACE (Yi et al., 2024) appends mask positions after the sequence; each one stands in for a token
not known yet, and the target's logits there guess the token after it. What a mask feeds in:

- ``LearnedMasks`` (ours, the frozen-base variant for the embedded model): one learned input vector
  per mask slot, fed in place of a token embedding (the engine's input-embedding override), the
  target untouched, so its output is exactly the original model's. Trained by
  ``python -m training.train_drafter --method space``. Artifact: ``config.json`` (``"method":
  "space"``, the slot count, the base's name and fingerprint) and ``space_masks.safetensors``
  holding ``mask_embeddings`` [slots, hidden] in fp16: a few KB.
- ``MaskToken`` (published): the fine-tuned SPACE checkpoint (AntMan/vicuna-v1.3-7b-space, mask id
  32002) is itself the target, and every mask is its mask token. The checkpoint was tuned from
  Vicuna but is a different model: its answers are compared with its own vanilla decoding only.
  Checked at load: the model's vocabulary and embedding table must hold the id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from methods.heads.artifact import (ArtifactError, check_trained_base, find_weights, load_state, read_config,
                                    ready_for_drafting)

WEIGHT_FILES = ("space_masks.safetensors",)
KEY = "mask_embeddings"
# The token id a learned mask carries in the draft tree. It is never embedded (the learned vector
# replaces its embedding) and never committed (masks are auxiliary nodes): any valid id does.
PLACEHOLDER_TOKEN = 0


class LearnedMasks(nn.Module):
    """``slots`` learned input vectors: mask j of a group enters the target as vector j."""

    variant = "frozen-base mask embeddings"

    def __init__(self, slots: int, hidden: int):
        super().__init__()
        if slots < 1:
            raise ValueError("SPACE needs at least one mask slot")
        self.mask_embeddings = nn.Parameter(torch.zeros(slots, hidden))

    @property
    def slots(self) -> int:
        return int(self.mask_embeddings.shape[0])

    def bind(self, base_model) -> None:
        """Nothing of the base is shared at use (ready_for_drafting's contract); the base's
        embedding table only sets the scale of a fresh initialisation (``init_from``)."""

    @torch.no_grad()
    def init_from(self, base_model) -> None:
        """Start every slot at the mean token embedding: a neutral input of the right scale."""
        mean = base_model.get_input_embeddings().weight.detach().float().mean(dim=0)
        self.mask_embeddings.copy_(mean.expand_as(self.mask_embeddings))

    def group(self, count: int) -> tuple[list[int], Optional[torch.Tensor]]:
        """Token ids and input vectors of a group of ``count`` masks."""
        return [PLACEHOLDER_TOKEN] * count, self.mask_embeddings[:count]

    def params(self) -> dict[str, Any]:
        return {"variant": self.variant, "trained_slots": self.slots}


class MaskToken:
    """The published variant: every mask is the target's own mask token ``mask_id``."""

    slots = None  # any number of masks per group

    def __init__(self, mask_id: int):
        self.mask_id = mask_id
        self.variant = f"fine-tuned target with mask token id {mask_id}"

    def group(self, count: int) -> tuple[list[int], Optional[torch.Tensor]]:
        return [self.mask_id] * count, None

    def params(self) -> dict[str, Any]:
        # The target is the SPACE checkpoint itself; "lossless" in its records means equal to that
        # checkpoint's own vanilla decoding, never to the model it was tuned from.
        return {"variant": self.variant, "mask_id": self.mask_id}


def mask_token(model, mask_id: int) -> MaskToken:
    """The published variant on ``model``, refused when the model's vocabulary has no ``mask_id``."""
    vocab = int(model.config.get_text_config().vocab_size)
    rows = int(model.get_input_embeddings().weight.shape[0])
    if mask_id < 0 or mask_id >= min(vocab, rows):
        raise ArtifactError(
            f"--space-mask-id {mask_id}: the target's vocabulary has {vocab} tokens ({rows} embedding rows), so "
            f"it holds no mask token {mask_id}. Give the fine-tuned SPACE checkpoint itself as --model-path "
            f"(its vocabulary was resized for the mask; AntMan/vicuna-v1.3-7b-space uses 32002), not the model "
            f"it was tuned from; for a frozen target use learned masks (--space-path)")
    return MaskToken(mask_id)


def space_config(slots: int, hidden: int, base_model_name: str, fingerprint: dict, **extra) -> dict:
    return {"method": "space", "variant": LearnedMasks.variant, "mask_slots": slots, "hidden_size": hidden,
            "base_model_name_or_path": base_model_name, "base_fingerprint": fingerprint, **extra}


def load_space(folder: str | Path, base_model) -> LearnedMasks:
    """Learned masks from a folder written by the trainer, checked against ``base_model``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"SPACE folder not found: {folder}")
    config = read_config(folder)
    if config.get("method") != "space":
        raise ArtifactError(f"{folder}/config.json is not a SPACE mask artifact (method {config.get('method')!r}); "
                            f"the published SPACE model is a whole checkpoint: give it as --model-path with "
                            f"--space-mask-id")
    check_trained_base(config, base_model, "SPACE masks", folder)
    path = find_weights(folder, WEIGHT_FILES, "SPACE mask")
    state = load_state(path)
    if KEY not in state:
        raise ArtifactError(f"{path}: tensor {KEY} is missing")
    unexpected = sorted(set(state) - {KEY})
    if unexpected:
        raise ArtifactError(f"{path}: unexpected tensors {unexpected[:5]}")
    vectors = state[KEY]
    hidden = int(base_model.get_input_embeddings().weight.shape[1])
    if vectors.dim() != 2 or vectors.shape[0] < 1 or vectors.shape[1] != hidden:
        raise ArtifactError(f"{path}: tensor {KEY} has shape {list(vectors.shape)}, but the target model needs "
                            f"[slots, {hidden}]")
    masks = LearnedMasks(int(vectors.shape[0]), hidden)
    with torch.no_grad():
        masks.mask_embeddings.copy_(vectors.float())
    return ready_for_drafting(masks, base_model, folder, config)
