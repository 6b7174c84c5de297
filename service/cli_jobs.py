"""Job commands of `easgd`: serve, submit, jobs, up."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service import formatting as fmt
from service.client import ApiError, Client
from service.settings import (
    DEFAULT_PORT,
    DEFAULT_UI_PORT,
    ServiceSettings,
    SettingsError,
    http_url,
    parse_hosts,
)


def _client(args) -> Client:
    return Client(getattr(args, "api", None))


def _settings(args) -> ServiceSettings:
    try:
        hosts = parse_hosts(args.hosts) if args.hosts else None
        s = ServiceSettings.from_env(
            host=args.host, port=args.port, hosts=hosts, db_url=getattr(args, "db_url", None)
        )
        if args.slots:
            s.hosts = {"localhost": args.slots}
        s.check()
        return s
    except SettingsError as exc:
        from service.cli import CliError

        raise CliError(str(exc)) from None


def cmd_serve(args) -> int:
    import uvicorn

    from service.api import create_app
    from service.cli import CliError
    from service.supervisor import SchedulerBusy

    settings = _settings(args)
    # The port is taken before the store is touched: a second service on the same address must
    # not reconcile or launch anything before it finds the first one there. Then the store's
    # scheduler lease, before reconciling: one scheduler per store.
    sock = _bind(settings.host, settings.port)
    app = create_app(settings)
    try:
        app.state.store.init()
        app.state.supervisor.acquire_lease()
    except SchedulerBusy as exc:
        sock.close()
        raise CliError(str(exc)) from None
    print(
        f"easgd service: listening on {settings.url} "
        f"(store {app.state.store.display_url}, {settings.slots} slots)",
        flush=True,
    )
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        app.state.supervisor.stop()  # hands the lease back, even if start-up failed
    return 0


def _bind(host: str, port: int) -> socket.socket:
    from service.cli import CliError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(
            f"cannot listen on {host}:{port} ({exc.strerror}): another easgd service may be "
            f"running there (try `easgd jobs list --api {http_url(host, port)}`); stop it, or "
            "choose another --port"
        ) from None
    return sock


def _die_with_parent() -> None:
    """Run in `easgd up`'s children: if `easgd up` is killed outright, they get SIGTERM instead
    of living on and holding its ports (Linux; jobs are unaffected, the flag is not inherited)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cmd_submit(args) -> int:
    from service.cli import CliError
    from training.config import ConfigError, read_config_text

    if not Path(args.config).is_file():
        raise CliError(f"submit: no such configuration file (received: {args.config!r})")
    try:
        text = read_config_text(args.config)
    except ConfigError as exc:
        raise CliError("submit: " + "; ".join(exc.problems)) from None
    job = _client(args).submit(
        text,
        args.set,
        args.workers,
        args.name,
        args.priority,
        source="cli",
    )
    for w in job.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(job["id"])
    return 0


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


_preexec = _die_with_parent if sys.platform.startswith("linux") else None


def cmd_up(args) -> int:
    """The service and the UI together on loopback, with the embedded SQLite store."""
    from db.store import Store

    settings = _settings(args)
    store = Store(getattr(args, "db_url", None))
    store.init()
    env = {**os.environ, "EASGD_API_URL": settings.local_url}
    if getattr(args, "db_url", None):
        env["EASGD_DB_URL"] = args.db_url
    children = []
    serve = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]
    if args.slots:
        serve += ["--slots", str(args.slots)]
    children.append(subprocess.Popen(serve, env=env, preexec_fn=_preexec))
    ui_app = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    ui_url = None
    if ui_app.exists() and not args.no_ui:
        ui_url = http_url(args.ui_host, args.ui_port)
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    str(ui_app),
                    "--server.address",
                    args.ui_host,
                    "--server.port",
                    str(args.ui_port),
                    "--server.headless",
                    "true",
                    "--browser.gatherUsageStats",
                    "false",
                ],
                env=env,
                preexec_fn=_preexec,
            )
        )
    client = Client(env["EASGD_API_URL"])
    for _ in range(120):
        try:
            client.health()
            break
        except ApiError:
            if children[0].poll() is not None:  # the service refused to start; it said why
                for c in children[1:]:
                    c.terminate()
                    c.wait(timeout=15)
                return children[0].returncode or 1
            time.sleep(0.5)
    print(
        f"easgd: service at {settings.url} (API docs: {settings.url}/docs)",
        flush=True,
    )
    if ui_url:
        print(f"easgd: UI at {ui_url}", flush=True)
    print("easgd: press Ctrl-C to stop (running jobs are adopted by the next start)", flush=True)

    def stop(*_):
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)
        for c in children:
            try:
                c.wait(timeout=15)
            except subprocess.TimeoutExpired:
                c.kill()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(c.poll() is None for c in children):
            time.sleep(1)
    except KeyboardInterrupt:
        stop()
    stop()
    return 1


def add_commands(sub, add) -> None:
    def server_args(p):
        p.add_argument(
            "--host",
            default=os.environ.get("EASGD_HOST", "127.0.0.1"),
            help="address to listen on (beyond loopback needs EASGD_API_TOKEN)",
        )
        p.add_argument("--port", type=int, default=int(os.environ.get("EASGD_PORT", DEFAULT_PORT)))
        p.add_argument(
            "--slots",
            type=int,
            help="ranks that may run at once on localhost "
            "(default: $EASGD_SLOTS or the number of CPUs)",
        )
        p.add_argument(
            "--hosts", help="horovodrun hosts and slots, e.g. h1:4,h2:4 (default: localhost)"
        )

    serve = add(sub, "serve", cmd_serve, "run the job service (REST API and scheduler)")
    server_args(serve)
    up = add(sub, "up", cmd_up, "start the service and the UI on loopback")
    server_args(up)
    up.add_argument(
        "--ui-port", type=int, default=int(os.environ.get("EASGD_UI_PORT", DEFAULT_UI_PORT))
    )
    up.add_argument(
        "--ui-host",
        default="127.0.0.1",
        help="address of the UI (it has no login: keep it on a trusted network)",
    )
    up.add_argument("--no-ui", action="store_true", help="start only the service")

    def api_arg(p):
        p.add_argument(
            "--api",
            help=f"service URL (default: $EASGD_API_URL or http://127.0.0.1:{DEFAULT_PORT})",
        )

    sb = add(sub, "submit", cmd_submit, "queue a training job; prints its id")
    sb.add_argument("config", help="experiment YAML file")
    sb.add_argument("--workers", type=int, help="ranks (overrides resources.workers)")
    sb.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    sb.add_argument("--name")
    sb.add_argument("--priority", type=int, default=0)
    api_arg(sb)

    jobs = sub.add_parser("jobs", help="list, show, follow and cancel jobs").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION"
    )
    ls = add(jobs, "list", cmd_jobs_list, "recent jobs")
    ls.add_argument(
        "--status",
        action="append",
        choices=["queued", "running", "succeeded", "failed", "cancelled"],
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
