"""A method's predicted speedup from its acceptance, its draft time and the device's verification
cost curve (evaluation/run/verify_cost.py), set beside the measured one.

A step of the method commits AL tokens (its pooled mean accepted length) and costs its draft time
d plus one verification forward over F tokens (root and tree), which the curve prices at c(F)
times a 1-token forward. The baseline commits one token per 1-token forward of T seconds (its own
decode time per step: wall time less prefill, over its steps). So

    predicted speedup = AL / (c(F) + d / T)

It leaves out what neither the curve nor the acceptance sees (prefill, the engine's bookkeeping
per step beyond what the baseline also pays), so a method whose measured speedup is more than
TOLERANCE away from it is flagged: its time goes somewhere the model does not explain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

from evaluation.compare.metrics import AcceptanceFigures
from evaluation.record.answers import Answer

TOLERANCE = 0.10  # |measured / predicted - 1| above this is flagged


@dataclass
class SpeedPrediction:
    predicted_speedup: Optional[float]
    measured_speedup: float
    gap: Optional[float]  # measured / predicted - 1
    flagged: bool  # |gap| > TOLERANCE
    forward_tokens_per_step: Optional[float]  # F: tokens per verification forward, root included
    relative_verify_cost: Optional[float]  # c(F), from the curve
    baseline_step_s: Optional[float]  # T
    draft_time_per_step_s: Optional[float]  # d
    unavailable: Optional[str] = None  # why no prediction could be made

    def as_dict(self) -> dict:
        return asdict(self)


def relative_cost(curve: dict, tokens: float) -> float:
    """c(tokens): the curve read by straight lines between its sizes, and beyond its last size
    along its last segment (a forward larger than measured is an extrapolation)."""
    sizes, costs = curve["tokens"], curve["relative"]
    if tokens <= sizes[0]:
        return costs[0]
    for (k0, c0), (k1, c1) in zip(zip(sizes, costs), zip(sizes[1:], costs[1:])):
        if tokens <= k1:
            return c0 + (c1 - c0) * (tokens - k0) / (k1 - k0)
    k0, k1, c0, c1 = sizes[-2], sizes[-1], costs[-2], costs[-1]
    return c1 + (c1 - c0) * (tokens - k1) / (k1 - k0)


def baseline_step_time(answers: Iterable[Answer]) -> Optional[float]:
    """The baseline's decode seconds per step (one token each): wall time less prefill, over steps."""
    decode, steps = 0.0, 0
    for answer in answers:
        prefill = sum(answer.prefill_time) if answer.prefill_time is not None else 0.0
        decode += sum(answer.wall_time) - prefill
        steps += len(answer.accept_lengths)
    return decode / steps if steps and decode > 0 else None


def forward_tokens_per_step(answers: list[Answer], figures: AcceptanceFigures) -> Optional[float]:
    """F: the tokens per verification forward as recorded, else draft nodes per step + the root."""
    if figures.steps and all(a.forward_tokens is not None for a in answers):
        return sum(sum(a.forward_tokens) for a in answers) / figures.steps
    if figures.mean_draft_tokens_per_step is not None:
        return figures.mean_draft_tokens_per_step + 1
    return None


def predict(figures: AcceptanceFigures, answers: list[Answer], base_answers: list[Answer],
            curve: Optional[dict], measured: float) -> SpeedPrediction:
    forward = forward_tokens_per_step(answers, figures)
    base_step = baseline_step_time(base_answers)
    draft = figures.draft_time_per_step_s
    missing = [what for what, value in (("the method run measured no cost curve", curve),
                                        ("no accepted length", figures.mean_acceptance_length),
                                        ("no draft or forward tokens per step", forward),
                                        ("no draft time", draft),
                                        ("no baseline decode time", base_step))
               if value is None or value == {}]
    if missing:
        return SpeedPrediction(None, measured, None, False, forward, None, base_step, draft,
                               unavailable="; ".join(missing))
    cost = relative_cost(curve, forward)
    predicted = figures.mean_acceptance_length / (cost + draft / base_step)
    gap = measured / predicted - 1
    return SpeedPrediction(predicted, measured, gap, abs(gap) > TOLERANCE, forward, cost,
                           base_step, draft)
