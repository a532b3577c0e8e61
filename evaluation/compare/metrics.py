"""Acceptance figures of a speculative method, under the names vLLM and SGLang users know.

All figures pool the steps of every answer given (as Spec-Bench pools its mean accepted tokens
over questions and runs), so they are step-weighted. A figure the answers cannot support (no
draft counts, no time split, unknown draft length) is None, never a guess.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

from evaluation.record.answers import Answer

# Keys of method_params that give the longest chain a step may propose (the tree depth), as our
# drafters and vLLM name it. A schedule that changes the length (SpS "gamma" with a heuristic
# schedule, HF's num_assistant_tokens) has no fixed maximum, so those keys are not read.
DRAFT_LENGTH_KEYS = (
    "max_draft_length", "draft_length", "num_speculative_tokens",
    "num_pred",  # PLD: tokens copied after a match
    "tree_depth", "max_depth", "depth",  # tree drafters (e.g. Token Recycling)
)


@dataclass
class AcceptanceFigures:
    steps: int  # verification steps (entries of accept_lengths)
    mean_acceptance_length: Optional[float]  # AL: committed tokens per step, bonus included
    draft_acceptance_rate: Optional[float]  # accepted draft tokens / proposed draft tokens
    per_position_acceptance_rate: list[float]  # [k-1]: share of steps accepting >= k drafts
    acceptance_length_histogram: dict[int, int]  # accept length -> number of steps
    max_draft_length: Optional[int]  # from method_params
    system_efficiency: Optional[float]  # AL / (max draft length + 1)
    time_per_proposal_token_s: Optional[float]  # draft time / proposed draft tokens
    verify_time_share: Optional[float]  # verify time / wall time
    draft_time_share: Optional[float]  # draft time / wall time

    def as_dict(self) -> dict:
        data = asdict(self)
        data["acceptance_length_histogram"] = {
            str(k): v for k, v in sorted(self.acceptance_length_histogram.items())
        }
        return data


def max_draft_length(method_params: Optional[dict]) -> Optional[int]:
    """The draft length a method was run with, if its parameters name it."""
    for key in DRAFT_LENGTH_KEYS:
        value = (method_params or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _total(answers: list[Answer], name: str) -> Optional[float]:
    """Sum of an optional per-turn field, or None unless every answer carries it."""
    values = [getattr(a, name) for a in answers]
    if any(v is None for v in values):
        return None
    return float(sum(sum(v) for v in values))


def _share(part: Optional[float], whole: float) -> Optional[float]:
    return part / whole if part is not None and whole > 0 else None


def acceptance_figures(answers: Iterable[Answer],
                       draft_length: Optional[int] = None) -> AcceptanceFigures:
    answers = list(answers)
    lengths = [n for a in answers for n in a.accept_lengths]
    steps = len(lengths)
    accepted = sum(lengths)
    histogram = dict(sorted(Counter(lengths).items()))

    mean_length = accepted / steps if steps else None

    draft_tokens = _total(answers, "draft_tokens")
    draft_rate = None
    if draft_tokens:
        # Each step commits one token of the target's own (the bonus) besides accepted drafts.
        draft_rate = (accepted - steps) / draft_tokens

    longest = draft_length if draft_length is not None else (max(lengths) - 1 if lengths else 0)
    per_position = [sum(1 for n in lengths if n > k) / steps for k in range(1, longest + 1)] \
        if steps else []

    efficiency = None
    if draft_length is not None and mean_length is not None:
        efficiency = mean_length / (draft_length + 1)

    wall = float(sum(sum(a.wall_time) for a in answers))
    draft_time = _total(answers, "draft_time")
    per_proposal = draft_time / draft_tokens if draft_time is not None and draft_tokens else None

    return AcceptanceFigures(
        steps=steps,
        mean_acceptance_length=mean_length,
        draft_acceptance_rate=draft_rate,
        per_position_acceptance_rate=per_position,
        acceptance_length_histogram=histogram,
        max_draft_length=draft_length,
        system_efficiency=efficiency,
        time_per_proposal_token_s=per_proposal,
        verify_time_share=_share(_total(answers, "verify_time"), wall),
        draft_time_share=_share(draft_time, wall),
    )
