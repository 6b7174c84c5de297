"""Runs, Compare and Run in headless Chromium, on runs written beforehand
(tests/ui/seeded_runs.py): the address that keeps each view, the CSV download just after a
change, the runs table at 1,400 px, and the parameters compared.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.ui.chromium import (
    chart,
    choose,
    compare_page,
    ever_drawn,
    nav,
    new_page,
    pick_metrics,
    shot,
    table_headers,
    tick_runs,
)
from tests.ui.seeded_runs import BYTES_PER_STEP, accuracy, loss

pytestmark = [pytest.mark.browser, pytest.mark.service]


def _address(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_each_view_lives_in_its_address(seeded_browser, seeded):
    from playwright.sync_api import expect

    page = new_page(seeded_browser, seeded.ui)
    tick_runs(page, "cmp-sync", "cmp-easgd")
    assert _address(page) == {"selected": "cmp-sync,cmp-easgd"}
    page.get_by_role("button", name="Compare selected (2)").click()
    expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
    chart(page).wait_for()
    page.wait_for_timeout(1000)
    assert urlparse(page.url).path == "/compare"
    assert _address(page)["runs"] == "cmp-sync,cmp-easgd"

    pick_metrics(page, "train_loss")
    choose(page, "X axis", "Bytes sent per rank")
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(5):
        slider.press("ArrowRight")
        page.wait_for_timeout(600)  # each step reruns the page
    page.get_by_text("Log scale").click()
    page.wait_for_timeout(1000)
    runs = page.get_by_test_id("stMultiSelect").filter(has_text="Runs")
    runs.locator("input").click()
    page.keyboard.type("tiny-loss", delay=20)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_timeout(1500)
    assert _address(page) == {
        "runs": "cmp-sync,cmp-easgd,cmp-tiny",
        "metric": "train_loss",
        "x": "bytes_sent",
        "smoothing": "0.05",
        "log": "1",
    }
    shot(page, "compare-view-from-its-address")

    # The address alone, in a page that never saw the session, shows the same view.
    fresh = new_page(seeded_browser, page.url)
    root = chart(fresh, "train_loss")
    root.wait_for()
    assert root.get_attribute("data-series") == "3"
    metrics = fresh.get_by_test_id("stMultiSelect").filter(has_text="Metrics")
    metrics.locator('[data-baseweb="tag"]').first.wait_for()  # drawn after the chart, at times
    assert metrics.locator('[data-baseweb="tag"]').all_inner_texts() == ["train_loss"]
    assert fresh.get_by_role("combobox", name="X axis").input_value() == "Bytes sent per rank"
    assert fresh.get_by_test_id("stSliderThumbValue").inner_text() == "0.05"
    assert fresh.get_by_role("switch", name="Log scale").is_checked()

    # Runs -> one run ticked, "Open selected run" opens /run?run=...; choosing another run
    # changes the address.
    nav(page, "Runs")
    page.get_by_test_id("stDataFrame").first.wait_for()
    page.wait_for_timeout(1000)
    # The runs compared last are ticked on coming back; untick one to open the other.
    assert set(_address(page)["selected"].split(",")) == {"cmp-sync", "cmp-easgd", "cmp-tiny"}
    tick_runs(page, "cmp-sync", "cmp-tiny")
    assert _address(page) == {"selected": "cmp-easgd"}
    page.get_by_role("button", name="Open selected run").click()
    expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()
    page.wait_for_timeout(1000)
    assert urlparse(page.url).path == "/run" and _address(page) == {"run": "cmp-easgd"}
    choose(page, "Run", "cmp-sync (sync-run)")
    page.wait_for_timeout(1000)
    assert _address(page) == {"run": "cmp-sync"}
    again = new_page(seeded_browser, page.url)
    expect(again.get_by_role("combobox", name="Run")).to_have_value("cmp-sync (sync-run)")
    chart(again, "train_loss").wait_for()
    shot(again, "run-page-from-its-address")


def test_csv_download_right_after_a_change_has_the_new_curves(seeded_browser, seeded):
    page = compare_page(seeded_browser, seeded, "runs=cmp-easgd,cmp-sync")
    button = page.get_by_role("button", name="Download these curves (CSV)")
    log = page.get_by_text("Log scale")
    # Each change reruns the page; the download is pressed at once, while it may still run.
    changes = [
        (lambda: pick_metrics(page, "train_loss"), ("train_loss", "step")),
        (log.click, ("train_loss", "step")),
        (lambda: choose(page, "X axis", "Bytes sent per rank"), ("train_loss", "bytes_sent")),
        (log.click, ("train_loss", "bytes_sent")),
        (lambda: pick_metrics(page, "center_accuracy"), ("center_accuracy", "bytes_sent")),
    ] + [(log.click, ("center_accuracy", "bytes_sent"))] * 6
    for change, view in changes:
        change()
        with page.expect_download(timeout=20000) as download:
            button.click()
        rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
        assert rows and set(rows[0]) == {"metric", "run", "run_id", "step", "x", "value", "raw"}
        metric, x_axis = re.fullmatch(
            r"compare-(\w+)-vs-(\w+)\.csv", download.value.suggested_filename
        ).groups()
        assert (metric, x_axis) == view
        for row in rows:
            assert row["metric"] == metric
            run, step = row["run_id"], float(row["step"])
            made = loss(run, step) if metric == "train_loss" else accuracy(run, step)
            assert float(row["raw"]) == pytest.approx(made)
            per_step = BYTES_PER_STEP[run] if x_axis == "bytes_sent" else 1.0
            assert float(row["x"]) == pytest.approx(step * per_step)
    assert "Deferred file" not in seeded.terminal()


def test_runs_table_at_1400_px(seeded_browser, seeded):
    from playwright.sync_api import expect

    page = new_page(seeded_browser, seeded.ui)
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.get_by_test_id("stDataFrame").first.wait_for()
    page.wait_for_timeout(1500)
    headers = table_headers(page)
    # The key metrics are in view, before how the runs ran and their parameters.
    assert headers[:6] == ["run", "name", "status", "center_accuracy", "train_loss", "bytes_sent"]
    drawn = ever_drawn(page)
    assert "1.3e-7" in drawn and "0.0000" not in drawn
    assert "7.5MB" in drawn  # bytes in the units the charts use
    assert "None" not in drawn  # an empty cell shows a dash
    shot(page, "runs-table")
    # Scrolled all the way right, the run column stays.
    grid = page.get_by_test_id("stDataFrame").first
    grid.hover()
    for _ in range(10):
        page.mouse.wheel(2000, 0)
    page.wait_for_timeout(800)
    after = table_headers(page)
    assert after[0] == "run" and after[-1] != headers[-1], after
    shot(page, "runs-table-scrolled-right")
    page.get_by_label("Filter", exact=True).fill("params.optimizer.algorithm = 'sync'")
    page.keyboard.press("Enter")
    expect(page.get_by_text("1 run;", exact=False)).to_be_visible()
    assert page.get_by_text("1 runs").count() == 0


def test_parameters_that_differ_are_those_each_algorithm_uses(seeded_browser, seeded):
    from playwright.sync_api import expect

    page = compare_page(seeded_browser, seeded, "runs=cmp-easgd,cmp-sync")
    page.get_by_text("Parameters that differ").wait_for()
    # After "Did it pay off?" and "Final and best".
    grid = page.get_by_test_id("stDataFrame").nth(2).locator("[role=gridcell]")
    expect(grid.filter(has_text="optimizer.tau")).to_have_count(1)
    cells = grid.all_inner_texts()
    rows = {cells[i]: cells[i + 1 : i + 3] for i in range(0, len(cells), 3)}
    assert rows["optimizer.algorithm"] == ["easgd", "sync"], rows
    # easgd's tau, and none for sync, which never used the tau it was recorded with.
    assert rows["optimizer.tau"][0] == "4" and rows["optimizer.tau"][1] in ("", "-"), rows
    shot(page, "compare-parameters-that-differ")
