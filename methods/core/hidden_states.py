"""Target hidden states for drafters that read them (Medusa, Hydra, EAGLE, EAGLE-3, ...).

A drafter declares what it needs with a ``HiddenStateRequest``: the *inputs* of some decoder
layers (the raw residual stream before layer i, what EAGLE-3 reads) and/or the *final* feature
(the last layer's output after the final norm, the tensor the lm_head consumes; Medusa, Hydra and
EAGLE-1/2 read it). The engine then hands over a ``HiddenStates`` for the prompt and for every
verification forward, one row per token of the forward, aligned with the logits.

Capturing uses hooks, so only what was asked for is kept: a forward pre-hook on each requested
decoder layer and a forward hook on the final norm (``output_hidden_states=True`` would keep every
layer). A model whose decoder does not expose ``layers`` and ``norm`` (a non-llama layout, a
wrapper) falls back to ``output_hidden_states``, whose entry i is the input of layer i and whose
last entry is the normed final state in transformers 5.x. A drafter that asks for nothing gets
nothing and costs nothing: no hooks are registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass(frozen=True)
class HiddenStateRequest:
    layer_inputs: tuple[int, ...] = ()  # decoder layer indices whose input is wanted
    final: bool = False  # the final normed feature (what the lm_head reads)

    def __bool__(self) -> bool:
        return self.final or bool(self.layer_inputs)


NOTHING = HiddenStateRequest()


@dataclass
class HiddenStates:
    """Rows of one forward (or of the prompt): ``final`` [n, H] and ``layer_inputs[i]`` [n, H]."""

    final: Optional[torch.Tensor] = None
    layer_inputs: dict[int, torch.Tensor] = field(default_factory=dict)

    def rows(self, index) -> "HiddenStates":
        """The same states restricted to some rows (e.g. the accepted path)."""
        return HiddenStates(
            final=None if self.final is None else self.final[index],
            layer_inputs={i: t[index] for i, t in self.layer_inputs.items()},
        )


def request_of(drafter) -> HiddenStateRequest:
    """What a drafter asks for: its ``hidden_state_request`` (None means nothing)."""
    return drafter.hidden_state_request or HiddenStateRequest()


def _decoder_parts(model):
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    layers = getattr(decoder, "layers", None)
    norm = getattr(decoder, "norm", None)
    if layers is None or norm is None:
        return None, None
    return layers, norm


class HiddenStateCapture:
    """Collects the requested states of the target's forwards while armed.

    Usage: ``with HiddenStateCapture(model, request) as capture:`` then, per forward,
    ``capture.arm()``, ``model(..., **capture.forward_kwargs())``, ``capture.collect(out)``. Only
    armed forwards are recorded: a draft model that shares the target's layers (SpS ``self:N``)
    runs them too, between the target's forwards.
    """

    def __init__(self, model, request: HiddenStateRequest):
        self.request = request
        self._layers, self._norm = _decoder_parts(model) if request else (None, None)
        self.use_output_hidden_states = bool(request) and self._layers is None
        if self._layers is not None:
            count = len(self._layers)
        else:
            count = int(model.config.get_text_config().num_hidden_layers)
        bad = [i for i in request.layer_inputs if not 0 <= i < count]
        if bad:
            raise ValueError(f"hidden states asked for layer(s) {bad}, but the model has {count} layers")
        self._handles: list = []
        self._armed = False
        self._seen: dict = {}

    def __enter__(self) -> "HiddenStateCapture":
        if self._layers is not None:
            for i in self.request.layer_inputs:
                self._handles.append(self._layers[i].register_forward_pre_hook(self._layer_hook(i), with_kwargs=True))
            if self.request.final:
                self._handles.append(self._norm.register_forward_hook(self._final_hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _layer_hook(self, index: int):
        def hook(module, args, kwargs):
            if self._armed:
                self._seen[index] = args[0] if args else kwargs["hidden_states"]
        return hook

    def _final_hook(self, module, args, output) -> None:
        if self._armed:
            self._seen["final"] = output

    # ------------------------------------------------------------------ per forward
    def arm(self) -> None:
        self._seen = {}
        self._armed = bool(self.request)

    def forward_kwargs(self) -> dict:
        return {"output_hidden_states": True} if self.use_output_hidden_states and self._armed else {}

    def collect(self, out) -> Optional[HiddenStates]:
        """The states of the forward that just ran (batch row 0), or None if nothing was asked."""
        if not self._armed:
            return None
        self._armed = False
        if self.use_output_hidden_states:
            hs = out.hidden_states
            states = HiddenStates(final=hs[-1][0] if self.request.final else None,
                                  layer_inputs={i: hs[i][0] for i in self.request.layer_inputs})
        else:
            states = HiddenStates(final=self._seen["final"][0] if self.request.final else None,
                                  layer_inputs={i: self._seen[i][0] for i in self.request.layer_inputs})
        self._seen = {}
        return states
