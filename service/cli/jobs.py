"""Job commands of `easgd`: submit and jobs, through the service's REST API."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from db.entities import JobStatus
from service import formatting as fmt
from service import workdir
from service.cli.errors import CliError
from service.client import Client
from service.settings import DEFAULT_PORT, DEFAULT_UI_PORT, http_url, is_loopback


def _client(args) -> Client:
    return Client(getattr(args, "api", None))


def _config_text(path: str | None) -> str:
    from training.schema import ConfigError, read_config_text

    if path is None:
        return ""
    if not Path(path).is_file():
        raise CliError(f"submit: no such configuration file (received: {path!r})")
    try:
        return read_config_text(path)
    except ConfigError as exc:
        raise CliError("submit: " + "; ".join(exc.problems)) from None


def upload(client: Client, directory: str, excludes: list[str]) -> str:
    """The working directory, packed and uploaded: the id a configuration's `code` takes."""
    snapshot = client.upload_code(workdir.pack(directory, excludes))
    print(
        f"uploaded {directory}: {snapshot['files']} files, {snapshot['bytes'] / 1024:.1f} KiB "
        f"({snapshot['code'][:19]}...)",
        file=sys.stderr,
    )
    return snapshot["code"]


def working_dir_args(parser) -> None:
    parser.add_argument(
        "--working-dir",
        metavar="DIR",
        help="upload DIR; the job runs in a copy of it, with it on the import path",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave files matching PATTERN out of the upload (.git, virtual environments and "
        "caches always are)",
    )


def _with_code(args, text: str, client: Client) -> dict[str, Any] | str:
    """The configuration with the uploaded working directory and the entrypoint, if given."""
    from training.schema import ConfigError, load_yaml_text
    from training.schema.script import check_argument

    entry = list(args.entrypoint or [])
    if not entry and not args.working_dir:
        return text
    try:
        data = load_yaml_text(text, args.config or "config") if text else {}
        for i, arg in enumerate(entry):
            check_argument(arg, f"the command's argument {i}")
    except (ConfigError, ValueError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        raise CliError("submit: " + "; ".join(problems)) from None
    if not isinstance(data, dict):
        raise CliError(f"submit: the configuration is not a mapping of sections ({args.config})")
    if args.working_dir:
        data["code"] = upload(client, args.working_dir, args.exclude)
    if entry:
        script = data.get("script") if isinstance(data.get("script"), dict) else {}
        data["script"] = {**script, "command": entry}
    return data


def cmd_submit(args) -> int:
    if args.config is None and not args.entrypoint:
        raise CliError(
            "submit: give a configuration file, or a command after -- (for example: easgd "
            "submit --working-dir . -- python train.py)"
        )
    client = _client(args)
    config = _with_code(args, _config_text(args.config), client)
    job = client.submit(
        config,
        args.set,
        args.workers,
        args.name,
        args.priority,
        source="cli",
    )
    for w in job.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if args.quiet:
        print(job["id"])
        return 0
    print(submitted_text(job, args.api, ui_url(client.url)))
    return 0


def ui_url(api_url: str) -> str | None:
    """Where the web UI is: $EASGD_UI_URL, else the UI `easgd up` starts beside a service on
    this machine, if one answers there now (a short look, on loopback only); None when
    unknown."""
    if explicit := os.environ.get("EASGD_UI_URL", "").strip():
        return explicit.rstrip("/")
    host = urlsplit(api_url).hostname or ""
    if not is_loopback(host):
        return None
    try:
        port = int(os.environ.get("EASGD_UI_PORT") or DEFAULT_UI_PORT)
        url = http_url(host, port)
        answer = httpx.get(f"{url}/_stcore/health", timeout=0.5)
    except (ValueError, httpx.HTTPError):
        return None
    return url if answer.status_code == 200 and answer.text.strip() == "ok" else None


def submitted_text(job: dict[str, Any], api: str | None, ui: str | None) -> str:
    """What `easgd submit` says: the job, the run it becomes, and where to follow it, as
    commands to paste (with the --api they were given) and the UI's Jobs page when known."""
    n = job["id"]
    extra = f" --api {shlex.quote(api)}" if api else ""
    lines = [
        f"job {n} {job.get('status', 'queued')} ({job['workers']} workers): it becomes run job-{n}",
        f"  follow its log:  easgd jobs logs {n} --follow{extra}",
        f"  its state:       easgd jobs show {n}{extra}",
    ]
    if ui:
        lines.append(f"  in the UI:       {ui}/jobs?job={n}")
    return "\n".join(lines)


def cmd_jobs_list(args) -> int:
    jobs = _client(args).jobs(args.status)
    if args.format == "json":
        print(fmt.dumps(jobs))
        return 0
    if not jobs:
        print("no jobs. Submit one with: easgd submit configs/lenet-mnist5k-eamsgd.yaml")
        return 0
    print(
        fmt.table(
            ["id", "name", "status", "workers", "hosts", "run", "created", "ended"],
            [
                [
                    j["id"],
                    j["name"] or "-",
                    j["status"],
                    j["workers"],
                    j["hosts"] or "-",
                    j["run_id"] or "-",
                    fmt.when(j["created_at"]),
                    fmt.when(j["ended_at"]),
                ]
                for j in jobs
            ],
        )
    )
    return 0


def cmd_jobs_show(args) -> int:
    j = _client(args).job(args.job_id)
    if args.format == "json":
        print(fmt.dumps(j))
        return 0
    for key in (
        "id",
        "name",
        "status",
        "workers",
        "hosts",
        "gpus",
        "run_id",
        "run_dir",
        "log_path",
        "pid",
        "exit_code",
    ):
        print(f"{key:10s}{fmt.printable(str(j[key])) if j[key] is not None else '-'}")
    if j.get("scheduler_job"):  # a batch scheduler's job, and what it last said of it
        said = f"{j['scheduler_job']}: {j.get('scheduler_state') or 'submitted'}"
        print(f"{'scheduler':10s}{fmt.printable(said)}")
    print(
        f"{'created':10s}{fmt.when(j['created_at'])}   started {fmt.when(j['started_at'])}   "
        f"ended {fmt.when(j['ended_at'])}"
    )
    if j["message"]:
        # The message spans lines (the log's tail); each line is escaped on its own.
        print("message\n" + "\n".join(fmt.printable(x) for x in j["message"].splitlines()))
    return 0


def cmd_jobs_logs(args) -> int:
    client = _client(args)
    if args.follow:
        for chunk in client.follow_logs(args.job_id, args.tail):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        return 0
    sys.stdout.write(client.logs(args.job_id, args.tail))
    return 0


def cmd_jobs_cancel(args) -> int:
    j = _client(args).cancel(args.job_id)
    print(f"job {j['id']}: {j['status']}")
    return 0


def cmd_jobs_checkpoint(args) -> int:
    j = _client(args).checkpoint(args.job_id)
    print(f"job {j['id']}: checkpoint asked for (at its next step boundary)")
    return 0


def cmd_jobs_scale(args) -> int:
    j = _client(args).scale(args.job_id, args.workers)
    print(f"job {j['id']}: {j['message']}")
    return 0


def api_arg(p) -> None:
    p.add_argument(
        "--api",
        help=f"service URL (default: $EASGD_API_URL or http://127.0.0.1:{DEFAULT_PORT})",
    )


def add_commands(sub, add) -> None:
    sb = add(sub, "submit", cmd_submit, "queue a training job; says how to follow it (-q: its id)")
    sb.usage = (
        "easgd submit [CONFIG] [--working-dir DIR] [--exclude PATTERN] [--workers N] "
        "[--set KEY.PATH=VALUE] [--name NAME] [--priority P] [-q] [--api URL] [-- COMMAND ...]"
    )
    sb.add_argument(
        "config", nargs="?", help="experiment YAML file (optional with a command after --)"
    )
    working_dir_args(sb)
    sb.add_argument("--workers", type=int, help="ranks (overrides resources.workers)")
    sb.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    sb.add_argument("--name")
    sb.add_argument("--priority", type=int, default=0)
    sb.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the job's id, for scripts: JOB=$(easgd submit -q job.yaml)",
    )
    api_arg(sb)

    jobs = sub.add_parser(
        "jobs", help="list, show, follow, cancel, checkpoint and scale jobs"
    ).add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    ls = add(jobs, "list", cmd_jobs_list, "recent jobs")
    ls.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in JobStatus],
    )
    ls.add_argument("--format", choices=["table", "json"], default="table")
    api_arg(ls)
    sh = add(jobs, "show", cmd_jobs_show, "one job")
    sh.add_argument("job_id", type=int)
    sh.add_argument("--format", choices=["text", "json"], default="text")
    api_arg(sh)
    lg = add(jobs, "logs", cmd_jobs_logs, "a job's log")
    lg.add_argument("job_id", type=int)
    lg.add_argument("--tail", type=int, default=200)
    lg.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    api_arg(lg)
    cn = add(jobs, "cancel", cmd_jobs_cancel, "cancel a queued or running job")
    cn.add_argument("job_id", type=int)
    api_arg(cn)
    ck = add(jobs, "checkpoint", cmd_jobs_checkpoint, "checkpoint a running job now")
    ck.add_argument("job_id", type=int)
    api_arg(ck)
    sc = add(jobs, "scale", cmd_jobs_scale, "checkpoint a running job, relaunch it with N workers")
    sc.add_argument("job_id", type=int)
    sc.add_argument("--workers", type=int, required=True)
    api_arg(sc)
