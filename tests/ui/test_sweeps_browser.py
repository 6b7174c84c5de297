"""The Sweeps page in headless Chromium against `easgd up`: a small real sweep (3 one-rank trials
on digits) runs through the service; its page draws the parallel coordinates and the best-so-far
curve; a second sweep is stopped from the page. Screenshot: test-artifacts/browser/sweeps.png."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml

from tests.ui.chromium import Product, chromium_browser, new_page, shot
from ui.testing import DRAWN

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.horovod]

BASE = {
    "data": {"dataset": "digits", "batch_size": 32},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"algorithm": "easgd"},
    "training": {"epochs": 2, "eval_every": 10},
    "checkpoint": {"every": None},
    "resources": {"workers": 1},
}


def _sweep(product: Product, tmp_path, name: str, run_cap: int, epochs: float) -> int:
    spec = {
        "name": name,
        "method": "random",
        "metric": {"name": "center_accuracy", "goal": "maximize"},
        "parameters": {
            "optimizer.learning_rate": {
                "distribution": "log_uniform_values",
                "min": 0.001,
                "max": 0.5,
            },
            "optimizer.tau": {"values": [1, 4]},
        },
        "run_cap": run_cap,
        "concurrency": 2,
        "seed": 1,
        "base": {**BASE, "training": {"epochs": epochs, "eval_every": 10}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = product.easgd("sweep", "create", str(path))
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def _sweep_state(api: str, sweep_id: int) -> dict:
    return httpx.get(f"{api}/sweeps/{sweep_id}", timeout=30).json()


def _wait(api: str, sweep_id: int, done, timeout: float = 400) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sweep = _sweep_state(api, sweep_id)
        if done(sweep):
            return sweep
        time.sleep(1)
    raise AssertionError(f"sweep {sweep_id}: {sweep['status']}, {sweep['trials']}")


def test_the_sweeps_page_draws_the_trials_and_stops_a_sweep(product, tmp_path):
    from playwright.sync_api import expect

    api = product.api
    small = _sweep(product, tmp_path, "browser-sweep", 3, 2)
    finished = _wait(api, small, lambda s: s["status"] != "running")
    assert finished["status"] == "finished", finished
    with_metric = [t for t in finished["trials"] if t["value"] is not None]
    assert len(with_metric) == 3, finished["trials"]
    long = _sweep(product, tmp_path, "browser-long", 8, 500)
    _wait(api, long, lambda s: any(t["state"] == "running" for t in s["trials"]))

    with chromium_browser() as browser:
        page = new_page(browser, f"{product.ui}/sweeps?sweep={small}")
        expect(page.get_by_role("heading", name="Sweeps", exact=True)).to_be_visible()
        parallel = page.locator('.easgd-parallel[data-drawn="1"]')
        expect(parallel).to_be_visible()
        assert parallel.get_attribute("data-lines") == "3"
        assert parallel.get_attribute("data-axes") == "3"  # learning rate, tau, the metric
        expect(parallel.locator("polyline.trial")).to_have_count(3)
        box = parallel.locator("svg").bounding_box()
        assert box and box["width"] > 600 and box["height"] > 300
        expect(page.locator(DRAWN)).to_have_count(1)  # the best so far
        best = finished["trials"][finished["best_trial"]]
        expect(page.get_by_text(f"Best: trial {best['number']}", exact=True)).to_be_visible()
        shot(page, "sweeps")

        page.goto(f"{product.ui}/sweeps?sweep={long}")
        stop = page.get_by_role("button", name="Stop sweep")
        expect(stop).to_be_visible()
        stop.click()
        stopped = _wait(api, long, lambda s: s["status"] != "running", timeout=120)
        assert stopped["status"] == "stopped" and len(stopped["trials"]) < 8
        assert {t["state"] for t in stopped["trials"]} <= {"cancelled", "succeeded"}
        page.wait_for_timeout(2500)  # the page redraws itself every 2 s while it runs
        shot(page, "sweeps-stopped")
