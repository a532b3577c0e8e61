"""SPACE (Yi et al., 2024): the target drafts for itself through mask positions in the same forward.

Each step verifies last step's guesses and makes the next ones in ONE target forward:

    [root] [c_0 -> c_1 -> ... -> c_{C-1}]     candidates: a chain under the root
           [G_0] [G_1] ... [G_{g-1}]          mask groups: auxiliary nodes, never accepted or cached

Group G_0 hangs under the root and G_i under candidate c_{i-1} (its *anchor*): k masks in a chain,
so mask j of a group sits at the anchor's position + 1 + j and sees the cached prefix, the anchor's
path and the masks before it in its own group, never another group's masks. No real token sees a
mask (a candidate's ancestors are all real tokens), so the candidates' logits are the target's own
and verification is exact. This is SPACE's attention pattern and position layout.

A mask stands in for an unknown token, and its logits guess the token after it. If the anchor is
the last token accepted, the target's bonus token takes the anchor's position + 1, so mask j
guesses the token j + 1 places after the bonus: the argmax at the k masks of the group after the
last accepted token are the next step's candidates (the semi-autoregressive, auto-correcting loop).
The first step of a turn has no candidates and runs G_0 only.

Not every group need be verified (``groups``, below k + 1): when more candidates are accepted than
groups ran, the guesses of the deepest group that ran are used from the slot that matches the new
position on (guessed from a shorter known prefix; fewer of them). Losslessness never depends on
this: only real candidates are accepted, by the engine.

Drafts are the argmax at the masks at every temperature (one-hot q), so the engine's rejection
sampling keeps the target's distribution exactly, temperature, top-k and top-p included. SPACE's
own sampling (accept if U <= p/pi on the untempered softmax, resample from p, not the residual) is
not lossless and is not used.

What enters the target at a mask (methods/heads/space.py): our learned mask embeddings on the
frozen target (the default on the embedded model, ``--space-path`` for another folder), or the
published fine-tuned checkpoint's own mask token (``--space-mask-id``, that checkpoint being the
target given as ``--model-path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from methods.core.drafter import DraftSession, Drafter, StepResult, check_options, resolve_options
from methods.core.model_loading import EMBEDDED
from methods.core.tree import DraftTree
from methods.drafters.trained import SHIPPED, artifact_folder, check_folder_option, recorded_source
from methods.heads.artifact import ArtifactError, read_config
from methods.heads.space import LearnedMasks, load_space, mask_token

# The masks trained for the embedded model (training/train_drafter.py --method space).
EMBEDDED_MASKS = SHIPPED / "space"

# The GPU defaults are the paper's and Spec-Bench's k = 5 with every group verified (36 tokens per
# forward). On a CPU every token of a forward costs time, and the shipped frozen-base masks get the
# second guess of a chain right too in only ~3% of held-out anchors, so one mask in two groups (4
# tokens per forward) is the CPU default: `training/sweep_drafter.py --method space` on the lean
# backend's native layer gave 1.16x (MAT 1.28 at 3.9 tokens per forward) against 1.15x for one
# group and 1.08x for k = 2 with 2 groups (docs/methods.md).
GPU_DEFAULTS = {"masks": 5, "groups": 6}
CPU_DEFAULTS = {"masks": 1, "groups": 2}
MINIMUM = {"masks": 1, "groups": 1}


class SpaceDrafter(Drafter):
    name = "space"

    def __init__(self, masks, mask_count: int = 5, groups: Optional[int] = None) -> None:
        """``masks``: LearnedMasks or MaskToken; ``mask_count``: k, masks per group (= candidates per
        step); ``groups``: at most this many groups are verified per step (None or more than
        k + 1: all of them)."""
        if mask_count < 1 or (groups is not None and groups < 1):
            raise ValueError("SPACE needs at least one mask per group and one group")
        if masks.slots is not None and mask_count > masks.slots:
            raise ValueError(f"--space-masks {mask_count}: the SPACE masks in use have {masks.slots} trained "
                             f"slots (one learned embedding per mask of a group)")
        self.masks, self.mask_count = masks, mask_count
        self.groups = mask_count + 1 if groups is None else min(groups, mask_count + 1)
        self._candidates: list[int] = []
        self._tree: Optional[DraftTree] = None
        self._group_nodes: list[list[int]] = []  # node indices of every verified group's masks

    # ------------------------------------------------------------------ per turn
    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        self._mask_tokens, vectors = self.masks.group(self.mask_count)
        self._mask_vectors = None if vectors is None else vectors.detach().to(session.device, session.dtype)
        self._candidates = []  # a turn starts with masks only: nothing to verify yet

    def end(self) -> None:
        self._candidates, self._tree, self._group_nodes = [], None, []

    # ------------------------------------------------------------------ drafting
    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        candidates = self._candidates[:max(max_depth, 0)]
        tokens = list(candidates)
        parents = list(range(-1, len(candidates) - 1))
        slots: list[int] = []  # the mask slot of every mask node, in node order
        self._group_nodes = []
        for g in range(min(self.groups, len(candidates) + 1)):
            # Group g's anchor is c_{g-1} (node g - 1; the root for g = 0) at depth g. Its mask j
            # (depth g + 1 + j) guesses a token that only a step with depth budget beyond
            # max_depth - 1 could still draft, so deeper masks are left out near the end of a turn.
            count = min(self.mask_count, max_depth - 1 - g)
            if count < 1:
                break
            nodes, parent = [], g - 1
            for j in range(count):
                nodes.append(len(tokens))
                tokens.append(self._mask_tokens[j])
                parents.append(parent)
                slots.append(j)
                parent = nodes[-1]
            self._group_nodes.append(nodes)
        if not tokens:
            self._tree = DraftTree.empty()
            return self._tree
        mask_nodes = list(range(len(candidates), len(tokens)))
        overrides = {}
        if self._mask_vectors is not None and mask_nodes:
            overrides = {"embedding_nodes": torch.tensor(mask_nodes, dtype=torch.long),
                         "embeddings": self._mask_vectors[slots]}
        self._tree = DraftTree(torch.tensor(tokens, dtype=torch.long), torch.tensor(parents, dtype=torch.long),
                               is_candidate=torch.arange(len(tokens)) < len(candidates), **overrides)
        return self._tree

    # ------------------------------------------------------------------ learning from the step
    def accept(self, step: StepResult) -> None:
        if step.tree is not self._tree or not self._group_nodes:
            # No group ran (end of a turn), or the engine changed the tree (a target that ignores
            # tree masks gets the best chain only): no guesses for the next step.
            self._candidates = []
            return
        accepted = len(step.accepted_nodes)
        group = min(accepted, len(self._group_nodes) - 1)
        # Mask j of group g guesses the token at anchor + 2 + j; the next candidates start at
        # c_{accepted-1} + 2 = anchor_g + (accepted - g) + 2, so from slot accepted - g on.
        nodes = self._group_nodes[group][accepted - group:]
        rows = torch.tensor(nodes, dtype=torch.long, device=step.logits.device) + 1  # [root, node 0, ...]
        self._candidates = step.logits[rows].argmax(dim=-1).tolist() if nodes else []

    def max_draft_length(self) -> int:
        return self.mask_count  # candidates: one per mask of last step's group

    def max_draft_tokens(self) -> int:
        return self.mask_count + self.mask_count * self.groups  # candidates and mask groups

    def params(self) -> dict[str, Any]:
        params = {**self.masks.params(), "masks": self.mask_count, "groups": self.groups,
                  "forward_tokens_max": 1 + self.mask_count + self.mask_count * self.groups}
        if isinstance(self.masks, LearnedMasks):
            params["weights"] = recorded_source(self.masks)
        return params

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--space-path", default=None,
                           help="learned SPACE mask embeddings for a frozen target: a folder trained by "
                                "training/train_drafter.py --method space; default: the masks shipped for the "
                                "embedded model")
        group.add_argument("--space-mask-id", type=int, default=None,
                           help="the published variant: the target (--model-path) is a fine-tuned SPACE "
                                "checkpoint whose vocabulary holds this mask token (32002 for "
                                "AntMan/vicuna-v1.3-7b-space); its answers are compared with its own vanilla "
                                "decoding, not with the model it was tuned from")
        group.add_argument("--space-masks", type=int, default=None,
                           help=f"k, masks per group = candidates drafted per step (CPU default "
                                f"{CPU_DEFAULTS['masks']}, GPU {GPU_DEFAULTS['masks']} as the paper)")
        group.add_argument("--space-groups", type=int, default=None,
                           help=f"mask groups verified per step: G_0 after the root, G_i after candidate i; at "
                                f"most k + 1 (CPU default {CPU_DEFAULTS['groups']}, GPU {GPU_DEFAULTS['groups']} "
                                f"= all of k + 1 as the paper)")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "space", MINIMUM)
        check_folder_option(args, "--space-path", "a folder with config.json and space_masks.safetensors")
        mask_id = getattr(args, "space_mask_id", None)
        if mask_id is not None:
            if getattr(args, "space_path", None) is not None:
                raise ValueError("--space-path and --space-mask-id exclude each other: learned masks on a frozen "
                                 "target, or the mask token of a fine-tuned SPACE target")
            if mask_id < 0:
                raise ValueError(f"--space-mask-id {mask_id}: must be at least 0")
            return
        folder = masks_folder(args)
        count = getattr(args, "space_masks", None)
        slots = read_config(folder).get("mask_slots") if (folder / "config.json").is_file() else None
        if count is not None and isinstance(slots, int) and count > slots:
            raise ValueError(f"--space-masks {count}: the masks in {folder} have {slots} trained slots (one "
                             f"learned embedding per mask of a group)")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "SpaceDrafter":
        options = resolve_options(args, "space", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        mask_id = getattr(args, "space_mask_id", None)
        masks = mask_token(model, mask_id) if mask_id is not None else load_space(masks_folder(args), model)
        count = options["masks"]
        if getattr(args, "space_masks", None) is None and masks.slots is not None:
            count = min(count, masks.slots)  # a default never asks for more masks than were trained
        return cls(masks, mask_count=count, groups=options["groups"])


def masks_folder(args) -> Path:
    """``--space-path``, else the masks shipped for the embedded model; on another model without
    either option, an error that names both ways to run SPACE there."""
    if getattr(args, "space_path", None) is None and getattr(args, "model_path", EMBEDDED) not in (EMBEDDED, "", None):
        raise ArtifactError(f"--method space on {args.model_path}: give --space-path (mask embeddings trained for "
                            f"this model with training/train_drafter.py --method space) or, when the model is a "
                            f"fine-tuned SPACE checkpoint, --space-mask-id (its mask token id)")
    return artifact_folder(args, "space", "space", "--space-path", shipped=EMBEDDED_MASKS)
