"""The one question loader: every entry point reads question files through here.

A question file is Spec-Bench's format: one JSON object a line with `question_id` (int or str),
`category` (str), `turns` (non-empty list of non-empty str) and optionally `reference` (list of
str, or of lists of str as on Spec-Bench's rag lines; no evaluator reads it). Unlike fastchat's
loader, a bad file fails at load time with the file and line named, instead of halfway through a
benchmark run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from evaluation.record.subtasks import KNOWN_CATEGORIES, subtask_of
from methods.core.file_hash import file_sha256 as sha256_of
from methods.core.paths import DATA_DIR

QUESTION_FILE_NAME = "question.jsonl"
# The public Spec-Bench file is fetched for users, never shipped (see evaluation/fetch_questions.py).
SPEC_BENCH = "spec_bench"
FETCH_COMMAND = "python -m evaluation.fetch_questions"
# The SHA-256 of Spec-Bench's question file at the commit fetch_questions pins: the runner and
# fetch_questions both refuse any other file under data/spec_bench/.
SPEC_BENCH_SHA256 = "4b6d33e79484f9841c487ee87d1cf6aa8c6066f61d5d482ff09e5a007fafdf04"

# A bench name is a folder under data/; anything else (slashes, "..") is a typo or worse.
_BENCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class QuestionFileError(ValueError):
    """A question file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: list[str]
    # Usually one string per turn; Spec-Bench's rag lines hold a list of acceptable answers instead.
    reference: list[str | list[str]] | None = None

    @property
    def subtask(self) -> str:
        """The reported subtask (the eight MT-bench categories are one subtask, mt_bench)."""
        return subtask_of(self.category)


def question_file_for_bench(bench_name: str) -> Path:
    """The question file of a bench: data/<bench_name>/question.jsonl under the repo root."""
    if not _BENCH_NAME.match(bench_name):
        raise QuestionFileError(f"invalid bench name {bench_name!r}: expected a folder name under data/")
    path = DATA_DIR / bench_name / QUESTION_FILE_NAME
    if path.is_file():
        if bench_name == SPEC_BENCH:
            check_spec_bench_checksum(path)
        return path
    if bench_name == SPEC_BENCH:
        raise QuestionFileError(
            f"{path} is missing: the Spec-Bench question file is not shipped with this project. "
            f"Run `{FETCH_COMMAND}` to download it, or `{FETCH_COMMAND} --from PATH` to copy it "
            "from a local file."
        )
    available = sorted(p.parent.name for p in DATA_DIR.glob(f"*/{QUESTION_FILE_NAME}"))
    raise QuestionFileError(
        f"no question file for bench {bench_name!r} (looked for {path}); "
        f"benches with a question file: {', '.join(available) or 'none'}"
    )


def check_spec_bench_checksum(path: Path) -> None:
    """The runner answers `--bench-name spec_bench` only from the pinned file fetch_questions
    verified: an edited or damaged copy would give results that look like Spec-Bench's and are not."""
    found = sha256_of(path)
    if found != SPEC_BENCH_SHA256:
        raise QuestionFileError(
            f"{path}: sha256 {found[:12]}... is not the pinned Spec-Bench question file's ({SPEC_BENCH_SHA256[:12]}...): "
            f"it was edited or damaged; run `{FETCH_COMMAND}` to fetch it again (or pass an edited "
            f"file of your own with --question-file)")


def load_questions(
    path: str | Path,
    begin: int | None = None,
    end: int | None = None,
    extra_categories: Iterable[str] = (),
) -> list[Question]:
    """Read and validate every question of `path`, then return questions[begin:end].

    begin/end are 0-based positions in the file's question order, end-exclusive, with Python
    slice semantics (as Spec-Bench's --question-begin/--question-end). The whole file is
    validated even when a slice is asked for, so a bad line is found before a long run starts.
    Blank lines are skipped. Categories must be known to evaluation.record.subtasks or listed in
    extra_categories.
    """
    path = Path(path)
    allowed_categories = KNOWN_CATEGORIES | frozenset(extra_categories)
    questions: list[Question] = []
    first_line_of_id: dict[str, int] = {}
    for line_number, line in _numbered_lines(path):
        if not line.strip():
            continue
        question = _parse_line(path, line_number, line, allowed_categories)
        # Answer files and results key on the id; 7 and "7" would collide once written out.
        id_key = str(question.question_id)
        if id_key in first_line_of_id:
            raise QuestionFileError(
                f"{path}, line {line_number}: duplicate question_id {question.question_id!r} "
                f"(first seen on line {first_line_of_id[id_key]})"
            )
        first_line_of_id[id_key] = line_number
        questions.append(question)
    if not questions:
        raise QuestionFileError(f"{path}: the file is empty (no questions)")
    return questions[begin:end]


