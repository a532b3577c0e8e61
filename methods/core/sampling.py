"""The target distribution every method samples from: temperature, then top-k, then top-p.

The baseline and every drafter's acceptance use this one function, so "lossless" always means
"the same distribution the baseline samples from".
"""

from __future__ import annotations

import torch

from methods.core.drafter import DecodingConfig


def target_probs(logits: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Probabilities over the vocabulary for each row of ``logits`` (temperature > 0)."""
    work_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    scores = logits.to(work_dtype) / config.temperature
    if config.top_k and config.top_k < scores.shape[-1]:
        kth = torch.topk(scores, config.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(dim=-1)
        # Keep the smallest set whose mass reaches top_p (the first token is always kept).
        drop_sorted = (cumulative - sorted_probs) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """Draw one token id from a 1-D probability vector."""
    return int(torch.multinomial(probs, 1, generator=generator).item())
