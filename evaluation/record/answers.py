"""Reading and validating answer files (docs/answer-format.md), ours and Spec-Bench's.

One line per question. Every problem is reported with the file and line it comes from, so a
broken file gives a message, not a traceback or a silently wrong number. Only the first choice
of each line is read (as Spec-Bench's evaluators do).

The fields are defined once, as data, in record/schema.py: the runner checks what it writes
against the same tables this reader validates with.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Optional

from evaluation.record.schema import (CHOICE_FIELDS, FIELDS_BY_NAME, LINE_RUN_FIELDS, PER_TURN_CHOICE_FIELDS,
                                      PER_TURN_EXTRA_FIELDS, QUESTION_FIELDS, SHARDED_IDENTITY_FIELDS,
                                      line_value)
from evaluation.record.subtasks import subtask_of


class AnswerFileError(ValueError):
    """An answer file that cannot be read, written or resumed; the message names the file (and
    line) and says what to do."""


class AnswerFileWarning(UserWarning):
    """Something suspicious but readable (e.g. a question answered twice)."""


# Spec-Bench's failure marker for a turn (its numbers for that turn are stale, see
# docs/evaluation.md), treated like our `error` field.
SPEC_BENCH_ERROR_TEXT = "ERROR"


# ---- what a reader gets -----------------------------------------------------------------

@dataclass
class Answer:
    """The first choice of one line, with per-turn lists of equal length."""

    question_id: str  # ids are compared as strings (int 81 and "81" are the same question)
    category: str
    model_id: str
    line: int
    turns: list[str]
    decoding_steps: list[int]
    new_tokens: list[int]
    wall_time: list[float]
    accept_lengths: list[int]  # flat over all turns
    token_ids: Optional[list[list[int]]] = None
    prefill_time: Optional[list[float]] = None
    draft_time: Optional[list[float]] = None
    verify_time: Optional[list[float]] = None
    draft_tokens: Optional[list[int]] = None
    forward_tokens: Optional[list[int]] = None  # per turn, tokens through the verification forwards
    prompt_tokens: Optional[list[int]] = None
    logit_margins: Optional[list[list[float]]] = None  # per turn, one per generated token
    error: Optional[str] = None
    run_fields: dict[str, Any] = field(default_factory=dict)  # the schema's run fields this line carries

    @property
    def subtask(self) -> str:
        return subtask_of(self.category)


@dataclass
class AnswerFile:
    path: Path
    sha256: str  # of the file's bytes: the run's identity in the database
    answers: dict[str, Answer]  # question_id -> answer, in question order
    source_format: str  # "ours" | "spec-bench"
    warnings: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        return next(iter(self.answers.values())).model_id

    def run_field(self, name: str, default: Any = None) -> Any:
        """A run field from the first line that carries it (the identity fields agree on every
        line, see _check_same_run); a dotted name is read inside "environment"."""
        for answer in self.answers.values():
            value = line_value(answer.run_fields, name)
            if value is not None and value != "":
                return value
        return default

    def run_value(self, name: str) -> Any:
        """What the file says of a run field (schema.RUN_FIELDS): the field where its lines
        record it, else what Spec-Bench's naming (model id, folder) says, else None."""
        if name not in FIELDS_BY_NAME:
            raise KeyError(f"{name!r} is not a run field of evaluation/record/schema.py")
        value = self.run_field(name)
        if value is None and name in SPEC_BENCH_FALLBACKS:
            value = SPEC_BENCH_FALLBACKS[name][1](self)
        return value

    @property
    def lossy(self) -> bool:
        return any(a.run_fields.get("lossy") is True for a in self.answers.values())

    def has_all(self, extra_field: str) -> bool:
        """True if every answer carries this optional per-turn field."""
        return all(getattr(a, extra_field) is not None for a in self.answers.values())

    def failed(self) -> dict[str, str]:
        """question_id -> error message of answers that failed."""
        return {qid: a.error for qid, a in self.answers.items() if a.error is not None}


# A plain (ASCII) integer: str.isdigit() would also take "²" or "٣", which int() refuses.
_PLAIN_INTEGER = re.compile(r"-?[0-9]+")


def question_sort_key(question_id: "str | int") -> tuple:
    """Numeric ids in numeric order (as Spec-Bench's reorg sorts), then any other id as text;
    never raises, whatever the id looks like ("²", "--5", "q7")."""
    text = str(question_id)
    return (0, int(text), "") if _PLAIN_INTEGER.fullmatch(text) else (1, 0, text)


