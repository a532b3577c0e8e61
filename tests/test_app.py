"""The leaderboard app, run by Streamlit's AppTest on the fixture database (no browser)."""

from __future__ import annotations

import html
import json
import math
import re
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest

from evaluation.record.subtasks import SPEC_BENCH_SUBTASKS, display_name
from leaderboard.db import open_database
from leaderboard.divergence import first_difference, highlighted_html
from leaderboard.export import leaderboard_markdown
from leaderboard.filters import options_for
from leaderboard.models import QuestionResult, SchemaInfo, SubtaskResult
from leaderboard.queries import LOSSLESS, NOT_CHECKED, NOT_EQUAL, LeaderboardRow
from leaderboard.tables import interval_text
from tests.leaderboard_fixtures import (
    A100,
    DIVERGENCE_AT,
    DIVERGING_QUESTION,
    METHODS,
    NO_QUESTION_TEXT,
    RTX3090,
    THREADS,
    UNDECODED_METHOD,
    SMOLLM,
    VICUNA,
    selection as fixture_selection,
    build_fixture_database,
)

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    return build_fixture_database(tmp_path_factory.mktemp("leaderboard") / "leaderboard.db")


def run_app(monkeypatch, *argv: str) -> AppTest:
    """The app as `streamlit run app.py -- ARGV` would start it."""
    monkeypatch.setattr(sys, "argv", ["app.py", *argv])
    monkeypatch.delenv("SDBENCH_DB", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not app.exception, app.exception[0].message
    return app


def shown(table) -> pd.DataFrame:
    """The cells of an st.table as the page shows them (after the Styler's formatting)."""
    display_values = table.proto.arrow_data.styler.display_values
    return dataframe_util.convert_arrow_bytes_to_pandas_df(display_values)


def highlighted_cells(table) -> set[tuple[int, int]]:
    """(row, column) of the cells the Styler marks as best in their column."""
    cells = set()
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", table.proto.arrow_data.styler.styles):
        if "font-weight: bold" in body:
            cells |= {(int(r), int(c)) for r, c in re.findall(r"row(\d+)_col(\d+)", selectors)}
    return cells


def x(value: float) -> str:
    return f"{value:.2f}x"


def leaderboard_table(app: AppTest):
    return app.tabs[0].dataframe[0]


# --- the leaderboard -------------------------------------------------------------------------

def test_leaderboard_shows_each_method_once_with_its_newest_numbers(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    table = shown(leaderboard_table(app))
    expected = fixture_db.expected[(A100, VICUNA, 0.0)]

    assert list(table["Method"]) == sorted(METHODS, key=lambda m: -expected[m]["overall"])
    subtask_headers = [display_name(s) for s in SPEC_BENCH_SUBTASKS]
    assert list(table.columns[1:7]) == subtask_headers
    for _, line in table.iterrows():
        numbers = expected[line["Method"]]
        assert line["Overall"] == x(numbers["overall"])
        assert line["Mean accepted tokens"] == f"{numbers['mat']:.2f}"
        assert line["Overall 95% CI"] == f"{x(numbers['ci'][0])} – {x(numbers['ci'][1])}"
        assert line["Baseline tokens/s"] == f"{numbers['base_tps']:.1f}"
        for subtask, header in zip(SPEC_BENCH_SUBTASKS, subtask_headers):
            assert line[header] == x(numbers[subtask])
    # The older pld comparison (0.50x overall) is hidden by the newer one.
    assert "0.50x" not in table.to_string()
    baseline = [m.value for m in app.tabs[0].markdown if "Baseline" in m.value]
    base_tps = expected["pld"]["base_tps"]
    assert baseline == [f"Baseline (vanilla): **{base_tps:.1f} tokens/s** overall"]


def test_equality_badges_come_from_the_checks_against_the_same_baseline(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    badges = dict(zip(*(shown(leaderboard_table(app))[c] for c in ("Method", "Lossless"))))
    assert badges == {"eagle2": "✔ lossless", "sps": "✘ not equal (11/12 equal)",
                      "pld": "○ not checked"}


def test_best_value_of_each_column_is_highlighted(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    table = leaderboard_table(app)
    frame = shown(table)
    column = {name: i for i, name in enumerate(frame.columns)}
    row = {method: i for i, method in enumerate(frame["Method"])}
    marked = highlighted_cells(table)
    # eagle2's intervals lie clear above the others' in translation, math and overall; pld's
    # summarization lead (2.4x against 2.2x) is within the intervals, so nobody is marked there.
    assert (row["eagle2"], column["Overall"]) in marked
    assert (row["eagle2"], column["Translation"]) in marked
    assert not any(c == column["Summarization"] for _, c in marked)
    # sps's output differs from the baseline's: never marked.
    assert not any(r == row["sps"] for r, _ in marked)
    assert not any(c in (column["Baseline tokens/s"], column["Tokens/s"]) for _, c in marked)


def test_every_column_has_a_definition_and_the_run_context_is_shown(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    table = leaderboard_table(app)
    frame = shown(table)
    config = json.loads(table.proto.columns)
    assert all(config[column]["help"] for column in frame.columns)
    assert set(frame["Questions"]) == {"12"} and set(frame["Token cap"]) == {"1024"}
    assert set(frame["Threads"]) == {THREADS}
    assert set(frame["Versions"]) == {"torch 2.13.0, transformers 5.24.0"}
    assert all(re.fullmatch(r"2025-06-\d\d \d\d:\d\d", date) for date in frame["Date"])
    assert "threads" in config["Threads"]["help"]
    assert any("12 questions (set " in m.value and "token cap **1024 tokens**" in m.value
               for m in app.tabs[0].markdown)
    assert [b.label for b in app.tabs[0].download_button] == [
        "Download as Markdown (Leaderboard.md layout)", "Download as CSV"]
    assert not app.tabs[0].warning  # two questions per subtask, 1024 tokens: not a quick run


# --- filters and comparison ----------------------------------------------------------------

@pytest.mark.parametrize("key, value, selection", [
    ("filter_device_name", RTX3090, (RTX3090, VICUNA, 0.0)),
    ("filter_model", SMOLLM, (A100, SMOLLM, 0.0)),
    ("filter_temperature", 1.0, (A100, VICUNA, 1.0)),
])
def test_filters_switch_the_table_to_that_selection(fixture_db, monkeypatch, key, value, selection):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key=key).set_value(value).run()
    assert not app.exception
    expected = fixture_db.expected[selection]
    table = shown(leaderboard_table(app))
    assert sorted(table["Method"]) == sorted(expected)
    assert dict(zip(table["Method"], table["Overall"])) == {
        method: x(numbers["overall"]) for method, numbers in expected.items()
    }


def test_filters_offer_only_values_that_have_results(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    assert app.selectbox(key="filter_temperature").options == ["0 (greedy)", "1"]
    app.selectbox(key="filter_device_name").set_value(RTX3090).run()
    # Sampling was measured on the A100 only.
    assert app.selectbox(key="filter_temperature").options == ["0 (greedy)"]


def test_compare_devices_puts_the_same_methods_side_by_side(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    compare = app.tabs[2]
    assert compare.selectbox(key="compare_a").value == A100
    assert compare.selectbox(key="compare_b").value == RTX3090
    table = shown(compare.table[0]).set_index("Method")
    a, b = fixture_db.expected[(A100, VICUNA, 0.0)], fixture_db.expected[(RTX3090, VICUNA, 0.0)]
    for method in METHODS:
        assert table.loc[method, "Overall A"] == x(a[method]["overall"])
        assert table.loc[method, "Overall B"] == x(b[method]["overall"])
        assert table.loc[method, "Translation B"] == x(b[method]["translation"])
    chart = json.loads(compare.get("plotly_chart")[0].proto.spec)
    assert [trace["name"] for trace in chart["data"]] == [A100, RTX3090]


def test_compare_models_uses_the_chosen_device(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.radio(key="compare_field").set_value("model").run()
    table = shown(app.tabs[2].table[0]).set_index("Method")
    smol = fixture_db.expected[(A100, SMOLLM, 0.0)]
    assert app.selectbox(key="compare_b").value == SMOLLM
    assert table.loc["sps", "Overall B"] == x(smol["sps"]["overall"])


# --- charts ----------------------------------------------------------------------------------

def chart_specs(app: AppTest) -> dict[str, dict]:
    return {chart.key: json.loads(chart.proto.spec) for chart in app.tabs[1].get("plotly_chart")}


def test_charts_show_subtasks_accept_lengths_throughput_and_time_split(fixture_db, monkeypatch):
    specs = chart_specs(run_app(monkeypatch, "--db", fixture_db.url))
    assert set(specs) == {"chart_subtasks", "chart_overall", "chart_accept_lengths",
                          "chart_acceptance", "chart_throughput", "chart_time_split"}
    heatmap = specs["chart_subtasks"]["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["zmid"] == 1.0
    assert heatmap["y"] == ["eagle2", "sps", "pld"]
    assert heatmap["x"] == [display_name(s) for s in SPEC_BENCH_SUBTASKS] + ["Overall"]
    overall = specs["chart_overall"]["data"][0]
    assert overall["y"] == ["pld", "sps", "eagle2"]  # bottom to top: the best on top
    # One colour per method, the same in every chart.
    colours = dict(zip(overall["y"], overall["marker"]["color"]))
    assert len(set(colours.values())) == 3
    for trace in specs["chart_accept_lengths"]["data"] + specs["chart_throughput"]["data"]:
        if trace["name"] in colours:
            assert trace["marker"]["color"] == colours[trace["name"]]
    accepted = {t["name"] for t in specs["chart_accept_lengths"]["data"]}
    assert accepted == set(METHODS)
    split = specs["chart_time_split"]["data"]
    assert [t["name"] for t in split] == ["prefill", "draft", "verify", "other"]
    assert "vanilla (baseline)" in split[0]["y"]


def test_hidden_methods_leave_every_chart(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.multiselect(key="chart_methods").set_value(["eagle2", "pld"]).run()
    specs = chart_specs(app)
    assert specs["chart_subtasks"]["data"][0]["y"] == ["eagle2", "pld"]
    assert {t["name"] for t in specs["chart_accept_lengths"]["data"]} == {"eagle2", "pld"}


def test_acceptance_curve_plots_the_stored_per_position_rates():
    from leaderboard.charts import acceptance_curve

    row = _row("eagle2", 2.0, {}, draft_acceptance_rate=0.5, per_position_acceptance=[0.9, 0.6, 0.2])
    trace = acceptance_curve([row], {"eagle2": "#123456"}).data[0]
    assert list(trace.y) == [0.9, 0.6, 0.2] and list(trace.x) == [1, 2, 3]
    assert trace.name == "eagle2 · 50% of drafts accepted" and trace.line.color == "#123456"


def test_time_split_leaves_out_runs_without_draft_and_verify_times(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="filter_device_name").set_value(RTX3090).run()
    split = chart_specs(app)["chart_time_split"]["data"]
    assert "pld" not in {run for trace in split for run in trace["y"]}
    assert any("No time split recorded for: pld" in c.value for c in app.tabs[1].caption)


# --- drill-down ------------------------------------------------------------------------------

def test_drill_down_marks_the_first_divergence_from_the_baseline(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value("sps").run()
    app.selectbox(key="drill_question").set_value(DIVERGING_QUESTION).run()
    drill = app.tabs[3]
    assert [w.value for w in drill.warning] == [
        f"Turn 1: first divergence at character {DIVERGENCE_AT}"]
    html_views = answer_views(drill)
    assert len(html_views) == 2
    method_view, base_view = html_views
    plain = [re.sub(r"<[^>]+>", "", view) for view in html_views]
    assert ">s</mark>" in method_view and "the slow brown fox" in plain[0]
    assert ">q</mark>" in base_view and "the quick brown fox" in plain[1]

    sessions = open_database(fixture_db.url, create=False)
    with sessions() as session:
        speedups = set(session.scalars(select(QuestionResult.speedup).where(
            QuestionResult.question_id == DIVERGING_QUESTION)))
    metrics = {m.label: m.value for m in drill.metric}
    assert metrics["Speedup"] in {x(s) for s in speedups}
    assert re.fullmatch(r"\d\.\d\d", metrics["Mean accepted tokens"])
    assert "chart_question_steps" in {c.key for c in drill.get("plotly_chart")}


def answer_views(drill) -> list[str]:
    """The HTML of the two answers (method, baseline) of each turn, in page order."""
    return [m.value for m in drill.markdown if m.value.startswith("<div")
            and 'class="question"' not in m.value and 'class="step"' not in m.value]


def steps_view(drill) -> str:
    [view] = [m.value for m in drill.markdown if 'class="step"' in m.value]
    return view


def test_drill_down_shows_the_question_above_each_turns_answers(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value("eagle2").run()
    app.selectbox(key="drill_question").set_value("85").run()
    drill = app.tabs[3]
    markdown = [m.value for m in drill.markdown]
    label = markdown.index("**Question, turn 1**")
    question = markdown[label + 1]
    assert 'class="question"' in question
    # Escaped: a question's markup shows as written, it does not format the page.
    assert "Question 85 (summarization): explain why" in question and "&lt;em&gt;a few&lt;/em&gt;" in question
    first_answer = markdown.index(answer_views(drill)[0])
    assert label < first_answer
    assert not any("question's text was not available" in c.value for c in drill.caption)


def test_drill_down_says_when_the_question_text_was_not_stored(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value("sps").run()
    app.selectbox(key="drill_question").set_value(NO_QUESTION_TEXT).run()
    drill = app.tabs[3]
    assert not any('class="question"' in m.value for m in drill.markdown)
    assert [c.value for c in drill.caption if "question's text" in c.value] == [
        "The question's text was not available when this run was imported (its question file was "
        "not found beside the answers or under data/, or the run was imported by an older "
        "version); importing the run again with speed.py or equal.py where the file is adds it."]


def test_drill_down_shows_each_steps_tokens_as_text_with_their_ids_on_hover(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value("eagle2").run()
    drill = app.tabs[3]
    view = steps_view(drill)
    tokens = re.findall(r'<span class="token" title="step (\d+): (\d+) token\(s\) · id (\d+)"[^>]*>([^<]*)<',
                        view)
    assert [int(t[0]) for t in tokens[:6]] == [1] * 5 + [2]  # eagle2 accepts 5, then 3, ...
    assert "".join(html.unescape(t[3]) for t in tokens) == re.sub(r"<[^>]+>", "", html.unescape(
        answer_views(drill)[0]))
    assert not any(c.value.startswith("Token ids, not text") for c in drill.caption)


def test_drill_down_falls_back_to_token_ids_where_no_tokenizer_decoded_them(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value(UNDECODED_METHOD).run()
    drill = app.tabs[3]
    assert any(c.value.startswith("Token ids, not text: this run's tokenizer was not on the machine "
                                  "that imported it") for c in drill.caption)
    view = steps_view(drill)
    assert 'class="token"' not in view
    assert re.search(r'title="step 1: 3 token\(s\)"[^>]*>\d+ \d+ \d+<', view)


def test_drill_down_says_when_an_answer_equals_the_baseline(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value("eagle2").run()
    assert [s.value for s in app.tabs[3].success] == ["Turn 1: identical to the baseline."]
    assert not app.tabs[3].warning


# --- export ----------------------------------------------------------------------------------

def test_page_offers_the_shown_leaderboard_as_markdown(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    assert app.tabs[0].download_button[0].label.startswith("Download as Markdown")
    markdown = app.tabs[0].code[0].value
    expected = fixture_db.expected[(A100, VICUNA, 0.0)]
    assert markdown.startswith(f"## Leaderboard on {A100}\n")
    eagle2 = expected["eagle2"]
    assert (f"| eagle2🏅 | **{x(eagle2['mt_bench'])}** | **{x(eagle2['translation'])}** | "
            f"{x(eagle2['summarization'])} |") in markdown
    assert f"| pld🥉 | {x(expected['pld']['mt_bench'])} |" in markdown


def _row(method: str, overall: float, speedups: dict, mat=None, spread=None, **kwargs) -> LeaderboardRow:
    """A row; with `spread`, every speedup gets the interval value ± spread over 80 questions."""
    intervals, counts, low, high = {}, {}, None, None
    if spread is not None:
        intervals = {s: (v - spread, v + spread) for s, v in speedups.items()}
        counts = {s: 80 for s in [*speedups, "overall"]}
        low, high = overall - spread, overall + spread
    return LeaderboardRow(
        method=method, comparison_id=1, method_run_id=1, method_run_ids=[1], base_run_id=2,
        base_method="vanilla", created=datetime(2025, 1, 1, tzinfo=timezone.utc),
        num_questions=480, speedups=speedups, intervals=intervals, overall=overall, ci_low=low,
        ci_high=high, mean_accepted_tokens=mat, tokens_per_s=None, base_tokens_per_s=40.0,
        question_counts=counts, **kwargs,
    )


def test_markdown_export_follows_spec_bench_leaderboard_layout():
    all_six = dict(zip(SPEC_BENCH_SUBTASKS, (2.71, 1.82, 2.19, 2.11, 2.71, 1.91)))
    rows = [
        _row("pld", 1.55, {**all_six, "summarization": 2.31, "qa": 1.2}, mat=1.74, spread=0.05),
        _row("eagle2", 2.25, all_six, mat=4.36, equality=LOSSLESS, spread=0.05),
        _row("broken", math.nan, {}, mat=None),
        _row("sps", 1.83, {"mt_bench": 1.98, "law_analytics": 1.5}, mat=2.29, spread=0.05),
    ]
    selection = fixture_selection(A100, VICUNA)
    lines = leaderboard_markdown(rows, selection).splitlines()

    assert lines[0] == f"## Leaderboard on {A100}"
    assert (f"- Experimental Settings: {VICUNA}, greedy decoding, float16 precision, "
            "bench spec_bench, hf backend") in lines
    assert "- Questions: 12 questions (set " in lines[4] and "token cap: 1024 tokens" in lines[4]
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| Models | Multi-turn Conversation | Translation | Summarization | "
                        "Question Answering | Mathematical Reasoning | Retrieval-aug. Generation | "
                        "Law Analytics | #Mean Accepted Tokens | Overall |")
    assert table[1] == "| --- | " + " | ".join([":---:"] * 9) + " |"
    # Bold only where one row's interval lies clear above the others': pld's summarization,
    # eagle2's question answering and overall, sps's lone law analytics; tied columns get none.
    assert table[2] == ("| eagle2🏅 | 2.71x | 1.82x | 2.19x | **2.11x** | 2.71x | "
                        "1.91x | - | **4.36** | **2.25x** |")
    assert table[3] == "| sps🥈 | 1.98x | - | - | - | - | - | **1.50x** | 2.29 | 1.83x |"
    assert table[4] == ("| pld🥉 | 2.71x | 1.82x | **2.31x** | 1.20x | 2.71x | "
                        "1.91x | - | 1.74 | 1.55x |")
    assert table[5] == "| broken | - | - | - | - | - | - | - | - | - |"
    assert ("- eagle2: overall 95% CI 2.20x–2.30x; lossless (output equal to the baseline); "
            "baseline vanilla 40.0 tokens/s") in lines
    assert any(line.startswith("- pld: overall 95% CI") for line in lines)


def test_no_bold_or_medal_without_a_clear_margin_more_than_one_question_or_equal_output():
    six = dict.fromkeys(SPEC_BENCH_SUBTASKS, 2.0)
    # Overlapping intervals: a tie, no medal and no bold for anyone.
    tied = [_row("a", 2.0, six, spread=0.3), _row("b", 1.9, six, spread=0.3)]
    table = [line for line in leaderboard_markdown(tied).splitlines() if line.startswith("|")][2:]
    assert not any("**" in line or "🏅" in line or "🥈" in line for line in table)
    # Above the others but not above 1.0x: not shown to beat the baseline.
    slow = [_row("a", 1.02, six, spread=0.05), _row("b", 0.8, six, spread=0.05)]
    assert "🏅" not in leaderboard_markdown(slow)
    # One question: no interval to judge by; shown as "-" in the table's interval column.
    one = _row("a", 2.0, six, spread=0.1)
    one.question_counts = dict.fromkeys(one.question_counts, 1)
    assert "🏅" not in leaderboard_markdown([one, _row("b", 1.0, six, spread=0.1)])
    assert interval_text(1.5, 1.5) == "-" and interval_text(None, 2.0) == "-"
    # A faster method whose output differs from the baseline's gets neither medal nor bold;
    # the next one, clearly above the rest, still gets the medal of its rank.
    lossy = [_row("fast", 3.0, six, spread=0.1, equality=NOT_EQUAL),
             _row("b", 2.0, six, spread=0.1), _row("c", 1.5, six, spread=0.1)]
    table = [line for line in leaderboard_markdown(lossy).splitlines() if line.startswith("|")][2:]
    assert table[0] == "| fast | 2.00x | 2.00x | 2.00x | 2.00x | 2.00x | 2.00x | - | 3.00x |"
    assert table[1].startswith("| b🥈 |") and "**" not in table[1]
    assert table[2].startswith("| c🥉 |")


def test_markdown_export_without_extra_subtasks_has_exactly_spec_bench_columns():
    row = _row("pld", 1.5, dict.fromkeys(SPEC_BENCH_SUBTASKS, 1.5), mat=1.7, equality=NOT_CHECKED)
    header = leaderboard_markdown([row]).splitlines()[0]
    assert header.count("|") == 10  # Models, six subtasks, accepted tokens, Overall


# --- what the evaluators write ---------------------------------------------------------------

def test_app_reads_what_speed_and_equal_write(tmp_path, monkeypatch, db_url):
    """On SQLite and on a postgresql:// URL alike."""
    from evaluation import equal, speed
    from tests.answer_fixtures import synthetic_run, write_answer_file

    method = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(seconds_per_step=0.03))
    base = write_answer_file(tmp_path / "vanilla.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    db = db_url
    assert speed.main(["--file-path", str(method), "--base-path", str(base), "--db", str(db)]) == 0
    assert equal.main(["--jsonfile1", str(base), "--jsonfile2", str(method), "--db", str(db)]) == 0

    app = run_app(monkeypatch, "--db", str(db))
    table = shown(leaderboard_table(app))
    sessions = open_database(str(db), create=False)
    with sessions() as session:
        overall = session.scalar(
            select(SubtaskResult.speedup).where(SubtaskResult.subtask == "overall"))
    assert list(table["Method"]) == ["pld"]
    assert list(table["Overall"]) == [x(overall)]
    assert list(table["Lossless"]) == ["✔ lossless"]
    assert set(chart_specs(app)) >= {"chart_subtasks", "chart_accept_lengths", "chart_throughput"}


# --- first run and broken databases ----------------------------------------------------------

FIRST_RUN_COMMANDS = ("./eval.sh", "python evaluation/speed.py", "python evaluation/equal.py")


def assert_first_run_page(app: AppTest, says: str) -> None:
    assert says in app.info[0].value
    code = "\n".join(c.value for c in app.code)
    for command in FIRST_RUN_COMMANDS:
        assert command in code
    assert "--file-path" in code and "--base-path" in code  # speed.py
    assert "--jsonfile1" in code and "--jsonfile2" in code  # equal.py, Spec-Bench's flags
    assert not app.error and not app.table


def test_missing_database_shows_first_run_page_and_creates_nothing(tmp_path, monkeypatch):
    path = tmp_path / "results" / "leaderboard.db"
    app = run_app(monkeypatch, "--db", str(path))
    assert_first_run_page(app, "There is no results database yet")
    assert not path.exists() and not path.parent.exists()


def test_default_database_comes_from_the_evaluators_setting(tmp_path, monkeypatch):
    path = tmp_path / "default.db"
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.setenv("SDBENCH_DB", f"sqlite:///{path}")
    app = AppTest.from_file(str(APP), default_timeout=30).run()
    assert str(path) in app.info[0].value
    assert not path.exists()


def test_empty_database_file_shows_first_run_page(tmp_path, monkeypatch):
    path = tmp_path / "empty.db"
    path.touch()
    assert_first_run_page(run_app(monkeypatch, "--db", str(path)), "The results database is empty")


def test_database_without_comparisons_shows_first_run_page(tmp_path, monkeypatch):
    path = tmp_path / "schema-only.db"
    open_database(str(path), create=True).kw["bind"].dispose()
    assert_first_run_page(run_app(monkeypatch, "--db", str(path)),
                          "No speed comparison has been imported yet")


def _foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")


def _old_schema_database(path: Path) -> None:
    sessions = open_database(str(path), create=True)
    with sessions() as session, session.begin():
        session.get(SchemaInfo, "schema_version").value = "0"
    sessions.kw["bind"].dispose()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"this is not a database file at all" * 100), "cannot open"),
    (_foreign_database, "not a results database of this project"),
    (_old_schema_database, "schema version 0"),
])
def test_broken_database_gives_a_clear_message(tmp_path, monkeypatch, make, message):
    path = tmp_path / "broken.db"
    make(path)
    app = run_app(monkeypatch, "--db", str(path))
    assert len(app.error) == 1
    assert "The results database cannot be used" in app.error[0].value
    assert message in app.error[0].value
    assert not app.table


# --- helpers the pages rely on ---------------------------------------------------------------

@pytest.mark.parametrize("text, base, index", [
    ("same", "same", None),
    ("the slow fox", "the quick fox", 4),
    ("short", "short and more", 5),
    ("", "x", 0),
])
def test_first_difference_is_the_first_differing_character(text, base, index):
    assert first_difference(text, base) == index


def test_highlighted_html_escapes_model_text():
    view = highlighted_html("<b>a</b> x", 9)
    assert "&lt;b&gt;a&lt;/b&gt; " in view and ">x</mark>" in view and "<b>" not in view


def test_filter_options_narrow_by_what_was_chosen_above():
    selections = [fixture_selection(A100, VICUNA, 1.0), fixture_selection(RTX3090, SMOLLM),
                  fixture_selection(A100, SMOLLM)]
    assert options_for(selections, "device_name", {}) == [A100, RTX3090]
    assert options_for(selections, "model", {"device_name": A100}) == [VICUNA, SMOLLM]
    assert options_for(selections, "model", {"device_name": RTX3090}) == [SMOLLM]


def test_a_database_server_that_never_answers_gives_a_message_within_seconds(silent_server,
                                                                             monkeypatch):
    pytest.importorskip("psycopg")
    import time

    from leaderboard import db

    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 1)  # libpq waits at least 2 s
    start = time.monotonic()
    app = run_app(monkeypatch, "--db", silent_server)
    assert time.monotonic() - start < 15
    assert len(app.error) == 1
    assert "The results database cannot be used" in app.error[0].value
    assert "timeout" in app.error[0].value and "secret" not in app.error[0].value


@pytest.mark.postgresql
def test_a_database_server_frozen_after_the_page_connected_gives_a_message_within_seconds(
        tmp_path, monkeypatch, postgresql_url):
    """The page has shown the board once (its engine keeps a connection); then every backend of
    the database is stopped (SIGSTOP). The next page must say so within seconds, not stay blank."""
    import os
    import signal
    import time

    from sqlalchemy import create_engine, text

    from evaluation import speed
    from tests.answer_fixtures import synthetic_run, write_answer_file

    method = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(seconds_per_step=0.03))
    base = write_answer_file(tmp_path / "vanilla.jsonl", synthetic_run(method="vanilla", accept=1, draft_length=0))
    assert speed.main(["--file-path", str(method), "--base-path", str(base), "--db", postgresql_url]) == 0
    run_app(monkeypatch, "--db", postgresql_url, "--db-timeout", "2")  # the board, and a pooled connection
    watcher = create_engine(postgresql_url.replace("postgresql://", "postgresql+psycopg://"))
    with watcher.connect() as connection:
        backends = connection.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")).scalars().all()
    watcher.dispose()
    assert backends
    for backend in backends:
        os.kill(backend, signal.SIGSTOP)
    try:
        start = time.monotonic()
        app = run_app(monkeypatch, "--db", postgresql_url, "--db-timeout", "2")
        elapsed = time.monotonic() - start
    finally:
        for backend in backends:
            os.kill(backend, signal.SIGCONT)
    assert elapsed < 20
    assert len(app.error) == 1 and "The results database cannot be used" in app.error[0].value
    assert "no answer from the database server within 2 s" in app.error[0].value


def test_mismatched_comparisons_are_listed_apart_and_never_ranked(tmp_path, monkeypatch):
    from evaluation import speed
    from tests.answer_fixtures import synthetic_run, write_answer_file

    vanilla = write_answer_file(tmp_path / "vanilla.jsonl",
                                synthetic_run(method="vanilla", accept=1, draft_length=0))
    pld = write_answer_file(tmp_path / "pld.jsonl", synthetic_run(seconds_per_step=0.03))
    db = str(tmp_path / "results.db")
    # Only the swapped files first: nothing can be ranked yet.
    assert speed.main(["--file-path", str(vanilla), "--base-path", str(pld), "--db", db,
                       "--allow-mismatch", "baseline_method"]) == 0
    app = run_app(monkeypatch, "--db", db)
    assert "nothing to rank" in app.info[0].value and not app.table
    assert speed.main(["--file-path", str(pld), "--base-path", str(vanilla), "--db", db]) == 0
    app = run_app(monkeypatch, "--db", db)
    ranked, apart = shown(app.tabs[0].dataframe[0]), shown(app.tabs[0].table[0])
    assert list(ranked["Method"]) == ["pld"]
    assert list(apart["Method"]) == ["vanilla"] and list(apart["Baseline"]) == ["pld"]
    assert list(apart["Settings that differ (method vs baseline)"]) == [
        "baseline is pld, not vanilla"]
    assert any("Not ranked" in m.value for m in app.tabs[0].markdown)
    assert any("not checked against the baseline" in c.value and "pld: backend" in c.value
               for c in app.tabs[0].caption)


def test_drill_down_says_whether_a_divergence_is_a_near_tie(tmp_path, monkeypatch):
    from evaluation import equal, speed
    from evaluation.compare.near_ties import near_tie_threshold
    from tests.answer_fixtures import synthetic_run, text_of, write_answer_file

    threshold = near_tie_threshold("float16")  # the fixtures' dtype
    runs = {"pld": synthetic_run(seconds_per_step=0.03),
            "vanilla": synthetic_run(method="vanilla", accept=1, draft_length=0)}
    for records in runs.values():
        for record in records:
            choice = record["choices"][0]
            choice["logit_margins"] = [[5.0] * len(ids) for ids in choice["token_ids"]]
    runs["vanilla"][0]["choices"][0]["logit_margins"][0][3] = threshold / 8  # q81, turn 1
    for question, index in ((0, 3), (1, 4)):  # q81 at token 3, q82 (the baseline was sure) at 4
        choice = runs["pld"][question]["choices"][0]
        choice["token_ids"][0][index] += 1
        choice["turns"][0] = text_of(choice["token_ids"][0])
    method = write_answer_file(tmp_path / "pld.jsonl", runs["pld"])
    base = write_answer_file(tmp_path / "vanilla.jsonl", runs["vanilla"])
    db = tmp_path / "results.db"
    assert speed.main(["--file-path", str(method), "--base-path", str(base), "--db", str(db)]) == 0
    assert equal.main(["--jsonfile1", str(base), "--jsonfile2", str(method), "--db", str(db)]) == 1

    app = run_app(monkeypatch, "--db", str(db))
    app.selectbox(key="drill_question").set_value("81").run()
    captions = [c.value for c in app.tabs[3].caption]
    assert any(c.startswith(f"Near-tie: the baseline's top two logits there were {threshold / 8:.3g} "
                            f"apart, below {threshold:.3g} (float16)") for c in captions), captions
    app.selectbox(key="drill_question").set_value("82").run()
    captions = [c.value for c in app.tabs[3].caption]
    assert any(c.startswith("Real difference: the baseline's top two logits there were 5 apart")
               for c in captions), captions


def test_a_quick_run_is_flagged_and_a_full_one_is_not():
    from leaderboard.tables import quick_run_warning

    six = dict.fromkeys(SPEC_BENCH_SUBTASKS, 1.5)
    quick = _row("pld", 1.5, six, spread=0.1, max_new_tokens=32)
    quick.question_counts = {**dict.fromkeys(SPEC_BENCH_SUBTASKS, 1), "overall": 6}
    warning = quick_run_warning([quick])
    assert warning.startswith("Quick run: at most one question per subtask and answers capped at "
                              "32 new tokens.")
    full = _row("pld", 1.5, six, spread=0.1, max_new_tokens=256)
    assert quick_run_warning([full]) is None


def test_drill_down_can_list_only_the_questions_that_differ(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    app.selectbox(key="drill_method").set_value("sps").run()
    assert len(app.selectbox(key="drill_question").options) > 1
    app.toggle(key="drill_diverging").set_value(True).run()
    options = app.selectbox(key="drill_question").options
    assert len(options) == 1 and options[0].startswith(f"{DIVERGING_QUESTION} ·")
    assert options[0].endswith("differs from the baseline")


def test_compare_offers_backends_dtypes_and_two_configurations(fixture_db, monkeypatch):
    app = run_app(monkeypatch, "--db", fixture_db.url)
    assert app.radio(key="compare_field").options == ["devices", "models", "backends", "dtypes",
                                                      "configurations"]
    app.radio(key="compare_field").set_value("backend").run()
    assert "Only one backend has results" in app.tabs[2].info[0].value
    app.radio(key="compare_field").set_value("configurations").run()
    app.selectbox(key="compare_config_a").set_value("eagle2").run()
    app.selectbox(key="compare_config_b").set_value("pld").run()
    table = shown(app.tabs[2].table[0]).set_index("Subtask")
    expected = fixture_db.expected[(A100, VICUNA, 0.0)]
    assert table.loc["Overall", "A"] == f"{expected['eagle2']['overall']:.2f}"
    assert table.loc["Overall", "B"] == f"{expected['pld']['overall']:.2f}"
    ratio = expected["pld"]["overall"] / expected["eagle2"]["overall"]
    assert table.loc["Overall", "B / A"] == f"{ratio:.2f}"


def test_steps_view_groups_token_ids_by_the_step_that_committed_them():
    from leaderboard.divergence import steps_html

    view = steps_html([11, 12, 13, 14, 15, 16], [3, 1, 1])
    steps = re.findall(r'title="step (\d+): (\d+) token\(s\)"[^>]*>([^<]*)<', view)
    assert steps == [("1", "3", "11 12 13"), ("2", "1", "14"), ("3", "1", "15")]
    assert view.endswith(" 16</div>")  # not covered by the lengths: shown untinted


def test_other_question_sets_of_the_same_setting_are_named_not_ranked():
    from dataclasses import replace

    from leaderboard.filters import measurement_text, other_measurements

    shown_one = fixture_selection(A100, VICUNA)
    four = replace(shown_one, question_set="4:abcdef0123456789")
    short = replace(shown_one, max_new_tokens=32)
    elsewhere = replace(four, device_name=RTX3090)
    assert other_measurements([shown_one, four, short, elsewhere], shown_one) == [four, short]
    assert measurement_text(four) == "4 questions (set abcdef01), token cap 1024 tokens"


def test_the_page_names_results_of_the_same_setting_on_other_questions(tmp_path, monkeypatch):
    from evaluation import speed
    from tests.answer_fixtures import QUESTIONS, synthetic_run, write_answer_file

    db = str(tmp_path / "results.db")
    for name, questions in (("all", QUESTIONS), ("four", QUESTIONS[:4])):
        base = write_answer_file(tmp_path / f"vanilla-{name}.jsonl", synthetic_run(
            method="vanilla", accept=1, draft_length=0, questions=questions))
        pld = write_answer_file(tmp_path / f"pld-{name}.jsonl", synthetic_run(questions=questions))
        assert speed.main(["--file-path", str(pld), "--base-path", str(base), "--db", db]) == 0
    app = run_app(monkeypatch, "--db", db)
    shown_set = app.selectbox(key="filter_question_set").value
    other = [c.value for c in app.tabs[0].caption if c.value.startswith("Not comparable")]
    assert len(other) == 1
    expected_other = f"{len(QUESTIONS)} questions" if shown_set.startswith("4:") else "4 questions"
    assert expected_other in other[0]
    assert list(shown(leaderboard_table(app))["Method"]) == ["pld"]  # one row: its own set only


def test_the_device_cost_curve_and_predictions_sit_beside_the_ranking(tmp_path, monkeypatch):
    from evaluation import speed
    from tests.answer_fixtures import synthetic_run, write_answer_file
    from tests.test_speed import CURVE

    records = synthetic_run(seconds_per_step=0.03)
    for record in records:
        record["verify_cost"] = CURVE
    method = write_answer_file(tmp_path / "pld.jsonl", records)
    base = write_answer_file(tmp_path / "vanilla.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    db = tmp_path / "results.db"
    assert speed.main(["--file-path", str(method), "--base-path", str(base), "--db", str(db)]) == 0
    app = run_app(monkeypatch, "--db", str(db))
    [chart] = [c for c in app.tabs[0].get("plotly_chart") if c.key == "chart_verify_cost"]
    assert json.loads(chart.proto.spec)["data"][0]["y"] == CURVE["relative"]
    [predictions] = [d.value for d in app.tabs[0].dataframe if "Check" in d.value.columns]
    assert list(predictions["Check"]) == ["more than 10% off"]
    assert "pld" in app.tabs[0].caption[-1].value


def test_steps_view_shows_escaped_text_pieces_with_step_and_id_on_hover():
    from leaderboard.divergence import steps_html

    view = steps_html([5, 6, 7, 8], [2, 2], ["<b>", " x", "\n", "&"])
    tokens = re.findall(r'<span class="token" title="([^"]*)"[^>]*>([^<]*)<', view)
    assert tokens == [("step 1: 2 token(s) · id 5", "&lt;b&gt;"), ("step 1: 2 token(s) · id 6", " x"),
                      ("step 2: 2 token(s) · id 7", "\n"), ("step 2: 2 token(s) · id 8", "&amp;")]
    assert "white-space: pre-wrap" in view
    # Pieces that are not one per id are not this turn's: the ids are shown instead.
    assert 'class="token"' not in steps_html([5, 6], [2], ["a"])


def test_accept_lengths_are_cut_into_each_turns():
    from leaderboard.divergence import lengths_per_turn

    assert lengths_per_turn([3, 1, 2, 2, 1], [4, 5]) == [[3, 1], [2, 2, 1]]
    assert lengths_per_turn([3, 2], [4, 1]) is None  # a step across the turns' boundary
    assert lengths_per_turn([3, 1, 1], [4]) is None  # more steps than tokens


def test_the_screen_table_shows_the_ranking_and_its_verdicts_before_the_subtasks():
    from leaderboard import tables

    columns = [tables.METHOD, *(display_name(s) for s in SPEC_BENCH_SUBTASKS), tables.MEAN_ACCEPTED,
               tables.OVERALL, tables.OVERALL_CI, tables.EQUALITY, tables.TOKENS_PER_S, tables.PARAMETERS]
    order = tables.screen_order(pd.DataFrame(columns=columns))
    assert order[:5] == [tables.METHOD, tables.OVERALL, tables.OVERALL_CI, tables.EQUALITY, tables.MEAN_ACCEPTED]
    assert sorted(order) == sorted(columns)  # nothing lost, nothing added
    assert order[5:5 + len(SPEC_BENCH_SUBTASKS)] == [display_name(s) for s in SPEC_BENCH_SUBTASKS]
