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
ancestors and itself; a node at depth d sits at draft position n_pairs + d - 1. The entries are
written into the cache's rows after the real pairs, which the next step's pairs overwrite, with
a mask saying which of them each entry sees: the layout in which the lean backend's native layer
runs the draft (methods/heads/native_layers.py), used by the torch path too so that both are one.
"""

from __future__ import annotations

from typing import Optional

import torch

from methods.heads.eagle import DraftCache, EagleDraftModel
from methods.heads.native_layers import native_draft


class PairTracker:
    def __init__(self, draft: EagleDraftModel):
        self.draft = draft
        self.cache: Optional[DraftCache] = None
        self._pending: list[tuple[torch.Tensor, list[int]]] = []
        self.last_output: Optional[torch.Tensor] = None  # draft output [H] of the newest real pair
        self.native = None  # the draft's native path this turn (methods/heads/native_layers.py), or None
        self.passes = {"native": 0, "torch": 0}  # draft forwards run by each path (the tests read it)

    def begin(self, prompt_ids: list[int], prompt_final: Optional[torch.Tensor], device, dtype) -> None:
        self.cache = DraftCache(self.draft.shape, device, dtype, capacity=max(64, 2 * len(prompt_ids)))
        self.native = native_draft(self.draft)
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
            out = self.run(features, tokens, positions, past, torch.ones(m, m, dtype=torch.bool).tril_())
            self.cache.length += m
            self.last_output = out[-1]
        return self.last_output is not None

    def run(self, features: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, at: int,
            allowed: torch.Tensor) -> torch.Tensor:
        """One draft forward over m pairs (features [m, F], tokens [m], positions [m]) whose keys and
        values go to cache rows at .. at+m-1. Each sees the committed pairs and, of the rows from
        ``cache.length`` to at+m-1, those ``allowed`` (bool [m, at + m - length]) marks. Returns
        the draft's outputs [m, H]; ``cache.length`` is the caller's to move."""
        embeds = self.draft.embed(tokens)
        if self.native is not None and self.native.takes(len(positions)):
            self.passes["native"] += 1
            return self.native.run(self.cache, features, embeds, positions, at, allowed)
        self.passes["torch"] += 1
        m, common = len(positions), self.cache.length
        visible = torch.cat([torch.ones(m, common, dtype=torch.bool), allowed], dim=1).to(features.device)
        out, kv = self.draft(features[None], embeds[None], positions[None], self.cache.layers(upto=at), visible[None])
        self.cache.write(at, kv)
        return out[0]


class TreeExpansion:
    """Entries for expanded tree nodes, numbered in the order they were run; entry i is cache row
    n_pairs + i until the next step's pairs overwrite it."""

    def __init__(self, draft: EagleDraftModel, tracker: PairTracker):
        self.draft, self.tracker = draft, tracker
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
        m, old = len(tokens), len(self)
        ancestors = torch.zeros(m, old, dtype=torch.bool)
        for j, entry in enumerate(parent_entries):
            if entry >= 0:
                ancestors[j] = self._sees[entry]
        n_pairs = self.tracker.n_pairs
        positions = torch.full((m,), n_pairs + depth - 1, device=parent_outputs.device)
        allowed = torch.cat([ancestors, torch.eye(m, dtype=torch.bool)], dim=1)  # over the entries
        out = self.tracker.run(parent_outputs, tokens, positions, n_pairs + old, allowed)
        sees = torch.zeros(old + m, old + m, dtype=torch.bool)
        sees[:old, :old] = self._sees
        sees[old:] = allowed
        self._sees = sees
        return out
