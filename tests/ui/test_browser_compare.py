"""Compare as W&B and MLflow users expect it, in headless Chromium: several metrics at once
with one cursor, runs grouped by a parameter with a mean and a band over seeds, the parameters
against a final metric, and runs ticked in the Runs table itself.

The runs are written beforehand with formulas, two algorithms by three seeds, and a fourth
easgd seed evaluated at other steps that stopped early, so every value a page shows is checked
against the formula and the definition of a mean and a sample standard deviation (over the runs
that have a value at that step, each on the straight line between its points), not against the
page's own code.
"""

from __future__ import annotations

import math
import re
import statistics
from urllib.parse import parse_qs, urlparse

import pytest

from tests.ui.chromium import (
    SHOTS,
    chart,
    choose,
    chromium_browser,
    legend,
    new_page,
    served,
    shot,
    store_in,
    tick_runs,
)

pytestmark = [pytest.mark.browser, pytest.mark.service]

SEEDS = (1, 2, 3)
RATES = {"easgd": 30.0, "sync": 22.0}
# The fourth easgd seed: evaluated at steps 5, 15, ..., 45, then stopped.
LATE, LATE_STEPS = 4, range(5, 50, 10)
# The others: evaluated at steps 0, 10, ..., 100.
STEPS = range(0, 101, 10)
IDS = [f"grp-{a}-s{s}" for a in RATES for s in SEEDS] + [f"grp-easgd-s{LATE}"]


def accuracy(algorithm: str, seed: int, step: float) -> float:
    return 0.6 + 0.35 * (1 - math.exp(-step / RATES[algorithm])) + 0.01 * seed


def loss(algorithm: str, seed: int, step: float) -> float:
    return 2.0 * math.exp(-step / RATES[algorithm]) + 0.05 * seed * seed


FORMULAS = {"center_accuracy": accuracy, "train_loss": loss}


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    home = tmp_path_factory.mktemp("grouped") / "home"
    store = store_in(home)
    for algorithm in RATES:
        for seed in SEEDS:
            run = f"grp-{algorithm}-s{seed}"
            params = {"optimizer.algorithm": algorithm, "optimizer.learning_rate": 0.05}
            params |= {"seed": seed} | ({"optimizer.tau": 4} if algorithm == "easgd" else {})
            store.create_run(run, name=run, params=params, workers=2, total_steps=100)
            rows = []
            for step in STEPS:
                for key, formula in FORMULAS.items():
                    rows.append((key, step, step * 0.4, formula(algorithm, seed, step)))
            store.log_metrics(run, rows)
            store.finish_run(run, "finished")
    run = f"grp-easgd-s{LATE}"
    params = {"optimizer.algorithm": "easgd", "optimizer.learning_rate": 0.05, "seed": LATE}
    store.create_run(run, name=run, params={**params, "optimizer.tau": 4}, total_steps=100)
    rows = [
        (k, step, step * 0.4, f("easgd", LATE, step))
        for step in LATE_STEPS
        for k, f in FORMULAS.items()
    ]
    store.log_metrics(run, rows)
    store.finish_run(run, "failed")
    store.dispose()
    with served(home) as product, chromium_browser() as browser:
        yield product, browser


def _address(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text.replace(",", ""))]


def _hover(page, root, fraction: float) -> None:
    root.scroll_into_view_if_needed()
    box = root.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    page.wait_for_timeout(400)


def _on_line(metric: str, algorithm: str, seed: int, step: float, points: range) -> float | None:
    """A run recorded at `points` seen at `step`: its value there, else on the straight line
    between its two points around `step`; none outside them."""
    f = FORMULAS[metric]
    if not points[0] <= step <= points[-1]:
        return None
    below = max(s for s in points if s <= step)
    if below == step:
        return f(algorithm, seed, step)
    above = below + points.step
    t = (step - below) / (above - below)
    return f(algorithm, seed, below) + t * (f(algorithm, seed, above) - f(algorithm, seed, below))


