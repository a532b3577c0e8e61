"""Token Recycling (Luo et al., 2024): recycle the candidate tokens every verification throws away.

State: an adjacency matrix ``M[vocab, k]``; row t holds the k tokens the target ranked highest
after t the last time t went through a verification forward. The matrix lives on the drafter
instance, which the runner keeps for the whole run: it carries over between turns and questions
("hot start", as in the paper and Spec-Bench); ``cold_start`` resets it at every turn instead.

Drafting fills a static, imbalanced tree template breadth-first: a template node is a path of
ranks (r1, r2, ...), "the r2-th successor of the r1-th successor of the root", so its token is
``M[token of its parent, its rank]``. Verification updates the matrix from the logits of EVERY
node the forward computed (the root, accepted and rejected nodes alike): ``M[token_i] =
top-k(logits_i)``.

Template: the paper's and Spec-Bench's trees are hand-tuned tables ("2.2.2": 80 nodes, depth 6).
Ours are generated: assuming the rank-r successor is right with probability ``RANK_ACCEPT[r]``,
independently along a path, a node is worth the product of its ranks' probabilities, and the
template keeps the ``nodes`` most valuable nodes up to ``depth`` (best-first expansion). A node
is worth less than its parent, so the set is a tree; low ranks get more children and deeper
subtrees, the imbalanced shape the paper argues for.

Choices of ours (documented in docs/methods.md):
- a row never written yet has no candidates (Spec-Bench's zero-initialised rows propose token 0
  k times): nodes whose parent's row is unknown are left out, so a cold matrix costs a smaller
  forward instead of verifying garbage;
- when one token occurs at several nodes of a tree, the row is written from the accepted path if
  the token is on it (that is the context the text continues from), else from the last node.
"""

from __future__ import annotations

import argparse
import heapq
from typing import Any, Optional

import numpy as np
import torch

from methods.core.drafter import DraftSession, Drafter, StepResult, check_options, resolve_options
from methods.core.tree import DraftTree

# How often the root's rank-r successor was the committed token, measured on the embedded model
# (training/sweep_drafter.py --method recycling, greedy, hot matrix; ranks 5-7 rounded up from
# 0.006 / 0 / 0.005 so that every rank keeps some value). Only the ratios shape the template.
RANK_ACCEPT = (0.36, 0.07, 0.055, 0.03, 0.015, 0.01, 0.007, 0.005)

# Spec-Bench: k 8, tree of 80 nodes, depth 6. On a 2-core CPU a forward over 81 tokens costs
# ~4x a 1-token forward; the CPU default is a small tree, re-measured on the lean backend (the CPU
# default since): 3-4 nodes 1.06x, 12 nodes 0.93x (see docs/methods.md).
GPU_DEFAULTS = {"topk": 8, "tree_nodes": 80, "tree_depth": 6}
CPU_DEFAULTS = {"topk": 8, "tree_nodes": 4, "tree_depth": 3}
MINIMUM = {"topk": 1, "tree_nodes": 1, "tree_depth": 1}


def tree_template(nodes: int, depth: int, topk: int,
                  rank_accept: tuple[float, ...] = RANK_ACCEPT) -> list[tuple[int, ...]]:
    """The ``nodes`` most valuable rank paths of length <= ``depth`` (best first; parents first)."""
    probs = [rank_accept[min(r, len(rank_accept) - 1)] for r in range(topk)]
    heap = [(-probs[r], (r,)) for r in range(topk)]
    heapq.heapify(heap)
    template: list[tuple[int, ...]] = []
    while heap and len(template) < nodes:
        neg_value, path = heapq.heappop(heap)
        template.append(path)
        if len(path) < depth:
            for r in range(topk):
                heapq.heappush(heap, (neg_value * probs[r], path + (r,)))
    return template


