"""Cut a slice of the corpus's training conversations, with the whole held-out split, as a corpus file.

    python -m training.corpus_slice --start 10000 --out results/slices/10000-end.jsonl.gz

The training conversations are ranked as the acceptance-vs-data curve ranks them (training/
data_curve.py: by the SHA-256 of their id), so the slice ``--start N`` holds exactly the training
conversations that the curve's point N did not see, and ``--start N --stop M`` those that point M
adds to point N. Every held-out record goes with every slice, so a drafter trained on it is
measured on the same held-out conversations as every point of the curve.

Why: a machine that does not outlive a sitting cannot hold the target's states of the whole corpus
(a pass of several hours and tens of GB), but a committed artifact outlives it. A drafter trained
on the first N conversations can then be trained further on the next slice in a later sitting
(``train_drafter --init-from ARTIFACT --corpus SLICE``), which keeps the artifact's draft
vocabulary; each sitting runs the target over its slice only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.inference import non_negative_int, positive_int
from training.data_curve import conversation_id, split_corpus, write_corpus
from training.features import CorpusError, read_corpus
from training.train_drafter import DEFAULT_CORPUS


def slice_records(split, start: int, stop: int | None) -> list[dict]:
    """Every held-out record and the records of the training conversations ranked
    ``start`` .. ``stop`` - 1 (``stop`` None: to the end), in the corpus file's order."""
    total = len(split.train_ranking)
    stop = total if stop is None else stop
    if not 0 <= start < stop <= total:
        raise ValueError(f"conversations {start:,} to {stop:,} asked for; the corpus has {total:,} training "
                         f"conversations, so a slice starts below {total:,} and ends after its start")
    chosen = set(split.train_ranking[start:stop])
    return [r for n, (r, held) in enumerate(zip(split.records, split.heldout), 1)
            if held or conversation_id(r, f"corpus record {n}") in chosen]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.corpus_slice", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="the corpus to cut (gzip JSONL)")
    parser.add_argument("--start", type=non_negative_int, required=True,
                        help="first training conversation of the slice, in the curve's ranking (0 = the first)")
    parser.add_argument("--stop", type=positive_int, default=None,
                        help="the slice ends before this conversation (default: at the last one)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="the trainer's --heldout-fraction, for a corpus without a 'split' field")
    parser.add_argument("--out", required=True, help="the slice's corpus file to write (.jsonl.gz)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        split = split_corpus(read_corpus(Path(args.corpus)), args.heldout_fraction)
        records = slice_records(split, args.start, args.stop)
    except (CorpusError, ValueError) as exc:
        parser.error(str(exc))
    write_corpus(records, Path(args.out))
    stop = len(split.train_ranking) if args.stop is None else args.stop
    print(f"{args.out}: training conversations {args.start:,} to {stop - 1:,} of {len(split.train_ranking):,} "
          f"and the {split.heldout_conversations:,} held-out ones ({len(records):,} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
