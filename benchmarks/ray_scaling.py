"""What sharding over Ray workers buys on one machine, and what Ray costs per question.

    python benchmarks/ray_scaling.py --workers 2 --threads-per-worker 1 --questions 16

Three runs of the real runner (python -m evaluation.inference) on the same questions, each into
its own empty folder, repeated --rounds times in rotating order:
  sharded   --workers N, T threads each (N x T CPU slots in all);
  one-ray   --workers 1 with N x T threads: the same CPUs in one worker;
  no-ray    one process with N x T threads, no Ray at all.
Reported: the wall time of each command (cluster start, model loads and warm-up included), the
answering span (the first question's start to the last one's finish, from the answers' tstamp
and decoding times; warm-up excluded), and Ray's overhead
per question: in a run that answers questions one after another, the time between two questions
finishing minus the decoding time the answers record is what the loop adds around decoding
(dispatch, result transfer, writing); one-ray's figure minus no-ray's is what Ray adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]


def answer_lines(folder: Path) -> dict:
    """question id -> [lines of every method] from the answer files in ``folder``."""
    by_question: dict = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            by_question.setdefault(record["question_id"], []).append(record)
    return by_question


def loop_overhead(by_question: dict) -> tuple[float, float]:
    """(answering span in s, mean seconds a question's turn-around adds to its decoding); the
    second is meaningful for a run that answered its questions one after another (one worker or
    one process)."""
    finished = sorted((max(r["tstamp"] for r in records),
                       sum(sum(r["choices"][0]["wall_time"]) for r in records))
                      for records in by_question.values())
    gaps = [(t - t_before) - decoding for (t_before, _), (t, decoding) in zip(finished, finished[1:])]
    # From the first question's start (its finish less its decoding) to the last finish.
    span = finished[-1][0] - min(t - decoding for t, decoding in finished)
    return span, statistics.mean(gaps) if gaps else float("nan")


def runner_command(args, extra: list[str], folder: Path) -> list[str]:
    return [sys.executable, "-m", "evaluation.inference", "--method", args.methods,
            "--model-path", args.model_path, "--bench-name", args.bench_name,
            "--question-end", str(args.questions), "--max-new-tokens", str(args.max_new_tokens),
            "--dtype", args.dtype, "--device", "cpu", "--answer-dir", str(folder),
            "--model-id", "bench-{method}", "--warmup", str(args.warmup), "--no-progress", *extra]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default="embedded", help="target model (default: the embedded one)")
    parser.add_argument("--methods", default="vanilla,pld",
                        help="methods every run answers with, interleaved (default: vanilla,pld)")
    parser.add_argument("--bench-name", default="bundled", help="question set (default: bundled)")
    parser.add_argument("--questions", type=int, default=16, help="the first N questions (default 16)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per turn (default 64)")
    parser.add_argument("--dtype", default="auto", help="model dtype (default: auto)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up generations per worker (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the sharded run (default 2)")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="CPU threads of each worker of the sharded run (default 1); the other "
                             "runs get workers x this many threads in one worker or process")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions of the three runs (default 1)")
    parser.add_argument("--keep", metavar="DIR", help="keep answer files and logs in DIR")
    args = parser.parse_args(argv)
    if min(args.questions, args.workers, args.threads_per_worker, args.rounds) < 1:
        parser.error("--questions, --workers, --threads-per-worker and --rounds must be at least 1")

    threads = args.workers * args.threads_per_worker
    runs = {
        "sharded": ["--workers", str(args.workers), "--threads-per-worker", str(args.threads_per_worker)],
        "one-ray": ["--workers", "1", "--threads-per-worker", str(threads)],
        "no-ray": [],
    }
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    results = {name: [] for name in runs}
    schedule = [(r, name) for r in range(args.rounds)
                for name in list(runs)[r % 3:] + list(runs)[:r % 3]]
    for round_index, name in tqdm(schedule, desc="runs", unit="run"):
        folder = root / f"{name}-{round_index}"
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        extra = runs[name]
        if name == "no-ray":  # the same threads as one-ray's single worker
            command = [sys.executable, "-c",
                       "import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
                       "from evaluation.inference import main; sys.exit(main(sys.argv[2:]))",
                       str(threads), *runner_command(args, extra, folder)[3:]]
        else:
            command = runner_command(args, extra, folder)
        start = time.monotonic()
        with (folder / "log.txt").open("w") as log:
            code = subprocess.call(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wall = time.monotonic() - start
        if code != 0:
            print(f"{name} failed (exit {code}); see {folder / 'log.txt'}", file=sys.stderr)
            return 1
        lines = answer_lines(folder)
        span, overhead = loop_overhead(lines)
        results[name].append({"wall_s": wall, "span_s": span, "overhead_s": overhead,
                              "questions": len(lines)})
        tqdm.write(f"{name:8s} round {round_index}: {wall:7.1f} s wall, {span:7.1f} s answering, "
                   f"{len(lines)} questions")

    def median(name, key):
        return statistics.median(r[key] for r in results[name])

    print(f"\n{args.questions} questions x ({args.methods}), {args.max_new_tokens} new tokens, "
          f"{args.rounds} round(s); medians:")
    for name in runs:
        print(f"  {name:8s} {runs[name] or ['(one process)']}: wall {median(name, 'wall_s'):.1f} s, "
              f"answering span {median(name, 'span_s'):.1f} s")
    print(f"Speedup of {args.workers} workers x {args.threads_per_worker} thread(s) over 1 worker x "
          f"{threads}: wall {median('one-ray', 'wall_s') / median('sharded', 'wall_s'):.2f}x, "
          f"answering span {median('one-ray', 'span_s') / median('sharded', 'span_s'):.2f}x")
    ray_cost = median("one-ray", "overhead_s") - median("no-ray", "overhead_s")
    print(f"Turn-around per question beyond decoding: one Ray worker {median('one-ray', 'overhead_s') * 1e3:.1f} ms, "
          f"one process {median('no-ray', 'overhead_s') * 1e3:.1f} ms; Ray adds {ray_cost * 1e3:.1f} ms a question")
    print(f"Answer files and logs: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
