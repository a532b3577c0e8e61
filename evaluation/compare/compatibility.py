"""Whether a method's answer files can be compared with a baseline's: the settings that must
agree, read the same way from both sides.

A speedup is only meaningful between runs of one model on one device with one dtype, one
target distribution (temperature, top-p, top-k), one length cap, one question set, one backend
and one prompt format, against a run of the baseline. Which fields are compared, and under which
names, is the answer line's schema (record/schema.py, a field's `baseline`); `SETTINGS` says how
each is read from an answer file. Adding a setting is one word in the schema.

A setting is compared only when both files record it. Spec-Bench's own files record none of our
fields, so for them only what their model id names (model, method, dtype, temperature) and their
folder (bench) can be checked; the rest is reported as not checked, never assumed equal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from evaluation.record.answers import SPEC_BENCH_FALLBACKS, AnswerFile, model_name_of_path, run_model
from evaluation.record.schema import BASELINE_FIELDS, RunField

BASELINE_METHOD = "vanilla"
# The check that the baseline side is a baseline run; --allow-mismatch names it like a setting.
BASELINE_CHECK = "baseline_method"


def method_of(f: AnswerFile) -> Optional[str]:
    """The recorded method, else the one Spec-Bench's model-id naming gives, else None."""
    return f.run_value("method")


@dataclass(frozen=True)
class Setting:
    name: str  # as given to --allow-mismatch and stored in the database
    source: str  # where it is read from, for messages and docs
    read: Callable[[AnswerFile], Any]  # None when the file does not record it


# How a setting is read where it is not the field's value as recorded (with Spec-Bench's
# fallbacks, AnswerFile.run_value): (how, reader).
_READ_OTHERWISE: dict[str, tuple[str, Callable[[AnswerFile], Any]]] = {
    # The model id names the method too, so it differs between the two sides by design: compare
    # the part before the method ("vicuna-7b-v1.3-pld-float16" -> "vicuna-7b-v1.3").
    "model": ("model_id before the method name", run_model),
    "model_path": ("environment.model_path (a local folder by its name)",
                   lambda f: model_name_of_path(f.run_value("environment.model_path"))),
}


def _setting(field: RunField) -> Setting:
    if field.baseline in _READ_OTHERWISE:
        source, read = _READ_OTHERWISE[field.baseline]
        return Setting(field.baseline, source, read)
    otherwise = SPEC_BENCH_FALLBACKS.get(field.name)
    source = field.name + (f", else {otherwise[0]}" if otherwise else "")
    return Setting(field.baseline, source, lambda f: f.run_value(field.name))


# The settings compared, in the order of the answer-line schema (record/schema.py, the fields
# with a `baseline` name).
SETTINGS: tuple[Setting, ...] = tuple(_setting(field) for field in BASELINE_FIELDS)
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
