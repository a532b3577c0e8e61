"""EAGLE-2 (Li et al., 2024b): the EAGLE draft grows a dynamic tree from its own confidence.

Same draft and pair cache as EAGLE-1 (methods/drafters/eagle.py). The tree is built by beam-like
expansion scored by the draft's cumulative log-probability along each path:

    depth 1: the top_k tokens of the draft at the root, score = log q
    repeat ``depth`` times:
        run the draft once on the beam (the top_k best nodes of the last depth)
        each beam node gets its top_k children, score = parent's score + log q(child)
        the new beam = the top_k best of those top_k² children
    keep the ``total_token - 1`` best-scoring nodes of everything drafted (a child never scores
    above its parent, so the kept set is a tree), in the order they were drafted

and the engine verifies it. Drafts are deterministic top-k even at temperature > 0, as published;
with q one-hot the engine's multi-candidate rejection sampling is lossless.
"""

from __future__ import annotations

from typing import Any

import torch

from methods.core.drafter import check_options, resolve_options
from methods.core.tree import DraftTree
from methods.drafters.eagle import EagleFamilyDrafter, check_eagle_path, load_draft_for
from methods.drafters.trained import recorded_source
from methods.heads.eagle import EagleDraftModel

# Spec-Bench's evaluation/inference_eagle2.py (the published code's own default depth is 7).
GPU_DEFAULTS = {"total_token": 60, "depth": 5, "top_k": 10}
# Sized by measurement for the embedded model on a 2-core CPU, lean backend (training/sweep_drafter.py;
# docs/methods.md): 4 tokens per step (root + 3), the best 3 of a depth-2 candidate pool. With the
# native layer a 4-token forward costs what a 3-token one does, and this tree was the fastest
# (1.17x against 1.15x for 3 tokens; 6 tokens and more were slower).
CPU_DEFAULTS = {"total_token": 4, "depth": 1, "top_k": 2}
MINIMUM = {"total_token": 1, "depth": 0, "top_k": 1}


def add_tree_options(group, prefix: str, cpu: dict, gpu: dict, note: str = "") -> None:
    """--PREFIX-total-token, --PREFIX-depth, --PREFIX-top-k: the dynamic tree's size (EAGLE-2, EAGLE-3)."""
    group.add_argument(f"--{prefix}-total-token", type=int, default=None,
                       help=f"tokens verified per step, the root included (GPU default {gpu['total_token']}, "
                            f"CPU default {cpu['total_token']})")
    group.add_argument(f"--{prefix}-depth", type=int, default=None,
                       help=f"expansion rounds after the first level; the tree is at most depth + 1 deep "
                            f"(GPU {gpu['depth']}, CPU {cpu['depth']})")
    group.add_argument(f"--{prefix}-top-k", type=int, default=None,
                       help=f"children per expanded node and nodes expanded per round (GPU {gpu['top_k']}, "
                            f"CPU {cpu['top_k']}){note}")


class Eagle2Drafter(EagleFamilyDrafter):
    name = "eagle2"

    def __init__(self, draft: EagleDraftModel, total_token: int = 60, depth: int = 5, top_k: int = 10):
        super().__init__(draft)
        self.total_token, self.depth, self.top_k = total_token, depth, top_k

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        nodes_wanted = self.total_token - 1  # the root is verified too
        if max_depth < 1 or nodes_wanted < 1 or not self.tracker.catch_up():
            return DraftTree.empty()
        draft = self.draft

        def log_q(outputs: torch.Tensor) -> torch.Tensor:
            # Clamped at 0 so that rounding can never make a child outscore its parent.
            return torch.log_softmax(draft.draft_logits(outputs).float(), dim=-1).clamp(max=0.0)

        lp = log_q(self.tracker.last_output[None])[0]
        k = min(self.top_k, lp.shape[-1])
        top = lp.topk(k)
        tokens = [draft.to_token_ids(top.indices)]
        parents = [torch.full((k,), -1, dtype=torch.long)]
        scores = [top.values]
        beam = torch.arange(k)  # node ids of the nodes to run next
        beam_parent_out = self.tracker.last_output.expand(k, -1)
        beam_parent_entry = [-1] * k
        expansion = self._expansion()
        count = k
        all_tokens = tokens[0]
        all_scores = scores[0]
        for step in range(1, min(self.depth, max_depth - 1) + 1):
            first_entry = len(expansion)
            outs = expansion.run(beam_parent_out, beam_parent_entry, all_tokens[beam], step)
            lp = log_q(outs)
            top = lp.topk(k, dim=-1)
            child_scores = (all_scores[beam][:, None] + top.values).reshape(-1)
            child_tokens = draft.to_token_ids(top.indices).reshape(-1)
            child_parents = beam.repeat_interleave(k)
            tokens.append(child_tokens)
            parents.append(child_parents)
            scores.append(child_scores)
            all_tokens = torch.cat([all_tokens, child_tokens])
            all_scores = torch.cat([all_scores, child_scores])
            best = child_scores.topk(min(k, len(child_scores))).indices
            beam = count + best
            beam_parent_out = outs[best // k]
            beam_parent_entry = (first_entry + best // k).tolist()
            count += len(child_scores)
        # The tree is built on the CPU like every drafter's (the scores may live on a GPU).
        all_parents = torch.cat([p.cpu() for p in parents])
        # Best scores first; a stable sort puts a parent before a child that ties it.
        order = torch.sort(-all_scores.cpu(), stable=True).indices
        keep = torch.zeros(count, dtype=torch.bool)
        keep[order[:nodes_wanted]] = True
        return DraftTree(all_tokens.cpu(), all_parents).prune(keep)

    def max_draft_length(self) -> int:
        # The first level, then ``depth`` expansion rounds: depth + 1 deep, unless the tree has
        # fewer nodes than that (total_token counts the root).
        return min(self.depth + 1, self.max_draft_tokens())

    def max_draft_tokens(self) -> int:
        return self.total_token - 1

    def params(self) -> dict[str, Any]:
        return {"draft": recorded_source(self.draft), "total_token": self.total_token, "depth": self.depth,
                "top_k": self.top_k,
                "draft_vocab": None if self.draft.draft_vocab is None else int(len(self.draft.draft_vocab))}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        # --eagle-path is eagle's option and serves both methods (the published weights are shared).
        add_tree_options(group, "eagle2", CPU_DEFAULTS, GPU_DEFAULTS, "; the draft path is --eagle-path")

    @classmethod
    def check_args(cls, args) -> None:
        check_eagle_path(args, "eagle2")
        check_options(args, "eagle2", MINIMUM)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "Eagle2Drafter":
        options = resolve_options(args, "eagle2", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        return cls(load_draft_for(args, model, "eagle2"), **options)
