"""Whether a method's answer files can be compared with a baseline's: the settings that must
agree, read the same way from both sides.

A speedup is only meaningful between runs of one model on one device with one dtype, one
target distribution (temperature, top-p, top-k), one length cap, one question set, one backend
and one prompt format, against a run of the baseline. `SETTINGS` is the single table of what is
compared and how each value is read from an answer file; adding a setting is one line there.

A setting is compared only when both files record it. Spec-Bench's own files record none of our
fields, so for them only what their model id names (model, method, dtype, temperature) and their
folder (bench) can be checked; the rest is reported as not checked, never assumed equal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from evaluation.record.answers import (
    AnswerFile,
    bench_from_path,
    guess_from_model_id,
    model_name_of_path,
    run_model,
)

BASELINE_METHOD = "vanilla"
# The check that the baseline side is a baseline run; --allow-mismatch names it like a setting.
BASELINE_CHECK = "baseline_method"


def _environment(f: AnswerFile, key: str) -> Any:
    value = (f.run_field("environment") or {}).get(key)
    return None if value in (None, "") else value


def method_of(f: AnswerFile) -> Optional[str]:
    """The recorded method, else the one Spec-Bench's model-id naming gives, else None."""
    return f.run_field("method") or guess_from_model_id(f.model_id).method


def _model(f: AnswerFile) -> Optional[str]:
    """The model id without its method part ("vicuna-7b-v1.3-pld-float16" -> "vicuna-7b-v1.3"):
    the model id names the method, so it differs between the two sides by design."""
    return run_model(f)


@dataclass(frozen=True)
class Setting:
    name: str  # as given to --allow-mismatch and stored in the database
    source: str  # where it is read from, for messages and docs
    read: Callable[[AnswerFile], Any]  # None when the file does not record it


SETTINGS: tuple[Setting, ...] = (
    Setting("model", "model_id before the method name", _model),
    Setting("model_path", "environment.model_path (a local folder by its name)",
            lambda f: model_name_of_path(_environment(f, "model_path"))),
    Setting("device", "environment.device", lambda f: _environment(f, "device")),
    Setting("device_name", "environment.device_name", lambda f: _environment(f, "device_name")),
    Setting("dtype", "environment.dtype, else the model id",
            lambda f: _environment(f, "dtype") or guess_from_model_id(f.model_id).dtype),
    Setting("temperature", "temperature, else the model id's temp-T",
            lambda f: f.run_field("temperature", guess_from_model_id(f.model_id).temperature)),
    Setting("top_p", "top_p", lambda f: f.run_field("top_p")),
    Setting("top_k", "top_k", lambda f: f.run_field("top_k")),
    Setting("max_new_tokens", "max_new_tokens", lambda f: f.run_field("max_new_tokens")),
    Setting("bench", "bench_name, else the data/{bench}/model_answer/ folder",
            lambda f: f.run_field("bench_name") or bench_from_path(f.path)),
    Setting("backend", "environment.backend", lambda f: _environment(f, "backend")),
    Setting("native_code", "environment.native_code", lambda f: _environment(f, "native_code")),
    Setting("prompt_format", "conv_template, else environment.conv_template",
            lambda f: f.run_field("conv_template") or _environment(f, "conv_template")),
)
CHECK_NAMES: tuple[str, ...] = (BASELINE_CHECK, *(s.name for s in SETTINGS))


@dataclass(frozen=True)
class Mismatch:
    setting: str  # a name of CHECK_NAMES
    method_value: Any  # for BASELINE_CHECK: the method a baseline must have
    base_value: Any
    method_file: str
    base_file: str

    def describe(self) -> str:
        if self.setting == BASELINE_CHECK:
            return (f"{self.base_file} is not a baseline run: its method is {self.base_value!r}, "
                    f"a baseline's is {self.method_value!r}")
        return (f"{self.setting} differs: {self.method_value!r} in the method file "
                f"{self.method_file}, {self.base_value!r} in the baseline file {self.base_file}")

    def short(self) -> str:
        """One phrase for tables: "dtype float16 vs float32"."""
        if self.setting == BASELINE_CHECK:
            return f"baseline is {self.base_value}, not {self.method_value}"
        return f"{self.setting} {self.method_value} vs {self.base_value}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Compatibility:
    mismatches: list[Mismatch]  # each allowed by the caller; any other stopped the comparison
    unchecked: list[str]  # settings not recorded on one side (or both) of some pair

    @property
    def matched(self) -> bool:
        return not self.mismatches


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def parse_allowed(values: list[str]) -> set[str]:
    """--allow-mismatch values: repeated and/or comma-separated names of CHECK_NAMES."""
    names = {name.strip() for value in values for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(CHECK_NAMES))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for --allow-mismatch; "
                         f"one of: {', '.join(CHECK_NAMES)}")
    return names


def check_compatibility(method_files: list[AnswerFile], base_files: list[AnswerFile],
                        pairs: list[tuple[int, int]], allowed: set[str] = frozenset()
                        ) -> tuple[Compatibility, list[Mismatch]]:
    """Compare every paired method file with its baseline file.

    Returns what was found (allowed mismatches and unchecked settings) and the mismatches that
    were not allowed, which the caller must refuse.
    """
    found: list[Mismatch] = []
    unchecked: list[str] = []
    seen = set()

    def add(mismatch: Mismatch) -> None:
        key = (mismatch.setting, repr(mismatch.method_value), repr(mismatch.base_value))
        if key not in seen:
            seen.add(key)
            found.append(mismatch)

    for i, j in pairs:
        m, b = method_files[i], base_files[j]
        base_method = method_of(b)
        if base_method is None:
            if BASELINE_CHECK not in unchecked:
                unchecked.append(BASELINE_CHECK)
        elif base_method != BASELINE_METHOD:
            add(Mismatch(BASELINE_CHECK, BASELINE_METHOD, base_method, str(m.path), str(b.path)))
        for setting in SETTINGS:
            ours, theirs = setting.read(m), setting.read(b)
            if ours is None or theirs is None:
                if setting.name not in unchecked:
                    unchecked.append(setting.name)
            elif not _same(ours, theirs):
                add(Mismatch(setting.name, ours, theirs, str(m.path), str(b.path)))
    refused = [x for x in found if x.setting not in allowed]
    accepted = [x for x in found if x.setting in allowed]
    order = {name: k for k, name in enumerate(CHECK_NAMES)}
    return Compatibility(accepted, sorted(unchecked, key=order.get)), refused
