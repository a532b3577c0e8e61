"""Writing answer files safely: append one line per finished question, resume, finalise.

Each line is flushed and fsynced as soon as its question finishes, so a crash loses at most the
question in flight. Finalising rewrites the file sorted by question id with one line per id (the
newest), through a temporary file and an atomic rename. Lines that cannot be parsed (a line cut
by a crash) are kept in a ``.bad`` file beside it, never silently dropped.

Resuming appends to the same file, so before any work a run checks that the file's lines were
written with the same settings (the identity fields of record/schema.py): one file never mixes
two runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from evaluation.record.answers import AnswerFileError, question_sort_key
from evaluation.record.schema import IDENTITY_FIELDS, line_value

_MISSING = object()


def check_same_run(path: Path, settings: dict, fields=IDENTITY_FIELDS) -> None:
    """Refuse to resume ``path`` when one of its lines was written with other settings.

    ``settings`` is the new run's line (or the part of it known so far); only the ``fields`` it
    holds are compared. A line without a field (written by an older version, or by another tool)
    cannot be shown to match, so it is refused too rather than assumed to match.
    """
    records, _ = read_answer_lines(path)
    if not records:
        return
    new = json.loads(json.dumps(settings))  # compare as they would be written (tuples -> lists)
    differences, unrecorded = [], []
    for name in fields:
        wanted = line_value(new, name, _MISSING)
        if wanted is _MISSING:
            continue
        for qid, record in records.items():
            found = line_value(record, name, _MISSING)
            if found is _MISSING:
                unrecorded.append(f"{name} (question {qid})")
                break
            if found != wanted:
                differences.append(f"{name} is {found!r} there (question {qid}) but {wanted!r} now")
                break
    how = (f"to keep both runs, write the new one elsewhere (another --answer-file or --model-id); "
           f"to start over, remove {path}")
    if differences:
        raise AnswerFileError(f"{path} holds answers of another run: {'; '.join(differences)}. "
                              f"Resume with the same settings; {how}")
    if unrecorded:
        raise AnswerFileError(
            f"{path} cannot be resumed: its lines do not record {', '.join(unrecorded)} (written by "
            f"an older version or another tool), so they may come from other settings; {how}")


def check_writable(path: Path) -> None:
    """Fail now, not after the first answer, if answers cannot be written to ``path``."""
    try:
        if path.is_dir():
            raise AnswerFileError(f"answer file {path} is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("a", encoding="utf-8"):
                pass
        else:  # a probe file beside it, so that a failed run leaves no empty answer file
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
                pass
    except OSError as exc:
        raise AnswerFileError(f"cannot write answers to {path}: {exc.strerror or exc}") from None




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


class AnswerWriteError(AnswerFileError):
    """Writing answers failed (a full disk, a quota, a lost mount): what the file held is kept."""

    def __init__(self, path: Path, exc: OSError, written: str):
        super().__init__(f"cannot write answers to {path}: {exc.strerror or exc}; {written} are kept "
                         f"(a line cut short is set aside, not read as an answer): free space or fix the "
                         f"cause, then run the same command again to resume")


def append_answer(path: Path, record: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A crash can leave a cut last line without its newline: start a fresh line after it, so
        # the new record is not glued onto the broken one.
        needs_newline = False
        if path.exists() and path.stat().st_size:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        with path.open("a", encoding="utf-8") as f:
            f.write(("\n" if needs_newline else "") + json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # ENOSPC above all: one sentence, not a traceback
        raise AnswerWriteError(path, exc, "the answers written before this one") from None


def finalise_answer_file(path: Path) -> int:
    """Sort by question id and de-duplicate (newest line wins). Returns the number of answers."""
    records, bad = read_answer_lines(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        if bad:
            with path.with_suffix(path.suffix + ".bad").open("a", encoding="utf-8") as f:
                f.writelines(bad)
        with tmp.open("w", encoding="utf-8") as f:
            for qid in sorted(records, key=question_sort_key):
                f.write(json.dumps(records[qid]) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # the unsorted file is untouched until the rename
        tmp.unlink(missing_ok=True)
        raise AnswerWriteError(path, exc, "all its answers (not yet sorted)") from None
    return len(records)
