"""Small statistics used by speed.py: throughput ratios, their bootstrap interval, run spread."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def throughput_ratio(tokens: np.ndarray, times: np.ndarray,
                     base_tokens: np.ndarray, base_times: np.ndarray) -> np.ndarray:
    """Speedup of each run pair: (total tokens / total time) over the baseline's same.

    Arrays are [runs, questions] (or [..., runs, questions]); the result drops the last axis.
    """
    method_rate = tokens.sum(axis=-1) / times.sum(axis=-1)
    base_rate = base_tokens.sum(axis=-1) / base_times.sum(axis=-1)
    return method_rate / base_rate


def bootstrap_speedup_ci(tokens: np.ndarray, times: np.ndarray,
                         base_tokens: np.ndarray, base_times: np.ndarray,
                         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                         confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean-over-runs speedup, resampling questions with replacement.

    Questions are resampled once per draw and the same draw is applied to every run and to both
    sides, so the pairing of a question's method and baseline timings is kept.
    """
    n = tokens.shape[-1]
    rng = np.random.default_rng(seed)
    # How often each question is drawn in each resample: [resamples, questions].
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (counts @ tokens.T) / (counts @ times.T)  # [resamples, runs]
        base_rate = (counts @ base_tokens.T) / (counts @ base_times.T)
        per_draw = (rate / base_rate).mean(axis=1)
    per_draw = per_draw[np.isfinite(per_draw)]  # a draw of only token-less baseline questions
    if per_draw.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(per_draw, [tail, 1.0 - tail])
    return float(low), float(high)


def mean_and_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (ddof=1, as Spec-Bench's mean report); std None for one."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else None
    return float(array.mean()), std


def finite_or_none(value: Optional[float]) -> Optional[float]:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
