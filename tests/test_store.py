"""The results database: runs keyed by file hash (re-import updates, never duplicates), run
metadata from our fields or Spec-Bench's model ids, and failures that leave it unchanged.

Tests taking `db_url` run on SQLite and on a PostgreSQL server the session starts
(tests/postgres_server.py)."""

import hashlib

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from evaluation import equal, speed
from evaluation.record.answers import read_answer_file
from evaluation.compare.speedup import compare_speed
from leaderboard import store
from leaderboard.db import UPGRADES, DatabaseError, open_database
from leaderboard.models import (
    SCHEMA_VERSION,
    Answer,
    Difference,
    EqualityCheck,
    QuestionResult,
    Run,
    SpeedComparison,
    SubtaskResult,
)
from tests.answer_fixtures import QUESTIONS, synthetic_run, write_answer_file

TABLES = ("runs", "answers", "speed_comparisons", "subtask_results", "question_results",
          "equality_checks", "differences")


def _engine(db):
    """An engine on a database URL or SQLite file path, for looking at it from outside."""
    from leaderboard.db import _with_driver, normalise_url

    return create_engine(_with_driver(normalise_url(str(db))))


def row_counts(db):
    engine = _engine(db)
    try:
        with engine.connect() as connection:
            return {t: connection.scalar(text(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}
    finally:
        engine.dispose()


def snapshot(db):
    """Every row of every table, to show that a failed command changed nothing."""
    engine = _engine(db)
    try:
        with engine.connect() as connection:
            return {t: sorted(map(repr, connection.execute(text(f"SELECT * FROM {t}"))))
                    for t in TABLES + ("schema_info",)}
    finally:
        engine.dispose()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pair(tmp_path):
    m = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(seconds_per_step=0.03))
    b = write_answer_file(tmp_path / "vanilla.jsonl",
                          synthetic_run(method="vanilla", accept=1, draft_length=0))
    return m, b


def test_import_run_takes_metadata_from_our_fields(db_url, pair):
    session = open_database(db_url)()
    run = store.import_run(session, pair[0])
    assert (run.method, run.method_params, run.model_id) == ("pld", {"max_draft_length": 4},
                                                             "vicuna-7b-v1.3-pld-float16")
    assert (run.device, run.device_name, run.dtype) == ("cuda", "NVIDIA H100 80GB HBM3", "float16")
    assert (run.torch_version, run.transformers_version, run.cuda_version) == ("2.13.0", "5.23.0", "12.8")
    assert (run.temperature, run.bench, run.max_new_tokens, run.lossy) == (0.0, "spec_bench", 1024, False)
    # The model is named from the model id, as for Spec-Bench's files, not from the model path.
    assert (run.model, run.source_format, run.num_questions) == ("vicuna-7b-v1.3", "ours", len(QUESTIONS))
    assert run.answer_sha256 == digest(pair[0])
    answer = {a.question_id: a for a in run.answers}["81"]
    assert (answer.subtask, answer.new_tokens, answer.decoding_steps) == ("mt_bench", 24, 8)
    assert answer.wall_time == pytest.approx(8 * 0.03)
    assert answer.draft_tokens == 32 and answer.token_ids[0][:2] == [567, 568]


def test_model_comes_from_the_model_path_when_the_model_id_names_no_method(tmp_path):
    records = synthetic_run(model_id="my-run")
    for r in records:
        r["environment"]["model_path"] = "./checkpoints/llama-68m"
    path = write_answer_file(tmp_path / "run.jsonl", records)
    with open_database(str(tmp_path / "r.db"))() as session:
        assert store.import_run(session, path).model == "llama-68m"


def test_reimport_updates_instead_of_duplicating(tmp_path, pair, db_url):
    factory = open_database(db_url)
    with factory() as session, session.begin():
        first = store.import_run(session, pair[0]).id
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(pair[0].read_bytes())
    with factory() as session, session.begin():
        again = store.import_run(session, moved)
        assert again.id == first and again.answer_path.endswith("moved.jsonl")
    with factory() as session:
        assert session.scalar(select(func.count(Run.id))) == 1
        assert session.scalar(select(func.count(Answer.id))) == len(QUESTIONS)


@pytest.mark.parametrize("name, method, model, dtype, temperature", [
    ("vicuna-7b-v1.3-sps-68m-float16-temp-0.7", "sps", "vicuna-7b-v1.3", "float16", 0.7),
    ("vicuna-7b-v1.3-pld-float16", "pld", "vicuna-7b-v1.3", "float16", 0.0),
    ("my-own-model", "unknown", "my-own-model", "unknown", 0.0),
])
def test_spec_bench_files_get_inferred_metadata(tmp_path, name, method, model, dtype, temperature):
    path = write_answer_file(tmp_path / "data" / "spec_bench" / "model_answer" / f"{name}.jsonl",
                             synthetic_run(spec_bench=True, model_id=name))
    with open_database(str(tmp_path / "r.db"))() as session:
        run = store.import_run(session, path)
        assert (run.method, run.model, run.dtype, run.temperature) == (method, model, dtype, temperature)
        assert (run.source_format, run.bench, run.device) == ("spec-bench", "spec_bench", "unknown")
        assert run.method_params == {} and run.torch_version is None


def test_speed_cli_stores_and_rerun_updates(db_url, pair, capsys):
    db = db_url
    args = ["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", str(db)]
    assert speed.main(args) == 0
    first = row_counts(db)
    assert first["runs"] == 2 and first["speed_comparisons"] == 1
    assert first["subtask_results"] == 8  # 7 subtasks + overall
    assert first["question_results"] == len(QUESTIONS)
    assert speed.main(args) == 0
    assert row_counts(db) == first
    with open_database(str(db))() as session:
        comparison = session.scalars(select(SpeedComparison)).one()
        assert comparison.token_counting == "token_ids" and comparison.num_questions == len(QUESTIONS)
        assert comparison.method_run.method == "pld" and comparison.base_run.method == "vanilla"
        overall = session.scalars(select(SubtaskResult).where(SubtaskResult.subtask == "overall")).one()
        # Method: 3 tokens per 0.03 s step = 100 tok/s; baseline: 1 token per 0.02 s = 50 tok/s.
        assert overall.speedup == pytest.approx(2.0) and overall.tokens_per_s == pytest.approx(100)
        assert overall.speedup_spec_bench == pytest.approx(2.0)
        assert overall.mean_accepted_tokens == pytest.approx(3.0)
        assert overall.draft_acceptance_rate == pytest.approx(0.5)
        assert overall.speedup_ci_low == pytest.approx(2.0)
        assert overall.extra["system_efficiency"] == pytest.approx(0.6)
        assert overall.extra["acceptance_length_histogram"] == {"3": 44}
        assert overall.extra["per_position_acceptance_rate"] == pytest.approx([1, 1, 0, 0])
        question = session.scalars(select(QuestionResult).where(QuestionResult.question_id == "161")).one()
        assert (question.subtask, question.tokens, question.base_tokens) == ("translation", 12, 12)


def test_equal_cli_stores_differences_and_rerun_updates(tmp_path, pair, db_url):
    db = db_url
    records = synthetic_run(seconds_per_step=0.03)
    records[2]["choices"][0]["token_ids"][0][4] = 999
    m = write_answer_file(tmp_path / "diff.jsonl", records)
    args = ["--jsonfile1", str(pair[1]), "--jsonfile2", str(m), "--db", str(db)]
    assert equal.main(args) == 1
    assert equal.main(args) == 1
    counts = row_counts(db)
    assert (counts["equality_checks"], counts["differences"], counts["runs"]) == (1, 1, 2)
    with open_database(str(db))() as session:
        check = session.scalars(select(EqualityCheck)).one()
        assert not check.all_equal and check.compared_on == "token_ids"
        assert (check.num_compared, check.num_equal) == (11, 10)
        assert check.per_subtask["translation"] == pytest.approx(0.5)
        assert check.run.method == "pld" and check.base_run.method == "vanilla"
        difference = session.scalars(select(Difference)).one()
        assert (difference.question_id, difference.turn, difference.first_divergence,
                difference.unit) == ("161", 0, 4, "token")  # turn index from 0


def test_bad_input_leaves_the_database_unchanged(tmp_path, pair, db_url):
    db = db_url
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", str(db)]) == 0
    before = snapshot(db)
    records = synthetic_run(seconds_per_step=0.03)
    records[-1]["choices"][0]["wall_time"] = [0.0]
    bad = write_answer_file(tmp_path / "bad.jsonl", records)
    missing = write_answer_file(tmp_path / "short.jsonl", synthetic_run()[:-2])
    broken = tmp_path / "broken.jsonl"
    broken.write_text(pair[0].read_text() + "{not json\n")
    for method in (bad, missing, broken):
        assert speed.main(["--file-path", str(method), "--base-path", str(pair[1]), "--db", str(db)]) == 2
    assert equal.main(["--jsonfile1", str(pair[1]), "--jsonfile2", str(broken), "--db", str(db)]) == 2
    assert snapshot(db) == before


def test_bad_input_does_not_create_a_database(tmp_path, pair):
    db = tmp_path / "new.db"
    records = synthetic_run()
    records[0]["choices"][0]["wall_time"][0] = float("nan")
    nan_file = write_answer_file(tmp_path / "nan.jsonl", records)
    assert speed.main(["--file-path", str(nan_file), "--base-path", str(pair[1]), "--db", str(db)]) == 2
    # equal.py does not need times, but the database cannot hold a NaN: refused before opening.
    assert equal.main(["--jsonfile1", str(pair[1]), "--jsonfile2", str(nan_file), "--db", str(db)]) == 2
    assert not db.exists()


def test_a_failure_while_writing_rolls_everything_back(pair, monkeypatch, db_url):
    db = db_url
    open_database(str(db))  # an empty database with the schema
    report = compare_speed([read_answer_file(pair[0])], [read_answer_file(pair[1])])
    real = store.store_speed

    def fail_after_writing(session, report):
        real(session, report)
        raise SQLAlchemyError("disk full")

    monkeypatch.setattr(store, "store_speed", fail_after_writing)
    with pytest.raises(store.StoreError, match="nothing stored.*disk full"):
        store.save_speed_report(str(db), report)
    assert all(n == 0 for n in row_counts(db).values())


@pytest.mark.postgresql
def test_a_server_stopped_mid_import_is_an_error_within_the_timeout_and_stores_nothing(pair, monkeypatch,
                                                                                       postgresql_url, capsys):
    """The server's backend is stopped (SIGSTOP) after the import's transaction began: its own
    statement_timeout never fires, so the client's bound must; then nothing is stored."""
    import os
    import signal
    import time

    db = postgresql_url
    open_database(db)  # the schema, so that the import goes straight to writing
    real = store.store_speed
    stopped = []

    def stop_the_server_then_write(session, report):
        backend = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        os.kill(backend, signal.SIGSTOP)
        stopped.append(backend)
        real(session, report)

    monkeypatch.setattr(store, "store_speed", stop_the_server_then_write)
    start = time.monotonic()
    try:
        code = speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", db,
                           "--db-timeout", "2"])
    finally:
        for backend in stopped:
            os.kill(backend, signal.SIGCONT)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert stopped and code == 2 and elapsed < 20, (elapsed, err)
    assert "no answer from the database server within 2 s" in err and "--db-timeout" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all(n == 0 for n in row_counts(db).values())


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_a_db_timeout_that_is_not_a_positive_number_is_refused(pair, capsys, value, monkeypatch, tmp_path):
    with pytest.raises(SystemExit):
        speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db-timeout", value])
    assert f"--db-timeout {value!r}: must be a positive number of seconds" in capsys.readouterr().err
    monkeypatch.setenv("SDBENCH_DB_TIMEOUT", value)
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]),
                       "--db", str(tmp_path / "r.db")]) == 2
    assert f"SDBENCH_DB_TIMEOUT {value!r}: must be a positive number" in capsys.readouterr().err


