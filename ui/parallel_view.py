"""Parallel coordinates: a Streamlit component that draws `ui.sweep_view.parallel_chart` (a
sweep's trials) and `ui.charts.runs_parallel_chart` (compared runs) payloads as an SVG in the
browser (ui/assets/parallel.js, no library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

_ASSETS = Path(__file__).resolve().parent / "assets"

_CSS = "\n".join(
    [
        ".easgd-parallel { width: 100%; }",
        ".easgd-parallel svg { font: 12px sans-serif; fill: var(--st-text-color); }",
        # A halo of the background behind labels, so that the lines under them stay readable.
        ".easgd-parallel text { paint-order: stroke; stroke-width: 3px;"
        " stroke: var(--st-background-color, #fff); }",
        ".easgd-parallel .axis { stroke: var(--st-border-color, #bbb); }",
    ]
)


def show_parallel(payload: dict[str, Any], *, key: str) -> None:
    """Draw a parallel-coordinates payload (registered on each call, as `ui.curve_view`
    explains)."""
    component = st.components.v2.component(
        "parallel",
        html='<div class="easgd-parallel"></div>',
        css=_CSS,
        js=(_ASSETS / "parallel.js").read_text(encoding="utf-8"),
    )
    component(data=payload, key=key)
