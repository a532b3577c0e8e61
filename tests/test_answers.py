"""The answer-file reader: both formats read, every kind of broken file named by file and line."""

import json

import pytest

from evaluation.record.answers import (
    AnswerFileError,
    AnswerFileWarning,
    guess_from_model_id,
    read_answer_file,
)
from tests.answer_fixtures import (
    our_answer,
    spec_bench_answer,
    synthetic_run,
    write_answer_file,
    write_lines,
)


def _one(qid=81, **kw):
    return our_answer(qid, "writing", [[1, 2, 3], [4, 5]], [0.1, 0.2], [[2, 1], [2]], **kw)


def test_reads_our_format_with_extra_fields(tmp_path):
    path = write_answer_file(tmp_path / "ours.jsonl", [
        _one(82, draft_tokens=[4, 2], draft_time=[0.01, 0.02]), _one(81)])
    f = read_answer_file(path)
    assert f.source_format == "ours"
    assert list(f.answers) == ["81", "82"]  # sorted by numeric id, ids as strings
    a = f.answers["82"]
    assert a.token_ids == [[1, 2, 3], [4, 5]]
    assert a.accept_lengths == [2, 1, 2]
    assert a.draft_tokens == [4, 2] and a.draft_time == [0.01, 0.02]
    assert a.subtask == "mt_bench"
    assert f.run_field("method") == "pld"
    assert f.run_field("environment")["dtype"] == "float16"
    assert f.has_all("token_ids") and not f.has_all("draft_tokens")
    assert len(f.sha256) == 64


def test_reads_spec_bench_format(tmp_path):
    path = write_answer_file(tmp_path / "sb.jsonl", synthetic_run(spec_bench=True))
    f = read_answer_file(path)
    assert f.source_format == "spec-bench"
    assert not f.has_all("token_ids")
    assert f.answers["81"].token_ids is None
    assert f.answers["161"].subtask == "translation"


def test_numeric_ids_sort_numerically_and_text_ids_after(tmp_path):
    records = [spec_bench_answer(q, "qa", ["x"], [1], [0.1]) for q in (100, 9, "abc", 81)]
    f = read_answer_file(write_answer_file(tmp_path / "a.jsonl", records))
    assert list(f.answers) == ["9", "81", "100", "abc"]


def test_malformed_json_names_file_and_line(tmp_path):
    good = json.dumps(spec_bench_answer(81, "qa", ["x"], [1], [0.1]))
    path = write_lines(tmp_path / "bad.jsonl", [good, '{"question_id": 82, "category": '])
    with pytest.raises(AnswerFileError, match=r"bad\.jsonl:2: malformed JSON"):
        read_answer_file(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(AnswerFileError, match=r"empty\.jsonl: empty answer file"):
        read_answer_file(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(AnswerFileError, match="no such answer file"):
        read_answer_file(tmp_path / "nope.jsonl")


def test_missing_question_field_is_named(tmp_path):
    record = spec_bench_answer(81, "qa", ["x"], [1], [0.1])
    del record["category"]
    path = write_answer_file(tmp_path / "m.jsonl", [spec_bench_answer(80, "qa", ["x"], [1], [0.1]), record])
    with pytest.raises(AnswerFileError, match=r"m\.jsonl:2: missing field 'category'"):
        read_answer_file(path)


def test_missing_choice_field_is_named(tmp_path):
    record = spec_bench_answer(81, "qa", ["x"], [1], [0.1])
    del record["choices"][0]["wall_time"]
    with pytest.raises(AnswerFileError, match=r":1: choices\[0\]: missing field 'wall_time'"):
        read_answer_file(write_answer_file(tmp_path / "m.jsonl", [record]))


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["choices"][0].update(new_tokens=["5"]), r"new_tokens\[0\] must be an integer, got a string"),
    (lambda r: r["choices"][0].update(wall_time=[True]), r"wall_time\[0\] must be a number, got a boolean"),
    (lambda r: r["choices"][0].update(turns="text"), r"turns must be a list, got a string"),
    (lambda r: r.update(question_id=1.5), r"question_id must be an integer or a string, got a number"),
    (lambda r: r.update(choices=[]), r"choices is empty"),
    (lambda r: r["choices"][0].update(new_tokens=[-1]), r"new_tokens has a negative entry"),
    (lambda r: r.update(temperature="hot"), r"temperature must be"),
    (lambda r: r["choices"][0].update(token_ids=[["a"]]), r"token_ids\[0\]\[0\] must be an integer"),
])
def test_wrong_types_are_named(tmp_path, mutate, message):
    record = spec_bench_answer(81, "qa", ["x"], [1], [0.1])
    mutate(record)
    with pytest.raises(AnswerFileError, match=message):
        read_answer_file(write_answer_file(tmp_path / "t.jsonl", [record]))


