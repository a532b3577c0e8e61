"""Half-precision copies of draft weights, which the skinny kernel reads while drafting.

A draft's products of a few rows are bound by reading their weights, so reading them as IEEE half
precision (``skinny_hgemm``: each weight widened to float32 as it is loaded, products and sums in
float32) takes about half the time. Both users keep the copy here: the heads' projections
(methods/heads/row_scores.py) and the draft layers that run through lean_layer (a ``FusedLayer``
run with ``half=True``). The target's own weights are never read this way.

The copy is made on first use and kept on the weight tensor, made again when the weight is changed
in place (its version counter, which views share with their base); a weight that float16 cannot
hold (above ``HALF_LIMIT`` in magnitude) has no copy and stays float32.
"""

from __future__ import annotations

from typing import Optional

import torch

HALF_LIMIT = 60000.0  # float16's largest finite value is 65504
_HALF_ATTRIBUTE = "_sdbench_half_copy"


def half_copy(weight: torch.Tensor) -> Optional[torch.Tensor]:
    """The float16 copy of ``weight`` (made once, kept on the tensor, remade after an in-place
    change), or None where float16 cannot hold it."""
    # An inference tensor (rows gathered while drafting) keeps no version counter; nothing here
    # changes one in place.
    version = -1 if weight.is_inference() else weight._version
    cached = getattr(weight, _HALF_ATTRIBUTE, None)
    if cached is not None and cached[0] == version:
        return cached[1]
    with torch.no_grad():
        fits = bool(weight.abs().max() <= HALF_LIMIT) if weight.numel() else True
        copy = weight.detach().to(torch.float16).contiguous() if fits else None
    setattr(weight, _HALF_ATTRIBUTE, (version, copy))
    return copy
