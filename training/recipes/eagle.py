"""EAGLE's draft on a frozen base (the EAGLE paper's recipe, sized for a small CPU budget).

Per corpus conversation the draft runs causally over the pairs (f_i + noise, x_{i+1}), i.e. the
target's final features with the token that followed each, exactly as it does in the engine
(methods/drafters/eagle_state.py), and predicts f̂_{i+1}. The loss at every pair whose next label
x_{i+2} is an answer token:

    value_weight * SmoothL1(f̂_{i+1}, f_{i+1}) + token_weight * CE(lm_head(f̂_{i+1}), x_{i+2})

(EAGLE's 1.0 and 0.1). With ``--eagle-steps 2`` the draft also takes a second step from its own
output f̂_{i+1} (the pair (f̂_{i+1}, x_{i+2}) at position i + 1, exactly a depth-2 tree node in the
engine) and the same loss towards f_{i+2} and x_{i+3} is added with weight 0.8: the draft then
learns to continue its own guesses, which is what every node below depth 1 does. The corpus answers are the target's own greedy tokens, so the hard CE label
is the target's argmax. The feature noise is uniform, ``noise`` times the features' RMS wide
(EAGLE's absolute ±0.1 was sized for Vicuna's features). As in the Medusa recipe, the softmax is
restricted to the corpus's answer vocabulary, which becomes the draft's vocabulary at use.

Held-out metrics, without noise: ``top1[0]`` = the draft's next-token accuracy on the true
features (depth 1 of a tree); ``top1[1]`` = the share of positions where depth 1 *and* depth 2
are both right, depth 2 being drafted from the draft's own depth-1 output as in the engine, i.e.
how often a 2-token chain would be accepted whole.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from methods.core.hidden_states import HiddenStateRequest
from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.eagle import EagleDraftModel, EagleShape
from training.draft_vocab import DEFAULT_SIZE, UNKNOWN, draft_vocabulary
from training.recipes import Recipe


class EagleRecipe(Recipe):
    name = "eagle"
    top1_is_chain = True
    # batch_size counts corpus positions per step (whole conversations are packed up to it).
    defaults = {"epochs": 6, "lr": 3e-4, "batch_size": 4096, "warmup": 0.05, "weight_decay": 0.0}
    betas = (0.9, 0.95)
    clip_value = 0.5
    metric_label = ("Held-out accuracy of the draft: depth 1 = next token from the true features; "
                    "depth 1+2 = both of a 2-token chain right, depth 2 drafted from the draft's own output")
    metric_names = ("depth 1", "depth 1+2")

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--eagle-intermediate", type=int, default=None,
                           help="MLP width of the draft layer (default: the base's intermediate size)")
        group.add_argument("--eagle-draft-vocab", type=int, default=DEFAULT_SIZE,
                           help="draft vocabulary: the N most frequent answer tokens of the corpus, whose base head "
                                "rows the draft scores (0 = every answer token of the training split)")
        group.add_argument("--eagle-noise", type=float, default=0.05,
                           help="uniform feature noise, as a fraction of the features' RMS (full width)")
        group.add_argument("--eagle-value-weight", type=float, default=1.0, help="weight of the feature regression")
        group.add_argument("--eagle-token-weight", type=float, default=0.1, help="weight of the token cross-entropy")
        group.add_argument("--eagle-steps", type=int, default=1, choices=(1, 2),
                           help="draft steps trained per position: 1 = EAGLE's recipe (true features in); 2 = also "
                                "the next step drafted from the draft's own output, as a tree's depth 2 is "
                                "(weight --eagle-step-weight), so the draft learns to continue its own guesses")
        group.add_argument("--eagle-step-weight", type=float, default=0.8, help="loss weight of the second step")

    def request(self) -> HiddenStateRequest:
        return HiddenStateRequest(final=True)

    # ------------------------------------------------------------------ data
    def build(self, base, features, generator) -> EagleDraftModel:
        tokens, answer, starts = features.tokens, features.answer, features.starts
        self.tokens, self.answer, self.starts = tokens, answer, starts
        chosen = draft_vocabulary(features, self.args.eagle_draft_vocab, int(base.config.get_text_config().vocab_size),
                                  inherited=self.inherited_vocab)
        self.vocab, self.t2d, self.vocab_coverage = chosen.ids, chosen.t2d, chosen.coverage
        self._split(features)
        self.final = np.asarray(features.final)
        sample = self.final[np.linspace(0, len(self.final) - 1, 4096).astype(np.int64)].astype(np.float32)
        self.feature_rms = float(np.sqrt((sample ** 2).mean()))
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        self.shape = EagleShape.like_base(base, intermediate_size=self.args.eagle_intermediate)
        self.module = EagleDraftModel(self.shape, draft_vocab=torch.from_numpy(self.vocab))
        self.module.bind(base)
        self.base = base
        self._noise_generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        return self.module

    def _split(self, features) -> None:
        """Training and held-out conversations and positions: a position i counts when its label
        x_{i+2} is an answer token of the same conversation."""
        starts, answer = features.starts, features.answer
        seq = features.sequence_of_position
        train_seq = ~features.heldout[seq]
        usable = np.diff(starts) >= 3  # a pair and a label at least
        self.train_sequences = np.flatnonzero(usable & ~features.heldout)
        self.heldout_sequences = np.flatnonzero(usable & features.heldout)
        positions = np.arange(len(features.tokens))
        labelled = positions + 2 < starts[1:][seq]
        labelled[labelled] &= answer[positions[labelled] + 2]
        self.train_positions = np.flatnonzero(labelled & train_seq)
        self.heldout_positions = np.flatnonzero(labelled & ~train_seq)

    def summary(self) -> str:
        return (f"{len(self.train_positions)} training and {len(self.heldout_positions)} held-out positions "
                f"({len(self.train_sequences)} / {len(self.heldout_sequences)} conversations), draft vocabulary "
                f"{len(self.vocab)} tokens ({self.vocab_coverage:.1%} of held-out answer tokens), {sum(p.numel() for p in self.module.parameters()) / 1e6:.2f}M "
                f"parameters, feature RMS {self.feature_rms:.3f}")

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self._train_buckets(batch_size))

    def _train_buckets(self, batch_size: int) -> list[np.ndarray]:
        """Training conversations packed once, by length (little padding); epochs shuffle their order."""
        if getattr(self, "_buckets", (None, None))[0] != batch_size:
            lengths = np.diff(self.starts)
            by_length = self.train_sequences[np.argsort(lengths[self.train_sequences], kind="stable")]
            self._buckets = (batch_size, self._pack(by_length, batch_size))
        return self._buckets[1]

    def _pack(self, sequences: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """Consecutive conversations up to ``batch_size`` positions per batch (at least one)."""
        lengths = np.diff(self.starts)
        batches, current, size = [], [], 0
        for s in sequences:
            if current and size + lengths[s] > batch_size:
                batches.append(np.array(current))
                current, size = [], 0
            current.append(s)
            size += lengths[s]
        if current:
            batches.append(np.array(current))
        return batches

    def train_batches(self, rng, batch_size: int):
        buckets = self._train_buckets(batch_size)
        for i in rng.permutation(len(buckets)):
            yield buckets[i]

    # ------------------------------------------------------------------ maths
    def _tensors(self, sequences: np.ndarray, noise: bool):
        """Padded pairs of a batch: inputs, targets, labels and masks, [B, L] with L = longest - 1."""
        spans = [(int(self.starts[s]), int(self.starts[s + 1])) for s in sequences]
        width = max(b - a for a, b in spans) - 1
        batch = len(spans)
        hidden = self.final.shape[1]
        feats = torch.zeros(batch, width, hidden)
        targets = torch.zeros(batch, width, hidden)
        next_tokens = torch.zeros(batch, width, dtype=torch.long)
        labels = torch.full((batch, width), UNKNOWN, dtype=torch.long)
        trained = torch.zeros(batch, width, dtype=torch.bool)
        valid = torch.zeros(batch, width, dtype=torch.bool)
        for row, (a, b) in enumerate(spans):
            n = b - a - 1  # pairs (f_i, x_{i+1}) for i = 0 .. n-1
            f = torch.from_numpy(self.final[a:b].astype(np.float32))
            feats[row, :n] = f[:-1]
            targets[row, :n] = f[1:]
            next_tokens[row, :n] = torch.from_numpy(self.tokens[a + 1: b].astype(np.int64))
            valid[row, :n] = True
            m = n - 1  # labels x_{i+2} exist for i = 0 .. n-2
            labels[row, :m] = torch.from_numpy(self.t2d[self.tokens[a + 2: b]])
            trained[row, :m] = torch.from_numpy(self.answer[a + 2: b].copy())
        if noise and self.args.eagle_noise > 0:
            amplitude = self.args.eagle_noise * self.feature_rms
            feats = feats + (torch.rand(feats.shape, generator=self._noise_generator) - 0.5) * amplitude
        return feats, targets, next_tokens, labels, trained, valid

    def _first_pass(self, feats, next_tokens, valid):
        width = feats.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        visible = causal[None] & valid[:, None, :]
        visible |= torch.eye(width, dtype=torch.bool)[None]  # padded rows see themselves (no empty row)
        positions = torch.arange(width)[None]
        return self.module(feats, self.module.embed(next_tokens), positions, None, visible), visible

    def _second_pass(self, out, kv, visible, next_tokens):
        """Depth 2: the pair (f̂_{i+1}, x_{i+2}) at position i + 1, seeing the real pairs 0..i and
        itself (as a tree node under the root does in the engine), predicts f_{i+2} and x_{i+3}."""
        width = out.shape[1]
        following = torch.zeros_like(next_tokens)
        following[:, :-1] = next_tokens[:, 1:]  # x_{i+2}
        own = torch.eye(width, dtype=torch.bool)[None].expand(out.shape[0], -1, -1)
        out2, _ = self.module(out, self.module.embed(following), torch.arange(1, width + 1)[None], kv,
                              torch.cat([visible, own], dim=2))
        return out2

    @staticmethod
    def _shifted(x: torch.Tensor, fill) -> torch.Tensor:
        """x moved one position left (row i holds row i + 1's value), ``fill`` at the end."""
        out = torch.full_like(x, fill)
        out[:, :-1] = x[:, 1:]
        return out

    def _step_loss(self, predicted, targets, labels, trained) -> torch.Tensor:
        trained = trained & (labels != UNKNOWN)
        value = F.smooth_l1_loss(predicted[trained], targets[trained])
        token = F.cross_entropy(self.module.draft_logits(predicted[trained]), labels[trained])
        return self.args.eagle_value_weight * value + self.args.eagle_token_weight * token

    def loss(self, batch: np.ndarray) -> torch.Tensor:
        feats, targets, next_tokens, labels, trained, valid = self._tensors(batch, noise=True)
        (out, kv), visible = self._first_pass(feats, next_tokens, valid)
        loss = self._step_loss(out, targets, labels, trained)
        if self.args.eagle_steps >= 2:
            out2 = self._second_pass(out, kv, visible, next_tokens)
            targets2 = torch.zeros_like(targets)
            targets2[:, :-1] = targets[:, 1:]  # f_{i+2}
            loss = loss + self.args.eagle_step_weight * self._step_loss(
                out2, targets2, self._shifted(labels, UNKNOWN), self._shifted(trained, False))
        return loss

    @torch.no_grad()
    def evaluate(self, batch_size: int = 4096) -> dict:
        right1 = right12 = counted = 0
        for batch in self.heldout_progress(self._pack(self.heldout_sequences, batch_size), "batch"):
            feats, _, next_tokens, labels, trained, valid = self._tensors(batch, noise=False)
            (out, kv), visible = self._first_pass(feats, next_tokens, valid)
            pred1 = self.module.to_token_ids(self.module.draft_logits(out).argmax(-1))
            out2 = self._second_pass(out, kv, visible, next_tokens)
            pred2 = self.module.to_token_ids(self.module.draft_logits(out2).argmax(-1))
            truth1 = self._shifted(next_tokens, 0)  # x_{i+2}
            truth2 = self._shifted(truth1, 0)  # x_{i+3}
            has2 = self._shifted(trained, False)  # x_{i+3} is an answer token too
            ok1 = (pred1 == truth1) & (labels != UNKNOWN)
            right1 += int((ok1 & trained).sum())
            right12 += int((ok1 & (pred2 == truth2) & trained & has2).sum())
            counted += int(trained.sum())
        return {"top1": [round(right1 / max(counted, 1), 4), round(right12 / max(counted, 1), 4)],
                "positions": [counted, counted]}

    # ------------------------------------------------------------------ artifact
    def artifact_tensors(self) -> dict:
        tensors = dict(self.module.state_dict())
        tensors["draft_vocab"] = torch.from_numpy(self.vocab.astype(np.int32))
        return tensors

    def save(self, out, meta: dict) -> None:
        tensors = self.artifact_tensors()
        config = {
            "method": "eagle",
            "base_model_name_or_path": meta["base_model"],
            "shares_base_lm_head": True,  # embeddings and lm_head are the base's, not stored
            "draft_shape": self.shape.to_dict(),
            "draft_vocab_size": len(self.vocab),
            "feature_noise": {"fraction_of_rms": self.args.eagle_noise, "feature_rms": round(self.feature_rms, 4)},
            "loss_weights": {"value": self.args.eagle_value_weight, "token": self.args.eagle_token_weight},
            "base_fingerprint": base_fingerprint(self.base),
            "training": meta["training"],
            "metrics": meta["metrics"],
        }
        save_artifact(out, config, tensors, self.weights_file)