def test_old_schema_version_is_a_clear_error(pair, capsys, db_url):
    db = db_url
    open_database(str(db))
    old = min(UPGRADES) - 1  # older than any in-place upgrade reaches
    engine = _engine(db)
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_info SET value = :v WHERE key = 'schema_version'"), {"v": str(old)})
    engine.dispose()
    before = snapshot(db)
    with pytest.raises(DatabaseError, match=f"schema version {old}"):
        open_database(str(db))
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert f"has schema version {old}, this code needs {SCHEMA_VERSION}" in err and "re-import" in err
    assert "Traceback" not in err
    assert equal.main(["--jsonfile1", str(pair[1]), "--jsonfile2", str(pair[0]), "--db", str(db)]) == 2
    assert snapshot(db) == before


def test_a_newer_schema_is_called_newer_and_left_untouched(pair, capsys, db_url):
    db = db_url
    open_database(str(db))
    newer = SCHEMA_VERSION + 1
    engine = _engine(db)
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_info SET value = :v WHERE key = 'schema_version'"), {"v": str(newer)})
    engine.dispose()
    before = snapshot(db)
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert (f"has schema version {newer}, newer than this code's {SCHEMA_VERSION}: it was written by a newer "
            f"version of this project; update this checkout") in err
    assert "old file" not in err and "re-import" not in err and "Traceback" not in err
    assert snapshot(db) == before


