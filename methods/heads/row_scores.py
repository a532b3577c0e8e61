"""Logits of a few draft rows over a head's vocabulary rows: ``x @ rows^T``, on the lean backend's
skinny kernel where it can run.

Every trained head ends by scoring one to a few dozen rows (a tree level, a DFlash block) against
thousands of vocabulary rows (the base's lm_head rows of a draft vocabulary, or a draft's own
head). That product is bound by reading the rows, and torch's matmul reads them poorly at these
shapes: from two rows on it runs a general GEMM several times slower than one pass over the rows
(docs/backends.md, "Draft layers", has the measurement). The lean target's lm_head already goes
through lean_ops.c's skinny kernel, which streams the weight once for all rows; the heads use the
same kernel, float32 on the CPU only, and torch everywhere else (training with gradients,
float16/float64, CUDA, more rows than the kernel takes, no native library). Both give the same
products up to float32 rounding.

While the engine drafts (torch's inference mode) the kernel reads a half-precision copy of the
weights (``skinny_hgemm``: each weight widened to float32 as it is read, the products and sums in
float32): these products are bound by reading the weights, so half the bytes is about half the
time. It changes what a draft proposes only where two candidates' scores differ by about the
half-precision rounding of the weights (1e-3 relative), and never what is accepted: the target
verifies every draft. The copies are methods/core/backends/half_weights.py's (made once, kept on
the weight tensor; a weight that float16 cannot hold stays float32); draft layers on lean_layer
read them by the same rule (``layers_in_half``). ``DRAFT_WEIGHTS = "float32"`` (or
``SDBENCH_DRAFT_WEIGHTS=float32``) turns it off. Training and its held-out evaluation (no gradient,
but not inference mode) read float32.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F

from methods.core.backends import native_kernels
from methods.core.backends.half_weights import half_copy
from methods.core.backends.lean import SKINNY_MAX_ROWS

# What the kernel reads while drafting: "float16" (a half copy of each weight) or "float32".
DRAFT_WEIGHTS = os.environ.get("SDBENCH_DRAFT_WEIGHTS", "float16")
if DRAFT_WEIGHTS not in ("float16", "float32"):
    raise ValueError(f"SDBENCH_DRAFT_WEIGHTS={DRAFT_WEIGHTS!r}: expected float16 or float32")


def _native_library(x: torch.Tensor, rows: torch.Tensor):
    """The native library where ``x @ rows^T`` may run on it, else None."""
    if x.dtype != torch.float32 or rows.dtype != torch.float32:
        return None
    if x.numel() == 0 or rows.dim() != 2 or x.shape[-1] != rows.shape[1]:
        return None  # torch's matmul then answers (or raises) as it would have
    if x.device.type != "cpu" or rows.device.type != "cpu" or not rows.is_contiguous():
        return None
    if torch.is_grad_enabled() and (x.requires_grad or rows.requires_grad):
        return None  # the kernel has no backward
    if x.numel() // max(1, x.shape[-1]) > SKINNY_MAX_ROWS:
        return None
    return native_kernels.load()


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)``, on the skinny kernel where it can run (a draft's own projections of a few
    rows, ten a step in DFlash's block, where torch's matmul is several times slower than one pass
    over the weight), else ``F.linear`` exactly as the layer itself (training, autocast, more rows)."""
    library = _native_library(x, layer.weight)
    if library is None:
        return F.linear(x, layer.weight, layer.bias)
    return _on_kernel(library, x, layer.weight, layer.bias)


def row_scores(x: torch.Tensor, rows: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x`` [..., H] scored against ``rows`` [N, H] (plus ``bias`` [N]): [..., N]."""
    library = _native_library(x, rows)
    if library is None:
        out = x @ rows.to(x.dtype).T
        return out if bias is None else out + bias.to(out.dtype)
    return _on_kernel(library, x, rows, bias)


def drafting_in_half() -> bool:
    """Whether draft weights are read in half precision now: while the engine drafts (inference
    mode), unless ``DRAFT_WEIGHTS`` says float32."""
    return DRAFT_WEIGHTS == "float16" and torch.is_inference_mode_enabled()


# Whether the draft layers on lean_layer (methods/heads/native_layers.py, SpS's draft model) follow
# the same rule; benchmarks/draft_cost.py turns it off to time them in float32.
HALF_LAYERS = True


def layers_in_half() -> bool:
    """Whether a draft layer on lean_layer reads its matrices' half-precision copies now."""
    return HALF_LAYERS and drafting_in_half()


def _on_kernel(library, x: torch.Tensor, rows: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    half = half_copy(rows) if drafting_in_half() else None
    flat = native_kernels.skinny_matmul(library, x.reshape(-1, x.shape[-1]), rows if half is None else half)
    if bias is not None:
        flat.add_(bias)
    return flat.view(*x.shape[:-1], rows.shape[0])
