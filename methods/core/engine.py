"""The one decoding engine every method runs on.

    prefill(prompt[:-1])                       fills the KV cache, computes no logits
    repeat:
        tree = drafter.propose(context)        context[-1] is the root (no KV yet)
        logits = target([root] + tree)         one forward, tree mask, explicit positions
        accepted, bonus = acceptance(tree)     greedy or lossless rejection sampling
        compact the cache to prefix + root + accepted path
        drafter.accept(step)
    until a stop token, a stop string, max_new_tokens, or the model's context is full

Prefilling on prompt[:-1] makes every generated token come out of a step, so the statistics need
no special case: accept_lengths sum to new_tokens, the baseline has accept length 1 per step, and
one step is one target forward after the prefill.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from methods.core.acceptance import Acceptance, accept_greedy, accept_sampling
from methods.core.backends import make_target
from methods.core.context_limit import PromptTooLong, context_limit
from methods.core.drafter import DecodingConfig, DraftSession, Drafter, StepResult, TurnStats, path_rows
from methods.core.hidden_states import request_of
from methods.core.tree import DraftTree
from methods.core.verify_inputs import needs_custom_mask


class SpeculativeEngine:
    """``backend``: how the target's forwards run, ``hf`` (default) or ``lean`` (see
    methods/core/backends), or a Target object."""

    def __init__(self, model, tokenizer=None, backend="hf"):
        self.model = model
        self.tokenizer = tokenizer  # only needed for stop strings
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        self.vocab_size = int(model.config.get_text_config().vocab_size)
        self.context_limit = context_limit(model)  # None: the config does not say
        self.target = make_target(backend, model)
        self.backend = self.target.name

    # ------------------------------------------------------------------ device helpers
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _now(self) -> float:
        self._sync()
        return time.perf_counter()

    # ------------------------------------------------------------------ tree support
    def supports_tree_attention(self) -> bool:
        """Whether the target honours a tree mask; where it does not, trees are cut to their
        best chain (a model that ignored the mask would silently produce wrong text)."""
        return self.target.supports_tree_attention()

    @staticmethod
    def _best_chain(tree: DraftTree) -> DraftTree:
        """The chain that follows the first candidate child at every level (drafters order
        children most-probable first)."""
        children = tree.children()
        keep = torch.zeros(len(tree), dtype=torch.bool)
        node = -1
        while children[node + 1]:
            node = children[node + 1][0]
            keep[node] = True
        chain = tree.prune(keep)
        return DraftTree.chain(chain.tokens, draft_probs=chain.draft_probs)

    def _fit(self, tree: DraftTree, max_depth: int) -> DraftTree:
        if len(tree) and int(tree.depth.max()) > max_depth:
            tree = tree.prune(tree.depth <= max_depth)
        if needs_custom_mask(tree) and not self.supports_tree_attention():
            tree = self._best_chain(tree)
        return tree

    @staticmethod
    def _committed_margins(logits: torch.Tensor, accepted_nodes: list[int]) -> list[float]:
        """Top-1 minus top-2 raw logit of the rows that chose the committed tokens.

        Accepted node j was chosen by its parent's row (the root row for the first), and the
        next token by the last accepted node's row: the path rows. Only these rows are looked
        at, so the cost is one top-2 over a handful of rows per step.
        """
        rows = logits[path_rows(accepted_nodes)]
        # The top two in the logits' own dtype, widened after: widening is exact and keeps the
        # order, so the margins are those of widened rows, without widening a vocabulary per row.
        top = torch.topk(rows, k=2, dim=-1).values.double()
        return (top[:, 0] - top[:, 1]).tolist()

    # ------------------------------------------------------------------ stopping
    def _stop_index(self, generated: list[int], new: int, config: DecodingConfig) -> Optional[int]:
        """Length to cut ``generated`` to if its last ``new`` tokens hit a stop condition."""
        start = len(generated) - new
        for i in range(start, len(generated)):
            if generated[i] in config.stop_token_ids:
                return i + 1  # the stop token itself is part of the output (counted, then cleaned)
        if config.stop_strings and self.tokenizer is not None:
            text = self.tokenizer.decode(generated)
            if any(s in text for s in config.stop_strings):
                # The shortest prefix whose text holds a stop string: the same cut for every
                # method, however many tokens a step committed.
                for i in range(start, len(generated)):
                    prefix = self.tokenizer.decode(generated[: i + 1])
                    if any(s in prefix for s in config.stop_strings):
                        return i + 1
        return None

    def _stop_reason(self, cut: Optional[int], generated: int, context_length: int, config: DecodingConfig) -> str:
        """Why the turn ends after this step (TurnStats.stop_reason), or "" when it goes on."""
        if cut is not None:
            return "stop"
        if generated >= config.max_new_tokens:
            return "max_new_tokens"
        if self.context_limit is not None and context_length >= self.context_limit:
            return "context_limit"
        return ""

    # ------------------------------------------------------------------ the loop
    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], drafter: Drafter, config: DecodingConfig,
                 seed: Optional[int] = None,
                 on_step: Optional[Callable[[StepResult], None]] = None) -> tuple[list[int], TurnStats]:
        if not prompt_ids:
            raise ValueError("empty prompt: at least one token is needed")
        if config.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.context_limit is not None and len(prompt_ids) + 1 > self.context_limit:
            raise PromptTooLong(len(prompt_ids), self.context_limit)
        generator = None
        if not config.greedy:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(0 if seed is None else seed)
        stats = TurnStats()
        # The target hands over the hidden states the drafter asked for, one row per token.
        with self.target.capturing(request_of(drafter)):
            generated = self._generate(prompt_ids, drafter, config, generator, stats, on_step)
        return generated, stats

    def _generate(self, prompt_ids, drafter, config, generator, stats, on_step) -> list[int]:
        target = self.target
        start = self._now()
        cache = target.new_cache()
        prompt_states = target.prefill(cache, prompt_ids[:-1]) if len(prompt_ids) > 1 else None
        after_prefill = self._now()
        stats.prefill_time = after_prefill - start

        session = DraftSession(model=self.model, config=config, device=self.device, dtype=self.dtype,
                               vocab_size=self.vocab_size, generator=generator, prompt_features=prompt_states,
                               backend=self.backend)
        drafter.begin(list(prompt_ids), session)
        stats.draft_time += self._now() - after_prefill

        context = list(prompt_ids)
        generated: list[int] = []
        limit = self.context_limit or float("inf")
        try:
            while True:
                # A step commits at most `remaining` tokens, so the context never passes the limit.
                remaining = int(min(config.max_new_tokens - len(generated), limit - len(context)))
                t0 = self._now()
                tree = self._fit(drafter.propose(context, remaining - 1), remaining - 1)
                t1 = self._now()
                past_len = len(context) - 1
                logits, states = target.verify(cache, past_len, context[-1], tree)
                if config.greedy:
                    acceptance: Acceptance = accept_greedy(tree, logits)
                else:
                    # A drafter may bring its own (declared lossy) rule, e.g. typical acceptance.
                    rule = drafter.sampling_acceptance or accept_sampling
                    acceptance = rule(tree, logits, config, generator)
                committed = tree.tokens[acceptance.accepted_nodes].tolist() + [acceptance.next_token]
                margins = self._committed_margins(logits, acceptance.accepted_nodes)
                generated.extend(committed)
                cut = self._stop_index(generated, len(committed), config)
                stats.stop_reason = self._stop_reason(cut, len(generated), len(context) + len(committed), config)
                finished = bool(stats.stop_reason)
                if cut is not None:
                    del committed[len(committed) - (len(generated) - cut):]
                    del generated[cut:]
                    del margins[len(committed):]
                else:
                    target.compact(cache, past_len, len(tree) + 1, acceptance.accepted_nodes)
                stats.margins.extend(margins)
                context.extend(committed)
                t2 = self._now()

                stats.draft_time += t1 - t0
                stats.verify_time += t2 - t1
                stats.decoding_steps += 1
                stats.accept_lengths.append(len(committed))
                stats.draft_tokens += int(tree.candidates.sum())
                stats.forward_tokens += len(tree) + 1

                step = StepResult(tree=tree, accepted_nodes=acceptance.accepted_nodes, committed=committed,
                                  logits=logits, context=context, finished=finished, features=states)
                drafter.accept(step)
                if on_step is not None:
                    on_step(step)
                stats.draft_time += self._now() - t2
                if finished:
                    break
        finally:
            drafter.end()
        stats.new_tokens = len(generated)
        stats.wall_time = self._now() - start
        return generated
