"""In Chromium, through `easgd up`: the Run page's System tab draws each rank's curves, and a
deletion asks in a dialog before it removes the run and its directory."""

from __future__ import annotations

import pytest

from tests.ui.chromium import chart, chromium_browser, new_page, served, shot, store_in
from tests.ui.pages import seed_system_run

pytestmark = [pytest.mark.browser, pytest.mark.service]


def test_system_curves_and_a_deletion_that_asks_first(tmp_path):
    home = tmp_path / "home"
    store = store_in(home)
    seed_system_run(store, home / "runs" / "sys-run")
    with served(home) as product, chromium_browser() as browser:
        page = new_page(browser, f"{product.ui}/run?run=sys-run")
        page.get_by_role("tab", name="System").click()
        chart(page, "memory_mb").wait_for()
        assert chart(page, "cpu_percent").count() == 1
        shot(page, "run-system")
        page.get_by_text("Note, tags, archive, delete").click()
        page.get_by_label("Note").fill("the loss plateaued at step 10")
        page.get_by_role("button", name="Save note").click()
        page.get_by_text("note saved").wait_for()
        assert product.store().get_run("sys-run").tags["note"] == "the loss plateaued at step 10"
        page.get_by_text("with its directory").click()
        page.get_by_role("button", name="Delete…").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text(str(home / "runs" / "sys-run")).wait_for()
        shot(page, "run-delete-dialog")
        assert (home / "runs" / "sys-run").is_dir()
        dialog.get_by_role("button", name="Delete", exact=True).click()
        page.get_by_text("deleted run sys-run").wait_for()
        assert not (home / "runs" / "sys-run").exists()
        assert product.store().list_runs(view="all") == []
        assert "Traceback" not in product.terminal()
