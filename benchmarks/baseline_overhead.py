"""How much the engine adds to plain greedy decoding: our baseline against a bare KV-cache loop and
transformers' ``generate``, on one prompt, a fixed number of tokens, interleaved.

    python benchmarks/baseline_overhead.py --rounds 4 --max-new-tokens 128

All three produce exactly --max-new-tokens tokens (no stop token), so tokens/s compare the cost
per token only. The bare loop is the floor: one forward per token and an argmax, nothing else.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm import tqdm
from transformers import DynamicCache

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import EMBEDDED, load_model
from methods.drafters.vanilla import VanillaDrafter

PROMPT = "Explain how a bicycle pump pushes air into a tyre."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=EMBEDDED, help="target model (default: the embedded one)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens per generation")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the three loops")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(args.model_path, dtype="auto", device="auto")
    model, tokenizer, device = loaded.model, loaded.tokenizer, loaded.device
    engine = SpeculativeEngine(model, tokenizer)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=True,
                                           add_generation_prompt=True, return_dict=False)
    n = args.max_new_tokens

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def ours() -> int:
        ids, _ = engine.generate(prompt, VanillaDrafter(), DecodingConfig(max_new_tokens=n))
        return len(ids)

    @torch.inference_mode()
    def bare_loop() -> int:
        cache = DynamicCache()
        out = model(input_ids=torch.tensor([prompt], device=device), cache=cache, use_cache=True)
        token = out.logits[0, -1].argmax()
        for _ in range(n - 1):
            out = model(input_ids=token.view(1, 1), cache=cache, use_cache=True)
            token = out.logits[0, -1].argmax()
        sync()
        return n

    @torch.inference_mode()
    def hf_generate() -> int:
        ids = torch.tensor([prompt], device=device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id or 0)
        sync()
        return out.shape[1] - len(prompt)

    loops = {"ours": ours, "bare loop": bare_loop, "hf generate": hf_generate}
    for loop in loops.values():  # warm-up
        loop()
    seconds = dict.fromkeys(loops, 0.0)
    tokens = dict.fromkeys(loops, 0)
    for round_ in tqdm(range(args.rounds), desc="rounds", unit="round", file=sys.stderr):
        names = list(loops)
        names = names[round_ % 3:] + names[: round_ % 3]
        for name in names:
            start = time.perf_counter()
            tokens[name] += loops[name]()
            seconds[name] += time.perf_counter() - start
    speed = {name: tokens[name] / seconds[name] for name in loops}
    print(f"{args.rounds} rounds x {n} tokens on {device}, threads {torch.get_num_threads()}")
    for name in loops:
        print(f"{name:12s} {speed[name]:7.2f} tok/s  ours / this = {speed['ours'] / speed[name]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
