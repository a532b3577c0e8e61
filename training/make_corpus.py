"""Generate a self-distillation corpus: the target model's greedy answers to original prompts.

The corpus feeds REST's datastore and the training of draft heads (and of a draft model), so it
must come from prompts that share nothing with any evaluation question set: the default prompt
file ``training/corpus_prompts.jsonl`` holds prompts written for this project
(``training/corpus_prompt_sources.py`` writes most of them; ``training/corpus_leakage.py``
checks them against the evaluation sets). Each prompt is formatted with the model's chat
template and answered greedily. Generation is batched with left padding; the prompts are sorted
by length first so that a batch holds rows of similar length and little time goes on padding.

The corpus in data/corpus/ was made by four single-threaded processes, one shard each (on a busy
CPU the intra-op threads of a model this small mostly wait on each other), then merged:

    for k in 0 1 2 3; do
        python -m training.make_corpus --model-path embedded --out shard$k.jsonl.gz \
            --max-new-tokens 288 --batch-size 32 --threads 1 --shard $k/4 &
    done; wait
    python -m training.make_corpus --out data/corpus/smollm2_corpus.jsonl.gz --merge shard?.jsonl.gz

Output: gzip JSONL, one conversation per line:
    {"id", "category", "split": "train" | "heldout", "model", "max_new_tokens",
     "finished": bool, "prompt_token_ids": [...], "answer_token_ids": [...],
     "conversations": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}

``prompt_token_ids`` is the chat-formatted prompt as the model saw it (ending with the assistant
header). ``answer_token_ids`` are the greedy ids exactly as generated, up to but excluding the
end-of-sequence token; ``finished`` says whether an end-of-sequence token followed (False: the
answer was cut at ``--max-new-tokens``). Training targets must use these ids: decoding and
re-tokenizing the text does not always give the same ids back. The assistant ``content`` is
``tokenizer.decode(answer_token_ids, skip_special_tokens=True)``, not stripped.

``split`` holds out about a tenth of every category (``--heldout-fraction``) for acceptance
evaluation of trained drafters: within a category the prompts with the smallest SHA-256 of their
id are held out, at least one per category of two or more, so the split depends only on the
prompt file, never on the order of generation, ``--limit`` or a resumed run.

The run is resumable: ids already in the output file are skipped (every batch is appended as its
own gzip member, so a crash loses at most the batch in flight). Resuming with another model or
``--max-new-tokens`` than the file was started with is refused.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

DEFAULT_PROMPTS = Path(__file__).resolve().parent / "corpus_prompts.jsonl"
TRAIN, HELDOUT = "train", "heldout"


def read_prompts(path: Path) -> list[dict]:
    prompts, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            for key in ("id", "prompt"):
                if not isinstance(record.get(key), str) or not record[key]:
                    raise ValueError(f"{path}:{number}: field {key!r} missing or not a non-empty string")
            if record["id"] in seen:
                raise ValueError(f"{path}:{number}: duplicate id {record['id']!r}")
            seen.add(record["id"])
            prompts.append(record)
    return prompts


def _id_hash(prompt_id: str) -> str:
    return hashlib.sha256(prompt_id.encode("utf-8")).hexdigest()


def assign_splits(prompts: list[dict], heldout_fraction: float = 0.1) -> dict[str, str]:
    """id -> "train" or "heldout": per category, the round(fraction * n) ids (at least one when
    the category has two or more prompts) with the smallest SHA-256 are held out."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout fraction must lie in [0, 1), got {heldout_fraction}")
    by_category: dict[str, list[str]] = defaultdict(list)
    for p in prompts:
        by_category[p.get("category", "")].append(p["id"])
    splits = {}
    for ids in by_category.values():
        n_heldout = round(heldout_fraction * len(ids))
        if heldout_fraction > 0 and len(ids) >= 2:
            n_heldout = max(1, n_heldout)
        ranked = sorted(ids, key=_id_hash)
        splits.update({i: HELDOUT for i in ranked[:n_heldout]})
        splits.update({i: TRAIN for i in ranked[n_heldout:]})
    return splits