def _expected(metric: str, algorithm: str, step: float, band: str) -> list[float]:
    """The legend's figures for a group at `step`: its mean, its band, and, where not all its
    runs have a value there, how many do and of how many."""
    values = [_on_line(metric, algorithm, s, step, STEPS) for s in SEEDS]
    size = len(SEEDS)
    if algorithm == "easgd":
        size += 1
        late = _on_line(metric, "easgd", LATE, step, LATE_STEPS)
        values += [] if late is None else [late]
    mean = statistics.mean(values)
    some = [] if len(values) == size else [len(values), size]
    if band == "std":
        spread = statistics.stdev(values)  # the sample standard deviation, n - 1
        return [mean, mean - spread, mean + spread, *some]
    return [mean, min(values), max(values), *some]


def test_several_metrics_share_one_cursor_and_groups_draw_a_mean_and_a_band(grouped):
    product, browser = grouped
    query = f"runs={','.join(IDS)}&metric=center_accuracy,train_loss&group=optimizer.algorithm"
    seen_partial = False
    page = new_page(browser, f"{product.ui}/compare?{query}")
    grid = page.locator('.easgd-curve-grid[data-charts="2"]')
    grid.wait_for()
    roots = {m: chart(page, m) for m in FORMULAS}
    for root in roots.values():
        root.wait_for()
        assert root.get_attribute("data-series") == "2"  # one mean curve per algorithm
        assert root.get_attribute("data-bands") == "2"
    for band, label in (("std", None), ("minmax", "Min to max")):
        if label:
            choose(page, "Band", label)
            page.wait_for_timeout(1500)
            assert _address(page)["band"] == band
            roots = {m: chart(page, m) for m in FORMULAS}
        # Steps where the early-stopped seed has a value, where it is between two of its points,
        # and where it has none.
        for hovered, fraction in (
            ("center_accuracy", 0.37),
            ("train_loss", 0.61),
            ("center_accuracy", 0.05),
            ("train_loss", 0.15),
        ):
            _hover(page, roots[hovered], fraction)
            xs = {m: root.get_attribute("data-cursor-x") for m, root in roots.items()}
            # The cursor on one chart stands at the same step on the other.
            assert xs[hovered] and len(set(xs.values())) == 1, xs
            step = float(xs[hovered])
            for metric, root in roots.items():
                x_text, *groups = legend(root)
                assert float(x_text) == step
                assert len(groups) == 2, groups
                for algorithm, text in zip(RATES, groups):
                    shown = _numbers(text)
                    expected = _expected(metric, algorithm, step, band)
                    assert shown == pytest.approx(expected, rel=2e-4), (metric, algorithm, text)
                    seen_partial |= len(expected) == 5
        shot(page, f"compare-grouped-{band}")
    assert seen_partial  # a step where 3 of the 4 easgd runs had a value was shown
    # A click on a group in the legend hides its mean and its band; a second brings both back.
    root = chart(page, "center_accuracy")
    label = root.locator(".u-legend .u-series").filter(has_text="algorithm=easgd").first
    label.click()
    page.wait_for_timeout(300)
    assert root.get_attribute("data-bands-shown") == "1"
    label.click()
    page.wait_for_timeout(300)
    assert root.get_attribute("data-bands-shown") == "2"


