"""The question each answer of a run replies to, read when the run is imported.

Answer lines name their bench (`bench_name`), not their question file, and a database may be
viewed on a machine without that file: so the text is stored with the answers at import. The
file is looked for where the runner reads it: beside the answer file's folder in Spec-Bench's
layout (data/<bench>/model_answer/<model_id>.jsonl next to data/<bench>/question.jsonl), then
the bench's file under data/. A question is taken only where its id and category are the
answer's and it has as many turns as the answer (at least as many for a failed answer): a run
answered from another file (`--question-file`) is left without text rather than shown another
question's.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

from evaluation.record.answers import Answer, AnswerFile
from evaluation.record.questions import (QUESTION_FILE_NAME, Question, QuestionFileError, load_questions,
                                      question_file_for_bench)


def question_files(answer_file: AnswerFile, bench: Optional[str]) -> list[Path]:
    """The question files that may hold the run's questions, most likely first."""
    candidates = []
    if answer_file.path.parent.name == "model_answer":
        candidates.append(answer_file.path.parent.parent / QUESTION_FILE_NAME)
    if bench and bench != "unknown":
        try:
            candidates.append(question_file_for_bench(bench))
        except QuestionFileError:  # no such bench here, or an edited Spec-Bench file
            pass
    unique = []
    for path in candidates:
        if path.is_file() and path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


@functools.lru_cache(maxsize=16)
def _read(path: str, _size: int, _mtime_ns: int, categories: frozenset[str]) -> dict[str, Question]:
    return {str(q.question_id): q for q in load_questions(path, extra_categories=categories)}


def run_questions(answer_file: AnswerFile, bench: Optional[str]) -> list[dict[str, Question]]:
    """Each readable candidate file's questions by id (a file that cannot be read is skipped)."""
    categories = frozenset(a.category for a in answer_file.answers.values())
    found = []
    for path in question_files(answer_file, bench):
        try:
            stat = path.stat()
            found.append(_read(str(path), stat.st_size, stat.st_mtime_ns, categories))
        except (OSError, QuestionFileError):
            continue
    return found


def question_turns(files: list[dict[str, Question]], question_id: str, answer: Answer) -> Optional[list[str]]:
    """The user turns of the question this answer replies to; None where no file holds it."""
    for questions in files:
        question = questions.get(str(question_id))
        if question is None or question.category != answer.category:
            continue
        turns, answered = len(question.turns), len(answer.turns)
        if turns == answered or (answer.error is not None and answered < turns):
            return list(question.turns)
    return None
