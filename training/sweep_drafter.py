"""Choose a drafter's defaults for a device by measurement: baseline and configurations
interleaved per prompt in one process, on development prompts that are neither in the corpus
(training/corpus_prompts.jsonl) nor in any evaluation question set.

    nice -n 5 python -m training.sweep_drafter --method recycling \
        --config tree_nodes=8,tree_depth=4 --config tree_nodes=12,tree_depth=5

Prints, per configuration: mean accepted tokens per step (MAT), ms per step, and the speedup over
the baseline (geometric mean over prompts of baseline time / method time, with min and max).
Greedy decoding; every output is checked against the baseline's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter

import torch
from tqdm import tqdm

from methods.core.drafter import DecodingConfig
from methods.core.backends import CHOICES as BACKEND_CHOICES, resolve_backend
from methods.core.engine import SpeculativeEngine
from methods.registry import drafter_class
from methods.drafters.vanilla import VanillaDrafter

DEV_PROMPTS = [
    "Describe how to brew a good cup of coffee with a French press.",
    "Write a short poem about a fox crossing a frozen river at dawn.",
    "What are three differences between frogs and toads?",
    "Explain how a bicycle pump pushes air into a tyre.",
    "Give me a simple plan for cleaning a messy garage in one weekend.",
    "Write a Python function that counts the words in a string.",
    "Why do leaves change colour in the autumn?",
    "Write a short note inviting a colleague to a farewell lunch on Friday.",
    # Prompts that carry a context, like the summarization / RAG / translation groups, where
    # copy-based drafters (PLD, REST) find most of their matches. Written for this script.
    "Summarize the following notice in two sentences.\n\nThe town library will close its north "
    "wing from 3 March to 28 April while the roof is replaced. During the works, the children's "
    "section moves to the community hall on Mill Street, which opens from 9 am to 5 pm on weekdays "
    "and from 10 am to 2 pm on Saturdays. Books can still be returned through the drop box at the "
    "main entrance, and loans that fall due during the closure are extended automatically until "
    "the end of May. The reading room and the public computers in the south wing stay open as "
    "usual. Volunteers who help with the move on 1 and 2 March receive a free annual membership.",
    "Translate German to English: Der Zug nach Hamburg fährt heute wegen Bauarbeiten zwanzig "
    "Minuten später ab. Reisende mit Anschluss in Hannover sollten ihre Verbindung prüfen. Der "
    "Speisewagen ist geöffnet, und Getränke werden auch am Platz angeboten.",
    "Answer the question using the passage.\n\nPassage: The harbour crane at Eastport was built "
    "in 1912 to unload timber ships. It was driven by steam until 1954, when an electric motor "
    "replaced the boiler. The crane stopped working in 1981 after the timber trade moved to a "
    "deeper port, and a local society restored it as a museum piece in 2003. Today visitors can "
    "climb to the driver's cabin on the first Sunday of each month.\n\nQuestion: What powered "
    "the crane before 1954, and why did it stop working in 1981?",
    "A baker makes 36 rolls an hour and works for 5 hours. She sells the rolls in bags of 6 at "
    "2 dollars a bag. How much money does she make if she sells every roll? Show your steps.",
]


def parse_config(text: str) -> dict:
    """``key=value,...`` (whole numbers, decimals, true/false, other words as text), or a JSON object for values
    such as a choices tree: ``{"choices": [[0], [0, 0]]}``."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    config = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        config[key.strip()] = _config_value(value.strip())
    return config


