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

import argparse
import functools
from pathlib import Path
from typing import Any, Optional

import torch

from methods.core.acceptance import accept_typical
from methods.core.drafter import DraftSession, Drafter, StepResult, resolve_options
from methods.core.hidden_states import HiddenStateRequest
from methods.core.model_loading import EMBEDDED, EMBEDDED_MODEL_ID
from methods.core.static_tree import MC_SIM_7B_63, StaticTree, parse_choices
from methods.core.tree import DraftTree
from methods.heads.artifact import ArtifactError
from methods.heads.medusa import MedusaHeads, load_medusa

REPO_ROOT = Path(__file__).resolve().parents[2]
# The heads trained for the embedded model (training/train_drafter.py), used by default on it.
EMBEDDED_HEADS = REPO_ROOT / "data" / "drafters" / EMBEDDED_MODEL_ID / "medusa"

# CPU tree for the embedded model, chosen offline from held-out acceptance of the shipped heads
# divided by the measured cost of a verify forward (training/size_medusa_tree.py; docs/methods.md).
CPU_CHOICES = [[0]]

NAMED_CHOICES = {"mc_sim_7b_63": MC_SIM_7B_63, "cpu": CPU_CHOICES}
GPU_DEFAULTS = {"choices": "mc_sim_7b_63"}
CPU_DEFAULTS = {"choices": "cpu"}


def choices_from_option(value: str) -> list[list[int]]:
    if value in NAMED_CHOICES:
        return NAMED_CHOICES[value]
    return parse_choices(value)


class MedusaDrafter(Drafter):
    name = "medusa"
    hidden_state_request = HiddenStateRequest(final=True)

    def __init__(self, heads: MedusaHeads, choices: list[list[int]] = MC_SIM_7B_63, choices_name: str = "custom",
                 typical: bool = False, posterior_threshold: float = 0.09, posterior_alpha: float = 0.3) -> None:
        tree = StaticTree(choices)
        if tree.max_depth > heads.num_heads:
            tree = tree.truncated(heads.num_heads)  # a depth needs its head
        self.heads, self.tree, self.choices_name = heads, tree, choices_name
        self.typical, self.posterior_threshold, self.posterior_alpha = typical, posterior_threshold, posterior_alpha
        self.lossy = typical
        if typical:
            self.sampling_acceptance = functools.partial(
                accept_typical, posterior_threshold=posterior_threshold, posterior_alpha=posterior_alpha)
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
        last_row = step.accepted_nodes[-1] + 1 if step.accepted_nodes else 0
        self._feature = step.features.final[last_row]

    def end(self) -> None:
        self._feature = None

    def params(self) -> dict[str, Any]:
        source = Path(getattr(self.heads, "source", "in memory"))
        if source.is_absolute() and source.is_relative_to(REPO_ROOT):
            source = source.relative_to(REPO_ROOT)  # the shipped heads: the same name on every machine
        return {"heads": str(source), "num_heads": self.heads.num_heads,
                "choices": self.choices_name, "tree_nodes": len(self.tree),
                "tree_nodes_per_depth": self.tree.nodes_per_depth(), "typical": self.typical,
                **({"posterior_threshold": self.posterior_threshold, "posterior_alpha": self.posterior_alpha}
                   if self.typical else {})}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--medusa-path", default=None,
                           help="Medusa heads: a folder trained by training/train_drafter.py or a published "
                                "FasterDecoding one (config.json + medusa_lm_head.pt/.safetensors); default: "
                                "the heads shipped for the embedded model")
        group.add_argument("--medusa-choices", default=None,
                           help="candidate tree: 'mc_sim_7b_63' (the published 63-node tree, GPU default), "
                                f"'cpu' ({len(CPU_CHOICES)} nodes, CPU default, sized for the embedded model) or a literal "
                                "list of rank paths such as '[[0], [0, 0], [1]]'")
        group.add_argument("--medusa-typical", action=argparse.BooleanOptionalAction, default=False,
                           help="Medusa's typical acceptance at temperature > 0 instead of lossless "
                                "rejection sampling; LOSSY, the run is recorded as lossy")
        group.add_argument("--medusa-posterior-threshold", type=float, default=0.09,
                           help="typical acceptance: epsilon, the hard probability threshold")
        group.add_argument("--medusa-posterior-alpha", type=float, default=0.3,
                           help="typical acceptance: delta, the entropy-scaled threshold factor")

    @classmethod
    def check_args(cls, args) -> None:
        path = getattr(args, "medusa_path", None)
        if path is not None and not Path(path).is_dir():
            raise ValueError(f"--medusa-path {path}: no such folder (a trained or published Medusa "
                             f"folder with config.json and the head weights)")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "MedusaDrafter":
        path = getattr(args, "medusa_path", None)
        if path is None:
            if getattr(args, "model_path", EMBEDDED) not in (EMBEDDED, "", None):
                raise ArtifactError(
                    f"--method medusa on {args.model_path}: give its heads with --medusa-path (a trained "
                    f"or published Medusa folder); shipped heads exist only for the embedded model")
            path = EMBEDDED_HEADS
        name = resolve_options(args, "medusa", model, CPU_DEFAULTS, GPU_DEFAULTS)["choices"]
        return cls(load_medusa(path, model), choices=choices_from_option(name),
                   choices_name=name if name in NAMED_CHOICES else "custom",
                   typical=bool(getattr(args, "medusa_typical", False)),
                   posterior_threshold=getattr(args, "medusa_posterior_threshold", 0.09),
                   posterior_alpha=getattr(args, "medusa_posterior_alpha", 0.3))
