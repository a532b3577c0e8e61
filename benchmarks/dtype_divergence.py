"""Where does a lower-precision target leave the float32 one, and how close was the call there?

    python benchmarks/dtype_divergence.py --dtypes bfloat16 float16 --questions 16 --max-new-tokens 64

Greedy baseline decoding of the first turn of the bundled questions, once with the model in
float32 (the reference) and once in each lower dtype. For every question where the texts part,
it prints the first differing token and the reference's top-1 minus top-2 logit margin there
(and the lower dtype's own margin), next to the spread of margins over all tokens. This is the
measurement behind equal.py's near-tie threshold (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from methods.core.conversation import new_conversation
from evaluation.compare.equality import first_divergence
from evaluation.record.questions import load_questions, question_file_for_bench
from evaluation.compare.tables import format_table
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import EMBEDDED, load_model
from methods.drafters.vanilla import VanillaDrafter


def greedy_runs(model_path: str, dtype: str, prompts: list[str], max_new_tokens: int):
    """(token ids, margins) of the first turn of every prompt, greedy, on the CPU."""
    loaded = load_model(model_path, dtype=dtype, device="cpu")
    engine = SpeculativeEngine(loaded.model, loaded.tokenizer)
    runs = []
    for text in tqdm(prompts, desc=dtype, unit="q", file=sys.stderr):
        conv = new_conversation(loaded.tokenizer, loaded.model, "auto")
        config = DecodingConfig(max_new_tokens=max_new_tokens, stop_token_ids=conv.stop_token_ids,
                                stop_strings=conv.stop_strings)
        tokens, stats = engine.generate(conv.prompt_ids(text), VanillaDrafter(), config)
        runs.append((tokens, stats.margins))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", default=EMBEDDED, help="target model (default: embedded)")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"],
                        choices=["bfloat16", "float16"], help="lower precisions to compare with float32")
    parser.add_argument("--questions", type=int, default=16, help="first N questions of the bundled set")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per answer")
    args = parser.parse_args()

    questions = load_questions(question_file_for_bench("bundled"))[: args.questions]
    prompts = [q.turns[0] for q in questions]
    reference = greedy_runs(args.model_path, "float32", prompts, args.max_new_tokens)
    all_margins = sorted(m for _, margins in reference for m in margins)
    print(f"float32 margins over {len(all_margins)} tokens: median {statistics.median(all_margins):.3f}, "
          f"10th percentile {all_margins[len(all_margins) // 10]:.3f}, smallest {all_margins[0]:.4f}")
    for dtype in args.dtypes:
        rows = []
        for question, (ref_tokens, ref_margins), (tokens, margins) in zip(
                questions, reference, greedy_runs(args.model_path, dtype, prompts, args.max_new_tokens)):
            index = first_divergence(tokens, ref_tokens)
            if index is None or index >= min(len(tokens), len(ref_tokens)):
                continue  # equal, or one stopped earlier (no token pair to compare)
            rank = sum(m < ref_margins[index] for m in all_margins) / len(all_margins)
            rows.append([str(question.question_id), question.category, str(index),
                         f"{ref_margins[index]:.4f}", f"{margins[index]:.4f}", f"{100 * rank:.1f}%"])
        print(f"\n{dtype} against float32: {len(rows)} of {len(questions)} answers diverge")
        if rows:
            print(format_table(["Question", "Category", "Token", "float32 margin", f"{dtype} margin",
                                "Percentile of float32 margins"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
