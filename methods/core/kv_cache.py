"""KV-cache compaction: keep the prefix plus the accepted path, drop everything else.

After a verification forward the cache holds ``past_len`` prefix entries followed by the block
[root, node 0, ..., node n-1]. Only the root and the accepted nodes stay. In transformers 5.x a
``DynamicCache`` keeps per-layer tensors ``layers[i].keys/values`` shaped [batch, heads, seq, dim]
and ``crop(-k)`` removes the last k entries.
"""

from __future__ import annotations

import torch


def keep_accepted_rows(tensors, seq_dim: int, past_len: int, accepted_nodes: list[int]) -> int:
    """Move the accepted nodes' entries of each tensor (along ``seq_dim``) to just after the root.

    Returns the kept length, past_len + 1 + len(accepted_nodes); entries beyond it are stale.
    Shared by both backends' caches, whose layouts differ only in where the sequence axis is.
    """
    keep = len(accepted_nodes) + 1
    if accepted_nodes != list(range(len(accepted_nodes))):
        # Accepted nodes appear in increasing order (parents precede children), so moving each
        # one forward never overwrites a source that is still needed; index_select copies anyway.
        source = torch.tensor([past_len + 1 + i for i in accepted_nodes])
        target = slice(past_len + 1, past_len + keep)
        for tensor in tensors:
            index = [slice(None)] * tensor.dim()
            index[seq_dim] = target
            tensor[tuple(index)] = tensor.index_select(seq_dim, source.to(tensor.device))
    return past_len + keep


def compact_cache(cache, past_len: int, block_len: int, accepted_nodes: list[int]) -> None:
    """Keep entries [0, past_len] (prefix and root) and past_len + 1 + i for each accepted node i."""
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    keep_accepted_rows(tensors, 2, past_len, accepted_nodes)
    drop = block_len - len(accepted_nodes) - 1
    if drop > 0:
        cache.crop(-drop)
