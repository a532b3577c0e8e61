"""Medusa-1 (Cai et al., 2024): extra heads on the frozen target guess several tokens ahead.

Each step starts from the feature f_j of the last accepted position j (the target's final
normed hidden state there, which the engine hands over). The target's own logits at j gave the
root token; head k's top-10 at f_j guess the token at depth k + 1. A static tree from a "choices"
list (methods/core/static_tree.py) combines them: node ``[..., r]`` at depth d gets head d-1's
rank-r token, whatever its parent. The engine verifies the tree in one forward: exact argmax
matching at T = 0, lossless rejection sampling at T > 0, or Medusa's typical acceptance when
``--medusa-typical`` asks for it (lossy: the run is recorded as such).

Heads are computed at the last accepted position only (Spec-Bench computes them at every tree
node and keeps one; the result is the same).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from methods.core.drafter import DraftSession, Drafter, StepResult
from methods.core.hidden_states import HiddenStateRequest
from methods.core.static_tree import MC_SIM_7B_63, StaticTree
from methods.core.tree import DraftTree
from methods.drafters.trained import (SHIPPED, ChoicesOption, TypicalAcceptance, add_typical_arguments, artifact_folder,
                                      check_folder_option, check_typical_options, recorded_source, typical_options)
from methods.heads.medusa import MedusaHeads, load_medusa

# The heads trained for the embedded model (training/train_drafter.py), used by default on it.
EMBEDDED_HEADS = SHIPPED / "medusa"

# CPU tree for the embedded model, chosen by measurement (training/sweep_drafter.py on the lean
# backend, docs/methods.md): head 0's best two guesses and head 1's best after the first. With the
# native layer 4 tokens in a forward cost about what 2 do; this tree was the fastest of five
# (1.14x against 1.10x for [[0]]).
CPU_CHOICES = [[0], [1], [0, 0]]

CHOICES = ChoicesOption("medusa", "mc_sim_7b_63", MC_SIM_7B_63, CPU_CHOICES, "the published 63-node tree")


class MedusaDrafter(TypicalAcceptance, Drafter):
    name = "medusa"
    hidden_state_request = HiddenStateRequest(final=True)

    def __init__(self, heads: MedusaHeads, choices: list[list[int]] = MC_SIM_7B_63, choices_name: str = "custom",
                 typical: bool = False, posterior_threshold: float = 0.09, posterior_alpha: float = 0.3) -> None:
        tree = StaticTree(choices)
        if tree.max_depth > heads.num_heads:
            tree = tree.truncated(heads.num_heads)  # a depth needs its head
        self.heads, self.tree, self.choices_name = heads, tree, choices_name
        self.set_typical(typical, posterior_threshold, posterior_alpha)
        self._feature: Optional[torch.Tensor] = None
        self._bound_to = None

    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        if self._bound_to is not session.model:
            self.heads.bind(session.model)
            self._bound_to = session.model
        states = session.prompt_features
        # The root (prompt[-1]) came after the last prefilled position: its feature starts us off.
        # A one-token prompt has none; the first step is then a plain one.
        self._feature = None if states is None else states.final[-1]

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        if self._feature is None or max_depth < 1:
            return DraftTree.empty()
        top = self.heads.top_tokens(self._feature, self.tree.topk)
        return self.tree.fill_by_depth(top)

    def accept(self, step: StepResult) -> None:
        self._feature = step.features.final[step.path_rows[-1]]

    def end(self) -> None:
        self._feature = None

    def max_draft_length(self) -> int:
        return self.tree.max_depth

    def max_draft_tokens(self) -> int:
        return len(self.tree)

    def params(self) -> dict[str, Any]:
        return {"heads": recorded_source(self.heads), "num_heads": self.heads.num_heads,
                "choices": self.choices_name, "tree_nodes": len(self.tree),
                "tree_nodes_per_depth": self.tree.nodes_per_depth(), **self.typical_params()}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--medusa-path", default=None,
                           help="Medusa heads: a folder trained by training/train_drafter.py or a published "
                                "FasterDecoding one (config.json + medusa_lm_head.pt/.safetensors); default: "
                                "the heads shipped for the embedded model")
        CHOICES.add_argument(group)
        add_typical_arguments(group, "medusa")

    @classmethod
    def check_args(cls, args) -> None:
        check_folder_option(args, "--medusa-path", "a trained or published Medusa folder with config.json and "
                                                   "the head weights")
        CHOICES.check(args)
        check_typical_options(args, "medusa")
        if getattr(args, "medusa_path", None) is None:  # the shipped heads: embedded model only
            artifact_folder(args, "medusa", "medusa", "--medusa-path", shipped=EMBEDDED_HEADS)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "MedusaDrafter":
        path = artifact_folder(args, "medusa", "medusa", "--medusa-path", shipped=EMBEDDED_HEADS)
        choices, name = CHOICES.resolve(args, model)
        return cls(load_medusa(path, model), choices=choices, choices_name=name, **typical_options(args, "medusa"))
