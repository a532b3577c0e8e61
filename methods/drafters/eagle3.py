"""EAGLE-3 (Li et al., 2025): EAGLE-2's dynamic tree, drafted from three fused target layers.

The draft (methods/heads/eagle3.py) reads, per real pair, the inputs of three target decoder
layers (2, L/2 and L-3 by default) instead of the final feature, and scores tokens with its own
lm_head over a reduced draft vocabulary whose columns map to target ids through d2t. Everything
else is EAGLE-2's (methods/drafters/eagle2.py): the pair cache catches up on the rows of the root
and the accepted nodes after each step (their three features, from the verification forward),
the tree grows by beam expansion on the draft's cumulative log-probability, and the engine
verifies it. As published, the tree is deterministic top-k at every temperature; with one-hot
drafts the engine's multi-candidate rejection sampling keeps T > 0 output distributed exactly as
the target's. A draft-vocabulary column is mapped to its target id before the engine sees it, so
acceptance only ever compares target ids.
"""

from __future__ import annotations

from typing import Any

import torch

from methods.core.drafter import check_options, resolve_options
from methods.core.hidden_states import HiddenStateRequest, HiddenStates
from methods.drafters.eagle2 import Eagle2Drafter, add_tree_options
from methods.drafters.trained import SHIPPED, artifact_folder, check_folder_option, recorded_source
from methods.heads.artifact import ArtifactError
from methods.heads.eagle3 import Eagle3DraftModel
from methods.heads.eagle3_format import load_eagle3

EMBEDDED_DRAFT = SHIPPED / "eagle3"
# Spec-Bench's evaluation/inference_eagle3.py.
GPU_DEFAULTS = {"total_token": 60, "depth": 5, "top_k": 10}
# Sized by measurement for the embedded model on a 2-core CPU, lean backend (docs/methods.md): since
# the draft was retrained on the corpus at scale 4 tokens a step pay (as for EAGLE-2), 3 did before.
CPU_DEFAULTS = {"total_token": 4, "depth": 1, "top_k": 2}
MINIMUM = {"total_token": 1, "depth": 0, "top_k": 1}


def parse_layers(text: str | None):
    """--eagle3-layers "2,15,27" -> (2, 15, 27); None stays None (the draft's own choice)."""
    if text is None:
        return None
    try:
        layers = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise ArtifactError(f"--eagle3-layers {text!r}: give three layer indices, e.g. 2,15,27") from None
    if len(layers) != 3 or min(layers) < 0:
        raise ArtifactError(f"--eagle3-layers {text!r}: give three non-negative layer indices, e.g. 2,15,27")
    return layers


class Eagle3Drafter(Eagle2Drafter):
    name = "eagle3"

    def __init__(self, draft: Eagle3DraftModel, total_token: int = 60, depth: int = 5, top_k: int = 10):
        super().__init__(draft, total_token=total_token, depth=depth, top_k=top_k)

    @property
    def hidden_state_request(self) -> HiddenStateRequest:
        # The draft knows its layers once bound to a target (the default depends on its depth).
        return HiddenStateRequest(layer_inputs=tuple(sorted(set(self.draft.feature_layers))))

    def pair_features(self, states: HiddenStates) -> torch.Tensor:
        """The fused feature: the three layer inputs side by side, in the draft's order."""
        return torch.cat([states.layer_inputs[i] for i in self.draft.feature_layers], dim=-1)

    def params(self) -> dict[str, Any]:
        return {"draft": recorded_source(self.draft), "total_token": self.total_token, "depth": self.depth,
                "top_k": self.top_k, "feature_layers": list(self.draft.feature_layers),
                "draft_vocab": int(self.draft.shape.draft_vocab_size or self.draft.shape.vocab_size)}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--eagle3-path", default=None,
                           help="EAGLE-3 draft: a published EAGLE-3 folder (config.json with draft_vocab_size + "
                                "model.safetensors/pytorch_model.bin), a `speculators` eagle3 folder, or one trained "
                                "by training/train_drafter.py --method eagle3; default: the draft shipped for the "
                                "embedded model")
        group.add_argument("--eagle3-layers", default=None,
                           help="the three target layers whose inputs are fused, e.g. 2,15,27 (default: what the "
                                "draft's config says, else 2, L/2 and L-3 of the target)")
        add_tree_options(group, "eagle3", CPU_DEFAULTS, GPU_DEFAULTS)

    @classmethod
    def check_args(cls, args) -> None:
        parse_layers(getattr(args, "eagle3_layers", None))
        check_options(args, "eagle3", MINIMUM)
        check_folder_option(args, "--eagle3-path", "a published, `speculators` or trained EAGLE-3 folder with "
                                                   "config.json and the draft weights")
        if getattr(args, "eagle3_path", None) is None:
            artifact_folder(args, "eagle3", "eagle3", "--eagle3-path", shipped=EMBEDDED_DRAFT)

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "Eagle3Drafter":
        options = resolve_options(args, "eagle3", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        folder = artifact_folder(args, "eagle3", "eagle3", "--eagle3-path", shipped=EMBEDDED_DRAFT)
        draft = load_eagle3(folder, model, feature_layers=parse_layers(getattr(args, "eagle3_layers", None)))
        return cls(draft, **options)
