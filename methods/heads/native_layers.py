"""Draft layers on the lean backend's native layer (lean_ops.c's ``lean_layer``).

A draft forward in torch is a dozen small ops per decoder layer (norms, q/k/v, rotary, cache
concatenation, attention, MLP), and on a CPU each op's call overhead costs more than its
arithmetic at the one to a few rows a draft runs: EAGLE-2 spent about 13 ms a step drafting
against ~20 ms for the target's verification. Draft layers that are Llama decoder layers therefore
run as one native call each, through the same ``FusedLayer`` and C code as the lean target (no
second copy of either); what is draft-specific (EAGLE's fc, the rope tables of its own positions)
stays a few calls around them. The C layer has two options for drafts: no input norm (EAGLE's
first layer) and an attention input of its own (EAGLE-3, whose q/k/v read [normed embedding,
normed feature], twice the residual width).

The native path is taken where the library is built, the draft is float32 on the CPU, its layers
are what lean_layer implements, and a block has at most ``SKINNY_MAX_ROWS`` rows (a long prompt's
catch-up runs on torch ops, as the lean target's long prefills do). Everything else (training,
float16/float64, CUDA) runs the draft's torch module. Both paths read and write the same cache
(``DraftCache``, the lean layout [kv_heads, capacity, head_dim]) and agree to float32 rounding.
While the engine drafts, the native layers read half-precision copies of their four matrices, by
the rule of the heads' projections (methods/heads/row_scores.py, ``layers_in_half``): a draft
forward is bound by reading its weights, and what a draft proposes changes only where two
candidates' scores differ by about that rounding; the target verifies every draft.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn.functional as F

from methods.core.backends import native_kernels
from methods.core.backends.half_weights import half_copy
from methods.core.backends.lean import SKINNY_MAX_ROWS, FusedLayer
from methods.heads.eagle import DraftCache, EagleDraftModel
from methods.heads.eagle3 import Eagle3DraftModel
from methods.heads import row_scores
from methods.heads.row_scores import linear


def native_library_for(weight: torch.Tensor):
    """The native library where ``weight``'s module can run on it (float32 on the CPU), else None."""
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        return None
    return native_kernels.load()


def native_draft(draft) -> Optional["_NativeDraft"]:
    """The native path for an EAGLE or EAGLE-3 draft as it is now, or None (torch ops). Called
    once per turn, so that a draft moved or cast since is seen as it is (its fused weights are
    found again, not rebuilt, while they are unchanged)."""
    kind = {EagleDraftModel: NativeEagleDraft, Eagle3DraftModel: NativeEagle3Draft}.get(type(draft))
    library = None if kind is None else native_library_for(draft.fc.weight)
    return None if library is None else _built(kind, draft, library)


def native_dflash(draft) -> Optional["NativeDFlashDraft"]:
    """The native path for a DFlash draft's block forward as it is now, or None (torch ops)."""
    library = native_library_for(draft.fc.weight)
    return None if library is None else _built(NativeDFlashDraft, draft, library)


def native_prefix_layer(prefix) -> Optional["NativePrefixLayer"]:
    """The native path for Hydra++'s prefix layer (methods/heads/hydra.py) as it is now, or None."""
    library = native_library_for(prefix.self_attn.q_proj.weight)
    return None if library is None else _built(NativePrefixLayer, prefix, library)


