"""Medusa-1 heads and their two on-disk formats.

Head k (0-based) reads the target's final normed feature f_t and predicts the token at t + k + 2
(the target's own lm_head predicts t + 1). A head is ``num_layers`` residual blocks
``x + SiLU(W x + b)`` followed by a vocabulary projection.

Formats, both read by ``load_medusa``:
- published (FasterDecoding): ``config.json`` with ``medusa_num_heads`` / ``medusa_num_layers`` and
  ``medusa_lm_head.pt`` (or ``.safetensors``) holding ``{k}.{j}.linear.weight/bias`` for the blocks
  and ``{k}.{n}.weight`` for head k's own projection. The published Vicuna config says 2 heads and
  the file holds 5, so the head count is read from the keys, never from the config. With
  ``num_layers > 1`` the published code repeats ONE block module n times (Python list
  multiplication), so the keys of blocks 0..n-1 hold the same tensor; we keep that sharing.
- ours (``training/train_drafter.py``): the same keys minus the projections, which are the base's
  own lm_head (``"shares_base_lm_head": true``), plus ``draft_vocab``: the token ids the heads were
  trained to choose among (the answer vocabulary of the corpus; training used a softmax restricted
  to it, so drafting restricts its top-k to it too). The config carries the base's fingerprint.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from methods.heads.artifact import (ArtifactError, check_trained_base, check_draft_vocab, find_weights, load_state,
                                    read_config, ready_for_drafting)
from methods.heads.row_scores import row_scores

WEIGHT_FILES = ("medusa_lm_head.safetensors", "medusa_lm_head.pt")
KEY = re.compile(r"^(\d+)\.(\d+)\.(linear\.weight|linear\.bias|weight)$")


class ResBlock(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        # Zero weight: an untrained head starts as the base's next-token head (bias keeps torch's init).
        nn.init.zeros_(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + nn.functional.silu(self.linear(x))


class MedusaHeads(nn.Module):
    """K heads. ``projections`` None: every head projects with the base's lm_head rows
    ``draft_vocab`` (bound with ``bind``); else one [V, H] matrix per head (published format)."""

    def __init__(self, hidden: int, num_heads: int, num_layers: int = 1, own_projection_vocab: Optional[int] = None,
                 draft_vocab: Optional[torch.Tensor] = None):
        super().__init__()
        if num_heads < 1 or num_layers < 1:
            raise ValueError("Medusa needs at least one head and one layer per head")
        self.hidden, self.num_heads, self.num_layers = hidden, num_heads, num_layers
        self.blocks = nn.ModuleList(ResBlock(hidden) for _ in range(num_heads))
        self.projections = None
        if own_projection_vocab is not None:
            self.projections = nn.ParameterList(
                nn.Parameter(torch.zeros(own_projection_vocab, hidden)) for _ in range(num_heads))
        self.register_buffer("draft_vocab", None if draft_vocab is None else draft_vocab.long(), persistent=False)
        self._shared_rows: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ maths
    def head_features(self, features: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [K, ..., H]: each head's residual blocks (one shared block repeated)."""
        outs = []
        for block in self.blocks:
            x = features
            for _ in range(self.num_layers):
                x = block(x)
            outs.append(x)
        return torch.stack(outs)

    def bind(self, base_model) -> None:
        """Take the projection rows from the base's lm_head (shared heads only); call again
        after moving the base."""
        if self.projections is not None:
            return
        weight = base_model.get_output_embeddings().weight
        rows = weight if self.draft_vocab is None else weight[self.draft_vocab.to(weight.device)]
        self._shared_rows = rows.detach()

    @torch.no_grad()
    def top_tokens(self, feature: torch.Tensor, k: int) -> torch.Tensor:
        """Token ids [K, k], best first, of every head at one position's feature [H]."""
        h = self.head_features(feature.to(self.blocks[0].linear.weight.dtype))  # [K, H]
        if self.projections is not None:
            logits = torch.stack([row_scores(h[i], p) for i, p in enumerate(self.projections)])
            return logits.topk(k, dim=-1).indices
        if self._shared_rows is None:
            raise RuntimeError("MedusaHeads.bind(base_model) must be called before drafting")
        logits = row_scores(h, self._shared_rows)
        top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
        return top if self.draft_vocab is None else self.draft_vocab.to(top.device)[top]

    # ------------------------------------------------------------------ state dict in the published key layout
    def medusa_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for k, block in enumerate(self.blocks):
            for j in range(self.num_layers):
                state[f"{k}.{j}.linear.weight"] = block.linear.weight
                state[f"{k}.{j}.linear.bias"] = block.linear.bias
            if self.projections is not None:
                state[f"{k}.{self.num_layers}.weight"] = self.projections[k]
        return state


