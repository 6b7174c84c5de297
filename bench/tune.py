"""The benchmark's learning rates, chosen the same way for every algorithm, as the paper does, by
the product's own sweeps.

    python -m bench.tune [--workloads lenet,mlp] [--algorithms sync,...] [--seed 1] [--rounds 2]
                         [--api URL] [--out bench/results/tune.json]
    python -m bench.tune --workloads mlp --algorithms easgd --grid-limit 2 --max-steps 30

Every algorithm of `bench.run` is tried over one grid on each workload, on loopback with the
benchmark's ranks, tau, data and step budget, but on a tuning seed (1), not the benchmark's (7),
so that the figures it reports are not the ones the choice was made on. The momentum methods
(`sync` with Nesterov momentum, `eamsgd`) share one grid of (momentum, learning rate), the plain
SGD ones (`easgd`, `downpour`, `localsgd`) another. The choice: the fewest steps to the
workload's target center test accuracy, then the best accuracy; a choice at an end of the grid
widens it by a factor of 2 (`--rounds` times at most). The record it writes (every run's
outcome, the choice, and the sweeps that ran them) is what `bench.run` reads its settings from.

The trials are those of `method: grid` sweeps of the job service, so that tuning exercises the
machinery users tune with, and its runs and sweeps stay in the store (`easgd sweep list`, the
UI's Sweeps page). Without `--api`, the command starts `easgd serve` on the user's EASGD_HOME
with 2 slots (one trial of 2 ranks at a time) and stops it at the end; with `--api URL` it uses
that service, which must share the store bench.tune reads (EASGD_HOME or EASGD_DB_URL), since
each trial's figures come from its run's metrics.jsonl, found through the store. Each sweep is
one workload, one algorithm and, for a momentum method, one momentum: a grid over momentum and
learning rate would cross every rate with every momentum, where the grid ties each momentum to
its own rates. So a momentum method gets one sweep per momentum (`optimizer.momentum` as a
constant parameter, `optimizer.learning_rate` over that momentum's rates), a plain SGD method one
sweep over its rates; a widening is a sweep of the one new rate. Sweeps run at concurrency 1,
metric center_accuracy (maximize), with no early termination: steps to the target need whole
curves. A trial's value in the sweep (its last center accuracy) is not the choice: bench.tune
applies its own rule to the runs' curves.

A setting some sweep already ran to its end with the same configuration (every field but the
name and tags, defaults filled in) is not trained again: that trial's run is read instead, and
the record names the sweep it came from. Runs of the tuner from before it used sweeps (named
`tune-<workload>-...` by their configuration) are not reused.

`--grid-limit`, `--max-steps` and `--target` make a quick tuning for trying the command: its
sweeps' names end in `-quick`, and its record goes to bench/results/tune-work/quick.json unless
`--out` says otherwise, so that the benchmark's own record is not replaced by it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from bench.harness import (
    NAMES,
    RANKS,
    TAU,
    TUNED,
    WORKLOADS,
    config_for,
    outcome,
    write_timed,
)
from db.entities import TrialState
from db.errors import EasgdError, NotFound
from db.store import Store
from service.client import ApiError, Client
from service.processes import die_with_parent
from service.sweeps.spec import with_values
from training.schema import SEED_MAX, ConfigError, parse_config
from training.schema.algorithms import REGISTRY

MOMENTUM_GRID = ((0.99, 0.002), (0.99, 0.005), (0.9, 0.02), (0.9, 0.05), (0.9, 0.1))
SGD_GRID = (0.02, 0.05, 0.1, 0.2)
# What the record keeps of each run tried.
TRIED_FIGURES = ("run_id", "steps_to_target", "best_accuracy", "final_accuracy")
OUT = TUNED
QUICK_OUT = TUNED.parent / "tune-work" / "quick.json"
METRIC = "center_accuracy"
POLL_SECONDS = 2.0


class TuneError(Exception):
    """What stops the tuning, said in one line."""


def candidates(algorithm: str) -> list[dict]:
    if algorithm in ("sync", "eamsgd"):
        inner = {"tau": TAU} if REGISTRY[algorithm].periodic else {"inner": "nesterov"}
        return [
            {"algorithm": algorithm, "learning_rate": lr, "momentum": m, **inner}
            for m, lr in MOMENTUM_GRID
        ]
    return [{"algorithm": algorithm, "learning_rate": lr, "tau": TAU} for lr in SGD_GRID]


def choose(tried: list[dict]) -> dict | None:
    ok = [t for t in tried if t["best_accuracy"] is not None]
    if not ok:
        return None
    return min(
        ok,
        key=lambda t: (
            t["steps_to_target"] is None,
            t["steps_to_target"] or 0,
            -t["best_accuracy"],
        ),
    )


def widen(chosen: dict, tried: list[dict]) -> dict | None:
    """When the choice sits at an end of the learning rates tried (at its momentum), the grid did
    not bracket the best: the next candidate goes one factor of 2 further out."""
    momentum = chosen.get("momentum")
    rates = sorted(
        t["optimizer"]["learning_rate"] for t in tried if t["optimizer"].get("momentum") == momentum
    )
    lr = chosen["learning_rate"]
    if len(rates) < 2 or lr not in (rates[0], rates[-1]):
        return None
    return {**chosen, "learning_rate": lr * 2 if lr == rates[-1] else lr / 2}


def grid_groups(optimizers: list[dict]) -> list[list[dict]]:
    """The settings one grid sweep can try: those that differ in the learning rate alone."""
    groups: dict[str, list[dict]] = {}
    for opt in optimizers:
        rest = {k: v for k, v in opt.items() if k != "learning_rate"}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(opt)
    return list(groups.values())


class Tuning:
    """One workload's tuning settings: what a trial's configuration and figures depend on."""

    def __init__(
        self,
        workload: str,
        seed: int,
        max_steps: int | None = None,
        target: float | None = None,
        quick: bool = False,
    ):
        self.workload, self.seed, self.max_steps, self.quick = workload, seed, max_steps, quick
        self.target = WORKLOADS[workload]["target"] if target is None else target

    def config(self, algorithm: str, optimizer: dict) -> dict:
        cfg = config_for(self.workload, algorithm, optimizer, seed=self.seed)
        if self.max_steps is not None:
            cfg["training"]["max_steps"] = self.max_steps
        return cfg

    def sweep(self, algorithm: str, group: list[dict], round_: int) -> tuple[dict, dict]:
        """The sweep file and base configuration that try `group` (one momentum's rates)."""
        first = group[0]
        name = f"tune-{self.workload}-{algorithm}-s{self.seed}"
        parameters: dict[str, Any] = {
            "optimizer.learning_rate": {"values": [o["learning_rate"] for o in group]}
        }
        if "momentum" in first:
            name += f"-m{first['momentum']:g}"
            parameters["optimizer.momentum"] = {"value": first["momentum"]}
        if round_:
            name += f"-widen{round_}"
        if self.quick:  # told apart from the benchmark's own on the Sweeps page
            name += "-quick"
        spec = {
            "name": name,
            "description": (
                f"bench.tune: {algorithm} on {self.workload}, seed {self.seed}; chosen by the "
                f"fewest steps to center accuracy {self.target:g}, then the best accuracy"
            ),
            "method": "grid",
            "metric": {"name": METRIC, "goal": "maximize"},
            "parameters": parameters,
            "concurrency": 1,
            "seed": self.seed,
        }
        return spec, self.config(algorithm, first)


def config_key(cfg: dict) -> str | None:
    """What makes two runs the same training: the whole configuration with its defaults, less
    its name and tags (a trial's job names its run and tags it with its sweep)."""
    try:
        full = parse_config(cfg).to_dict()
    except ConfigError:
        return None
    return json.dumps({k: v for k, v in full.items() if k not in ("name", "tags")}, sort_keys=True)


def finished_trials(store: Store) -> dict[str, tuple[int, int, str]]:
    """Every configuration some sweep's trial ran to its end and whose run's metrics.jsonl is
    still here: (sweep, trial, run id), the newest sweep's where several did."""
    out: dict[str, tuple[int, int, str]] = {}
    for sweep in store.list_sweeps(limit=100000):
        runs = store.get_runs([t.run_id for t in sweep.trials if t.run_id])
        for t in sweep.trials:
            if t.state is not TrialState.SUCCEEDED or t.run_id not in runs:
                continue
            # A run deleted since, or whose directory is gone, is trained again.
            run_dir = runs[t.run_id].run_dir
            if not run_dir or not (Path(run_dir) / "metrics.jsonl").is_file():
                continue
            try:
                key = config_key(with_values(sweep.base_config, t.params))
            except EasgdError:
                continue
            if key is not None:
                out.setdefault(key, (sweep.id, t.number, t.run_id))
    return out


def figures(store: Store, run_id: str | None, algorithm: str, target: float) -> dict:
    """TRIED_FIGURES of one trial's run, from its metrics.jsonl: None for a trial that never had a
    run, or whose run wrote nothing."""
    none = {k: None for k in TRIED_FIGURES} | {"run_id": run_id}
    if not run_id:
        return none
    try:
        run_dir = store.get_run(run_id).run_dir
    except NotFound:
        return none
    if not run_dir:
        return none
    if not Path(run_dir).is_dir():
        raise TuneError(
            f"run {run_id}: its directory is not on this machine (received: {run_dir}); "
            "bench.tune reads each trial's metrics.jsonl, so it needs the service's runs here"
        )
    o = outcome(Path(run_dir), algorithm, target)
    return {k: o[k] for k in TRIED_FIGURES} | {"run_id": run_id}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _detached() -> None:
    """The service in a session of its own, so that a Ctrl-C reaches bench.tune alone, which
    stops its sweeps before it stops the service; and sent SIGTERM if bench.tune is killed
    outright."""
    os.setsid()
    die_with_parent()


@contextlib.contextmanager
def job_service(log: Path) -> Iterator[str]:
    """`easgd serve` on this machine's store, with the slots of one trial; its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--slots", str(RANKS)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            preexec_fn=_detached,
        )
    try:
        client = Client(url, timeout=5)
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
                raise TuneError(
                    f"the job service did not start: {last} (its log: {log}); to use a service "
                    "that is running already, pass --api URL"
                )
            try:
                client.health()
                break
            except ApiError:
                if time.time() > deadline:
                    raise TuneError(
                        f"the job service did not answer at {url} (its log: {log})"
                    ) from None
                time.sleep(0.3)
        print(f"tune: started the job service at {url} (its log: {log})", flush=True)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Tuner:
    def __init__(self, client: Client, store: Store, rounds: int, grid_limit: int | None):
        self.client, self.store = client, store
        self.rounds, self.grid_limit = rounds, grid_limit
        self.created: list[int] = []

    def workload(self, tuning: Tuning, algorithms: list[str]) -> dict:
        tried: dict[str, list[dict]] = {a: [] for a in algorithms}
        pending = {a: candidates(a)[: self.grid_limit] for a in algorithms}
        for round_ in range(1 + self.rounds):
            known = finished_trials(self.store)
            # Each setting's entry at its place in the grid: choose() takes the first of equals.
            entries: dict[str, list[dict | None]] = {a: [None] * len(o) for a, o in pending.items()}
            started: list[tuple[str, int, list[dict]]] = []
            for a, optimizers in pending.items():
                fresh = []
                for i, opt in enumerate(optimizers):
                    found = known.get(config_key(tuning.config(a, opt)) or "")
                    if found is None:
                        fresh.append(opt)
                        continue
                    sweep_id, number, run_id = found
                    entries[a][i] = self._entry(tuning, a, opt, run_id, sweep_id, number)
                    print(
                        f"tune: {tuning.workload} {a}: lr {opt['learning_rate']:g} ran already "
                        f"(sweep {sweep_id}, trial {number}, run {run_id})",
                        flush=True,
                    )
                for group in grid_groups(fresh):
                    spec, base = tuning.sweep(a, group, round_)
                    sweep = self.client.create_sweep(spec, base, source="bench")
                    self.created.append(sweep["id"])
                    self._same_store(sweep)
                    started.append((a, sweep["id"], group))
                    rates = ", ".join(f"{o['learning_rate']:g}" for o in group)
                    print(
                        f"tune: {tuning.workload} {a}: sweep {sweep['id']} ({spec['name']}), "
                        f"lr {rates}",
                        flush=True,
                    )
            ended = self.wait([sweep_id for _, sweep_id, _ in started])
            for a, sweep_id, group in started:
                by_rate = {o["learning_rate"]: o for o in group}
                for t in ended[sweep_id]["trials"]:
                    opt = by_rate[t["params"]["optimizer.learning_rate"]]
                    entry = self._entry(tuning, a, opt, t["run_id"], sweep_id, t["number"])
                    entries[a][pending[a].index(opt)] = entry
            for a, round_entries in entries.items():
                tried[a] += [e for e in round_entries if e is not None]
            pending = {}
            for a, runs in tried.items():
                best = choose(runs)
                wider = widen(best["optimizer"], runs) if best else None
                if wider:
                    pending[a] = [wider]
            if not pending:
                break
        for a, runs in tried.items():
            print(f"tune: {tuning.workload} {a}: {_said(choose(runs), tuning.target)}", flush=True)
        # A record with no choice for an algorithm would fail `make bench` later, less clearly.
        lost = {a: runs for a, runs in tried.items() if choose(runs) is None}
        if lost:
            sweeps = sorted({t["sweep"] for runs in lost.values() for t in runs})
            raise TuneError(
                f"no trial of {', '.join(lost)} on {tuning.workload} recorded a center accuracy, "
                f"so there is nothing to choose; see `easgd sweep show ID` for sweeps "
                f"{', '.join(map(str, sweeps))} (their jobs' logs say why)"
            )
        return {
            "target": tuning.target,
            "chosen": {a: choose(t)["optimizer"] for a, t in tried.items()},
            "tried": tried,
            "sweeps": {a: sorted({t["sweep"] for t in runs}) for a, runs in tried.items()},
        }

    def _same_store(self, sweep: dict) -> None:
        """The trials' runs are read from this store: a service on another would leave them
        unread, and the choice made on nothing."""
        try:
            mine = self.store.get_sweep(sweep["id"])
        except NotFound:
            mine = None
        if mine is None or (mine.name, mine.created_at) != (sweep["name"], sweep["created_at"]):
            raise TuneError(
                f"the service at {self.client.url} keeps its sweeps in another store than the "
                "one bench.tune reads the trials' runs from; give both the same EASGD_HOME or "
                f"EASGD_DB_URL (received: this store {self.store.display_url})"
            )

    def _entry(
        self, tuning: Tuning, algorithm: str, opt: dict, run_id: str | None, sweep: int, trial: int
    ) -> dict:
        f = figures(self.store, run_id, algorithm, tuning.target)
        return {"optimizer": opt, **f, "sweep": sweep, "trial": trial}

    def wait(self, sweep_ids: list[int]) -> dict[int, dict]:
        """Each sweep as it ended, once all have."""
        ended: dict[int, dict] = {}
        while len(ended) < len(sweep_ids):
            for sweep_id in sweep_ids:
                if sweep_id in ended:
                    continue
                sweep = self.client.sweep(sweep_id)
                if sweep["status"] == "running":
                    continue
                print(f"tune: sweep {sweep_id} {sweep['status']}: {sweep['message']}", flush=True)
                if sweep["status"] != "finished":
                    raise TuneError(
                        f"sweep {sweep_id} ended {sweep['status']} ({sweep['message']}): the "
                        "choice needs all of its trials; run bench.tune again (what ran to its "
                        "end is not trained again)"
                    )
                ended[sweep_id] = sweep
            if len(ended) < len(sweep_ids):
                time.sleep(POLL_SECONDS)
        return ended

    def stop_running(self, timeout: float = 120) -> list[int]:
        """Stop the sweeps this tuning started that still run, and wait for their jobs to end:
        a service that stops leaves its jobs running."""
        stopped = []
        for sweep_id in self.created:
            with contextlib.suppress(ApiError):
                if self.client.sweep(sweep_id)["status"] == "running":
                    self.client.stop_sweep(sweep_id)
                    stopped.append(sweep_id)
        deadline = time.time() + timeout
        for sweep_id in stopped:
            with contextlib.suppress(ApiError):
                while self.client.sweep(sweep_id)["status"] == "running":
                    if time.time() > deadline:
                        break
                    time.sleep(POLL_SECONDS)
        return stopped


def _said(chosen: dict | None, target: float) -> str:
    if chosen is None:
        return "no choice: no run recorded an accuracy"
    steps = chosen["steps_to_target"]
    reached = f"{steps} steps to {target:g}" if steps is not None else f"{target:g} not reached"
    return (
        f"{json.dumps(chosen['optimizer'])}: {reached}, best {chosen['best_accuracy']}, "
        f"final {chosen['final_accuracy']} (sweep {chosen['sweep']}, trial {chosen['trial']}, "
        f"run {chosen['run_id']})"
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _names(text: str, known: tuple[str, ...] | dict, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise TuneError(f"{flag}: choose from {', '.join(known)} (received: {text!r})")
    return list(dict.fromkeys(names))


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise TuneError(f"{name}: a positive integer (received: {value})")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m bench.tune")
    p.add_argument("--workloads", default="lenet,mlp")
    p.add_argument("--algorithms", default=",".join(NAMES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="widenings of the grid at most")
    p.add_argument("--api", help="a running job service to sweep with (default: start one)")
    p.add_argument(
        "--out",
        help="the record (default: bench/results/tune.json; bench/results/tune-work/quick.json "
        "for a quick tuning)",
    )
    quick = p.add_argument_group("a quick tuning, to try the command")
    quick.add_argument("--grid-limit", type=int, help="the first N settings of each grid")
    quick.add_argument("--max-steps", type=int, help="training.max_steps of every trial")
    quick.add_argument("--target", type=float, help="the center accuracy to reach")
    args = p.parse_args(argv)
    try:
        return _tune(args)
    except TuneError as exc:
        print(f"{p.prog}: {exc}", file=sys.stderr)
        return 2
    except EasgdError as exc:  # the service's or the store's refusal, said as they say it
        print(f"{p.prog}: {exc.cli_message()}", file=sys.stderr)
        return exc.exit_code


def _tune(args: argparse.Namespace) -> int:
    workloads = _names(args.workloads, WORKLOADS, "--workloads")
    algorithms = _names(args.algorithms, NAMES, "--algorithms")
    if not 0 <= args.seed <= SEED_MAX:
        raise TuneError(f"--seed: an integer from 0 to {SEED_MAX} (received: {args.seed})")
    if args.rounds < 0:
        raise TuneError(f"--rounds: 0 or more (received: {args.rounds})")
    _positive("--grid-limit", args.grid_limit)
    _positive("--max-steps", args.max_steps)
    if args.target is not None and not 0 < args.target <= 1:
        raise TuneError(f"--target: an accuracy above 0, at most 1 (received: {args.target})")
    reduced = {
        k: v
        for k, v in (
            ("grid_limit", args.grid_limit),
            ("max_steps", args.max_steps),
            ("target", args.target),
        )
        if v is not None
    }
    out = Path(args.out or (QUICK_OUT if reduced else OUT))
    if out.is_dir():
        raise TuneError(f"--out: a file to write, not a directory (received: {out})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TuneError(
            f"--out: cannot make its directory ({exc.strerror}) (received: {out})"
        ) from None
    store = Store()
    store.init()
    started = time.time()
    result: dict = {"seed": args.seed, "ranks": RANKS, "tau": TAU, "workloads": {}}
    if reduced:
        result["reduced"] = reduced
    with contextlib.ExitStack() as stack:
        url = args.api or stack.enter_context(job_service(QUICK_OUT.parent / "service.log"))
        tuner = Tuner(Client(url), store, args.rounds, args.grid_limit)
        try:
            for wl in workloads:
                tuning = Tuning(wl, args.seed, args.max_steps, args.target, bool(reduced))
                result["workloads"][wl] = tuner.workload(tuning, algorithms)
        except BaseException:
            stopped = tuner.stop_running()
            if stopped:
                print(f"tune: stopped sweeps {', '.join(map(str, stopped))}", file=sys.stderr)
            raise
    write_timed(out, result, started, "tune")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a `timeout`, a cancelled CI job) as Ctrl-C: the running sweeps are stopped and
    the service with them, not left running in the store with their jobs orphaned."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