def rms_norm(library, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of the rows of ``x`` (float32, contiguous) by lean_ops.c's rms_norm: one call."""
    out = torch.empty_like(x)
    library.rms_norm(x.shape[0], x.shape[1], x.data_ptr(), None, weight.data_ptr(), eps, out.data_ptr())
    return out


def _built(kind, module, library):
    """``kind(module, library)`` or None where its layers are not what lean_layer implements. Built
    outside inference mode (drafting runs inside the engine's): the fused weights become the
    module's own parameters' storage, which must stay usable by autograd (training)."""
    with torch.inference_mode(False), torch.no_grad():
        native = kind(module, library)
    return native if all(layer.native_ok for layer in native.layers) else None


class _NativeLayers:
    """What every native draft forward shares: its lean_layer layers, the rows it takes, its rope
    tables and norms."""

    layers: list[FusedLayer]

    def __init__(self, draft, library):
        self.draft, self.library = draft, library
        self._cos: Optional[torch.Tensor] = None  # rope tables [positions, head_dim], see _rope
        self._sin: Optional[torch.Tensor] = None

    def takes(self, rows: int) -> bool:
        return rows <= SKINNY_MAX_ROWS

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [m, head_dim] for positions [m]: rows of tables the draft's own ``rope``
        computed for every position up to twice the furthest seen (element by element, so each row
        is what it computes for that position alone); a pass then indexes two tables instead of
        running the dozen small ops that build them."""
        end = int(positions.max()) + 1
        if self._cos is None or self._cos.shape[0] < end:
            cos, sin = self.draft.rope(torch.arange(max(256, 2 * end))[None], torch.float32)
            self._cos, self._sin = cos[0, 0], sin[0, 0]
        return self._cos[positions], self._sin[positions]

    def _rms(self, x: torch.Tensor, norm) -> torch.Tensor:
        return rms_norm(self.library, x, norm.weight, norm.eps)


class _NativeDraft(_NativeLayers):
    """What the EAGLE and EAGLE-3 native forwards share: the caller's contract (``run``), their fc."""

    @torch.no_grad()
    def run(self, cache: DraftCache, features: torch.Tensor, token_embeds: torch.Tensor, positions: torch.Tensor,
            at: int, allowed: torch.Tensor) -> torch.Tensor:
        """The draft's forward over m pairs (features [m, F], token_embeds [m, H], positions [m]),
        their keys and values written to cache rows at .. at+m-1. Each sees the committed rows
        (before ``cache.length``) and those of the rows from ``cache.length`` on that ``allowed``
        [m, at + m - cache.length] marks. Returns the outputs [m, H]."""
        cache.reserve(at + positions.shape[0], keep=at)  # before taking the caches' addresses: growing moves them
        cos, sin = self._rope(positions)
        allowed = allowed.to(torch.uint8).contiguous()
        threads, half = torch.get_num_threads(), row_scores.layers_in_half()

        def layer(i: int, x: torch.Tensor, attn_in: Optional[torch.Tensor] = None) -> None:
            self.layers[i].run_native(self.library, x, cos, sin, cache.keys[i], cache.values[i], at, cache.length,
                                      allowed, threads, attn_in, half)

        return self._forward(features, token_embeds, layer)

    def _fc(self, features: torch.Tensor) -> torch.Tensor:
        # fc reads its half copy by the layers' rule: 0.66M (EAGLE) or 1M (EAGLE-3) weights a
        # draft forward, read as often as a layer's.
        fc = self.draft.fc
        half = half_copy(fc.weight) if row_scores.layers_in_half() else None  # None: float16 cannot hold it
        x = native_kernels.skinny_matmul(self.library, features, fc.weight if half is None else half)
        return x if fc.bias is None else x.add_(fc.bias)


class NativeEagleDraft(_NativeDraft):
    """``EagleDraftModel.forward``: fc, then each decoder layer one lean_layer call."""

    def __init__(self, draft: EagleDraftModel, library):
        super().__init__(draft, library)
        s = draft.shape
        # Layer 0 has no input norm (EAGLE's published layout): FusedLayer passes a NULL norm_in.
        # The attention is F.scaled_dot_product_attention's default scale, the MLP's act F.silu.
        self.layers = [FusedLayer(layer.self_attn, layer.mlp, getattr(layer, "input_layernorm", None),
                                  layer.post_attention_layernorm, F.silu, s.head_dim ** -0.5, s.head_dim)
                       for layer in draft.layers]

    def _forward(self, features, token_embeds, layer) -> torch.Tensor:
        x = self._fc(torch.cat([token_embeds, features], dim=-1))
        for i in range(len(self.layers)):
            layer(i, x)
        return x


class NativeEagle3Draft(_NativeDraft):
    """``Eagle3DraftModel.forward``: the midlayer's attention reads [input_norm(E), hidden_norm(z)],
    2H wide, which lean_layer takes as its ``attn_in``; the residual stream stays H wide."""

    def __init__(self, draft: Eagle3DraftModel, library):
        super().__init__(draft, library)
        s, mid = draft.shape, draft.midlayer
        self.layers = [FusedLayer(mid.self_attn, mid.mlp, None, mid.post_attention_layernorm, F.silu,
                                  s.head_dim ** -0.5, s.head_dim)]

    def _forward(self, features, token_embeds, layer) -> torch.Tensor:
        draft, mid = self.draft, self.draft.midlayer
        # Fused target features go through fc; the draft's own outputs (tree expansion) do not,
        # and are copied since lean_layer updates its residual stream in place.
        wide = features.shape[-1] == draft.fc.in_features
        z = self._fc(features) if wide else features.contiguous().clone()
        hidden = self._rms(z, mid.hidden_norm)
        attn_in = torch.cat([self._rms(token_embeds.contiguous(), mid.input_layernorm), hidden], dim=-1)
        x = hidden if mid.norm_before_residual else z
        layer(0, x, attn_in)
        return x


class NativePrefixLayer:
    """Hydra++'s prefix layer: one Llama decoder layer over the base's features, causal over its
    own cache, then a final RMSNorm; the layer one lean_layer call, the norm one rms_norm call.
    Its norms are bare weights (the published layout), given to FusedLayer with their eps."""

    def __init__(self, prefix, library):
        self.prefix, self.library = prefix, library
        norm = lambda weight: SimpleNamespace(weight=weight, eps=prefix.eps)  # noqa: E731
        self.layers = [FusedLayer(prefix.self_attn, prefix.mlp, norm(prefix.input_layernorm),
                                  norm(prefix.post_attention_layernorm), F.silu, prefix.head_dim ** -0.5,
                                  prefix.head_dim)]

    def takes(self, rows: int) -> bool:
        return rows <= SKINNY_MAX_ROWS

    @torch.no_grad()
    def run(self, features: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
            values: torch.Tensor, past: int) -> torch.Tensor:
        """The layer's normed outputs [n, H] for features [n, H] at positions past .. past+n-1,
        their keys and values written to rows past .. past+n-1 of ``keys``/``values``."""
        n = features.shape[0]
        x = features.contiguous().clone()  # lean_layer updates its residual stream in place
        allowed = torch.ones(n, n, dtype=torch.uint8).tril_()
        self.layers[0].run_native(self.library, x, cos.contiguous(), sin.contiguous(), keys, values, past, past,
                                  allowed, torch.get_num_threads(), half=row_scores.layers_in_half())
        return rms_norm(self.library, x, self.prefix.norm, self.prefix.eps)


class NativeDFlashDraft(_NativeLayers):
    """``DFlashDraftModel.forward`` over one block: each Qwen3-shaped draft layer one lean_layer
    call (input norm, per-head q/k norms, rope, attention, MLP), then the final norm. The context's
    keys and values are the drafter's cache rows, written once per committed position
    (``extend_context``, or the torch module's ``context_kv`` for more rows than the kernel takes);
    the block's own go to the rows after them, where the next context rows overwrite them. Every
    block row sees every context row and every block row (no mask)."""

    def __init__(self, draft, library):
        super().__init__(draft, library)
        s = draft.shape
        self.layers = [FusedLayer(layer.self_attn, layer.mlp, layer.input_layernorm, layer.post_attention_layernorm,
                                  F.silu, s.head_dim ** -0.5, s.head_dim, q_norm=layer.self_attn.q_norm,
                                  k_norm=layer.self_attn.k_norm)
                       for layer in draft.layers]

    @torch.no_grad()
    def extend_context(self, cache: DraftCache, features: torch.Tensor) -> None:
        """``DFlashDraftModel.context_kv`` of the fused target features [m, F] of the next m
        committed positions, appended to the cache: fc (through the heads' product), hidden_norm,
        then per draft layer one lean_kv call (k/v of the rows as they are, k's per-head norm,
        rope) writing straight into the cache."""
        draft, m, past = self.draft, features.shape[0], cache.length
        c = self._rms(linear(features.to(torch.float32).contiguous(), draft.fc).contiguous(), draft.hidden_norm)
        cache.reserve(past + m, keep=past)
        cos, sin = self._rope(torch.arange(past, past + m))
        threads, half = torch.get_num_threads(), row_scores.layers_in_half()
        for i, layer in enumerate(self.layers):
            layer.store_kv(self.library, c, cos, sin, cache.keys[i], cache.values[i], past, threads, half=half)
        cache.length = past + m

    @torch.no_grad()
    def block(self, cache: DraftCache, block_embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The normed outputs [m, H] of block rows ``block_embeds`` [m, H] at ``positions`` [m],
        against the cache's ``length`` context rows (left as they are)."""
        m, past = block_embeds.shape[0], cache.length
        cache.reserve(past + m, keep=past)  # before taking the caches' addresses: growing moves them
        cos, sin = self._rope(positions)
        x = block_embeds.contiguous().clone()  # lean_layer updates its residual stream in place
        allowed = torch.ones(m, m, dtype=torch.uint8)
        threads, half = torch.get_num_threads(), row_scores.layers_in_half()
        for i, layer in enumerate(self.layers):
            layer.run_native(self.library, x, cos, sin, cache.keys[i], cache.values[i], past, past, allowed,
                             threads, half=half)
        return self._rms(x, self.draft.norm)