class TokenRecyclingDrafter(Drafter):
    name = "recycling"

    def __init__(self, topk: int = 8, tree_nodes: int = 80, tree_depth: int = 6, cold_start: bool = False) -> None:
        if topk < 1 or tree_nodes < 1 or tree_depth < 1:
            raise ValueError("recycling needs --recycling-topk, --recycling-tree-nodes and --recycling-tree-depth >= 1")
        self.topk, self.tree_nodes, self.tree_depth, self.cold_start = topk, tree_nodes, tree_depth, cold_start
        template = tree_template(tree_nodes, tree_depth, topk)
        # Breadth-first order (by depth), so one gather per depth fills the tree.
        template.sort(key=len)
        index = {path: i for i, path in enumerate(template)}
        self.parents = np.array([index.get(p[:-1], -1) for p in template], dtype=np.int64)
        self.ranks = np.array([p[-1] for p in template], dtype=np.int64)
        self.depths = np.array([len(p) for p in template], dtype=np.int64)
        self.matrix: Optional[np.ndarray] = None  # int64 [vocab, topk]
        self.known: Optional[np.ndarray] = None  # bool [vocab]: row written at least once
        self._tree: Optional[DraftTree] = None

    def reset(self, vocab_size: int) -> None:
        self.matrix = np.zeros((vocab_size, self.topk), dtype=np.int64)
        self.known = np.zeros(vocab_size, dtype=bool)

    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        if self.matrix is None or self.cold_start or self.matrix.shape[0] != session.vocab_size:
            self.reset(session.vocab_size)

    # ------------------------------------------------------------------ drafting
    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        n = len(self.ranks)
        tokens = np.zeros(n, dtype=np.int64)
        kept = np.zeros(n, dtype=bool)
        root = context[-1]
        for d in range(1, min(self.tree_depth, max_depth) + 1):
            at = np.flatnonzero(self.depths == d)
            parent = self.parents[at]
            parent_token = np.where(parent < 0, root, tokens[parent.clip(min=0)])
            # A node exists only if its parent does and the parent's row has been learned.
            ok = ((parent < 0) | kept[parent.clip(min=0)]) & self.known[parent_token]
            tokens[at] = self.matrix[parent_token, self.ranks[at]]
            kept[at] = ok
        if not kept.any():
            self._tree = DraftTree.empty()
        else:
            self._tree = DraftTree(torch.from_numpy(tokens), torch.from_numpy(self.parents)).prune(torch.from_numpy(kept))
        return self._tree

    # ------------------------------------------------------------------ learning from the step
    def accept(self, step: StepResult) -> None:
        tree = step.tree
        root = step.context[len(step.context) - len(step.committed) - 1]
        block = [root] + tree.tokens.tolist()  # token of logits row i
        top = step.logits.topk(self.topk, dim=-1).indices.cpu().numpy()
        # Later writes win: every row in node order, then the accepted path (root first) again.
        # numpy gives no order guarantee for repeated indices, so keep each token's last row.
        order = np.array(list(range(len(block))) + step.path_rows, dtype=np.int64)
        tokens = np.array(block, dtype=np.int64)[order]
        unique, last_from_end = np.unique(tokens[::-1], return_index=True)
        rows = order[len(order) - 1 - last_from_end]
        self.matrix[unique] = top[rows]
        self.known[unique] = True

    def max_draft_length(self) -> int:
        return int(self.depths.max())

    def max_draft_tokens(self) -> int:
        return len(self.ranks)

    def params(self) -> dict[str, Any]:
        return {"topk": self.topk, "tree_nodes": self.tree_nodes, "tree_depth": self.tree_depth,
                "cold_start": self.cold_start}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--recycling-topk", type=int, default=None,
                           help=f"successors kept per token (default {GPU_DEFAULTS['topk']})")
        group.add_argument("--recycling-tree-nodes", type=int, default=None,
                           help=f"draft tree size (CPU default {CPU_DEFAULTS['tree_nodes']}, "
                                f"GPU {GPU_DEFAULTS['tree_nodes']} as Spec-Bench's template)")
        group.add_argument("--recycling-tree-depth", type=int, default=None,
                           help=f"draft tree depth (CPU default {CPU_DEFAULTS['tree_depth']}, "
                                f"GPU {GPU_DEFAULTS['tree_depth']})")
        group.add_argument("--recycling-cold-start", action=argparse.BooleanOptionalAction, default=False,
                           help="reset the adjacency matrix at every turn (default: keep it for the "
                                "whole run, the paper's hot start)")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "recycling", MINIMUM)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "TokenRecyclingDrafter":
        options = resolve_options(args, "recycling", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        return cls(**options, cold_start=bool(getattr(args, "recycling_cold_start", False)))
