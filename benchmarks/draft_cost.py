"""Draft time per step of the trained drafters: native draft layers and projections against torch ops.

    python benchmarks/draft_cost.py --methods eagle,eagle2,eagle3,hydra,medusa,dflash --per-subtask 1

The same drafter object drafts each prompt twice in a row, once with its layers run through the
lean target's native layer (methods/heads/native_layers.py) and its projection onto the draft
vocabulary through the skinny kernel (methods/heads/row_scores.py), and once with both turned
off (torch ops), in an order alternating per prompt so that machine noise hits both alike; the
target is the lean backend in float32 throughout. Reported per method and path: draft ms per
step (the engine's draft time over its steps: propose and accept), verify ms per step, whether
both paths gave the baseline's tokens, and the native path's share of the draft time. Run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
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
from methods.drafters import eagle_state
from methods.heads import hydra as hydra_heads
from methods.heads import row_scores

BUNDLED_QUESTIONS = REPO_ROOT / "data" / "bundled" / "question.jsonl"


class TorchOnly:
    """Turns the native draft path off while entered: the draft layers (the drafters ask for them
    once per turn) and the projections onto the draft vocabulary (methods/heads/row_scores.py)."""

    def __enter__(self):
        self.saved = eagle_state.native_draft, hydra_heads.native_prefix_layer, row_scores._native_library
        eagle_state.native_draft = lambda draft: None
        hydra_heads.native_prefix_layer = lambda prefix: None
        row_scores._native_library = lambda x, rows: None

    def __exit__(self, *exc):
        eagle_state.native_draft, hydra_heads.native_prefix_layer, row_scores._native_library = self.saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="eagle,eagle2,eagle3,hydra,medusa,dflash", help="comma-separated methods")
    parser.add_argument("--per-subtask", type=int, default=1, help="bundled questions per subtask (first turns)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per prompt")
    parser.add_argument("--threads", type=int, default=2, help="torch and native threads")
    args = parser.parse_args(argv)
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
    drafters = {m: make_drafter(m, "self:8", model, tokenizer) for m in methods}
    baseline = {}
    vanilla = make_drafter("vanilla", "self:8", model, tokenizer)
    for i, prompt in enumerate(prompts):
        baseline[i] = engine.generate(prompt, vanilla, config)[0]
    warm = new_conversation(tokenizer, model).prompt_ids("Write two sentences about the sea.")
    for m in methods:
        engine.generate(warm, drafters[m], config)
        with TorchOnly():
            engine.generate(warm, drafters[m], config)

    totals = {(m, path): {"draft": 0.0, "verify": 0.0, "steps": 0, "equal": 0} for m in methods
              for path in ("native", "torch")}
    for i, prompt in enumerate(prompts):
        for m in methods:
            for path in (("native", "torch") if i % 2 == 0 else ("torch", "native")):
                if path == "torch":
                    with TorchOnly():
                        tokens, stats = engine.generate(prompt, drafters[m], config)
                else:
                    tokens, stats = engine.generate(prompt, drafters[m], config)
                t = totals[(m, path)]
                t["draft"] += stats.draft_time
                t["verify"] += stats.verify_time
                t["steps"] += stats.decoding_steps
                t["equal"] += int(tokens == baseline[i])
        print(f"prompt {i + 1}/{len(prompts)} done", file=sys.stderr, flush=True)

    print(f"{len(prompts)} prompts, {args.max_new_tokens} new tokens, lean backend, float32, "
          f"{args.threads} threads")
    print(f"{'method':>8} {'path':>7} {'draft ms/step':>14} {'verify ms/step':>15} {'equal':>6}")
    for m in methods:
        for path in ("torch", "native"):
            t = totals[(m, path)]
            steps = max(1, t["steps"])
            print(f"{m:>8} {path:>7} {1000 * t['draft'] / steps:14.2f} {1000 * t['verify'] / steps:15.2f} "
                  f"{t['equal']:>3}/{len(prompts)}")
        ratio = (totals[(m, "native")]["draft"] / max(1, totals[(m, "native")]["steps"])) / \
            max(1e-9, totals[(m, "torch")]["draft"] / max(1, totals[(m, "torch")]["steps"]))
        print(f"{m:>8}  native draft time per step = {ratio:.2f}x torch's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
