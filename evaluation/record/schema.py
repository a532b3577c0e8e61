"""What an answer line holds: the one definition every writer and reader of answer files uses.

    {"question_id", "category", "answer_id", "choices": [{per-turn lists}], "model_id",
     run fields ("method", "temperature", ..., "environment": {...}), "placement", "tstamp"}

docs/answer-format.md explains each field. Here each is data:
- QUESTION_FIELDS: Spec-Bench's fields every reader needs;
- CHOICE_FIELDS and PER_TURN_EXTRA_FIELDS: the lists of a choice, Spec-Bench's and ours;
- RUN_FIELDS: the fields that say which run a line belongs to, one row each: its JSON type, and
  whether it is part of the run's identity (a resume with another value is another run; a file
  whose lines disagree on it mixes runs), a fact of the device the line was answered on (a run
  sharded over several kinds of device differs there from line to line), compared with the
  baseline's by speed.py (under which setting name), and stored as which database column.

The runner (evaluation/run/answering.py) checks every line it writes against these tables; the
reader (record/answers.py), the resume check (run/answer_file.py), speed.py's settings check
(compare/compatibility.py) and the store (leaderboard/store.py) read their names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Spec-Bench's fields that every reader needs. answer_id and tstamp are written but never read.
QUESTION_FIELDS: dict[str, tuple[type, ...]] = {
    "question_id": (int, str),
    "category": (str,),
    "model_id": (str,),
    "choices": (list,),
}
WRITTEN_ONLY_FIELDS = ("answer_id", "tstamp")
# Per choice: each a list with one entry per turn, except the flat accept_lengths.
CHOICE_FIELDS: dict[str, type] = {
    "turns": str,
    "decoding_steps": int,
    "new_tokens": int,
    "wall_time": float,
    "accept_lengths": int,
}
PER_TURN_CHOICE_FIELDS = ("turns", "decoding_steps", "new_tokens", "wall_time")
# Our optional per-turn fields: name -> element type (token_ids holds one list of ints per turn).
PER_TURN_EXTRA_FIELDS: dict[str, type] = {
    "token_ids": list,
    "prefill_time": float,
    "draft_time": float,
    "verify_time": float,
    "draft_tokens": int,
    "forward_tokens": int,  # tokens through the target in the turn's verification forwards
    "prompt_tokens": int,
    "logit_margins": list,
    # Why the turn ended: "stop" (a stop token or string), "max_new_tokens" or "context_limit"
    # (the model's context is full: an answer cut there is not a finished one).
    "stop_reason": str,
}
# Per turn, only from drafters that count something (samd's draft sources); not read back.
DRAFTER_STATS_FIELD = "drafter_stats"


@dataclass(frozen=True)
class RunField:
    """One field that says which run a line belongs to. A dotted name lies inside "environment"."""

    name: str
    types: tuple[type, ...]  # its JSON types (a bool is never a number); None is always allowed
    identity: bool = False  # part of the run's identity (docs/answer-format.md, "Resuming")
    per_device: bool = False  # a fact of the device the line was answered on, not of the run
    baseline: Optional[str] = None  # compared with the baseline's under this setting name
    column: Optional[str] = None  # the leaderboard's Run column that holds it

    @property
    def in_environment(self) -> bool:
        return "." in self.name

    @property
    def key(self) -> str:
        """Its key in the line, or in the line's environment."""
        return self.name.rpartition(".")[2]


