"""Hydra heads (Ankner et al., 2024; the released "Hydra++" layout) and their two on-disk formats.

Hydra's heads are Medusa heads made sequentially dependent ("grounded"): head i (0-based) reads
the context feature g_t together with the embeddings of the i + 1 tokens that follow position t,
``[g_t, E(x_{t+1}), ..., E(x_{t+1+i})]`` (width (i + 2) H), and predicts x_{t+2+i}. While drafting
those tokens are the root and the drafts already chosen on the path, so every draft knows what it
continues. Ungrounded heads read g_t alone and are exactly Medusa's.

A head is a first block, ``y = R(x) + SiLU(W x + b)`` with W and R both Linear((i + 2) H -> H) (the
residual R maps the wide input back to H), then ``num_layers - 1`` applications of ONE ordinary
residual block ``x + SiLU(W x + b)`` (the published code repeats one module, so its state dict
holds the same tensor under every index), then a vocabulary projection.

The context feature g_t depends on the head architecture (``hydra_head_arch``):
- ``mlp``: g_t is the base's feature at t (the final normed hidden state, or with
  ``hidden_state_offset`` k > 0 the hidden state k layers before the end);
- ``prefix-mlp``: g_t is the output of one extra Llama decoder layer plus RMSNorm (the "prefix
  layer") run causally over the sequence of base features, with its own small KV cache. In float32
  on the CPU the layer runs through the lean backend's native layer (methods/heads/native_layers.py),
  as the target's layers do; its torch definition here serves training and every other case.

Formats, both read by ``load_hydra``:
- published: ``config.json`` (hydra_num_heads, hydra_num_layers, hydra_head_arch, grounded_heads,
  hidden_state_offset) and ``hydra_lm_head.pt`` (or ``.safetensors``), the state dict of the heads.
  ``mlp`` arch: ``hydra_mlp.{i}.0.{linear,res_connection}.{weight,bias}`` (the first block),
  ``hydra_mlp.{i}.{1..n-1}.linear.*`` (the shared block), ``hydra_lm_head.{i}.{weight,bias}``.
  ``prefix-mlp``: a dropout sits before every block and projection, so the blocks are at the odd
  indices 1, 3, 5, ... and the projection at ``hydra_lm_head.{i}.1.*``; the prefix layer is under
  ``prefix_embeding_layer.layers.0.*`` and ``prefix_embeding_layer.norm.weight`` (the spelling is
  the published attribute name). Ungrounded heads: ``hydra_mlp.{i}.{j}.linear.*``, every j one
  shared block, as in Medusa. Block positions, head count and widths are read from the keys and
  checked against the target; the config only has to agree.
- ours (``training/train_drafter.py --method hydra``): the same keys minus the projections, which
  are the base's own lm_head (``"shares_base_lm_head": true``) restricted to ``draft_vocab`` (the
  ids the heads were trained to choose among), plus the base's fingerprint in the config.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from methods.core.backends.lean import LeanCache
from methods.heads.artifact import (ArtifactError, check_trained_base, check_draft_vocab, find_weights, load_state,
                                    read_config, ready_for_drafting)
from methods.heads.medusa import ResBlock
from methods.heads.native_layers import native_prefix_layer
from methods.heads.row_scores import row_scores

WEIGHT_FILES = ("hydra_lm_head.safetensors", "hydra_lm_head.pt")
ARCHS = ("mlp", "prefix-mlp")
BLOCK_KEY = re.compile(r"^hydra_mlp\.(\d+)\.(\d+)\.(linear|res_connection)\.(weight|bias)$")
PROJECTION_KEY = re.compile(r"^hydra_lm_head\.(\d+)\.(?:(\d+)\.)?(weight|bias)$")
PREFIX = "prefix_embeding_layer."
# Present in some published files, never used: the prefix layer's own token table (it reads
# features, not tokens), the base embedding registered as a submodule, RoPE buffers.
IGNORED = re.compile(r"^(prefix_embeding_layer\.embed_tokens\.weight|input_embed_fn\.weight|.*rotary_emb\.inv_freq)$")


class ConditionedBlock(nn.Module):
    """A grounded head's first block: ``R x + SiLU(W x + b)`` from the wide input to H."""

    def __init__(self, in_width: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(in_width, hidden)
        self.res_connection = nn.Linear(in_width, hidden)
        # A fresh head starts as the base's next-token head on g_t (as a fresh Medusa head does):
        # W = 0, R = the identity on the g_t slice and zero on the embeddings.
        with torch.no_grad():
            self.linear.weight.zero_()
            self.res_connection.weight.zero_()
            self.res_connection.weight[:, :hidden].copy_(torch.eye(hidden))
            self.res_connection.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_connection(x) + F.silu(self.linear(x))


class HydraHead(nn.Module):
    """One head's blocks. Grounded: a conditioned first block, then one shared residual block
    applied ``num_layers - 1`` times. Ungrounded: one residual block applied ``num_layers`` times."""

    def __init__(self, in_width: int, hidden: int, num_layers: int, grounded: bool):
        super().__init__()
        self.grounded, self.num_layers = grounded, num_layers
        self.first = ConditionedBlock(in_width, hidden) if grounded else ResBlock(hidden)
        self.shared = ResBlock(hidden) if grounded and num_layers > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        repeated = self.shared if self.grounded else self.first
        for _ in range(self.num_layers - 1):
            x = repeated(x)
        return x


# ---------------------------------------------------------------------------------- prefix layer
def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # As Llama does it: normalise in float32, scale in the input's dtype.
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class PrefixCache:
    """The prefix layer's keys and values over the features fed so far, for one turn: a one-layer
    LeanCache (the lean layout [kv_heads, capacity, head_dim], which the native layer writes),
    allocated by the first forward, and the native layer that runs it this turn (None: torch
    ops; ``PrefixLayer.new_cache`` chooses)."""

    def __init__(self, native=None):
        self.store: Optional[LeanCache] = None
        self.native = native

    @property
    def length(self) -> int:
        return 0 if self.store is None else self.store.length


class _Projections(nn.Module):
    def __init__(self, names_shapes: dict[str, tuple[int, int]]):
        super().__init__()
        for name, (out_f, in_f) in names_shapes.items():
            setattr(self, name, nn.Linear(in_f, out_f, bias=False))


class PrefixLayer(nn.Module):
    """Hydra++'s prefix layer: one Llama decoder layer (the base's shapes, RoPE and norm eps) and
    a final RMSNorm, run causally over the sequence of base features (they are its input
    embeddings). Submodule names follow the published keys under ``prefix_embeding_layer.``."""

    def __init__(self, base_config):
        super().__init__()
        text = base_config.get_text_config()
        hidden = int(text.hidden_size)
        self.heads = int(text.num_attention_heads)
        self.kv_heads = int(getattr(text, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(text, "head_dim", None) or hidden // self.heads)
        inter = int(text.intermediate_size)
        self.eps = float(text.rms_norm_eps)
        self.self_attn = _Projections({"q_proj": (self.heads * self.head_dim, hidden),
                                       "k_proj": (self.kv_heads * self.head_dim, hidden),
                                       "v_proj": (self.kv_heads * self.head_dim, hidden),
                                       "o_proj": (hidden, self.heads * self.head_dim)})
        self.mlp = _Projections({"gate_proj": (inter, hidden), "up_proj": (inter, hidden), "down_proj": (hidden, inter)})
        self.input_layernorm = nn.Parameter(torch.ones(hidden))
        self.post_attention_layernorm = nn.Parameter(torch.ones(hidden))
        self.norm = nn.Parameter(torch.ones(hidden))
        # The base's RoPE frequencies (theta, scaling type) as transformers computes them for the
        # base, kept in float32 whatever dtype the heads are cast to (not a buffer, so .to() leaves it).
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        rotary = LlamaRotaryEmbedding(config=text)
        self.inv_freq, self.rope_scaling = rotary.inv_freq.float().clone(), float(rotary.attention_scaling)

    def published_shapes(self) -> dict[str, tuple[int, ...]]:
        """Published key (after ``prefix_embeding_layer.``) -> shape."""
        shapes = {f"layers.0.self_attn.{n}.weight": tuple(getattr(self.self_attn, n).weight.shape)
                  for n in ("q_proj", "k_proj", "v_proj", "o_proj")}
        shapes.update({f"layers.0.mlp.{n}.weight": tuple(getattr(self.mlp, n).weight.shape)
                       for n in ("gate_proj", "up_proj", "down_proj")})
        hidden = (int(self.norm.shape[0]),)
        shapes.update({"layers.0.input_layernorm.weight": hidden, "layers.0.post_attention_layernorm.weight": hidden,
                       "norm.weight": hidden})
        return shapes

    def published_tensor(self, key: str) -> torch.Tensor:
        part = key.removeprefix("layers.0.")
        if part in ("input_layernorm.weight", "post_attention_layernorm.weight", "norm.weight"):
            return getattr(self, part.removesuffix(".weight"))
        module, name, _ = part.split(".")
        return getattr(getattr(self, module), name).weight

    def new_cache(self) -> PrefixCache:
        """An empty cache for a turn, run natively where the native layer can (float32 on the CPU)."""
        return PrefixCache(native_prefix_layer(self))

    def forward(self, features: torch.Tensor, cache: PrefixCache) -> torch.Tensor:
        """Outputs [n, H] for the next n features [n, H]; their keys and values join ``cache``."""
        n = features.shape[0]
        past, end = cache.length, cache.length + n
        positions = torch.arange(past, end, device=features.device)
        x = features
        angles = positions[:, None].float() * self.inv_freq.to(x.device)[None, :]
        angles = torch.cat([angles, angles], dim=-1)  # [n, head_dim]
        cos, sin = ((angles.cos() * self.rope_scaling).to(x.dtype), (angles.sin() * self.rope_scaling).to(x.dtype))
        if cache.store is None:
            cache.store = LeanCache(1, self.kv_heads, self.head_dim, x.dtype, x.device, capacity=max(64, 2 * n))
        cache.store.reserve(end)
        keys, values = cache.store.keys[0], cache.store.values[0]
        cache.store.length = end
        if cache.native is not None and cache.native.takes(n):
            return cache.native.run(x, cos, sin, keys, values, past)
        h = _rms_norm(x, self.input_layernorm, self.eps)
        q = self.self_attn.q_proj(h).view(n, self.heads, self.head_dim).transpose(0, 1)
        k = self.self_attn.k_proj(h).view(n, self.kv_heads, self.head_dim).transpose(0, 1)
        v = self.self_attn.v_proj(h).view(n, self.kv_heads, self.head_dim).transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        keys[:, past:end] = k * cos + _rotate_half(k) * sin
        values[:, past:end] = v
        group = self.heads // self.kv_heads
        keys, values = keys[:, :end].repeat_interleave(group, dim=0), values[:, :end].repeat_interleave(group, dim=0)
        visible = torch.arange(end, device=x.device)[None, :] <= positions[:, None]  # causal
        attn = F.scaled_dot_product_attention(q[None], keys[None], values[None], attn_mask=visible)
        x = x + self.self_attn.o_proj(attn[0].transpose(0, 1).reshape(n, self.heads * self.head_dim))
        h = _rms_norm(x, self.post_attention_layernorm, self.eps)
        x = x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))
        return _rms_norm(x, self.norm, self.eps)


# ---------------------------------------------------------------------------------- the heads
class HydraHeads(nn.Module):
    """K Hydra heads. ``projections`` None: every head projects with the base's lm_head rows
    ``draft_vocab`` (bound with ``bind``); else each head has its own [V, H] weight and [V] bias
    (published format). ``bind`` also takes the base's input embeddings (grounded heads)."""

    def __init__(self, hidden: int, num_heads: int, num_layers: int = 1, grounded: bool = True, arch: str = "mlp",
                 own_projection_vocab: Optional[int] = None, draft_vocab: Optional[torch.Tensor] = None,
                 base_config=None):
        super().__init__()
        if num_heads < 1 or num_layers < 1:
            raise ValueError("Hydra needs at least one head and one layer per head")
        if arch not in ARCHS:
            raise ValueError(f"Hydra head architecture {arch!r} is not supported (only {', '.join(ARCHS)})")
        self.hidden, self.num_heads, self.num_layers = hidden, num_heads, num_layers
        self.grounded, self.arch = grounded, arch
        self.heads = nn.ModuleList(HydraHead((i + 2) * hidden if grounded else hidden, hidden, num_layers, grounded)
                                   for i in range(num_heads))
        self.prefix = None
        if arch == "prefix-mlp":
            if base_config is None:
                raise ValueError("a prefix-mlp head needs the base model's config (its prefix layer has the base's shapes)")
            self.prefix = PrefixLayer(base_config)
        self.projections = self.projection_biases = None
        if own_projection_vocab is not None:
            self.projections = nn.ParameterList(
                nn.Parameter(torch.zeros(own_projection_vocab, hidden)) for _ in range(num_heads))
            self.projection_biases = nn.ParameterList(
                nn.Parameter(torch.zeros(own_projection_vocab)) for _ in range(num_heads))
        self.register_buffer("draft_vocab", None if draft_vocab is None else draft_vocab.long(), persistent=False)
        self._shared_rows: Optional[torch.Tensor] = None
        self._embeddings: Optional[torch.Tensor] = None
        # What g_t is computed from: None = the final normed feature (hidden_state_offset 0); i = the
        # input of base layer i, i.e. hidden_states[-(k + 1)] for hidden_state_offset k = L - i.
        self.feature_layer: Optional[int] = None

    @property
    def dtype(self) -> torch.dtype:
        return self.heads[0].first.linear.weight.dtype

    def input_width(self, head: int) -> int:
        return (head + 2) * self.hidden if self.grounded else self.hidden

    def candidate_count(self) -> int:
        """How many distinct tokens a head can propose (the size of its projection)."""
        if self.projections is not None:
            return int(self.projections[0].shape[0])
        if self.draft_vocab is not None:
            return int(self.draft_vocab.numel())
        return -1 if self._shared_rows is None else int(self._shared_rows.shape[0])

    def bind(self, base_model) -> None:
        """Take the embeddings (and, for shared heads, the projection rows) from the base;
        call again after moving the base."""
        self._embeddings = base_model.get_input_embeddings().weight.detach()
        if self.projections is None:
            weight = base_model.get_output_embeddings().weight
            rows = weight if self.draft_vocab is None else weight[self.draft_vocab.to(weight.device)]
            self._shared_rows = rows.detach()

    # ------------------------------------------------------------------ maths
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._embeddings is None:
            raise RuntimeError("HydraHeads.bind(base_model) must be called before drafting")
        return self._embeddings[tokens.to(self._embeddings.device)].to(self.dtype)

    def context(self, features: torch.Tensor, cache: Optional[PrefixCache]) -> torch.Tensor:
        """g for the last of ``features`` [n, H] (the newest accepted positions, in order):
        ``mlp`` takes the last feature as it is; ``prefix-mlp`` runs its prefix layer over them,
        extending ``cache`` (which then covers every position fed so far)."""
        features = features.to(self.dtype)
        if self.prefix is None:
            return features[-1]
        return self.prefix(features, cache)[-1]

    def head_hidden(self, head: int, inputs: torch.Tensor) -> torch.Tensor:
        """Head ``head``'s blocks on inputs [..., input_width(head)] -> [..., H]."""
        return self.heads[head](inputs)

    def head_logits(self, head: int, inputs: torch.Tensor) -> torch.Tensor:
        """Logits [..., C] over the head's candidates (the full vocabulary, or ``draft_vocab``)."""
        h = self.head_hidden(head, inputs)
        if self.projections is not None:
            return row_scores(h, self.projections[head], self.projection_biases[head])
        if self._shared_rows is None:
            raise RuntimeError("HydraHeads.bind(base_model) must be called before drafting")
        return row_scores(h, self._shared_rows)

    @torch.no_grad()
    def top_tokens(self, head: int, inputs: torch.Tensor, k: int) -> torch.Tensor:
        """Token ids [..., k], best first, of head ``head`` on inputs [..., input_width(head)]."""
        logits = self.head_logits(head, inputs.to(self.dtype))
        top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
        return top if self.draft_vocab is None or self.projections is not None else self.draft_vocab.to(top.device)[top]

    # ------------------------------------------------------------------ state dict in the published key layout
    def block_index(self, layer: int) -> int:
        """The published index of block ``layer`` (prefix-mlp puts a dropout before each block)."""
        return 2 * layer + 1 if self.arch == "prefix-mlp" else layer

    def hydra_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for i, head in enumerate(self.heads):
            for j in range(self.num_layers):
                block = head.first if j == 0 or not self.grounded else head.shared
                prefix = f"hydra_mlp.{i}.{self.block_index(j)}"
                state[f"{prefix}.linear.weight"], state[f"{prefix}.linear.bias"] = block.linear.weight, block.linear.bias
                if j == 0 and self.grounded:
                    state[f"{prefix}.res_connection.weight"] = block.res_connection.weight
                    state[f"{prefix}.res_connection.bias"] = block.res_connection.bias
            if self.projections is not None:
                sub = ".1" if self.arch == "prefix-mlp" else ""
                state[f"hydra_lm_head.{i}{sub}.weight"] = self.projections[i]
                state[f"hydra_lm_head.{i}{sub}.bias"] = self.projection_biases[i]
        if self.prefix is not None:
            for key in self.prefix.published_shapes():
                state[PREFIX + key] = self.prefix.published_tensor(key)
        return state


# ---------------------------------------------------------------------------------- loading
@dataclass
class _Keys:
    blocks: dict[int, dict[int, dict[str, torch.Tensor]]] = field(default_factory=dict)  # head -> index -> name
    projections: dict[int, dict[str, tuple[str, torch.Tensor]]] = field(default_factory=dict)  # head -> weight/bias
    prefix: dict[str, torch.Tensor] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)


