"""The draft tree: what a drafter proposes and the engine verifies in one target forward.

A tree hangs under the *root*: the newest committed token, whose KV is not in the cache yet.
Nodes are numbered 0..n-1 in topological order (a parent always comes before its children);
``parents[i] == -1`` means the node's parent is the root. A chain is the tree whose parents are
``-1, 0, 1, 2, ...``.

Candidate nodes are guesses of the continuation and take part in acceptance. Auxiliary nodes
(``is_candidate[i] == False``: Lookahead's Jacobi window, SPACE's mask tokens) are run through the
same forward for their logits but can never be accepted and are never kept in the cache.

By default a node sees the KV prefix, the root, its ancestors and itself, at position
``prefix_len + depth``. ``positions`` and ``visibility`` override that for auxiliary tokens whose
attention pattern is not a tree.

An auxiliary node may also enter the forward as a given input vector instead of its token's
embedding (``embedding_nodes`` / ``embeddings``: SPACE's learned mask embeddings on a frozen
target). The vector replaces what the target's input embedding layer would output for the node;
its token id is then a placeholder. Candidates never take one: their keys and values are kept in
the cache when accepted, so they must be the token's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


@dataclass
class DraftTree:
    tokens: torch.Tensor  # int64 [n]
    parents: torch.Tensor  # int64 [n]; -1 = the root
    is_candidate: Optional[torch.Tensor] = None  # bool [n]; None = every node is a candidate
    # Probability distribution each candidate token was drawn from (SpS); rows [n, vocab].
    # None = deterministic drafts (acceptance treats q as one-hot on the drafted token).
    draft_probs: Optional[torch.Tensor] = None
    # Optional overrides for auxiliary patterns, relative to the root (root depth 0):
    positions: Optional[torch.Tensor] = None  # int64 [n], depth-like offsets
    visibility: Optional[torch.Tensor] = None  # bool [n, n]: node i sees node j (root is always seen)
    # Input-embedding overrides for auxiliary nodes: row r is the input vector of node embedding_nodes[r].
    embedding_nodes: Optional[torch.Tensor] = None  # int64 [m]
    embeddings: Optional[torch.Tensor] = None  # float [m, hidden]
    _depth: Optional[torch.Tensor] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.tokens = torch.as_tensor(self.tokens, dtype=torch.long).reshape(-1)
        self.parents = torch.as_tensor(self.parents, dtype=torch.long).reshape(-1)
        n = self.tokens.numel()
        if self.parents.numel() != n:
            raise ValueError(f"DraftTree: {n} tokens but {self.parents.numel()} parents")
        if n and bool((self.parents >= torch.arange(n)).any()):
            raise ValueError("DraftTree: every parent must come before its child (topological order)")
        if n and bool((self.parents < -1).any()):
            raise ValueError("DraftTree: parent index below -1")
        if self.is_candidate is not None:
            self.is_candidate = torch.as_tensor(self.is_candidate, dtype=torch.bool).reshape(-1)
            if self.is_candidate.numel() != n:
                raise ValueError("DraftTree: is_candidate has the wrong length")
        if (self.embedding_nodes is None) != (self.embeddings is None):
            raise ValueError("DraftTree: embedding_nodes and embeddings go together")
        if self.embedding_nodes is not None:
            self._check_embedding_overrides(n)

    def _check_embedding_overrides(self, n: int) -> None:
        self.embedding_nodes = torch.as_tensor(self.embedding_nodes, dtype=torch.long).reshape(-1)
        nodes, vectors = self.embedding_nodes, self.embeddings
        if vectors.dim() != 2 or vectors.shape[0] != nodes.numel():
            raise ValueError(f"DraftTree: {nodes.numel()} embedding_nodes need embeddings of shape "
                             f"[{nodes.numel()}, hidden], got {list(vectors.shape)}")
        if nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) >= n):
            raise ValueError("DraftTree: an embedding override names a node outside the tree")
        if nodes.unique().numel() != nodes.numel():
            raise ValueError("DraftTree: a node has two embedding overrides")
        if nodes.numel() and bool(self.candidates[nodes].any()):
            raise ValueError("DraftTree: only auxiliary nodes may take an input-embedding override "
                             "(a candidate's keys and values are kept in the cache)")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def empty(cls) -> "DraftTree":
        return cls(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))

    @classmethod
    def chain(cls, tokens: Sequence[int] | torch.Tensor, draft_probs: Optional[torch.Tensor] = None) -> "DraftTree":
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
        return cls(tokens, torch.arange(tokens.numel()) - 1, draft_probs=draft_probs)

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[int]]) -> "DraftTree":
        """Merge token paths (each starting under the root) into a prefix tree (a trie)."""
        tokens: list[int] = []
        parents: list[int] = []
        index: dict[tuple[int, ...], int] = {}
        for path in paths:
            parent = -1
            for depth in range(len(path)):
                key = tuple(path[: depth + 1])
                node = index.get(key)
                if node is None:
                    node = len(tokens)
                    index[key] = node
                    tokens.append(int(path[depth]))
                    parents.append(parent)
                parent = node
        return cls(torch.tensor(tokens, dtype=torch.long), torch.tensor(parents, dtype=torch.long))

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.tokens.numel())

    @property
    def candidates(self) -> torch.Tensor:
        if self.is_candidate is None:
            return torch.ones(len(self), dtype=torch.bool)
        return self.is_candidate

    @property
    def depth(self) -> torch.Tensor:
        """Depth of each node; the root's children have depth 1."""
        if self._depth is None:
            depth = [0] * len(self)
            parents = self.parents.tolist()
            for i, p in enumerate(parents):
                depth[i] = 1 if p < 0 else depth[p] + 1
            self._depth = torch.tensor(depth, dtype=torch.long)
        return self._depth

    @property
    def position_offsets(self) -> torch.Tensor:
        return self.positions if self.positions is not None else self.depth

    def is_chain(self) -> bool:
        n = len(self)
        return (
            self.visibility is None
            and self.positions is None
            and self.embedding_nodes is None
            and bool((self.parents == torch.arange(n) - 1).all())
            and bool(self.candidates.all())
        )

    def ancestors_mask(self) -> torch.Tensor:
        """bool [n, n]: node i sees node j (j is i or an ancestor of i)."""
        if self.visibility is not None:
            return self.visibility
        n = len(self)
        sees = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(self.parents.tolist()):
            if p >= 0:
                sees[i] = sees[p]
            sees[i, i] = True
        return sees

    def path_to(self, node: int) -> list[int]:
        """Node indices from the root's child down to ``node`` (empty for the root, -1)."""
        path = []
        parents = self.parents.tolist()
        while node >= 0:
            path.append(node)
            node = parents[node]
        return path[::-1]

    def children(self) -> list[list[int]]:
        """children()[p + 1] = candidate children of node p (index 0 is the root), in node order."""
        kids: list[list[int]] = [[] for _ in range(len(self) + 1)]
        cand = self.candidates.tolist()
        for i, p in enumerate(self.parents.tolist()):
            if cand[i]:
                kids[p + 1].append(i)
        return kids

    def prune(self, keep: torch.Tensor) -> "DraftTree":
        """Keep the nodes where ``keep`` is True. A kept node's ancestors must be kept too."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        if bool(keep.all()):
            return self
        old_to_new = torch.full((len(self) + 1,), -1, dtype=torch.long)
        kept = torch.nonzero(keep).reshape(-1)
        old_to_new[kept + 1] = torch.arange(kept.numel())
        parents = self.parents[kept]
        if bool(((parents >= 0) & ~keep[parents.clamp(min=0)]).any()):
            raise ValueError("DraftTree.prune: a kept node lost its parent")
        embedding_nodes = embeddings = None
        if self.embedding_nodes is not None:
            still = keep[self.embedding_nodes]
            embedding_nodes = old_to_new[self.embedding_nodes[still] + 1]
            embeddings = self.embeddings[still.to(self.embeddings.device)]
        return DraftTree(
            tokens=self.tokens[kept],
            parents=old_to_new[parents + 1],
            is_candidate=None if self.is_candidate is None else self.is_candidate[kept],
            draft_probs=None if self.draft_probs is None else self.draft_probs[kept],
            positions=None if self.positions is None else self.positions[kept],
            visibility=None if self.visibility is None else self.visibility[kept][:, kept],
            embedding_nodes=embedding_nodes,
            embeddings=embeddings,
        )
