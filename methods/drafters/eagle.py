"""EAGLE-1 (Li et al., 2024): a one-layer draft over target features fills a static tree.

Each step the draft first catches up on the real pairs the last step produced (the features of
the root and the accepted nodes, each paired with the token that followed it); its output at the
newest pair stands for the root's feature. The root's children are the top-ranked tokens of
lm_head(that output). Then, depth by depth, every node that has children in the tree is run
through the draft as the pair (its parent's draft output, its own token), and its children are the
top-ranked tokens of its output. Node ``[..., r]`` of the choices tree gets the rank-r token at
its parent (EAGLE's 25-node ``mc_sim_7b_63`` on a GPU; a smaller tree sized by measurement on the
CPU). The engine verifies the tree in one forward.

At temperature > 0 the children of a node are instead *sampled without replacement* from the
draft's distribution q (warped like the target's), and each child carries q renormalised over the
tokens not yet drawn; the engine's multi-candidate rejection sampling with those probabilities
keeps the output distributed exactly as the target's (methods/core/acceptance.py).
"""

from __future__ import annotations

from typing import Any

import torch

from methods.core.drafter import DraftSession, Drafter, StepResult
from methods.core.hidden_states import HiddenStateRequest, HiddenStates
from methods.core.sampling import target_probs
from methods.core.static_tree import EAGLE_MC_SIM_7B_63, StaticTree
from methods.core.tree import DraftTree
from methods.drafters.eagle_state import PairTracker, TreeExpansion
from methods.drafters.trained import SHIPPED, ChoicesOption, artifact_folder, check_folder_option, recorded_source
from methods.heads.eagle import EagleDraftModel
from methods.heads.eagle_format import load_eagle

# The draft trained for the embedded model (training/train_drafter.py --method eagle); eagle and
# eagle2 share it, as the published EAGLE weights serve both.
EMBEDDED_DRAFT = SHIPPED / "eagle"

# CPU tree for the embedded model, chosen by measurement (training/sweep_drafter.py on the lean
# backend; docs/methods.md): the two best depth-1 guesses. The one-node tree was as fast (1.10x
# both) with a lower MAT; deeper trees cost more per step than their extra tokens saved.
CPU_CHOICES = [[0], [1]]
CHOICES = ChoicesOption("eagle", "mc_sim_7b_63", EAGLE_MC_SIM_7B_63, CPU_CHOICES, "EAGLE's published 25-node tree")


def load_draft_for(args, model, method: str) -> EagleDraftModel:
    """The EAGLE draft named by --eagle-path, or the shipped one on the embedded model."""
    return load_eagle(artifact_folder(args, method, "eagle", "--eagle-path", shipped=EMBEDDED_DRAFT), model)


def check_eagle_path(args, method: str) -> None:
    """A given --eagle-path must be a folder; without one, the shipped draft must exist and the
    model must be the embedded one (checked before the model loads)."""
    check_folder_option(args, "--eagle-path", "a published, `speculators` or trained EAGLE folder with "
                                              "config.json and the draft weights")
    if getattr(args, "eagle_path", None) is None:
        artifact_folder(args, method, "eagle", "--eagle-path", shipped=EMBEDDED_DRAFT)


class EagleFamilyDrafter(Drafter):
    """What EAGLE-1 and EAGLE-2 share: the features they read and the draft's pair cache."""

    hidden_state_request = HiddenStateRequest(final=True)

    def __init__(self, draft: EagleDraftModel):
        self.draft = draft
        self.tracker = PairTracker(draft)
        self._bound_to = None

    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        if self._bound_to is not session.model:
            self.draft.bind(session.model)
            self._bound_to = session.model
        states = session.prompt_features
        self.tracker.begin(prompt_ids, None if states is None else self.pair_features(states), session.device,
                           self.draft.fc.weight.dtype)

    def pair_features(self, states: HiddenStates) -> torch.Tensor:
        """The target feature of each row that goes into a draft pair (EAGLE-1/2: the final one)."""
        return states.final

    def accept(self, step: StepResult) -> None:
        if step.finished:
            return  # the turn is over: no next step to draft for
        self.tracker.add_step(self.pair_features(step.features)[step.path_rows], step.committed)

    def end(self) -> None:
        self.tracker.end()

    def _expansion(self) -> TreeExpansion:
        return TreeExpansion(self.draft, self.tracker)


