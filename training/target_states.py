"""The frozen target's hidden states over whole sequences, for the feature pass (training/features.py).

The target runs through the engine's own backends (methods/core/backends/), by their contract:
``capturing(request)`` for the pass, then per sequence a ``prefill`` of all its tokens, which
computes no logits and returns the requested states, one row per token. ``backend`` is resolved as
the engine resolves it (``auto``: lean on the CPU where it runs the model, else hf), so the pass
reads the states the way decoding computes them. On a 2-core AMD EPYC the lean backend's native
layer ran sequences of 120-700 tokens at 879 tokens/s against 565 for the hf forward (the pass over
a corpus of millions of positions is the longest job of training a drafter); both give the same
states up to float32 rounding.
"""

from __future__ import annotations

from methods.core.backends import make_target
from methods.core.hidden_states import HiddenStateRequest, HiddenStates


class TargetStates:
    """``with TargetStates(model, request, backend) as states:`` then ``states(tokens)`` is the
    ``HiddenStates`` of every position of ``tokens``. ``backend``: auto, hf or lean (a name the
    model cannot run raises methods.core.backends.BackendError, with the reason)."""

    def __init__(self, model, request: HiddenStateRequest, backend: str = "auto"):
        self._target = make_target(backend, model)
        self.name = self._target.name
        self._capturing = self._target.capturing(request)
        # lean's cache is preallocated (tens of MB, whose first touch costs page faults): one serves
        # every sequence, each written from position 0 (measured: 59 s against 74 s for a new cache
        # per sequence over 200 conversations). hf's DynamicCache grows as it fills: a new one each time.
        self._lean_cache = self._target.new_cache() if self.name == "lean" else None

    def __enter__(self) -> "TargetStates":
        self._capturing.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capturing.__exit__(*exc)

    def __call__(self, tokens: list[int]) -> HiddenStates:
        cache = self._lean_cache
        if cache is None:
            cache = self._target.new_cache()
        else:
            cache.length = 0
        return self._target.prefill(cache, tokens)
