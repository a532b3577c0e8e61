"""What EAGLE-family drafters keep between steps, and how they grow a tree from it.

``PairTracker``: the draft's KV cache over *real pairs* (f_i, x_{i+1}) of the current turn. The
pairs come from the features the engine hands over: the prompt's at ``begin`` (pairs
(f_0, x_1) ... (f_{n-2}, x_{n-1}), the last token being the root of the first step), and after
each step the rows of the root and the accepted nodes paired with the tokens that follow them
(the accepted tokens, then the target's own next token), so the newest pair always ends with the
next step's root. New pairs are run lazily, at the next ``propose``; the output of the newest pair
is the draft's guess of the root's feature, from which the first tree level is drawn.

``TreeExpansion``: temporary draft entries for tree nodes, run against the cache of real pairs
without changing it (EAGLE's "stable" cache). An entry sees every real pair, its expanded
ancestors and itself; a node at depth d sits at draft position n_pairs + d - 1.
"""

from __future__ import annotations

from typing import Optional

import torch

from methods.heads.eagle import DraftCache, EagleDraftModel


class PairTracker:
    def __init__(self, draft: EagleDraftModel):
        self.draft = draft
        self.cache: Optional[DraftCache] = None
        self._pending: list[tuple[torch.Tensor, list[int]]] = []
        self.last_output: Optional[torch.Tensor] = None  # draft output [H] of the newest real pair

    def begin(self, prompt_ids: list[int], prompt_final: Optional[torch.Tensor], device, dtype) -> None:
        self.cache = DraftCache(self.draft.shape, device, dtype, capacity=max(64, 2 * len(prompt_ids)))
        self._pending = []
        self.last_output = None
        if prompt_final is not None and len(prompt_final):
            self._pending.append((prompt_final, list(prompt_ids[1: 1 + len(prompt_final)])))

    def add_step(self, final_rows: torch.Tensor, committed: list[int]) -> None:
        """Features of the root and accepted nodes, paired with the tokens that follow each."""
        self._pending.append((final_rows, list(committed)))

    def end(self) -> None:
        self.cache = None
        self._pending = []
        self.last_output = None

    @property
    def n_pairs(self) -> int:
        return self.cache.length

    def catch_up(self) -> bool:
        """Run the draft over the pairs not yet in its cache; False if there are none at all."""
        if self._pending:
            features = torch.cat([f for f, _ in self._pending]).to(self.draft.fc.weight.dtype)
            tokens = torch.tensor([t for _, ts in self._pending for t in ts], device=features.device)
            self._pending = []
            past = self.cache.length
            m = len(tokens)
            positions = torch.arange(past, past + m, device=features.device)
            visible = torch.ones(m, past + m, dtype=torch.bool, device=features.device)
            visible[:, past:] = torch.ones(m, m, dtype=torch.bool, device=features.device).tril()
            out, kv = self.draft(features[None], self.draft.embed(tokens)[None], positions[None],
                                 self.cache.layers(), visible[None])
            self.cache.append(kv)
            self.last_output = out[0, -1]
        return self.last_output is not None


class TreeExpansion:
    """Entries for expanded tree nodes, numbered in the order they were run."""

    def __init__(self, draft: EagleDraftModel, tracker: PairTracker):
        self.draft, self.tracker = draft, tracker
        self._kv: Optional[list[tuple[torch.Tensor, torch.Tensor]]] = None
        self._sees = torch.zeros(0, 0, dtype=torch.bool)  # entry i sees entry j

    def __len__(self) -> int:
        return self._sees.shape[0]

    def run(self, parent_outputs: torch.Tensor, parent_entries: list[int], tokens: torch.Tensor,
            depth: int) -> torch.Tensor:
        """Run m nodes of one depth: each as the pair (its parent's draft output, its token).

        ``parent_entries[j]``: the entry of node j's parent, -1 for the root (whose draft output
        is the newest real pair's). Returns the draft outputs [m, H]; the nodes become entries
        len(self) .. len(self) + m - 1.
        """
        device = parent_outputs.device
        m, old = len(tokens), len(self)
        ancestors = torch.zeros(m, old, dtype=torch.bool)
        for j, entry in enumerate(parent_entries):
            if entry >= 0:
                ancestors[j] = self._sees[entry]
        n_pairs = self.tracker.n_pairs
        visible = torch.cat([torch.ones(m, n_pairs, dtype=torch.bool), ancestors,
                             torch.eye(m, dtype=torch.bool)], dim=1).to(device)
        positions = torch.full((1, m), n_pairs + depth - 1, device=device)
        out, kv = self.draft(parent_outputs[None], self.draft.embed(tokens)[None], positions,
                             self.tracker.cache.layers(extra=self._kv), visible[None])
        self._kv = kv if self._kv is None else [(torch.cat([a, k], 2), torch.cat([b, v], 2))
                                                for (a, b), (k, v) in zip(self._kv, kv)]
        sees = torch.zeros(old + m, old + m, dtype=torch.bool)
        sees[:old, :old] = self._sees
        sees[old:, :old] = ancestors
        sees[old:, old:] = torch.eye(m, dtype=torch.bool)
        self._sees = sees
        return out[0]