# ---- reading ----------------------------------------------------------------------------

def read_answer_file(path: str | Path) -> AnswerFile:
    """Read and validate one answer file; raises AnswerFileError naming the file and line.

    A question answered on several lines keeps its last line (as Spec-Bench's reorg does) and
    adds a warning, also issued as an AnswerFileWarning.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnswerFileError(f"{path}: no such answer file") from None
    except OSError as exc:
        raise AnswerFileError(f"{path}: cannot read answer file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AnswerFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    answers: dict[str, Answer] = {}
    first_line_of: dict[str, int] = {}
    notes: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # a blank (e.g. trailing) line carries nothing
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnswerFileError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        answer = parse_answer(record, where, number)
        if answer.question_id in answers:
            notes.append(
                f"{path}: question {answer.question_id} appears on lines "
                f"{first_line_of[answer.question_id]} and {number}; keeping line {number}"
            )
        else:
            first_line_of[answer.question_id] = number
        answers[answer.question_id] = answer
    if not answers:
        raise AnswerFileError(f"{path}: empty answer file (no answer lines)")
    _check_same_run(path, answers)
    ordered = {qid: answers[qid] for qid in sorted(answers, key=question_sort_key)}
    ours = any(a.run_fields or a.token_ids is not None for a in ordered.values())
    if ours:
        notes += _step_count_notes(path, ordered)
    for note in notes:
        warnings.warn(note, AnswerFileWarning, stacklevel=2)
    return AnswerFile(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        answers=ordered,
        source_format="ours" if ours else "spec-bench",
        warnings=notes,
    )


def parse_answer(record: Any, where: str, line: int = 0) -> Answer:
    """Validate one decoded line; `where` prefixes every message (e.g. "file.jsonl:12")."""
    if not isinstance(record, dict):
        raise AnswerFileError(f"{where}: expected a JSON object, got {_json_type(record)}")
    for name, types in QUESTION_FIELDS.items():
        _require(record, name, types, where)
    question_id = record["question_id"]
    if isinstance(question_id, str) and not question_id.strip():
        raise AnswerFileError(f"{where}: question_id is an empty string")
    if not record["choices"]:
        raise AnswerFileError(f"{where}: choices is empty")
    choice = record["choices"][0]
    if not isinstance(choice, dict):
        raise AnswerFileError(f"{where}: choices[0] must be an object, got {_json_type(choice)}")
    cwhere = f"{where}: choices[0]"

    lists = {name: _number_list(choice, name, kind, cwhere, required=True)
             for name, kind in CHOICE_FIELDS.items()}
    extras = {name: _number_list(choice, name, kind, cwhere, required=False)
              for name, kind in PER_TURN_EXTRA_FIELDS.items()}
    if extras["token_ids"] is not None:
        for t, ids in enumerate(extras["token_ids"]):
            _check_elements(ids, int, f"{cwhere}.token_ids[{t}]")
    if extras["logit_margins"] is not None:
        for t, (margins, count) in enumerate(zip(extras["logit_margins"], lists["new_tokens"])):
            _check_elements(margins, float, f"{cwhere}.logit_margins[{t}]")
            if len(margins) != count:  # one margin per generated token
                raise AnswerFileError(f"{cwhere}: turn {t + 1} has {len(margins)} logit_margins but "
                                      f"new_tokens says {count}")

    per_turn = {name: lists[name] for name in PER_TURN_CHOICE_FIELDS}
    per_turn.update({name: value for name, value in extras.items() if value is not None})
    lengths = {name: len(value) for name, value in per_turn.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise AnswerFileError(f"{cwhere}: per-turn lists differ in length ({detail})")
    for name in ("decoding_steps", "new_tokens", "accept_lengths", "draft_tokens", "forward_tokens",
                 "prompt_tokens"):
        values = lists.get(name) or extras.get(name) or []
        if any(v < 0 for v in values):
            raise AnswerFileError(f"{cwhere}.{name} has a negative entry")
    if extras["token_ids"] is not None:
        # token_ids are what new_tokens counts; a file where they disagree has a broken count.
        for t, (ids, count) in enumerate(zip(extras["token_ids"], lists["new_tokens"])):
            if len(ids) != count:
                raise AnswerFileError(f"{cwhere}: turn {t + 1} has {len(ids)} token_ids but "
                                      f"new_tokens says {count}")

    run_fields = {}
    for run_field in LINE_RUN_FIELDS:
        name = run_field.name
        if name not in QUESTION_FIELDS and name in record and record[name] is not None:
            _require(record, name, run_field.types, where)
            run_fields[name] = record[name]

    turns = lists["turns"]
    error = run_fields.get("error")
    if error is None and SPEC_BENCH_ERROR_TEXT in turns:
        error = f"turn {turns.index(SPEC_BENCH_ERROR_TEXT) + 1} failed (Spec-Bench wrote 'ERROR')"
    return Answer(
        question_id=str(question_id).strip(),
        category=record["category"],
        model_id=record["model_id"],
        line=line,
        turns=turns,
        decoding_steps=lists["decoding_steps"],
        new_tokens=lists["new_tokens"],
        wall_time=[float(x) for x in lists["wall_time"]],
        accept_lengths=lists["accept_lengths"],
        token_ids=extras["token_ids"],
        prefill_time=_floats(extras["prefill_time"]),
        draft_time=_floats(extras["draft_time"]),
        verify_time=_floats(extras["verify_time"]),
        draft_tokens=extras["draft_tokens"],
        forward_tokens=extras["forward_tokens"],
        prompt_tokens=extras["prompt_tokens"],
        logit_margins=(None if extras["logit_margins"] is None
                       else [[float(m) for m in turn] for turn in extras["logit_margins"]]),
        error=error,
        run_fields=run_fields,
    )


# ---- helpers ----------------------------------------------------------------------------

def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _is_instance(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true/false are not numbers here
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _require(record: dict, name: str, types: tuple[type, ...], where: str) -> None:
    if name not in record:
        raise AnswerFileError(f"{where}: missing field {name!r}")
    value = record[name]
    if not any(_is_instance(value, kind) for kind in types):
        wanted = " or ".join(_json_type(kind()) for kind in types)
        raise AnswerFileError(f"{where}: {name} must be {wanted}, got {_json_type(value)}")


def _check_elements(values: list, kind: type, where: str) -> None:
    for i, value in enumerate(values):
        if not _is_instance(value, kind):
            raise AnswerFileError(
                f"{where}[{i}] must be {_json_type(kind())}, got {_json_type(value)} ({value!r:.40})"
            )


def _number_list(choice: dict, name: str, kind: type, where: str, required: bool) -> Optional[list]:
    if name not in choice or choice[name] is None:
        if required:
            raise AnswerFileError(f"{where}: missing field {name!r}")
        return None
    values = choice[name]
    if not isinstance(values, list):
        raise AnswerFileError(f"{where}.{name} must be a list, got {_json_type(values)}")
    _check_elements(values, kind, f"{where}.{name}")
    return values


def _floats(values: Optional[list]) -> Optional[list[float]]:
    return None if values is None else [float(v) for v in values]


def _check_same_run(path: Path, answers: dict[str, Answer]) -> None:
    """One file is one run: the identity fields (but the per-device facts, which differ on a run
    sharded over several kinds of device) must agree on every line that carries them."""
    first: dict[str, tuple[Any, int]] = {}
    for answer in answers.values():
        values = dict(answer.run_fields, model_id=answer.model_id)
        for name in SHARDED_IDENTITY_FIELDS:
            value = line_value(values, name)
            if value is None:
                continue
            if name not in first:
                first[name] = (value, answer.line)
            elif not _same(first[name][0], value):
                raise AnswerFileError(
                    f"{path}: lines {first[name][1]} and {answer.line} disagree on {name} "
                    f"({first[name][0]!r} vs {value!r}); one answer file must hold one run"
                )


def _step_count_notes(path: Path, answers: dict[str, Answer]) -> list[str]:
    """Our format promises sum(accept_lengths) == sum(new_tokens) and one entry per step;
    Spec-Bench's files break both for several methods, so only ours are checked."""
    broken = [qid for qid, a in answers.items()
              if sum(a.accept_lengths) != sum(a.new_tokens)
              or len(a.accept_lengths) != sum(a.decoding_steps)]
    if not broken:
        return []
    shown = ", ".join(broken[:12]) + (f", ... ({len(broken)} in all)" if len(broken) > 12 else "")
    return [f"{path}: accept_lengths do not match new_tokens / decoding_steps for question(s) "
            f"{shown}; acceptance figures of these answers follow accept_lengths as written"]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


