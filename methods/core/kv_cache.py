"""KV-cache compaction: keep the prefix plus the accepted path, drop everything else.

After a verification forward the cache holds ``past_len`` prefix entries followed by the block
[root, node 0, ..., node n-1]. Only the root and the accepted nodes stay. In transformers 5.x a
``DynamicCache`` keeps per-layer tensors ``layers[i].keys/values`` shaped [batch, heads, seq, dim]
and ``crop(-k)`` removes the last k entries.
"""

from __future__ import annotations

import torch


def compact_cache(cache, past_len: int, block_len: int, accepted_nodes: list[int]) -> None:
    """Keep entries [0, past_len] (prefix and root) and past_len + 1 + i for each accepted node i."""
    keep = len(accepted_nodes) + 1
    drop = block_len - keep
    contiguous = accepted_nodes == list(range(len(accepted_nodes)))
    if not contiguous:
        # Accepted nodes appear in increasing order (parents precede children), so moving each
        # one forward never overwrites a source that is still needed; index_select copies anyway.
        source = torch.tensor([past_len + 1 + i for i in accepted_nodes])
        for layer in cache.layers:
            src = source.to(layer.keys.device)
            target = slice(past_len + 1, past_len + keep)
            layer.keys[:, :, target] = layer.keys.index_select(2, src)
            layer.values[:, :, target] = layer.values.index_select(2, src)
    if drop > 0:
        cache.crop(-drop)
