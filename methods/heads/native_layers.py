"""Draft layers on the lean backend's native layer (lean_ops.c's ``lean_layer``).

A draft forward in torch is a dozen small ops per decoder layer (norms, q/k/v, rotary, cache
concatenation, attention, MLP), and on a CPU each op's call overhead costs more than its
arithmetic at the one to a few rows a draft runs: EAGLE-2 spent about 13 ms a step drafting
against ~20 ms for the target's verification. Draft layers that are Llama decoder layers therefore
run as one native call each, through the same ``FusedLayer`` and C code as the lean target (no
second copy of either); what is draft-specific (EAGLE's fc, the rope tables of its own positions)
stays a few torch ops around them.

The native path is taken where the library is built, the draft is float32 on the CPU, its layers
are what lean_layer implements, and a block has at most ``SKINNY_MAX_ROWS`` rows (a long prompt's
catch-up runs on torch ops, as the lean target's long prefills do). Everything else (training,
float16/float64, CUDA) runs the draft's torch module. Both paths read and write the same cache
(``DraftCache``, the lean layout [kv_heads, capacity, head_dim]) and agree to float32 rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from methods.core.backends import native_kernels
from methods.core.backends.lean import SKINNY_MAX_ROWS, FusedLayer
from methods.heads.eagle import DraftCache, EagleDraftModel


def native_library_for(weight: torch.Tensor):
    """The native library where ``weight``'s module can run on it (float32 on the CPU), else None."""
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        return None
    return native_kernels.load()


class NativeEagleDraft:
    """``EagleDraftModel.forward`` with each decoder layer one ``lean_layer`` call, writing its keys
    and values straight into a ``DraftCache``. Build it with ``for_draft`` (None where it cannot run)."""

    def __init__(self, draft: EagleDraftModel, library):
        s = draft.shape
        self.draft, self.library = draft, library
        # Layer 0 has no input norm (EAGLE's published layout): FusedLayer passes a NULL norm_in.
        # The attention is F.scaled_dot_product_attention's default scale, the MLP's act F.silu.
        self.layers = [FusedLayer(layer.self_attn, layer.mlp, getattr(layer, "input_layernorm", None),
                                  layer.post_attention_layernorm, F.silu, s.head_dim ** -0.5, s.head_dim)
                       for layer in draft.layers]

    @classmethod
    def for_draft(cls, draft) -> Optional["NativeEagleDraft"]:
        if not isinstance(draft, EagleDraftModel):
            return None
        library = native_library_for(draft.fc.weight)
        if library is None:
            return None
        # Outside inference mode (drafting runs inside the engine's): the fused weights become the
        # draft's own parameters' storage, which must stay usable by autograd (training).
        with torch.inference_mode(False), torch.no_grad():
            native = cls(draft, library)
        return native if all(layer.native_ok for layer in native.layers) else None

    def takes(self, rows: int) -> bool:
        return rows <= SKINNY_MAX_ROWS

    @torch.no_grad()
    def run(self, cache: DraftCache, features: torch.Tensor, token_embeds: torch.Tensor, positions: torch.Tensor,
            at: int, allowed: torch.Tensor) -> torch.Tensor:
        """m pairs (features [m, H], token_embeds [m, H], positions [m]) as cache rows at .. at+m-1.
        Each sees the committed rows (before ``cache.length``) and those of the rows from
        ``cache.length`` on that ``allowed`` [m, at + m - cache.length] marks. Returns the outputs [m, H]."""
        lib, draft = self.library, self.draft
        m = positions.shape[0]
        cache.reserve(at + m, keep=at)  # before taking the caches' addresses: growing moves them
        x = native_kernels.skinny_matmul(lib, torch.cat([token_embeds, features], dim=-1), draft.fc.weight)
        if draft.fc.bias is not None:
            x.add_(draft.fc.bias)
        cos, sin = draft.rope(positions[None], torch.float32)
        cos, sin = cos[0, 0].contiguous(), sin[0, 0].contiguous()
        allowed = allowed.to(torch.uint8).contiguous()
        threads = torch.get_num_threads()
        for i, layer in enumerate(self.layers):
            layer.run_native(lib, x, cos, sin, cache.keys[i], cache.values[i], at, cache.length, allowed, threads)
        return x