# ---- run description for files without our fields (Spec-Bench's model_id conventions) ----

# Method names as they appear in Spec-Bench's model ids, e.g. "vicuna-7b-v1.3-pld-float16".
SPEC_BENCH_METHODS = {
    "vanilla": "vanilla", "baseline": "vanilla", "sps": "sps", "pld": "pld", "lade": "lookahead",
    "lookahead": "lookahead", "rest": "rest", "recycling": "recycling", "samd": "samd",
    "medusa": "medusa", "hydra": "hydra", "eagle": "eagle", "eagle2": "eagle2",
    "eagle3": "eagle3", "space": "space",
}
_DTYPES = ("float16", "bfloat16", "float32", "float64", "fp16", "bf16", "fp32")
_TEMPERATURE = re.compile(r"(?:^|-)(?:temp|temperature)-([0-9]+(?:\.[0-9]+)?)(?:-|$)")


@dataclass
class ModelIdGuess:
    model: Optional[str] = None
    method: Optional[str] = None
    dtype: Optional[str] = None
    temperature: Optional[float] = None


def guess_from_model_id(model_id: str) -> ModelIdGuess:
    """What Spec-Bench's model-id naming says about a run (None where it says nothing)."""
    parts = model_id.split("-")
    guess = ModelIdGuess()
    for i, part in enumerate(parts):
        if part.lower() in SPEC_BENCH_METHODS and i > 0:
            guess.method = SPEC_BENCH_METHODS[part.lower()]
            guess.model = "-".join(parts[:i])
            break
    for part in parts:
        if part.lower() in _DTYPES:
            guess.dtype = part.lower()
            break
    match = _TEMPERATURE.search(model_id)
    if match:
        guess.temperature = float(match.group(1))
    return guess