def _config_value(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        return float(value)  # e.g. suffix's spec_factor=1.5
    except ValueError:
        return value


def make_drafter(method: str, config: dict, tokenizer, model, weights=None):
    """A drafter built from ``config`` (its constructor's keywords); trained ones load ``weights``
    or the folder shipped for the embedded model."""
    cls = drafter_class(method)
    if method in ("samd", "suffix"):  # their corpus index (and samd's fallback) come from the runner's options
        from evaluation.inference import build_parser

        args = build_parser().parse_args(["--method", method])
        for key, value in config.items():
            setattr(args, f"{method}_{key}", value)
        return cls.from_args(args, model, tokenizer)
    trained = {"medusa": ("medusa", "methods.heads.medusa:load_medusa"),
               "hydra": ("hydra", "methods.heads.hydra:load_hydra"),
               "eagle": ("eagle", "methods.heads.eagle_format:load_eagle"),
               "eagle2": ("eagle", "methods.heads.eagle_format:load_eagle"),
               "eagle3": ("eagle3", "methods.heads.eagle3_format:load_eagle3"),
               "space": ("space", "methods.heads.space:load_space"),
               "dflash": ("dflash", "methods.heads.dflash_format:load_dflash")}
    if method in trained:
        import importlib

        from methods.drafters.trained import SHIPPED

        kind, loader = trained[method]
        module, name = loader.split(":")
        return cls(getattr(importlib.import_module(module), name)(weights or SHIPPED / kind, model), **config)
    if method == "sps":  # the trained draft model (--weights, else the shipped one); draft options in config
        from methods.drafters.sps import shipped_draft
        from methods.heads.sps_draft import load_sps_draft

        return cls(load_sps_draft(weights or shipped_draft(), model), **config)
    if method == "rest":
        from methods.drafters.rest_datastore import default_datastore

        return cls(default_datastore(tokenizer), **config)
    return cls(**config)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--config", action="append", default=[], help="key=value,... for the drafter's constructor")
    parser.add_argument("--model-path", default="embedded")
    parser.add_argument("--weights", default=None,
                        help="trained drafter folder for medusa, hydra, eagle, eagle2, eagle3, space, dflash, or "
                             "sps's trained draft model [the one shipped for the embedded model]")
    parser.add_argument("--backend", default="auto", choices=list(BACKEND_CHOICES),
                        help="target forwards: hf, lean, auto (lean on the CPU) [auto]")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--prompts", type=int, default=len(DEV_PROMPTS))
    parser.add_argument("--warm", type=int, default=0,
                        help="first run every drafter on this many corpus prompts, untimed (hot-start methods)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's). On a machine shared with other jobs a "
                             "second thread mostly waits; MAT and forward sizes do not depend on it")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from methods.core.model_loading import load_model

    loaded = load_model(args.model_path, dtype="float32", device="cpu")
    engine = SpeculativeEngine(loaded.model, loaded.tokenizer, backend=resolve_backend(args.backend, loaded.model))
    tokenizer = loaded.tokenizer
    decoding = DecodingConfig(max_new_tokens=args.max_new_tokens,
                              stop_token_ids=frozenset({tokenizer.eos_token_id}))
    configs = [parse_config(c) for c in args.config]
    drafters = [make_drafter(args.method, c, tokenizer, loaded.model, args.weights) for c in configs]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                             add_generation_prompt=True, return_dict=False)
               for p in DEV_PROMPTS[: args.prompts]]
    engine.generate(prompts[0][:20], VanillaDrafter(), DecodingConfig(max_new_tokens=8))  # warm-up
    if args.warm:
        from training.make_corpus import DEFAULT_PROMPTS, read_prompts

        # Every 11th prompt: a mix of the corpus's categories.
        warm_prompts = [p["prompt"] for p in read_prompts(DEFAULT_PROMPTS)][::11][: args.warm]
        for text in tqdm(warm_prompts, desc="warm-up", unit="prompt", file=sys.stderr):
            ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                add_generation_prompt=True, return_dict=False)
            for drafter in drafters:
                engine.generate(ids, drafter, decoding)

    ratios = [[] for _ in configs]
    steps = [0] * len(configs)
    tokens = [0] * len(configs)
    times = [0.0] * len(configs)
    forward = [0] * len(configs)
    rank_hits: Counter = Counter()
    for i, prompt in enumerate(tqdm(prompts, desc="prompts", unit="prompt", file=sys.stderr)):
        base_ids, base = engine.generate(prompt, VanillaDrafter(), decoding)
        order = list(range(len(configs)))
        if i % 2:
            order.reverse()  # alternate the order so drift on the shared machine evens out
        for j in order:
            def on_step(step, drafter=drafters[j]):
                if args.method == "recycling" and len(step.tree):
                    kids = step.tree.children()[0]
                    for rank, node in enumerate(kids):
                        if step.tree.tokens[node].item() == step.committed[0]:
                            rank_hits[rank] += 1
                    rank_hits["steps"] += 1
            ids, stats = engine.generate(prompt, drafters[j], decoding, on_step=on_step)
            if ids != base_ids:
                print(f"MISMATCH on prompt {i} for {configs[j]}", file=sys.stderr)
                return 1
            ratios[j].append(base.wall_time / stats.wall_time)
            steps[j] += stats.decoding_steps
            tokens[j] += stats.new_tokens
            times[j] += stats.wall_time
            forward[j] += stats.forward_tokens
        tqdm.write(f"prompt {i}: baseline {base.new_tokens} tokens, {1000 * base.wall_time / base.decoding_steps:.0f} ms/token; "
                   + "; ".join(f"{configs[j]} x{ratios[j][-1]:.2f}" for j in range(len(configs))))
    print(f"{'config':45s} {'MAT':>5s} {'tok/fwd':>7s} {'ms/step':>8s} {'speedup':>8s} {'min':>6s} {'max':>6s}")
    for j, config in enumerate(configs):
        geo = math.exp(sum(math.log(r) for r in ratios[j]) / len(ratios[j]))
        print(f"{str(config):45s} {tokens[j] / steps[j]:5.2f} {forward[j] / steps[j]:7.1f} {1000 * times[j] / steps[j]:8.0f} "
              f"{geo:8.3f} {min(ratios[j]):6.2f} {max(ratios[j]):6.2f}")
    if rank_hits:
        total = rank_hits.pop("steps")
        print("root-level hit rate per rank:", {r: round(rank_hits[r] / total, 3) for r in sorted(rank_hits)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
