"""Inputs of one verification forward: the token block, its position ids and its attention mask.

The block is [root, node 0, ..., node n-1]. The root sits at position ``past_len`` (the number of
tokens whose KV is cached); a node sits at ``past_len + depth`` unless the tree overrides it.
Every token sees the whole cached prefix and the root; within the block a node sees what
``DraftTree.ancestors_mask`` says. A plain chain needs no mask at all: the model's own causal
mask is the same thing, and the fast path matters for the baseline and chain drafters.
"""

from __future__ import annotations

import torch

from methods.core.tree import DraftTree


def block_tokens(root: int, tree: DraftTree, device: torch.device) -> torch.Tensor:
    tokens = torch.empty(len(tree) + 1, dtype=torch.long)
    tokens[0] = root
    tokens[1:] = tree.tokens
    return tokens.unsqueeze(0).to(device)


def block_embeddings(embed, ids: torch.Tensor, tree: DraftTree) -> torch.Tensor:
    """The block's input vectors: ``embed(ids)`` (the target's input embedding layer over the block's
    token ids, any leading shape), with the tree's input-embedding overrides in place of their
    nodes' rows (row ``node + 1``: row 0 is the root)."""
    x = embed(ids)
    rows = tree.embedding_nodes.to(x.device) + 1
    x[..., rows, :] = tree.embeddings.to(device=x.device, dtype=x.dtype)
    return x


def block_positions(past_len: int, tree: DraftTree, device: torch.device) -> torch.Tensor:
    offsets = torch.zeros(len(tree) + 1, dtype=torch.long)
    offsets[1:] = tree.position_offsets
    return (offsets + past_len).unsqueeze(0).to(device)


def block_allowed(tree: DraftTree) -> torch.Tensor:
    """bool [n+1, n+1]: which rows of the block (root, then the tree's nodes) each row sees; every
    row also sees the whole cached prefix."""
    n = len(tree)
    allowed = torch.zeros(n + 1, n + 1, dtype=torch.bool)
    allowed[:, 0] = True  # everybody sees the root
    allowed[1:, 1:] = tree.ancestors_mask()
    return allowed


def block_attention_mask(past_len: int, tree: DraftTree, dtype: torch.dtype,
                         device: torch.device) -> torch.Tensor:
    """Float 4D mask [1, 1, n+1, past_len+n+1]: 0 where attention is allowed, dtype-min elsewhere.

    A float mask is honoured as-is by both the sdpa and eager attention of transformers models.
    """
    n = len(tree)
    allowed = block_allowed(tree)
    block = torch.zeros(n + 1, n + 1, dtype=dtype)
    block.masked_fill_(~allowed, torch.finfo(dtype).min)
    mask = torch.zeros(1, 1, n + 1, past_len + n + 1, dtype=dtype)
    mask[0, 0, :, past_len:] = block
    return mask.to(device)


def needs_custom_mask(tree: DraftTree) -> bool:
    return len(tree) > 0 and not tree.is_chain()
