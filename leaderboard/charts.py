"""Plotly figures for the pages where a picture says more than the table.

Each function takes rows or a data frame from leaderboard.queries and returns a figure; none
reads the database, so each can be looked at (and tested) on hand-made data.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from evaluation.record.subtasks import OVERALL, display_name
from leaderboard.queries import TIME_PARTS, LeaderboardRow, subtasks_of

_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=10), legend_title_text="")


def _bar_with_interval(name: str, x: list[str], values: list[float], intervals: list) -> go.Bar:
    """A bar trace whose error bars are the 95% intervals where speed.py computed them."""
    plus, minus = [], []
    for value, interval in zip(values, intervals):
        if interval is None or math.isnan(value):
            plus.append(0.0)
            minus.append(0.0)
        else:
            plus.append(interval[1] - value)
            minus.append(value - interval[0])
    error = dict(type="data", array=plus, arrayminus=minus, visible=any(intervals))
    return go.Bar(name=name, x=x, y=values, error_y=error)


def speedup_by_subtask(rows: list[LeaderboardRow]) -> go.Figure:
    """Grouped bars: one group per subtask (and Overall), one bar per method."""
    subtasks = subtasks_of(rows)
    x = [display_name(s) for s in subtasks] + [display_name(OVERALL)]
    figure = go.Figure()
    for row in rows:
        values = [row.speedups.get(s, math.nan) for s in subtasks] + [row.overall]
        intervals = [row.intervals.get(s) for s in [*subtasks, OVERALL]]
        figure.add_trace(_bar_with_interval(row.method, x, values, intervals))
    figure.add_hline(y=1.0, line_dash="dot", annotation_text="baseline",
                     annotation_position="bottom right")
    figure.update_layout(barmode="group", title="Speedup per subtask (95% interval where known)",
                         yaxis_title="speedup over the baseline (×)", **_LAYOUT)
    return figure


def accept_length_distribution(counts: pd.DataFrame) -> go.Figure:
    """Share of decoding steps that committed k tokens (bonus token included), per method."""
    figure = px.bar(counts, x="accepted", y="share", color="method", barmode="group",
                    hover_data={"steps": True},
                    labels={"accepted": "tokens committed per step", "share": "share of steps"})
    figure.update_layout(title="Accepted length per decoding step", **_LAYOUT)
    figure.update_xaxes(dtick=1)
    figure.update_yaxes(tickformat=".0%")
    return figure


def throughput_scatter(questions: pd.DataFrame) -> go.Figure:
    """Tokens/s of each method against its baseline, one point per question."""
    figure = px.scatter(questions, x="base_tokens_per_s", y="tokens_per_s", color="method",
                        hover_data={"question_id": True, "subtask": True, "speedup": ":.2f"},
                        labels={"base_tokens_per_s": "baseline tokens/s",
                                "tokens_per_s": "method tokens/s"})
    if not questions.empty:
        top = float(max(questions["base_tokens_per_s"].max(), questions["tokens_per_s"].max()))
        # Points above this line are questions the method made faster.
        figure.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="no speedup",
                                    line=dict(dash="dot", color="grey")))
    figure.update_layout(title="Tokens/s per question: method vs. baseline", **_LAYOUT)
    return figure


def time_split(parts: pd.DataFrame) -> go.Figure:
    """Stacked bars of milliseconds per generated token: where each run's time goes."""
    figure = px.bar(parts, y="run", x="ms_per_token", color="part", orientation="h",
                    category_orders={"part": list(TIME_PARTS)},
                    labels={"ms_per_token": "milliseconds per generated token", "run": ""})
    figure.update_layout(barmode="stack", title="Draft / verification / other time", **_LAYOUT)
    figure.update_yaxes(autorange="reversed")
    return figure


def overall_side_by_side(
    rows_a: list[LeaderboardRow], rows_b: list[LeaderboardRow], label_a: str, label_b: str
) -> go.Figure:
    """Overall speedup of the methods both sides share, one bar per side."""
    by_method_b = {row.method: row for row in rows_b}
    shared = [row for row in rows_a if row.method in by_method_b]
    methods = [row.method for row in shared]
    figure = go.Figure()
    for label, side in ((label_a, shared), (label_b, [by_method_b[m] for m in methods])):
        figure.add_trace(_bar_with_interval(label, methods, [r.overall for r in side],
                                            [r.intervals.get(OVERALL) for r in side]))
    figure.update_layout(barmode="group", title="Overall speedup side by side",
                         yaxis_title="speedup (×)", **_LAYOUT)
    return figure


def accepted_per_step(lengths: list[int]) -> go.Figure:
    """Tokens committed by each decoding step of one answer, in order."""
    figure = go.Figure(go.Bar(x=list(range(1, len(lengths) + 1)), y=lengths))
    figure.update_layout(title="Tokens committed per decoding step", xaxis_title="step",
                         yaxis_title="tokens", **_LAYOUT)
    return figure
