"""The look of every page in headless Chromium: no Deploy button or developer menu, a theme
whose primary colour is not the errors' red, our own favicon, and no 500 (nor traceback in the
terminal of `easgd up`) for Streamlit's /favicon.png, which every page load asks for.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.support import ROOT
from tests.ui.chromium import chart, new_page

pytestmark = [pytest.mark.browser, pytest.mark.service]


def test_the_look_viewer_toolbar_our_theme_and_favicon(seeded_browser, seeded):
    from playwright.sync_api import expect

    primary = "rgb(37, 99, 235)"  # ui/.streamlit/config.toml's primaryColor
    page = new_page(seeded_browser, f"{seeded.ui}/compare?runs=cmp-easgd,cmp-sync")
    chart(page).wait_for()
    # No Deploy button, no developer items in the menu.
    assert page.get_by_role("button", name="Deploy").count() == 0
    page.get_by_test_id("stMainMenu").click()
    menu = page.get_by_test_id("stMainMenuPopover")
    expect(menu).to_be_visible()
    for developer in ("Rerun", "Clear cache", "Deploy"):
        assert menu.get_by_text(developer).count() == 0, developer
    page.keyboard.press("Escape")
    # The primary colour is ours, not the red errors use: tags, the slider, focus rings.
    style = "(el, p) => getComputedStyle(el)[p]"
    tag = page.locator('[data-baseweb="tag"]').first
    assert tag.evaluate(style, "backgroundColor") == primary
    assert page.get_by_test_id("stSliderThumbValue").evaluate(style, "color") == primary
    metric = page.get_by_role("combobox", name="X axis")
    metric.focus()
    page.wait_for_timeout(300)
    ring = metric.locator("xpath=..")
    assert primary in ring.evaluate(style, "borderColor") + ring.evaluate(style, "boxShadow")
    page.keyboard.press("Escape")
    # Our own icon, and every page's request for Streamlit's /favicon.png answered.
    icon = page.locator("link[rel*='icon']").first.get_attribute("href")
    svg = (ROOT / "ui" / "assets" / "favicon.svg").read_bytes()
    assert icon == "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    answers = []
    page.on("response", lambda r: answers.append(r.status) if "favicon" in r.url else None)
    for path in ("", "launch", "jobs", "compare", "run"):
        page.goto(f"{seeded.ui}/{path}")
        page.wait_for_timeout(1500)
    assert answers and set(answers) == {200}, answers
    assert httpx.get(f"{seeded.ui}/favicon.png").status_code == 200
    assert "Traceback" not in seeded.terminal()
