"""The EAGLE draft model (Li et al., 2024): one decoder layer over target features.

The draft reads *pairs*: the pair at draft position i is (f_i, x_{i+1}), the target's final normed
feature at position i and the embedding of the token that followed it. From a pair it predicts the
next feature f̂_{i+1}, and the target's own lm_head turns that into the distribution of x_{i+2}:

    z = fc([E(x_{i+1}), f_i])            Linear(2H -> H), embedding first, then feature
    z = z + Attn(z)                      layer 0 has no input norm (on purpose, as published)
    z = z + MLP(post_attention_norm(z))
    f̂_{i+1} = z                          no final norm; logits = lm_head(f̂_{i+1})

Attention is a standard Llama block (rotate-half RoPE at the pair's position, GQA). The draft keeps
its own KV cache over real pairs; tree expansion runs extra entries against it with a mask (the
drafter owns that, methods/drafters/eagle_state.py). This module is the draft's definition, which
training and every non-float32 or non-CPU run use; float32 drafting on the CPU runs the same
arithmetic through the lean backend's native layer (methods/heads/native_layers.py), into the same
cache. Embeddings and lm_head are the target's, bound with ``bind`` and never stored in our
artifacts; the published files carry a copy of the embeddings, which the loader
(methods/heads/eagle_format.py) checks for shape and otherwise ignores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from methods.core.backends.lean import LeanCache
from methods.heads.row_scores import linear, row_scores


@dataclass(frozen=True)
class EagleShape:
    """Everything that fixes the draft's tensors and maths."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_layers: int = 1
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    fc_bias: bool = True
    attention_bias: bool = False

    @classmethod
    def like_base(cls, base_model, intermediate_size: Optional[int] = None, **overrides) -> "EagleShape":
        """The draft shape our trainer uses: the base's attention and rope, one layer."""
        c = base_model.config.get_text_config()
        heads = int(c.num_attention_heads)
        rope = getattr(c, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
        values = dict(hidden_size=int(c.hidden_size),
                      intermediate_size=int(intermediate_size or c.intermediate_size),
                      num_attention_heads=heads,
                      num_key_value_heads=int(getattr(c, "num_key_value_heads", None) or heads),
                      head_dim=int(getattr(c, "head_dim", None) or c.hidden_size // heads),
                      rms_norm_eps=float(c.rms_norm_eps), rope_theta=float(theta))
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float() if dtype in (torch.float16, torch.bfloat16) else x
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def inverse_frequencies(shape: EagleShape) -> torch.Tensor:
    """RoPE's inverse frequencies (float64: the tables are computed once per call, then cast)."""
    return 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, dtype=torch.float64) / shape.head_dim))


def rope_tables(inv_freq: torch.Tensor, positions: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B|1, 1, m, hd] (rotate-half layout) for positions [B|1, m]."""
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq.to(positions.device)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype).unsqueeze(1), angles.sin().to(dtype).unsqueeze(1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, s: EagleShape, input_size: Optional[int] = None):
        super().__init__()
        width = input_size or s.hidden_size  # EAGLE-3 feeds 2H-wide inputs here
        self.s = s
        self.q_proj = nn.Linear(width, s.num_attention_heads * s.head_dim, bias=s.attention_bias)
        self.k_proj = nn.Linear(width, s.num_key_value_heads * s.head_dim, bias=s.attention_bias)
        self.v_proj = nn.Linear(width, s.num_key_value_heads * s.head_dim, bias=s.attention_bias)
        self.o_proj = nn.Linear(s.num_attention_heads * s.head_dim, s.hidden_size, bias=False)

    def forward(self, x, cos, sin, past: Optional[tuple[torch.Tensor, torch.Tensor]], visible: torch.Tensor):
        """x [B, m, W]; past (k, v) [B, kv, P, hd] or None; visible bool [B|1, m, P + m] (True =
        attend). Returns the output [B, m, H] and this block's new (k, v) [B, kv, m, hd]."""
        s = self.s
        b, m, _ = x.shape
        q = self.q_proj(x).view(b, m, s.num_attention_heads, s.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, m, s.num_key_value_heads, s.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, m, s.num_key_value_heads, s.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        groups = s.num_attention_heads // s.num_key_value_heads
        if groups > 1:
            keys_all, values_all = keys.repeat_interleave(groups, 1), values.repeat_interleave(groups, 1)
        else:
            keys_all, values_all = keys, values
        out = F.scaled_dot_product_attention(q, keys_all, values_all, attn_mask=visible.unsqueeze(1))
        return self.o_proj(out.transpose(1, 2).reshape(b, m, -1)), (k, v)


class MLP(nn.Module):
    def __init__(self, s: EagleShape):
        super().__init__()
        self.gate_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)

    def forward(self, x):
        return linear(F.silu(linear(x, self.gate_proj)) * linear(x, self.up_proj), self.down_proj)


