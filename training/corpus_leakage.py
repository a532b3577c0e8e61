"""Check that no corpus prompt shares a run of words with an evaluation question set.

A prompt leaks when any ``--words`` consecutive words of it (lower-cased ``\\w+`` tokens; 10 by
default) also occur in a question of an evaluation set: a drafter trained or retrieving on such a
prompt would have seen evaluation text. Every turn (and reference, if present) of every question
is searched.

    python -m training.corpus_leakage                      # against the bundled set, and
                                                           # data/spec_bench/ when it is there
    python -m training.corpus_leakage --against other/question.jsonl

Exit status 1 and a list of the shared runs when a prompt leaks, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator

from methods.core.paths import DATA_DIR
from training.make_corpus import DEFAULT_PROMPTS, read_prompts

DEFAULT_SETS = [DATA_DIR / "bundled" / "question.jsonl", DATA_DIR / "spec_bench" / "question.jsonl"]
DEFAULT_WORDS = 10
_WORD = re.compile(r"\w+")


def word_runs(text: str, n: int = DEFAULT_WORDS) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i: i + n]) for i in range(len(words) - n + 1)}


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def question_texts(path: Path) -> Iterator[tuple[str, str]]:
    """(question id, text) for every turn and reference of a question JSONL file."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if "turns" not in record:
                raise ValueError(f"{path}:{number}: no 'turns' field; is this a question file?")
            qid = str(record.get("question_id", number))
            for text in _strings(record["turns"]):
                yield qid, text
            for text in _strings(record.get("reference") or []):
                yield qid, text


def evaluation_runs(question_files: Iterable[Path], n: int = DEFAULT_WORDS) -> set[tuple[str, ...]]:
    """Every run of n words of the question files' turns and references."""
    runs: set[tuple[str, ...]] = set()
    for path in question_files:
        for _, text in question_texts(path):
            runs |= word_runs(text, n)
    return runs


def shares_a_run(record: dict, runs: set[tuple[str, ...]], n: int = DEFAULT_WORDS) -> bool:
    """Whether any message of a corpus record (user turns and the model's answers alike) holds one
    of ``runs``: an answer can repeat an evaluation question's wording (a textbook definition) as
    well as a prompt can."""
    return any(word_runs(m.get("content") or "", n) & runs for m in record.get("conversations", []))


def find_leaks(prompts: Iterable[dict], question_files: Iterable[Path],
               n: int = DEFAULT_WORDS) -> list[tuple[str, str, str, str]]:
    """(prompt id, question file, question id, shared run) for every shared run of n words."""
    index: dict[tuple[str, ...], tuple[str, str]] = {}
    for path in question_files:
        for qid, text in question_texts(path):
            for run in word_runs(text, n):
                index.setdefault(run, (str(path), qid))
    leaks = []
    for p in prompts:
        for run in sorted(word_runs(p["prompt"], n)):
            if run in index:
                leaks.append((p["id"], *index[run], " ".join(run)))
    return leaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="prompt JSONL (default: %(default)s)")
    parser.add_argument("--against", type=Path, action="append", default=None,
                        help="question JSONL to check against; repeatable (default: the bundled set and "
                             "data/spec_bench/question.jsonl, each if present)")
    parser.add_argument("--words", type=int, default=DEFAULT_WORDS, help="run length in words (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.words < 1:
        parser.error("--words must be positive")
    if args.against:
        missing = [str(p) for p in args.against if not p.is_file()]
        if missing:
            parser.error(f"--against: no such file: {', '.join(missing)}")
        sets = args.against
    else:
        sets = [p for p in DEFAULT_SETS if p.is_file()]
    prompts = read_prompts(args.prompts)
    leaks = find_leaks(prompts, sets, args.words)
    for prompt_id, path, qid, run in leaks:
        print(f"{prompt_id}: shares {run!r} with question {qid} of {path}")
    checked = ", ".join(str(p) for p in sets) or "no question file"
    print(f"{len(prompts)} prompts checked against {checked}: {len(leaks)} shared {args.words}-word runs",
          file=sys.stderr)
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