def test_the_previous_schema_is_upgraded_in_place_keeping_what_it_holds(pair, capsys, db_url):
    """A database of schema 4 (before comparisons recorded their device type) is brought up to
    date by the next writer; its rows stay, readers are told what to do until then."""
    db = db_url
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", str(db)]) == 0
    engine = _engine(db)
    with engine.begin() as connection:  # make it a schema-4 database
        connection.execute(text("ALTER TABLE speed_comparisons DROP COLUMN device_name"))
        connection.execute(text("ALTER TABLE speed_comparisons DROP COLUMN question_set"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN native_code"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN num_threads"))
        connection.execute(text("ALTER TABLE answers DROP COLUMN question_turns"))
        connection.execute(text("ALTER TABLE answers DROP COLUMN token_pieces"))
        connection.execute(text("UPDATE schema_info SET value = '4' WHERE key = 'schema_version'"))
    engine.dispose()
    counts = row_counts(db)
    with pytest.raises(DatabaseError, match="upgrade it in place"):
        open_database(str(db), create=False)  # a reader (the app) does not change the database
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", str(db)]) == 0
    assert row_counts(db) == counts
    session = open_database(str(db), create=False)()
    assert len(session.execute(select(SpeedComparison.device_name)).all()) == counts["speed_comparisons"] > 0
    # The re-import filled in what a leaderboard row is now keyed by.
    assert session.scalars(select(SpeedComparison.question_set)).all() == [
        store.question_set_key([str(qid) for qid, _ in QUESTIONS])]
    session.close()
    engine = _engine(db)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT value FROM schema_info WHERE key = 'schema_version'")) == \
            str(SCHEMA_VERSION)
    engine.dispose()


