"""speed.py on runs sharded over Ray workers: each method answer is paired with the baseline's
from the same device, and a run over two device types is reported and ranked per type, never
pooled."""

import json

import pytest
from sqlalchemy import select

from evaluation import speed
from evaluation.record.answers import read_answer_file
from evaluation.compare.speedup import SpeedInputError, compare_speed
from leaderboard import queries
from leaderboard.db import open_database
from leaderboard.models import Run, SpeedComparison
from tests.answer_fixtures import QUESTIONS, synthetic_run, write_answer_file

FAST, SLOW = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
ON_FAST = {81, 82, 161, 162, 241}  # questions the H100 worker answered; the rest ran on the A100


def placed(records, base_seconds_on_slow=None):
    """Put each question on worker 0 (H100) or worker 1 (A100), as a sharded run writes them."""
    for record in records:
        fast = record["question_id"] in ON_FAST
        record["environment"] = record["environment"] | {"device_name": FAST if fast else SLOW}
        record["placement"] = {"node": "node-a" if fast else "node-b", "device": "cuda:0",
                               "worker": 0 if fast else 1}
    return records


def slowed(records, factor):
    """The A100's answers take `factor` times longer."""
    for record in records:
        if record["question_id"] not in ON_FAST:
            choice = record["choices"][0]
            choice["wall_time"] = [t * factor for t in choice["wall_time"]]
    return records


@pytest.fixture
def mixed(tmp_path):
    # Method: 3 tokens per step; H100 0.03 s a step, A100 twice as slow. Baseline: 1 token per
    # step; H100 0.02 s a step, A100 1.5 times as slow. Speedup: H100 2.0x, A100 1.5x.
    method = placed(slowed(synthetic_run(seconds_per_step=0.03), 2.0))
    base = placed(slowed(synthetic_run(method="vanilla", accept=1, draft_length=0), 1.5))
    return (write_answer_file(tmp_path / "pld.jsonl", method),
            write_answer_file(tmp_path / "vanilla.jsonl", base))


def test_a_run_over_two_device_types_gets_one_speedup_per_type(mixed):
    report = compare_speed([read_answer_file(mixed[0])], [read_answer_file(mixed[1])])
    assert set(report.by_device_type) == {FAST, SLOW}
    fast, slow = report.by_device_type[FAST], report.by_device_type[SLOW]
    assert set(fast.question_ids) == {str(q) for q in ON_FAST}
    assert len(slow.question_ids) == len(QUESTIONS) - len(ON_FAST)
    assert fast.subtask("overall").speedup == pytest.approx(2.0)
    assert slow.subtask("overall").speedup == pytest.approx(1.5)
    assert report.pairing.same_device == report.pairing.pairs == len(QUESTIONS)


def test_report_says_how_answers_were_paired_and_never_pools_device_types(mixed, capsys):
    assert speed.main(["--file-path", str(mixed[0]), "--base-path", str(mixed[1]), "--no-db"]) == 0
    out = capsys.readouterr().out
    assert "These runs mix device types" in out and "never pooled" in out
    assert f"=== Device type: {FAST} ===" in out and f"=== Device type: {SLOW} ===" in out
    assert (f"from the same device: {len(ON_FAST)} of {len(ON_FAST)} pairs") in out
    pooled = out.split("=== Device type")[0]  # what comes before the per-type reports
    assert "Overall" not in pooled and "Speedup" not in pooled


def test_the_leaderboard_ranks_each_device_type_in_its_own_selection(mixed, db_url):
    assert speed.main(["--file-path", str(mixed[0]), "--base-path", str(mixed[1]), "--db", db_url]) == 0
    assert speed.main(["--file-path", str(mixed[0]), "--base-path", str(mixed[1]), "--db", db_url]) == 0
    sessions = open_database(db_url)
    with sessions() as session:
        assert sorted(session.scalars(select(SpeedComparison.device_name))) == sorted([FAST, SLOW])
        assert session.scalars(select(Run.device_name)).all() == [f"{SLOW} + {FAST}"] * 2
        selections = queries.available_selections(session)
        assert sorted(s.device_name for s in selections) == sorted([FAST, SLOW])
        overall = {s.device_name: [round(r.overall, 3) for r in queries.leaderboard_rows(session, s)]
                   for s in selections}
    assert overall == {FAST: [2.0], SLOW: [1.5]}
    sessions.kw["bind"].dispose()


