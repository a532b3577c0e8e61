"""Writing answer files safely: append one line per finished question, resume, finalise.

Each line is flushed and fsynced as soon as its question finishes, so a crash loses at most the
question in flight. Finalising rewrites the file sorted by question id with one line per id (the
newest), through a temporary file and an atomic rename. Lines that cannot be parsed (a line cut
by a crash) are kept in a ``.bad`` file beside it, never silently dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from evaluation.answers import question_sort_key


def read_answer_lines(path: Path) -> tuple[dict, list[str]]:
    """{question_id: record} (the last line per id wins) and the lines that did not parse."""
    records: dict = {}
    bad: list[str] = []
    if not path.exists():
        return records, bad
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[record["question_id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                bad.append(line)
    return records, bad


def answered_ids(path: Path) -> set:
    """Questions already answered without error (a re-run retries the failed ones)."""
    records, _ = read_answer_lines(path)
    return {qid for qid, r in records.items() if not r.get("error")}


def append_answer(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A crash can leave a cut last line without its newline: start a fresh line after it, so the
    # new record is not glued onto the broken one.
    needs_newline = False
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(("\n" if needs_newline else "") + json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def finalise_answer_file(path: Path) -> int:
    """Sort by question id and de-duplicate (newest line wins). Returns the number of answers."""
    records, bad = read_answer_lines(path)
    if bad:
        with path.with_suffix(path.suffix + ".bad").open("a", encoding="utf-8") as f:
            f.writelines(bad)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for qid in sorted(records, key=question_sort_key):
            f.write(json.dumps(records[qid]) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(records)
