"""Static draft trees given as Medusa-style "choices" lists (Medusa, Hydra, EAGLE-1).

A choices list is a list of rank paths, one per non-root node: ``[a]`` is the rank-``a`` child of
the root, ``[a, b]`` the rank-``b`` child of ``[a]``, and so on; the list must hold every prefix of
every path. What a rank means is the method's business (Medusa: the rank-r token of head d-1;
Hydra and EAGLE-1: the rank-r token of the draft distribution at the parent). This module only
turns the list into a fixed tree layout and fills it with tokens.

Nodes are ordered as the published implementations order them, by (depth, path), so node i of
our tree is node i + 1 of theirs (their node 0 is the root).
"""

from __future__ import annotations

import ast
from typing import Sequence

import numpy as np
import torch

from methods.core.tree import DraftTree

# The Medusa/Hydra default tree for Vicuna-7B: FasterDecoding/Medusa, medusa/model/medusa_choices.py
# (also Spec-Bench's model/medusa/medusa_choices.py). 63 nodes: 10 / 28 / 23 / 2 per depth.
# Not to be confused with EAGLE-1's 25-node tree of the same name.
MC_SIM_7B_63 = [
    [0], [0, 0], [1], [0, 1], [2], [0, 0, 0], [1, 0], [0, 2], [3], [0, 3], [4], [0, 4], [2, 0],
    [0, 5], [0, 0, 1], [5], [0, 6], [6], [0, 7], [0, 1, 0], [1, 1], [7], [0, 8], [0, 0, 2], [3, 0],
    [0, 9], [8], [9], [1, 0, 0], [0, 2, 0], [1, 2], [0, 0, 3], [4, 0], [2, 1], [0, 0, 4], [0, 0, 5],
    [0, 0, 0, 0], [0, 1, 1], [0, 0, 6], [0, 3, 0], [5, 0], [1, 3], [0, 0, 7], [0, 0, 8], [0, 0, 9],
    [6, 0], [0, 4, 0], [1, 4], [7, 0], [0, 1, 2], [2, 0, 0], [3, 1], [2, 2], [8, 0], [0, 5, 0],
    [1, 5], [1, 0, 1], [0, 2, 1], [9, 0], [0, 6, 0], [0, 0, 0, 1], [1, 6], [0, 7, 0],
]


# EAGLE-1's default tree for Vicuna-7B (SafeAILab/EAGLE and Spec-Bench model/eagle/choices.py):
# the same name as Medusa's, a different tree. 25 nodes: 4 / 8 / 8 / 3 / 2 per depth.
EAGLE_MC_SIM_7B_63 = [
    [0], [1], [2], [3], [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [2, 1], [3, 0], [0, 0, 0],
    [0, 0, 1], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 2, 0], [0, 2, 1], [1, 0, 0], [0, 0, 0, 0],
    [0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1],
]

class ChoicesError(ValueError):
    pass


def parse_choices(text: str) -> list[list[int]]:
    """A choices list from the command line: a Python/JSON literal such as ``[[0], [0, 0], [1]]``."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ChoicesError(f"cannot read the choices list {text[:60]!r}: {exc}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, (list, tuple)) for p in value):
        raise ChoicesError(f"a choices list is a list of rank paths such as [[0], [0, 0], [1]]; got {text[:60]!r}")
    return [list(p) for p in value]


class StaticTree:
    """The fixed layout of a choices tree: per node its parent, rank and depth (1-based)."""

    def __init__(self, choices: Sequence[Sequence[int]]):
        paths = [tuple(int(r) for r in p) for p in choices]
        if not paths:
            raise ChoicesError("a choices list needs at least one path")
        for p in paths:
            if not p or min(p) < 0:
                raise ChoicesError(f"choices path {list(p)}: paths are non-empty lists of ranks >= 0")
        if len(set(paths)) != len(paths):
            raise ChoicesError("a choices list holds a path twice")
        known = set(paths)
        for p in paths:
            if len(p) > 1 and p[:-1] not in known:
                raise ChoicesError(f"choices path {list(p)} has no parent {list(p[:-1])} in the list")
        self.paths = sorted(paths, key=lambda p: (len(p), p))
        index = {p: i for i, p in enumerate(self.paths)}
        self.parents = np.array([index[p[:-1]] if len(p) > 1 else -1 for p in self.paths], dtype=np.int64)
        self.ranks = np.array([p[-1] for p in self.paths], dtype=np.int64)
        self.depths = np.array([len(p) for p in self.paths], dtype=np.int64)
        self.max_depth = int(self.depths.max())
        self.topk = int(self.ranks.max()) + 1  # candidates needed per expansion

    def __len__(self) -> int:
        return len(self.paths)

    def nodes_per_depth(self) -> list[int]:
        return [int((self.depths == d).sum()) for d in range(1, self.max_depth + 1)]

    def truncated(self, depth: int) -> "StaticTree":
        """The same tree without the nodes deeper than ``depth``."""
        return StaticTree([p for p in self.paths if len(p) <= depth])

    def fill_by_depth(self, top_tokens: torch.Tensor) -> DraftTree:
        """Medusa's filling: node ``[..., r]`` at depth d gets ``top_tokens[d - 1, r]``.

        ``top_tokens`` is [heads, k] (head d-1's k best tokens, best first); nodes deeper than the
        number of heads are left out.
        """
        heads, k = top_tokens.shape
        if k < self.topk:
            raise ValueError(f"the tree uses rank {self.topk - 1}; only {k} candidates per head were given")
        depths = torch.from_numpy(self.depths)
        tokens = top_tokens[(depths - 1).clamp(max=heads - 1), torch.from_numpy(self.ranks)]
        tree = DraftTree(tokens, torch.from_numpy(self.parents))
        if self.max_depth > heads:
            tree = tree.prune(depths <= heads)
        return tree


def best_first_choices(path_value: dict[tuple[int, ...], float], nodes: int) -> list[list[int]]:
    """The ``nodes`` most valuable rank paths, closed under prefixes.

    ``path_value`` maps a path to how often it would be accepted (e.g. measured on held-out text);
    a path is never worth more than its prefix, so taking the best ones in order gives the tree of
    that size with the largest expected accepted length. Ties and noise that would break prefix
    closure are handled by only admitting a path once its parent is in.
    """
    children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for p in path_value:
        children.setdefault(p[:-1], []).append(p)
    chosen: list[tuple[int, ...]] = []
    frontier = {p: path_value[p] for p in children.get((), [])}
    while frontier and len(chosen) < nodes:
        # Most valuable first; on ties the shallower, then the lower ranks.
        best = max(frontier, key=lambda p: (frontier[p], -len(p), [-r for r in p]))
        del frontier[best]
        chosen.append(best)
        frontier.update({p: path_value[p] for p in children.get(best, [])})
    return [list(p) for p in chosen]
