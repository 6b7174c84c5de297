"""In Chromium, through `easgd up`: the Run page's System tab draws each rank's curves, and a
deletion asks in a dialog before it removes the run and its directory."""

from __future__ import annotations

import pytest

from db.store import Store
from tests.ui.chromium import chart, chromium_browser, new_page, served, shot, store_in

pytestmark = [pytest.mark.browser, pytest.mark.service]


def _seed(store: Store, home) -> None:
    run_dir = home / "runs" / "sys-run"
    (run_dir / "checkpoints").mkdir(parents=True)
    store.create_run(
        "sys-run", name="sys-run", params={"optimizer.algorithm": "eamsgd"}, workers=2,
        total_steps=20, run_dir=str(run_dir),
    )  # fmt: skip
    rows = []
    for step in (0, 10, 20):
        rows.append(("center_accuracy", step, step / 2, 0.5 + step / 100))
        for rank in (0, 1):
            rows.append((f"system/rank_{rank}/cpu_percent", step, step / 2, 90.0 + rank))
            rows.append((f"system/rank_{rank}/memory_mb", step, step / 2, 700.0 + 10 * rank))
    store.log_metrics("sys-run", rows)
    store.finish_run("sys-run", "finished")


def test_system_curves_and_a_deletion_that_asks_first(tmp_path):
    home = tmp_path / "home"
    store = store_in(home)
    _seed(store, home)
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
