"""The EAGLE-3 draft model (Li et al., 2025): fused low/middle/high target features, one midlayer.

EAGLE-3 keeps EAGLE's pair convention (the pair at draft position i is (g_i, x_{i+1}): what the
target knew at position i and the token that followed) but changes what g is and what comes out:

    g_i = [h_a(i), h_b(i), h_c(i)]       the *inputs* of three target decoder layers a < b < c
                                          (2, L/2 and L-3 by default), 3·H_t wide
    z = fc(g_i)                           Linear(3·H_t -> H); skipped when g is the draft's own
                                          previous output (H wide), as in every tree expansion
    a = [input_layernorm(E(x_{i+1})), hidden_norm(z)]      2H wide, embedding first
    z = z + o_proj(Attn(a))                                 q/k/v read the 2H-wide a
    z = z + MLP(post_attention_layernorm(z))
    out = z                                                 fed back as the next g in the tree
    logits = lm_head(norm(out))                             over the draft vocabulary (N tokens)

There is no feature regression: the draft is trained on tokens only (training/recipes/eagle3.py)
and has its own lm_head over a reduced vocabulary. Draft column d is target token d + d2t[d]
(``d2t``, int64 [N], holds offsets, as published); ``t2d`` (bool [V]) marks the target ids that
have a column and only matters in training. Embeddings are the target's (``bind``), never stored.

Everything the EAGLE drafters' pair cache and tree expansion use (``shape``, ``fc``, ``embed``,
``draft_logits``, ``to_token_ids``, ``forward``) has the same meaning as in
methods/heads/eagle.py, so methods/drafters/eagle_state.py serves both, and float32 drafting on the
CPU runs the midlayer through the lean backend's native layer as EAGLE's layers do
(methods/heads/native_layers.py; this module stays the definition, and what training runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from methods.heads.eagle import MLP, Attention, EagleShape, RMSNorm, inverse_frequencies, rope_tables
from methods.heads.row_scores import row_scores


def default_feature_layers(num_layers: int) -> tuple[int, int, int]:
    """The published choice: the inputs of layers 2, L // 2 and L - 3 (duplicates kept, so the fc
    width is always three features, unlike the published code's set test on tiny models)."""
    return (min(2, num_layers - 1), num_layers // 2, max(num_layers - 3, 0))


@dataclass(frozen=True)
class Eagle3Shape(EagleShape):
    """EagleShape plus what EAGLE-3 adds. ``num_layers`` is always 1 (the midlayer)."""

    vocab_size: int = 0  # the target's vocabulary (t2d's length)
    draft_vocab_size: int = 0  # N, lm_head's rows
    target_hidden_size: int = 0  # H_t of the three features; 0 = hidden_size
    feature_layers: tuple[int, ...] = ()  # () = default_feature_layers of the target
    norm_before_residual: bool = False  # a speculators option: the residual is the normed z

    @property
    def feature_width(self) -> int:
        return 3 * (self.target_hidden_size or self.hidden_size)

    def to_dict(self) -> dict:
        values = super().to_dict()
        values["feature_layers"] = list(self.feature_layers)
        return values


class MidLayer(nn.Module):
    """The one decoder layer: attention over [normed embedding, normed feature], then an MLP."""

    def __init__(self, s: Eagle3Shape):
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.hidden_norm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.self_attn = Attention(s, input_size=2 * s.hidden_size)
        self.mlp = MLP(s)
        self.norm_before_residual = s.norm_before_residual

    def forward(self, z, token_embeds, cos, sin, past, visible):
        hidden = self.hidden_norm(z)
        residual = hidden if self.norm_before_residual else z
        attn, kv = self.self_attn(torch.cat([self.input_layernorm(token_embeds), hidden], dim=-1),
                                  cos, sin, past, visible)
        z = residual + attn
        return z + self.mlp(self.post_attention_layernorm(z)), kv


class Eagle3DraftModel(nn.Module):
    """fc + midlayer + norm + the draft's own lm_head; embeddings come from the base (``bind``)."""

    def __init__(self, shape: Eagle3Shape, d2t: Optional[torch.Tensor] = None):
        super().__init__()
        if shape.num_layers != 1:
            raise ValueError(f"an EAGLE-3 draft has one midlayer, not {shape.num_layers}")
        self.shape = shape
        vocab = shape.draft_vocab_size or shape.vocab_size
        self.fc = nn.Linear(shape.feature_width, shape.hidden_size, bias=shape.fc_bias)
        self.midlayer = MidLayer(shape)
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.lm_head = nn.Linear(shape.hidden_size, vocab, bias=False)
        self.register_buffer("inv_freq", inverse_frequencies(shape), persistent=False)
        # Offsets from draft column to target id; None = the identity (N = V, nothing to map).
        self.register_buffer("d2t", None if d2t is None else d2t.long(), persistent=False)
        self.feature_layers: tuple[int, ...] = tuple(shape.feature_layers)
        self._embed: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ base tensors
    def bind(self, base_model) -> None:
        """Take the embeddings from the base (call again after moving the base)."""
        self._embed = base_model.get_input_embeddings().weight.detach()
        if not self.feature_layers:
            layers = int(base_model.config.get_text_config().num_hidden_layers)
            self.feature_layers = default_feature_layers(layers)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._embed is None:
            raise RuntimeError("Eagle3DraftModel.bind(base_model) must be called before drafting")
        return self._embed[tokens.to(self._embed.device)].to(self.fc.weight.dtype)

    @property
    def draft_vocab(self) -> Optional[torch.Tensor]:
        """The target ids of the draft's columns, in column order (None when they are all ids)."""
        if self.d2t is None:
            return None
        return torch.arange(len(self.d2t), device=self.d2t.device) + self.d2t

    def draft_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """Logits over the draft vocabulary, column d standing for target id d + d2t[d]."""
        return row_scores(self.norm(outputs), self.lm_head.weight, self.lm_head.bias)

    def to_token_ids(self, columns: torch.Tensor) -> torch.Tensor:
        """Columns of ``draft_logits`` -> target token ids."""
        if self.d2t is None:
            return columns
        return columns + self.d2t.to(columns.device)[columns]

    # ------------------------------------------------------------------ maths
    def rope(self, positions: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(self.inv_freq, positions, dtype)

    def forward(self, features: torch.Tensor, token_embeds: torch.Tensor, positions: torch.Tensor,
                past: Optional[list[tuple[torch.Tensor, torch.Tensor]]], visible: torch.Tensor):
        """One draft pass over m pairs, as EagleDraftModel.forward: ``features`` [B, m, 3·H_t] are
        fused target features (through fc) and [B, m, H] are the draft's own outputs (fc skipped).
        Returns the outputs [B, m, H] and the midlayer's new (k, v) as a one-element list."""
        z = self.fc(features) if features.shape[-1] == self.fc.in_features else features
        cos, sin = self.rope(positions, z.dtype)
        out, kv = self.midlayer(z, token_embeds, cos, sin, None if past is None else past[0], visible)
        return out, [kv]
