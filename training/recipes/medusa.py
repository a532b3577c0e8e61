"""Medusa-1 heads on a frozen base (the Medusa paper's recipe, sized for a small CPU budget).

Head k reads the final feature f_t and learns the token at t + k + 2, for every t whose label is
an answer token of the corpus (the target's own greedy answers, so hard labels are the target's
argmax: exact distillation for greedy decoding). Loss: sum_k 0.8^k * CE(head_k(f_t), x_{t+k+2}).

The softmax is restricted to the corpus's answer vocabulary (the distinct answer tokens of the
training split, usually a few thousand ids): the heads project with those rows of the base's
lm_head only, which is several times cheaper than the full vocabulary, and drafting restricts its
top-k to the same ids so that training and use agree. Held-out labels outside that vocabulary
count as misses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from methods.core.hidden_states import HiddenStateRequest
from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.medusa import MedusaHeads
from training.recipes import Recipe

IGNORE = -100  # no label here (outside the answer, or past the end)
UNKNOWN = -1  # a held-out label outside the draft vocabulary: counted as a miss


class MedusaRecipe(Recipe):
    name = "medusa"
    defaults = {"epochs": 3, "lr": 1e-3, "batch_size": 256, "warmup": 0.05, "weight_decay": 0.0}

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--medusa-heads", type=int, default=4, help="number of heads K (head k guesses t+k+2)")
        group.add_argument("--medusa-layers", type=int, default=1, help="residual blocks per head")
        group.add_argument("--medusa-decay", type=float, default=0.8, help="loss weight of head k is decay**k")

    def request(self) -> HiddenStateRequest:
        return HiddenStateRequest(final=True)

    # ------------------------------------------------------------------ data
    def build(self, base, features, generator) -> MedusaHeads:
        heads_count = self.args.medusa_heads
        if heads_count < 1 or self.args.medusa_layers < 1:
            raise ValueError("--medusa-heads and --medusa-layers must be at least 1")
        tokens, answer, starts = features.tokens, features.answer, features.starts
        seq = features.sequence_of_position
        end = starts[1:][seq]  # end of each position's sequence
        train_seq = ~features.heldout[seq]
        self.vocab = np.unique(tokens[answer & train_seq]).astype(np.int64)
        t2d = np.full(int(base.config.get_text_config().vocab_size), UNKNOWN, dtype=np.int64)
        t2d[self.vocab] = np.arange(len(self.vocab))
        n = len(tokens)
        labels = np.full((n, heads_count), IGNORE, dtype=np.int64)
        positions = np.arange(n)
        for k in range(heads_count):
            target = positions + k + 2
            ok = target < end
            ok[ok] &= answer[target[ok]]
            labels[ok, k] = t2d[tokens[target[ok]]]
        self.labels = labels
        has_label = (labels != IGNORE).any(axis=1)
        self.train_positions = np.flatnonzero(has_label & train_seq)
        self.heldout_positions = np.flatnonzero(has_label & ~train_seq)
        self.final = np.asarray(features.final)  # fp16 [N, H], read into memory once
        hidden = self.final.shape[1]
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        self.module = MedusaHeads(hidden, heads_count, self.args.medusa_layers,
                                  draft_vocab=torch.from_numpy(self.vocab))
        # The base's lm_head rows of the draft vocabulary: frozen, shared, never saved.
        self.rows = base.get_output_embeddings().weight.detach()[torch.from_numpy(self.vocab)].float()
        self.weights = torch.tensor([self.args.medusa_decay ** k for k in range(heads_count)])
        self.base = base
        return self.module

    def summary(self) -> str:
        return (f"{len(self.train_positions)} training and {len(self.heldout_positions)} held-out positions, "
                f"draft vocabulary {len(self.vocab)} tokens, {self.module.num_heads} heads")

    def train_batches(self, rng, batch_size: int):
        order = rng.permutation(self.train_positions)
        for i in range(0, len(order), batch_size):
            yield np.sort(order[i: i + batch_size])  # sorted: faster reads, same batch

    # ------------------------------------------------------------------ maths
    def _logits(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.from_numpy(self.final[index].astype(np.float32))
        logits = self.module.head_features(f) @ self.rows.T  # [K, B, vocab]
        return logits, torch.from_numpy(self.labels[index])

    def loss(self, batch: np.ndarray) -> torch.Tensor:
        logits, labels = self._logits(batch)
        labels = labels.masked_fill(labels == UNKNOWN, IGNORE)
        total = logits.new_zeros(())
        for k in range(logits.shape[0]):
            valid = labels[:, k] != IGNORE
            if bool(valid.any()):
                total = total + self.weights[k] * F.cross_entropy(logits[k][valid], labels[valid, k])
        return total

    @torch.no_grad()
    def evaluate(self, batch_size: int = 2048) -> dict:
        correct = np.zeros(self.module.num_heads)
        counted = np.zeros(self.module.num_heads)
        for i in range(0, len(self.heldout_positions), batch_size):
            logits, labels = self._logits(self.heldout_positions[i: i + batch_size])
            pred = logits.argmax(dim=-1).T  # [B, K]
            valid = labels != IGNORE
            correct += ((pred == labels) & valid).sum(dim=0).numpy()
            counted += valid.sum(dim=0).numpy()
        return {"top1": [round(float(c / max(n, 1)), 4) for c, n in zip(correct, counted)],
                "positions": [int(n) for n in counted]}

    # ------------------------------------------------------------------ artifact
    def save(self, out, meta: dict) -> None:
        tensors = dict(self.module.medusa_state())
        tensors["draft_vocab"] = torch.from_numpy(self.vocab.astype(np.int32))
        hidden = self.module.hidden
        config = {
            "method": "medusa",
            # The published Medusa keys, so that one loader reads both kinds of folder.
            "medusa_num_heads": self.module.num_heads,
            "medusa_num_layers": self.module.num_layers,
            "base_model_name_or_path": meta["base_model"],
            "shares_base_lm_head": True,
            "head_shapes": {"{k}.0.linear.weight": [hidden, hidden], "{k}.0.linear.bias": [hidden],
                            "draft_vocab": [len(self.vocab)]},
            "draft_vocab_size": len(self.vocab),
            "base_fingerprint": base_fingerprint(self.base),
            "training": meta["training"],
            "metrics": meta["metrics"],
        }
        save_artifact(out, config, tensors, "medusa_lm_head.safetensors")
