"""Draft time per step of the trained drafters: half-precision and float32 weights on the native path, and torch ops.

    python benchmarks/draft_cost.py --methods eagle,eagle2,eagle3,hydra,medusa,dflash,sps --per-subtask 1

The same drafter object drafts each prompt once per path, in an order rotated per prompt so that
machine noise hits every path alike; the target is the lean backend in float32 throughout. The
paths (``--paths``):
- ``half``: the default while drafting: draft layers through the lean target's native layer
  (methods/heads/native_layers.py; EAGLE's, EAGLE-3's, Hydra's prefix layer, DFlash's, SpS's draft
  model) reading half-precision copies of their matrices, and the projections (the draft
  vocabulary, Medusa's and Hydra's heads, DFlash's context rows, SpS's draft-vocabulary rows of the
  lm_head) through the skinny kernel reading half-precision copies too
  (methods/core/backends/half_weights.py);
- ``float32-layers``: the default before draft layers read half-precision copies and DFlash's
  layer ran natively: the native layers read float32 matrices, DFlash's layer runs on torch ops
  (its projections through the half-precision kernel), the other projections as in ``half``;
- ``native``: the native paths with every weight read in float32;
- ``torch``: both turned off (torch ops).
Reported per method and path: draft ms per step (the engine's draft time over its steps: propose
and accept), verify ms per step, tokens per step, whether the path gave the baseline's tokens, and
each path's draft time against the first path's. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.speed_benchmark import make_drafter
from evaluation.record.questions import load_questions
from methods.core.conversation import new_conversation
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import EMBEDDED, load_model
from methods.core.paths import REPO_ROOT
from methods.drafters import dflash as dflash_drafter
from methods.drafters import eagle_state
from methods.heads import hydra as hydra_heads
from methods.heads import row_scores

BUNDLED_QUESTIONS = REPO_ROOT / "data" / "bundled" / "question.jsonl"


class TorchOnly:
    """Turns the native draft path off while entered: the draft layers (the drafters ask for them
    once per turn) and the projections onto the draft vocabulary (methods/heads/row_scores.py)."""

    def __enter__(self):
        self.saved = (eagle_state.native_draft, hydra_heads.native_prefix_layer, dflash_drafter.native_dflash,
                      row_scores._native_library)
        eagle_state.native_draft = lambda draft: None
        hydra_heads.native_prefix_layer = lambda prefix: None
        dflash_drafter.native_dflash = lambda draft: None
        row_scores._native_library = lambda x, rows: None

    def __exit__(self, *exc):
        (eagle_state.native_draft, hydra_heads.native_prefix_layer, dflash_drafter.native_dflash,
         row_scores._native_library) = self.saved


class Float32Weights:
    """The native path with every draft weight (layers and projections) read in float32 while entered."""

    def __enter__(self):
        self.saved = row_scores.DRAFT_WEIGHTS
        row_scores.DRAFT_WEIGHTS = "float32"

    def __exit__(self, *exc):
        row_scores.DRAFT_WEIGHTS = self.saved


class Float32Layers:
    """The draft layers as they ran before reading half-precision copies while entered: the native
    layers in float32, DFlash's layer on torch ops."""

    def __enter__(self):
        self.saved = row_scores.HALF_LAYERS, dflash_drafter.native_dflash
        row_scores.HALF_LAYERS = False
        dflash_drafter.native_dflash = lambda draft: None

    def __exit__(self, *exc):
        row_scores.HALF_LAYERS, dflash_drafter.native_dflash = self.saved


PATHS = {"half": contextlib.nullcontext, "float32-layers": Float32Layers, "native": Float32Weights,
         "torch": TorchOnly}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="eagle,eagle2,eagle3,hydra,medusa,dflash", help="comma-separated methods")
    parser.add_argument("--per-subtask", type=int, default=1, help="bundled questions per subtask (first turns)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per prompt")
    parser.add_argument("--threads", type=int, default=2, help="torch and native threads")
    parser.add_argument("--paths", default="half,native,torch",
                        help="comma-separated drafting paths to compare: half (the default drafting: native "
                             "layers, every draft weight read in half precision), float32-layers (the layers in "
                             "float32 and DFlash's on torch ops, as before), native (every weight float32), "
                             "torch (torch ops)")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        parser.error(f"--paths {args.paths}: choose among {', '.join(PATHS)}")
    torch.set_num_threads(args.threads)
    loaded = load_model(EMBEDDED, dtype="float32", device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    engine = SpeculativeEngine(model, tokenizer, backend="lean")
    conv = new_conversation(tokenizer, model)
    config = DecodingConfig(max_new_tokens=args.max_new_tokens, stop_token_ids=conv.stop_token_ids,
                            stop_strings=conv.stop_strings)
    seen: dict[str, int] = {}
    prompts = []
    for q in load_questions(str(BUNDLED_QUESTIONS)):
        if seen.get(q.category, 0) < args.per_subtask:
            seen[q.category] = seen.get(q.category, 0) + 1
            prompts.append(new_conversation(tokenizer, model).prompt_ids(q.turns[0]))
    methods = [m for m in args.methods.split(",") if m]
    # No --drafter-path: sps drafts with its default (the shipped trained draft on the embedded model).
    drafters = {m: make_drafter(m, None, model, tokenizer) for m in methods}
    baseline = {}
    vanilla = make_drafter("vanilla", None, model, tokenizer)
    for i, prompt in enumerate(prompts):
        baseline[i] = engine.generate(prompt, vanilla, config)[0]
    warm = new_conversation(tokenizer, model).prompt_ids("Write two sentences about the sea.")
    for m in methods:
        for path in paths:
            with PATHS[path]():
                engine.generate(warm, drafters[m], config)

    totals = {(m, path): {"draft": 0.0, "verify": 0.0, "steps": 0, "tokens": 0, "equal": 0} for m in methods
              for path in paths}
    for i, prompt in enumerate(prompts):
        for m in methods:
            for path in paths[i % len(paths):] + paths[:i % len(paths)]:
                with PATHS[path]():
                    tokens, stats = engine.generate(prompt, drafters[m], config)
                t = totals[(m, path)]
                t["draft"] += stats.draft_time
                t["verify"] += stats.verify_time
                t["steps"] += stats.decoding_steps
                t["tokens"] += len(tokens)
                t["equal"] += int(tokens == baseline[i])
        print(f"prompt {i + 1}/{len(prompts)} done", file=sys.stderr, flush=True)

    print(f"{len(prompts)} prompts, {args.max_new_tokens} new tokens, lean backend, float32 target, "
          f"{args.threads} threads")
    print(f"{'method':>8} {'path':>7} {'draft ms/step':>14} {'verify ms/step':>15} {'tokens/step':>12} "
          f"{'equal':>6} {'draft vs ' + paths[0]:>16}")
    for m in methods:
        first = totals[(m, paths[0])]
        first_draft = first["draft"] / max(1, first["steps"])
        for path in paths:
            t = totals[(m, path)]
            steps = max(1, t["steps"])
            print(f"{m:>8} {path:>7} {1000 * t['draft'] / steps:14.2f} {1000 * t['verify'] / steps:15.2f} "
                  f"{t['tokens'] / steps:12.2f} {t['equal']:>3}/{len(prompts)} "
                  f"{(t['draft'] / steps) / max(1e-9, first_draft):15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
