"""Fixtures: an isolated EASGD_HOME per test, a real SQLite store in it; and how pytest-xdist
hands the files out under `make test`. Helpers are in tests/support.py."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler import LoadFileScheduling

# Tests with these marks start processes (horovodrun ranks, the service, Chromium) and take
# seconds to minutes each.
STARTS_PROCESSES = frozenset({"horovod", "service", "browser"})
# Files whose tests assert on elapsed seconds or heartbeats while jobs run: under pytest-xdist
# they share one worker, one after another, so that two of them never load the machine together.
TIMING = frozenset(
    {
        "tests/service/test_service.py",
        "tests/service/test_sweep_service.py",
        "tests/training/test_store_integration.py",
    }
)


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`: two workers, `--dist loadfile`), the files that start
    processes are handed out first, the TIMING files before them: the run then ends on short
    tests on both workers, not on one long file while the other worker idles. Each file keeps
    its order."""
    if not hasattr(config, "workerinput"):
        return
    starts = {
        _file(i.nodeid) for i in items if STARTS_PROCESSES & {m.name for m in i.iter_markers()}
    }

    def order(item: pytest.Item) -> int:
        path = _file(item.nodeid)
        return 0 if path in TIMING else 1 if path in starts else 2

    items.sort(key=order)


# A test that takes longer than this is named as soon as it ends (see pytest_runtest_logreport).
SLOW_SECONDS = 120


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under pytest-xdist, the controller names at once a test that took over SLOW_SECONDS: a
    CI log cut short by its time limit then still says where the time went."""
    if getattr(report, "node", None) is None or report.when != "call":
        return  # in a worker, or a setup or teardown
    if report.duration > SLOW_SECONDS:
        sys.stderr.write(f"\nslow: {report.nodeid} took {report.duration:.0f} s\n")


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before pytest-xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadFileScheduling | None:
    """`--dist loadfile`, a worker taking a whole file so that a module fixture's one horovodrun
    launch or one service serves all its tests, with the TIMING files as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class TimingTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = _file(nodeid)
            return "timing" if path in TIMING else path

    return TimingTogether(config, log)


@pytest.fixture(autouse=True)
def _main_module_kept():
    """Streamlit's AppTest runs a page as `__main__` and leaves it there: a later test in the
    same process that starts a child with multiprocessing's spawn (the center server's process
    mode) would have the child run that page first, and die of it."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


@pytest.fixture
def easgd_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EASGD_HOME", str(home))
    monkeypatch.delenv("EASGD_DB_URL", raising=False)
    return home


@pytest.fixture
def store(easgd_home):
    """A real SQLite store with its tables, in the test's own EASGD_HOME."""
    from db.store import Store

    s = Store()
    s.init()
    yield s
    s.dispose()
