"""The product in a real browser: headless Chromium against `easgd up` on loopback.

Launch a tiny 2-rank job from the form, see it finish on Jobs, select it with a second run on
Runs, open Compare, check the chart is drawn and no page shows a Streamlit exception.
Screenshots of each page go to test-artifacts/browser/.
"""

from __future__ import annotations

import re
import subprocess
import time

import httpx
import pytest

from tests.support import BIN, ROOT
from tests.ui.chromium import choose, chromium_browser, nav, new_page, tick_runs
from tests.ui.chromium import shot as _no_exception
from ui.navigation import PAGES
from ui.testing import DRAWN

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.horovod]


def test_launch_watch_compare_in_chromium(product):
    from playwright.sync_api import expect

    # A second run to compare with, submitted from the CLI while the browser works.
    second = subprocess.run(
        [
            str(BIN / "easgd"),
            "submit",
            "tests/training/tiny.yaml",
            "--set",
            "optimizer.algorithm=sync",
            "--name",
            "tiny-sync",
        ],
        capture_output=True,
        text=True,
        env=product.env,
        cwd=ROOT,
    )
    assert second.returncode == 0, second.stderr
    with chromium_browser() as browser:
        page = new_page(browser, product.ui)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        _no_exception(page, "1-runs-first-visit")

        nav(page, "Launch")
        expect(page.get_by_role("heading", name="Launch a training job")).to_be_visible()
        choose(page, "dataset", "digits")
        choose(page, "model", "mlp")
        name = page.get_by_label("run name", exact=True)
        name.fill("browser-eamsgd")
        name.press("Enter")
        epochs = page.get_by_label("epochs", exact=True)
        epochs.fill("2")
        epochs.press("Enter")
        page.wait_for_timeout(500)
        _no_exception(page, "2-launch-filled")
        page.get_by_role("button", name="Launch", exact=True).click()
        expect(page.get_by_text(re.compile(r"Job \d+ queued"))).to_be_visible()
        _no_exception(page, "3-launch-queued")

        nav(page, "Jobs")
        expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
        deadline = time.time() + 240
        while time.time() < deadline:
            jobs = httpx.get(f"{product.api}/jobs").json()
            if jobs and all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
                break
            time.sleep(1)
        assert sorted(j["status"] for j in jobs) == ["succeeded", "succeeded"], jobs
        page.wait_for_timeout(3000)  # the table refreshes itself every 2 s
        assert page.get_by_text("2 running").count() == 0
        expect(page.get_by_text(re.compile(r"0 running, 0 queued"))).to_be_visible()
        _no_exception(page, "4-jobs-finished")

        nav(page, "Runs")
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        page.get_by_test_id("stDataFrame").first.wait_for()
        page.wait_for_timeout(1000)
        ids = {}
        for name in ("browser-eamsgd", "tiny-sync"):
            (run,) = [r for r in httpx.get(f"{product.api}/runs").json() if r["name"] == name]
            ids[name] = run["id"]
        tick_runs(page, *ids.values())
        expect(page.get_by_role("button", name="Compare selected (2)")).to_be_enabled()
        _no_exception(page, "5-runs-selected")
        page.get_by_role("button", name="Compare selected").click()
        expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
        _check_chart(page, series=2)
        expect(page.get_by_text("Final and best")).to_be_visible()
        _no_exception(page, "6-compare")

        nav(page, "Run")
        expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()
        # accuracy, loss, spread, bytes sent; and, on the System tab, the ranks' CPU and memory
        expect(page.locator(DRAWN)).to_have_count(6)
        _no_exception(page, "7-run")

        # A shared link opens the same page inside the app, in a browser that has never seen it.
        ids = [r["id"] for r in httpx.get(f"{product.api}/runs").json()]
        shared = new_page(browser, f"{product.ui}/compare?runs={','.join(ids)}")
        expect(shared.get_by_role("heading", name="Compare runs")).to_be_visible()
        _check_chart(shared, series=2)
        links = shared.get_by_test_id("stSidebarNavLink")
        titles = [text.split()[-1] for text in links.all_inner_texts()]  # after the icon's name
        assert titles == [p.title for p in PAGES] and titles[0] == "Runs"
        _no_exception(shared, "8-compare-shared-link")


def _check_chart(page, series: int) -> None:
    """The chart is drawn with one line per run, and hovering shows each run's value."""
    from playwright.sync_api import expect

    chart = page.locator(DRAWN).first
    expect(chart).to_be_visible()
    assert chart.get_attribute("data-series") == str(series)
    chart.scroll_into_view_if_needed()  # below "Did it pay off?"
    box = chart.locator(".u-over").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 200
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    values = chart.locator(".u-legend .u-series .u-value")
    expect(values).to_have_count(series + 1)  # the x value, then one per run
    expect(values.nth(1)).to_have_text(re.compile(r"\d"))
    expect(values.nth(series)).to_have_text(re.compile(r"\d"))
