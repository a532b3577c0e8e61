"""Medusa-1 heads on a frozen base (the Medusa paper's recipe, sized for a small CPU budget).

Head k reads the final feature f_t and learns the token at t + k + 2, for every t whose label is
an answer token of the corpus. Loss: sum_k 0.8^k * CE(head_k(f_t), x_{t+k+2}), with the softmax
restricted to the corpus's answer vocabulary (training/recipes/future_heads.py, shared with Hydra).
"""

from __future__ import annotations

import numpy as np
import torch

from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.medusa import MedusaHeads
from training.recipes.future_heads import IGNORE, UNKNOWN, FutureHeadsRecipe  # noqa: F401 (re-exported)


class MedusaRecipe(FutureHeadsRecipe):
    name = "medusa"
    defaults = {"epochs": 3, "lr": 1e-3, "batch_size": 256, "warmup": 0.05, "weight_decay": 0.0}

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--medusa-heads", type=int, default=4, help="number of heads K (head k guesses t+k+2)")
        group.add_argument("--medusa-layers", type=int, default=1, help="residual blocks per head")
        cls.add_vocab_argument(group)
        group.add_argument("--medusa-decay", type=float, default=0.8, help="loss weight of head k is decay**k")

    def head_options(self) -> tuple[int, int, float]:
        return self.args.medusa_heads, self.args.medusa_layers, self.args.medusa_decay

    def make_module(self, hidden: int, draft_vocab: torch.Tensor) -> MedusaHeads:
        return MedusaHeads(hidden, self.args.medusa_heads, self.args.medusa_layers, draft_vocab=draft_vocab)

    def head_logits(self, index: np.ndarray, training: bool) -> torch.Tensor:
        return self.module.head_features(self.features_at(index)) @ self.rows.T  # [K, B, vocab]

    # ------------------------------------------------------------------ artifact
    weights_file = "medusa_lm_head.safetensors"

    def artifact_tensors(self) -> dict:
        tensors = dict(self.module.medusa_state())
        tensors["draft_vocab"] = torch.from_numpy(self.vocab.astype(np.int32))
        return tensors

    def save(self, out, meta: dict) -> None:
        tensors = self.artifact_tensors()
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
        save_artifact(out, config, tensors, self.weights_file)
