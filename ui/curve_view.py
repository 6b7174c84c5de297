"""The learning-curve chart: a Streamlit component that draws `ui.charts` payloads with uPlot.

Streamlit's own charts load Vega, about 2 MB of JavaScript, before they draw anything: on a cold
browser that cost the Compare page of 20 runs about half a second of its 3 s budget. uPlot
(vendored from npm, MIT, see assets/uplot/) is 50 kB and draws 20 x 1,000 points in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

_ASSETS = Path(__file__).resolve().parent / "assets"


def _read(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


# Joined with newlines: Streamlit takes a one-line string for a file path, not for content.
_CSS = "\n".join(
    [
        _read("uplot/uPlot.min.css"),
        ".easgd-curves { width: 100%; }",
        ".easgd-curve-grid { display: grid; gap: 0.75rem 1.5rem;"
        " grid-template-columns: repeat(var(--easgd-columns, 1), minmax(0, 1fr)); }",
        ".easgd-curves .u-legend { font-size: 0.8rem; color: var(--st-text-color); }",
    ]
)
_JS = _read("uplot/uPlot.iife.min.js") + "\n" + _read("curves.js")


def show_curves(payload: dict[str, Any], *, key: str) -> None:
    """Draw the curves of one `ui.charts.curve_chart` payload, or a `ui.charts.curve_grid` of
    several.

    The component is registered on every call, as an app script would at its top: each Streamlit
    runtime (and each AppTest) keeps its own registry, and the same definition registers silently.
    """
    component = st.components.v2.component(
        "curves", html='<div class="easgd-curves"></div>', css=_CSS, js=_JS
    )
    component(data=payload, key=key)
