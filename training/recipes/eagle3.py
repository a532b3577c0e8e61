"""EAGLE-3's draft on a frozen base, trained with "training-time test" (TTT), sized for a CPU.

Per corpus conversation the draft runs over the pairs (g_i, x_{i+1}), g_i being the inputs of the
three feature layers at position i side by side, exactly as the engine feeds it
(methods/drafters/eagle3.py). That is step 0. Step s > 0 feeds the draft its own step-(s-1)
outputs as the pair (out_{s-1}(i), x_{i+1+s}) at position i + s, seeing the real pairs 0..i and
its own steps' entries at i (the "same position only" pattern), which is exactly how a node at
depth s + 1 of a tree sees the draft cache during drafting. Step s predicts x_{i+2+s}.

Loss: sum over steps of 0.8^s * CE(draft logits, x_{i+2+s}) over the positions whose label is an
answer token inside the draft vocabulary. The corpus answers are the target's own greedy tokens,
so the hard label is the target's argmax (EAGLE-3 uses the target's soft distribution restricted
to the draft vocabulary; at T = 0 they agree on what is being ranked first). There is no feature
regression, as published.

The draft vocabulary is the N most frequent answer tokens of the training split, in ascending id
order (d2t[d] = id - d, t2d marks the ids). The draft's lm_head starts from the base's rows for
those ids and its final norm from the base's final norm, so step 0 starts close to the base's own
head on the fused features, and both are trained.

Held-out metrics (no gradient): ``depth 1`` = step-0 accuracy; ``depth 1+2`` and
``depth 1+2+3`` = the share of positions where a chain drafted that deep would be accepted whole.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from methods.core.hidden_states import HiddenStateRequest
from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.eagle import EagleShape
from methods.heads.eagle3 import Eagle3DraftModel, Eagle3Shape, default_feature_layers
from training.draft_vocab import DEFAULT_SIZE, UNKNOWN, draft_vocabulary
from training.recipes.eagle import EagleRecipe


class Eagle3Recipe(EagleRecipe):
    name = "eagle3"
    defaults = {"epochs": 12, "lr": 1e-3, "batch_size": 4096, "warmup": 0.05, "weight_decay": 0.0}
    shared_note = ("the base's embeddings are shared and not stored here (the draft's own lm_head over "
                   "its draft vocabulary is).")
    metric_label = ("Held-out accuracy of the draft: depth 1 = next token from the fused target features; "
                    "depth 1+2(+3) = a 2 (3)-token chain right in full, later tokens drafted from the draft's "
                    "own outputs")

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--eagle3-intermediate", type=int, default=1024,
                           help="MLP width of the draft's midlayer")
        group.add_argument("--eagle3-draft-vocab", type=int, default=DEFAULT_SIZE,
                           help="draft vocabulary size N: the N most frequent answer tokens of the corpus (0 = all of them)")
        group.add_argument("--eagle3-layers", default=None,
                           help="three target layers whose inputs are fused, e.g. 2,15,27 (default: 2, L/2, L-3)")
        group.add_argument("--eagle3-ttt-steps", type=int, default=3,
                           help="training-time-test steps: step s learns to draft from the draft's own step s-1 "
                                "outputs (the published recipe uses 7; 3 keeps the CPU cost about 3 x EAGLE's)")
        group.add_argument("--eagle3-step-weight", type=float, default=0.8,
                           help="loss weight decay per TTT step (step s weighs this ** s)")

    def __init__(self, args) -> None:
        super().__init__(args)
        if args.eagle3_ttt_steps < 1:
            raise ValueError("--eagle3-ttt-steps must be at least 1")
        self.layers = None
        if args.eagle3_layers:
            self.layers = tuple(int(v) for v in str(args.eagle3_layers).split(","))
            if len(self.layers) != 3:
                raise ValueError("--eagle3-layers takes three layer indices, e.g. 2,15,27")

    @property
    def metric_names(self):
        return tuple("depth " + "+".join(str(d + 1) for d in range(s + 1)) for s in range(self.args.eagle3_ttt_steps))

    def request(self) -> HiddenStateRequest:
        if self.layers is None:
            raise RuntimeError("request() before the base is known")  # set by prepare()
        return HiddenStateRequest(layer_inputs=tuple(sorted(set(self.layers))))

    def prepare(self, base) -> None:
        """Resolve the default feature layers from the base's depth (before features are built)."""
        depth = int(base.config.get_text_config().num_hidden_layers)
        if self.layers is None:
            self.layers = default_feature_layers(depth)
        if not all(0 <= i < depth for i in self.layers):
            raise ValueError(f"--eagle3-layers {list(self.layers)}: the base has {depth} layers")

    # ------------------------------------------------------------------ data
    def build(self, base, features, generator) -> Eagle3DraftModel:
        tokens, answer, starts = features.tokens, features.answer, features.starts
        self.tokens, self.answer, self.starts = tokens, answer, starts
        vocab_size = int(base.get_output_embeddings().weight.shape[0])
        chosen = draft_vocabulary(features, self.args.eagle3_draft_vocab, vocab_size,
                                  inherited=self.inherited_vocab)
        keep = self.vocab = chosen.ids
        n = len(keep)
        self.t2d, self.vocab_coverage = chosen.t2d, chosen.coverage
        self._split(features)
        self.features = [np.asarray(features.layer_inputs[i]) for i in self.layers]
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        inner = EagleShape.like_base(base, intermediate_size=self.args.eagle3_intermediate, fc_bias=False)
        self.shape = Eagle3Shape(**{**inner.to_dict(), "num_layers": 1}, vocab_size=vocab_size,
                                 draft_vocab_size=n, feature_layers=tuple(self.layers))
        d2t = torch.from_numpy(keep - np.arange(n))
        self.module = Eagle3DraftModel(self.shape, d2t=d2t)
        with torch.no_grad():  # start from the base's own head on the kept rows
            self.module.lm_head.weight.copy_(base.get_output_embeddings().weight[torch.from_numpy(keep)])
            final_norm = getattr(getattr(base, "model", None), "norm", None)
            if final_norm is not None and final_norm.weight.shape == self.module.norm.weight.shape:
                self.module.norm.weight.copy_(final_norm.weight)
        self.module.bind(base)
        self.base = base
        return self.module

    def summary(self) -> str:
        return (f"{len(self.train_positions)} training and {len(self.heldout_positions)} held-out positions "
                f"({len(self.train_sequences)} / {len(self.heldout_sequences)} conversations), feature layers "
                f"{list(self.layers)}, draft vocabulary {len(self.vocab)} tokens "
                f"({self.vocab_coverage:.1%} of held-out answer tokens), "
                f"{sum(p.numel() for p in self.module.parameters()) / 1e6:.2f}M parameters, "
                f"{self.args.eagle3_ttt_steps} TTT steps")

    def _batch(self, sequences: np.ndarray):
        """Padded pairs of a batch: fused features [B, L, 3H], the tokens x_{i+1} [B, L], labels
        x_{i+2} in draft columns, which labels are trained, and which pairs exist."""
        spans = [(int(self.starts[s]), int(self.starts[s + 1])) for s in sequences]
        width = max(b - a for a, b in spans) - 1
        hidden = self.features[0].shape[1]
        feats = torch.zeros(len(spans), width, 3 * hidden)
        next_tokens = torch.zeros(len(spans), width, dtype=torch.long)
        labels = torch.full((len(spans), width), UNKNOWN, dtype=torch.long)
        trained = torch.zeros(len(spans), width, dtype=torch.bool)
        valid = torch.zeros(len(spans), width, dtype=torch.bool)
        for row, (a, b) in enumerate(spans):
            n = b - a - 1
            feats[row, :n] = torch.from_numpy(np.concatenate([f[a:b - 1] for f in self.features], axis=1)
                                              .astype(np.float32))
            next_tokens[row, :n] = torch.from_numpy(self.tokens[a + 1: b].astype(np.int64))
            valid[row, :n] = True
            labels[row, :n - 1] = torch.from_numpy(self.t2d[self.tokens[a + 2: b]])
            trained[row, :n - 1] = torch.from_numpy(self.answer[a + 2: b].copy())
        return feats, next_tokens, labels, trained, valid

    def _steps(self, feats, next_tokens, valid):
        """The draft's outputs at every TTT step, [B, L, H] each."""
        batch, width = next_tokens.shape
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        real = causal[None] & valid[:, None, :]
        real |= torch.eye(width, dtype=torch.bool)[None]  # padded rows see themselves (no empty row)
        own = torch.eye(width, dtype=torch.bool)[None].expand(batch, -1, -1)
        outputs, keys, values = [], [], []
        inputs, tokens = feats, next_tokens
        for s in range(self.args.eagle3_ttt_steps):
            visible = torch.cat([real] + [own] * s, dim=2) if s else real
            past = [(torch.cat(keys, 2), torch.cat(values, 2))] if s else None
            out, kv = self.module(inputs, self.module.embed(tokens), torch.arange(s, s + width)[None], past, visible)
            outputs.append(out)
            keys.append(kv[0][0])
            values.append(kv[0][1])
            inputs, tokens = out, self._shifted(tokens, 0)  # step s + 1 reads x_{i+2+s}
        return outputs

    def loss(self, batch: np.ndarray) -> torch.Tensor:
        feats, next_tokens, labels, trained, valid = self._batch(batch)
        total = feats.new_zeros(())
        for s, out in enumerate(self._steps(feats, next_tokens, valid)):
            mask = trained & (labels != UNKNOWN)
            if bool(mask.any()):
                total = total + self.args.eagle3_step_weight ** s * F.cross_entropy(
                    self.module.draft_logits(out[mask]), labels[mask])
            labels, trained = self._shifted(labels, UNKNOWN), self._shifted(trained, False)
        return total

    @torch.no_grad()
    def evaluate(self, batch_size: int = 4096) -> dict:
        steps = self.args.eagle3_ttt_steps
        right = [0] * steps
        counted = 0
        for batch in self.heldout_progress(self._pack(self.heldout_sequences, batch_size), "batch"):
            feats, next_tokens, labels, trained, valid = self._batch(batch)
            chain = trained.clone()  # positions counted: the depth-1 label is an answer token
            counted += int(trained.sum())
            truth, has = self._shifted(next_tokens, 0), trained  # x_{i+2+s}, and it is an answer token
            for s, out in enumerate(self._steps(feats, next_tokens, valid)):
                predicted = self.module.to_token_ids(self.module.draft_logits(out).argmax(-1))
                chain &= (predicted == truth) & has
                right[s] += int(chain.sum())
                truth, has = self._shifted(truth, 0), self._shifted(has, False)
        return {"top1": [round(r / max(counted, 1), 4) for r in right], "positions": [counted] * steps}

    # ------------------------------------------------------------------ artifact
    def artifact_tensors(self) -> dict:
        tensors = dict(self.module.state_dict())
        tensors["d2t"] = self.module.d2t.clone()
        t2d = torch.zeros(self.shape.vocab_size, dtype=torch.bool)
        t2d[torch.from_numpy(self.vocab)] = True
        tensors["t2d"] = t2d
        return tensors

    def save(self, out, meta: dict) -> None:
        s = self.shape
        tensors = self.artifact_tensors()
        config = {
            # The published EAGLE-3 config keys (Llama-style, one layer), so one loader reads both.
            "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
            "hidden_size": s.hidden_size, "intermediate_size": s.intermediate_size,
            "num_attention_heads": s.num_attention_heads, "num_key_value_heads": s.num_key_value_heads,
            "head_dim": s.head_dim, "num_hidden_layers": 1, "rms_norm_eps": s.rms_norm_eps,
            "rope_theta": s.rope_theta, "hidden_act": "silu", "vocab_size": s.vocab_size,
            "draft_vocab_size": s.draft_vocab_size, "feature_layers": list(s.feature_layers),
            # Ours: embeddings are the base's (not stored), and the base must be this one.
            "method": "eagle3",
            "base_model_name_or_path": meta["base_model"],
            "shares_base_embeddings": True,
            "ttt_steps": self.args.eagle3_ttt_steps,
            "base_fingerprint": base_fingerprint(self.base),
            "training": meta["training"],
            "metrics": meta["metrics"],
        }
        save_artifact(out, config, tensors, self.weights_file)
