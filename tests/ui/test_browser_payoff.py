"""Compare's first question, in headless Chromium, on three real runs trained under horovodrun:
the MLP on digits with synchronous SGD and with EASGD (tau 4), and LeNet-5 on mnist5k with
EAMSGD. The cost-to-target table and the verdict are checked against the runs' own metric
histories, read from the store and worked out here (the first evaluation at or beyond the
target; the training seconds and bytes recorded at that step); the runs are labelled by their
algorithm, and the LeNet run is said to learn another task."""

from __future__ import annotations

import math
import re

import pytest

from tests.support import horovodrun
from tests.ui.chromium import (
    chart,
    chromium_browser,
    ever_drawn,
    legend,
    new_page,
    served,
    shot,
    store_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.horovod]

ACC = "center_accuracy"
RUNS = {
    "sync": [
        "configs/mlp-digits-easgd.yaml",
        "--set",
        "optimizer.algorithm=sync",
        "--set",
        "training.epochs=2",
    ],
    "easgd": ["configs/mlp-digits-easgd.yaml", "--set", "training.epochs=2"],
    "lenet": [
        "configs/lenet-mnist5k-eamsgd.yaml",
        "--set",
        "training.max_steps=10",
        "--set",
        "training.eval_every=10",
    ],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("payoff") / "home"
    store_in(home).dispose()
    for name, args in RUNS.items():
        done = horovodrun(
            2,
            ["-m", "training", "--config", args[0], *args[1:], "--out", str(home / "runs" / name)],
            env={"EASGD_HOME": str(home)},
        )
        assert done.returncode == 0, done.stderr[-3000:]
    with served(home) as product, chromium_browser() as browser:
        yield product, browser


def _floor2(v: float) -> float:
    scale = 10 ** (math.floor(math.log10(abs(v))) - 1)
    return math.floor(v / scale) * scale


def _expected(store, run_id: str, target: float) -> tuple[int, float, float]:
    """Step, training seconds and bytes sent at the first evaluation at or above `target`."""
    step = min(p.step for p in store.metric_history(run_id, ACC) if p.value >= target)
    seconds = {p.step: p.value for p in store.metric_history(run_id, "train_seconds")}
    sent = {p.step: p.value for p in store.metric_history(run_id, "bytes_sent")}
    return step, seconds[step], sent[step]


def _rows(page) -> list[list[str]]:
    """The first table's cells (the grid's accessible copy), row by row, header first."""
    grid = page.get_by_test_id("stDataFrame").first
    grid.locator("[role=gridcell]").first.wait_for(state="attached")
    return [
        row.locator("[role=columnheader], [role=gridcell]").all_inner_texts()
        for row in grid.locator("[role=row]").all()
    ]


def test_the_cost_to_target_table_and_its_verdict(trained):
    product, browser = trained
    store = product.store()
    ids = {name: name for name in RUNS}  # --out names each run after its directory
    best = {n: max(p.value for p in store.metric_history(i, ACC)) for n, i in ids.items()}
    # The default target: the weakest best of the runs that learn the baseline's (sync's) task.
    target = float(f"{_floor2(min(best['sync'], best['easgd'])):.12g}")
    cost = {n: _expected(store, i, target) for n, i in ids.items() if best[n] >= target}

    query = f"runs={ids['sync']},{ids['easgd']},{ids['lenet']}&metric={ACC}"
    page = new_page(browser, f"{product.ui}/compare?{query}")
    chart(page, ACC).wait_for()

    # Labels by algorithm, not by the configuration's name (both MLP runs share it).
    labels = [
        t.strip() for t in chart(page, ACC).locator(".u-legend .u-series th").all_inner_texts()
    ]
    algorithms = {"sync": "sync", "easgd": "easgd", "lenet": "eamsgd"}
    assert len(labels) == 4, labels
    for name, label in zip(RUNS, labels[1:]):
        assert label.startswith(algorithms[name] + " ") and label.endswith(f"({ids[name]})")
    assert len(legend(chart(page, ACC))) == 4  # x, then one value per run

    warning = page.get_by_test_id("stAlert").filter(has_text="do not learn the same task")
    text = warning.inner_text()
    assert f"data.dataset: digits ({ids['sync']}, {ids['easgd']}), mnist5k ({ids['lenet']})" in text
    assert f"model.name: mlp ({ids['sync']}, {ids['easgd']}), lenet5 ({ids['lenet']})" in text

    rows = _rows(page)
    header, body = rows[0], rows[1:]
    assert header[:4] == ["run", "reached at step", "time (s)", "clock"], header
    by_run = {r[0]: dict(zip(header, r)) for r in body}
    drawn = ever_drawn(page)
    base = cost["sync"]
    for name in RUNS:
        label = f"{labels[1 + list(RUNS).index(name)]}" + (" (baseline)" if name == "sync" else "")
        row = by_run[label]
        if name not in cost:  # LeNet, 10 steps on another task, may stay below the target
            assert row["reached at step"] == "", row
            said = page.get_by_text(re.compile(rf"^{re.escape(label)} did not reach")).inner_text()
            assert said == f"{label} did not reach {target:.4g} (its best: {best[name]:.4g}).", said
            continue
        step, seconds, sent = cost[name]
        assert int(row["reached at step"]) == step, (name, row)
        assert float(row["time (s)"]) == pytest.approx(seconds, rel=1e-3), (name, row)
        assert row["clock"] == "training"
        # The grid's accessible copy holds the values; the canvas draws them as "0.25x".
        for column, ratio in (
            ("steps ×", step / base[0]),
            ("time ×", seconds / base[1]),
            ("bytes ×", sent / base[2]),
        ):
            assert float(row[column]) == pytest.approx(ratio, rel=1e-6), (name, column, row)
            assert f"{ratio:.2f}x" in drawn, (name, column, f"{ratio:.2f}x")

    step, seconds, sent = cost["easgd"]
    easgd, sync = labels[2], labels[1]
    verdict = page.get_by_text(re.compile(rf"^{re.escape(easgd)} reached {target:.4g}"))
    said = verdict.inner_text()
    assert f"{sent / base[2]:.2g}x {sync}'s bytes" in said, said
    for ratio, what in ((seconds / base[1], "training seconds"), (step / base[0], "steps")):
        # Within 5% of the baseline's reads "about the same", else the ratio.
        phrase = "about the same" if abs(ratio - 1) <= 0.05 else f"{ratio:.2g}x its {what}"
        assert phrase in said and what in said, (phrase, said)
    shot(page, "compare-cost-to-target")
