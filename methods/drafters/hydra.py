"""Hydra (Ankner et al., 2024): Medusa heads made sequentially dependent.

Each step starts from the context feature of the last accepted position t (the target's final
normed hidden state there, handed over by the engine; Hydra++'s prefix-mlp heads first run their
own decoder layer over the accepted features). The root is the token after t, context[-1]. A
static tree from a "choices" list (methods/core/static_tree.py) is filled level by level: the
token at node ``[..., r]`` of depth d is the rank-r token of head d-1 fed with
``[g_t, E(root), E(tokens on the path to the parent)]``, so, unlike Medusa, siblings' children
differ when their parents do. One batched head call per depth covers every node that has
children. The engine verifies the tree in one forward: exact argmax matching at T = 0, lossless
rejection sampling at T > 0, or typical acceptance when ``--hydra-typical`` asks for it (lossy: the
run is recorded as such). Ungrounded heads are filled as Medusa's are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from methods.core.drafter import DraftSession, Drafter, StepResult
from methods.core.hidden_states import HiddenStateRequest, HiddenStates
from methods.core.static_tree import MC_SIM_7B_63, StaticTree
from methods.core.tree import DraftTree
from methods.drafters.trained import (SHIPPED, ChoicesOption, TypicalAcceptance, add_typical_arguments, artifact_folder,
                                      check_folder_option, check_typical_options, recorded_source, typical_options)
from methods.heads.hydra import HydraHeads, PrefixCache, load_hydra

# The heads trained for the embedded model (training/train_drafter.py --method hydra), its default.
EMBEDDED_HEADS = SHIPPED / "hydra"

# CPU tree for the embedded model, chosen by measurement (training/sweep_drafter.py on the lean
# backend; docs/methods.md): the two best first guesses and a second token under the best. The
# one-node tree was as fast (1.14x against 1.12x, within noise) with a lower MAT (1.32 against 1.52).
CPU_CHOICES = [[0], [1], [0, 0]]

CHOICES = ChoicesOption("hydra", "mc_sim_7b_63", MC_SIM_7B_63, CPU_CHOICES, "the published 63-node Medusa/Hydra tree")


@dataclass
class Level:
    """One depth of the tree, filled by one call of head ``head``.

    The head's inputs are one row per node of the previous depth that has children (the root for
    depth 1); ``parent_rows[j]`` is the row of node ``nodes[j]``'s parent and ``ranks[j]`` its rank.
    ``expand`` lists (as positions in ``nodes``) the nodes that have children themselves, in the
    order of the next level's rows."""

    head: int
    nodes: torch.Tensor
    parent_rows: torch.Tensor
    ranks: torch.Tensor
    topk: int
    expand: torch.Tensor


def grounded_levels(tree: StaticTree) -> list[Level]:
    parents, ranks, depths = tree.parents.tolist(), tree.ranks.tolist(), tree.depths.tolist()
    with_children = set(parents)
    row_of = {-1: 0}  # node -> its row among the inputs of the next head call (-1: the root)
    levels = []
    for depth in range(1, tree.max_depth + 1):
        nodes = [i for i in range(len(tree)) if depths[i] == depth]
        expand = [j for j, i in enumerate(nodes) if i in with_children]
        levels.append(Level(head=depth - 1, nodes=torch.tensor(nodes),
                            parent_rows=torch.tensor([row_of[parents[i]] for i in nodes]),
                            ranks=torch.tensor([ranks[i] for i in nodes]),
                            topk=max(ranks[i] for i in nodes) + 1, expand=torch.tensor(expand, dtype=torch.long)))
        row_of = {nodes[j]: row for row, j in enumerate(expand)}
    return levels


