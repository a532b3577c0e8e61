"""The speculative-decoding leaderboard: `streamlit run app.py [-- --db URL_OR_PATH]`.

This file only lays out pages. Every number comes from the results database through
leaderboard.queries; nothing here loads a model or reads an answer file.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Optional

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from evaluation.record.subtasks import display_name
from leaderboard import charts, cost_charts, export, queries, tables
from leaderboard.connection import DatabaseStatus, ResultsDatabase, open_for_reading
from leaderboard.db import DatabaseError, normalise_url, open_database
from leaderboard.divergence import (divergence_verdict_text, first_difference, highlighted_html,
                                    lengths_per_turn, question_html, steps_html)
from leaderboard.filters import (FILTER_LABELS, describe, format_value, measurement_text, options_for,
                                 other_measurements, question_set_text)
from leaderboard.queries import SELECTION_FIELDS, LeaderboardRow, Selection
from leaderboard.timeouts import add_db_timeout_option

CONFIGURATIONS = "configurations"  # the Compare tab's choice of two rows of one leaderboard


def parse_args(argv: list[str]) -> argparse.Namespace:
    # allow_abbrev=False and parse_known_args: under `pytest` the argv is pytest's own.
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--db", default=None,
                        help="results database URL or SQLite file (default: the evaluators' one)")
    add_db_timeout_option(parser)  # a frozen server: an error on the page after this, not a blank page
    return parser.parse_known_args(argv)[0]


@st.cache_resource(show_spinner=False)
def cached_open_database(url: str, create: bool = False, timeout: float | None = None):
    """One engine per URL for the whole server; a failure is not cached and is retried."""
    return open_database(url, create=create, timeout=timeout)


def first_run_page(database: ResultsDatabase) -> None:
    st.title("Speculative decoding leaderboard")
    where = {
        DatabaseStatus.MISSING: "There is no results database yet at",
        DatabaseStatus.EMPTY: "The results database is empty:",
        DatabaseStatus.NO_RESULTS: "No speed comparison has been imported yet into",
    }[database.status]
    st.info(f"{where} `{database.display_url}`. One command fills it; reload this page after.")
    st.markdown("**Run the baseline and every method, then measure and check them** (a first "
                "try: one question per subtask, 32 new tokens, a few minutes on a laptop CPU; "
                "without `--quick` the whole bundled set):")
    st.code("./eval.sh --quick", language="bash")
    st.markdown("`eval.sh` runs `evaluation/speed.py` (speedups) and `evaluation/equal.py` "
                "(are the outputs equal to the baseline's?) on every answer file and stores both "
                "(in `results/leaderboard.db`; `DB=PATH_OR_URL ./eval.sh` for another). **For answer files made another way** (Spec-Bench's own, another machine's), "
                "run them yourself, one method file at a time:")
    st.code("python evaluation/speed.py \\\n"
            "    --file-path data/bundled/model_answer/<model>-<method>.jsonl \\\n"
            "    --base-path data/bundled/model_answer/<model>-vanilla.jsonl", language="bash")
    st.code("python evaluation/equal.py --file-path data/bundled/model_answer \\\n"
            "    --jsonfile1 <model>-vanilla.jsonl --jsonfile2 <model>-<method>.jsonl",
            language="bash")
    st.caption("`--jsonfile1` is the baseline, as in Spec-Bench. speed.py and equal.py write into "
               "the database this page reads (`--db` selects another one for both; see `--help`).")


def broken_database_page(url: str, error: Exception) -> None:
    st.title("Speculative decoding leaderboard")
    st.error(f"The results database cannot be used: {error}")
    st.markdown(f"Database: `{url}`. Point the app at another one with "
                "`streamlit run app.py -- --db PATH_OR_URL`, or move this file away and import "
                "the answer files again with `evaluation/speed.py` and `evaluation/equal.py`.")


def sidebar_selection(selections: list[Selection]) -> Selection:
    """Cascading filters: each offers only values with results under the ones above it."""
    st.sidebar.header("Filters")
    chosen: dict = {}
    for field in SELECTION_FIELDS:
        options = options_for(selections, field, chosen)
        chosen[field] = st.sidebar.selectbox(
            FILTER_LABELS[field], options, key=f"filter_{field}",
            format_func=lambda value, field=field: format_value(field, value),
        )
    return Selection(**chosen)


def unchecked_note(rows: list[LeaderboardRow]) -> str | None:
    """Which settings could not be compared with the baseline's, per method (e.g. files written
    by Spec-Bench itself record no device), or None when every setting was checked."""
    parts = [f"{r.method}: {', '.join(r.unchecked_settings)}" for r in rows if r.unchecked_settings]
    if not parts:
        return None
    return ("Settings not recorded in both answer files, so not checked against the baseline — "
            + "; ".join(parts) + ".")


def unmatched_section(unmatched: list[LeaderboardRow]) -> None:
    st.markdown("**Not ranked: comparisons whose method and baseline settings differ**")
    st.caption("speed.py stored these with `--allow-mismatch`; their speedups do not measure "
               "the method alone, so they are listed apart and never ranked.")
    st.table(tables.styled_unmatched(tables.unmatched_frame(unmatched)))


def run_context(rows: list[LeaderboardRow], selection: Selection) -> str:
    """What the ranked rows were measured on, in one line of Markdown."""
    newest = max(row.created for row in rows)
    versions = sorted({row.versions for row in rows if row.versions})
    parts = [f"**{question_set_text(selection.question_set)}**",
             f"token cap **{format_value('max_new_tokens', selection.max_new_tokens)}**",
             f"newest comparison {newest:%Y-%m-%d %H:%M} UTC"]
    if versions:
        parts.append("; ".join(versions))
    return " · ".join(parts)


# Narrow by default so that the speedups, the interval and the badge fit a laptop screen; the
# Method column stays pinned while the rest scrolls.
COLUMN_WIDTHS = {tables.METHOD: 150, tables.EQUALITY: 125, tables.MEAN_ACCEPTED: 100, tables.NATIVE_CODE: "medium",
                 tables.PARAMETERS: "large", tables.OVERALL_CI: 110, tables.DATE: "medium",
                 tables.VERSIONS: "medium"}


def leaderboard_page(rows: list[LeaderboardRow], selection: Selection,
                     unmatched: list[LeaderboardRow] = (), others: list[Selection] = ()) -> None:
    st.subheader("Leaderboard")
    quick = tables.quick_run_warning(rows)
    if quick:
        st.warning(quick)
    st.caption(f"{describe(selection)} — speedup over the {rows[0].base_method} baseline, "
               "newest speed comparison per method. A value is highlighted only where it stands "
               "clearly apart: more than one question, and its 95% interval above 1.00x and "
               "above every other row's. Hover a column header for its definition.")
    st.markdown(run_context(rows, selection))
    base_speeds = sorted({round(r.base_tokens_per_s, 1) for r in rows if r.base_tokens_per_s})
    if base_speeds:
        speeds = " / ".join(f"{s:.1f}" for s in base_speeds)
        st.markdown(f"Baseline ({rows[0].base_method}): **{speeds} tokens/s** overall")
    frame = tables.leaderboard_frame(rows)
    help_of = tables.column_help(frame)
    config = {column: st.column_config.Column(
        tables.SHORT_LABELS.get(column, column), help=help_of[column], pinned=column == tables.METHOD,
        width=COLUMN_WIDTHS.get(column, "small"))
        for column in frame.columns}
    st.dataframe(tables.styled_leaderboard(frame, tables.best_cells(rows)), hide_index=True,
                 column_config=config, column_order=tables.screen_order(frame),
                 height=min(len(frame), 24) * 35 + 38,  # every row of a usual run without an inner scroll
                 key="leaderboard_table")
    note = unchecked_note(rows)
    if note:
        st.caption(note)
    if unmatched:
        unmatched_section(unmatched)
    if others:
        st.caption("Not comparable with these rows, so ranked apart (choose them under Question "
                   "set and Token cap in the sidebar): results of this setting measured on "
                   + "; ".join(measurement_text(o) for o in others) + ".")
    markdown = export.leaderboard_markdown(rows, selection)
    left, right = st.columns(2)
    left.download_button("Download as Markdown (Leaderboard.md layout)", markdown,
                         file_name="leaderboard.md", mime="text/markdown", key="download_markdown")
    right.download_button("Download as CSV", frame.to_csv(index=False), file_name="leaderboard.csv",
                          mime="text/csv", key="download_csv")
    with st.expander("Markdown"):
        st.code(markdown, language="markdown")


def cost_curve_section(session: Session, selection: Selection) -> None:
    """The device's verification cost curve beside the ranking, and each method's predicted
    speedup from it (the data: queries.cost_curve_view; the figures: leaderboard/cost_charts.py)."""
    view = queries.cost_curve_view(session, selection)
    if view.curve.empty:
        return
    st.subheader("Why this ranking: the cost of verifying k tokens on this device")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(cost_charts.verify_cost_chart(view.curve, selection.device_name),
                        key="chart_verify_cost")
    with right:
        st.dataframe(cost_charts.prediction_table(view.predictions), hide_index=True,
                     key="predicted_speedups")
        if view.flagged_methods:
            st.caption(f"Measured more than 10% away from the prediction: "
                       f"{', '.join(view.flagged_methods)} (docs/evaluation.md, \"The cost curve\").")


def charts_page(session: Session, rows: list[LeaderboardRow]) -> None:
    colours = charts.method_colours(r.method for r in rows)
    methods = [r.method for r in rows]
    shown_methods = st.multiselect("Methods shown", methods, default=methods, key="chart_methods",
                                   help="Hide methods to declutter the charts; each method keeps "
                                        "its colour in every chart.")
    rows = [r for r in rows if r.method in shown_methods]
    if not rows:
        st.info("Choose at least one method to chart.")
        return
    st.plotly_chart(charts.speedup_heatmap(rows), key="chart_subtasks")
    st.plotly_chart(charts.overall_ranked(rows, colours), key="chart_overall")
    left, right = st.columns(2)
    with left:
        counts = queries.accept_length_counts(session, rows)
        st.plotly_chart(charts.accept_length_distribution(counts, colours), key="chart_accept_lengths")
    with right:
        st.plotly_chart(charts.acceptance_curve(rows, colours), key="chart_acceptance")
    st.plotly_chart(charts.throughput_scatter(queries.question_results(session, rows), colours),
                    key="chart_throughput")
    parts = queries.time_split(session, rows)
    if parts.empty:
        st.info("None of these runs records draft and verification times "
                "(answer files written by Spec-Bench itself do not).")
        return
    st.plotly_chart(charts.time_split(parts), key="chart_time_split")
    untimed = [r.method for r in rows if r.method not in set(parts["run"])]
    if untimed:
        st.caption(f"No time split recorded for: {', '.join(untimed)}.")


COMPARED = {"device_name": "devices", "model": "models", "backend": "backends", "dtype": "dtypes",
            CONFIGURATIONS: "configurations"}


def compare_page(session: Session, selections: list[Selection], selection: Selection,
                 rows: list[LeaderboardRow]) -> None:
    field = st.radio("Compare two", list(COMPARED), horizontal=True, key="compare_field",
                     format_func=COMPARED.get)
    if field == CONFIGURATIONS:
        compare_configurations(rows)
        return
    fixed = {f: getattr(selection, f) for f in SELECTION_FIELDS if f != field}
    values = options_for(selections, field, fixed)
    if len(values) < 2:
        st.info(f"Only one {FILTER_LABELS[field].lower()} has results for "
                f"{', '.join(format_value(f, v) for f, v in fixed.items())}.")
        return
    left, right = st.columns(2)
    value_a = left.selectbox("A", values, index=values.index(getattr(selection, field)),
                             key="compare_a")
    others = [v for v in values if v != value_a]
    value_b = right.selectbox("B", others, key="compare_b")
    rows_a = queries.leaderboard_rows(session, Selection(**fixed, **{field: value_a}))
    rows_b = queries.leaderboard_rows(session, Selection(**fixed, **{field: value_b}))
    frame = tables.comparison_frame(rows_a, rows_b)
    if frame.empty:
        st.info("These two have no method in common.")
        return
    st.markdown(f"**A** = {value_a} · **B** = {value_b}")
    st.table(tables.styled_comparison(frame))
    only = sorted({r.method for r in rows_a} ^ {r.method for r in rows_b})
    if only:
        st.caption(f"Measured on one side only: {', '.join(only)}.")
    st.plotly_chart(charts.overall_side_by_side(rows_a, rows_b, value_a, value_b),
                    key="chart_compare")


def compare_configurations(rows: list[LeaderboardRow]) -> None:
    """Two rows of this leaderboard (e.g. two parameter sets of one method) subtask by subtask."""
    if len(rows) < 2:
        st.info("This selection has only one method configuration.")
        return
    labels = [r.method for r in rows]
    left, right = st.columns(2)
    label_a = left.selectbox("A", labels, key="compare_config_a")
    label_b = right.selectbox("B", [m for m in labels if m != label_a], key="compare_config_b")
    a, b = rows[labels.index(label_a)], rows[labels.index(label_b)]
    st.markdown(f"**A** = {label_a} ({tables.parameters_text(a.method_params)}) · "
                f"**B** = {label_b} ({tables.parameters_text(b.method_params)})")
    st.table(tables.styled_configuration_pair(tables.configuration_pair_frame(a, b)))


NO_QUESTION_TEXT = ("The question's text was not available when this run was imported (its question "
                    "file was not found beside the answers or under data/, or the run was imported "
                    "by an older version); importing the run again with speed.py or equal.py where "
                    "the file is adds it.")
NO_TOKENIZER = ("Token ids, not text: this run's tokenizer was not on the machine that imported it; "
                "importing the run again where the model is decodes them.")


def _turn_view(method_text: str, base_text: str, differences: list, turn: int,
               threshold: Optional[float] = None, threshold_dtype: Optional[str] = None,
               question: Optional[str] = None) -> None:
    if question is not None:
        st.markdown(f"**Question, turn {turn + 1}**")
        st.markdown(question_html(question), unsafe_allow_html=True)
    listed = next((d for d in differences if d.turn == turn), None)
    index = first_difference(method_text, base_text)
    if listed is not None and listed.unit == "char":
        index = listed.first_divergence
    if index is None:
        st.success(f"Turn {turn + 1}: identical to the baseline.")
    else:
        note = f"Turn {turn + 1}: first divergence at character {index}"
        if listed is not None and listed.unit == "token":
            note += f" (token {listed.first_divergence} according to equal.py)"
        st.warning(note)
    if listed is not None:  # equal.py's verdict, even where the texts happen to read the same
        st.caption(divergence_verdict_text(listed.margin_verdict, listed.base_margin,
                                           threshold, threshold_dtype))
    method_column, base_column = st.columns(2)
    method_column.markdown(highlighted_html(method_text, index), unsafe_allow_html=True)
    base_column.markdown(highlighted_html(base_text, index), unsafe_allow_html=True)


def drill_down_page(session: Session, rows: list[LeaderboardRow]) -> None:
    methods = [r.method for r in rows]
    method = st.selectbox("Method", methods, key="drill_method")
    row = rows[methods.index(method)]
    choices = {c.question_id: c for c in queries.question_choices(session, row)}
    if not choices:
        st.info("This method run has no stored answers.")
        return

    diverging = queries.diverging_questions(session, row)

    def label(question_id: str) -> str:
        choice = choices[question_id]
        speed = f" · {choice.speedup:.2f}x" if choice.speedup is not None else ""
        differs = " · differs from the baseline" if question_id in diverging else ""
        return f"{question_id} · {display_name(choice.subtask)}{speed}{differs}"

    only_diverging = st.toggle(f"Only questions that differ from the baseline ({len(diverging)})",
                               key="drill_diverging", disabled=not diverging,
                               help="equal.py's list of questions whose output differs")
    listed = [q for q in choices if q in diverging] if only_diverging else list(choices)
    question_id = st.selectbox("Question", listed, format_func=label, key="drill_question")
    detail = queries.question_detail(session, row, question_id)
    figures = st.columns(4)
    if detail.result is not None:
        figures[0].metric("Speedup", f"{detail.result.speedup:.2f}x")
        figures[1].metric("Method tokens/s", f"{detail.result.tokens_per_s:.1f}")
        figures[2].metric("Baseline tokens/s", f"{detail.result.base_tokens_per_s:.1f}")
    lengths = detail.method_accept_lengths
    if lengths:
        figures[3].metric("Mean accepted tokens", f"{sum(lengths) / len(lengths):.2f}")
    for error, whose in ((detail.method_error, method), (detail.base_error, row.base_method)):
        if error:
            st.error(f"The {whose} run failed on this question: {error}")
    st.markdown(f"Each turn: the user's question, then **{method}**'s answer (left) beside the "
                f"**{row.base_method}** baseline's (right)")
    questions = detail.question_turns or []
    if not questions:
        st.caption(NO_QUESTION_TEXT)
    for turn in range(max(len(detail.method_turns), len(detail.base_turns), len(questions))):
        method_text = detail.method_turns[turn] if turn < len(detail.method_turns) else ""
        base_text = detail.base_turns[turn] if turn < len(detail.base_turns) else ""
        _turn_view(method_text, base_text, detail.differences, turn,
                   detail.near_tie_threshold, detail.threshold_dtype,
                   questions[turn] if turn < len(questions) else None)
    if lengths and detail.method_token_ids:
        committed_steps(detail.method_token_ids, detail.method_token_pieces, lengths)
    if lengths:
        st.plotly_chart(charts.accepted_per_step(lengths), key="chart_question_steps")


def committed_steps(token_ids: list[list[int]], pieces: Optional[list[list[str]]],
                    lengths: list[int]) -> None:
    """The method's answer token by token, tinted by the decoding step that committed it."""
    if pieces is not None and [len(p) for p in pieces] != [len(t) for t in token_ids]:
        pieces = None
    st.markdown("**What each decoding step committed** (the method's answer, one tint per step; "
                + ("hover a token for its step and id)" if pieces else "hover a step for its size)"))
    if pieces is None:
        st.caption(NO_TOKENIZER)
    per_turn = lengths_per_turn(lengths, [len(t) for t in token_ids])
    if per_turn is None:  # lengths that do not split by turn: one stream, as the file has them
        flat_pieces = None if pieces is None else [p for turn in pieces for p in turn]
        st.markdown(steps_html([t for turn in token_ids for t in turn], lengths, flat_pieces),
                    unsafe_allow_html=True)
        return
    for turn, (ids, turn_lengths) in enumerate(zip(token_ids, per_turn)):
        if len(token_ids) > 1:
            st.caption(f"Turn {turn + 1}")
        st.markdown(steps_html(ids, turn_lengths, None if pieces is None else pieces[turn]),
                    unsafe_allow_html=True)


