"""Driving the UI in a real browser, for the browser test and the UI benchmark: what
`streamlit.testing` is to in-process tests, for headless Chromium against a served app."""

from __future__ import annotations

import os
import time

import httpx

# Without the background-networking flags Chromium keeps calling hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# A curves chart once ui/assets/curves.js has drawn it (it also sets data-series and data-y).
DRAWN = '.easgd-curves[data-drawn="1"]'


def chromium() -> str:
    """The Chromium to drive: EASGD_TEST_CHROMIUM, else Debian's (what `make test` installs)."""
    return os.environ.get("EASGD_TEST_CHROMIUM") or "/usr/bin/chromium"


def wait_until_serving(urls: list[str], timeout: float) -> bool:
    """Whether every URL answered 200 within `timeout` seconds: a server just started takes a
    while to listen, and the app a while longer to answer."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if all(httpx.get(url, timeout=1).status_code == 200 for url in urls):
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return False
