"""How the engine runs the target model's forwards: ``hf`` or ``lean``.

Both honour one contract (``Target`` below): a fresh cache per turn, a prefill that computes no
logits, a verification forward over [root] + tree with explicit positions, the tree mask and the
tree's input-embedding overrides (given vectors for some auxiliary nodes), a cache compaction that
keeps the prefix and the accepted path, and the hidden states a drafter asked for, one row per
token. The engine and the drafters never see which one runs.

- ``hf`` calls the Hugging Face model itself (any causal LM; the GPU default and the path that
  matches Spec-Bench's numbers).
- ``lean`` runs llama-family decoders (Llama, Vicuna, SmolLM2, Qwen2) as a short loop over the
  same model's own weights, with a preallocated cache and a native few-row matrix product on the
  CPU: the CPU default, since it removes most of the per-forward overhead and makes extra rows
  cheap (``benchmarks/forward_cost.py`` measures both).

Answers record the backend, and results of different backends are never compared.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from methods.core.hidden_states import HiddenStateRequest, HiddenStates
from methods.core.tree import DraftTree

BACKENDS = ("hf", "lean")
CHOICES = ("auto", *BACKENDS)


class Target(Protocol):
    name: str
    # Whether our compiled native code runs the forwards, and which code does (recorded with
    # every answer: AVX2 and AVX-512 builds differ in speed, "none" on hf).
    native_kernel: bool
    native_code: str

    def new_cache(self): ...

    def capturing(self, request: HiddenStateRequest): ...  # a context manager for one turn

    def prefill(self, cache, tokens: list[int]) -> Optional[HiddenStates]: ...

    def verify(self, cache, past_len: int, root: int, tree: DraftTree,
               ) -> tuple[torch.Tensor, Optional[HiddenStates]]: ...

    def compact(self, cache, past_len: int, block_len: int, accepted_nodes: list[int]) -> None: ...

    def supports_tree_attention(self) -> bool: ...


class BackendError(ValueError):
    pass


def resolve_backend(name: str, model) -> str:
    """``auto``: lean on the CPU where the model is one it runs, else hf."""
    if name not in CHOICES:
        raise BackendError(f"unknown --backend {name!r}; choose from {', '.join(CHOICES)}")
    from methods.core.backends.lean import unsupported_reason

    if name == "auto":
        on_cpu = next(model.parameters()).device.type == "cpu"
        return "lean" if on_cpu and unsupported_reason(model) is None else "hf"
    if name == "lean":
        reason = unsupported_reason(model)
        if reason is not None:
            raise BackendError(f"--backend lean cannot run this model: {reason}; use --backend hf")
    return name


def make_target(backend, model) -> Target:
    """A Target for ``backend`` (a name, or a Target built elsewhere)."""
    if not isinstance(backend, str):
        return backend
    name = resolve_backend(backend, model)
    if name == "lean":
        from methods.core.backends.lean import LeanTarget

        return LeanTarget(model)
    from methods.core.backends.hf import HfTarget

    return HfTarget(model)
