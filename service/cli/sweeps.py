"""Sweep commands of `easgd`: create, list, show and stop, through the service's REST API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from db.entities import SweepStatus
from service import formatting as fmt
from service.cli.errors import CliError
from service.cli.jobs import api_arg, upload, working_dir_args
from service.client import Client


def _client(args) -> Client:
    return Client(args.api)


def _read(path: Path, what: str) -> str:
    from training.schema import ConfigError, read_config_text

    if not path.is_file():
        raise CliError(f"{what}: no such file (received: {str(path)!r})")
    try:
        return read_config_text(path)
    except ConfigError as exc:
        raise CliError(f"{what}: " + "; ".join(exc.problems)) from None


def cmd_create(args) -> int:
    """The file goes as written; a base named by path (--base, else the file's `base:`,
    relative to the file) is read here and sent with it, since the service reads no path."""
    from service.sweeps.spec import SweepError
    from training.schema import ConfigError, load_yaml_text

    sweep_file = Path(args.file)
    text = _read(sweep_file, "sweep create")
    try:
        data = load_yaml_text(text, str(sweep_file))
    except ConfigError as exc:
        raise SweepError(exc.problems) from None
    base: str | dict[str, Any] | None = None
    if args.base:
        base = _read(Path(args.base), "--base")
    elif isinstance(data, dict) and isinstance(data.get("base"), str):
        base = _read(sweep_file.parent / data["base"], "base (relative to the sweep file)")
    client = _client(args)
    if args.working_dir:  # every trial runs in a copy of it
        if base is None:
            raise CliError(
                "sweep create: --working-dir needs a base configuration (--base, or base:)"
            )
        try:
            base = load_yaml_text(base, "base")
        except ConfigError as exc:
            raise SweepError(exc.problems) from None
        if not isinstance(base, dict):
            raise CliError("sweep create: the base configuration is not a mapping of sections")
        base["code"] = upload(client, args.working_dir, args.exclude)
    sweep = client.create_sweep(text, base, source="cli")
    for w in sweep.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(sweep["id"])
    return 0


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int | float):
        return fmt.number(v)
    return v if isinstance(v, str) else json.dumps(v)


def _best(sweep: dict[str, Any]) -> dict[str, Any] | None:
    return next((t for t in sweep["trials"] if t["number"] == sweep["best_trial"]), None)


def cmd_list(args) -> int:
    sweeps = _client(args).sweeps(args.status)
    if args.format == "json":
        print(fmt.dumps(sweeps))
        return 0
    if not sweeps and args.status:
        print(f"no sweep is {' or '.join(args.status)}")
        return 0
    if not sweeps:
        print("no sweeps. Start one with: easgd sweep create configs/sweep-digits-random.yaml")
        return 0
    rows = []
    for s in sweeps:
        best = _best(s)
        running = sum(t["state"] in ("queued", "running") for t in s["trials"])
        rows.append(
            [
                s["id"],
                s["name"] or "-",
                s["method"],
                s["status"],
                f"{len(s['trials'])}/{s['run_cap']}",
                running,
                f"{s['metric']} {fmt.number(best['value'])} (trial {best['number']})"
                if best
                else "-",
                fmt.when(s["created_at"]),
            ]
        )
    headers = ["id", "name", "method", "status", "trials", "active", "best", "created"]
    print(fmt.table(headers, rows))
    return 0


def cmd_show(args) -> int:
    s = _client(args).sweep(args.sweep_id)
    if args.format == "json":
        print(fmt.dumps(s))
        return 0
    stopping = s["spec"].get("early_terminate")
    print(f"sweep {s['id']}: {fmt.printable(s['name'] or '-')} ({s['method']}, seed {s['seed']})")
    print(
        f"{'status':10s}{s['status']}"
        + (f": {fmt.printable(s['message'])}" if s["message"] else "")
    )
    print(f"{'metric':10s}{s['metric']} ({s['goal']})")
    print(
        f"{'trials':10s}{len(s['trials'])} of {s['run_cap']}, {s['concurrency']} at a time; "
        f"early stopping: {stopping['type'] if stopping else 'none'}"
    )
    print(f"{'created':10s}{fmt.when(s['created_at'])}   ended {fmt.when(s['ended_at'])}")
    if not s["trials"]:
        print("\nno trial yet")
        return 0
    paths = sorted({p for t in s["trials"] for p in t["params"]})
    rows = [
        [
            t["number"],
            t["state"],
            t["job_id"],
            t["run_id"],
            *[_value(t["params"].get(p)) for p in paths],
            fmt.number(t["value"]),
        ]
        for t in s["trials"]
    ]
    print()
    print(fmt.table(["trial", "state", "job", "run", *paths, s["metric"]], rows))
    notes = [t for t in s["trials"] if t["message"]]
    if notes:
        print()
        for t in notes:
            what = "stopping" if t["state"] == "running" else t["state"]
            print(f"trial {t['number']} {what}: {fmt.printable(t['message'])}")
    best = _best(s)
    print()
    if best is None:
        print("best: none yet (no trial has succeeded)")
    else:
        settings = ", ".join(f"{p}={_value(v)}" for p, v in sorted(best["params"].items()))
        print(
            f"best: trial {best['number']} (job {best['job_id']}, run {best['run_id']}): "
            f"{s['metric']} {fmt.number(best['value'])} with {settings}"
        )
    return 0


def cmd_stop(args) -> int:
    s = _client(args).stop_sweep(args.sweep_id)
    what = "stop requested" if s["status"] == "running" else s["status"]
    print(f"sweep {s['id']}: {what}")
    return 0


def sweep_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(
            f"a sweep id: a whole number from 1, as `easgd sweep list` shows (received: {text!r})"
        )
    return value


def add_commands(sub, add) -> None:
    sweep = sub.add_parser(
        "sweep", help="hyperparameter sweeps: create, list, show and stop"
    ).add_subparsers(dest="sweep_command", required=True, metavar="ACTION")
    cr = add(sweep, "create", cmd_create, "start a sweep from a sweep file; prints its id")
    cr.add_argument("file", help="sweep YAML file (W&B's keys)")
    cr.add_argument("--base", help="base configuration YAML (default: the file's base:)")
    working_dir_args(cr)
    api_arg(cr)
    ls = add(sweep, "list", cmd_list, "sweeps, newest first")
    ls.add_argument("--status", action="append", choices=[s.value for s in SweepStatus])
    ls.add_argument("--format", choices=["table", "json"], default="table")
    api_arg(ls)
    sh = add(sweep, "show", cmd_show, "one sweep: its trials, their metric, and the best")
    sh.add_argument("sweep_id", type=sweep_id)
    sh.add_argument("--format", choices=["text", "json"], default="text")
    api_arg(sh)
    st = add(sweep, "stop", cmd_stop, "stop a sweep: no new trial, its running trials cancelled")
    st.add_argument("sweep_id", type=sweep_id)
    api_arg(st)
