"""Is a divergence from the baseline a near-tie (numerical rounding) or a real difference?

Greedy decoding picks the largest logit. Two runs of the same model that round differently
(another kernel for a 5-token verification block than for a 1-token step, another reduction
order on another GPU) can swap the top two candidates only where their gap, the *margin*, is
within the rounding noise of the logits. The runner records the target's margin of every
generated token (``logit_margins``); at a first divergence, equal.py looks at the baseline's
margin there and calls it a near-tie when it is below ``near_tie_threshold(dtype)``.

The threshold scales with the precision the forward pass rounds to: EPS_MULTIPLE units in the
last place of a logit of magnitude LOGIT_SCALE, i.e. EPS_MULTIPLE * eps(dtype) * LOGIT_SCALE
(float16: 0.0625, bfloat16: 0.5, float32: 7.6e-6). Measured on the embedded SmolLM2-135M
(benchmarks/dtype_divergence.py, 16 questions, 64 greedy tokens; docs/evaluation.md): every
answer that bfloat16 or float16 decoding changed left float32's at a token whose float32
margin was at most one such unit (bfloat16: 11 divergences, margins 0.003-0.126, unit 0.125;
float16: 3, margins 0.008-0.013, unit 0.0156). Two runs in the same dtype that only round
differently differ by about as much, so four units leave room without excusing real bugs:
half of all float32 margins there were above 1.5.
"""

from __future__ import annotations

from typing import Optional

NEAR_TIE, REAL, UNKNOWN = "near-tie", "real", "unknown"
# A divergence in a turn whose prompt already differs from the baseline's (an earlier turn of the
# same question diverged, and the conversation carries that answer): the two runs no longer decode
# the same context, so the baseline's margins there cannot judge it as either of the above.
INHERITED = "inherited"

# SmolLM2-135M's top logit had a median of 23.3 over 256 greedy tokens (8 bundled questions),
# so most lie in [16, 32), where one unit in the last place is eps * 16.
LOGIT_SCALE = 16.0
EPS_MULTIPLE = 4.0  # near-tie margin in units in the last place at LOGIT_SCALE (see above)

# Machine epsilon (the gap from 1.0 to the next number) of each dtype: 2^-(mantissa bits).
# Written out rather than asked of torch, so that equal.py starts without importing it.
_EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52}
_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32",
            "float": "float32", "fp64": "float64", "double": "float64"}


def near_tie_threshold(dtype: Optional[str]) -> Optional[float]:
    """Margin below which a flip of the top token can come from rounding alone; None for a
    dtype this module does not know (then no divergence is classified)."""
    name = str(dtype).lower().removeprefix("torch.") if dtype else ""
    eps = _EPS.get(_ALIASES.get(name, name))
    return None if eps is None else EPS_MULTIPLE * eps * LOGIT_SCALE


def classify(margin: Optional[float], threshold: Optional[float]) -> str:
    if margin is None or threshold is None:
        return UNKNOWN
    return NEAR_TIE if margin < threshold else REAL
