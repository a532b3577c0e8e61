"""The frozen target's hidden states over whole sequences, for the feature pass (training/features.py).

Two ways to run the target, with the same result up to float32 rounding:

- ``lean``: the lean backend's native layer (methods/core/backends/lean.py), the sequence prefilled
  in native blocks into one reused cache. It runs where the engine's own CPU path does: float32 on
  a CPU with the native library, and a model whose every layer it implements. On a 2-core AMD EPYC
  it ran sequences of 120-700 tokens at 879 tokens/s against 565 for the transformers forward
  (the pass over a corpus of millions of positions is the longest job of training a drafter).
- ``transformers``: the model's own forward with hooks on the layers asked for (everywhere else:
  GPUs, other dtypes, models lean does not run).

``auto`` takes ``lean`` where it can run, else ``transformers``.
"""

from __future__ import annotations

from typing import Optional

import torch

from methods.core.backends.lean import LeanTarget, unsupported_reason
from methods.core.hidden_states import HiddenStateCapture, HiddenStateRequest, HiddenStates

CHOICES = ("auto", "lean", "transformers")


class ForwardUnavailable(ValueError):
    """``lean`` was asked for and cannot run this model here."""


def _lean_target(model) -> tuple[Optional[LeanTarget], Optional[str]]:
    """The lean target of ``model`` for the feature pass, or None and why it cannot run it. Building
    it moves the matrices into the huge-page arena once, as for decoding: the model's parameters
    become views of it and compute what they did."""
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        return None, "it runs float32 models on the CPU only"
    reason = unsupported_reason(model)
    if reason is not None:
        return None, reason
    target = LeanTarget(model)
    if not target.fused:
        return None, "the native layer is not available here, or does not implement this model's layers"
    return target, None


class TargetStates:
    """``with TargetStates(model, request, forward) as states:`` then ``states(tokens)`` is the
    ``HiddenStates`` of every position of ``tokens`` (the requested layer inputs and final feature)."""

    def __init__(self, model, request: HiddenStateRequest, forward: str = "auto"):
        if forward not in CHOICES:
            raise ValueError(f"forward {forward!r}: choose among {', '.join(CHOICES)}")
        self.model, self.request = model, request
        self._target, why_not = _lean_target(model) if forward != "transformers" else (None, "")
        if forward == "lean" and self._target is None:
            raise ForwardUnavailable(f"the lean forward cannot run this model: {why_not}")
        self.name = "lean" if self._target is not None else "transformers"
        self._capture: Optional[HiddenStateCapture] = None
        self._context = None

    def __enter__(self) -> "TargetStates":
        if self._target is not None:
            self._cache = self._target.new_cache()
            self._context = self._target.capturing(self.request)
            self._context.__enter__()
        else:
            self._capture = HiddenStateCapture(self.model, self.request)
            self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)
            self._context = None
        if self._capture is not None:
            self._capture.__exit__(*exc)
            self._capture = None

    @torch.inference_mode()
    def __call__(self, tokens: list[int]) -> HiddenStates:
        if self._target is not None:
            self._cache.length = 0  # one cache for every sequence: each starts at position 0
            return self._target.prefill(self._cache, tokens)
        device = next(self.model.parameters()).device
        self._capture.arm()
        out = self.model(input_ids=torch.tensor([tokens], device=device), use_cache=False, logits_to_keep=1,
                         **self._capture.forward_kwargs())
        return self._capture.collect(out)
