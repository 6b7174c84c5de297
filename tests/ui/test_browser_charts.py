"""The learning-curve charts in headless Chromium, on runs written beforehand
(tests/ui/seeded_runs.py): a log scale fitted to the data with readable ticks, a hover legend
that shows every run at the x it names on the bytes and time axes, and bytes that read alike on
the Run and Compare pages.
"""

from __future__ import annotations

import re

import pytest

from tests.ui.chromium import (
    canvas_texts,
    chart,
    choose,
    compare_page,
    ever_drawn,
    legend,
    new_page,
    pick_metrics,
    shot,
    y_ticks,
)
from tests.ui.seeded_runs import (
    BYTES_PER_STEP,
    EVAL_STEPS,
    SECONDS_PER_STEP,
    STEPS,
    accuracy,
    loss,
)

pytestmark = [pytest.mark.browser, pytest.mark.service]


def _number(text: str) -> float:
    assert re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", text), f"not a readable number: {text!r}"
    return float(text)


def _bytes(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kKMG]?)B", text)
    assert m, f"not a number of bytes: {text!r}"
    return float(m[1]) * {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}[m[2]]


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?) s", text)
    assert m, f"not a number of seconds: {text!r}"
    return float(m[1])


def _interpolated(run: str, x: float, x_per_step: float, rounding: float) -> float | None:
    """The run's accuracy at x, on the straight line between its evaluations around x; None
    outside them. `rounding`: how far the x a label shows may be from the x it names."""
    xs = [s * x_per_step for s in EVAL_STEPS[run]]
    if x < xs[0] - rounding or x > xs[-1] + rounding:
        return None
    x = min(max(x, xs[0]), xs[-1])
    for (x0, s0), (x1, s1) in zip(zip(xs, EVAL_STEPS[run]), zip(xs[1:], EVAL_STEPS[run][1:])):
        if x0 - 1e-9 <= x <= x1 + 1e-9:
            t = (x - x0) / (x1 - x0)
            return accuracy(run, s0) + t * (accuracy(run, s1) - accuracy(run, s0))
    return accuracy(run, EVAL_STEPS[run][0])


def test_log_scale_ticks_are_numbers_in_the_range_of_the_data(seeded_browser, seeded):
    page = compare_page(seeded_browser, seeded, "runs=cmp-easgd,cmp-sync")
    page.get_by_text("Log scale").click()
    page.wait_for_timeout(1500)
    for metric, values in (
        ("center_accuracy", [accuracy(r, s) for r in EVAL_STEPS for s in EVAL_STEPS[r]]),
        ("train_loss", [loss(r, s) for r in EVAL_STEPS for s in range(STEPS + 1)]),
    ):
        pick_metrics(page, metric)
        root = chart(page, metric)
        root.wait_for()
        page.wait_for_timeout(500)
        ticks = [_number(t) for t in y_ticks(root)]
        assert len(ticks) >= 3 and ticks == sorted(set(ticks)), (metric, ticks)
        # The range hugs the data: no tick a decade away from it (uPlot's own snapped 0.1..1).
        low, high = min(values), max(values)
        assert low / 1.5 <= ticks[0] and ticks[-1] <= high * 1.5, (metric, ticks, low, high)
        shot(page, f"compare-log-scale-{metric}")


@pytest.mark.parametrize(
    ("axis", "per_step", "parse", "rounding", "digits"),
    [
        ("Bytes sent per rank", BYTES_PER_STEP, _bytes, 0.0, None),
        ("Wall time (s)", SECONDS_PER_STEP, _seconds, 0.05, r"\d+(\.\d{1,2})? s"),
    ],
)
def test_hover_shows_every_run_at_the_x_it_names(
    seeded_browser, seeded, axis, per_step, parse, rounding, digits
):
    page = compare_page(seeded_browser, seeded, "runs=cmp-easgd,cmp-sync")
    choose(page, "X axis", axis)
    page.wait_for_timeout(1000)
    root = chart(page, "center_accuracy")
    root.scroll_into_view_if_needed()
    box = root.locator(".u-over").bounding_box()
    checked = 0
    for i in range(1, 20):
        page.mouse.move(box["x"] + box["width"] * i / 20, box["y"] + box["height"] / 2)
        page.wait_for_timeout(150)
        x_text, *values = legend(root)
        if digits:
            assert re.fullmatch(digits, x_text), f"{x_text!r}: too many digits"
            if _seconds(x_text) >= 10:
                assert re.fullmatch(r"\d+(\.\d)? s", x_text), f"{x_text!r}: too many digits"
        x = parse(x_text)
        for run, shown in zip(("cmp-easgd", "cmp-sync"), values):
            edges = (EVAL_STEPS[run][0] * per_step[run], EVAL_STEPS[run][-1] * per_step[run])
            if rounding and min(abs(x - e) for e in edges) <= rounding:
                continue  # the rounded label cannot tell whether x is inside the run's range
            expected = _interpolated(run, x, per_step[run], rounding)
            if expected is None:
                assert shown == "--", (x_text, run, shown)
            else:
                # The label rounds x; the curve moves little over that rounding.
                assert shown != "--", (x_text, run)
                assert abs(_number(shown) - expected) < 2e-3, (x_text, run, shown, expected)
                checked += 1
    assert checked >= 10
    shot(page, f"compare-hover-on-{axis.split()[0].lower()}")


BYTES = r"\d+(\.\d)?(B|KB|MB|GB)"


def test_bytes_read_the_same_on_run_and_compare(seeded_browser, seeded):
    run = new_page(seeded_browser, f"{seeded.ui}/run?run=cmp-sync")
    root = chart(run, "bytes_sent")
    root.wait_for()
    run.wait_for_timeout(500)
    on_run = y_ticks(root)
    assert len(on_run) >= 3 and all(re.fullmatch(BYTES, t) for t in on_run), on_run
    shot(run, "run-page-curves")
    compare = compare_page(seeded_browser, seeded, "runs=cmp-easgd,cmp-sync")
    choose(compare, "X axis", "Bytes sent per rank")
    compare.wait_for_timeout(1000)
    texts = canvas_texts(chart(compare, "center_accuracy"))
    on_compare = [t for t in texts if re.fullmatch(BYTES, t)]
    assert len(on_compare) >= 3, texts
    # The tables' byte columns in the same units.
    assert {"100KB", "400KB"} <= set(ever_drawn(compare))
