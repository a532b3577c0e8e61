"""DFlash (block diffusion drafting, arXiv 2602.06036): one draft forward fills a whole block.

Each step, as the paper's reference loop does:

1. the target features of the positions committed since the last step (after the prefill: the
   whole prompt but its last token; after a step: the root and the accepted drafts, taken from the
   verification forward) are fused and projected once into the draft's keys and values, which the
   drafter keeps in a small cache of committed context rows only;
2. the block [root, MASK x (B - 1)] at positions P .. P + B - 1 (P = the root's position) runs
   through the draft in ONE forward, bidirectional inside the block and seeing every context row
   (methods/heads/dflash.py);
3. rows 1 .. depth of the output give per-position distributions over the next tokens: their
   argmax is the draft chain (the published verification), or, with ``tree_nodes > 0``, a tree
   grows best-first over the per-position top-k by the sum of log-probabilities along each path
   (DDTree, arXiv 2604.12989): a node at depth d takes its tokens from row d whatever its parent,
   because the whole block was predicted in one pass;
4. the engine verifies the chain or tree in one target forward. The block's own keys and values
   are never kept.

Drafts are deterministic at every temperature (argmax / top-k), so q is one-hot and the engine's
shared rejection sampling (accept x with probability p(x), else draw from p without x, over
siblings in turn) keeps T > 0 output distributed exactly as the target's.
"""

from __future__ import annotations

import heapq
from typing import Any

import torch

from methods.core.drafter import DraftSession, Drafter, StepResult, check_options, resolve_options
from methods.core.hidden_states import HiddenStateRequest, HiddenStates
from methods.core.tree import DraftTree
from methods.drafters.trained import SHIPPED, artifact_folder, check_folder_option, recorded_source
from methods.heads.artifact import ArtifactError
from methods.heads.dflash import DFlashDraftModel
from methods.heads.eagle import DraftCache
from methods.heads.native_layers import native_dflash

EMBEDDED_DRAFT = SHIPPED / "dflash"
# None = from the draft: the block size it was trained with, and every drafted position of the
# block (B - 1 tokens, the published chain), as on a GPU, where verifying a block costs about as
# much as one token. On the 2-core CPU a forward over 8 tokens costs about 1.2-1.35x one over a
# single token, and the drafts shipped here are rarely right past their second position (held
# out, the draft shipped now: 0.51 at depth 1, 0.22 for the first two): with the first draft the
# whole block of 7 ran at 0.86x the baseline and a chain of 3 at 0.97x a chain of 2, with the draft
# before this one a chain of 3 at 0.99x. What beats the chain of 2 is a tree of 3 nodes from the
# top 2 of each position (DDTree's best-first growth): when the first token is uncertain it hedges with
# the runner-up instead of guessing the second position. With the draft shipped now, on the
# bundled set in two interleaved runs, 1.070x and 1.034x the chain of 2 (1.62 accepted tokens a
# step against 1.51; docs/methods.md, "DFlash", "A third epoch, and a small tree by default").
GPU_DEFAULTS = {"block_size": None, "depth": None, "tree_nodes": 0, "top_k": 4}
CPU_DEFAULTS = dict(GPU_DEFAULTS, depth=2, tree_nodes=3, top_k=2)
MINIMUM = {"block_size": 2, "depth": 1, "tree_nodes": 0, "top_k": 1}


def best_first_tree(scores: list[list[float]], budget: int) -> list[tuple[int, int, int]]:
    """DDTree's growth over per-position ranked candidates: ``scores[d][r]`` is the log-probability
    of the rank-r token at depth d + 1 (each row sorted, best first). Returns up to ``budget`` nodes
    (depth index, rank, parent node or -1) of the highest path scores, in the order they were taken
    (a parent before its children, siblings by rank), which is a valid tree order.

    A max-heap holds the frontier: taking a node offers its next-ranked sibling and its best child,
    so every node enters the heap after its parent and its better siblings, and the nodes come out
    by descending path score (log-probabilities are <= 0: a path never scores above its prefix)."""
    if budget < 1 or not scores or not scores[0]:
        return []
    heap = [(-scores[0][0], 0, 0, -1)]
    nodes: list[tuple[int, int, int]] = []
    while heap and len(nodes) < budget:
        negative, depth, rank, parent = heapq.heappop(heap)
        node = len(nodes)
        nodes.append((depth, rank, parent))
        score = -negative
        if rank + 1 < len(scores[depth]):
            heapq.heappush(heap, (-(score - scores[depth][rank] + scores[depth][rank + 1]), depth, rank + 1, parent))
        if depth + 1 < len(scores):
            heapq.heappush(heap, (-(score + scores[depth + 1][0]), depth + 1, 0, node))
    return nodes


