"""Leaderboard rows: one per method configuration, the newest comparison of each."""

from datetime import timedelta

from evaluation.subtasks import SPEC_BENCH_SUBTASKS
from leaderboard import queries
from leaderboard.db import open_database
from tests.leaderboard_fixtures import A100, BENCH, DTYPE, T0, VICUNA, _Builder


def _database(tmp_path, configurations):
    """A baseline and one comparison per (method, params, created day, speed factor)."""
    sessions = open_database(str(tmp_path / "results.db"), create=True)
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


def test_two_configurations_of_one_method_get_two_labelled_rows(tmp_path):
    sessions = _database(tmp_path, [
        ("pld", {"max_ngram": 3, "num_pred": 10}, 1, 1.5),
        ("pld", {"max_ngram": 3, "num_pred": 5}, 2, 1.2),
        ("sps", {"gamma": 4}, 1, 1.8),
    ])
    rows = _rows(sessions)
    speedups = {row.method: round(row.overall, 1) for row in rows}  # the fixture jitters ~0.5%
    # Only the differing parameter is shown; a method with one configuration keeps its bare name.
    assert speedups == {"sps": 1.8, "pld (num_pred=10)": 1.5, "pld (num_pred=5)": 1.2}
    assert [row.method for row in rows] == ["sps", "pld (num_pred=10)", "pld (num_pred=5)"]


def test_a_rerun_of_the_same_configuration_replaces_the_older_row(tmp_path):
    sessions = _database(tmp_path, [
        ("pld", {"num_pred": 10, "max_ngram": 3}, 1, 0.5),
        ("pld", {"max_ngram": 3, "num_pred": 10}, 2, 1.5),  # same parameters, other key order
    ])
    rows = _rows(sessions)
    assert [(row.method, round(row.overall, 1)) for row in rows] == [("pld", 1.5)]
