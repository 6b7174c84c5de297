"""The UI has one door for its changes, the job service's API (ui/changes.py), which checks,
authorises and locks them as it does the command line's: nothing under ui/ may call a method of
the store that writes, remove a run with service.run_removal, or delete files itself."""

from __future__ import annotations

import ast

import pytest

from db.store import Store
from tests.support import ROOT

# The store's methods a page may call: each only reads. Any other is taken for a write, so a
# method the store gains is refused here until it is named as a read.
READS = {
    "check",
    "get_run",
    "get_runs",
    "list_runs",
    "search_runs",
    "events",
    "metric_keys",
    "metric_history",
    "metric_histories",
    "job_for_run",
    "get_job",
    "list_jobs",
    "queued_jobs",
    "get_sweep",
    "list_sweeps",
    "deletion",
    "runs_in_directory",
    "table_names",
    "dispose",
}
STORE_METHODS = {n for n in dir(Store) if not n.startswith("_") and callable(getattr(Store, n))}
WRITES = STORE_METHODS - READS
REMOVES_FILES = {"rmtree", "unlink", "rmdir", "removedirs", "remove"}


def _is_store_call(node: ast.expr) -> bool:
    """`store()` or `state.store()`: how the pages get the store."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "store") or (
        isinstance(f, ast.Attribute) and f.attr == "store"
    )


def problems(source: str, name: str = "<page>") -> list[str]:
    """Each place in `source` that changes the store or removes files other than through the
    service, as `name:line: what`."""
    tree = ast.parse(source)
    stores = {"store"}  # the pages' own name for it, and a parameter so named
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_store_call(node.value):
            stores |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.module == "service.run_removal"
            or (node.module == "service" and any(a.name == "run_removal" for a in node.names))
        ):
            found.append(f"{name}:{node.lineno}: imports service.run_removal")
        if isinstance(node, ast.Import) and any(
            a.name == "service.run_removal" for a in node.names
        ):
            found.append(f"{name}:{node.lineno}: imports service.run_removal")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver, method = node.func.value, node.func.attr
        on_store = _is_store_call(receiver) or (
            isinstance(receiver, ast.Name) and receiver.id in stores
        )
        if on_store and method in WRITES:
            found.append(f"{name}:{node.lineno}: the store's {method} (a write)")
        on_files = isinstance(receiver, ast.Name) and receiver.id in {"os", "shutil"}
        if method in REMOVES_FILES and (on_files or method != "remove"):
            found.append(f"{name}:{node.lineno}: {method} (removes files)")
    return found


def test_nothing_under_ui_writes_to_the_store_or_removes_files():
    files = sorted((ROOT / "ui").rglob("*.py"))
    assert len(files) > 10 and ROOT / "ui" / "views" / "run.py" in files
    found = [p for f in files for p in problems(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == [], "changes go through the service's API (ui/changes.py):\n" + "\n".join(found)


def test_the_reads_named_are_the_stores_own():
    assert READS <= STORE_METHODS, READS - STORE_METHODS
    assert {"set_note", "set_tags", "archive_run", "restore_run", "delete_run"} <= WRITES


@pytest.mark.parametrize(
    "source",
    [
        "from service.run_removal import remove_run",
        "from service import run_removal",
        "import service.run_removal",
        "state.store().set_note('r', 'x')",
        "store = state.store()\nstore.archive_run('r')",
        "s = state.store()\ns.delete_run('r')",
        "def f(store):\n    store.finish_run('r', 'finished')",
        "shutil.rmtree(directory)",
        "os.remove(path)",
        "Path(path).unlink()",
    ],
)
def test_the_check_finds_a_write(source):
    assert len(problems(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "state.client().set_note('r', 'x')",
        "through_service(lambda c: c.delete_run('r', files))",
        "store = state.store()\nstore.get_run('r')",
        "names.remove('x')",
    ],
)
def test_the_check_lets_reads_and_the_service_through(source):
    assert problems(source) == []
