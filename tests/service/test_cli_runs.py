"""`easgd init` and `easgd runs ...` as a user types them, against a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess

import pytest

from db.store import Store
from tests.support import BIN


def easgd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "easgd"), *args], capture_output=True, text=True, env=os.environ, timeout=60
    )


@pytest.fixture
def seeded(easgd_home):
    assert easgd("init").returncode == 0
    s = Store()
    for run_id, algo, acc in (("r-eam", "eamsgd", 0.96), ("r-sync", "sync", 0.93)):
        s.create_run(
            run_id,
            params={"optimizer.algorithm": algo, "optimizer.tau": 10},
            workers=2,
            name=run_id,
            total_steps=100,
        )
        s.log_metrics(
            run_id,
            [
                ("center_accuracy", 50, 5.0, acc - 0.1),
                ("center_accuracy", 100, 10.0, acc),
                ("train_loss", 100, 10.0, 0.1),
            ],
        )
        s.add_event(run_id, "evaluated", f"center accuracy {acc}", 100)
        s.finish_run(run_id, "finished")
    return s


def test_init_reports_where_and_is_repeatable(easgd_home):
    first = easgd("init")
    assert first.returncode == 0 and str(easgd_home / "easgd.db") in first.stdout
    assert easgd("init").returncode == 0


def test_commands_before_init_say_what_to_do(easgd_home):
    out = easgd("runs", "list")
    assert out.returncode == 1 and "easgd init" in out.stderr


def test_list_and_empty_state(easgd_home):
    easgd("init")
    empty = easgd("runs", "list")
    assert empty.returncode == 0 and "python -m training" in empty.stdout


def test_query_json_table_csv(seeded):
    q = "params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95"
    js = easgd("runs", "query", q, "--format", "json")
    assert js.returncode == 0, js.stderr
    (run,) = json.loads(js.stdout)
    assert run["id"] == "r-eam" and run["metrics"]["center_accuracy"]["value"] == 0.96
    assert run["params"]["optimizer.tau"] == "10"
    table = easgd(
        "runs", "query", "metrics.center_accuracy > 0", "--order-by", "metrics.center_accuracy ASC"
    )
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "name", "status"]
    assert lines[2].startswith("r-sync") and lines[3].startswith("r-eam")
    rows = list(csv.DictReader(io.StringIO(easgd("runs", "list", "--format", "csv").stdout)))
    assert {r["id"] for r in rows} == {"r-eam", "r-sync"}
    assert "metrics.center_accuracy" in rows[0]


def test_show_and_metrics(seeded):
    shown = easgd("runs", "show", "r-eam")
    assert shown.returncode == 0
    assert "center_accuracy" in shown.stdout and "optimizer.algorithm" in shown.stdout
    assert "evaluated" in shown.stdout
    hist = list(
        csv.DictReader(
            io.StringIO(easgd("runs", "metrics", "r-eam", "--key", "center_accuracy").stdout)
        )
    )
    assert [(int(r["step"]), float(r["value"])) for r in hist] == [(50, 0.86), (100, 0.96)]
    js = json.loads(easgd("runs", "metrics", "r-eam", "--format", "json").stdout)
    assert len(js) == 3


@pytest.mark.parametrize(
    "bad, phrase",
    [
        ("status = 'x'; DROP TABLE runs", "unexpected character ';'"),
        ("(status = 'finished'", "unbalanced '('"),
        ("nonsense = 1", "unknown field 'nonsense'"),
    ],
)
def test_bad_filters_exit_2_with_position(seeded, bad, phrase):
    out = easgd("runs", "query", bad)
    assert out.returncode == 2
    assert phrase in out.stderr and "position" in out.stderr
    assert len(json.loads(easgd("runs", "list", "--format", "json").stdout)) == 2


def test_unknown_run(seeded):
    out = easgd("runs", "show", "nope")
    assert out.returncode == 2 and "no run 'nope'" in out.stderr


def test_validate(tmp_path, easgd_home):
    good = easgd("validate", "configs/lenet-mnist5k-eamsgd.yaml", "--set", "optimizer.tau=4")
    assert good.returncode == 0 and "tau: 4" in good.stdout
    bad = easgd("validate", "configs/lenet-mnist5k-eamsgd.yaml", "--set", "optimizer.beta=2")
    assert bad.returncode == 2 and "optimizer.beta" in bad.stderr and "received: 2" in bad.stderr
