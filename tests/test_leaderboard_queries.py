"""Leaderboard rows: one per method configuration, the newest comparison of each; on SQLite and
on PostgreSQL (the `db_url` fixture)."""

from datetime import timedelta

import pytest

from evaluation.record.subtasks import SPEC_BENCH_SUBTASKS
from leaderboard import queries
from leaderboard.db import open_database
from tests.leaderboard_fixtures import A100, BENCH, DTYPE, T0, VICUNA, _Builder


def _database(db_url, configurations):
    """A baseline and one comparison per (method, params, created day, speed factor)."""
    sessions = open_database(db_url, create=True)
    with sessions() as session, session.begin():
        builder = _Builder(session)
        base = builder.run("vanilla", A100, VICUNA, 0.0, T0, {s: 40.0 for s in SPEC_BENCH_SUBTASKS})
        for method, params, day, factor in configurations:
            created = T0 + timedelta(days=day)
            run = builder.run(method, A100, VICUNA, 0.0, created,
                              {s: 40.0 * factor for s in SPEC_BENCH_SUBTASKS})
            run.method_params = params
            builder.compare(run, base, created)
    return sessions


def _rows(sessions):
    with sessions() as session:
        return queries.leaderboard_rows(session, queries.Selection(A100, VICUNA, DTYPE, 0.0, BENCH))


def test_two_configurations_of_one_method_get_two_labelled_rows(db_url):
    sessions = _database(db_url, [
        ("pld", {"max_ngram": 3, "num_pred": 10}, 1, 1.5),
        ("pld", {"max_ngram": 3, "num_pred": 5}, 2, 1.2),
        ("sps", {"gamma": 4}, 1, 1.8),
    ])
    rows = _rows(sessions)
    speedups = {row.method: round(row.overall, 1) for row in rows}  # the fixture jitters ~0.5%
    # Only the differing parameter is shown; a method with one configuration keeps its bare name.
    assert speedups == {"sps": 1.8, "pld (num_pred=10)": 1.5, "pld (num_pred=5)": 1.2}
    assert [row.method for row in rows] == ["sps", "pld (num_pred=10)", "pld (num_pred=5)"]


def test_a_rerun_of_the_same_configuration_replaces_the_older_row(db_url):
    sessions = _database(db_url, [
        ("pld", {"num_pred": 10, "max_ngram": 3}, 1, 0.5),
        ("pld", {"max_ngram": 3, "num_pred": 10}, 2, 1.5),  # same parameters, other key order
    ])
    rows = _rows(sessions)
    assert [(row.method, round(row.overall, 1)) for row in rows] == [("pld", 1.5)]


def test_comparisons_stored_despite_a_mismatch_are_never_ranked(tmp_path, db_url):
    from evaluation import speed
    from tests.answer_fixtures import synthetic_run, write_answer_file

    vanilla = write_answer_file(tmp_path / "vanilla.jsonl",
                                synthetic_run(method="vanilla", accept=1, draft_length=0))
    pld = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(seconds_per_step=0.03))
    float32 = synthetic_run(method="sps", seconds_per_step=0.005)
    for record in float32:
        record["environment"]["dtype"] = "float32"
    sps = write_answer_file(tmp_path / "sps.jsonl", float32)
    db = db_url
    assert speed.main(["--file-path", str(pld), "--base-path", str(vanilla), "--db", db]) == 0
    # The files swapped (a "vanilla 0.5x" against the pld run) and a run of another dtype.
    assert speed.main(["--file-path", str(vanilla), "--base-path", str(pld), "--db", db,
                       "--allow-mismatch", "baseline_method"]) == 0
    assert speed.main(["--file-path", str(sps), "--base-path", str(vanilla), "--db", db,
                       "--allow-mismatch", "dtype"]) == 0
    sessions = open_database(db)
    with sessions() as session:
        selections = queries.available_selections(session)
        # The float32 sps run's own selection has only an unmatched comparison: not offered.
        assert [s.dtype for s in selections] == ["float16"]
        rows = queries.leaderboard_rows(session, selections[0])
        assert [(row.method, row.base_method) for row in rows] == [("pld", "vanilla")]
        assert rows[0].mismatches == [] and "backend" in rows[0].unchecked_settings
        unmatched = queries.unmatched_rows(session, selections[0])
        assert [(row.method, row.mismatch_text) for row in unmatched] == [
            ("vanilla", "baseline is pld, not vanilla")]
        float32_selection = queries.Selection(*[getattr(selections[0], f) for f in
                                                queries.SELECTION_FIELDS[:2]], "float32", 0.0,
                                              "spec_bench")
        assert queries.leaderboard_rows(session, float32_selection) == []
        assert [row.mismatch_text for row in queries.unmatched_rows(session, float32_selection)] \
            == ["dtype float32 vs float16"]


def test_cost_curve_and_predictions_of_the_device_viewed(tmp_path, db_url):
    from evaluation import speed
    from tests.answer_fixtures import synthetic_run, write_answer_file
    from tests.test_speed import CURVE

    method = synthetic_run(seconds_per_step=0.03)
    for record in method:
        record["verify_cost"] = CURVE
    vanilla = write_answer_file(tmp_path / "vanilla.jsonl",
                                synthetic_run(method="vanilla", accept=1, draft_length=0))
    pld = write_answer_file(tmp_path / "pld.jsonl", method)
    assert speed.main(["--file-path", str(pld), "--base-path", str(vanilla), "--db", db_url]) == 0
    sessions = open_database(db_url, create=False)
    with sessions() as session:
        [selection] = queries.available_selections(session)
        view = queries.cost_curve_view(session, selection)
        metrics = queries.acceptance_metrics(session, queries.leaderboard_rows(session, selection))
    assert list(view.curve["tokens"]) == CURVE["tokens"] and view.curves_found == 1
    assert list(view.curve["relative"]) == CURVE["relative"]
    [prediction] = view.predictions.to_dict("records")
    assert prediction["predicted"] == pytest.approx(3 / (1.4 + 0.0075 / 0.018))
    assert prediction["measured"] == pytest.approx(2.0) and view.flagged_methods == ["pld"]
    [row] = metrics.to_dict("records")
    assert row["al_pooled"] == pytest.approx(3.0) and row["al_per_request"] == pytest.approx(3.0)
    assert row["max_draft_length"] == 4 and row["per_position_conditional"] == pytest.approx([1, 1, 0, None])
