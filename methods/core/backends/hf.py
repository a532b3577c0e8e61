"""The ``hf`` backend: the target's forwards are calls of the Hugging Face model itself."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from transformers import DynamicCache

from methods.core.hidden_states import HiddenStateCapture, HiddenStateRequest, HiddenStates
from methods.core.kv_cache import compact_cache
from methods.core.tree import DraftTree
from methods.core.verify_inputs import (block_attention_mask, block_embeddings, block_positions, block_tokens,
                                         needs_custom_mask)


class HfTarget:
    name = "hf"
    native_code = "none"  # the model's own forward: torch and transformers only
    native_kernel = False

    def __init__(self, model):
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vocab_size = int(model.config.get_text_config().vocab_size)
        self._capture: Optional[HiddenStateCapture] = None
        self._tree_attention: Optional[bool] = None

    def new_cache(self):
        return DynamicCache(config=self.model.config)

    @contextlib.contextmanager
    def capturing(self, request: HiddenStateRequest):
        """Hooks that read the requested states off the forwards of one turn (removed after)."""
        if not request:
            yield
            return
        with HiddenStateCapture(self.model, request) as capture:
            self._capture = capture
            try:
                yield
            finally:
                self._capture = None

    def _kwargs(self) -> dict:
        if self._capture is None:
            return {}
        self._capture.arm()
        return self._capture.forward_kwargs()

    def _collect(self, out) -> Optional[HiddenStates]:
        return self._capture.collect(out) if self._capture is not None else None

    @torch.inference_mode()
    def prefill(self, cache, tokens: list[int]) -> Optional[HiddenStates]:
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        kwargs = self._kwargs()
        out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1, **kwargs)
        return self._collect(out)

    @torch.inference_mode()
    def verify(self, cache, past_len: int, root: int, tree: DraftTree):
        kwargs = self._kwargs()
        if needs_custom_mask(tree):
            kwargs["attention_mask"] = block_attention_mask(past_len, tree, self.dtype, self.device)
        ids = block_tokens(root, tree, self.device)
        if tree.embedding_nodes is None:
            kwargs["input_ids"] = ids
        else:  # some auxiliary nodes enter as given vectors (SPACE's learned masks)
            kwargs["inputs_embeds"] = block_embeddings(self.model.get_input_embeddings(), ids, tree)
        out = self.model(
            position_ids=block_positions(past_len, tree, self.device),
            cache=cache,
            use_cache=True,
            **kwargs,
        )
        return out.logits[0], self._collect(out)

    def compact(self, cache, past_len: int, block_len: int, accepted_nodes: list[int]) -> None:
        compact_cache(cache, past_len, block_len, accepted_nodes)

    def supports_tree_attention(self) -> bool:
        """Whether the model honours a custom 4D mask (checked once, on a 4-token probe).

        A model whose attention ignores the mask would verify every node against its siblings
        and silently produce wrong text, so for such a model trees are cut to their best chain.
        """
        if self._tree_attention is None:
            ids = [i % self.vocab_size for i in range(3, 10)]
            probe_prefix, (root, a, b, c) = ids[:3], ids[3:]
            tree = DraftTree(torch.tensor([a, b, c]), torch.tensor([-1, -1, 1]))
            chain = DraftTree.chain([b, c])
            rows = []
            capture, self._capture = self._capture, None  # the probe is not one of the turn's forwards
            for t in (tree, chain):
                cache = self.new_cache()
                self.prefill(cache, probe_prefix)
                logits, _ = self.verify(cache, len(probe_prefix), root, t)
                rows.append(logits[-1].float())
            self._capture = capture
            scale = rows[1].abs().max().clamp(min=1.0)
            self._tree_attention = bool(((rows[0] - rows[1]).abs().max() / scale) < 1e-3)
        return self._tree_attention