def test_db_option_takes_a_url(tmp_path, pair):
    url = f"sqlite:///{tmp_path / 'url.db'}"
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db", url]) == 0
    assert row_counts(tmp_path / "url.db")["speed_comparisons"] == 1


def test_comparison_key_tells_the_sides_apart():
    assert store.comparison_key(["a"], ["b"]) != store.comparison_key(["b"], ["a"])
    assert store.comparison_key(["a", "c"], ["b"]) == store.comparison_key(["c", "a"], ["b"])


# ---- timeouts, concurrent first imports, re-imports, odd question ids ---------------------

def test_a_server_that_never_answers_is_an_error_within_seconds(silent_server, pair, capsys,
                                                                monkeypatch):
    pytest.importorskip("psycopg")
    import time

    from leaderboard import db

    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 1)  # libpq waits at least 2 s
    for tool, args in ((speed, ["--file-path", str(pair[0]), "--base-path", str(pair[1])]),
                       (equal, ["--jsonfile1", str(pair[1]), "--jsonfile2", str(pair[0])])):
        start = time.monotonic()
        assert tool.main([*args, "--db", silent_server]) == 2
        assert time.monotonic() - start < 10
        err = capsys.readouterr().err
        assert "cannot open results database" in err and "timeout" in err
        assert "secret" not in err and "Traceback" not in err


def test_two_importers_at_once_lose_nothing_and_duplicate_nothing(tmp_path, db_url, request):
    """Two speed.py imports racing into a fresh database, sharing their baseline file: both
    comparisons land, and the shared baseline is one run, not two (nor a failed import)."""
    import threading

    base = write_answer_file(tmp_path / "b.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    reports = []
    for i in range(2):
        m = write_answer_file(tmp_path / f"m{i}.jsonl", synthetic_run(seconds_per_step=0.03 + 0.01 * i))
        reports.append(compare_speed([read_answer_file(m)], [read_answer_file(base)]))
    for trial in range(4):  # the code before the write locks lost one import in about 4 races of 10
        db = db_url if trial == 0 else request.getfixturevalue("postgresql_server").create_database() \
            if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / f'fresh{trial}.db'}"
        # Connect once first: Python 3.11 before 3.11.8 can corrupt its compiler state when two
        # threads import the database driver's modules at once (CPython issue 106905).
        warm = _engine(db)
        warm.connect().close()
        warm.dispose()
        start, errors = threading.Barrier(2), []

        def save(report):
            start.wait()
            try:
                store.save_speed_report(db, report)  # each call opens its own engine
            except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(r,)) for r in reports]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        counts = row_counts(db)
        assert (counts["speed_comparisons"], counts["runs"]) == (2, 3)
        assert counts["answers"] == 3 * len(QUESTIONS)
        assert counts["question_results"] == 2 * len(QUESTIONS)


