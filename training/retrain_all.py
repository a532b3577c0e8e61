"""Retrain every shipped drafter of the embedded model on the corpus, one resumable command.

    python -m training.retrain_all --threads 2            # the whole plan, or what is left of it
    python -m training.retrain_all --dry-run              # what it would run, and what is done
    python -m training.retrain_all --train-conversations 6000 --only features,medusa,dflash --threads 2
                                                          # a sitting's share: a subset, some drafters

The plan, in order: (1) merge the corpus build (`data/corpus/build/`, written by
training/generate_corpus.py) with the answers to the project's hand-written prompts into the
bundled corpus; (2) run the target once over it for every trainer (training/extract_features.py);
(3) train each drafter into its shipped folder under data/drafters/smollm2-135m-instruct/. REST,
SAM-Decoding and SuffixDecoding need no step: they index the bundled corpus when they first run,
keyed by its checksum.

Every step can stop at any moment and is picked up by the next run of the same command: the
merge is deterministic (same records, same bytes), features save their progress every minute,
and a trainer stopped midway leaves a checkpoint that the next run continues with --resume. Both
live in the cache folder ($SDBENCH_CACHE, else ~/.cache/sdbench), outside the checkout, so that
a fresh clone on the same machine picks the retraining up where the last one stopped. A
drafter whose artifact already records the bundled corpus's checksum is done and skipped, so
after the corpus changes (a larger build merged) everything is trained again, and only then.

On 2 cores the target's pass over the whole bundled corpus (21,724 records, 5.4M positions)
took 1 h 50 min on one machine and would take about 4 h at the rate of another (1.5M positions in
67 min), and its features (31 GB) live only as long as the machine's cache. Where a
sitting ends on a fresh machine, --train-conversations N trains on a subset the sitting can hold:
the first N training conversations in the acceptance-vs-data curve's ranking plus the whole
held-out split, written where the curve writes its point N, so that both share the file and its
features; a drafter is then done when its artifact records that subset's checksum.

The epochs are fewer than each recipe's default, which was sized for a corpus of 103k answer
tokens: on twenty times the data a pass teaches what many passes over little data did, and the
issue gives the whole set about 8 hours of 2-core time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from methods.core.file_hash import file_sha256
from methods.core.paths import BUNDLED_CORPUS, REPO_ROOT, cache_root
from methods.heads.artifact import training_record
from training.checkpoint import FILE as CHECKPOINT_FILE
from training.features import CorpusError, read_corpus

# Relative to the repository root, where every step runs: the commands recorded in the artifacts'
# READMEs then hold no path of the machine that trained them.
DRAFTERS = Path("data") / "drafters" / "smollm2-135m-instruct"
BUILD = Path("data") / "corpus" / "build"
# The answers to the hand-written prompts of training/corpus_prompts.jsonl (the corpus every
# drafter was trained on before the build): kept in the merged corpus for their long documents.
WRITTEN = Path("data") / "corpus" / "written_prompts.jsonl.gz"
CORPUS = BUNDLED_CORPUS.relative_to(REPO_ROOT)
# --train-conversations N trains on the corpus subset the acceptance-vs-data curve's point N trains
# on (training/data_curve.py, run with --out results/data_curve): the same file, byte for byte, so
# the target's features of one serve the other.
SUBSETS = Path("results") / "data_curve" / "corpora"


@dataclass(frozen=True)
class Training:
    method: str
    options: list[str] = field(default_factory=list)


# Order: cheapest first, so that a sitting that ends early has shipped the most drafters.
PLAN = (
    Training("hydra", ["--epochs", "2"]),
    Training("medusa", ["--epochs", "2"]),
    # The shipped EAGLE's lr and second training step (docs/methods.md: 0.395 depth-1 against 0.300
    # for the published recipe's 3e-4 and one step, on the old corpus).
    Training("eagle", ["--epochs", "3", "--eagle-steps", "2", "--lr", "1e-3"]),
    Training("dflash", ["--epochs", "2"]),
    # Layers 0 and 1 as the starting copies, as the shipped draft (its README).
    Training("sps", ["--epochs", "1", "--sps-init-layers", "0,1"]),
    Training("eagle3", ["--epochs", "1"]),
    # SPACE runs the frozen target inside its loss: a pass over millions of positions would take
    # a day, so it trains on a fixed number of steps, as many as its last pass had.
    Training("space", ["--max-steps", "400"]),
)


def trained_on(folder: Path) -> str | None:
    """The corpus checksum a shipped artifact records, or None."""
    return training_record(folder).get("corpus_sha256")


def write_subset(size: int) -> Path:
    """Writes the bundled corpus's subset of ``size`` training conversations (data_curve's rule)
    and returns its path relative to the repository root."""
    from training.data_curve import split_corpus, subset_records, write_corpus

    split = split_corpus(read_corpus(BUNDLED_CORPUS))
    path = SUBSETS / f"{size}.jsonl.gz"
    write_corpus(subset_records(split, size), REPO_ROOT / path)
    return path


def run(command: list[str], dry_run: bool) -> None:
    print("$ " + " ".join(command), flush=True)
    if dry_run:
        return
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(f"stopped: the step above exited with {result.returncode}; run this command again to "
                         f"continue from where it stopped")
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.retrain_all", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", default=None,
                        help="comma-separated steps to run: merge, features and/or method names (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every step")
    parser.add_argument("--no-merge", action="store_true",
                        help="train on the bundled corpus as it is (do not merge the build into it first)")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="bfloat16",
                        help="train_drafter's --precision for every drafter (bfloat16: mixed precision; on "
                             "one CPU with AMX an EAGLE epoch took 0.62x the float32 time, to the same held-out "
                             "accuracy within 0.001)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where a stopped trainer's checkpoint is kept, one subfolder per method (default: "
                             "retrain/ in the cache folder, $SDBENCH_CACHE or ~/.cache/sdbench)")
    parser.add_argument("--train-conversations", type=int, default=None, metavar="N",
                        help="train on the first N training conversations of the bundled corpus (ranked by the "
                             "hash of their id) and its whole held-out split instead of the whole corpus: a "
                             "subset written to results/data_curve/corpora/N.jsonl.gz, the acceptance-vs-data "
                             "curve's point N. The target's pass over the whole corpus takes 2-4 h on 2 cores, "
                             "more than a sitting holds with the training after it; a drafter is then "
                             "done when its artifact records that subset")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and what is done; run nothing")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    steps = {"merge", "features", *(t.method for t in PLAN)}
    only = None if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    if only is not None and (not only or only - steps):
        parser.error(f"--only: {', '.join(sorted(only - steps)) or 'nothing given'}; steps are "
                     f"{', '.join(['merge', 'features', *(t.method for t in PLAN)])}")
    wanted = (lambda step: True) if only is None else (lambda step: step in only)
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    python = [sys.executable, "-m"]

    if wanted("merge") and not args.no_merge:
        if not (REPO_ROOT / BUILD).is_dir():
            parser.error(f"no corpus build in {BUILD}: run training/generate_corpus.py first, or give --no-merge")
        include = ["--include", str(WRITTEN)] if (REPO_ROOT / WRITTEN).is_file() else []
        run([*python, "training.generate_corpus", "--merge", str(BUILD), *include, "--out", str(CORPUS)],
            args.dry_run)
    corpus, checkpoint_folder = CORPUS, "retrain"
    if args.train_conversations is not None:
        if args.train_conversations < 1:
            parser.error("--train-conversations must be at least 1")
        try:
            corpus = write_subset(args.train_conversations)
        except (ValueError, CorpusError) as exc:
            parser.error(f"--train-conversations: {exc}")
        checkpoint_folder = f"retrain-{args.train_conversations}"  # a checkpoint belongs to its corpus
    corpus_sha = file_sha256(REPO_ROOT / corpus)
    print(f"{corpus}: sha256 {corpus_sha[:16]}...", flush=True)
    pending = [t for t in PLAN if wanted(t.method) and trained_on(REPO_ROOT / DRAFTERS / t.method) != corpus_sha]
    for t in PLAN:
        if wanted(t.method) and t not in pending:
            print(f"{t.method}: done (its artifact records this corpus)")
    if wanted("features") and pending:
        run([*python, "training.extract_features", "--corpus", str(corpus),
             "--methods", ",".join(t.method for t in pending), *threads], args.dry_run)
    checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else cache_root() / checkpoint_folder
    for t in pending:
        out, kept = DRAFTERS / t.method, checkpoints / t.method
        resume = ["--resume"] if (kept / CHECKPOINT_FILE).is_file() else []
        run([*python, "training.train_drafter", "--method", t.method, "--model-path", "embedded",
             "--corpus", str(corpus), "--out", str(out), *t.options, "--precision", args.precision, *threads,
             "--checkpoint-dir", str(kept), *resume], args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
