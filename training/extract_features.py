"""Run the frozen target once over a corpus for every drafter that will be trained on it.

    python -m training.extract_features --model-path embedded --corpus data/corpus/smollm2_corpus.jsonl.gz

Each trainer asks for the hidden states its method reads (Medusa, Hydra and EAGLE the final
feature; EAGLE-3 the inputs of three layers; DFlash those of several more). Left to themselves,
five trainers would run the target over a corpus of millions of positions five times; this runs
it once for the union of their requests, and every later `training/train_drafter.py` finds its
states inside that run (training/features.py). The run saves its progress every minute and
resumes where it stopped. Recipe options that change what a method reads (e.g. --eagle3-layers)
are taken as train_drafter takes them, and must then be given to both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from methods.core.backends import CHOICES as BACKEND_CHOICES, BackendError
from methods.core.model_loading import EMBEDDED, load_model
from training.features import CorpusError, build_features, union
from training.recipes import RECIPES, recipe_class
from training.train_drafter import DEFAULT_CORPUS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.extract_features", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--methods", default=",".join(RECIPES),
                        help="comma-separated methods whose states to store (methods that read none, such as "
                             "space and sps, add nothing)")
    parser.add_argument("--model-path", default=EMBEDDED,
                        help="the frozen target: 'embedded', a .gguf file, a local Hugging Face folder or a hub id")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="self-distillation corpus (gzip JSONL)")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N conversations (give train_drafter the same --limit)")
    parser.add_argument("--max-length", type=int, default=1024,
                        help="tokens per conversation at most (give train_drafter the same --max-length)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="share held out when the corpus has no 'split' field (as train_drafter's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="device for the target")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                        help="the engine backend the target runs on: lean (its native layer for float32 on a CPU "
                             "with the native library: 1.3-1.7x the positions/s of hf on a 2-core AMD EPYC), hf "
                             "(the model's own forward); auto = lean on the CPU where it runs the model, else hf "
                             "[auto]. The same states up to float32 rounding")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for name in RECIPES:
        recipe_class(name).add_arguments(parser.add_argument_group(f"method {name}"))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in RECIPES]
    if unknown or not methods:
        parser.error(f"--methods: {', '.join(unknown) or 'none given'}; known: {', '.join(RECIPES)}")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if not Path(args.corpus).is_file():
        parser.error(f"--corpus: {args.corpus} is not a file")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model_path, dtype="float32", device=args.device)
    requests = []
    for name in methods:
        try:
            recipe = recipe_class(name)(argparse.Namespace(**vars(args)))
            recipe.prepare(loaded.model)
        except ValueError as exc:  # an option this base cannot take, e.g. a layer it does not have
            parser.error(f"{name}: {exc}")
        request = recipe.request()
        print(f"{name}: final feature {'yes' if request.final else 'no'}, layer inputs {list(request.layer_inputs)}")
        requests.append(request)
    request = union(*requests)
    if not request:
        print("none of these methods reads target states: nothing to run")
        return 0
    started = time.perf_counter()
    try:
        features = build_features(loaded.model, loaded.tokenizer, Path(args.corpus), request, limit=args.limit,
                                  max_length=args.max_length, heldout_fraction=args.heldout_fraction,
                                  progress=not args.no_progress, backend=args.backend)
    except (CorpusError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(features.tokens):,} positions of {len(features.heldout):,} conversations in {features.folder} "
          f"(final feature {'yes' if features.final is not None else 'no'}, layer inputs "
          f"{sorted(features.layer_inputs)}), {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