def run_model(answer_file: "AnswerFile") -> Optional[str]:
    """The model a file's run belongs to: its model id without the method part.

    Our files record the method, and the id is cut at its last "-<method>", so a model named after
    a method keeps its name ("vicuna-v1.3-7b-space-space-float16" is the SPACE checkpoint
    "vicuna-v1.3-7b-space"). Spec-Bench's files are read by their naming; its SPACE answers come
    from a fine-tuned checkpoint, a model of its own that Spec-Bench names after the model it was
    tuned from, so they are named "<that model>-space": never paired with the original model's
    baseline nor listed under it.
    """
    model_id = answer_file.model_id
    method = answer_file.run_field("method")
    if method and f"-{method}" in model_id:
        head, found, _ = (model_id + "-").rpartition(f"-{method}-")
        return (head if found else model_id.split(f"-{method}", 1)[0]) or None
    guess = guess_from_model_id(model_id)
    if not method and guess.method == "space" and guess.model:
        return f"{guess.model}-space"
    return guess.model


def model_name_of_path(model_path: Any) -> Optional[str]:
    """A hub id stays as it is; a local folder or file is named by its last component (so the
    same model loaded from two machines' folders has one name)."""
    if not isinstance(model_path, str) or not model_path:
        return None
    if model_path.startswith(("/", "~", ".")) or "\\" in model_path or model_path.count("/") > 1:
        return PurePath(model_path.replace("\\", "/")).name or model_path
    return model_path


def bench_from_path(path: Path) -> Optional[str]:
    """Spec-Bench writes data/{bench_name}/model_answer/{model_id}.jsonl; None elsewhere."""
    return path.parent.parent.name if path.parent.name == "model_answer" else None


# What Spec-Bench's naming says of a run field its files do not record (AnswerFile.run_value):
# field -> (where it is then read from, the reader).
SPEC_BENCH_FALLBACKS: dict[str, tuple[str, Any]] = {
    "method": ("the model id", lambda f: guess_from_model_id(f.model_id).method),
    "environment.dtype": ("the model id", lambda f: guess_from_model_id(f.model_id).dtype),
    "temperature": ("the model id's temp-T", lambda f: guess_from_model_id(f.model_id).temperature),
    "bench_name": ("the data/{bench}/model_answer/ folder", lambda f: bench_from_path(f.path)),
    # Where the first versions of the runner recorded the prompt format.
    "conv_template": ("environment.conv_template",
                      lambda f: f.run_field("environment", {}).get("conv_template") or None),
}
