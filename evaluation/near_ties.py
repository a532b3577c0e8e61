"""Is a divergence from the baseline a near-tie (numerical rounding) or a real difference?

Greedy decoding picks the largest logit. Two runs of the same model that round differently
(another kernel for a 5-token verification block than for a 1-token step, another reduction
order on another GPU) can swap the top two candidates only where their gap, the *margin*, is
within the rounding noise of the logits. The runner records the target's margin of every
generated token (``logit_margins``); at a first divergence, equal.py looks at the baseline's
margin there and calls it a near-tie when it is below ``near_tie_threshold(dtype)``.

The threshold scales with the precision the forward pass rounds to: a multiple of the dtype's
machine epsilon times a typical logit magnitude. Each layer adds rounding of relative size eps
to the residual stream; over ~30 layers the relative error of the final hidden state grows to
tens of eps, and a logit of size ~LOGIT_SCALE inherits it. docs/evaluation.md gives the
measurement behind the factor (benchmarks/dtype_divergence.py).
"""

from __future__ import annotations

from typing import Optional

import torch

NEAR_TIE, REAL, UNKNOWN = "near-tie", "real", "unknown"

LOGIT_SCALE = 16.0  # a typical top logit of a chat LM; SmolLM2-135M's are 15-25
EPS_MULTIPLE = 16.0  # rounding error of the logits, in eps * LOGIT_SCALE (docs/evaluation.md)

_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "float64": torch.float64, "fp64": torch.float64, "double": torch.float64}


def near_tie_threshold(dtype: Optional[str]) -> Optional[float]:
    """Margin below which a flip of the top token can come from rounding alone; None for a
    dtype this module does not know (then no divergence is classified)."""
    torch_dtype = _DTYPES.get(str(dtype).lower().removeprefix("torch.")) if dtype else None
    if torch_dtype is None:
        return None
    return EPS_MULTIPLE * torch.finfo(torch_dtype).eps * LOGIT_SCALE


def classify(margin: Optional[float], threshold: Optional[float]) -> str:
    if margin is None or threshold is None:
        return UNKNOWN
    return NEAR_TIE if margin < threshold else REAL
