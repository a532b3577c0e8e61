"""Leaderboard rows: one per method configuration, the newest comparison of each; on SQLite and
on PostgreSQL (the `db_url` fixture)."""

from dataclasses import replace
from datetime import timedelta

import pytest

from evaluation.record.subtasks import SPEC_BENCH_SUBTASKS
from leaderboard import queries
from leaderboard.db import open_database
from tests.leaderboard_fixtures import A100, T0, VICUNA, _Builder, selection


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
        return queries.leaderboard_rows(session, selection(A100, VICUNA))


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
        float32_selection = replace(selections[0], dtype="float32")
        assert queries.leaderboard_rows(session, float32_selection) == []
        assert [row.mismatch_text for row in queries.unmatched_rows(session, float32_selection)] \
            == ["dtype float32 vs float16"]


# ---- what a row is keyed by: question set, token cap, native code ---------------------------

def _import(tmp_path, db, name, base_name, records, base_records):
    from evaluation import speed
    from tests.answer_fixtures import write_answer_file

    method = write_answer_file(tmp_path / f"{name}.jsonl", records)
    base = write_answer_file(tmp_path / f"{base_name}.jsonl", base_records)
    assert speed.main(["--file-path", str(method), "--base-path", str(base), "--db", db]) == 0


def _ranked(db):
    """Each selection's ranked rows: {(question count, token cap): [(method, overall)]}."""
    sessions = open_database(db)
    with sessions() as session:
        ranked = {(s.num_questions, s.max_new_tokens):
                  [(row.method, round(row.overall, 2)) for row in queries.leaderboard_rows(session, s)]
                  for s in queries.available_selections(session)}
    sessions.kw["bind"].dispose()
    return ranked


def _with(records, **fields):
    for record in records:
        for name, value in fields.items():
            if name in ("backend", "native_code"):
                record["environment"][name] = value
            else:
                record[name] = value
    return records


def test_rows_of_other_question_sets_or_token_caps_are_never_ranked_together(tmp_path, db_url):
    from tests.answer_fixtures import QUESTIONS, synthetic_run

    def base(**kw):
        return synthetic_run(method="vanilla", accept=1, draft_length=0, **kw)

    _import(tmp_path, db_url, "pld", "vanilla", synthetic_run(seconds_per_step=0.03), base())
    # The same method re-imported on four questions: faster there, but another question set.
    four = QUESTIONS[:4]
    _import(tmp_path, db_url, "pld4", "vanilla4", synthetic_run(seconds_per_step=0.02, questions=four),
            base(questions=four))
    # Four other questions: the same count is not the same set.
    other_four = QUESTIONS[4:8]
    _import(tmp_path, db_url, "sps4", "vanilla4b", synthetic_run(method="sps", seconds_per_step=0.015,
                                                                 questions=other_four),
            base(questions=other_four))
    # A shorter token cap.
    _import(tmp_path, db_url, "sps", "vanilla32", _with(synthetic_run(method="sps"), max_new_tokens=32),
            _with(base(), max_new_tokens=32))
    sessions = open_database(db_url)
    with sessions() as session:
        selections = queries.available_selections(session)
        assert len(selections) == 4 and len({s.question_set for s in selections}) == 3
        ranked = {(s.question_set, s.max_new_tokens): [row.method for row in queries.leaderboard_rows(session, s)]
                  for s in selections}
    sessions.kw["bind"].dispose()
    assert sorted(ranked.values()) == [["pld"], ["pld"], ["sps"], ["sps"]]
    assert _ranked(db_url)[(len(QUESTIONS), 1024)] == [("pld", 2.0)]


def test_a_torch_ops_fallback_comparison_gets_its_own_row_beside_the_native_one(tmp_path, db_url):
    from tests.answer_fixtures import synthetic_run

    native, fallback = "native layer: skinny_gemm v3 (AVX2), lean_ops v2", "torch ops"

    def lean(records, code):
        return _with(records, backend="lean", native_code=code)

    base = dict(method="vanilla", accept=1, draft_length=0)
    _import(tmp_path, db_url, "pld", "vanilla", lean(synthetic_run(seconds_per_step=0.03), native),
            lean(synthetic_run(**base), native))
    _import(tmp_path, db_url, "pld_torch", "vanilla_torch",
            lean(synthetic_run(seconds_per_step=0.045), fallback),
            lean(synthetic_run(**base, seconds_per_step=0.03), fallback))
    assert list(_ranked(db_url).values()) == [[(f"pld ({native})", 2.0), (f"pld ({fallback})", 2.0)]]


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
