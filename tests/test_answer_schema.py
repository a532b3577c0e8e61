"""One definition of an answer line (evaluation/record/schema.py), read by every side that
writes, resumes, compares and stores answer lines."""

import copy

import pytest

from evaluation.compare.compatibility import CHECK_NAMES, SETTINGS
from evaluation.record import schema
from evaluation.record.answers import AnswerFileError, read_answer_file
from evaluation.run.answer_file import AnswerFileError as ResumeError, check_same_run
from leaderboard.models import Run
from leaderboard.store import run_columns
from tests.answer_fixtures import our_answer, write_answer_file
from tests.test_inference import questions, read, run, tiny_folder  # noqa: F401 (fixtures)


def _line(qid=81, **kw):
    return our_answer(qid, "writing", [[1, 2, 3]], [0.1], [[2, 1]], **kw)


def test_the_tables_agree_with_themselves():
    names = [f.name for f in schema.RUN_FIELDS]
    assert len(names) == len(set(names))
    assert set(schema.PER_DEVICE_FIELDS) <= set(schema.IDENTITY_FIELDS)
    assert schema.IDENTITY_FIELDS[-1] == "model_id"  # reported after the causes of its difference
    assert set(schema.SHARDED_IDENTITY_FIELDS) == set(schema.IDENTITY_FIELDS) - set(schema.PER_DEVICE_FIELDS)
    # speed.py's settings are the schema's compared fields, in its order, under their names.
    assert [s.name for s in SETTINGS] == [f.baseline for f in schema.BASELINE_FIELDS]
    assert CHECK_NAMES[1:] == tuple(f.baseline for f in schema.BASELINE_FIELDS)
    # Every stored field has its Run column.
    columns = set(Run.__table__.columns.keys())
    assert {f.column for f in schema.RUN_FIELDS if f.column} <= columns


def test_a_line_of_the_runner_is_inside_the_schema(tiny_folder, questions, tmp_path):  # noqa: F811
    answers = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answers, "pld", "--question-end", "1") == 0
    (line,) = read(answers)
    schema.check_written_line(line)  # the runner checked it too, before writing it
    written = {name for name in line if name in {f.name for f in schema.RUN_FIELDS}}
    written |= {f"environment.{key}" for key in line["environment"]}
    identity = set(schema.IDENTITY_FIELDS)
    assert identity <= written, f"the runner does not write {sorted(identity - written)}"


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(surprise=1), "unknown field 'surprise'"),
    (lambda r: r["environment"].update(gpu_clock=1), "unknown field 'environment.gpu_clock'"),
    (lambda r: r.update(seed="0"), "seed is '0'"),
    (lambda r: r["environment"].update(num_threads=True), "environment.num_threads is True"),
    (lambda r: r["choices"][0].update(extra_list=[]), "unknown choice field 'extra_list'"),
])
def test_a_line_outside_the_schema_is_refused_before_it_is_written(change, message):
    record = _line()
    schema.check_written_line(record)
    change(record)
    with pytest.raises(schema.AnswerLineError, match=message):
        schema.check_written_line(record)


def test_the_reader_refuses_a_file_mixing_runs_on_any_identity_field_but_the_per_device_ones(tmp_path):
    base = _line(81)
    other_seed = dict(_line(82), seed=1)
    with pytest.raises(AnswerFileError, match="disagree on seed"):
        read_answer_file(write_answer_file(tmp_path / "mixed.jsonl", [base, other_seed]))
    other_torch = _line(82)
    other_torch["environment"] = dict(other_torch["environment"], torch="2.0.0")
    with pytest.raises(AnswerFileError, match="disagree on environment.torch"):
        read_answer_file(write_answer_file(tmp_path / "torch.jsonl", [base, other_torch]))
    # A run sharded over two kinds of device: per-device facts differ from line to line.
    cpu = _line(82)
    cpu["environment"] = dict(cpu["environment"], device="cpu", device_name="Some CPU", cuda=None)
    f = read_answer_file(write_answer_file(tmp_path / "sharded.jsonl", [base, cpu]))
    assert run_columns(f)["device"] == "cpu + cuda"


def test_the_resume_check_compares_every_identity_field(tmp_path):
    path = write_answer_file(tmp_path / "a.jsonl", [_line(81)])
    written = {k: v for k, v in _line(81).items() if k not in ("question_id", "category", "choices")}
    checked = 0
    for name in schema.IDENTITY_FIELDS:
        value = schema.line_value(written, name, None)
        if value is None:  # not recorded by the fixture (conv_template, backend...)
            continue
        checked += 1
        changed = copy.deepcopy(written)
        holder = changed["environment"] if "." in name else changed
        holder[name.rpartition(".")[2]] = {"other": 1} if isinstance(value, dict) else "other"
        with pytest.raises(ResumeError, match=name):
            check_same_run(path, changed)
    assert checked >= 15
