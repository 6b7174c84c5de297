"""UI benchmark: the time for the Compare page to render 20 runs x 10,000 steps in Chromium.

    python -m bench.ui [--out bench/results/ui.json]

It fills a fresh SQLite store (20 runs, 10,000 steps of train_loss, bytes_sent and epoch, an
evaluation every 50 steps), starts the UI on loopback, and times in headless Chromium until the
chart holds every run's curve: a shared link opened in a fresh browser profile (the slowest
case: the whole app's JavaScript loads cold), a click on Compare in the open app, and a metric
change; plus a chart-less page as the app's own baseline. Goal (issue 5): under 3 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench.harness import write_result
from db.store import Store
from ui.testing import CHROMIUM_ARGS, DRAWN, chromium, wait_until_serving

RUNS, STEPS = 20, 10_000


def _seed(store: Store) -> list[str]:
    ids = []
    for r in range(RUNS):
        run_id = f"bench-ui-{r:02d}"
        store.create_run(
            run_id,
            params={"optimizer.algorithm": "eamsgd" if r % 2 else "sync", "optimizer.tau": 1 + r},
            source="bench",
        )
        rows = []
        for s in range(STEPS):
            rows += [
                ("train_loss", s, s * 0.01, 2.0 / (1 + s * (1 + r) / 1000)),
                ("bytes_sent", s, s * 0.01, 250_000.0 * s / (1 + r)),
                ("epoch", s, s * 0.01, s / 125),
            ]
            if s % 50 == 0:
                rows.append(("center_accuracy", s, s * 0.01, 1 - 0.9 / (1 + s * (1 + r) / 5000)))
        for i in range(0, len(rows), 5000):
            store.log_metrics(run_id, rows[i : i + 5000])
        store.finish_run(run_id, "finished")
        ids.append(run_id)
    return ids


ALL_DRAWN = f'{DRAWN}[data-series="{RUNS}"]'

SCENARIOS = {
    "first visit": (
        "a fresh browser profile opens /compare?runs=<20 ids> (a shared link): from navigation "
        "until the chart holds all 20 runs and the app is idle"
    ),
    "in-app navigation": "with 20 runs selected, a click on Compare in the open app's sidebar",
    "metric change": "on the loaded page, train_loss added in the Metrics box (a second chart)",
    "baseline: first visit, no chart": (
        "the same fresh-profile visit to the Launch page, which draws no chart: what the "
        "Streamlit app itself costs before any of Compare's work"
    ),
}


def _idle(page) -> None:
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60000)


def _stats(times: list[float]) -> dict:
    return {
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "samples": len(times),
    }


def _measure(browser, base: str, ids: list[str], repeat: int) -> dict:
    """Each scenario once to warm the server's caches, then `repeat` timed samples."""
    link = f"{base}/compare?runs={','.join(ids)}"
    out: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    for i in range(repeat + 1):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(link)
        page.locator(ALL_DRAWN).wait_for(timeout=60000)
        _idle(page)
        first = time.perf_counter() - t0

        box = page.get_by_test_id("stMultiSelect").filter(has_text="Metrics")
        t0 = time.perf_counter()
        box.locator("input").click()
        page.get_by_role("option", name="train_loss", exact=True).click()
        page.locator(f'{ALL_DRAWN}[data-y="train_loss"]').wait_for(timeout=60000)
        _idle(page)
        metric = time.perf_counter() - t0
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Runs").click()
        page.get_by_role("heading", name="Runs").first.wait_for(timeout=60000)
        _idle(page)
        page.wait_for_timeout(300)
        t0 = time.perf_counter()
        page.get_by_test_id("stSidebarNavLink").filter(has_text="Compare").click()
        page.locator(ALL_DRAWN).wait_for(timeout=60000)
        _idle(page)
        in_app = time.perf_counter() - t0

        page.close()

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(f"{base}/launch")
        page.get_by_role("heading", name="Launch a training job").wait_for(timeout=60000)
        _idle(page)
        shell = time.perf_counter() - t0
        page.close()
        if i:
            for name, value in zip(SCENARIOS, (first, in_app, metric, shell), strict=True):
                out[name].append(value)
    return {name: _stats(times) for name, times in out.items()}


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(prog="python -m bench.ui")
    p.add_argument("--out", default="bench/results/ui.json")
    p.add_argument("--chromium", default=chromium())
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    home = tempfile.TemporaryDirectory()
    env = {**os.environ, "EASGD_HOME": home.name}
    env.pop("EASGD_DB_URL", None)
    os.environ["EASGD_HOME"] = home.name
    store = Store()
    store.init()
    ids = _seed(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen(  # served as `easgd up` serves it
        [sys.executable, "-m", "ui.server", "--server.address", "127.0.0.1"]
        + ["--server.port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until_serving([f"http://127.0.0.1:{port}/"], timeout=60):
            raise SystemExit(f"bench: the UI did not answer on port {port} within 60 s")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            timings = _measure(browser, f"http://127.0.0.1:{port}", ids, args.repeat)
            browser.close()
    finally:
        ui.terminate()
        ui.wait(timeout=20)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": RUNS,
        "steps_per_run": STEPS,
        "goal_s": 3.0,
        "what": SCENARIOS,
        "compare_render": timings,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