def first_per_subtask(questions: list[Question], count: int) -> list[Question]:
    """The first `count` questions of each subtask, in file order: a small run that still
    reaches every column of the leaderboard (a plain line range often holds one subtask)."""
    if count < 1:
        raise ValueError(f"questions per subtask must be at least 1, got {count}")
    taken: dict[str, int] = {}
    chosen = []
    for question in questions:
        if taken.get(question.subtask, 0) < count:
            taken[question.subtask] = taken.get(question.subtask, 0) + 1
            chosen.append(question)
    return chosen


def _numbered_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(1-based line number, text) for each line; decoding errors name their line."""
    if not path.exists():
        raise QuestionFileError(f"{path}: question file not found")
    if not path.is_file():
        raise QuestionFileError(f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise QuestionFileError(f"{path}: cannot read the question file ({error.strerror})") from None
    # Split on b"\n" only: str.splitlines would also split on U+2028 inside JSON strings.
    raw_lines = data.split(b"\n")
    for line_number, raw in enumerate(raw_lines, start=1):
        try:
            yield line_number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise QuestionFileError(f"{path}, line {line_number}: not valid UTF-8 ({error.reason})") from None


def _is_reference(value: object) -> bool:
    # Spec-Bench's rag lines hold one list of acceptable answers per turn: [["a", "b"]].
    def is_answer(item: object) -> bool:
        return isinstance(item, str) or (isinstance(item, list) and all(isinstance(s, str) for s in item))

    return isinstance(value, list) and all(is_answer(item) for item in value)


def _preview(value: object, limit: int = 60) -> str:
    """A value's repr cut short, so one bad 5,000-character line does not flood the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_line(path: Path, line_number: int, line: str, allowed_categories: frozenset[str]) -> Question:
    where = f"{path}, line {line_number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise QuestionFileError(f"{where}: malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise QuestionFileError(f"{where}: expected a JSON object, got {type(record).__name__}")

    if "question_id" not in record:
        raise QuestionFileError(f"{where}: missing question_id")
    question_id = record["question_id"]
    # bool is an int subclass in Python; `true` as an id is a mistake, not the id 1.
    if isinstance(question_id, bool) or not isinstance(question_id, (int, str)) or question_id == "":
        raise QuestionFileError(f"{where}: question_id must be an int or a non-empty string, got {_preview(question_id)}")

    category = record.get("category")
    if not isinstance(category, str):
        raise QuestionFileError(f"{where}: missing or non-string category (got {_preview(category)})")
    if category not in allowed_categories:
        raise QuestionFileError(
            f"{where}: unknown category {category!r}; known categories: "
            f"{', '.join(sorted(allowed_categories))} (declare others with extra_categories)"
        )

    turns = record.get("turns")
    if not isinstance(turns, list) or not turns:
        raise QuestionFileError(f"{where}: turns must be a non-empty list of strings, got {_preview(turns)}")
    for index, turn in enumerate(turns):
        if not isinstance(turn, str) or not turn.strip():
            raise QuestionFileError(f"{where}: turns[{index}] must be a non-empty string, got {_preview(turn)}")

    reference = record.get("reference")
    if reference is not None and not _is_reference(reference):
        raise QuestionFileError(
            f"{where}: reference must be a list of strings (or of lists of strings), got {_preview(reference)}"
        )

    return Question(question_id=question_id, category=category, turns=turns, reference=reference)
