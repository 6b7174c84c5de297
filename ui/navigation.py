"""The app's pages, declared once: the navigation, the links between pages and the tests all
read PAGES, so a new page is its module under ui/views/ and one entry here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    key: str  # its module, ui/views/<key>.py, and its address, /<key>
    title: str
    icon: str

    @property
    def path(self) -> str:
        """As st.Page, st.switch_page and st.page_link take it: relative to ui/app.py."""
        return f"views/{self.key}.py"


# In the order the navigation shows them; the first is the default.
PAGES = (
    Page("runs", "Runs", ":material/table_rows:"),
    Page("launch", "Launch", ":material/rocket_launch:"),
    Page("jobs", "Jobs", ":material/list_alt:"),
    Page("sweeps", "Sweeps", ":material/tune:"),
    Page("compare", "Compare", ":material/monitoring:"),
    Page("run", "Run", ":material/description:"),
)
PATHS = {p.key: p.path for p in PAGES}
