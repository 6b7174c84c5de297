"""How long a job takes to start training, and a restart to get back to it, through the service.

    python -m bench.startup [--repeats 3] [--out bench/results/startup.json]

Starts `easgd serve` in a scratch EASGD_HOME, submits the LeNet-5 mnist5k EAMSGD configuration
(2 workers, one epoch) and records, from the moment of the submit: the job running (the service
launched horovodrun), the run's `started` event (every rank imported TensorFlow and Horovod,
loaded the data, built the model and the optimizer), its first evaluation (step 0) and its first
training step, and the job's end. Then a restart: a longer job is killed at one rank (`kill -9`)
after its first checkpoint, and the figures are taken again from the kill, to the relaunch and
back to training (the first step after the checkpoint). Times are medians over the repeats;
polling every 50 ms sets their resolution.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.harness import write_timed

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "lenet-mnist5k-eamsgd.yaml"
POLL = 0.05


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, home: Path):
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "EASGD_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("EASGD_DB_URL", None)
        easgd = Path(sys.executable).parent / "easgd"
        self.proc = subprocess.Popen(
            [str(easgd), "serve", "--port", str(self.port), "--slots", "2"],
            env=env,
            stdout=(home / "service.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit("bench: the service did not start")

    def get(self, path: str) -> dict:
        return httpx.get(f"{self.url}{path}", timeout=30).json()

    def submit(self, extra: list[str]) -> tuple[int, float]:
        t = time.time()
        r = httpx.post(
            f"{self.url}/jobs", json={"config": CONFIG.read_text(), "set": extra}, timeout=30
        )
        r.raise_for_status()
        return r.json()["id"], t

    def until(self, what, timeout: float = 300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = what()
            if value:
                return value, time.time()
            time.sleep(POLL)
        raise SystemExit("bench: timed out waiting")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _run(svc: Service, job_id: int) -> dict:
    r = httpx.get(f"{svc.url}/runs/job-{job_id}", timeout=30)
    return r.json() if r.status_code == 200 else {}


def _event(run: dict, kind: str, after: float = 0.0) -> float | None:
    times = [e["time"] for e in run.get("events", []) if e["kind"] == kind and e["time"] > after]
    return times[0] if times else None


def start(svc: Service) -> dict:
    job_id, t0 = svc.submit(["training.epochs=1"])
    _, running = svc.until(lambda: svc.get(f"/jobs/{job_id}")["status"] != "queued")
    _, seen = svc.until(lambda: (r := _run(svc, job_id)) and r["last_step"] >= 1)
    _, done = svc.until(lambda: svc.get(f"/jobs/{job_id}")["status"] in ("succeeded", "failed"))
    run = _run(svc, job_id)  # events and metrics reach the store in batches: read them at the end
    started = _event(run, "started")
    # The first step's own time: the run's start plus the step's wall time (the store hears of
    # it at the next flush, the first evaluation: that is `first_step_seen`).
    loss = svc.get(f"/runs/job-{job_id}/metrics?key=train_loss")["train_loss"]
    first_step = run["start_time"] + next(w for step, w, _ in loss if step == 1)
    return {
        "running": round(running - t0, 2),
        "started_event": round(started - t0, 2) if started else None,
        "first_step": round(first_step - t0, 2),
        "first_step_seen": round(seen - t0, 2),
        "done": round(done - t0, 2),
    }


def restart(svc: Service) -> dict:
    job_id, _ = svc.submit(["training.epochs=20", "checkpoint.every=20"])
    svc.until(lambda: any(e["kind"] == "checkpointed" for e in _run(svc, job_id).get("events", [])))
    pid = svc.get(f"/jobs/{job_id}")["pid"]
    rank1 = next(
        p
        for p in psutil.Process(pid).children(recursive=True)
        if p.environ().get("HOROVOD_RANK") == "1" and "training" in p.cmdline()
    )
    rank1.kill()
    killed = time.time()
    run, relaunched = svc.until(lambda: (r := _run(svc, job_id)) and _event(r, "restarted") and r)
    step = next(e["step"] for e in run["events"] if e["kind"] == "restarted")
    _, back = svc.until(
        lambda: (r := _run(svc, job_id)) and _event(r, "started", killed) and r["last_step"] > step
    )
    httpx.post(f"{svc.url}/jobs/{job_id}/cancel", timeout=60)
    return {
        "relaunched": round(relaunched - killed, 2),
        "back_to_training": round(back - killed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/results/startup.json")
    args = p.parse_args(argv)
    if not 1 <= args.repeats <= 10:
        p.error(f"--repeats: 1 to 10 (received: {args.repeats})")
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="easgd-startup-") as home:
        svc = Service(Path(home))
        try:
            starts = [start(svc) for _ in range(args.repeats)]
            restarts = [restart(svc) for _ in range(args.repeats)]
        finally:
            svc.stop()

    def median(rows: list[dict]) -> dict:
        return {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in rows[0]}

    result = {
        "job": {"median": median(starts), "runs": starts},
        "restart": {"median": median(restarts), "runs": restarts},
    }
    result["goals"] = [
        {
            "goal": "first step within 4 s of submit",
            "measured": result["job"]["median"]["first_step"],
            "met": result["job"]["median"]["first_step"] <= 4,
        },
        {
            "goal": "a restart back to training within 10 s",
            "measured": result["restart"]["median"]["back_to_training"],
            "met": result["restart"]["median"]["back_to_training"] <= 10,
        },
    ]
    write_timed(args.out, result, began, "bench.startup")
    print(result["job"]["median"], result["restart"]["median"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
