"""`python -m bench.tune` end to end, on the smallest tuning that still does everything: its own
`easgd serve`, a grid sweep of 2 learning rates, then the widening, a second sweep (with 2 rates
the choice always sits at an end of the grid), 30 steps a trial, 3 real trials of 2 ranks.

The choice is checked against the rule applied here to the curves the store recorded, not
through bench.tune's code: the fewest steps to the target center accuracy, then the best
accuracy, the first trial on a tie.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import QUIET_TF, ROOT, Service, kill_jobs, store_of

pytestmark = [pytest.mark.service, pytest.mark.horovod]

TARGET = 0.6


def _score(store, run_id: str) -> tuple[bool, int, float]:
    curve = [
        (p.step, p.value)
        for p in store.metric_history(run_id, "center_accuracy")
        if p.value is not None
    ]
    reached = [step for step, value in curve if value >= TARGET]
    return (not reached, reached[0] if reached else 0, -max(v for _, v in curve))


def test_tuning_runs_its_grid_and_widening_as_sweeps_of_the_service(tmp_path):
    home, out = tmp_path / "home", tmp_path / "tune.json"
    env = {**os.environ, **QUIET_TF, "EASGD_HOME": str(home)}
    env.pop("EASGD_DB_URL", None)
    env.pop("EASGD_API_URL", None)
    args = ["--workloads", "mlp", "--algorithms", "easgd", "--grid-limit", "2"]
    args += ["--max-steps", "30", "--target", str(TARGET), "--rounds", "1", "--out", str(out)]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.tune", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        if (home / "easgd.db").exists():
            kill_jobs(home)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["reduced"] == {"grid_limit": 2, "max_steps": 30, "target": TARGET}
    tuned = record["workloads"]["mlp"]

    store = store_of(home)
    sweeps = sorted(store.list_sweeps(), key=lambda s: s.id)
    names = ["tune-mlp-easgd-s1-quick", "tune-mlp-easgd-s1-widen1-quick"]
    assert [s.name for s in sweeps] == names
    for s in sweeps:
        assert (s.status.value, s.method, s.concurrency, s.source) == (
            "finished",
            "grid",
            1,
            "bench",
        )
        assert (s.metric, s.goal, s.spec.get("early_terminate")) == (
            "center_accuracy",
            "maximize",
            None,
        )
        base = s.base_config
        assert (base["seed"], base["training"]["max_steps"], base["optimizer"]["algorithm"]) == (
            1,
            30,
            "easgd",
        )
    trials = [t for s in sweeps for t in s.trials]
    assert [t.state.value for t in trials] == ["succeeded"] * 3
    rates = [t.params["optimizer.learning_rate"] for t in trials]
    assert rates[:2] == [0.02, 0.05]

    # Each trial's run is in the store, finished; the record tried exactly those runs.
    for t in trials:
        assert store.get_run(t.run_id).status == "finished"
    assert [(e["sweep"], e["trial"], e["run_id"]) for e in tuned["tried"]["easgd"]] == [
        (s.id, t.number, t.run_id) for s in sweeps for t in s.trials
    ]
    assert tuned["sweeps"] == {"easgd": [s.id for s in sweeps]}
    for e, t in zip(tuned["tried"]["easgd"], trials, strict=True):
        missed, steps, best = _score(store, t.run_id)
        assert e["steps_to_target"] == (None if missed else steps)
        assert e["best_accuracy"] == -best
        lr = t.params["optimizer.learning_rate"]
        assert e["optimizer"] == {"algorithm": "easgd", "learning_rate": lr, "tau": 10}

    # The first round's choice sits at an end of its 2 rates: the widening goes a factor of 2
    # beyond it; then the choice over all three.
    first = min(trials[:2], key=lambda t: _score(store, t.run_id))
    assert rates[2] == (0.1 if first is trials[1] else 0.01)
    chosen = min(trials, key=lambda t: _score(store, t.run_id))
    assert tuned["chosen"]["easgd"]["learning_rate"] == chosen.params["optimizer.learning_rate"]

    # The sweeps are the service's own, listed by `easgd sweep list` on the same store.
    service = Service(home).start()
    try:
        listed = service.easgd("sweep", "list")
    finally:
        service.stop()
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in names)