class EagleDrafter(EagleFamilyDrafter):
    name = "eagle"

    def __init__(self, draft: EagleDraftModel, choices=EAGLE_MC_SIM_7B_63, choices_name: str = "custom"):
        super().__init__(draft)
        if isinstance(choices, str):  # a named tree ("mc_sim_7b_63", "cpu")
            choices, choices_name = CHOICES.named[choices], choices
        self.tree = StaticTree(choices)
        self.choices_name = choices_name

    def _children_tokens(self, outputs: torch.Tensor, counts: list[int]):
        """Per parent output, ``counts[j]`` child tokens best first, and (sampling) the draft
        probabilities each child was drawn with; None where greedy."""
        logits = self.draft.draft_logits(outputs)
        config = self.session.config
        if config.greedy:
            top = logits.topk(min(max(counts), logits.shape[-1]), dim=-1).indices
            return [self.draft.to_token_ids(top[j, :c]).tolist() for j, c in enumerate(counts)], None
        # Sampling without replacement from q; child i carries q with children 0..i-1 removed.
        q_rows = target_probs(logits, config)
        tokens, probs = [], []
        for j, count in enumerate(counts):
            q = torch.zeros(self.session.vocab_size, dtype=q_rows.dtype, device=q_rows.device)
            q[self.draft.to_token_ids(torch.arange(q_rows.shape[1], device=q_rows.device))] = q_rows[j]
            drawn, carried = [], []
            for _ in range(count):
                total = float(q.sum())
                if total <= 0.0:
                    break  # fewer tokens with mass than children: the rest are left out
                q = q / total
                x = int(torch.multinomial(q, 1, generator=self.session.generator).item())
                drawn.append(x)
                carried.append(q.clone())
                q[x] = 0.0
            tokens.append(drawn)
            probs.append(carried)
        return tokens, probs

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        if max_depth < 1 or not self.tracker.catch_up():
            return DraftTree.empty()
        tree = self.tree if self.tree.max_depth <= max_depth else self.tree.truncated(max_depth)
        parents, ranks, depths = tree.parents.tolist(), tree.ranks.tolist(), tree.depths.tolist()
        n = len(tree)
        kids: dict[int, list[int]] = {}
        for node, parent in enumerate(parents):
            kids.setdefault(parent, []).append(node)
        tokens = [0] * n
        present = [False] * n  # a node whose rank was not drawn (sampling ran out of mass) is left out
        sampled = not self.session.config.greedy
        probs: list = [None] * n
        outputs: dict[int, torch.Tensor] = {-1: self.tracker.last_output}
        entries: dict[int, int] = {-1: -1}
        expansion = self._expansion()

        def fill(parent_nodes: list[int], parent_outputs: torch.Tensor) -> None:
            counts = [1 + max(ranks[c] for c in kids[u]) for u in parent_nodes]
            drawn, carried = self._children_tokens(parent_outputs, counts)
            for j, u in enumerate(parent_nodes):
                for c in kids[u]:
                    r = ranks[c]
                    if r < len(drawn[j]):
                        tokens[c], present[c] = drawn[j][r], True
                        if sampled:
                            probs[c] = carried[j][r]

        fill([-1], self.tracker.last_output[None])
        for depth in range(1, tree.max_depth):
            expand = [u for u in range(n) if depths[u] == depth and present[u] and u in kids]
            if not expand:
                break
            outs = expansion.run(torch.stack([outputs[parents[u]] for u in expand]),
                                 [entries[parents[u]] for u in expand],
                                 torch.tensor([tokens[u] for u in expand]), depth)
            first = len(expansion) - len(expand)
            for j, u in enumerate(expand):
                outputs[u], entries[u] = outs[j], first + j
            fill(expand, outs)
        draft_probs = None
        rows = [p for p in probs if p is not None]
        if sampled and rows:  # nodes left out (no mass left to draw them) get a placeholder row, pruned below
            # On the target's device, where the engine's acceptance compares them with its logits.
            empty = torch.zeros_like(rows[0])
            draft_probs = torch.stack([p if p is not None else empty for p in probs])
        draft = DraftTree(torch.tensor(tokens, dtype=torch.long), torch.tensor(parents, dtype=torch.long),
                          draft_probs=draft_probs)
        return draft.prune(torch.tensor(present, dtype=torch.bool))

    def max_draft_length(self) -> int:
        return self.tree.max_depth

    def max_draft_tokens(self) -> int:
        return len(self.tree)

    def params(self) -> dict[str, Any]:
        return {"draft": recorded_source(self.draft), "choices": self.choices_name, "tree_nodes": len(self.tree),
                "tree_nodes_per_depth": self.tree.nodes_per_depth(),
                "draft_vocab": None if self.draft.draft_vocab is None else int(len(self.draft.draft_vocab))}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--eagle-path", default=None,
                           help="EAGLE draft for eagle and eagle2: a published EAGLE folder (config.json + "
                                "pytorch_model.bin/model.safetensors), a `speculators` folder, or one trained "
                                "by training/train_drafter.py; default: the draft shipped for the embedded model")
        CHOICES.add_argument(group)

    @classmethod
    def check_args(cls, args) -> None:
        check_eagle_path(args, "eagle")
        CHOICES.check(args)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "EagleDrafter":
        choices, name = CHOICES.resolve(args, model)
        return cls(load_draft_for(args, model, "eagle"), choices=choices, choices_name=name)
