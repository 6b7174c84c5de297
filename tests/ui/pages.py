"""Opening the app's pages in Streamlit's test harness, for the page tests."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

APP = "ui/app.py"


def open_app(page: str | None = None) -> AppTest:
    """The app, switched to `page` (a path under ui/), with no exception on the way."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def small_job_form() -> AppTest:
    """The Launch page set to a job that trains in seconds: scikit-learn's digits, an MLP."""
    at = open_app("views/launch.py")
    at.selectbox(key="form.data.dataset").set_value("digits").run()
    at.selectbox(key="form.model.name").set_value("mlp").run()
    return at