class HydraDrafter(TypicalAcceptance, Drafter):
    name = "hydra"
    hidden_state_request = HiddenStateRequest(final=True)

    def __init__(self, heads: HydraHeads, choices: list[list[int]] = MC_SIM_7B_63, choices_name: str = "custom",
                 typical: bool = False, posterior_threshold: float = 0.09, posterior_alpha: float = 0.3) -> None:
        tree = StaticTree(choices)
        if tree.max_depth > heads.num_heads:
            tree = tree.truncated(heads.num_heads)  # a depth needs its head
        available = heads.candidate_count()
        if 0 < available < tree.topk:
            raise ValueError(f"the tree uses rank {tree.topk - 1}, but the heads choose among {available} tokens only")
        self.heads, self.tree, self.choices_name = heads, tree, choices_name
        self.levels = grounded_levels(tree)
        self.parents = torch.from_numpy(tree.parents)
        # What the heads read: the final normed feature, or with hidden_state_offset k > 0 the
        # hidden state k layers before the end (the input of layer L - k).
        self.feature_layer = heads.feature_layer
        if self.feature_layer is not None:
            self.hidden_state_request = HiddenStateRequest(layer_inputs=(self.feature_layer,))
        self.set_typical(typical, posterior_threshold, posterior_alpha)
        self._context: Optional[torch.Tensor] = None  # g_t of the last accepted position
        self._prefix_cache: Optional[PrefixCache] = None
        self._bound_to = None

    def _features(self, states: HiddenStates) -> torch.Tensor:
        return states.final if self.feature_layer is None else states.layer_inputs[self.feature_layer]

    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        if self._bound_to is not session.model:
            self.heads.bind(session.model)
            self._bound_to = session.model
            device = next(self.heads.parameters()).device  # index where the heads compute
            self.levels = [Level(lv.head, *(t.to(device) for t in (lv.nodes, lv.parent_rows, lv.ranks)), lv.topk,
                                 lv.expand.to(device)) for lv in self.levels]
        self._prefix_cache = self.heads.prefix.new_cache() if self.heads.prefix is not None else None
        states = session.prompt_features
        # The root (prompt[-1]) came after the last prefilled position: its feature starts us off.
        # A one-token prompt has none; the first step is then a plain one.
        self._context = None if states is None else self.heads.context(self._features(states), self._prefix_cache)

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        if self._context is None or max_depth < 1:
            return DraftTree.empty()
        depth = min(max_depth, self.tree.max_depth)
        if not self.heads.grounded:  # Medusa's filling: whatever the parent
            top = torch.stack([self.heads.top_tokens(i, self._context, self.tree.topk) for i in range(depth)])
            return self.tree.fill_by_depth(top)
        heads = self.heads
        root = torch.tensor([context[-1]], device=self._context.device)
        inputs = torch.cat([self._context, heads.embed(root)[0]])[None]  # [1, 2H]: g_t, E(root)
        tokens = torch.zeros(len(self.tree), dtype=torch.long, device=self._context.device)
        for level in self.levels[:depth]:
            top = heads.top_tokens(level.head, inputs, level.topk)  # [rows, topk]
            chosen = top[level.parent_rows, level.ranks]
            tokens[level.nodes] = chosen
            if len(level.expand):  # the inputs of the next head: the parent's, plus this token
                inputs = torch.cat([inputs[level.parent_rows[level.expand]], heads.embed(chosen[level.expand])], dim=-1)
        tree = DraftTree(tokens, self.parents)
        if depth < self.tree.max_depth:
            tree = tree.prune(torch.from_numpy(self.tree.depths) <= depth)
        return tree

    def accept(self, step: StepResult) -> None:
        # The accepted path's rows (root first); prefix-mlp's layer reads them all, mlp the last.
        self._context = self.heads.context(self._features(step.features)[step.path_rows], self._prefix_cache)

    def end(self) -> None:
        self._context = None
        self._prefix_cache = None

    def max_draft_length(self) -> int:
        return self.tree.max_depth

    def max_draft_tokens(self) -> int:
        return len(self.tree)

    def params(self) -> dict[str, Any]:
        return {"heads": recorded_source(self.heads), "num_heads": self.heads.num_heads,
                "num_layers": self.heads.num_layers, "arch": self.heads.arch, "grounded": self.heads.grounded,
                "choices": self.choices_name, "tree_nodes": len(self.tree),
                "tree_nodes_per_depth": self.tree.nodes_per_depth(), **self.typical_params()}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--hydra-path", default=None,
                           help="Hydra heads: a folder trained by training/train_drafter.py or a published one "
                                "(config.json + hydra_lm_head.pt/.safetensors, mlp or prefix-mlp heads); "
                                "default: the heads shipped for the embedded model")
        CHOICES.add_argument(group)
        add_typical_arguments(group, "hydra")

    @classmethod
    def check_args(cls, args) -> None:
        check_folder_option(args, "--hydra-path", "a trained or published Hydra folder with config.json and "
                                                  "the head weights")
        CHOICES.check(args)
        check_typical_options(args, "hydra")
        if getattr(args, "hydra_path", None) is None:
            cls.default_path(args)  # a missing shipped folder is refused before the model loads

    @staticmethod
    def default_path(args) -> Path:
        return artifact_folder(args, "hydra", "hydra", "--hydra-path", shipped=EMBEDDED_HEADS)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "HydraDrafter":
        path = cls.default_path(args)
        choices, name = CHOICES.resolve(args, model)
        return cls(load_hydra(path, model), choices=choices, choices_name=name, **typical_options(args, "hydra"))