def test_answers_paired_across_device_types_are_refused_naming_the_question(tmp_path):
    method = placed(synthetic_run(seconds_per_step=0.03))
    base = placed(synthetic_run(method="vanilla", accept=1, draft_length=0))
    base[-1]["environment"]["device_name"] = FAST  # answered again elsewhere after a lost worker
    m = write_answer_file(tmp_path / "pld.jsonl", method)
    b = write_answer_file(tmp_path / "vanilla.jsonl", base)
    with pytest.raises(SpeedInputError, match=r"another device type .*\n  question 561: "):
        compare_speed([read_answer_file(m)], [read_answer_file(b)])


def test_pairs_on_two_devices_of_one_type_are_counted_and_named(tmp_path):
    method = placed(synthetic_run(seconds_per_step=0.03))
    base = placed(synthetic_run(method="vanilla", accept=1, draft_length=0))
    base[0]["placement"] = base[0]["placement"] | {"worker": 7}
    m = write_answer_file(tmp_path / "pld.jsonl", method)
    b = write_answer_file(tmp_path / "vanilla.jsonl", base)
    report = compare_speed([read_answer_file(m)], [read_answer_file(b)])
    assert report.pairing.same_type_elsewhere == ["81"]
    text = report.pairing.describe()
    assert f"same device: {len(QUESTIONS) - 1} of {len(QUESTIONS)} pairs" in text and "81" in text
    assert json.dumps(report.as_dict()["pairing"])  # the JSON report carries it too


def test_files_without_placements_say_the_device_was_not_checked(tmp_path):
    m = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(seconds_per_step=0.03))
    b = write_answer_file(tmp_path / "vanilla.jsonl",
                          synthetic_run(method="vanilla", accept=1, draft_length=0))
    report = compare_speed([read_answer_file(m)], [read_answer_file(b)])
    assert not report.by_device_type
    assert "not checked to be the same device" in report.pairing.describe()


def test_pairs_across_device_types_allowed_by_option_are_recorded_as_a_mismatch(tmp_path):
    method = placed(synthetic_run(seconds_per_step=0.03))
    base = placed(synthetic_run(method="vanilla", accept=1, draft_length=0))
    base[-1]["environment"]["device_name"] = FAST
    m = write_answer_file(tmp_path / "pld.jsonl", method)
    b = write_answer_file(tmp_path / "vanilla.jsonl", base)
    report = compare_speed([read_answer_file(m)], [read_answer_file(b)], allow_mismatch={"device_name"})
    assert report.pairing.other_type and not report.compatibility.matched  # never ranked
    assert [x.setting for x in report.compatibility.mismatches] == ["device_name"]


def test_each_device_types_time_split_uses_only_its_own_timings(mixed, db_url):
    """A run over an H100 and an A100: the H100's time split is the H100's figure (method 10 ms
    per token, baseline 20), not one pooled with the A100's (20 and 30 ms)."""
    assert speed.main(["--file-path", str(mixed[0]), "--base-path", str(mixed[1]), "--db", db_url]) == 0
    sessions = open_database(db_url)
    with sessions() as session:
        per_token = {}
        for selection in queries.available_selections(session):
            parts = queries.time_split(session, queries.leaderboard_rows(session, selection))
            per_token[selection.device_name] = parts.groupby("run")["ms_per_token"].sum().round(6).to_dict()
    assert per_token == {FAST: {"pld": 10.0, "vanilla (baseline)": 20.0},
                         SLOW: {"pld": 20.0, "vanilla (baseline)": 30.0}}
    sessions.kw["bind"].dispose()