def test_the_parameters_against_the_final_metric(grouped):
    product, browser = grouped
    page = new_page(browser, f"{product.ui}/compare?runs={','.join(IDS)}")
    chart(page).wait_for()
    parallel = page.locator('.easgd-parallel[data-drawn="1"]')
    parallel.scroll_into_view_if_needed()
    parallel.wait_for()
    assert parallel.get_attribute("data-lines") == str(len(IDS))
    # What differs between the runs (the learning rate does not), then the metric.
    # Named by the key's last part; the whole key is the name's tooltip.
    named = parallel.locator("svg g.axis-label")
    assert named.locator("text").all_text_contents() == [
        "algorithm",
        "tau",
        "seed",
        "center_accuracy",
    ]
    assert named.locator("title").all_text_contents() == [
        "optimizer.algorithm",
        "optimizer.tau",
        "seed",
        "center_accuracy",
    ]
    finals = {f"grp-{a}-s{s}": accuracy(a, s, 100) for a in RATES for s in SEEDS}
    finals[f"grp-easgd-s{LATE}"] = accuracy("easgd", LATE, LATE_STEPS[-1])
    best = max(finals, key=finals.get)
    thick = parallel.locator('polyline[stroke-width="3.5"]')
    # Each line is labelled as the runs are: by what differs, the run id last.
    assert thick.count() == 1 and thick.get_attribute("data-trial").endswith(f"({best})")
    hint = thick.locator("title").text_content()
    assert f"center_accuracy {finals[best]:.4g}" in hint, hint
    SHOTS.mkdir(parents=True, exist_ok=True)
    parallel.screenshot(path=str(SHOTS / "compare-parallel-coordinates.png"))
    shot(page, "compare-parameters-against-the-final-metric")


def test_runs_are_ticked_in_the_table_and_stay_ticked_through_a_filter(grouped):
    from playwright.sync_api import expect

    product, browser = grouped
    page = new_page(browser, product.ui)
    tick_runs(page, "grp-easgd-s1", "grp-sync-s2")
    # In the table's order, newest first.
    assert _address(page) == {"selected": "grp-sync-s2,grp-easgd-s1"}
    expect(page.get_by_role("button", name="Compare selected (2)")).to_be_enabled()
    expect(page.get_by_role("button", name="Open selected run")).to_be_disabled()
    shot(page, "runs-ticked")
    # A filter shows other rows at the same places: the ticks follow the runs, not the rows,
    # and a run the filter hides stays ticked.
    page.get_by_label("Filter", exact=True).fill("params.seed >= 2")
    page.keyboard.press("Enter")
    expect(page.get_by_text("5 runs;", exact=False)).to_be_visible()
    page.wait_for_timeout(1000)
    assert _ticked(page) == ["grp-sync-s2"]
    expect(page.get_by_text("2 ticked, 1 of them hidden by the filter.")).to_be_visible()
    assert _address(page)["selected"] == "grp-sync-s2,grp-easgd-s1"
    expect(page.get_by_role("button", name="Compare selected (2)")).to_be_enabled()
    shot(page, "runs-ticked-through-a-filter")
    page.get_by_label("Filter", exact=True).fill("")
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"{len(IDS)} runs;", exact=False)).to_be_visible()
    page.wait_for_timeout(1000)
    assert _ticked(page) == ["grp-sync-s2", "grp-easgd-s1"]
    tick_runs(page, "grp-easgd-s1")  # unticked
    assert _ticked(page) == ["grp-sync-s2"]
    page.get_by_role("button", name="Open selected run").click()
    expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()
    page.wait_for_timeout(800)
    assert _address(page) == {"run": "grp-sync-s2"}
    # A link with ticks in it opens the table with those runs ticked; ids no run has, or that
    # are no run id at all, are dropped.
    link = f"{product.ui}/?selected=grp-easgd-s3,nope,grp-sync-s1,%3Cb%3E%00,,"
    linked = new_page(browser, link)
    expect(linked.get_by_role("button", name="Compare selected (2)")).to_be_enabled()
    linked.wait_for_timeout(1500)  # the table draws its ticks after the page's run
    assert sorted(_ticked(linked)) == ["grp-easgd-s3", "grp-sync-s1"]
    linked.get_by_role("button", name="Compare selected (2)").click()
    chart(linked).wait_for()
    assert set(_address(linked)["runs"].split(",")) == {"grp-easgd-s3", "grp-sync-s1"}


def _ticked(page) -> list[str]:
    """The runs whose rows the table shows ticked, in its order (its accessible copy)."""
    grid = page.get_by_test_id("stDataFrame").first
    rows = grid.locator("[role=row][aria-rowindex]")
    return [
        rows.nth(i).locator("[role=gridcell]").first.inner_text()
        for i in range(rows.count())
        if rows.nth(i).get_attribute("aria-selected") == "true"
    ]
