"""Another drafter behind a retrieval drafter: it drafts the steps the retrieval has nothing good
for (SAM-Decoding's SAMD[EAGLE2], SuffixDecoding's hybrid with EAGLE).

The fallback is told begin/accept/end on every step, whoever drafted, so a stateful fallback
(Token Recycling's matrix, EAGLE's draft cache and hidden states) always stands for the whole
text. Its needs become its owner's: the hidden states it reads, and a lossy acceptance rule it
was asked for (applied to every step, and recorded as lossy).

One rule picks the fallback when the user names none: EAGLE-2 wherever an EAGLE draft is at hand
(the embedded model's shipped one, or ``--eagle-path``), else Token Recycling, which needs no
training and so works on any target; ``none`` turns it off.
"""

from __future__ import annotations

from typing import Optional

from methods.core.drafter import Drafter, DraftSession, StepResult
from methods.core.hidden_states import request_of

TRAINED_FALLBACK = "eagle2"
DEFAULT_FALLBACK = "recycling"
NO_FALLBACK = "none"


def fallback_name(args, option: str) -> str:
    """The fallback a run's ``--<method>-fallback`` names, or the default rule's choice."""
    name = getattr(args, option, None)
    if name is not None:
        return name
    from methods.core.model_loading import EMBEDDED
    from methods.drafters.eagle import EMBEDDED_DRAFT

    on_embedded = getattr(args, "model_path", EMBEDDED) in (EMBEDDED, "", None)
    has_draft = getattr(args, "eagle_path", None) is not None or (on_embedded and EMBEDDED_DRAFT.is_dir())
    return TRAINED_FALLBACK if has_draft else DEFAULT_FALLBACK


def check_fallback(args, option: str, owner: str) -> None:
    """A clear error for a fallback that is the owner itself or no method; the fallback's own
    options are checked too."""
    from methods.registry import available_methods, drafter_class

    name = fallback_name(args, option)
    flag = "--" + option.replace("_", "-")
    if name == owner:
        raise ValueError(f"{flag} {owner}: the fallback must be another method")
    if name == NO_FALLBACK:
        return
    if name not in available_methods():
        raise ValueError(f"{flag} {name}: unknown method; available: "
                         f"{', '.join(m for m in available_methods() if m != owner)} or {NO_FALLBACK}")
    drafter_class(name).check_args(args)


def build_fallback(args, option: str, model, tokenizer) -> tuple[Optional[Drafter], str]:
    """(the fallback drafter built from its own options, or None; its name)."""
    from methods.registry import drafter_class

    name = fallback_name(args, option)
    if name == NO_FALLBACK:
        return None, name
    return drafter_class(name).from_args(args, model, tokenizer), name


def help_text(owner_option: str) -> str:
    return (f"registered method that drafts where {owner_option}, built from its own options (default: "
            f"{TRAINED_FALLBACK} where an EAGLE draft is at hand, the embedded model's or --eagle-path; else "
            f"{DEFAULT_FALLBACK}; '{NO_FALLBACK}': no draft then)")


class WithFallback:
    """Mixin for a drafter with an optional ``self.fallback``: forwards the turn's events to it and
    takes over its needs. Call ``_adopt_fallback`` in ``__init__`` and the ``_fallback_*`` hooks
    from ``begin``/``accept``/``end``."""

    fallback: Optional[Drafter] = None
    fallback_name: str = NO_FALLBACK

    def _adopt_fallback(self, fallback: Optional[Drafter], name: str = "") -> None:
        self.fallback = fallback
        self.fallback_name = name or (fallback.name if fallback is not None else NO_FALLBACK)
        self.hidden_state_request = request_of(fallback) if fallback is not None else None
        self.sampling_acceptance = getattr(fallback, "sampling_acceptance", None)
        self.lossy = bool(getattr(fallback, "lossy", False))

    def _fallback_begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        if self.fallback is not None:
            self.fallback.begin(prompt_ids, session)

    def _fallback_accept(self, step: StepResult) -> None:
        if self.fallback is not None:
            self.fallback.accept(step)

    def _fallback_end(self) -> None:
        if self.fallback is not None:
            self.fallback.end()

    def _longest(self, own: int, of: str) -> Optional[int]:
        """The larger of the owner's bound and the fallback's (None: the fallback has none)."""
        if self.fallback is None:
            return own
        theirs = getattr(self.fallback, of)()
        return None if theirs is None else max(own, theirs)

    def _fallback_params(self) -> dict:
        return {"fallback": self.fallback_name,
                "fallback_params": self.fallback.params() if self.fallback is not None else {}}
