"""Generate a conversation corpus with the target model itself.

The corpus feeds REST's datastore (and later the training of draft heads and a draft model), so
it must come from prompts that share nothing with any evaluation question set: the default
prompt file ``training/corpus_prompts.jsonl`` holds original prompts written for this project.
Each prompt is formatted with the model's chat template and answered greedily; generation is
batched (left padding) to keep the CPU time modest.

    nice -n 10 python -m training.make_corpus --model-path embedded \
        --out data/corpus/smollm2_corpus.jsonl.gz

Output: gzip JSONL, one conversation per line:
    {"id": ..., "category": ..., "model": ..., "max_new_tokens": ..., "finished": bool,
     "conversations": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}
``finished`` is False when the answer was cut at ``--max-new-tokens``. The run is resumable:
ids already in the output file are skipped (new batches are appended as gzip members).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

DEFAULT_PROMPTS = Path(__file__).resolve().parent / "corpus_prompts.jsonl"


def read_prompts(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def done_ids(out: Path) -> set[str]:
    if not out.exists():
        return set()
    with gzip.open(out, "rt", encoding="utf-8") as f:
        return {json.loads(line)["id"] for line in f if line.strip()}


@torch.inference_mode()
def answer_batch(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[tuple[str, bool]]:
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    # The chat template already holds the special tokens: do not add a BOS a second time.
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    answers = []
    for row in out[:, batch["input_ids"].shape[1]:]:
        ids = row.tolist()
        finished = tokenizer.eos_token_id in ids
        if finished:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        answers.append((tokenizer.decode(ids, skip_special_tokens=True).strip(), finished))
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", default="embedded",
                        help="'embedded' (default), a .gguf file, a local folder or a hub id")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS,
                        help="JSONL with 'id', 'prompt' and optional 'category' (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output .jsonl.gz")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts (smoke tests)")
    args = parser.parse_args(argv)

    from methods.core.model_loading import EMBEDDED_MODEL_ID, EMBEDDED, load_model

    loaded = load_model(args.model_path, dtype=args.dtype, device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    tokenizer.padding_side = "left"  # batched generation continues every row from its end
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_id = EMBEDDED_MODEL_ID if args.model_path == EMBEDDED else str(args.model_path)

    prompts = read_prompts(args.prompts)[: args.limit]
    skip = done_ids(args.out)
    todo = [p for p in prompts if p["id"] not in skip]
    print(f"{len(todo)} prompts to answer ({len(skip)} already in {args.out})", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(todo), unit="conv") as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start: start + args.batch_size]
            answers = answer_batch(model, tokenizer, [p["prompt"] for p in batch], args.max_new_tokens)
            # One gzip member per batch: a crash loses at most the batch in flight.
            with gzip.open(args.out, "at", encoding="utf-8") as f:
                for p, (answer, finished) in zip(batch, answers):
                    f.write(json.dumps({
                        "id": p["id"], "category": p.get("category", ""), "model": model_id,
                        "max_new_tokens": args.max_new_tokens, "finished": finished,
                        "conversations": [{"role": "user", "content": p["prompt"]},
                                          {"role": "assistant", "content": answer}],
                    }, ensure_ascii=False) + "\n")
            bar.update(len(batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
