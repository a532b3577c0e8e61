"""The baseline: plain autoregressive decoding, one token per target forward.

It runs through the same engine as every method with an empty draft, so baseline and methods
share kernels, cache handling and stopping rules: a speedup is never a kernel comparison.
The engine's empty-tree path is a 1-token forward with no custom mask.
"""

from __future__ import annotations

from methods.core.drafter import Drafter
from methods.core.tree import DraftTree


class VanillaDrafter(Drafter):
    name = "vanilla"

    def __init__(self) -> None:
        self._empty = DraftTree.empty()

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        return self._empty

    def max_draft_length(self) -> int:
        return 0
