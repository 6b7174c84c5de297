"""Parallel coordinates stay readable with 15 axes, in headless Chromium: three runs that differ in
14 parameters (the metric is the 15th axis). The axes are named by their key's last part, the
whole key on hover, and tilted; tilted names lie on parallel lines at least a line of text
apart, and none reaches past the chart."""

from __future__ import annotations

import pytest

from tests.ui.chromium import SHOTS, chart, chromium_browser, new_page, served, shot, store_in

pytestmark = [pytest.mark.browser, pytest.mark.service]

# 14 parameters the runs do not share, none of them implied by the algorithm (all three EASGD).
VARIED = {
    "optimizer.learning_rate": (0.01, 0.02, 0.05),
    "optimizer.tau": (2, 4, 8),
    "optimizer.warmup_steps": (0, 10, 20),
    "optimizer.beta": (0.5, 0.7, 0.9),
    "optimizer.lr_scaling": ("none", "linear", "sqrt"),
    "optimizer.order": ("simultaneous", "round_robin", "simultaneous"),
    "optimizer.compression": ("none", "float16", "int8"),
    "data.batch_size": (16, 32, 64),
    "data.split_seed": (0, 1, 2),
    "model.width": (8, 16, 32),
    "training.eval_every": (10, 20, 50),
    "checkpoint.keep": (1, 2, 3),
    "resources.max_restarts": (0, 1, 3),
    "seed": (1, 2, 3),
}


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    home = tmp_path_factory.mktemp("axes") / "home"
    store = store_in(home)
    for i in range(3):
        params = {"optimizer.algorithm": "easgd", "optimizer.inner": "sgd"}
        params |= {key: values[i] for key, values in VARIED.items()}
        run = f"axes-{i}"
        store.create_run(run, name="crowded", params=params, workers=2, total_steps=10)
        store.log_metrics(
            run, [("center_accuracy", s, s * 0.5, 0.5 + 0.01 * i * s) for s in (0, 10)]
        )
        store.finish_run(run, "finished")
    store.dispose()
    with served(home) as product, chromium_browser() as browser:
        yield product, browser


def test_fifteen_axes_are_named_tilted_and_apart(crowded):
    product, browser = crowded
    page = new_page(browser, f"{product.ui}/compare?runs=axes-0,axes-1,axes-2")
    chart(page, "center_accuracy").wait_for()
    parallel = page.locator('.easgd-parallel[data-drawn="1"]')
    parallel.scroll_into_view_if_needed()
    parallel.wait_for()
    assert parallel.get_attribute("data-axes") == "15"
    assert parallel.get_attribute("data-tilted") == "1"
    named = parallel.locator("svg g.axis-label")
    keys = named.locator("title").all_text_contents()
    assert sorted(keys[:-1]) == sorted(VARIED) and keys[-1] == "center_accuracy"
    names = named.locator("text").all_text_contents()
    assert names == [k.rsplit(".", 1)[-1] for k in keys]
    geometry = parallel.evaluate(
        """root => {
          const svg = root.querySelector("svg").getBoundingClientRect();
          const texts = [...root.querySelectorAll("g.axis-label text")];
          return {
            xs: texts.map((t) => Number(t.getAttribute("x"))),
            boxes: texts.map((t) => {
              const r = t.getBoundingClientRect();
              return [r.left - svg.left, r.top - svg.top, r.right - svg.left, r.bottom - svg.top];
            }),
            width: svg.width,
          };
        }"""
    )
    xs = geometry["xs"]
    # Names at 30 degrees lie on parallel lines step * sin(30) apart: more than 12 px of text.
    step = min(b - a for a, b in zip(xs, xs[1:]))
    assert step * 0.5 >= 14, step
    for left, top, right, _ in geometry["boxes"]:
        assert top >= 0 and left >= 0 and right <= geometry["width"] + 1, geometry["boxes"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    parallel.screenshot(path=str(SHOTS / "compare-parallel-15-axes.png"))
    shot(page, "compare-15-parameters")
