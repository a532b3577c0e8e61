"""SPACE's frozen-base variant: learned mask embeddings, the target untouched.

The paper fine-tunes the whole target so that mask tokens guess the tokens ahead. Here the target
stays frozen and only ``slots`` input vectors are learned (one per mask slot of a group, fed in
place of a token embedding), so the model verifying the drafts is exactly the original one.

Per training conversation, G anchors s are drawn over its answer (from the last prompt token on).
The frozen target runs once over the conversation up to the last anchor (no gradient) into a KV
cache; then one forward runs G mask groups against that cache: group g's mask j sits at position
s_g + 1 + j and sees the conversation up to s_g and the masks before it in its own group, exactly
the attention pattern the engine verifies with. Loss: the cross-entropy of mask j's logits (the
target's own lm_head over the full vocabulary) against x_{s+2+j}, averaged over every mask with a
label. Only the mask activations carry gradient, and only to the learned vectors.

The corpus answers are the target's own greedy tokens, so a label is exactly what greedy decoding
would commit there. Held-out metric: top-1 accuracy of every slot at fixed anchors spread evenly
over each held-out answer (slot j right = the j-th candidate of a step would match the text).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from methods.core.hidden_states import HiddenStateRequest
from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.space import KEY, WEIGHT_FILES, LearnedMasks, space_config
from training.recipes import Recipe

IGNORE = -100  # no label (past the end of the conversation)


class SpaceRecipe(Recipe):
    name = "space"
    # batch_size counts anchors (mask groups) per optimiser step: --space-anchors per conversation.
    defaults = {"epochs": 1, "lr": 1e-2, "batch_size": 64, "warmup": 0.05, "weight_decay": 0.0}
    shared_note = "the whole base is used as it is (frozen); only the mask embeddings are stored here."
    metric_label = "Held-out top-1 accuracy per mask slot (slot j after anchor s guesses the token at s + 2 + j)"

    def metric_names_for(self, count: int) -> list[str]:
        return [f"slot {j}" for j in range(count)]

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--space-slots", type=int, default=4,
                           help="mask slots learned (one input vector each): the most masks per group drafting "
                                "can use (--space-masks)")
        group.add_argument("--space-anchors", type=int, default=32,
                           help="mask groups per training conversation per step, at anchors drawn over its answer")
        group.add_argument("--space-eval-anchors", type=int, default=32,
                           help="anchors per held-out conversation, spread evenly over its answer, for the "
                                "held-out accuracy")

    def request(self) -> HiddenStateRequest:
        return HiddenStateRequest()  # nothing: the frozen target runs inside the loss

    # ------------------------------------------------------------------ data
    def build(self, base, features, generator) -> LearnedMasks:
        args = self.args
        if args.space_slots < 1 or args.space_anchors < 1 or args.space_eval_anchors < 1:
            raise ValueError("--space-slots, --space-anchors and --space-eval-anchors must be at least 1")
        self.base = base
        self.decoder = base.get_decoder()
        self.lm_head = base.get_output_embeddings()
        self.tokens, self.starts = features.tokens.astype(np.int64), features.starts
        # First anchor: the last prompt token (the root of a turn's first step); last: two tokens
        # before the end (mask 0's label x_{s+2} must exist).
        first_answer = np.array([a + int(np.argmax(features.answer[a:b])) if features.answer[a:b].any() else b
                                 for a, b in zip(features.starts[:-1], features.starts[1:])])
        self.first_anchor = first_answer - 1
        self.last_anchor = features.starts[1:] - 3
        usable = (self.last_anchor >= self.first_anchor) & (self.first_anchor >= features.starts[:-1])
        self.train_sequences = np.flatnonzero(usable & ~features.heldout)
        self.heldout_sequences = np.flatnonzero(usable & features.heldout)
        if not len(self.train_sequences) or not len(self.heldout_sequences):
            raise ValueError("SPACE training needs answers of at least two tokens in both the train and held-out split")
        self.train_positions = np.concatenate([self._anchors(s) for s in self.train_sequences])
        self.heldout_anchors = {int(s): self._eval_anchors(s) for s in self.heldout_sequences}
        self.heldout_positions = np.concatenate(list(self.heldout_anchors.values()))
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        hidden = int(base.get_input_embeddings().weight.shape[1])
        self.module = LearnedMasks(args.space_slots, hidden)
        self.module.init_from(base)
        return self.module

    def _anchors(self, sequence: int) -> np.ndarray:
        return np.arange(self.first_anchor[sequence], self.last_anchor[sequence] + 1)

    def _eval_anchors(self, sequence: int) -> np.ndarray:
        anchors = self._anchors(sequence)
        count = min(self.args.space_eval_anchors, len(anchors))
        return anchors[np.linspace(0, len(anchors) - 1, count).round().astype(np.int64)]

    def summary(self) -> str:
        return (f"{len(self.train_sequences)} training / {len(self.heldout_sequences)} held-out conversations, "
                f"{len(self.train_positions)} training anchors ({self.args.space_anchors} drawn per conversation per "
                f"epoch), {len(self.heldout_positions)} held-out anchors, {self.module.slots} mask slots "
                f"({self.module.mask_embeddings.numel()} parameters)")

    def _per_step(self, batch_size: int) -> int:
        return max(1, batch_size // self.args.space_anchors)  # conversations per step

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.train_sequences) / self._per_step(batch_size))

    def train_batches(self, rng, batch_size: int):
        order = rng.permutation(self.train_sequences)
        per = self._per_step(batch_size)
        for i in range(0, len(order), per):
            batch = []
            for s in order[i: i + per]:
                anchors = self._anchors(s)
                if len(anchors) > self.args.space_anchors:
                    anchors = np.sort(rng.choice(anchors, self.args.space_anchors, replace=False))
                batch.append((int(s), anchors))
            yield batch

    # ------------------------------------------------------------------ maths
    def mask_logits(self, sequence: int, anchors: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [G * slots, vocab] of G mask groups at ``anchors`` (absolute corpus positions) of one
        conversation, and their labels x_{s+2+j} (IGNORE past the end)."""
        start, end = int(self.starts[sequence]), int(self.starts[sequence + 1])
        local = torch.from_numpy(anchors - start)  # anchors as positions in the conversation
        prefix = int(local.max()) + 1
        device = self.lm_head.weight.device
        ids = torch.from_numpy(self.tokens[start: start + prefix])[None].to(device)
        cache = DynamicCache(config=self.base.config)
        with torch.no_grad():
            self.decoder(input_ids=ids, cache=cache, use_cache=True)
        groups, slots = len(anchors), self.module.slots
        n = groups * slots
        slot = torch.arange(slots)
        positions = (local[:, None] + 1 + slot[None]).reshape(1, n)
        # Group g's mask j sees the conversation up to its anchor and its group's masks 0..j.
        sees_prefix = torch.arange(prefix)[None] <= local.repeat_interleave(slots)[:, None]
        own = torch.block_diag(*[torch.ones(slots, slots, dtype=torch.bool).tril()] * groups)
        allowed = torch.cat([sees_prefix, own], dim=1)
        dtype = self.module.mask_embeddings.dtype
        mask = torch.zeros(n, prefix + n, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        inputs = self.module.mask_embeddings.repeat(groups, 1)[None]
        out = self.decoder(inputs_embeds=inputs.to(device), position_ids=positions.to(device),
                           attention_mask=mask[None, None].to(device), cache=cache, use_cache=True)
        logits = self.lm_head(out.last_hidden_state[0])
        target = (local[:, None] + 2 + slot[None]).reshape(-1)
        labels = torch.full((n,), IGNORE, dtype=torch.long)
        inside = target < end - start
        labels[inside] = torch.from_numpy(self.tokens[start: end])[target[inside]]
        return logits, labels.to(device)

    def loss(self, batch) -> torch.Tensor:
        total, counted = None, 0
        for sequence, anchors in batch:
            logits, labels = self.mask_logits(sequence, anchors)
            part = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
            total = part if total is None else total + part
            counted += int((labels != IGNORE).sum())
        return total / max(counted, 1)

    @torch.no_grad()
    def evaluate(self) -> dict:
        slots = self.module.slots
        right = np.zeros(slots)
        counted = np.zeros(slots)
        run = np.zeros(slots)  # anchors whose slots 0..j are all right
        for sequence, anchors in self.heldout_progress(self.heldout_anchors.items(), "conversation"):
            logits, labels = self.mask_logits(sequence, anchors)
            hit = (logits.argmax(dim=-1) == labels).reshape(-1, slots).cpu().numpy()
            valid = (labels != IGNORE).reshape(-1, slots).cpu().numpy()
            right += (hit & valid).sum(axis=0)
            counted += valid.sum(axis=0)
            run += (np.cumprod(hit & valid, axis=1)).sum(axis=0)
        return {"top1": [round(float(r / max(c, 1)), 4) for r, c in zip(right, counted)],
                "positions": [int(c) for c in counted],
                # Share of anchors whose first j + 1 guesses are all right: how often a step that
                # verifies this group's guesses would accept at least j + 1 of them.
                "prefix_right": [round(float(r / max(counted[0], 1)), 4) for r in run]}

    # ------------------------------------------------------------------ artifact
    weights_file = WEIGHT_FILES[0]

    def artifact_tensors(self) -> dict:
        return {KEY: self.module.mask_embeddings}

    def save(self, out, meta: dict) -> None:
        hidden = int(self.module.mask_embeddings.shape[1])
        config = space_config(self.module.slots, hidden, meta["base_model"], base_fingerprint(self.base),
                              training=meta["training"], metrics=meta["metrics"],
                              mask_inputs="learned vectors fed in place of token embeddings; the base is frozen")
        save_artifact(out, config, self.artifact_tensors(), self.weights_file)