class DecoderLayer(nn.Module):
    def __init__(self, s: EagleShape, index: int):
        super().__init__()
        # EAGLE's first layer reads the fc output directly: no input norm (published layout).
        if index > 0:
            self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.self_attn = Attention(s)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.mlp = MLP(s)

    def forward(self, x, cos, sin, past, visible):
        normed = self.input_layernorm(x) if hasattr(self, "input_layernorm") else x
        attn, kv = self.self_attn(normed, cos, sin, past, visible)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class EagleDraftModel(nn.Module):
    """fc + decoder layer(s); embeddings and lm_head come from the base (``bind``)."""

    def __init__(self, shape: EagleShape, draft_vocab: Optional[torch.Tensor] = None):
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(2 * shape.hidden_size, shape.hidden_size, bias=shape.fc_bias)
        self.layers = nn.ModuleList(DecoderLayer(shape, i) for i in range(shape.num_layers))
        self.register_buffer("inv_freq", inverse_frequencies(shape), persistent=False)
        # Token ids the draft chooses among (our trained heads: the corpus's answer vocabulary,
        # as in training); None = the whole vocabulary (published heads).
        self.register_buffer("draft_vocab", None if draft_vocab is None else draft_vocab.long(), persistent=False)
        self._embed: Optional[torch.Tensor] = None
        self._rows: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ base tensors
    def bind(self, base_model) -> None:
        """Take the embeddings and the (restricted) lm_head rows from the base; call again after
        moving the base."""
        self._embed = base_model.get_input_embeddings().weight.detach()
        weight = base_model.get_output_embeddings().weight.detach()
        self._rows = weight if self.draft_vocab is None else weight[self.draft_vocab.to(weight.device)]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._embed is None:
            raise RuntimeError("EagleDraftModel.bind(base_model) must be called before drafting")
        return self._embed[tokens.to(self._embed.device)].to(self.fc.weight.dtype)

    def draft_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over the draft vocabulary (columns index ``draft_vocab`` when it is set)."""
        return row_scores(features, self._rows)

    def to_token_ids(self, columns: torch.Tensor) -> torch.Tensor:
        """Columns of ``draft_logits`` -> target token ids."""
        return columns if self.draft_vocab is None else self.draft_vocab.to(columns.device)[columns]

    # ------------------------------------------------------------------ maths
    def rope(self, positions: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(self.inv_freq, positions, dtype)

    def forward(self, features: torch.Tensor, token_embeds: torch.Tensor, positions: torch.Tensor,
                past: Optional[list[tuple[torch.Tensor, torch.Tensor]]], visible: torch.Tensor):
        """One draft pass over m pairs (batched: [B, m, ...]).

        features [B, m, H] (f_i, or a draft output standing in for it), token_embeds [B, m, H]
        (E(x_{i+1})), positions [B|1, m], past: per layer (k, v) [B, kv, P, hd] or None,
        visible bool [B|1, m, P + m]. Returns the predicted features [B, m, H] and per layer the
        new (k, v) of these m entries.
        """
        x = self.fc(torch.cat([token_embeds, features], dim=-1))
        cos, sin = self.rope(positions, x.dtype)
        new_kv = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, None if past is None else past[i], visible)
            new_kv.append(kv)
        return x, new_kv


class DraftCache(LeanCache):
    """The draft's KV, per layer [kv, capacity, hd]: the lean backend's cache layout, which its
    native layer writes (methods/heads/native_layers.py) and the torch path reads through
    ``layers``. Rows before ``length`` are committed pairs; an EAGLE tree's entries are written
    after them (``write``) and overwritten by the next step's pairs."""

    def __init__(self, shape: EagleShape, device, dtype, capacity: int = 256):
        super().__init__(shape.num_layers, shape.num_key_value_heads, shape.head_dim, dtype, device, capacity)

    def write(self, at: int, new_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Per layer (k, v) [1, kv, m, hd] into rows at .. at+m-1 (the rows before ``at`` kept)."""
        m = new_kv[0][0].shape[2]
        self.reserve(at + m, keep=at)
        for i, (k, v) in enumerate(new_kv):
            self.keys[i][:, at: at + m] = k[0]
            self.values[i][:, at: at + m] = v[0]

    def append(self, new_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.write(self.length, new_kv)
        self.length += new_kv[0][0].shape[2]

    def layers(self, upto: Optional[int] = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (k, v) [1, kv, rows, hd] over the first ``upto`` rows (default: the committed ones)."""
        rows = self.length if upto is None else upto
        return [(k[None, :, :rows], v[None, :, :rows]) for k, v in zip(self.keys, self.values)]