def main() -> None:
    st.set_page_config(page_title="SD leaderboard", page_icon="🏁", layout="wide")
    args = parse_args(sys.argv[1:])
    url = normalise_url(args.db)
    try:
        database = open_for_reading(url, factory=functools.partial(cached_open_database, timeout=args.db_timeout))
    except DatabaseError as error:
        broken_database_page(make_url(url).render_as_string(hide_password=True), error)
        return
    if database.status is not DatabaseStatus.READY:
        first_run_page(database)
        return
    try:
        with database.sessions() as session:
            selections = queries.available_selections(session)
            st.title("Speculative decoding leaderboard")
            if not selections:
                st.info("Every speed comparison in this database was stored with settings that "
                        "differ between method and baseline (speed.py --allow-mismatch), so "
                        "there is nothing to rank. Compare each method with a baseline run of "
                        "the same settings.")
                return
            selection = sidebar_selection(selections)
            rows = queries.leaderboard_rows(session, selection)
            unmatched = queries.unmatched_rows(session, selection)
            board, pictures, compare, drill = st.tabs(
                ["Leaderboard", "Charts", "Compare", "Question drill-down"])
            with board:
                leaderboard_page(rows, selection, unmatched, other_measurements(selections, selection))
                cost_curve_section(session, selection)
            with pictures:
                charts_page(session, rows)
            with compare:
                compare_page(session, selections, selection, rows)
            with drill:
                drill_down_page(session, rows)
    except SQLAlchemyError as error:  # e.g. the file was replaced by one of another schema
        broken_database_page(database.display_url, error)


main()
