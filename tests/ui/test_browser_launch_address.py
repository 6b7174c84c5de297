"""The Launch page in Chromium as a new user meets it: empty fields show the defaults they stand
for, edits survive a reload (they live in the address), and a disabled Launch button says why
beside it."""

from __future__ import annotations

import re

import pytest

from tests.ui.chromium import new_page, settled, shot

pytestmark = [pytest.mark.browser, pytest.mark.service]


def _set(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(600)
    settled(page)


def _same_row(a, b) -> bool:
    one, two = a.bounding_box(), b.bounding_box()
    return one["y"] < two["y"] + two["height"] and two["y"] < one["y"] + one["height"]


def test_launch_keeps_edits_across_a_reload_shows_defaults_and_says_why_it_is_off(
    seeded, seeded_browser
):
    from playwright.sync_api import expect

    page = new_page(seeded_browser, f"{seeded.ui}/launch")
    expect(page.get_by_role("heading", name="Launch a training job")).to_be_visible()
    settled(page)
    momentum = page.get_by_label("momentum", exact=True)
    expect(momentum).to_have_value("")
    expect(momentum).to_have_attribute("placeholder", "0.99 (eamsgd's default)")
    expect(page.get_by_label("beta", exact=True)).to_have_attribute(
        "placeholder", "0.9 (the default)"
    )
    expect(page.get_by_label("test size", exact=True)).to_have_attribute(
        "placeholder", "1000 (the default)"
    )
    expect(page.get_by_role("combobox", name="inner optimizer")).to_have_attribute(
        "placeholder", "nesterov (eamsgd's default)"
    )
    shot(page, "launch-blank-fields-show-defaults")

    _set(page, "tau", "4")
    _set(page, "learning rate", "0.05")
    _set(page, "workers", "1")
    expect(page).to_have_url(re.compile(r"optimizer\.tau=4"))
    assert "optimizer.learning_rate=0.05" in page.url and "resources.workers=1" in page.url
    assert "momentum" not in page.url  # defaults stay out of the address

    page.reload()
    expect(page.get_by_role("heading", name="Launch a training job")).to_be_visible()
    settled(page)
    expect(page.get_by_label("tau", exact=True)).to_have_value("4")
    expect(page.get_by_label("learning rate", exact=True)).to_have_value("0.05")
    expect(page.get_by_label("workers", exact=True)).to_have_value("1")
    expect(page.get_by_label("momentum", exact=True)).to_have_attribute(
        "placeholder", "0.99 (eamsgd's default)"
    )
    launch = page.get_by_role("button", name="Launch", exact=True)
    expect(launch).to_be_enabled()
    page.get_by_label("tau", exact=True).scroll_into_view_if_needed()
    shot(page, "launch-edits-kept-after-reload")

    # A value the schema refuses: Launch is off, and says why on its own row.
    _set(page, "tau", "0")
    expect(launch).to_be_disabled()
    why = page.get_by_test_id("stMarkdownContainer").filter(has_text="Launch is disabled:")
    expect(why).to_contain_text("optimizer.tau: input should be greater than or equal to 1")
    assert _same_row(launch, why)
    launch.scroll_into_view_if_needed()
    shot(page, "launch-disabled-says-why")

    # One the service refuses (more workers than its slots): the same, with its reason.
    _set(page, "tau", "4")
    _set(page, "workers", "3")
    expect(launch).to_be_disabled()
    expect(why).to_contain_text("needs 3 slots")
    launch.scroll_into_view_if_needed()
    shot(page, "launch-disabled-by-the-service-says-why")
    _set(page, "workers", "2")
    expect(launch).to_be_enabled()
    expect(why).to_have_count(0)
