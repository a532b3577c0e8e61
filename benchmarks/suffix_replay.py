"""SuffixDecoding's drafts on the embedded model's own answers, without running the model.

    python benchmarks/suffix_replay.py --config max_spec_tokens=8 --config max_spec_tokens=8,shape=chain

The corpus (data/corpus/) holds the embedded model's greedy answers with their token ids. This
replays the conversations of its held-out split (none of them is in the corpus index) through the
drafter: each step the drafter proposes, the step accepts the longest path of the draft that the
recorded answer follows plus the answer's next token (what the engine's greedy acceptance does
when the target says what it said when the corpus was made), and the drafter is told. The
conversations run in file order through one drafter per configuration, so the run's answers grow
its global index as in a real run.

Reported per configuration: mean accepted tokens per step (MAT; an estimate of the engine's at
T = 0, exact where the target's greedy output today equals the recorded one), draft nodes per step,
which index drafted, and the CPU time of propose() and accept() per step (thread CPU time, so other
jobs on the machine do not count; still, measure on a quiet machine before quoting it). What the
steps cost in the target is not modelled: the speed of a configuration needs
training/sweep_drafter.py, which runs the model.

``--calibration`` also prints, per index, how many draft tokens were accepted against the draft's
score (its expected accepted tokens under the counts) and against its match length: whether an
index's counts promise what they bring. Give the drafter no fallback (``--config
fallback=none``): the replay has no model to run one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm import tqdm

from methods.core.drafter import DecodingConfig, DraftSession, StepResult
from methods.core.paths import BUNDLED_CORPUS
from methods.drafters.rest_datastore import HELDOUT, read_records


def accepted_path(tree, truth: list[int]) -> list[int]:
    """Nodes of the longest path from the root whose tokens are ``truth``'s first ones."""
    kids = tree.children()
    tokens = tree.tokens.tolist()
    path, parent = [], -1
    for token in truth:
        nxt = next((node for node in kids[parent + 1] if tokens[node] == token), None)
        if nxt is None:
            break
        path.append(nxt)
        parent = nxt
    return path


def replay(drafter, conversations, vocab_size: int, max_new_tokens: int) -> dict:
    session = DraftSession(model=None, config=DecodingConfig(), device=torch.device("cpu"), dtype=torch.float32,
                           vocab_size=vocab_size)
    steps = tokens = nodes = 0
    propose_ns: list[int] = []
    accept_ns: list[int] = []
    sources: dict[str, int] = {}
    drafted: list[tuple[str, float, int, int]] = []  # (index, score, match length, accepted draft tokens)
    for prompt, answer in tqdm(conversations, desc=str(drafter.params()["shape"]), unit="conv", file=sys.stderr,
                               leave=False):
        answer = answer[:max_new_tokens]
        drafter.begin(list(prompt), session)
        context, done = list(prompt), 0
        while done < len(answer):
            remaining = len(answer) - done
            start = time.thread_time_ns()
            tree = drafter.propose(context, remaining - 1)
            propose_ns.append(time.thread_time_ns() - start)
            path = accepted_path(tree, answer[done: done + remaining - 1])
            committed = answer[done: done + len(path) + 1]
            if drafter.last_source in ("request", "global"):
                drafted.append((drafter.last_source, drafter.last.score, drafter.last.match_length, len(path)))
            done += len(committed)
            context.extend(committed)
            step = StepResult(tree=tree, accepted_nodes=path, committed=committed, logits=torch.empty(0),
                              context=context, finished=done >= len(answer))
            start = time.thread_time_ns()
            drafter.accept(step)
            accept_ns.append(time.thread_time_ns() - start)
            steps += 1
            tokens += len(committed)
            nodes += len(tree)
        drafter.end()
        for source, count in drafter.turn_stats().items():
            sources[source] = sources.get(source, 0) + count
    propose_ns.sort()
    return {"MAT": tokens / steps, "nodes": nodes / steps, "steps": steps,
            "propose_us": statistics.mean(propose_ns) / 1e3,
            "propose_p95_us": propose_ns[int(0.95 * len(propose_ns))] / 1e3,
            "accept_us": statistics.mean(accept_ns) / 1e3,
            "sources": {k: round(v / steps, 3) for k, v in sources.items()}, "drafted": drafted}


# Half-open bins [low, high): by score, and by match length.
SCORE_BINS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, float("inf")))
MATCH_BINS = ((1, 2), (2, 5), (5, 9), (9, float("inf")))


def calibration_rows(drafted) -> list[str]:
    """Mean score and mean accepted draft tokens of each index's drafts, by score and by match length."""
    rows = []
    for index in ("request", "global"):
        mine = [d for d in drafted if d[0] == index]
        for label, bins, key in (("score", SCORE_BINS, 1), ("match", MATCH_BINS, 2)):
            for low, high in bins:
                got = [d for d in mine if low <= d[key] < high]
                if got:
                    span = f"{low:g}-{high:g}" if high != float("inf") else f">={low:g}"
                    rows.append(f"  {index:8s} {label} {span:>8s}: {len(got):6d} steps, score "
                                f"{statistics.mean(d[1] for d in got):5.2f}, accepted "
                                f"{statistics.mean(d[3] for d in got):5.2f}")
    return rows


def main(argv=None) -> int:
    from training.sweep_drafter import make_drafter, parse_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[],
                        help="key=value,... of the suffix options (max_spec_tokens=8,shape=chain,...); "
                             "repeat for several; none: the CPU defaults")
    parser.add_argument("--corpus", type=Path, default=BUNDLED_CORPUS,
                        help="conversations to replay [the bundled corpus]")
    parser.add_argument("--split", choices=[HELDOUT, "train", "all"], default=HELDOUT,
                        help=f"which of its conversations ({HELDOUT}: none of them is in the default index) "
                             f"[{HELDOUT}]")
    parser.add_argument("--limit", type=int, default=0, help="only the first N conversations (0: all)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer tokens replayed per conversation")
    parser.add_argument("--calibration", action="store_true",
                        help="per index, the drafts' mean score and accepted draft tokens by score and by match "
                             "length")
    args = parser.parse_args(argv)

    from methods.core.model_loading import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    conversations = [(r["prompt_token_ids"], r["answer_token_ids"]) for r in read_records(args.corpus)
                     if r.get("prompt_token_ids") and r.get("answer_token_ids")
                     and (args.split == "all" or r.get("split", "train") == args.split)]
    if args.limit:
        conversations = conversations[: args.limit]
    if not conversations:
        parser.error(f"{args.corpus}: no conversation with token ids in split {args.split}")
    configs = [parse_config(c) for c in args.config] or [{}]
    print(f"{len(conversations)} conversations, up to {args.max_new_tokens} answer tokens each", file=sys.stderr)
    print(f"{'config':52s} {'MAT':>5s} {'nodes':>5s} {'propose us':>10s} {'p95':>6s} {'accept us':>9s}  sources")
    for config in configs:
        drafter = make_drafter("suffix", config, tokenizer, torch.nn.Linear(1, 1))  # a CPU "model": CPU defaults
        r = replay(drafter, conversations, len(tokenizer), args.max_new_tokens)
        print(f"{str(config):52s} {r['MAT']:5.2f} {r['nodes']:5.1f} {r['propose_us']:10.0f} {r['propose_p95_us']:6.0f} "
              f"{r['accept_us']:9.0f}  {r['sources']}")
        if args.calibration:
            print("\n".join(calibration_rows(r["drafted"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
