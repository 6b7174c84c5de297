"""What the browser tests share: `easgd up` on loopback from an EASGD_HOME the test may seed,
Chromium pages on it, and reading what the pages drew on canvas (uPlot's axes, the tables'
cells), which has no text in the DOM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db.store import Store
from tests.support import BIN, QUIET_TF, ROOT, free_port
from ui.testing import CHROMIUM_ARGS, DRAWN, chromium, wait_until_serving

CHROMIUM = chromium()
SHOTS = ROOT / "test-artifacts" / "browser"
WIDTH, HEIGHT = 1400, 1000

# Installed in every page before its own scripts: each canvas keeps the texts drawn on it since
# it was last cleared whole (uPlot clears before each draw), and the page keeps every text any
# canvas ever drew (the tables draw through off-screen buffers).
CANVAS_TEXTS = """
(() => {
  const since = new WeakMap();
  const ever = [];
  window.__canvasTexts = (canvas) => (since.get(canvas) || []).map((t) => ({ ...t }));
  window.__everDrawn = () => ever.slice();
  const proto = CanvasRenderingContext2D.prototype;
  const fillText = proto.fillText;
  proto.fillText = function (text, x, y, ...rest) {
    const list = since.get(this.canvas) || [];
    list.push({ text: String(text), align: this.textAlign });
    since.set(this.canvas, list);
    ever.push(String(text));
    return fillText.call(this, text, x, y, ...rest);
  };
  const clearRect = proto.clearRect;
  proto.clearRect = function (x, y, w, h) {
    if (x <= 0 && y <= 0 && w >= this.canvas.width && h >= this.canvas.height) {
      since.set(this.canvas, []);
    }
    return clearRect.call(this, x, y, w, h);
  };
})();
"""


@dataclass
class Product:
    """The product as `easgd up` serves it: its URLs, environment, home and terminal output."""

    ui: str
    api: str
    env: dict[str, str]
    home: Path
    output: Path

    def store(self) -> Store:
        return Store(f"sqlite:///{self.home / 'easgd.db'}")

    def terminal(self) -> str:
        return self.output.read_text(errors="replace")

    def easgd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "easgd"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=120,
        )


def store_in(home: Path) -> Store:
    """The store `easgd up` will open in `home`, created now, for a test to seed first."""
    home.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{home / 'easgd.db'}")
    store.init()
    return store


@contextmanager
def served(home: Path, slots: int = 2) -> Iterator[Product]:
    """`easgd up` with its own EASGD_HOME, its terminal output kept in a file beside it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium")
    api, ui = free_port(), free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **QUIET_TF, "EASGD_HOME": str(home)}
    env.pop("EASGD_DB_URL", None)
    output = home / "easgd-up.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "easgd"), "up", "--port", str(api), "--ui-port", str(ui)]
            + ["--slots", str(slots)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if not wait_until_serving(
            [f"http://127.0.0.1:{ui}/", f"http://127.0.0.1:{api}/health"], timeout=90
        ):
            raise AssertionError("easgd up did not start: " + output.read_text())
        yield Product(
            ui=f"http://127.0.0.1:{ui}",
            api=f"http://127.0.0.1:{api}",
            env={**env, "EASGD_API_URL": f"http://127.0.0.1:{api}"},
            home=home,
            output=output,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


_shared: dict[str, Any] = {}


def _chromium():
    """The one Chromium the tests share: Playwright's sync API runs one instance per thread,
    so tests that each started their own failed once another's was still open."""
    browser = _shared.get("browser")
    if browser is None or not browser.is_connected():
        from playwright.sync_api import expect, sync_playwright

        # A page's assertions wait as long as its actions (new_page): 5 s, Playwright's
        # default, is short for a Streamlit rerun while the other test worker trains.
        expect.set_options(timeout=30_000)
        _shared["playwright"] = playwright = sync_playwright().start()
        _shared["browser"] = browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
    return browser


def stop_chromium() -> None:
    if (browser := _shared.pop("browser", None)) is not None:
        browser.close()
    if (playwright := _shared.pop("playwright", None)) is not None:
        playwright.stop()


@contextmanager
def chromium_browser() -> Iterator:
    """A browser of its own (cookies, sessions, downloads) on the shared Chromium, at the size
    the tests use; closed on leaving."""
    context = _chromium().new_context(
        viewport={"width": WIDTH, "height": HEIGHT}, accept_downloads=True
    )
    try:
        yield context
    finally:
        context.close()


def new_page(browser, url: str | None = None):
    """A page of `browser` (from chromium_browser) that records canvas texts, opened at `url`."""
    page = browser.new_page()
    page.set_default_timeout(30000)
    page.add_init_script(CANVAS_TEXTS)
    if url:
        page.goto(url)
    return page


def shot(page, name: str) -> None:
    """A screenshot under test-artifacts/browser/ named for what it shows; no page may show a
    Streamlit exception."""
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, name


def nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNavLink").filter(has_text=re.compile(rf"{title}$")).click()


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the select box labelled `label` (brought into view first: its list,
    opened while the page scrolls to it, closes again)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(400)


def chart(page, y_label: str | None = None):
    """A drawn curves chart (the one of `y_label`, else the first)."""
    return page.locator(f'{DRAWN}[data-y="{y_label}"]') if y_label else page.locator(DRAWN).first


def compare_page(browser, product: Product, query: str):
    """Compare at /compare?`query`, its first chart drawn."""
    page = new_page(browser, f"{product.ui}/compare?{query}")
    chart(page).wait_for()
    return page


def y_ticks(chart_root) -> list[str]:
    """The y axis's tick labels as the chart last drew them (uPlot right-aligns those)."""
    texts = chart_root.evaluate("el => window.__canvasTexts(el.querySelector('canvas'))")
    return [t["text"] for t in texts if t["align"] == "right"]


def canvas_texts(chart_root) -> list[str]:
    return [
        t["text"]
        for t in chart_root.evaluate("el => window.__canvasTexts(el.querySelector('canvas'))")
    ]


def ever_drawn(page) -> list[str]:
    return page.evaluate("() => window.__everDrawn()")


def legend(chart_root) -> list[str]:
    """The hover legend: the x value, then one value per run."""
    return chart_root.locator(".u-legend .u-series .u-value").all_inner_texts()


def table_headers(page, index: int = 0) -> list[str]:
    """The column headers a table shows in its visible width (the grid's accessible copy)."""
    grid = page.get_by_test_id("stDataFrame").nth(index)
    return grid.locator("[role=columnheader]").all_inner_texts()


# The height of a table's header and of each of its rows, in pixels (Streamlit's default).
ROW_HEIGHT = 35


def settled(page) -> None:
    """Until the app has finished its rerun (Streamlit's running indicator is gone): on a loaded
    machine a rerun outlasts the fixed pauses, and a click during one lands on a table being
    redrawn."""
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60000)


def tick_runs(page, *run_ids: str) -> None:
    """Tick these runs' boxes in the Runs table (the first table), as a person clicks them: the
    grid draws on a canvas, so the row of each run is found in the grid's accessible copy and
    its tick box clicked where the canvas draws it."""
    grid = page.get_by_test_id("stDataFrame").first
    grid.wait_for()
    for run_id in run_ids:
        settled(page)
        box = grid.bounding_box()
        row = grid.locator("[role=row]").filter(
            has=page.locator("[role=gridcell]", has_text=re.compile(rf"^{run_id}$"))
        )
        index = int(row.first.get_attribute("aria-rowindex"))  # 1 is the header
        page.mouse.click(box["x"] + 18, box["y"] + ROW_HEIGHT * (index - 1) + ROW_HEIGHT / 2)
        page.wait_for_timeout(1200)  # each tick reruns the page
    settled(page)


def pick_metrics(page, *metrics: str) -> None:
    """Show exactly these metrics on Compare: the others' tags removed from the Metrics box,
    the missing ones typed in."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text="Metrics")
    shown = [
        t.split(",")[0]
        for t in box.locator('[data-baseweb="tag"]').evaluate_all(
            "tags => tags.map(t => t.getAttribute('aria-label'))"
        )
    ]
    for metric in metrics:
        if metric not in shown:
            box.locator("input").click()
            page.keyboard.type(metric, delay=20)
            page.keyboard.press("Enter")
            page.wait_for_timeout(800)
            page.keyboard.press("Escape")
    for metric in shown:
        if metric not in metrics:
            box.locator(f'[data-baseweb="tag"][aria-label^="{metric},"] svg').click()
            page.wait_for_timeout(800)
    page.wait_for_timeout(400)
    # Under load one tag's rerun can outlast the pauses: until the page holds just these.
    settled(page)
