"""Chart builders (Altair), pure functions of shaped data."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ui.shaping import X_AXES


def curve_chart(
    data: pd.DataFrame,
    metric: str,
    x_axis: str = "step",
    log_scale: bool = False,
    height: int = 380,
) -> alt.Chart:
    y_scale = alt.Scale(type="log") if log_scale else alt.Scale(zero=False)
    return (
        alt.Chart(data, height=height)
        .mark_line(interpolate="linear", strokeWidth=1.6)
        .encode(
            x=alt.X("x:Q", title=X_AXES.get(x_axis, x_axis)),
            y=alt.Y("value:Q", title=metric, scale=y_scale),
            color=alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom", columns=2)),
            tooltip=[
                "run:N",
                alt.Tooltip("step:Q", format=",d"),
                alt.Tooltip("x:Q", title=x_axis, format=",.4g"),
                alt.Tooltip("raw:Q", title=metric, format=".4g"),
            ],
        )
        .interactive()
    )
