"""Shared resources, created once per UI process, and the fixed session-state keys."""

from __future__ import annotations

import streamlit as st

from db.store import Store
from service.client import Client

COMPARE = "compare_run_ids"
CLONE = "clone_config"
LAUNCHED = "launched_job"
RUN = "selected_run"
FIRST_RUN_HINT = (
    "No runs yet. Launch one on the **Launch** page, or from a shell:\n\n"
    "```\nhorovodrun -np 2 -H localhost:2 --gloo python -m training "
    "--config configs/lenet-mnist5k-eamsgd.yaml\n```"
)


@st.cache_resource(show_spinner=False)
def store() -> Store:
    s = Store()
    s.ready()
    return s


@st.cache_resource(show_spinner=False)
def client() -> Client:
    return Client()
