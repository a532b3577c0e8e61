"""The DFlash draft model (block diffusion drafting, arXiv 2602.06036): one forward fills a block.

The draft is fed a block of B positions, the root token followed by B - 1 copies of a mask token,
and predicts every masked position at once. It sees the past only through the target: hidden
states of several target layers, fused into one vector per committed position and injected as
extra keys and values into every draft layer.

    c_t = hidden_norm(fc([h_a(t), h_b(t), ...]))      one row per committed position t < P
    x   = E([root, MASK, ..., MASK])                   the target's embeddings, positions P..P+B-1
    per draft layer (Qwen3-style, per-head q_norm / k_norm):
        h = input_layernorm(x)
        Q = q_norm(Wq h)                               block rows only, RoPE at P..P+B-1
        K = k_norm(Wk [c ; h]),  V = Wv [c ; h]        context rows then block rows, RoPE at their
                                                       positions; c gets no input_layernorm
        x = x + Wo attention(Q, K, V)                  no mask: every block row sees all context
                                                       rows and every block row (bidirectional)
        x = x + MLP(post_attention_layernorm(x))
    logits = lm_head(norm(x))[1:]                      rows 1..B-1 -> tokens at P+1..P+B-1

Context rows are never transformed by the layers, so their keys and values depend on c alone and
are computed once per committed position (``context_kv``); the drafter caches them and throws the
block's away after each call. ``h_a(t)`` is the *output* of target decoder layer a, i.e. the input
of layer a + 1: ``feature_layers`` holds those layer-input indices (what the engine's
hidden-state contract captures), ``target_layer_ids`` the published 0-based layer ids.

Embeddings are always the target's (``bind``). The output head is the target's lm_head (all rows,
as published; or the rows of a draft vocabulary, as our trained drafts use on the CPU), or the
draft's own ``lm_head`` over a reduced vocabulary whose columns map to target ids (the
``speculators`` layout with d2t). The mask embedding is the target's embedding row of
``mask_token_id``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from methods.heads.eagle import MLP, RMSNorm, inverse_frequencies, rope_tables, rotate_half
from methods.heads.row_scores import linear, row_scores


def default_target_layer_ids(num_target_layers: int, num_features: int) -> tuple[int, ...]:
    """The published default choice of target layers (z-lab's rule): one feature takes the middle
    layer; n > 1 features are spread evenly from layer 1 to layer L - 3, rounded half to even
    (Python's round, as published: SmolLM2's 30 layers with n = 5 give 20, not 21)."""
    if num_features < 1:
        raise ValueError("a DFlash draft reads at least one target layer")
    if num_features == 1:
        return (num_target_layers // 2,)
    first, span = 1, num_target_layers - 4  # from layer 1 to layer L - 3
    return tuple(int(round(first + i * span / (num_features - 1))) for i in range(num_features))


@dataclass(frozen=True)
class DFlashShape:
    """Everything that fixes the draft's tensors and maths."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_layers: int
    target_layer_ids: tuple[int, ...]  # published convention: output of target layer j
    block_size: int
    mask_token_id: int
    vocab_size: int  # the target's vocabulary
    draft_vocab_size: int = 0  # rows of the draft's own lm_head; 0 = no own head
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False

    @property
    def feature_layers(self) -> tuple[int, ...]:
        """Target decoder layers whose *inputs* are fused, in fc's order (j + 1 for each id j)."""
        return tuple(j + 1 for j in self.target_layer_ids)

    @property
    def feature_width(self) -> int:
        return len(self.target_layer_ids) * self.hidden_size

    def to_dict(self) -> dict:
        values = asdict(self)
        values["target_layer_ids"] = list(self.target_layer_ids)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "DFlashShape":
        return cls(**{**values, "target_layer_ids": tuple(values["target_layer_ids"])})


class DFlashAttention(nn.Module):
    def __init__(self, s: DFlashShape):
        super().__init__()
        self.s = s
        self.q_proj = nn.Linear(s.hidden_size, s.num_attention_heads * s.head_dim, bias=s.attention_bias)
        self.k_proj = nn.Linear(s.hidden_size, s.num_key_value_heads * s.head_dim, bias=s.attention_bias)
        self.v_proj = nn.Linear(s.hidden_size, s.num_key_value_heads * s.head_dim, bias=s.attention_bias)
        self.o_proj = nn.Linear(s.num_attention_heads * s.head_dim, s.hidden_size, bias=s.attention_bias)
        self.q_norm = RMSNorm(s.head_dim, s.rms_norm_eps)
        self.k_norm = RMSNorm(s.head_dim, s.rms_norm_eps)

    def keys_values(self, x: torch.Tensor, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated, normed keys and values [B, kv, m, hd] of rows x [B, m, H]."""
        s = self.s
        b, m, _ = x.shape
        k = self.k_norm(linear(x, self.k_proj).view(b, m, s.num_key_value_heads, s.head_dim)).transpose(1, 2)
        v = linear(x, self.v_proj).view(b, m, s.num_key_value_heads, s.head_dim).transpose(1, 2)
        return k * cos + rotate_half(k) * sin, v

    def forward(self, x, cos, sin, context: tuple[torch.Tensor, torch.Tensor], visible: Optional[torch.Tensor]):
        """x [B, m, H] (already input-normed) at the rope of ``cos``/``sin``; ``context`` (k, v)
        [B|1, kv, T, hd]; visible bool [B|1, m, T + m] or None (everything visible)."""
        s = self.s
        b, m, _ = x.shape
        q = self.q_norm(linear(x, self.q_proj).view(b, m, s.num_attention_heads, s.head_dim)).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k, v = self.keys_values(x, cos, sin)
        keys = torch.cat([context[0].expand(b, -1, -1, -1), k], dim=2)
        values = torch.cat([context[1].expand(b, -1, -1, -1), v], dim=2)
        groups = s.num_attention_heads // s.num_key_value_heads
        if groups > 1:
            keys, values = keys.repeat_interleave(groups, 1), values.repeat_interleave(groups, 1)
        mask = None if visible is None else visible.unsqueeze(1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return linear(out.transpose(1, 2).reshape(b, m, -1), self.o_proj)


class DFlashLayer(nn.Module):
    def __init__(self, s: DFlashShape):
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.self_attn = DFlashAttention(s)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.mlp = MLP(s)

    def forward(self, x, cos, sin, context, visible):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, context, visible)
        return x + self.mlp(self.post_attention_layernorm(x))


class DFlashDraftModel(nn.Module):
    """fc + hidden_norm + draft layers + norm (+ an own lm_head over a reduced vocabulary); the
    embeddings and, without an own head, the lm_head rows come from the target (``bind``)."""

    def __init__(self, shape: DFlashShape, draft_vocab: Optional[torch.Tensor] = None):
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(shape.feature_width, shape.hidden_size, bias=False)
        self.hidden_norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.layers = nn.ModuleList(DFlashLayer(shape) for _ in range(shape.num_layers))
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.lm_head = (nn.Linear(shape.hidden_size, shape.draft_vocab_size, bias=False)
                        if shape.draft_vocab_size else None)
        self.register_buffer("inv_freq", inverse_frequencies(shape), persistent=False)
        # Target ids of the output columns, in column order; None = every id (column d is id d).
        self.register_buffer("draft_vocab", None if draft_vocab is None else draft_vocab.long(), persistent=False)
        if self.lm_head is not None and (draft_vocab is None or len(draft_vocab) != shape.draft_vocab_size):
            raise ValueError("a DFlash draft with its own lm_head needs the target id of each of its rows")
        self._embed: Optional[torch.Tensor] = None
        self._rows: Optional[torch.Tensor] = None

    @property
    def feature_layers(self) -> tuple[int, ...]:
        return self.shape.feature_layers

    @property
    def block_size(self) -> int:
        return self.shape.block_size

    # ------------------------------------------------------------------ target tensors
    def bind(self, base_model) -> None:
        """Take the embeddings (and, without an own head, the lm_head rows) from the target; call
        again after moving the target."""
        self._embed = base_model.get_input_embeddings().weight.detach()
        if self.lm_head is None:
            head = base_model.get_output_embeddings().weight.detach()
            self._rows = head if self.draft_vocab is None else head[self.draft_vocab.to(head.device)]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._embed is None:
            raise RuntimeError("DFlashDraftModel.bind(base_model) must be called before drafting")
        return self._embed[tokens.to(self._embed.device)].to(self.fc.weight.dtype)

    def block_tokens(self, roots: torch.Tensor, block_size: int) -> torch.Tensor:
        """[roots, MASK x (block_size - 1)] per row: roots [n] -> [n, block_size]."""
        block = torch.full((len(roots), block_size), self.shape.mask_token_id, dtype=torch.long, device=roots.device)
        block[:, 0] = roots
        return block

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the output columns of normed draft outputs (``forward``'s result)."""
        if self.lm_head is not None:
            return row_scores(hidden, self.lm_head.weight, self.lm_head.bias)
        return row_scores(hidden, self._rows)

    def to_token_ids(self, columns: torch.Tensor) -> torch.Tensor:
        """Output columns -> target token ids."""
        return columns if self.draft_vocab is None else self.draft_vocab.to(columns.device)[columns]

    # ------------------------------------------------------------------ maths
    def rope(self, positions: torch.Tensor, dtype):
        return rope_tables(self.inv_freq, positions, dtype)

    def context_kv(self, features: torch.Tensor, positions: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per draft layer the keys and values [B, kv, m, hd] of m committed positions, from their
        fused target features [B, m, n_feat * H] at ``positions`` [B|1, m]."""
        c = self.hidden_norm(linear(features.to(self.fc.weight.dtype), self.fc))
        cos, sin = self.rope(positions, c.dtype)
        return [layer.self_attn.keys_values(c, cos, sin) for layer in self.layers]

    def forward(self, block_embeds: torch.Tensor, positions: torch.Tensor,
                context: list[tuple[torch.Tensor, torch.Tensor]], visible: Optional[torch.Tensor] = None):
        """Block rows [B, m, H] at ``positions`` [B|1, m] against the context keys/values of every
        layer (``context_kv``); ``visible`` [B|1, m, T + m] (None = all, as at inference).
        Returns the normed outputs [B, m, H]; ``logits`` turns them into token scores."""
        x = block_embeds
        cos, sin = self.rope(positions, x.dtype)
        for layer, ctx in zip(self.layers, context):
            x = layer(x, cos, sin, ctx, visible)
        return self.norm(x)