def test_an_unreachable_server_is_a_clear_error_within_seconds(pair, capsys):
    pytest.importorskip("psycopg")
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert speed.main(["--file-path", str(pair[0]), "--base-path", str(pair[1]), "--db",
                       f"postgresql://user:secret@127.0.0.1:{port}/results"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"cannot open results database 'postgresql+psycopg://user:***@127.0.0.1:{port}/results'" in err
    assert "refused" in err.lower() and "secret" not in err and "Traceback" not in err


def test_reimporting_an_older_comparison_makes_it_current(tmp_path, db_url):
    from leaderboard import queries

    base = write_answer_file(tmp_path / "vanilla.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    old = write_answer_file(tmp_path / "old.jsonl", synthetic_run(seconds_per_step=0.03))
    new = write_answer_file(tmp_path / "new.jsonl", synthetic_run(seconds_per_step=0.01))
    db = db_url
    for method in (old, new, old):
        assert speed.main(["--file-path", str(method), "--base-path", str(base), "--db", db]) == 0
    with open_database(db)() as session:
        selection = queries.available_selections(session)[0]
        rows = queries.leaderboard_rows(session, selection)
        assert len(rows) == 1
        # old: 3 tokens per 0.03 s against 1 per 0.02 s = 2x; new would be 6x.
        assert rows[0].overall == pytest.approx(2.0)
    # An equality check stored again is dated by its latest import too.
    args = ["--jsonfile1", str(base), "--jsonfile2", str(old), "--db", db]
    assert equal.main(args) == 0
    with open_database(db)() as session:
        first = session.scalars(select(EqualityCheck.created)).one()
    assert equal.main(args) == 0
    with open_database(db)() as session:
        assert session.scalars(select(EqualityCheck.created)).one() > first


ODD_IDS = ["²", "--5", "7", "-3", "q1"]


def _odd_id_records(**kwargs):
    records = synthetic_run(questions=[(i, "qa") for i in range(len(ODD_IDS))], **kwargs)
    for record, qid in zip(records, ODD_IDS):
        record["question_id"] = qid
    return records


def test_question_ids_that_are_not_plain_integers_never_crash_a_sort(tmp_path, capsys, db_url):
    from evaluation.run.answer_file import finalise_answer_file
    from leaderboard import queries

    m = write_answer_file(tmp_path / "m.jsonl", _odd_id_records(seconds_per_step=0.03))
    b = write_answer_file(tmp_path / "b.jsonl",
                          _odd_id_records(method="vanilla", accept=1, draft_length=0))
    db = db_url
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--db", db]) == 0
    assert equal.main(["--jsonfile1", str(b), "--jsonfile2", str(m), "--db", db]) == 0
    assert "Traceback" not in capsys.readouterr().err
    # Plain integers in numeric order first, then the rest as text.
    assert list(read_answer_file(m).answers) == ["-3", "7", "--5", "q1", "²"]
    with open_database(db)() as session:
        row = queries.leaderboard_rows(session, queries.available_selections(session)[0])[0]
        assert [c.question_id for c in queries.question_choices(session, row)] == \
            ["-3", "7", "--5", "q1", "²"]
    assert finalise_answer_file(m) == len(ODD_IDS)


def test_backend_is_stored_and_separates_selections(tmp_path, db_url):
    """A lean and an hf run of the same settings land in two selections, never one ranking."""
    from leaderboard import queries

    session = open_database(db_url)()
    for backend in ("hf", "lean"):
        runs = []
        for method, accept in (("pld", 3), ("vanilla", 1)):
            records = synthetic_run(method=method, accept=accept, draft_length=4 if accept > 1 else 0,
                                    model_id=f"vicuna-7b-v1.3-{method}-float16-{backend}")
            for record in records:
                record["environment"] = record["environment"] | {"backend": backend}
            runs.append(write_answer_file(tmp_path / f"{method}-{backend}.jsonl", records))
        speed.main(["--file-path", str(runs[0]), "--base-path", str(runs[1]), "--db", db_url])
    backends = sorted(session.scalars(select(Run.backend)).all())
    assert backends == ["hf", "hf", "lean", "lean"]
    selections = queries.available_selections(session)
    assert sorted(s.backend for s in selections) == ["hf", "lean"]
    for selection in selections:
        rows = queries.leaderboard_rows(session, selection)
        assert [r.method for r in rows] == ["pld"]


def test_files_without_a_backend_are_hf_runs(tmp_path, pair):
    session = open_database(str(tmp_path / "r.db"))()
    assert store.import_run(session, pair[0]).backend == "hf"


# ---- what the drill-down shows without the files: question text, token text, threads ---------

def test_import_stores_each_question_text_from_the_runs_question_file(tmp_path):
    from tests.answer_fixtures import write_question_file

    bench = tmp_path / "data" / "my_bench"
    write_question_file(bench / "question.jsonl", [(qid, c) for qid, c in QUESTIONS if qid != 82]
                        + [(82, "translation")])  # 82 is another question here: not taken
    path = write_answer_file(bench / "model_answer" / "pld.jsonl", synthetic_run())
    with open_database(str(tmp_path / "r.db"))() as session:
        answers = {a.question_id: a for a in store.import_run(session, path).answers}
    assert answers["81"].question_turns == ["Question 81, turn 1: say <b>something</b>.",
                                            "Question 81, turn 2: say <b>something</b>."]
    assert answers["161"].question_turns == ["Question 161, turn 1: say <b>something</b>."]
    assert answers["82"].question_turns is None


def test_without_a_question_file_the_question_text_is_left_empty(tmp_path):
    records = synthetic_run()
    for r in records:
        r["bench_name"] = "no_such_bench"
    path = write_answer_file(tmp_path / "elsewhere" / "pld.jsonl", records)
    with open_database(str(tmp_path / "r.db"))() as session:
        run = store.import_run(session, path)
        assert {a.question_turns is None for a in run.answers} == {True}


def test_import_decodes_token_ids_with_the_runs_tokenizer_and_records_threads(tmp_path):
    from tests.answer_fixtures import byte_ids, our_answer, write_byte_tokenizer

    model = write_byte_tokenizer(tmp_path / "my-model")
    text = "Hé wörld\n日本"
    ids = byte_ids(text)
    environment = {"device": "cpu", "device_name": "Some CPU", "dtype": "float32",
                   "model_path": str(model), "num_threads": 4}
    path = write_answer_file(tmp_path / "run.jsonl", [
        our_answer(81, "qa", [ids], [0.5], [[3] * (len(ids) // 3) + [len(ids) % 3]],
                   turns=[text], environment=environment)])
    with open_database(str(tmp_path / "r.db"))() as session:
        run = store.import_run(session, path)
        pieces = run.answers[0].token_pieces
        assert run.num_threads == "4"
    assert len(pieces[0]) == len(ids) and "".join(pieces[0]) == text
    assert pieces[0][:3] == ["H", "", "é"]  # é is two bytes: the second token completes it


@pytest.mark.parametrize("model_path", ["./checkpoints/not-here", "sdbench-tests/never-downloaded", None])
def test_without_the_tokenizer_the_token_ids_stay_undecoded(tmp_path, model_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id is looked up in the local cache only
    records = synthetic_run()
    for r in records:
        r["environment"]["model_path"] = model_path
    path = write_answer_file(tmp_path / "run.jsonl", records)
    with open_database(str(tmp_path / "r.db"))() as session:
        run = store.import_run(session, path)
        assert {a.token_pieces is None for a in run.answers} == {True}
        assert run.num_threads is None  # the fixtures' environment does not record it


def test_a_tokenizer_that_cannot_be_the_runs_decodes_nothing(tmp_path):
    from tests.answer_fixtures import write_byte_tokenizer

    records = synthetic_run()  # ids up to 999: outside the byte tokenizer's 257
    for r in records:
        r["environment"]["model_path"] = str(write_byte_tokenizer(tmp_path / "small"))
    path = write_answer_file(tmp_path / "run.jsonl", records)
    with open_database(str(tmp_path / "r.db"))() as session:
        assert {a.token_pieces is None for a in store.import_run(session, path).answers} == {True}
