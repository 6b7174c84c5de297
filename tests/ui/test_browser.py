"""The product in a real browser: headless Chromium against `easgd up` on loopback.

Launch a tiny 2-rank job from the form, see it finish on Jobs, select it with a second run on
Runs, open Compare, check the chart is drawn and no page shows a Streamlit exception.
Screenshots of each page go to test-artifacts/browser/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import BIN, QUIET_TF, ROOT, free_port
from ui.testing import CHROMIUM_ARGS, DRAWN, chromium, wait_until_serving

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.horovod]
CHROMIUM = chromium()
SHOTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture
def product(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium")
    api, ui = free_port(), free_port()
    home = tmp_path / "home"
    env = {**os.environ, **QUIET_TF, "EASGD_HOME": str(home)}
    env.pop("EASGD_DB_URL", None)
    proc = subprocess.Popen(
        [str(BIN / "easgd"), "up", "--port", str(api), "--ui-port", str(ui), "--slots", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if not wait_until_serving(
        [f"http://127.0.0.1:{ui}/", f"http://127.0.0.1:{api}/health"], timeout=90
    ):
        proc.kill()
        raise AssertionError("easgd up did not start: " + (proc.stdout.read() or ""))
    yield {
        "ui": f"http://127.0.0.1:{ui}",
        "api": f"http://127.0.0.1:{api}",
        "env": {**env, "EASGD_API_URL": f"http://127.0.0.1:{api}"},
    }
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _no_exception(page, name: str) -> None:
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, name


def _nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNavLink").filter(has_text=re.compile(rf"{title}$")).click()


def _choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(400)


def test_launch_watch_compare_in_chromium(product):
    from playwright.sync_api import expect, sync_playwright

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
        env=product["env"],
        cwd=ROOT,
    )
    assert second.returncode == 0, second.stderr
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30000)
        page.goto(product["ui"])
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        _no_exception(page, "1-runs-first-visit")

        _nav(page, "Launch")
        expect(page.get_by_role("heading", name="Launch a training job")).to_be_visible()
        _choose(page, "dataset", "digits")
        _choose(page, "model", "mlp")
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

        _nav(page, "Jobs")
        expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
        deadline = time.time() + 240
        while time.time() < deadline:
            jobs = httpx.get(f"{product['api']}/jobs").json()
            if jobs and all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
                break
            time.sleep(1)
        assert sorted(j["status"] for j in jobs) == ["succeeded", "succeeded"], jobs
        page.wait_for_timeout(3000)  # the table refreshes itself every 2 s
        assert page.get_by_text("2 running").count() == 0
        expect(page.get_by_text(re.compile(r"0 running, 0 queued"))).to_be_visible()
        _no_exception(page, "4-jobs-finished")

        _nav(page, "Runs")
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        picker = page.get_by_test_id("stMultiSelect").filter(has_text="Runs to compare")
        for label in ("browser-eamsgd", "tiny-sync"):
            picker.locator("input").click()
            page.wait_for_timeout(300)
            page.keyboard.type(label, delay=30)
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / f"5-picking-{label}.png"))
            page.keyboard.press("Enter")
            page.wait_for_timeout(1500)  # the app reruns with the new selection
            page.keyboard.press("Escape")
        expect(picker.get_by_text("browser-eamsgd")).to_be_visible()
        expect(picker.get_by_text("tiny-sync")).to_be_visible()
        _no_exception(page, "5-runs-selected")
        page.get_by_role("button", name="Compare selected").click()
        expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
        _check_chart(page, series=2)
        expect(page.get_by_text("Final and best")).to_be_visible()
        _no_exception(page, "6-compare")

        _nav(page, "Run")
        expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()
        expect(page.locator(DRAWN)).to_have_count(4)  # accuracy, loss, spread, bytes sent
        _no_exception(page, "7-run")

        # A shared link opens the same page inside the app, in a browser that has never seen it.
        ids = [r["id"] for r in httpx.get(f"{product['api']}/runs").json()]
        shared = browser.new_page(viewport={"width": 1400, "height": 1000})
        shared.set_default_timeout(30000)
        shared.goto(f"{product['ui']}/compare?runs={','.join(ids)}")
        expect(shared.get_by_role("heading", name="Compare runs")).to_be_visible()
        _check_chart(shared, series=2)
        nav = shared.get_by_test_id("stSidebarNavLink")
        titles = [text.split()[-1] for text in nav.all_inner_texts()]  # after the icon's name
        assert titles == ["Runs", "Launch", "Jobs", "Compare", "Run"]
        _no_exception(shared, "8-compare-shared-link")
        browser.close()


def _check_chart(page, series: int) -> None:
    """The chart is drawn with one line per run, and hovering shows each run's value."""
    from playwright.sync_api import expect

    chart = page.locator(DRAWN).first
    expect(chart).to_be_visible()
    assert chart.get_attribute("data-series") == str(series)
    box = chart.locator(".u-over").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 200
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    values = chart.locator(".u-legend .u-series .u-value")
    expect(values).to_have_count(series + 1)  # the x value, then one per run
    expect(values.nth(1)).to_have_text(re.compile(r"\d"))
    expect(values.nth(series)).to_have_text(re.compile(r"\d"))
