"""The Streamlit app: `streamlit run ui/app.py` (or `easgd up`, which also starts the service)."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts ui/ on the path, not the project root that holds our packages.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from db.errors import StoreNotInitialized  # noqa: E402
from ui import state  # noqa: E402
from ui.navigation import PAGES  # noqa: E402

# Our own icon (the hub of a center and its workers), shown once a page has loaded.
st.set_page_config(
    page_title="easgd",
    page_icon=str(Path(__file__).resolve().parent / "assets" / "favicon.svg"),
    layout="wide",
)

try:
    store = state.store()
except StoreNotInitialized as exc:
    st.error(f"{exc}")
    st.stop()
# Which store every page shows, as `easgd up` and `easgd runs list` name it.
st.sidebar.caption(
    f"Store: `{store.display_url}`",
    help="Every entry point finds the store by one rule: EASGD_DB_URL, else easgd.db in "
    "EASGD_HOME (default ~/.easgd). A shell with the same settings lists the same runs "
    "(`easgd runs list`).",
)

page = st.navigation(
    [st.Page(p.path, title=p.title, icon=p.icon, default=p is PAGES[0]) for p in PAGES]
)
page.run()