def read_corpus(out: Path) -> list[dict]:
    if not out.exists():
        return []
    with gzip.open(out, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def merge_corpora(parts: list[Path], out: Path, prompts: list[dict]) -> int:
    """Write the records of shard files into one corpus, in prompt-file order, as a single gzip
    member without a timestamp (the same records give the same bytes). Returns the count."""
    order = {p["id"]: i for i, p in enumerate(prompts)}
    records: dict[str, dict] = {}
    for part in parts:
        for r in read_corpus(part):
            if r["id"] in records:
                raise SystemExit(f"{part}: id {r['id']!r} is also in another shard")
            if r["id"] not in order:
                raise SystemExit(f"{part}: id {r['id']!r} is not in the prompt file")
            records[r["id"]] = r
    missing = [p["id"] for p in prompts if p["id"] not in records]
    if missing:
        print(f"warning: {len(missing)} prompts have no answer in the shards, e.g. {missing[:3]}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        for r in sorted(records.values(), key=lambda r: order[r["id"]]):
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    tmp.replace(out)
    return len(records)


def corpus_stats(records: list[dict]) -> str:
    """A table of conversations, answer tokens and cut answers per category and per split."""
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        for key in (("category", r.get("category", "")), ("split", r.get("split", "")), ("all", "")):
            row = rows[key]
            row[0] += 1
            row[1] += len(r.get("answer_token_ids", []))
            row[2] += not r.get("finished", False)
    lines = [f"{'':24} {'convs':>6} {'answer tokens':>14} {'cut':>5}"]
    for (kind, name), (n, tokens, cut) in sorted(rows.items(), key=lambda kv: ("category split all".split().index(kv[0][0]), kv[0][1])):
        lines.append(f"{(kind + ' ' + name).strip():24} {n:6d} {tokens:14d} {cut:5d}")
    return "\n".join(lines)


def check_resumable(records: list[dict], out: Path, model_id: str, max_new_tokens: int) -> None:
    """A resumed run must add answers of the same kind as those already in the file."""
    for r in records:
        if "answer_token_ids" not in r:
            raise SystemExit(f"{out}: record {r.get('id')!r} has no answer_token_ids (an older corpus); "
                             "write to a new file or delete this one")
        if r.get("model") != model_id or r.get("max_new_tokens") != max_new_tokens:
            raise SystemExit(f"{out}: record {r['id']!r} was made with model {r.get('model')!r} and "
                             f"max_new_tokens {r.get('max_new_tokens')}, this run uses {model_id!r} and "
                             f"{max_new_tokens}; write to a new file or use the same settings")


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt exactly as the evaluation runner formats a first turn (chat template)."""
    from methods.core.conversation import Conversation

    return Conversation(tokenizer, "chat").prompt_ids(prompt)


def eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.inference_mode()
def answer_batch(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int,
                 stop_ids: set[int]) -> list[tuple[list[int], bool]]:
    """Greedy answers of a left-padded batch: (ids before the first stop token, stopped?)."""
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids], device=model.device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=model.device)
    out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=pad, eos_token_id=sorted(stop_ids))
    answers = []
    for row in out[:, width:].tolist():
        stop = next((k for k, t in enumerate(row) if t in stop_ids), None)
        answers.append((row, False) if stop is None else (row[:stop], True))
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", default="embedded",
                        help="'embedded' (default), a .gguf file, a local folder or a hub id")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS,
                        help="JSONL with unique 'id', 'prompt' and optional 'category' (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output .jsonl.gz; answers already in it are kept and their ids skipped")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts generated together (default: 32)")
    parser.add_argument("--max-new-tokens", type=int, default=288,
                        help="longest answer in tokens; longer ones are cut, finished=false (default: 288)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="share of every category marked split=heldout (default: 0.1)")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, float16, or auto (default)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice); on a shared machine 1 "
                             "thread per process is often faster than several")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="answer only batches K, K+N, K+2N, ... of this run (0 <= K < N), so that N "
                             "processes can share the work; the batches are the same as without --shard. "
                             "Give each shard its own --out and concatenate the files afterwards "
                             "(gzip members concatenate)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="SHARD",
                        help="instead of generating, merge these shard files into --out (in prompt-file "
                             "order; --out must not be one of them)")
    parser.add_argument("--stats", action="store_true",
                        help="only print the counts of --out per category and split")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N prompts of the file (smoke tests); the split is still "
                             "computed over the whole file")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.max_new_tokens < 1:
        parser.error("--batch-size and --max-new-tokens must be positive")
    if not args.prompts.is_file():
        parser.error(f"--prompts {args.prompts}: no such file")
    try:
        shard, shards = (int(x) for x in (args.shard or "0/1").split("/"))
    except ValueError:
        parser.error(f"--shard {args.shard!r}: expected K/N, e.g. 0/2")
    if not 0 <= shard < shards:
        parser.error(f"--shard {args.shard!r}: need 0 <= K < N")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)

    from methods.core.model_loading import EMBEDDED_MODEL_ID, EMBEDDED, load_model

    prompts = read_prompts(args.prompts)
    if args.merge:
        if args.out.resolve() in {m.resolve() for m in args.merge}:
            parser.error("--out must not be one of the --merge files")
        missing = [str(m) for m in args.merge if not m.is_file()]
        if missing:
            parser.error(f"--merge: no such file: {', '.join(missing)}")
        n = merge_corpora(args.merge, args.out, prompts)
        print(f"{args.out}: {n} conversations from {len(args.merge)} shards", file=sys.stderr)
        print(corpus_stats(read_corpus(args.out)))
        return 0
    if args.stats:
        if not args.out.is_file():
            parser.error(f"--out {args.out}: no such file")
        print(corpus_stats(read_corpus(args.out)))
        return 0
    splits = assign_splits(prompts, args.heldout_fraction)
    prompts = prompts[: args.limit]
    model_id = EMBEDDED_MODEL_ID if args.model_path == EMBEDDED else str(args.model_path)
    existing = read_corpus(args.out)
    check_resumable(existing, args.out, model_id, args.max_new_tokens)
    skip = {r["id"] for r in existing}
    if all(p["id"] in skip for p in prompts):
        print(f"nothing to answer ({len(skip)} prompts already in {args.out})", file=sys.stderr)
        return 0

    loaded = load_model(args.model_path, dtype=args.dtype, device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = eos_ids(model, tokenizer)
    encoded = {p["id"]: chat_prompt_ids(tokenizer, p["prompt"]) for p in prompts}
    # Similar lengths in a batch: less padding, and long-context rows do not slow short ones.
    # The batches are formed over all prompts, done or not, so that a resumed or sharded run
    # answers every prompt in the same company (padding changes the arithmetic slightly).
    ordered = sorted(prompts, key=lambda p: (len(encoded[p["id"]]), p["id"]))
    batches = [ordered[i: i + args.batch_size] for i in range(0, len(ordered), args.batch_size)][shard::shards]
    batches = [[p for p in b if p["id"] not in skip] for b in batches]
    batches = [b for b in batches if b]
    n_todo = sum(len(b) for b in batches)
    print(f"{n_todo} prompts to answer in {len(batches)} batches ({len(skip)} already in {args.out})",
          file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    answer_tokens = 0
    with tqdm(total=n_todo, unit="conv") as bar:
        for batch in batches:
            answers = answer_batch(model, tokenizer, [encoded[p["id"]] for p in batch],
                                   args.max_new_tokens, stop_ids)
            with gzip.open(args.out, "at", encoding="utf-8") as f:
                for p, (ids, finished) in zip(batch, answers):
                    f.write(json.dumps({
                        "id": p["id"], "category": p.get("category", ""), "split": splits[p["id"]],
                        "model": model_id, "max_new_tokens": args.max_new_tokens, "finished": finished,
                        "prompt_token_ids": encoded[p["id"]], "answer_token_ids": ids,
                        "conversations": [
                            {"role": "user", "content": p["prompt"]},
                            {"role": "assistant", "content": tokenizer.decode(ids, skip_special_tokens=True)},
                        ],
                    }, ensure_ascii=False) + "\n")
            answer_tokens += sum(len(ids) for ids, _ in answers)
            bar.update(len(batch))
            bar.set_postfix(answer_tokens=answer_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