_NUMBER = (int, float)
_TEXT = (str,)
# The settings speed.py compares come first, in the order it reports them; model_id names the
# model (the part before the method) and, by default, the method, dtype and temperature too.
RUN_FIELDS: tuple[RunField, ...] = (
    RunField("model_id", _TEXT, identity=True, baseline="model", column="model_id"),
    RunField("environment.model_path", _TEXT, identity=True, baseline="model_path"),
    RunField("environment.device", _TEXT, identity=True, per_device=True, baseline="device", column="device"),
    RunField("environment.device_name", _TEXT, identity=True, per_device=True, baseline="device_name",
             column="device_name"),
    RunField("environment.dtype", _TEXT, identity=True, baseline="dtype", column="dtype"),
    RunField("temperature", _NUMBER, identity=True, baseline="temperature", column="temperature"),
    RunField("top_p", _NUMBER, identity=True, baseline="top_p"),
    RunField("top_k", (int,), identity=True, baseline="top_k"),
    RunField("max_new_tokens", (int,), identity=True, baseline="max_new_tokens", column="max_new_tokens"),
    RunField("bench_name", _TEXT, identity=True, baseline="bench", column="bench"),
    RunField("environment.backend", _TEXT, identity=True, baseline="backend", column="backend"),
    # Which native code ran (AVX2 or AVX-512 differ by CPU), so a fact of each device.
    RunField("environment.native_code", _TEXT, identity=True, per_device=True, baseline="native_code",
             column="native_code"),
    RunField("conv_template", _TEXT, identity=True, baseline="prompt_format"),  # the prompt format
    RunField("method", _TEXT, identity=True, column="method"),
    RunField("method_params", (dict,), identity=True, column="method_params"),
    RunField("lossy", (bool,), identity=True, column="lossy"),
    RunField("seed", (int,), identity=True),
    RunField("environment.attention", _TEXT, identity=True),
    RunField("environment.num_threads", (int,), identity=True, per_device=True, column="num_threads"),
    RunField("environment.torch", _TEXT, identity=True, column="torch_version"),
    RunField("environment.transformers", _TEXT, identity=True, column="transformers_version"),
    RunField("environment.cuda", _TEXT, identity=True, per_device=True, column="cuda_version"),
    RunField("environment.native_kernel", (bool,), identity=True),
    # Described, not part of the identity: they follow from the fields above or do not change
    # the output or its timing.
    RunField("environment.python", _TEXT),
    RunField("environment.platform", _TEXT),
    RunField("environment.tree_attention", (bool,)),
    RunField("environment", (dict,)),
    # Where this line was answered: node, device (and Ray worker); speed.py pairs by it.
    RunField("placement", (dict,)),
    # The device's verification cost curve, measured before the run's first question
    # (evaluation/run/verify_cost.py): {"tokens", "seconds", "relative", "context_tokens",
    # "repeats", "measured_in_s"}. A fact of the device, but measured again on a resume (and by
    # each worker of a sharded run), so neither part of the identity nor checked per device.
    RunField("verify_cost", (dict,)),
    RunField("error", _TEXT),  # present only when the question failed
)
FIELDS_BY_NAME: dict[str, RunField] = {f.name: f for f in RUN_FIELDS}
# The fields that lie at the top of a line (validated on reading; the environment's entries are
# descriptive and read leniently).
LINE_RUN_FIELDS: tuple[RunField, ...] = tuple(f for f in RUN_FIELDS if not f.in_environment)
ENVIRONMENT_FIELDS: tuple[RunField, ...] = tuple(f for f in RUN_FIELDS if f.in_environment)

# What a resume compares: every identity field, model_id last (by default the file name follows
# the method, dtype and temperature, so a difference there is the cause to report first).
IDENTITY_FIELDS: tuple[str, ...] = (tuple(f.name for f in RUN_FIELDS if f.identity and f.name != "model_id")
                                    + ("model_id",))
PER_DEVICE_FIELDS: tuple[str, ...] = tuple(f.name for f in RUN_FIELDS if f.per_device)
# A run sharded over Ray workers may span devices of several kinds: its lines agree on the rest.
SHARDED_IDENTITY_FIELDS: tuple[str, ...] = tuple(n for n in IDENTITY_FIELDS if n not in PER_DEVICE_FIELDS)
BASELINE_FIELDS: tuple[RunField, ...] = tuple(f for f in RUN_FIELDS if f.baseline)


def line_value(line: dict, name: str, missing=None):
    """The value of a field in a line (a dotted name inside "environment"); ``missing`` where the
    line does not carry it."""
    value = line
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


class AnswerLineError(ValueError):
    """The runner was about to write a line this schema does not describe: a bug, not bad input."""


def _type_ok(value, types: tuple[type, ...]) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def check_written_line(record: dict) -> None:
    """Refuse a line whose fields are not the ones defined here, or not of their types: what the
    runner writes and what the readers expect cannot drift apart unnoticed."""
    known = set(QUESTION_FIELDS) | set(WRITTEN_ONLY_FIELDS) | {f.name for f in LINE_RUN_FIELDS}
    problems = [f"unknown field {name!r}" for name in record if name not in known]
    for name, types in QUESTION_FIELDS.items():
        if not _type_ok(record.get(name), types) or name not in record:
            problems.append(f"{name} missing or not {types}")
    for field in LINE_RUN_FIELDS:
        if not _type_ok(record.get(field.name), field.types):
            problems.append(f"{field.name} is {record[field.name]!r}, not {field.types}")
    environment = record.get("environment") or {}
    by_key = {f.key: f for f in ENVIRONMENT_FIELDS}
    for key, value in environment.items():
        if key not in by_key:
            problems.append(f"unknown field 'environment.{key}'")
        elif not _type_ok(value, by_key[key].types):
            problems.append(f"environment.{key} is {value!r}, not {by_key[key].types}")
    choice_fields = set(CHOICE_FIELDS) | set(PER_TURN_EXTRA_FIELDS) | {"index", DRAFTER_STATS_FIELD}
    for choice in record.get("choices") or []:
        problems += [f"unknown choice field {name!r}" for name in choice if name not in choice_fields]
    if problems:
        raise AnswerLineError("answer line outside the schema (evaluation/record/schema.py): "
                              + "; ".join(problems))