def _sort_keys(state: dict[str, torch.Tensor]) -> _Keys:
    keys = _Keys()
    for key, tensor in state.items():
        if IGNORED.match(key):
            continue
        if m := BLOCK_KEY.match(key):
            head, index = int(m.group(1)), int(m.group(2))
            keys.blocks.setdefault(head, {}).setdefault(index, {})[f"{m.group(3)}.{m.group(4)}"] = tensor
        elif m := PROJECTION_KEY.match(key):
            keys.projections.setdefault(int(m.group(1)), {})[m.group(3)] = (key, tensor)
        elif key.startswith(PREFIX):
            keys.prefix[key.removeprefix(PREFIX)] = tensor
        else:
            keys.unexpected.append(key)
    return keys


def load_hydra(folder: str | Path, base_model) -> HydraHeads:
    """Hydra heads from a published or trained folder, checked against ``base_model``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"Hydra folder not found: {folder}")
    config = read_config(folder)
    arch = config.get("hydra_head_arch", "mlp")
    if arch not in ARCHS:
        raise ArtifactError(f"{folder}: hydra_head_arch {arch!r} is not supported; this platform runs the "
                            f"{' and '.join(repr(a) for a in ARCHS)} head architectures")
    shares = bool(config.get("shares_base_lm_head", False))
    if shares:
        check_trained_base(config, base_model, "Hydra heads", folder)
    path = find_weights(folder, WEIGHT_FILES, "Hydra")
    state = load_state(path)
    draft_vocab = state.pop("draft_vocab", None)
    keys = _sort_keys(state)
    if not keys.blocks:
        raise ArtifactError(f"{path}: no Hydra head tensors (hydra_mlp.{{i}}.{{j}}.linear.weight ...) found")
    if keys.unexpected:
        warnings.warn(f"{path}: ignoring unexpected keys {keys.unexpected[:5]}")

    num_heads = max(keys.blocks) + 1
    missing_heads = sorted(set(range(num_heads)) - set(keys.blocks))
    if missing_heads:
        raise ArtifactError(f"{path}: heads {missing_heads} are missing (keys run up to head {num_heads - 1})")
    indices = sorted(keys.blocks[0])
    for i in range(num_heads):
        if sorted(keys.blocks[i]) != indices:
            raise ArtifactError(f"{path}: head {i} has blocks at indices {sorted(keys.blocks[i])}, head 0 at "
                                f"{indices}; every head has the same blocks")
    num_layers = len(indices)
    # Blocks at 0..n-1 (mlp), or at the odd indices behind dropouts (prefix-mlp); either is read.
    plain, behind_dropouts = list(range(num_layers)), [2 * j + 1 for j in range(num_layers)]
    if indices not in (plain, behind_dropouts):
        raise ArtifactError(f"{path}: head blocks at hydra_mlp.{{i}}.{indices}; expected {plain} or, behind "
                            f"dropouts, {behind_dropouts}")
    layout = indices
    has_residual = "res_connection.weight" in keys.blocks[0][layout[0]]
    grounded = bool(config.get("grounded_heads", has_residual))
    offset = int(config.get("hidden_state_offset", 0) or 0)
    text = base_model.config.get_text_config()
    if not 0 <= offset <= int(text.num_hidden_layers):
        raise ArtifactError(f"{folder}: hidden_state_offset {offset} is outside the target's "
                            f"{text.num_hidden_layers} layers")
    for name, found in (("hydra_num_heads", num_heads), ("hydra_num_layers", num_layers)):
        declared = config.get(name)
        if declared is not None and declared != found:
            warnings.warn(f"{folder}/config.json says {name}={declared}; the weights hold {found}, which is used")

    embedding = base_model.get_output_embeddings().weight
    vocab, hidden = int(embedding.shape[0]), int(embedding.shape[1])
    heads = HydraHeads(hidden, num_heads, num_layers, grounded=grounded, arch=arch,
                       own_projection_vocab=None if shares else vocab, draft_vocab=draft_vocab,
                       base_config=base_model.config)

    def check(key: str, tensor: Optional[torch.Tensor], shape: tuple[int, ...], why: str) -> torch.Tensor:
        if tensor is None:
            raise ArtifactError(f"{path}: tensor {key} is missing")
        if tuple(tensor.shape) != tuple(shape):
            raise ArtifactError(f"{path}: tensor {key} has shape {list(tensor.shape)}, but the target model "
                                f"needs {list(shape)} ({why})")
        return tensor

    def block(i: int, index: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        key = f"hydra_mlp.{i}.{index}.{name}"
        why = (f"head {i} reads {i + 2} x hidden {hidden}" if grounded and index == layout[0] and shape[-1] != hidden
               else f"hidden {hidden}")
        return check(key, keys.blocks[i][index].get(name), shape, why)

    with torch.no_grad():
        for i, head in enumerate(heads.heads):
            width = heads.input_width(i)
            first = keys.blocks[i][layout[0]]
            if grounded:
                head.first.linear.weight.copy_(block(i, layout[0], "linear.weight", (hidden, width)))
                head.first.linear.bias.copy_(block(i, layout[0], "linear.bias", (hidden,)))
                head.first.res_connection.weight.copy_(block(i, layout[0], "res_connection.weight", (hidden, width)))
                head.first.res_connection.bias.copy_(block(i, layout[0], "res_connection.bias", (hidden,)))
                repeated = layout[1:]
            else:
                if "res_connection.weight" in first:
                    raise ArtifactError(f"{path}: hydra_mlp.{i}.{layout[0]}.res_connection.weight belongs to a grounded "
                                        f"head, but config.json says grounded_heads false")
                repeated = layout
            if repeated:  # one shared block: every copy must be the same tensor
                ref = repeated[0]
                weight = block(i, ref, "linear.weight", (hidden, hidden))
                bias = block(i, ref, "linear.bias", (hidden,))
                for index in repeated[1:]:
                    same = (torch.equal(block(i, index, "linear.weight", (hidden, hidden)), weight)
                            and torch.equal(block(i, index, "linear.bias", (hidden,)), bias))
                    if not same:
                        raise ArtifactError(f"{path}: head {i}'s repeated blocks differ; Hydra's blocks after the first "
                                            f"are one shared module, so hydra_mlp.{i}.{index}.* must equal "
                                            f"hydra_mlp.{i}.{ref}.*")
                target = head.shared if grounded else head.first
                target.linear.weight.copy_(weight)
                target.linear.bias.copy_(bias)
            if not shares:
                found = keys.projections.get(i, {})
                for name, shape, param in (("weight", (vocab, hidden), heads.projections[i]),
                                           ("bias", (vocab,), heads.projection_biases[i])):
                    key, tensor = found.get(name, (f"hydra_lm_head.{i}{'.1' if arch == 'prefix-mlp' else ''}.{name}", None))
                    param.copy_(check(key, tensor, shape, f"hidden {hidden}, vocabulary {vocab}"))
        if heads.prefix is not None:
            for key, shape in heads.prefix.published_shapes().items():
                tensor = check(PREFIX + key, keys.prefix.pop(key, None), shape,
                               "the prefix layer has the base's shapes")
                heads.prefix.published_tensor(key).copy_(tensor)
            if keys.prefix:
                warnings.warn(f"{path}: ignoring unexpected keys {[PREFIX + k for k in list(keys.prefix)[:5]]}")
        elif keys.prefix:
            raise ArtifactError(f"{path}: holds a prefix layer ({PREFIX}...) but config.json says "
                                f"hydra_head_arch {arch!r}")
    if shares and keys.projections:
        warnings.warn(f"{path}: the heads share the base's lm_head; their own hydra_lm_head.* tensors are ignored")
    check_draft_vocab(draft_vocab, vocab, path)
    heads.feature_layer = None if offset == 0 else int(text.num_hidden_layers) - offset
    return ready_for_drafting(heads, base_model, folder, config)
