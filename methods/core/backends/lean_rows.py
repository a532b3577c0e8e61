"""Many independent sequences decoded together: each sequence is one row of the lean backend's
forward, with its own KV cache, its own position and its own attention.

Greedy decoding of one sequence reads every weight once per token; decoding B sequences in one
forward reads them once for B tokens, so on a CPU where a forward is bound by reading the weights
B rows cost far less than B forwards (the measured curve is in docs/backends.md). This is what the
corpus generator (training/generate_corpus.py) runs on.

Per decoder layer the native path is the same arithmetic as lean_ops.c's ``lean_layer``, split
where a row's own cache enters:

    h = rms(x); qkv = h Wqkv                           all rows in one product
    per row r: rope(q_r, k_r); cache_r[k_r, v_r]; a_r = attn(q_r, cache_r)
    x += a Wo; h = rms(x); x += (silu(h Wg) * h Wu) Wdown   all rows in one product

Every one of these computes a row's values from that row alone, in a fixed order (the native
kernel's row independence, see skinny_gemm.c), so a sequence decoded among others gets exactly the
tokens it gets decoded alone through the engine on the lean backend. Without the native library
the same loop runs on torch ops (values equal up to float rounding, slower).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
import torch.nn.functional as F

from methods.core.backends import native_kernels
from methods.core.backends.lean import LeanCache, LeanTarget, _eps, _rms, _rotate


# How the weight products of a step are computed (the rest of the layer is the same either way):
#   exact  the native few-row kernel: a row's values do not depend on the other rows, so a greedy
#          row gets exactly the tokens the engine gives its prompt alone
#   blas   torch's matrix product (oneDNN/MKL): still float32, but a row's values then depend on
#          the batch's shape in the last bits, so at a near-tie a greedy row may pick the other
#          token. In isolation it multiplies these shapes at about three times the native
#          kernel's rate on a 2-core AVX-512 CPU, yet end to end at 64 rows it was slower there
#          (295 against 349 answer tokens/s, benchmarks/corpus_throughput.py --products exact
#          blas): 'exact' stays the default; measure before choosing it on other hardware.
PRODUCTS = ("exact", "blas")


@dataclass
class Row:
    """One sequence in the batch: its cache holds every token but ``pending``, the next input."""
    cache: LeanCache
    pending: int
    position: int  # the pending token's position = tokens already in the cache
    tag: object = None  # the caller's handle for this sequence
    generated: list[int] = field(default_factory=list)


class RowBatch:
    """Up to ``capacity`` sequences; ``step`` runs one forward over the pending token of every
    row and returns their next-token logits (rows in the order of ``rows``)."""

    def __init__(self, target: LeanTarget, capacity: int, products: str = "exact"):
        if capacity < 1:
            raise ValueError(f"a batch needs room for at least one row, got {capacity}")
        if products not in PRODUCTS:
            raise ValueError(f"products must be one of {', '.join(PRODUCTS)}, got {products!r}")
        self.target = target
        self.products = products
        self.capacity = capacity
        self.rows: list[Row] = []
        # Caches of finished rows, handed to new ones: allocating (and zeroing) a cache for every
        # sequence cost a tenth of the corpus generator's time. A new sequence overwrites what it
        # reads; what lies past its length is never attended to.
        self._spare: list[LeanCache] = []

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.capacity

    def add(self, prompt: list[int], tag: object = None) -> Row:
        """Prefill a new sequence on ``prompt[:-1]``; ``prompt[-1]`` is its first input, so its
        first generated token comes out of a ``step`` like all the others (as in the engine)."""
        if not prompt:
            raise ValueError("a sequence needs at least one prompt token")
        if self.full:
            raise RuntimeError(f"the batch is full ({self.capacity} rows)")
        cache = self._spare.pop() if self._spare else self.target.new_cache()
        cache.length = 0
        if len(prompt) > 1:
            self.target.prefill(cache, prompt[:-1])
        row = Row(cache=cache, pending=prompt[-1], position=len(prompt) - 1, tag=tag)
        self.rows.append(row)
        return row

    def remove(self, row: Row) -> None:
        self.rows.remove(row)
        self._spare.append(row.cache)

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        """Logits [rows, vocab] for the token after each row's pending one; the pending tokens
        enter the caches (the caller then sets each row's next ``pending``)."""
        if not self.rows:
            raise RuntimeError("no rows to step")
        target = self.target
        ids = torch.tensor([r.pending for r in self.rows], dtype=torch.long, device=target.device)
        positions = torch.tensor([r.position for r in self.rows], dtype=torch.long, device=target.device)
        for r in self.rows:
            r.cache.reserve(r.position + 1)
        if target.fused:
            # Every product through the native kernel, whatever the row count: a row's values
            # are then those of the same row decoded alone.
            final = self._forward_native(ids, positions)
            logits = self._product(final, target.lm_head.weight)
            if target.lm_head.bias is not None:
                logits.add_(target.lm_head.bias)
        else:
            final = self._forward_torch(ids, positions)
            logits = target._linear(final, target.lm_head.weight, target.lm_head.bias)
        for r in self.rows:
            r.cache.length = r.position + 1
            r.position += 1
        return logits

    # ------------------------------------------------------------------ the two paths
    def _product(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x @ weight^T, float32, as ``products`` says."""
        if self.products == "blas":
            return F.linear(x, weight)
        return native_kernels.skinny_matmul(self.target._kernel, x, weight)

    def _forward_native(self, ids, positions) -> torch.Tensor:
        target, lib = self.target, self.target._kernel
        n = ids.shape[0]
        threads = torch.get_num_threads()
        heads, kv_heads, hd = target.heads, target.kv_heads, target.head_dim
        x = target.embed(ids).contiguous().clone()
        cos, sin = target.rotary(x[None], positions[None])
        cos, sin = cos[0].contiguous(), sin[0].contiguous()
        width = x.shape[1]
        qkv_width = (heads + 2 * kv_heads) * hd
        h = torch.empty_like(x)
        attended = torch.empty(n, heads * hd, dtype=x.dtype)
        # Per layer, every row's key and value cache addresses; their capacities and positions.
        key_pointers = torch.tensor([r.cache.key_addresses() for r in self.rows], dtype=torch.int64).T.contiguous()
        value_pointers = torch.tensor([r.cache.value_addresses() for r in self.rows], dtype=torch.int64).T.contiguous()
        caps = torch.tensor([r.cache.capacity for r in self.rows], dtype=torch.int32)
        row_positions = positions.to(torch.int32)
        for i, layer in enumerate(target.layers):
            weights = layer.native()
            lib.rms_norm(n, width, x.data_ptr(), None, layer.norm_in.weight.data_ptr(), weights.eps_in, h.data_ptr())
            qkv = self._product(h, layer.qkv)
            if layer.qkv_bias is not None:
                qkv.add_(layer.qkv_bias)
            # Every row's rope, cache write and attention over its own cache, in one call.
            lib.attend_rows(n, heads, kv_heads, hd, qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(),
                            key_pointers[i].data_ptr(), value_pointers[i].data_ptr(), caps.data_ptr(),
                            row_positions.data_ptr(), weights.scale, attended.data_ptr(), threads)
            delta = self._product(attended, layer.o)
            if layer.o_bias is not None:
                delta.add_(layer.o_bias)
            lib.rms_norm(n, width, x.data_ptr(), delta.data_ptr(), layer.norm_post.weight.data_ptr(),
                         weights.eps_post, h.data_ptr())
            gate_up = self._product(h, layer.gate_up)
            if layer.gate_up_bias is not None:
                gate_up.add_(layer.gate_up_bias)
            activated = torch.empty(n, layer.intermediate, dtype=x.dtype)
            lib.silu_mul(n, layer.intermediate, gate_up.data_ptr(), activated.data_ptr(), threads)
            delta = self._product(activated, layer.down)
            if layer.down_bias is not None:
                delta.add_(layer.down_bias)
            x.add_(delta)
        final = torch.empty_like(x)
        lib.rms_norm(n, width, x.data_ptr(), None, target.norm.weight.data_ptr(), _eps(target.norm), final.data_ptr())
        return final

    def _forward_torch(self, ids, positions) -> torch.Tensor:
        """The same layer on torch ops; attention row by row over each row's own cache."""
        target = self.target
        n = ids.shape[0]
        heads, kv_heads, hd = target.heads, target.kv_heads, target.head_dim
        x = target.embed(ids)
        cos, sin = target.rotary(x[None], positions[None])
        cos, sin = cos[0, :, None, :], sin[0, :, None, :]
        for i, layer in enumerate(target.layers):
            h = _rms(layer.norm_in, x)
            q, k, v = target._linear(h, layer.qkv, layer.qkv_bias).split(layer.split, dim=-1)
            q = _rotate(q.view(n, heads, hd), cos, sin)
            k = _rotate(k.view(n, kv_heads, hd), cos, sin)
            v = v.view(n, kv_heads, hd)
            outs = []
            for r, row in enumerate(self.rows):
                keys, values = row.cache.keys[i], row.cache.values[i]
                keys[:, row.position] = k[r]
                values[:, row.position] = v[r]
                end = row.position + 1
                outs.append(F.scaled_dot_product_attention(
                    q[r][None, :, None], keys[None, :, :end], values[None, :, :end], scale=layer.scaling,
                    enable_gqa=heads != kv_heads)[0, :, 0].reshape(heads * hd))
            x = x + target._linear(torch.stack(outs), layer.o, layer.o_bias)
            h = _rms(layer.norm_post, x)
            gate, up = target._linear(h, layer.gate_up, layer.gate_up_bias).chunk(2, dim=-1)
            x = x + target._linear(layer.act(gate) * up, layer.down, layer.down_bias)
        return _rms(target.norm, x)

