"""evaluation.summary: one row per method, with speed.py's and equal.py's own figures."""

from evaluation import summary
from evaluation.record.answers import read_answer_file
from evaluation.compare.equality import compare_answers
from evaluation.compare.speedup import compare_speed
from tests.answer_fixtures import synthetic_run, write_answer_file


def test_one_row_per_method_with_speedup_interval_accepted_tokens_and_lossless(tmp_path, capsys):
    base = write_answer_file(tmp_path / "vanilla.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    fast = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(method="pld", accept=3))
    broken_records = synthetic_run(method="sps", accept=2)
    broken_records[0]["choices"][0]["token_ids"][0][4] += 1
    broken = write_answer_file(tmp_path / "sps.jsonl", broken_records)
    assert summary.main(["--base-path", str(base), "--file-path", str(fast), str(broken)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "All methods against vanilla (9 questions):"
    assert lines[1].split() == ["Method", "Speedup", "[95%", "CI]", "Mean", "accepted", "tokens",
                                "Predicted", "Lossless"]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == {"pld", "sps"}
    overall = compare_speed([read_answer_file(fast)], [read_answer_file(base)]).subtask("overall")
    assert (f"{overall.speedup:.2f}x [{overall.speedup_ci_low:.2f}, {overall.speedup_ci_high:.2f}]"
            in rows["pld"])
    assert f"{overall.acceptance.mean_acceptance_length:.2f}" in rows["pld"]
    assert rows["pld"].endswith("yes (11/11 turns)")
    equality = compare_answers(read_answer_file(broken), read_answer_file(base))
    assert rows["sps"].endswith(f"no ({equality.num_equal}/11 turns equal)")


def test_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert summary.main(["--base-path", str(tmp_path / "none.jsonl"), "--file-path", "x"]) == 2
    assert "none.jsonl: no such answer file" in capsys.readouterr().err


def test_the_predicted_speedup_and_inherited_divergences_are_shown(tmp_path, capsys):
    from tests.test_speed import CURVE

    base = write_answer_file(tmp_path / "vanilla.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    records = synthetic_run(method="pld", accept=3, seconds_per_step=0.03)
    for record in records:
        record["verify_cost"] = CURVE
    writing = next(r for r in records if len(r["choices"][0]["token_ids"]) == 2)
    writing["choices"][0]["token_ids"][0][4] += 1  # turn 1 diverges; turn 2 then inherits it
    writing["choices"][0]["token_ids"][1][4] += 1
    fast = write_answer_file(tmp_path / "pld.jsonl", records)
    assert summary.main(["--base-path", str(base), "--file-path", str(fast)]) == 0
    row = capsys.readouterr().out.splitlines()[3]
    predicted = compare_speed([read_answer_file(fast)], [read_answer_file(base)]).subtask("overall").prediction
    assert f"{predicted.predicted_speedup:.2f}x (measured {predicted.gap:+.0%})" in row
    assert row.endswith("1 inherited)")
