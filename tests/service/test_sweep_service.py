"""The example sweep through the real service: `easgd serve`, real horovodrun trials of 2 ranks,
`easgd sweep create|show|list`.

Why a trial is stopped early here, every time: the sweep's seed (7) fixes the learning rates
drawn, from 1e-4 to 0.5 on a log scale, and the draws include rates two orders of magnitude
apart. Hyperband (eta 3) compares trials at evaluations 3, 9 and 27 and, of n trials there,
keeps int(n / 3) + 1: of two trials that reach a bracket together, a trial whose best value so
far is below the other's value there is stopped, which the slow ones are. The test checks that
each stop it sees was deserved: another trial was better at the iteration named in its reason
than the stopped trial ever was before it (its value there included).
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support import ROOT, Service, kill_jobs

pytestmark = [pytest.mark.service, pytest.mark.horovod]

EXAMPLE = ROOT / "configs" / "sweep-digits-random.yaml"


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path / "home", slots=4).start()
    yield svc
    svc.stop()
    kill_jobs(svc.home)


def _wait(service: Service, sweep_id: int, timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sweep = httpx.get(f"{service.url}/sweeps/{sweep_id}", timeout=30).json()
        if sweep["status"] != "running":
            return sweep
        time.sleep(2)
    raise AssertionError(f"sweep {sweep_id} still running after {timeout}s: {sweep['trials']}")


def _history(service: Service, run_id: str) -> list[float]:
    r = httpx.get(f"{service.url}/runs/{run_id}/metrics", params={"key": "center_accuracy"})
    return [value for _, _, value in r.json()["center_accuracy"]]


def test_the_example_sweep_runs_its_trials_as_jobs(service):
    created = service.easgd("sweep", "create", str(EXAMPLE))
    assert created.returncode == 0, created.stderr
    sweep_id = int(created.stdout)
    sweep = _wait(service, sweep_id)

    trials = sweep["trials"]
    assert sweep["status"] == "finished" and len(trials) == 8, sweep["message"]
    assert {t["state"] for t in trials} <= {"succeeded", "stopped_early"}, trials
    stopped = [t for t in trials if t["state"] == "stopped_early"]
    succeeded = [t for t in trials if t["state"] == "succeeded"]
    assert stopped and succeeded
    for t in trials:
        lr = t["params"]["optimizer.learning_rate"]
        assert 1e-4 <= lr <= 0.5 and t["params"]["optimizer.tau"] in (1, 2, 4, 8, 16)

    # Each trial is an ordinary job: at most 2 at once, its run tagged with the sweep.
    jobs = {j["id"]: j for j in httpx.get(f"{service.url}/jobs", timeout=30).json()}
    spans = [(jobs[t["job_id"]]["started_at"], jobs[t["job_id"]]["ended_at"]) for t in trials]
    for start, _ in spans:
        assert sum(s <= start < e for s, e in spans) <= 2
    for t in succeeded:
        assert jobs[t["job_id"]]["status"] == "succeeded"
        assert t["value"] == _history(service, t["run_id"])[-1]
    run = httpx.get(f"{service.url}/runs/{trials[0]['run_id']}", timeout=30).json()
    assert run["tags"] == {"sweep": str(sweep_id), "trial": "0"}

    # A stopped trial's job was cancelled, its run closed and told why, and the stop deserved.
    for t in stopped:
        assert jobs[t["job_id"]]["status"] == "cancelled"
        run = httpx.get(f"{service.url}/runs/{t['run_id']}", timeout=30).json()
        assert run["status"] == "cancelled"
        assert [e["message"] for e in run["events"] if e["kind"] == "stopped_early"] == [
            f"sweep {sweep_id}: {t['message']}"
        ]
        b = int(re.search(r"at iteration (\d+) ", t["message"]).group(1))
        mine = _history(service, t["run_id"])[b - 1]
        others = [_history(service, o["run_id"]) for o in trials if o is not t]
        assert any(len(h) >= b and h[b - 1] > mine for h in others), t

    best = max(succeeded, key=lambda t: t["value"])
    assert sweep["best_trial"] == best["number"]
    shown = service.easgd("sweep", "show", str(sweep_id))
    assert shown.returncode == 0, shown.stderr
    assert f"best: trial {best['number']} (job {best['job_id']}, run {best['run_id']})" in (
        shown.stdout
    )
    assert shown.stdout.count("stopped_early") >= 2 * len(stopped)  # the table and the reasons
    listed = service.easgd("sweep", "list")
    assert listed.returncode == 0 and f"center_accuracy {best['value']:.4g}" in listed.stdout
