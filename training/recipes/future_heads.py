"""What the Medusa and Hydra recipes share: heads that guess tokens several positions ahead.

Head k learns x_{t+k+2} at every position t whose label is an answer token of the corpus (the
target's own greedy answers, so hard labels are the target's argmax: exact distillation for
greedy decoding). Loss: sum_k decay^k * CE(logits_k, x_{t+k+2}).

The softmax is restricted to the corpus's answer vocabulary (the distinct answer tokens of the
training split, usually a few thousand ids): heads project with those rows of the base's lm_head
only, which is several times cheaper than the full vocabulary, and drafting restricts its top-k to
the same ids so that training and use agree. Held-out labels outside that vocabulary count as
misses.

A subclass says how many heads with which decay (``head_options``), builds its module
(``make_module``) and computes the logits of a batch of positions (``head_logits``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from methods.core.hidden_states import HiddenStateRequest
from training.draft_vocab import DEFAULT_SIZE, UNKNOWN, draft_vocabulary
from training.recipes import Recipe

IGNORE = -100  # no label here (outside the answer, or past the end)


class FutureHeadsRecipe(Recipe):
    defaults = {"epochs": 3, "lr": 1e-3, "batch_size": 256, "warmup": 0.05, "weight_decay": 0.0}

    # ------------------------------------------------------------------ what a subclass provides
    def head_options(self) -> tuple[int, int, float]:
        """(number of heads, layers per head, loss decay) from the command line."""
        raise NotImplementedError

    def make_module(self, hidden: int, draft_vocab: torch.Tensor) -> torch.nn.Module:
        raise NotImplementedError

    def draft_vocab_size(self) -> int:
        """--<name>-draft-vocab: how many of the most frequent answer tokens the heads score."""
        return int(getattr(self.args, f"{self.name}_draft_vocab", 0) or 0)

    @classmethod
    def add_vocab_argument(cls, group) -> None:
        group.add_argument(f"--{cls.name}-draft-vocab", type=int, default=DEFAULT_SIZE,
                           help="draft vocabulary: the N most frequent answer tokens of the corpus, whose base head "
                                "rows the heads score (0 = every answer token of the training split)")

    def head_logits(self, index: np.ndarray, training: bool) -> torch.Tensor:
        """Logits [K, B, draft vocabulary] of every head at the positions ``index``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    def request(self) -> HiddenStateRequest:
        return HiddenStateRequest(final=True)

    def build(self, base, features, generator):
        heads_count, layers, decay = self.head_options()
        if heads_count < 1 or layers < 1:
            raise ValueError(f"--{self.name}-heads and --{self.name}-layers must be at least 1")
        tokens, answer, starts = features.tokens, features.answer, features.starts
        seq = features.sequence_of_position
        end = starts[1:][seq]  # end of each position's sequence
        train_seq = ~features.heldout[seq]
        chosen = draft_vocabulary(features, self.draft_vocab_size(), int(base.config.get_text_config().vocab_size),
                                  inherited=self.inherited_vocab)
        self.vocab, t2d, self.vocab_coverage = chosen.ids, chosen.t2d, chosen.coverage
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
        self.tokens = tokens
        self.sequence_length = (end - starts[:-1][seq]).astype(np.int64)  # per position
        self.final = np.asarray(features.final)  # fp16 [N, H], read into memory once
        hidden = self.final.shape[1]
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        self.module = self.make_module(hidden, torch.from_numpy(self.vocab))
        # The base's lm_head rows of the draft vocabulary: frozen, shared, never saved.
        self.rows = base.get_output_embeddings().weight.detach()[torch.from_numpy(self.vocab)].float()
        self.weights = torch.tensor([decay ** k for k in range(heads_count)])
        self.base = base
        return self.module

    def summary(self) -> str:
        return (f"{len(self.train_positions)} training and {len(self.heldout_positions)} held-out positions, "
                f"draft vocabulary {len(self.vocab)} tokens "
                f"({self.vocab_coverage:.1%} of held-out answer tokens), {self.module.num_heads} heads")

    def train_batches(self, rng, batch_size: int):
        order = rng.permutation(self.train_positions)
        for i in range(0, len(order), batch_size):
            yield np.sort(order[i: i + batch_size])  # sorted: faster reads, same batch

    def features_at(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.final[index].astype(np.float32))

    # ------------------------------------------------------------------ maths
    def loss(self, batch: np.ndarray) -> torch.Tensor:
        logits = self.head_logits(batch, training=True)
        labels = torch.from_numpy(self.labels[batch])
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
        chain = np.zeros(self.module.num_heads)  # heads 0..k all right
        for i in self.heldout_progress(range(0, len(self.heldout_positions), batch_size), "batch"):
            index = self.heldout_positions[i: i + batch_size]
            logits, labels = self.head_logits(index, training=False), torch.from_numpy(self.labels[index])
            pred = logits.argmax(dim=-1).T  # [B, K]
            valid = labels != IGNORE
            right = (pred == labels) & valid
            correct += right.sum(dim=0).numpy()
            counted += valid.sum(dim=0).numpy()
            chain += right.int().cumprod(dim=1).sum(dim=0).numpy()
        # chain[k]: the share of positions (those with a head-0 label) where heads 0..k are all
        # right; a label past the answer's end counts as a miss. Medusa's heads read no tokens and
        # Hydra's read the true ones, which a chain's are whenever the heads before were right, so
        # this is exactly how often a (k + 1)-token chain is accepted whole at greedy decoding.
        return {"top1": [round(float(c / max(n, 1)), 4) for c, n in zip(correct, counted)],
                "positions": [int(n) for n in counted],
                "chain": [round(float(c / max(counted[0], 1)), 4) for c in chain]}
