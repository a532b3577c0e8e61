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
from leaderboard.emphasis import real_interval
from leaderboard.queries import TIME_PARTS, LeaderboardRow, subtasks_of

_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=10), legend_title_text="")
# Enough distinct colours for every method of a page; the baseline is always grey.
_PALETTE = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
BASELINE_COLOUR = "#7f7f7f"


def method_colours(methods) -> dict[str, str]:
    """One fixed colour per method label, the same in every chart of the page: assigned in name
    order, so a method keeps its colour when others are hidden."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(set(methods)))}


def _bar_with_interval(name: str, x: list[str], values: list[float], intervals: list) -> go.Bar:
    """A bar trace whose error bars are the 95% intervals where speed.py computed them."""
    plus, minus = [], []
    intervals = [real_interval(*i) if i else None for i in intervals]  # no zero-width bars
    for value, interval in zip(values, intervals):
        if interval is None or math.isnan(value):
            plus.append(0.0)
            minus.append(0.0)
        else:
            plus.append(interval[1] - value)
            minus.append(value - interval[0])
    error = dict(type="data", array=plus, arrayminus=minus, visible=any(intervals))
    return go.Bar(name=name, x=x, y=values, error_y=error)


def speedup_heatmap(rows: list[LeaderboardRow]) -> go.Figure:
    """Methods x subtasks, coloured by speedup with 1.0x (the baseline) white: red slower, blue
    faster. Scales to any number of methods, where grouped bars do not."""
    subtasks = [*subtasks_of(rows), OVERALL]
    names = [display_name(s) for s in subtasks]
    z, text, hover = [], [], []
    for row in rows:
        values = [row.speedups.get(s, math.nan) if s != OVERALL else row.overall for s in subtasks]
        z.append([None if math.isnan(v) else v for v in values])
        text.append(["-" if math.isnan(v) else f"{v:.2f}x" for v in values])
        hover.append([_cell_hover(row, s, v) for s, v in zip(subtasks, values)])
    finite = [v for line in z for v in line if v is not None]
    reach = max([abs(v - 1.0) for v in finite] + [0.1])  # symmetric around 1.0
    figure = go.Figure(go.Heatmap(
        z=z, x=names, y=[row.method for row in rows], text=text, texttemplate="%{text}",
        customdata=hover, hovertemplate="%{y} · %{x}<br>%{customdata}<extra></extra>",
        colorscale="RdBu", zmid=1.0, zmin=1.0 - reach, zmax=1.0 + reach,
        colorbar=dict(title="speedup"), xgap=2, ygap=2))
    figure.update_layout(title="Speedup per subtask (white = baseline speed)",
                         height=max(280, 140 + 32 * len(rows)), **_LAYOUT)
    figure.update_yaxes(autorange="reversed")
    return figure


def _cell_hover(row: LeaderboardRow, subtask: str, value: float) -> str:
    if math.isnan(value):
        return "not measured"
    interval = (real_interval(row.ci_low, row.ci_high) if subtask == OVERALL
                else real_interval(*row.intervals.get(subtask, (None, None))))
    count = row.question_counts.get(subtask)
    spread = f"95% interval {interval[0]:.2f}x – {interval[1]:.2f}x" if interval else "no interval"
    return f"{value:.2f}x · {spread}" + (f" · {count} question(s)" if count else "")


def overall_ranked(rows: list[LeaderboardRow], colours: dict[str, str]) -> go.Figure:
    """Overall speedup per method, best first, with its 95% interval where it has one."""
    ranked = sorted((r for r in rows if not math.isnan(r.overall)), key=lambda r: r.overall)
    plus, minus = [], []
    for row in ranked:
        interval = real_interval(row.ci_low, row.ci_high)
        plus.append(interval[1] - row.overall if interval else 0.0)
        minus.append(row.overall - interval[0] if interval else 0.0)
    figure = go.Figure(go.Bar(
        x=[r.overall for r in ranked], y=[r.method for r in ranked], orientation="h",
        marker_color=[colours.get(r.method) for r in ranked],
        error_x=dict(type="data", array=plus, arrayminus=minus, visible=any(plus)),
        hovertemplate="%{y}: %{x:.2f}x<extra></extra>"))
    figure.add_vline(x=1.0, line_dash="dot", annotation_text="baseline")
    figure.update_layout(title="Overall speedup (95% interval where known)",
                         xaxis_title="speedup over the baseline (×)",
                         height=120 + 28 * len(ranked), showlegend=False, **_LAYOUT)
    return figure


def acceptance_curve(rows: list[LeaderboardRow], colours: dict[str, str]) -> go.Figure:
    """Per-position acceptance: the share of steps that accepted at least k drafted tokens.
    The legend gives each method's draft acceptance rate (accepted / drafted tokens)."""
    figure = go.Figure()
    for row in rows:
        if not row.per_position_acceptance:
            continue
        rate = (f" · {row.draft_acceptance_rate:.0%} of drafts accepted"
                if row.draft_acceptance_rate is not None else "")
        positions = list(range(1, len(row.per_position_acceptance) + 1))
        figure.add_trace(go.Scatter(x=positions, y=row.per_position_acceptance, mode="lines+markers",
                                    name=f"{row.method}{rate}", line=dict(color=colours.get(row.method))))
    figure.update_layout(title="Acceptance by draft position", xaxis_title="draft position k",
                         yaxis_title="steps accepting ≥ k drafts", **_LAYOUT)
    figure.update_xaxes(dtick=1)
    figure.update_yaxes(tickformat=".0%", range=[0, 1.02])
    return figure


def accept_length_distribution(counts: pd.DataFrame, colours: dict[str, str]) -> go.Figure:
    """Share of decoding steps that committed k tokens (bonus token included), per method."""
    figure = px.bar(counts, x="accepted", y="share", color="method", barmode="group",
                    color_discrete_map=colours,
                    hover_data={"steps": True},
                    labels={"accepted": "tokens committed per step", "share": "share of steps"})
    figure.update_layout(title="Accepted length per decoding step", **_LAYOUT)
    figure.update_xaxes(dtick=1)
    figure.update_yaxes(tickformat=".0%")
    return figure


def throughput_scatter(questions: pd.DataFrame, colours: dict[str, str]) -> go.Figure:
    """Tokens/s of each method against its baseline, one point per question."""
    figure = px.scatter(questions, x="base_tokens_per_s", y="tokens_per_s", color="method",
                        color_discrete_map=colours,
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