def test_line_that_is_not_an_object(tmp_path):
    path = write_lines(tmp_path / "l.jsonl", ["[1, 2]"])
    with pytest.raises(AnswerFileError, match=r"l\.jsonl:1: expected a JSON object, got a list"):
        read_answer_file(path)


def test_per_turn_lists_of_different_lengths(tmp_path):
    record = spec_bench_answer(81, "writing", ["a", "b"], [3, 4], [0.1])
    with pytest.raises(AnswerFileError, match=r"per-turn lists differ in length \(turns=2, "
                                              r"decoding_steps=2, new_tokens=2, wall_time=1\)"):
        read_answer_file(write_answer_file(tmp_path / "d.jsonl", [record]))


def test_our_per_turn_extras_must_match_turn_count(tmp_path):
    record = _one(draft_time=[0.01])
    with pytest.raises(AnswerFileError, match=r"draft_time=1"):
        read_answer_file(write_answer_file(tmp_path / "d.jsonl", [record]))


def test_token_ids_must_match_new_tokens(tmp_path):
    record = _one()
    record["choices"][0]["new_tokens"] = [3, 3]
    with pytest.raises(AnswerFileError, match=r"turn 2 has 2 token_ids but new_tokens says 3"):
        read_answer_file(write_answer_file(tmp_path / "d.jsonl", [record]))


def test_duplicate_ids_keep_the_last_line_and_warn(tmp_path):
    first = spec_bench_answer(81, "qa", ["old"], [1], [0.1])
    other = spec_bench_answer(82, "qa", ["x"], [1], [0.1])
    last = spec_bench_answer(81, "qa", ["new"], [1], [0.1])
    path = write_answer_file(tmp_path / "dup.jsonl", [first, other, last])
    with pytest.warns(AnswerFileWarning, match="question 81 appears on lines 1 and 3; keeping line 3"):
        f = read_answer_file(path)
    assert f.answers["81"].turns == ["new"]
    assert len(f.answers) == 2 and len(f.warnings) == 1


def test_inconsistent_step_counts_in_our_format_warn(tmp_path):
    record = _one()
    record["choices"][0]["accept_lengths"] = [1, 1, 1]
    with pytest.warns(AnswerFileWarning, match="accept_lengths do not match .* question\\(s\\) 81"):
        read_answer_file(write_answer_file(tmp_path / "w.jsonl", [record]))


def test_a_file_mixing_runs_is_an_error(tmp_path):
    path = write_answer_file(tmp_path / "mix.jsonl", [_one(81), _one(82, method="sps")])
    with pytest.raises(AnswerFileError, match=r"lines 1 and 2 disagree on method \('pld' vs 'sps'\)"):
        read_answer_file(path)


def test_spec_bench_error_marker_and_our_error_field_mark_failed_answers(tmp_path):
    records = [spec_bench_answer(81, "qa", ["ERROR"], [5], [0.1]),
               spec_bench_answer(82, "qa", ["fine"], [5], [0.1])]
    f = read_answer_file(write_answer_file(tmp_path / "e.jsonl", records))
    assert list(f.failed()) == ["81"]
    g = read_answer_file(write_answer_file(tmp_path / "o.jsonl", [_one(error="CUDA out of memory")]))
    assert g.failed() == {"81": "CUDA out of memory"}


@pytest.mark.parametrize("model_id, method, model, dtype, temperature", [
    ("vicuna-7b-v1.3-pld-float16", "pld", "vicuna-7b-v1.3", "float16", None),
    ("vicuna-7b-v1.3-vanilla-float16-temp-0.0", "vanilla", "vicuna-7b-v1.3", "float16", 0.0),
    ("vicuna-7b-v1.3-sps-68m-float32-temp-0.7", "sps", "vicuna-7b-v1.3", "float32", 0.7),
    ("vicuna-7b-v1.3-lade-level-5-win-7-guess-7-float16", "lookahead", "vicuna-7b-v1.3", "float16", None),
    ("vicuna-7b-v1.3-rest-float16-temperature-0.0-top_p-0", "rest", "vicuna-7b-v1.3", "float16", 0.0),
    ("vicuna-7b-v1.3-recycling", "recycling", "vicuna-7b-v1.3", None, None),
    ("my-model", None, None, None, None),
])
def test_guess_from_spec_bench_model_id(model_id, method, model, dtype, temperature):
    guess = guess_from_model_id(model_id)
    assert (guess.method, guess.model, guess.dtype, guess.temperature) == (method, model, dtype, temperature)
