"""equal.py: aligned on question ids, first divergence found exactly, Spec-Bench's verdict line,
exit status 0 equal / 1 not equal / 2 error."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluation import equal
from evaluation.record.answers import AnswerFileError, read_answer_file
from evaluation.compare.near_ties import near_tie_threshold
from evaluation.compare.equality import EqualInputError, coarser_dtype, compare_answers, first_divergence
from tests.answer_fixtures import synthetic_run, write_answer_file

ROOT = Path(__file__).resolve().parents[1]


def baseline_records(spec_bench=False):
    return synthetic_run(method="vanilla", accept=1, draft_length=0, spec_bench=spec_bench)


def method_records(spec_bench=False):
    return synthetic_run(spec_bench=spec_bench)


def read_pair(tmp_path, method, base):
    return (read_answer_file(write_answer_file(tmp_path / "method.jsonl", method)),
            read_answer_file(write_answer_file(tmp_path / "base.jsonl", base)))


@pytest.mark.parametrize("a, b, index", [
    ([1, 2, 3], [1, 2, 3], None),
    ([1, 2, 3], [1, 9, 3], 1),
    ([1, 2, 3], [7, 2, 3], 0),
    ([1, 2], [1, 2, 3], 2),
    ("hello world", "hello there", 6),
    ("", "", None),
    ("", "a", 0),
])
def test_first_divergence(a, b, index):
    assert first_divergence(a, b) == index


def test_identical_answers_are_totally_equal(tmp_path):
    result = compare_answers(*read_pair(tmp_path, method_records(), baseline_records()))
    assert result.compared_on == "token_ids"
    assert result.all_equal and result.num_compared == result.num_equal == 11
    assert all(s.exact_match_rate == 1.0 for s in result.subtasks)
    assert equal.format_result(result).splitlines()[-1] == "Result totally Equal!"


def test_token_divergence_is_found_per_question_and_turn(tmp_path):
    method = method_records()
    choice = method[0]["choices"][0]  # question 81 (writing), second turn
    choice["token_ids"][1][5] += 1
    choice = method[3]["choices"][0]  # question 162 (translation), from token 9 on
    choice["token_ids"][0][9:] = [1, 2, 3]
    result = compare_answers(*read_pair(tmp_path, method, baseline_records()))
    assert not result.all_equal
    found = [(d.question_id, d.turn, d.first_divergence, d.unit) for d in result.differences]
    assert found == [("81", 1, 5, "token"), ("162", 0, 9, "token")]  # turn indexes from 0
    rates = {s.subtask: s.exact_match_rate for s in result.subtasks}
    assert rates["mt_bench"] == pytest.approx(3 / 4)  # 4 turns, one differs
    assert rates["translation"] == pytest.approx(1 / 2)
    assert rates["qa"] == 1.0
    assert result.num_compared == 11 and result.num_equal == 9
    d = result.differences[0]
    base_ids = baseline_records()[0]["choices"][0]["token_ids"][1]
    assert d.base_excerpt == ", ".join(map(str, base_ids))  # 5 before, 10 after: the whole turn
    assert d.excerpt == ", ".join(map(str, base_ids[:5] + [base_ids[5] + 1] + base_ids[6:]))
    text = equal.format_result(result)
    assert "question 81 (writing) turn 2: first divergence at token 5" in text
    assert text.splitlines()[-1] == "Not Equal!"


def test_spec_bench_files_are_compared_on_text_by_character(tmp_path):
    method = method_records(spec_bench=True)
    turns = method[4]["choices"][0]["turns"]  # question 241
    original = turns[0]
    turns[0] = original[:30] + "X" + original[31:]
    result = compare_answers(*read_pair(tmp_path, method, baseline_records(spec_bench=True)))
    assert result.compared_on == "text"
    [d] = result.differences
    assert (d.question_id, d.turn, d.first_divergence, d.unit) == ("241", 0, 30, "char")
    assert d.excerpt.startswith("…" + original[10:30] + "X")
    assert d.base_excerpt.startswith("…" + original[10:31])


def test_a_missing_turn_diverges_at_zero(tmp_path):
    method = method_records(spec_bench=True)
    choice = method[1]["choices"][0]  # question 82: only the first turn finished
    for name in ("turns", "decoding_steps", "new_tokens", "wall_time"):
        choice[name] = choice[name][:1]
    result = compare_answers(*read_pair(tmp_path, method, baseline_records(spec_bench=True)))
    [d] = result.differences
    assert (d.question_id, d.turn, d.first_divergence) == ("82", 1, 0)
    assert d.excerpt == "(no such turn)"


def test_order_of_lines_does_not_matter(tmp_path):
    method = list(reversed(method_records()))
    assert compare_answers(*read_pair(tmp_path, method, baseline_records())).all_equal


def test_different_question_sets_are_an_error_unless_partial(tmp_path):
    method = method_records()[:-1]  # without question 561
    with pytest.raises(EqualInputError, match=r"only in .*base\.jsonl: question\(s\) 561"):
        compare_answers(*read_pair(tmp_path, method, baseline_records()))
    result = compare_answers(*read_pair(tmp_path, method, baseline_records()), allow_partial=True)
    assert result.all_equal and len(result.question_ids) == 8


# ---- the command line -------------------------------------------------------------------

def test_cli_spec_bench_style_names_inside_a_folder(tmp_path, capsys):
    write_answer_file(tmp_path / "vanilla.jsonl", baseline_records())
    write_answer_file(tmp_path / "pld.jsonl", method_records())
    code = equal.main(["--file-path", str(tmp_path), "--jsonfile1", "vanilla.jsonl",
                       "--jsonfile2", "pld.jsonl", "--no-db"])
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Result totally Equal!"


def test_cli_full_paths_and_not_equal_exit_1(tmp_path, capsys):
    base = write_answer_file(tmp_path / "a" / "vanilla.jsonl", baseline_records())
    method = method_records()
    method[5]["choices"][0]["token_ids"][0][0] += 1
    m = write_answer_file(tmp_path / "b" / "pld.jsonl", method)
    code = equal.main(["--file-path", str(tmp_path / "elsewhere"), "--jsonfile1", str(base),
                       "--jsonfile2", str(m), "--no-db"])
    out = capsys.readouterr().out
    assert code == 1
    assert "question 321 (qa) turn 1: first divergence at token 0" in out
    assert out.splitlines()[-1] == "Not Equal!"


def test_cli_errors_exit_2(tmp_path, capsys):
    base = write_answer_file(tmp_path / "vanilla.jsonl", baseline_records())
    (tmp_path / "empty.jsonl").write_text("")
    assert equal.main(["--jsonfile1", str(base), "--jsonfile2", str(tmp_path / "empty.jsonl"),
                       "--no-db"]) == 2
    err = capsys.readouterr().err
    assert "empty answer file" in err and "Traceback" not in err
    assert equal.main(["--jsonfile1", str(base), "--jsonfile2", str(tmp_path / "nope.jsonl"),
                       "--no-db"]) == 2


def test_runs_as_a_script(tmp_path):
    write_answer_file(tmp_path / "vanilla.jsonl", baseline_records())
    method = copy.deepcopy(method_records())
    method[2]["choices"][0]["token_ids"][0][4] = 999
    write_answer_file(tmp_path / "pld.jsonl", method)
    result = subprocess.run(
        [sys.executable, "evaluation/equal.py", "--file-path", str(tmp_path), "--jsonfile1",
         "vanilla.jsonl", "--jsonfile2", "pld.jsonl", "--db", str(tmp_path / "r.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == "Not Equal!"
    assert "question 161 (translation) turn 1: first divergence at token 4" in result.stdout


def test_help_explains_every_option():
    text = equal.build_parser().format_help()
    for option in ("--file-path", "--jsonfile1", "--jsonfile2", "--compare", "--allow-partial",
                   "--show", "--json", "--db", "--no-db"):
        assert option in text


# ---- near-ties: the baseline's logit margin at each first divergence ------------------------

def with_margins(records, margin=5.0):
    """Give every token of every turn the same margin (as the runner writes them)."""
    for record in records:
        choice = record["choices"][0]
        choice["logit_margins"] = [[margin] * len(ids) for ids in choice["token_ids"]]
    return records


def test_divergences_are_classified_by_the_baselines_margin(tmp_path, capsys):
    threshold = near_tie_threshold("float16")  # the fixtures' environment dtype
    base = with_margins(baseline_records())
    base[0]["choices"][0]["logit_margins"][1][5] = threshold / 4  # q81 turn 2: nearly a tie
    base[3]["choices"][0]["logit_margins"][0][9] = threshold * 4  # q162: a clear choice
    method = with_margins(method_records())
    method[0]["choices"][0]["token_ids"][1][5] += 1
    method[3]["choices"][0]["token_ids"][0][9:] = [1, 2, 3]
    result = compare_answers(*read_pair(tmp_path, method, base))
    assert result.dtype == "float16" and result.near_tie_threshold == threshold
    verdicts = [(d.question_id, d.margin_verdict, d.base_margin) for d in result.differences]
    assert verdicts == [("81", "near-tie", pytest.approx(threshold / 4)),
                        ("162", "real", pytest.approx(threshold * 4))]
    text = equal.format_result(result)
    assert "near-tie: rounding alone can flip it" in text
    assert "real difference: rounding cannot explain it" in text
    assert "First divergences: 1 near-tie(s) (numerically fragile), 1 real difference(s), 0 unknown, 0 inherited" in text

    db = tmp_path / "results.db"
    assert equal.main(["--jsonfile1", str(tmp_path / "base.jsonl"), "--jsonfile2",
                       str(tmp_path / "method.jsonl"), "--db", str(db)]) == 1
    from leaderboard.db import open_database
    from leaderboard.models import Difference, EqualityCheck
    with open_database(str(db), create=False)() as session:
        check = session.query(EqualityCheck).one()
        assert (check.num_near_ties, check.threshold_dtype) == (1, "float16")
        assert check.near_tie_threshold == pytest.approx(threshold)
        rows = {d.question_id: (d.margin_verdict, d.base_margin) for d in session.query(Difference)}
    assert rows == {"81": ("near-tie", pytest.approx(threshold / 4)),
                    "162": ("real", pytest.approx(threshold * 4))}


def test_a_later_turn_of_a_diverged_question_is_inherited_not_real(tmp_path, capsys):
    # The GPU float16 case: turn 1 diverges at a near-tie; turn 2's prompt holds that answer, so
    # its divergence, even at a clear baseline margin, says nothing of the method.
    threshold = near_tie_threshold("float16")
    base = with_margins(baseline_records())
    base[0]["choices"][0]["logit_margins"][0][3] = threshold / 4
    base[0]["choices"][0]["logit_margins"][1][2] = threshold * 100
    method = with_margins(method_records())
    method[0]["choices"][0]["token_ids"][0][3] += 1
    method[0]["choices"][0]["token_ids"][1][2] += 1
    result = compare_answers(*read_pair(tmp_path, method, base))
    verdicts = [(d.question_id, d.turn, d.margin_verdict) for d in result.differences]
    assert verdicts == [("81", 0, "near-tie"), ("81", 1, "inherited")]
    assert result.verdict_counts() == {"near-tie": 1, "real": 0, "unknown": 0, "inherited": 1}
    text = equal.format_result(result)
    assert "0 real difference(s), 0 unknown, 1 inherited" in text
    assert "inherited: an earlier turn of this question diverged" in text


def test_files_without_margins_leave_the_verdict_unknown(tmp_path):
    method = method_records()
    method[0]["choices"][0]["token_ids"][1][5] += 1
    result = compare_answers(*read_pair(tmp_path, method, baseline_records()))
    [d] = result.differences
    assert (d.margin_verdict, d.base_margin) == ("unknown", None)
    assert "unknown (the baseline recorded no logit_margins there)" in equal.format_result(result)


@pytest.mark.parametrize("dtype, finer", [("bfloat16", "float16"), ("float16", "float32"),
                                          ("float32", "float64")])
def test_threshold_scales_with_the_dtypes_precision(dtype, finer):
    coarse, fine = near_tie_threshold(dtype), near_tie_threshold(finer)
    ratio = torch.finfo(getattr(torch, dtype)).eps / torch.finfo(getattr(torch, finer)).eps
    assert coarse / fine == pytest.approx(ratio)
    assert near_tie_threshold("unknown") is None
    assert coarser_dtype(dtype, finer) == dtype and coarser_dtype(None, finer) == finer


def test_a_margins_list_must_have_one_entry_per_token(tmp_path):
    records = with_margins(baseline_records())
    records[2]["choices"][0]["logit_margins"][0].pop()
    path = write_answer_file(tmp_path / "base.jsonl", records)
    with pytest.raises(AnswerFileError, match=r"base.jsonl:3: choices\[0\]: turn 1 has 11 logit_margins"):
        read_answer_file(path)


def test_a_token_difference_is_printed_as_text_as_well(tmp_path, capsys):
    base = write_answer_file(tmp_path / "vanilla.jsonl", baseline_records())
    method = method_records()
    choice = method[5]["choices"][0]
    choice["token_ids"][0][2] += 1
    choice["turns"][0] = choice["turns"][0].replace(" ", " slow ", 2).replace(" slow ", " ", 1)
    m = write_answer_file(tmp_path / "pld.jsonl", method)
    assert equal.main(["--jsonfile1", str(base), "--jsonfile2", str(m), "--no-db"]) == 1
    out = capsys.readouterr().out
    base_text = read_answer_file(base).answers["321"].turns[0]
    index = first_divergence(choice["turns"][0], base_text)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "question 321 (qa) turn 1" in line)
    assert lines[at + 4].startswith('    baseline text: "') and base_text[index:index + 5] in lines[at + 4]
    assert lines[at + 5].startswith('    method text:   "') and "slow" in lines[at + 5]


@pytest.mark.parametrize("field, value", [("wall_time", -0.25), ("wall_time", float("inf")),
                                          ("verify_time", -1.5)])
def test_a_negative_or_infinite_time_is_refused_naming_file_line_and_field(tmp_path, capsys, field, value):
    method = method_records()
    method[2]["choices"][0][field][0] = value
    write_answer_file(tmp_path / "method.jsonl", method)
    write_answer_file(tmp_path / "base.jsonl", baseline_records())
    db = tmp_path / "r.db"
    assert equal.main(["--file-path", str(tmp_path), "--jsonfile1", "base.jsonl", "--jsonfile2", "method.jsonl",
                       "--db", str(db)]) == 2
    err = capsys.readouterr().err
    qid = method[2]["question_id"]
    assert (f"error: {tmp_path / 'method.jsonl'}:3: question {qid} turn 1: {field} {value!r} is not a "
            f"non-negative number of seconds") in err
    assert "Traceback" not in err and not db.exists()
