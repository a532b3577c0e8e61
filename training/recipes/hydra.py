"""Hydra heads (``mlp`` arch, grounded) on a frozen base, teacher-forced.

Head i reads ``[f_t, E(x_{t+1}), ..., E(x_{t+1+i})]`` (the base's final feature at t and the base's
input embeddings of the next i + 1 corpus tokens) and learns x_{t+2+i}. The corpus tokens are the
target's own greedy answers, so teacher forcing with them is the paper's teacher distillation at
T = 0. Loss: sum_i decay^i * CE, with the softmax restricted to the corpus's answer vocabulary
(training/recipes/future_heads.py, shared with Medusa).

As Hydra++ does, uniform noise is added to the base features during training only (NEFTune
style): U(-1, 1) * alpha / sqrt(seq_len * H), seq_len being the length of the position's
conversation. The heads project with the base's lm_head, which is not saved.
"""

from __future__ import annotations

import numpy as np
import torch

from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.hydra import HydraHeads
from training.recipes.future_heads import FutureHeadsRecipe


class HydraRecipe(FutureHeadsRecipe):
    name = "hydra"
    defaults = {"epochs": 3, "lr": 1e-3, "batch_size": 256, "warmup": 0.05, "weight_decay": 0.0}
    metric_label = ("Held-out top-1 accuracy per head, teacher-forced (head i reads f_t and the true "
                    "x_{t+1..t+1+i}, guesses the token i + 2 ahead)")

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--hydra-heads", type=int, default=3,
                           help="number of heads K (head i reads f_t and the embeddings of x_{t+1..t+1+i}, "
                                "guesses x_{t+2+i})")
        group.add_argument("--hydra-layers", type=int, default=1,
                           help="blocks per head (the first conditioned, the others one shared residual block)")
        cls.add_vocab_argument(group)
        group.add_argument("--hydra-decay", type=float, default=0.8, help="loss weight of head i is decay**i")
        group.add_argument("--hydra-noise", type=float, default=5.0,
                           help="alpha of the uniform training noise on the base features, "
                                "U(-1, 1) * alpha / sqrt(seq_len * hidden); 0 = none")

    def head_options(self) -> tuple[int, int, float]:
        if self.args.hydra_noise < 0:
            raise ValueError("--hydra-noise must be at least 0")
        return self.args.hydra_heads, self.args.hydra_layers, self.args.hydra_decay

    def make_module(self, hidden: int, draft_vocab: torch.Tensor) -> HydraHeads:
        return HydraHeads(hidden, self.args.hydra_heads, self.args.hydra_layers, grounded=True, arch="mlp",
                          draft_vocab=draft_vocab)

    def build(self, base, features, generator) -> HydraHeads:
        module = super().build(base, features, generator)
        # The base's input embeddings of the tokens after t: frozen, shared, never saved.
        self.embeddings = base.get_input_embeddings().weight.detach()
        return module

    def head_logits(self, index: np.ndarray, training: bool) -> torch.Tensor:
        f = self.features_at(index)  # [B, H]
        batch, hidden = f.shape
        alpha = self.args.hydra_noise
        if training and alpha > 0:
            scale = alpha / np.sqrt(self.sequence_length[index] * hidden)
            f = f + (torch.rand_like(f) * 2 - 1) * torch.from_numpy(scale).float()[:, None]
        heads = self.module.num_heads
        # x_{t+1} .. x_{t+heads}; indices past the corpus end are clamped: those labels are ignored.
        ahead = np.minimum(index[:, None] + 1 + np.arange(heads), len(self.tokens) - 1)
        emb = self.embeddings[torch.from_numpy(self.tokens[ahead].astype(np.int64))].float()  # [B, K, H]
        logits = []
        for i in range(heads):
            inputs = torch.cat([f, emb[:, : i + 1].reshape(batch, -1)], dim=-1)
            logits.append(self.module.head_hidden(i, inputs) @ self.rows.T)
        return torch.stack(logits)  # [K, B, vocab]

    def summary(self) -> str:
        return super().summary() + f", feature noise alpha {self.args.hydra_noise:g}"

    # ------------------------------------------------------------------ artifact
    weights_file = "hydra_lm_head.safetensors"

    def artifact_tensors(self) -> dict:
        tensors = dict(self.module.hydra_state())
        tensors["draft_vocab"] = torch.from_numpy(self.vocab.astype(np.int32))
        return tensors

    def save(self, out, meta: dict) -> None:
        tensors = self.artifact_tensors()
        hidden, heads = self.module.hidden, self.module.num_heads
        config = {
            "method": "hydra",
            # The published Hydra keys, so that one loader reads both kinds of folder.
            "hydra_num_heads": heads,
            "hydra_num_layers": self.module.num_layers,
            "hydra_head_arch": "mlp",
            "grounded_heads": True,
            "hidden_state_offset": 0,
            "base_model_name_or_path": meta["base_model"],
            "shares_base_lm_head": True,
            "head_shapes": {"hydra_mlp.{i}.0.linear.weight": [hidden, f"(i+2)*{hidden}"],
                            "hydra_mlp.{i}.0.res_connection.weight": [hidden, f"(i+2)*{hidden}"],
                            "draft_vocab": [len(self.vocab)]},
            "draft_vocab_size": len(self.vocab),
            "recipe": {"decay": self.args.hydra_decay, "feature_noise_alpha": self.args.hydra_noise},
            "base_fingerprint": base_fingerprint(self.base),
            "training": meta["training"],
            "metrics": meta["metrics"],
        }
        save_artifact(out, config, tensors, self.weights_file)
