"""Acceptance figures of a speculative method, under the names vLLM, SGLang and SpecForge users
know (docs/evaluation.md maps each of ours to theirs).

Two means of the accepted length are given because the engines disagree and the two can rank
methods in opposite orders: the *pooled* mean over every verification step (vLLM: 1 + accepted
tokens / drafts) and the *per-request* mean (SpecForge: each request's own mean, then the mean
over requests). A request here is one question's answer, every turn included.

A figure the answers cannot support (no draft counts, no time split, unknown draft length) is
None, never a guess.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

from evaluation.record.answers import Answer

# The key of method_params under which the runner records the longest chain a step may propose
# (the drafter's own max_draft_length, methods/core/drafter.py). Files without it (older runs,
# Spec-Bench's) get no system efficiency rather than a figure guessed from other parameters.
DRAFT_LENGTH_KEY = "max_draft_length"


@dataclass
class AcceptanceFigures:
    steps: int  # verification steps (entries of accept_lengths)
    # AL pooled over steps: committed tokens per step, bonus included = vLLM's mean acceptance
    # length, 1 + accepted draft tokens / drafting steps.
    mean_acceptance_length: Optional[float]
    # AL per request: each answer's own AL, then their mean (SpecForge's way).
    mean_acceptance_length_per_request: Optional[float]
    draft_acceptance_rate: Optional[float]  # accepted draft tokens / proposed draft tokens
    # Joint, vLLM's: [k-1] = share of steps accepting >= k drafts.
    per_position_acceptance_rate: list[float]
    # Conditional: [k-1] = share accepting >= k among steps accepting >= k-1 (None where none did).
    per_position_conditional_acceptance_rate: list[Optional[float]]
    acceptance_length_histogram: dict[int, int]  # accept length -> number of steps
    # SGLang's per-request spec_accept_histogram: question id -> [steps that accepted exactly
    # n draft tokens for n = 0, 1, ...] (summed over runs when several runs answer the question).
    per_request_acceptance_histogram: dict[str, list[int]]
    max_draft_length: Optional[int]  # recorded by the runner from the drafter
    system_efficiency: Optional[float]  # AL / (max draft length + 1)
    time_per_proposal_token_s: Optional[float]  # draft time / proposed draft tokens
    draft_time_per_step_s: Optional[float]  # draft time / steps
    verify_time_per_step_s: Optional[float]  # verify time / steps
    mean_draft_tokens_per_step: Optional[float]  # proposed nodes per step (tree size)
    verify_time_share: Optional[float]  # verify time / wall time
    draft_time_share: Optional[float]  # draft time / wall time

    def as_dict(self) -> dict:
        data = asdict(self)
        data["acceptance_length_histogram"] = {
            str(k): v for k, v in sorted(self.acceptance_length_histogram.items())
        }
        return data


def max_draft_length(method_params: Optional[dict]) -> Optional[int]:
    """The longest draft a run's drafter could propose, as the runner recorded it."""
    value = (method_params or {}).get(DRAFT_LENGTH_KEY)
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


def joint_acceptance(lengths: list[int], longest: int) -> list[float]:
    """[k-1] = share of steps that accepted at least k draft tokens (accept length > k)."""
    steps = len(lengths)
    return [sum(1 for n in lengths if n > k) / steps for k in range(1, longest + 1)] if steps else []


def conditional_acceptance(joint: list[float]) -> list[Optional[float]]:
    """Position k accepted given position k-1 was: joint[k] / joint[k-1], joint[0] / 1."""
    rates, before = [], 1.0
    for rate in joint:
        rates.append(rate / before if before > 0 else None)
        before = rate
    return rates


def per_request_histograms(answers: list[Answer]) -> dict[str, list[int]]:
    """Question id -> [steps accepting exactly n draft tokens, n = 0, 1, ...]."""
    histograms: dict[str, list[int]] = {}
    for answer in answers:
        counts = histograms.setdefault(answer.question_id, [])
        for length in answer.accept_lengths:
            drafts = max(length - 1, 0)
            counts.extend([0] * (drafts + 1 - len(counts)))
            counts[drafts] += 1
    return histograms


def acceptance_figures(answers: Iterable[Answer],
                       draft_length: Optional[int] = None) -> AcceptanceFigures:
    answers = list(answers)
    lengths = [n for a in answers for n in a.accept_lengths]
    steps = len(lengths)
    accepted = sum(lengths)

    mean_length = accepted / steps if steps else None
    own_means = [sum(a.accept_lengths) / len(a.accept_lengths) for a in answers if a.accept_lengths]
    per_request = sum(own_means) / len(own_means) if own_means else None

    draft_tokens = _total(answers, "draft_tokens")
    draft_rate = None
    if draft_tokens:
        # Each step commits one token of the target's own (the bonus) besides accepted drafts.
        draft_rate = (accepted - steps) / draft_tokens

    longest = draft_length if draft_length is not None else (max(lengths) - 1 if lengths else 0)
    joint = joint_acceptance(lengths, longest)

    efficiency = None
    if draft_length is not None and mean_length is not None:
        efficiency = mean_length / (draft_length + 1)

    wall = float(sum(sum(a.wall_time) for a in answers))
    draft_time = _total(answers, "draft_time")
    verify_time = _total(answers, "verify_time")
    per_proposal = draft_time / draft_tokens if draft_time is not None and draft_tokens else None

    def per_step(total: Optional[float]) -> Optional[float]:
        return total / steps if total is not None and steps else None

    return AcceptanceFigures(
        steps=steps,
        mean_acceptance_length=mean_length,
        mean_acceptance_length_per_request=per_request,
        draft_acceptance_rate=draft_rate,
        per_position_acceptance_rate=joint,
        per_position_conditional_acceptance_rate=conditional_acceptance(joint),
        acceptance_length_histogram=dict(sorted(Counter(lengths).items())),
        per_request_acceptance_histogram=per_request_histograms(answers),
        max_draft_length=draft_length,
        system_efficiency=efficiency,
        time_per_proposal_token_s=per_proposal,
        draft_time_per_step_s=per_step(draft_time),
        verify_time_per_step_s=per_step(verify_time),
        mean_draft_tokens_per_step=per_step(draft_tokens),
        verify_time_share=_share(verify_time, wall),
        draft_time_share=_share(draft_time, wall),
    )