def load_medusa(folder: str | Path, base_model) -> MedusaHeads:
    """Medusa heads from a published or trained folder, checked against ``base_model``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"Medusa folder not found: {folder}")
    config = read_config(folder)
    shares = bool(config.get("shares_base_lm_head", False))
    if shares:
        check_trained_base(config, base_model, "Medusa heads", folder)
    path = find_weights(folder, WEIGHT_FILES, "Medusa")
    state = load_state(path)
    draft_vocab = state.pop("draft_vocab", None)

    entries: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
    unexpected = []
    for key, tensor in state.items():
        m = KEY.match(key)
        if m is None:
            unexpected.append(key)
            continue
        entries.setdefault(int(m.group(1)), {}).setdefault(int(m.group(2)), {})[m.group(3)] = tensor
    if not entries:
        raise ArtifactError(f"{path}: no Medusa head tensors ({{k}}.{{j}}.linear.weight ...) found")
    num_heads = max(entries) + 1
    missing_heads = sorted(set(range(num_heads)) - set(entries))
    if missing_heads:
        raise ArtifactError(f"{path}: heads {missing_heads} are missing (keys run up to head {num_heads - 1})")
    num_layers = 1 + max(j for head in entries.values() for j, t in head.items() if "linear.weight" in t)
    if unexpected:
        warnings.warn(f"{path}: ignoring unexpected keys {unexpected[:5]}")
    declared = config.get("medusa_num_heads")
    if declared is not None and declared != num_heads:
        # Expected for the published Vicuna heads: the config says 2, the file holds 5.
        warnings.warn(f"{folder}/config.json says medusa_num_heads={declared}; the weights hold "
                      f"{num_heads} heads, which are used")

    hidden = int(base_model.get_output_embeddings().weight.shape[1])
    vocab = int(base_model.get_output_embeddings().weight.shape[0])
    heads = MedusaHeads(hidden, num_heads, num_layers, own_projection_vocab=None if shares else vocab,
                        draft_vocab=draft_vocab)

    def take(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        k, j, name = KEY.match(key).groups()
        tensor = entries.get(int(k), {}).get(int(j), {}).get(name)
        if tensor is None:
            raise ArtifactError(f"{path}: tensor {key} is missing")
        if tuple(tensor.shape) != shape:
            raise ArtifactError(f"{path}: tensor {key} has shape {list(tensor.shape)}, but the target "
                                f"model needs {list(shape)} (hidden {hidden}, vocabulary {vocab})")
        return tensor

    with torch.no_grad():
        for k in range(num_heads):
            weight, bias = take(f"{k}.0.linear.weight", (hidden, hidden)), take(f"{k}.0.linear.bias", (hidden,))
            for j in range(1, num_layers):  # one shared block: every copy must be the same tensor
                same = (torch.equal(take(f"{k}.{j}.linear.weight", (hidden, hidden)), weight)
                        and torch.equal(take(f"{k}.{j}.linear.bias", (hidden,)), bias))
                if not same:
                    raise ArtifactError(f"{path}: head {k}'s blocks differ; Medusa's blocks are one "
                                        f"shared module, so {k}.{j}.* must equal {k}.0.*")
            heads.blocks[k].linear.weight.copy_(weight)
            heads.blocks[k].linear.bias.copy_(bias)
            if not shares:
                heads.projections[k].copy_(take(f"{k}.{num_layers}.weight", (vocab, hidden)))
    check_draft_vocab(draft_vocab, vocab, path)
    return ready_for_drafting(heads, base_model, folder, config)
