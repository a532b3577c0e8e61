"""The ``lean`` backend: a llama-family decoder as one short loop over the model's own weights.

Per token block the Hugging Face forward spends most of a CPU forward outside the matrix
products (mask and cache bookkeeping, module calls, dtype checks) and BLAS sgemm is 2-3x slower
per call at 2-32 rows than at one. This loop does only the arithmetic:

    x = embed(ids)
    per layer: h = rms(x); q, k, v = h @ Wqkv; rope(q, k); cache[k, v]; x += attn(q) @ Wo
               h = rms(x); g, u = h @ Wgu;  x += (act(g) * u) @ Wdown
    final = rms(x); logits = final @ lm_head

Where the native library is there (float32 on an AVX2/AVX-512 CPU, blocks of up to
``SKINNY_MAX_ROWS`` rows) each layer is one call of lean_ops.c's ``lean_layer``, in which a
row's values do not depend on the block's other rows (``_forward_fused``); otherwise the same
loop runs on torch ops (``_forward``). What it reuses from the model, so that nothing of the
modelling file is copied and numerics follow the model's own definitions: the weights, the
rotary embedding module (rope scaling types included), the activation module, the norms' eps and
the attention's scaling. q/k/v and gate/up are multiplied as one matrix each, and with the native
library every matrix moves once into a huge-page arena; the model's own parameters become views,
so the model is unchanged for every other use and no weight is held twice.

The cache is preallocated per layer ([kv_heads, capacity, head_dim], grown by doubling) and
compaction moves the accepted rows in place, so a step allocates nothing that scales with the
context.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Optional

import torch
import torch.nn.functional as F

from methods.core.backends import native_kernels, weight_arena
from methods.core.backends.half_weights import half_copy
from methods.core.backends.weight_arena import WeightArena
from methods.core.hidden_states import HiddenStateRequest, HiddenStates, NOTHING
from methods.core.kv_cache import keep_accepted_rows
from methods.core.tree import DraftTree
from methods.core.verify_inputs import (block_allowed, block_attention_mask, block_embeddings, block_positions,
                                         block_tokens, needs_custom_mask)

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")  # qwen3: llama's layer with per-head q/k norms
# Above this many rows torch's BLAS is as fast as the native kernel (long prompts, big trees).
# `benchmarks/forward_cost.py --kernel-rows --reps 5`, whole forward, ms native vs torch:
# 16 rows 85 vs 149, 32: 131 vs 195, 48: 169 vs 223, 64: 220 vs 256, 96: 308 vs 332, 128: 393 vs 395.
SKINNY_MAX_ROWS = 96
# A prompt longer than SKINNY_MAX_ROWS is prefilled through the native layer in blocks of this many
# rows, each attending to the cache before it and causally within itself, rather than in one torch
# forward: on a 2-core AMD EPYC (AVX-512) the bundled set's eight prompts of 100-524 tokens took
# 2.5-2.8 s in blocks of 64, 80, 96 or 128 rows (no size ahead of the others in three runs) against
# 3.9-4.4 s in one torch forward, medians of 5 interleaved runs each (lean_ops v7).
PREFILL_BLOCK = 64
INITIAL_CAPACITY = 512


def unsupported_reason(model) -> Optional[str]:
    """Why the lean backend cannot run ``model``, or None if it can."""
    config = model.config
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        return f"model type {kind!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    decoder = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if decoder is None or not all(hasattr(decoder, n) for n in needed) or not hasattr(model, "lm_head"):
        return "the model does not have the llama layout (model.embed_tokens/layers/norm/rotary_emb, lm_head)"
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1 is not supported"
    if getattr(config, "use_sliding_window", False) or "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return "sliding-window attention is not supported"
    layer = decoder.layers[0]
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    parts = ("q_proj", "k_proj", "v_proj", "o_proj")
    if attention is None or mlp is None or not all(hasattr(attention, p) for p in parts) or \
            not all(hasattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return "the decoder layers do not have the llama attention/MLP layout"
    return None


class LeanCache:
    """Per-layer keys and values [kv_heads, capacity, head_dim]; ``length`` entries are valid."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype, device,
                 capacity: int = INITIAL_CAPACITY):
        shape = (kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[1]

    def key_addresses(self) -> list[int]:
        """Each layer's key cache address, for native code (valid until ``reserve`` grows it)."""
        return [k.data_ptr() for k in self.keys]

    def value_addresses(self) -> list[int]:
        return [v.data_ptr() for v in self.values]

    def reserve(self, needed: int, keep: Optional[int] = None) -> None:
        """Room for ``needed`` entries; the first ``keep`` (default ``length``) survive a growth.
        A draft passes more than ``length``: its tree entries after the committed ones."""
        if needed <= self.capacity:
            return
        capacity = self.capacity
        while capacity < needed:
            capacity *= 2
        keep = self.length if keep is None else keep
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = old.new_zeros(old.shape[0], capacity, old.shape[2])
                new[:, :keep] = old[:, :keep]
                store[i] = new

    def compact(self, past_len: int, block_len: int, accepted_nodes: list[int]) -> None:
        """Keep [0, past_len] (prefix and root) and past_len + 1 + i for each accepted node i."""
        self.length = keep_accepted_rows([*self.keys, *self.values], 1, past_len, accepted_nodes)


def _fuse_rows(owner, name: str, linears, arena: Optional[WeightArena] = None) -> torch.Tensor:
    """One [sum of out_features, in] weight for several Linear layers that read the same input;
    each layer's own weight becomes a view of it (values unchanged, memory held once). The buffer
    is remembered on ``owner`` so that a second LeanTarget on the same model reuses it; it is
    taken from ``arena`` when one is given (then never an earlier buffer: every matrix moves)."""
    fused = getattr(owner, name, None) if arena is None else None
    row = 0
    if fused is not None:
        for lin in linears:
            rows = lin.weight.shape[0]
            if lin.weight.data_ptr() != fused[row: row + rows].data_ptr():
                break  # a weight was replaced since: fuse again
            row += rows
        else:
            return fused
    rows = sum(lin.weight.shape[0] for lin in linears)
    if arena is None:
        fused = torch.cat([lin.weight.detach() for lin in linears]).contiguous()
    else:
        fused = arena.take((rows, linears[0].weight.shape[1]))
        torch.cat([lin.weight.detach() for lin in linears], out=fused)
    row = 0
    for lin in linears:
        rows = lin.weight.shape[0]
        lin.weight.data = fused[row: row + rows]
        row += rows
    object.__setattr__(owner, name, fused)  # a plain attribute: not a parameter or buffer
    return fused


def _move_into(arena: Optional[WeightArena], linear) -> None:
    """``linear``'s weight becomes a view of a copy in ``arena`` (when there is one)."""
    if arena is not None:
        slot = arena.take(tuple(linear.weight.shape))
        slot.copy_(linear.weight.detach())
        linear.weight.data = slot


def _weight_arena(model) -> Optional[WeightArena]:
    """A new arena for the decoder's matrices and the lm_head, or None where they are in one
    already (a second LeanTarget on the same model) or the memory cannot be had."""
    existing = getattr(model, "_lean_arena", None)
    if existing is not None and existing.holds(model.model.layers[0].mlp.down_proj.weight):
        return None
    numel = model.lm_head.weight.numel()
    for layer in model.model.layers:
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
                    layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            numel += lin.weight.numel()
    arena = weight_arena.reserve(numel, next(model.parameters()).dtype)
    if arena is not None:
        object.__setattr__(model, "_lean_arena", arena)
    return arena


def _fused_bias(linears) -> Optional[torch.Tensor]:
    biases = [lin.bias for lin in linears]
    if all(b is None for b in biases):
        return None
    return torch.cat([b.detach() if b is not None else torch.zeros(lin.weight.shape[0], dtype=lin.weight.dtype,
                                                                    device=lin.weight.device)
                      for b, lin in zip(biases, linears)])


class FusedLayer:
    """One llama decoder layer as lean_ops.c's lean_layer reads it: q/k/v and gate/up multiplied as
    one matrix each (the modules' own weights become views of them, see ``_fuse_rows``), and the
    norms, biases, activation and attention scaling. The target's layers are built from
    transformers' modules (``of_decoder_layer``); draft layers of the same arithmetic (EAGLE's,
    Hydra's prefix layer) pass their own modules, so that they run through the same native layer
    rather than a second copy of it. ``norm_in`` None: the layer has no input norm (EAGLE's first
    draft layer reads its fc output as it is); then lean_layer gets a NULL norm_in. ``q_norm`` and
    ``k_norm``: per-head RMSNorms of q and k before rotation (Qwen3's layer, DFlash's draft layer),
    both or neither."""

    def __init__(self, attention, mlp, norm_in, norm_post, act, scaling: float, head_dim: int,
                 arena: Optional[WeightArena] = None, q_norm=None, k_norm=None):
        if (q_norm is None) != (k_norm is None):
            raise ValueError("a layer has per-head norms on both q and k or on neither")
        self.qkv = _fuse_rows(attention, "_lean_qkv", [attention.q_proj, attention.k_proj, attention.v_proj], arena)
        self.qkv_bias = _fused_bias([attention.q_proj, attention.k_proj, attention.v_proj])
        self.split = [attention.q_proj.weight.shape[0], attention.k_proj.weight.shape[0],
                      attention.v_proj.weight.shape[0]]
        _move_into(arena, attention.o_proj)
        self.o = attention.o_proj.weight
        self.o_bias = attention.o_proj.bias
        self.gate_up = _fuse_rows(mlp, "_lean_gate_up", [mlp.gate_proj, mlp.up_proj], arena)
        self.gate_up_bias = _fused_bias([mlp.gate_proj, mlp.up_proj])
        _move_into(arena, mlp.down_proj)
        self.down = mlp.down_proj.weight
        self.down_bias = mlp.down_proj.bias
        self.act = act
        self.norm_in = norm_in
        self.norm_post = norm_post
        self.scaling = float(scaling)
        self.head_dim = int(head_dim)
        self.heads, self.kv_heads = self.split[0] // self.head_dim, self.split[1] // self.head_dim
        self.intermediate = self.down.shape[1]
        self.silu = _is_silu(self.act)
        self.q_norm, self.k_norm = q_norm, k_norm
        self._native = None  # the float32 LayerWeights
        self._native_half = None  # (the half copies' addresses, their LayerWeights)

    @classmethod
    def of_decoder_layer(cls, layer, arena: Optional[WeightArena] = None) -> "FusedLayer":
        """A transformers llama/qwen2/qwen3 decoder layer."""
        attention, mlp = layer.self_attn, layer.mlp
        return cls(attention, mlp, layer.input_layernorm, layer.post_attention_layernorm, mlp.act_fn,
                   attention.scaling, attention.head_dim, arena, getattr(attention, "q_norm", None),
                   getattr(attention, "k_norm", None))

    @property
    def native_ok(self) -> bool:
        """Whether lean_layer computes this layer: it implements SiLU only, rotates heads of at
        most 512 dimensions and shares each kv head among a whole group of query heads."""
        return self.silu and self.head_dim <= 512 and self.heads % self.kv_heads == 0

    def native(self, half: bool = False) -> "native_kernels.LayerWeights":
        """The layer for lean_ops.c's lean_layer (the tensors it points to are this object's own, or
        the half copies kept on them, so they live as long as they do). ``half``: the four matrices
        as their half-precision copies (methods/core/backends/half_weights.py), for a draft layer
        while drafting; where float16 cannot hold one of them the layer stays float32."""
        matrices = [self.qkv, self.o, self.gate_up, self.down]
        if half:
            copies = [half_copy(m) for m in matrices]
            if all(c is not None for c in copies):
                key = tuple(c.data_ptr() for c in copies)  # copies are remade after a weight changes
                if self._native_half is None or self._native_half[0] != key:
                    self._native_half = key, self._layer_weights(copies, half=True)
                return self._native_half[1]
        if self._native is None:  # built once: a target's layer is called every forward
            self._native = self._layer_weights(matrices, half=False)
        return self._native

    def _layer_weights(self, matrices, half: bool) -> "native_kernels.LayerWeights":
        def address(t):
            if t is None:
                return None
            assert t.dtype in (torch.float32, torch.float16) and t.is_contiguous()
            return t.data_ptr()
        norm_in = self.norm_in
        wqkv, wo, wgu, wdown = matrices
        return native_kernels.LayerWeights(
            width=self.o.shape[0], in_width=self.qkv.shape[1], heads=self.heads, kv_heads=self.kv_heads,
            hd=self.head_dim, inter=self.intermediate, eps_in=0.0 if norm_in is None else _eps(norm_in),
            eps_post=_eps(self.norm_post), scale=self.scaling,
            norm_in=None if norm_in is None else address(norm_in.weight), norm_post=address(self.norm_post.weight),
            wqkv=address(wqkv), bqkv=address(self.qkv_bias), wo=address(wo), bo=address(self.o_bias),
            wgu=address(wgu), bgu=address(self.gate_up_bias), wdown=address(wdown), bdown=address(self.down_bias),
            q_norm=None if self.q_norm is None else address(self.q_norm.weight),
            k_norm=None if self.k_norm is None else address(self.k_norm.weight),
            eps_qk=0.0 if self.q_norm is None else _eps(self.q_norm), half=int(half))

    def run_native(self, library, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                   values: torch.Tensor, past: int, common: int, allowed: torch.Tensor, threads: int,
                   attn_in: Optional[torch.Tensor] = None, half: bool = False) -> None:
        """One lean_layer call: ``x`` [n, width] (float32, contiguous) goes through the layer in
        place; the block's keys and values go to rows past .. past+n-1 of ``keys``/``values``
        [kv_heads, capacity, head_dim]; ``cos``/``sin`` [n, head_dim]; ``allowed`` uint8
        [n, past + n - common] says which cache rows after the first ``common`` each row sees.
        ``attn_in`` [n, in_width]: what q/k/v read instead of the normed ``x`` (EAGLE-3). ``half``:
        read the matrices' half-precision copies (a draft layer while drafting, see ``native``)."""
        library.lean_layer(ctypes.byref(self.native(half)), x.shape[0], x.data_ptr(),
                           None if attn_in is None else attn_in.data_ptr(), cos.data_ptr(), sin.data_ptr(),
                           keys.data_ptr(), values.data_ptr(), keys.shape[1], past, common, allowed.data_ptr(),
                           threads)


    def store_kv(self, library, rows: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                 values: torch.Tensor, past: int, threads: int, half: bool = False) -> None:
        """One lean_kv call: the keys and values of ``rows`` [n, in_width] (float32, contiguous), which
        q/k/v read as they are (no input norm), rotated at ``cos``/``sin`` [n, head_dim] and written
        to rows past .. past+n-1 of ``keys``/``values`` (DFlash's context rows)."""
        library.lean_kv(ctypes.byref(self.native(half)), rows.shape[0], rows.data_ptr(), cos.data_ptr(),
                        sin.data_ptr(), keys.data_ptr(), values.data_ptr(), keys.shape[1], past, threads)


def _is_silu(act) -> bool:
    """Whether the activation module computes SiLU (torch's, transformers' own class, or any
    other), checked on sample values: lean_ops.c implements only that one."""
    probe = torch.linspace(-8, 8, 33)
    try:
        return torch.allclose(act(probe), F.silu(probe), rtol=1e-6, atol=1e-6)
    except Exception:  # an activation that cannot run on a plain float tensor
        return False


def _eps(norm) -> float:
    return float(getattr(norm, "variance_epsilon", None) or getattr(norm, "eps"))


def _rms(norm, x: torch.Tensor) -> torch.Tensor:
    """The llama RMSNorm as the model defines it: statistics in float32 (also for a float64
    model), the normed input cast back to the input's dtype, times the weight."""
    eps = _eps(norm)
    h = x if x.dtype == torch.float32 else x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return norm.weight * (h if x.dtype == torch.float32 else h.to(x.dtype))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class LeanTarget:
    name = "lean"

    def __init__(self, model, native_kernel: Optional[bool] = None, move_weights: bool = True):
        """``move_weights=False`` leaves the weights where they are (no huge-page arena): for a draft
        model that shares its lm_head, or its layers, with a target whose own LeanTarget moved them."""
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the lean backend cannot run this model: {reason}")
        self.model = model
        decoder = model.model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.embed = decoder.embed_tokens
        self.rotary = decoder.rotary_emb
        self.norm = decoder.norm
        self.lm_head = model.lm_head
        usable = self.device.type == "cpu" and self.dtype == torch.float32
        kernel = native_kernels.load() if usable and native_kernel is not False else None
        if native_kernel and kernel is None:
            raise RuntimeError(f"the native kernel is not available: "
                               f"{native_kernels.why_not() if usable else 'it needs float32 on the CPU'}")
        self._kernel = kernel
        with torch.no_grad():
            # The kernel streams every matrix once per forward: they move into huge pages.
            arena = _weight_arena(model) if kernel is not None and move_weights else None
            self.layers = [FusedLayer.of_decoder_layer(layer, arena) for layer in decoder.layers]
            _move_into(arena, model.lm_head)
        self.head_dim = self.layers[0].head_dim
        self.skinny_max_rows = SKINNY_MAX_ROWS  # a benchmark may move it
        self.prefill_block = PREFILL_BLOCK  # 0: a long prompt in one torch forward (tests, benchmarks)
        # The lm_head rows the logits are computed for (``restrict_output``); None: all of them.
        self._output_weight, self._output_bias = self.lm_head.weight, self.lm_head.bias
        self._output_scores = None  # what computes those logits (``restrict_output``); None: _linear
        # A draft model's LeanTarget may read its layers' half-precision copies: a callable saying
        # whether to, per forward (SpS's draft: methods/heads/row_scores.py's layers_in_half).
        # A target never does: its weights are what the output is.
        self.half_layers = None
        # The whole layer in native code (lean_ops.c) where the kernel is there and the model's
        # layers are what it implements; a benchmark may turn it off to compare.
        self.fused = kernel is not None and all(layer.native_ok for layer in self.layers) and \
            self._rotary_width() == self.head_dim
        self._request: HiddenStateRequest = NOTHING

    def _rotary_width(self) -> int:
        """How many of a head's dimensions the model's rotary embedding covers (lean_ops.c
        rotates whole heads only)."""
        with torch.inference_mode():
            cos, _ = self.rotary(torch.zeros(1, 1, 1, dtype=self.dtype, device=self.device),
                                 torch.zeros(1, 1, dtype=torch.long, device=self.device))
        return int(cos.shape[-1])

    # ------------------------------------------------------------------ the contract
    @property
    def native_kernel(self) -> bool:
        return self._kernel is not None

    @property
    def native_code(self) -> str:
        """What computes the forwards, recorded with every answer: results of different native
        code are not resumed into one run or compared by speed.py."""
        if self._kernel is None:
            return "torch ops"
        path = "native layer" if self.fused else "native kernel, torch ops"
        # Long prompts went through torch ops before they were prefilled in native blocks; the cache
        # they leave differs in rounding, so such runs are told apart.
        blocks = f", prefill blocks of {self.prefill_block}" if self.fused and self.prefill_block else ""
        return f"{path}: {native_kernels.describe(self._kernel)}{blocks}"

    def new_cache(self) -> LeanCache:
        return LeanCache(len(self.layers), self.kv_heads, self.head_dim, self.dtype, self.device)

    @contextlib.contextmanager
    def capturing(self, request: HiddenStateRequest):
        bad = [i for i in request.layer_inputs if not 0 <= i < len(self.layers)]
        if bad:
            raise ValueError(f"hidden states asked for layer(s) {bad}, but the model has {len(self.layers)} layers")
        self._request = request
        try:
            yield
        finally:
            self._request = NOTHING

    @torch.inference_mode()
    def prefill(self, cache: LeanCache, tokens: list[int]) -> Optional[HiddenStates]:
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        positions = torch.arange(len(tokens), device=self.device)
        if self._fused_for(len(tokens)):
            allowed = torch.ones(len(tokens), len(tokens), dtype=torch.bool).tril_()
            return self._forward_fused(cache, ids, positions, 0, allowed, logits=False)[1]
        if self.fused and self.prefill_block:
            return self._prefill_in_blocks(cache, ids, positions)
        _, states = self._forward(cache, ids, positions, 0, None, causal=True, logits=False)
        return states

    def _prefill_in_blocks(self, cache: LeanCache, ids: torch.Tensor, positions: torch.Tensor) -> Optional[HiddenStates]:
        """A long prompt through the native layer, ``prefill_block`` rows at a time. A row's values
        do not depend on the other rows of its block (lean_ops.c), so the cache and the states are
        those of any other cut of the prompt into native blocks."""
        parts, block = [], min(self.prefill_block, self.skinny_max_rows)
        for start in range(0, ids.shape[0], block):
            end = min(ids.shape[0], start + block)
            allowed = torch.ones(end - start, end - start, dtype=torch.bool).tril_()
            parts.append(self._forward_fused(cache, ids[start:end], positions[start:end], start, allowed,
                                             logits=False)[1])
        if parts[0] is None:
            return None
        return HiddenStates(
            final=None if parts[0].final is None else torch.cat([p.final for p in parts]),
            layer_inputs={i: torch.cat([p.layer_inputs[i] for p in parts]) for i in parts[0].layer_inputs})

    @torch.inference_mode()
    def verify(self, cache: LeanCache, past_len: int, root: int, tree: DraftTree):
        ids = block_tokens(root, tree, self.device)[0]
        positions = block_positions(past_len, tree, self.device)[0]
        n = len(tree) + 1
        x = None if tree.embedding_nodes is None else block_embeddings(self.embed, ids, tree)
        if self._fused_for(n):
            allowed = block_allowed(tree) if needs_custom_mask(tree) else torch.ones(n, n, dtype=torch.bool).tril_()
            return self._forward_fused(cache, ids, positions, past_len, allowed, logits=True, embeddings=x)
        mask = None
        if needs_custom_mask(tree):
            mask = block_attention_mask(past_len, tree, self.dtype, self.device)[0, 0]
        elif n > 1:  # a chain: causal, offset by the cached prefix
            mask = torch.ones(n, past_len + n, dtype=torch.bool, device=self.device).tril_(past_len)
        return self._forward(cache, ids, positions, past_len, mask, causal=False, logits=True, embeddings=x)

    def compact(self, cache: LeanCache, past_len: int, block_len: int, accepted_nodes: list[int]) -> None:
        cache.compact(past_len, block_len, accepted_nodes)

    @torch.inference_mode()
    def extend(self, cache: LeanCache, tokens: list[int]) -> torch.Tensor:
        """Append ``tokens`` (causally) after the cache's ``length`` entries and return the last
        one's logits: a draft model's step, which reads one row (so the lm_head runs on one row)."""
        past, n = cache.length, len(tokens)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        positions = torch.arange(past, past + n, device=self.device)
        if self._fused_for(n):
            allowed = torch.ones(n, n, dtype=torch.bool).tril_()
            logits = self._forward_fused(cache, ids, positions, past, allowed, logits="last")[0]
        else:
            mask = torch.ones(n, past + n, dtype=torch.bool, device=self.device).tril_(past) if n > 1 else None
            logits = self._forward(cache, ids, positions, past, mask, causal=False, logits="last")[0]
        return logits[0]

    def supports_tree_attention(self) -> bool:
        return True  # the mask is applied here, not by the model

    def restrict_output(self, token_ids: torch.Tensor, scores=None) -> None:
        """From now on the logits are those of ``token_ids`` only, in that order: a draft model
        trained on a draft vocabulary scores a few thousand rows of the shared lm_head instead of
        all of them. The rows are copied once into one contiguous matrix (the kernel streams it);
        the lm_head itself is untouched, so a target sharing it is not affected. ``scores(x, rows,
        bias)`` computes those logits instead of this backend's own product: a draft's logits may
        come from methods/heads/row_scores.py, which reads a half-precision copy of the rows."""
        self._output_scores = scores
        with torch.no_grad():
            rows = token_ids.to(device=self.lm_head.weight.device, dtype=torch.long)
            self._output_weight = self.lm_head.weight[rows].contiguous()
            self._output_bias = None if self.lm_head.bias is None else self.lm_head.bias[rows].contiguous()

    # ------------------------------------------------------------------ arithmetic
    def _fused_for(self, rows: int) -> bool:
        return self.fused and rows <= self.skinny_max_rows

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if self._kernel is not None and x.shape[0] <= self.skinny_max_rows:
            out = native_kernels.skinny_matmul(self._kernel, x, weight)
            return out if bias is None else out.add_(bias)
        return F.linear(x, weight, bias)

    def _forward(self, cache: LeanCache, ids, positions, past_len: int, mask, causal: bool, logits,
                 embeddings: Optional[torch.Tensor] = None):
        """``embeddings``: the block's input vectors when some differ from their tokens' embeddings."""
        n = ids.shape[0]
        end = past_len + n
        cache.reserve(end)
        request = self._request
        x = self.embed(ids) if embeddings is None else embeddings
        cos, sin = self.rotary(x[None], positions[None])
        cos, sin = cos[0, :, None, :], sin[0, :, None, :]  # [n, 1, head_dim]: broadcast over heads
        inputs: dict[int, torch.Tensor] = {}
        hd = self.head_dim
        for i, layer in enumerate(self.layers):
            if i in request.layer_inputs:
                inputs[i] = x
            h = _rms(layer.norm_in, x)
            q, k, v = self._linear(h, layer.qkv, layer.qkv_bias).split(layer.split, dim=-1)
            q, k = q.view(n, self.heads, hd), k.view(n, self.kv_heads, hd)
            if layer.q_norm is not None:
                q, k = _rms(layer.q_norm, q), _rms(layer.k_norm, k)
            q = _rotate(q, cos, sin).transpose(0, 1)
            keys, values = cache.keys[i], cache.values[i]
            keys[:, past_len:end] = _rotate(k, cos, sin).transpose(0, 1)
            values[:, past_len:end] = v.view(n, self.kv_heads, hd).transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                q[None], keys[None, :, :end], values[None, :, :end], attn_mask=mask,
                is_causal=causal and n > 1, scale=layer.scaling, enable_gqa=self.heads != self.kv_heads)
            x = x + self._linear(attended[0].transpose(0, 1).reshape(n, self.heads * hd), layer.o, layer.o_bias)
            h = _rms(layer.norm_post, x)
            gate, up = self._linear(h, layer.gate_up, layer.gate_up_bias).chunk(2, dim=-1)
            x = x + self._linear(layer.act(gate) * up, layer.down, layer.down_bias)
        cache.length = end
        return self._outputs(_rms(self.norm, x), inputs, logits)

    def _outputs(self, final: torch.Tensor, inputs: dict[int, torch.Tensor], logits):
        """The forward's logits (``logits``: True for every row, "last" for the last row only,
        False for none) and the hidden states the drafter asked for."""
        request = self._request
        states = None
        if request:
            states = HiddenStates(final=final if request.final else None, layer_inputs=inputs)
        rows = final[-1:] if logits == "last" else final
        product = self._output_scores or self._linear
        out = product(rows, self._output_weight, self._output_bias) if logits else None
        return out, states

    def _forward_fused(self, cache: LeanCache, ids, positions, past_len: int, allowed: torch.Tensor, logits,
                       embeddings: Optional[torch.Tensor] = None):
        """``_forward`` with each decoder layer one call of lean_ops.c's lean_layer (float32 on the
        CPU, at most ``skinny_max_rows`` rows), which updates the residual stream ``x`` in place."""
        lib, request = self._kernel, self._request
        n = ids.shape[0]
        end = past_len + n
        cache.reserve(end)
        threads = torch.get_num_threads()
        x = (self.embed(ids) if embeddings is None else embeddings).contiguous().clone()
        cos, sin = self.rotary(x[None], positions[None])
        cos, sin = cos[0].contiguous(), sin[0].contiguous()
        allowed = allowed.to(torch.uint8).contiguous()
        half = self.half_layers is not None and self.half_layers()
        inputs: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            if i in request.layer_inputs:
                inputs[i] = x.clone()  # x changes in place from here on
            layer.run_native(lib, x, cos, sin, cache.keys[i], cache.values[i], past_len, past_len, allowed, threads,
                             half=half)
        final = torch.empty_like(x)
        lib.rms_norm(n, x.shape[1], x.data_ptr(), None, self.norm.weight.data_ptr(), _eps(self.norm), final.data_ptr())
        cache.length = end
        return self._outputs(final, inputs, logits)