class DFlashDrafter(Drafter):
    name = "dflash"

    def __init__(self, draft: DFlashDraftModel, block_size: int | None = None, depth: int | None = None,
                 tree_nodes: int = 0, top_k: int = 4):
        self.draft = draft
        self.block_size = int(block_size or draft.block_size)
        self.depth = int(depth or self.block_size - 1)
        if self.block_size < 2:
            raise ValueError(f"--dflash-block-size {self.block_size}: must be at least 2 (the root and a mask)")
        if not 1 <= self.depth <= self.block_size - 1:
            raise ValueError(f"--dflash-depth {self.depth}: a block of {self.block_size} drafts at most "
                             f"{self.block_size - 1} tokens")
        self.tree_nodes, self.top_k = int(tree_nodes), int(top_k)
        self.cache = None
        self.native = None  # the native block forward of this turn (methods/heads/native_layers.py)
        self._pending: list[torch.Tensor] = []
        self._bound_to = None

    @property
    def hidden_state_request(self) -> HiddenStateRequest:
        return HiddenStateRequest(layer_inputs=tuple(sorted(set(self.draft.feature_layers))))

    def fused(self, states: HiddenStates) -> torch.Tensor:
        """The fused feature of each row: the requested layer inputs side by side, in fc's order."""
        return torch.cat([states.layer_inputs[i] for i in self.draft.feature_layers], dim=-1)

    # ------------------------------------------------------------------ turn
    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        if self._bound_to is not session.model:
            self.draft.bind(session.model)
            self._bound_to = session.model
        self.cache = DraftCache(self.draft.shape, session.device, self.draft.fc.weight.dtype,
                                capacity=max(64, 2 * len(prompt_ids)))
        # The block forward on lean_layer (float32 on the CPU with the native library), else torch
        # ops; asked once per turn, so that a draft moved or cast since is seen as it is.
        self.native = native_dflash(self.draft)
        states = session.prompt_features  # positions 0 .. P-1 (the prompt but its last token)
        self._pending = [] if states is None else [self.fused(states)]

    def accept(self, step: StepResult) -> None:
        if step.finished:
            return  # no next step to draft for
        rows = [0] + [node + 1 for node in step.accepted_nodes]  # the root, then the accepted path
        self._pending.append(self.fused(step.features.rows(rows)))

    def end(self) -> None:
        self.cache = None
        self._pending = []

    def _catch_up(self, root_position: int) -> None:
        """Project the context rows committed since the last call into the cache."""
        if self._pending:
            features = torch.cat(self._pending)
            self._pending = []
            if self.native is not None and self.native.takes(len(features)):
                self.native.extend_context(self.cache, features)
            else:  # torch ops (a long prompt's rows, or no native path)
                start = self.cache.length
                positions = torch.arange(start, start + len(features), device=features.device)
                self.cache.append(self.draft.context_kv(features[None], positions[None]))
        if self.cache.length != root_position:  # the context must end right before the root
            raise RuntimeError(f"DFlash context holds {self.cache.length} positions, the root sits at {root_position}")

    # ------------------------------------------------------------------ drafting
    def block_logits(self, context: list[int], depth: int) -> torch.Tensor:
        """One draft forward over [root, MASK x (B - 1)]: logits [depth, columns] of rows 1..depth."""
        root_position = len(context) - 1
        self._catch_up(root_position)
        device = self.draft.fc.weight.device
        tokens = self.draft.block_tokens(torch.tensor([context[-1]], device=device), self.block_size)
        positions = torch.arange(root_position, root_position + self.block_size, device=device)
        if self.native is not None and self.native.takes(self.block_size):
            hidden = self.native.block(self.cache, self.draft.embed(tokens[0]), positions)
        else:
            hidden = self.draft(self.draft.embed(tokens), positions[None], self.cache.layers())[0]
        return self.draft.logits(hidden[1: 1 + depth])

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        depth = min(self.max_draft_length(), max_depth)  # a tree of n nodes reads at most n rows
        if depth < 1:
            return DraftTree.empty()
        logits = self.block_logits(context, depth)
        if self.tree_nodes <= 0:
            return DraftTree.chain(self.draft.to_token_ids(logits.argmax(dim=-1)).cpu())
        k = min(self.top_k, logits.shape[-1])
        # Clamped at 0 so that rounding can never make a path outscore its prefix.
        top = torch.log_softmax(logits.float(), dim=-1).clamp(max=0.0).topk(k, dim=-1)
        ids = self.draft.to_token_ids(top.indices).cpu().tolist()
        nodes = best_first_tree(top.values.cpu().tolist(), self.tree_nodes)
        return DraftTree(torch.tensor([ids[d][r] for d, r, _ in nodes], dtype=torch.long),
                         torch.tensor([p for _, _, p in nodes], dtype=torch.long))

    def max_draft_length(self) -> int:
        # A chain is ``depth`` deep; a tree of ``tree_nodes`` nodes cannot be deeper than either.
        return self.depth if self.tree_nodes <= 0 else min(self.depth, self.tree_nodes)

    def max_draft_tokens(self) -> int:
        return self.depth if self.tree_nodes <= 0 else self.tree_nodes

    def params(self) -> dict[str, Any]:
        shape = self.draft.shape
        values = {"draft": recorded_source(self.draft), "block_size": self.block_size, "depth": self.depth,
                  "tree_nodes": self.tree_nodes, "target_layer_ids": list(shape.target_layer_ids),
                  "mask_token_id": shape.mask_token_id, "draft_layers": shape.num_layers,
                  "draft_vocab": None if self.draft.draft_vocab is None else int(len(self.draft.draft_vocab))}
        if self.tree_nodes > 0:
            values["top_k"] = self.top_k
        return values

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--dflash-path", default=None,
                           help="DFlash draft: a z-lab DFlash folder (config.json with dflash_config + "
                                "model.safetensors), a `speculators` dflash folder, or one trained by "
                                "training/train_drafter.py --method dflash; safetensors only; default: the draft "
                                "shipped for the embedded model")
        group.add_argument("--dflash-block-size", type=int, default=None,
                           help="positions of the one draft forward, the root included (default: the block size "
                                "the draft was trained with; 16 for z-lab's b16 drafts, 8 for the shipped one)")
        group.add_argument("--dflash-depth", type=int, default=None,
                           help="drafted tokens verified per step at most (GPU default: block size - 1, every masked "
                                "position; CPU default 2, measured; a smaller value verifies fewer tokens of "
                                "the same block)")
        group.add_argument("--dflash-tree-nodes", type=int, default=None,
                           help="0: verify the argmax chain, as published (GPU default); N > 0: verify a tree of "
                                "N nodes grown best-first over each position's top-k tokens (DDTree), at most "
                                f"--dflash-depth deep (CPU default {CPU_DEFAULTS['tree_nodes']}, measured)")
        group.add_argument("--dflash-top-k", type=int, default=None,
                           help=f"candidates per position for the tree (GPU default {GPU_DEFAULTS['top_k']}, CPU "
                                f"default {CPU_DEFAULTS['top_k']}; only with --dflash-tree-nodes > 0)")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "dflash", MINIMUM)
        block, depth = getattr(args, "dflash_block_size", None), getattr(args, "dflash_depth", None)
        if block is not None and depth is not None and depth > block - 1:
            raise ValueError(f"--dflash-depth {depth}: a block of {block} drafts at most {block - 1} tokens")
        check_folder_option(args, "--dflash-path", "a z-lab, `speculators` or trained DFlash folder with "
                                                   "config.json and model.safetensors")
        if getattr(args, "dflash_path", None) is None:
            artifact_folder(args, "dflash", "dflash", "--dflash-path", shipped=EMBEDDED_DRAFT)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "DFlashDrafter":
        from methods.heads.dflash_format import load_dflash

        options = resolve_options(args, "dflash", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        draft = load_dflash(artifact_folder(args, "dflash", "dflash", "--dflash-path", shipped=EMBEDDED_DRAFT), model)
        if getattr(args, "dflash_depth", None) is None and options["depth"] is not None:
            # A device default never asks for more than the block holds (a user's depth is checked).
            options["depth"] = min(options["depth"], (options["block_size"] or draft.block_size) - 1)
        try:
            return cls(draft, **options)
        except ValueError as exc:
            raise ArtifactError(str(exc)) from None
