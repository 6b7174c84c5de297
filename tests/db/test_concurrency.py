"""Several processes writing to one SQLite store at once: no lock errors, no lost rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from db.store import Store

WRITER = str(Path(__file__).with_name("writer_process.py"))


def test_three_writers_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Store(url).init()
    procs = [
        subprocess.Popen(
            [sys.executable, WRITER, url, f"w{i}", "150", "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    store = Store(url)
    for i in range(3):
        assert len(store.metric_history(f"w{i}", "loss")) == 150 * 40
        run = store.get_run(f"w{i}")
        assert run.status == "finished" and run.metrics["loss"].step == 150 * 40 - 1
