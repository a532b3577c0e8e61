"""The device's verification cost curve and the predicted speedups, shaped for the page that
shows them beside the ranking (the numbers come from leaderboard.queries.cost_curve_view; none is
computed here, so each can be looked at and tested on hand-made data)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=10), legend_title_text="")


def verify_cost_chart(curve: pd.DataFrame, device: str) -> go.Figure:
    """Cost of a verification forward over k tokens against a 1-token one, with the line of a
    free forward (1x) for scale."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=list(curve["tokens"]), y=list(curve["relative"]),
                                mode="lines+markers", name="measured",
                                customdata=list(curve["ms"]),
                                hovertemplate="%{x} tokens: %{y:.2f}x (%{customdata:.1f} ms)"))
    figure.add_hline(y=1.0, line_dash="dot", annotation_text="as cheap as 1 token")
    figure.update_layout(title=f"Verification cost on {device}", xaxis_title="tokens in the forward",
                         yaxis_title="cost / 1-token forward", **_LAYOUT)
    return figure


def _speedup(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}x"


def prediction_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Method, measured, predicted, their gap and the 10% check, as the page shows them."""
    rows = []
    for p in predictions.to_dict("records"):
        known = p["predicted"] is not None and not (isinstance(p["predicted"], float)
                                                     and math.isnan(p["predicted"]))
        rows.append({
            "Method": p["method"],
            "Measured": _speedup(p["measured"]),
            "Predicted": _speedup(p["predicted"]) if known else "-",
            "Measured vs predicted": f"{p['gap']:+.0%}" if known else "-",
            "Check": ("more than 10% off" if p["flagged"] else "within 10%") if known
            else f"no prediction: {p['unavailable']}",
        })
    return pd.DataFrame(rows, columns=["Method", "Measured", "Predicted", "Measured vs predicted",
                                       "Check"])
