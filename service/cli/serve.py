"""`easgd serve` and `easgd up`: the process orchestration of the service and the UI."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.cli.errors import CliError
from service.client import ApiError, Client
from service.processes import die_with_parent
from service.settings import (
    DEFAULT_PORT,
    DEFAULT_UI_PORT,
    ServiceSettings,
    SettingsError,
    http_url,
)
from training.schema.hosts import local_slots, parse_hosts


def _settings(args) -> ServiceSettings:
    """A bad --hosts or --slots is an error of the family, which the command line reports."""
    hosts = parse_hosts(args.hosts, "--hosts") if args.hosts else None
    s = ServiceSettings.from_env(
        host=args.host,
        port=args.port,
        hosts=hosts,
        db_url=getattr(args, "db_url", None),
        network_interface=args.network_interface,
        ssh_port=args.ssh_port,
        ssh_identity_file=args.ssh_identity_file,
    )
    if args.slots is not None:
        s.hosts = local_slots(args.slots, "--slots")
    if args.launcher == "slurm":
        from service.launchers.slurm import SlurmError, capacity

        if args.hosts or args.slots is not None:
            raise SettingsError(
                "--launcher slurm: Slurm places the ranks; drop --hosts and --slots "
                f"(received: --hosts {args.hosts}, --slots {args.slots})"
            )
        if args.tasks_per_node is not None and args.tasks_per_node < 1:
            raise SettingsError(
                f"--tasks-per-node must be at least 1 (received: {args.tasks_per_node})"
            )
        try:
            s.hosts = {"slurm": capacity(args.partition)}
        except SlurmError as exc:
            raise SettingsError(f"--launcher slurm: {exc}") from None
        s.launcher, s.partition, s.account = "slurm", args.partition, args.account
        s.gpus = []  # this machine's are not the nodes': Slurm hands GPUs out (--gpus-per-task)
        s.tasks_per_node = args.tasks_per_node
    s.check()
    return s


def cmd_serve(args) -> int:
    import uvicorn

    from service.api import create_app

    settings = _settings(args)
    # The port is taken before the store is touched: a second service on the same address must
    # not reconcile or launch anything before it finds the first one there. Then the store's
    # scheduler lease, before reconciling: one scheduler per store.
    sock = _bind(settings.host, settings.port)
    app = create_app(settings)
    try:
        app.state.store.init()
        app.state.supervisor.acquire_lease()
    except BaseException:
        sock.close()  # the refusal (SchedulerBusy, a store error) is the command line's to say
        raise
    print(
        f"easgd service: listening on {settings.url} "
        f"(store {app.state.store.display_url}, {settings.slots} slots)",
        flush=True,
    )
    if settings.launcher == "slurm" and app.state.store.engine.dialect.name == "sqlite":
        print(
            "easgd service: warning: rank 0 writes its run from a Slurm node; a SQLite file "
            "works only where every node sees it on a filesystem with working locks: point "
            "EASGD_DB_URL at a PostgreSQL the nodes reach",
            file=sys.stderr,
            flush=True,
        )
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        app.state.supervisor.stop()  # hands the lease back, even if start-up failed
    return 0


def _bind(host: str, port: int) -> socket.socket:
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


def _ui_app() -> Path | None:
    """The Streamlit app's file, found without importing the UI (the service is below it);
    None where the UI is not installed. `python -m ui.server` serves it."""
    spec = importlib.util.find_spec("ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    app = Path(next(iter(spec.submodule_search_locations))) / "app.py"
    return app if app.is_file() else None


def _store_lines(store, explicit: str | None) -> list[str]:
    """Which store this is and how a plain shell finds it: the runs a user launches here must
    be the ones `easgd runs list` shows in their next terminal."""
    from db.settings import home, shell_setting

    lines = [f"run store {store.display_url}"]
    setting = shell_setting(explicit)
    if setting:
        lines.append(f"other shells find this store with {setting}")
    old = Path(".easgd").resolve()
    if setting is None and old != home() and (old / "easgd.db").is_file():
        lines.append(
            f"{old} holds another store (an earlier `make up` kept its runs there); "
            f"`EASGD_HOME={old} easgd up` opens it"
        )
    return lines


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
    if args.slots is not None:
        serve += ["--slots", str(args.slots)]
    if args.hosts:
        serve += ["--hosts", args.hosts]
    for flag, value in (
        ("--network-interface", settings.network_interface),
        ("--ssh-port", settings.ssh_port),
        ("--ssh-identity-file", settings.ssh_identity_file),
        ("--launcher", settings.launcher),
        ("--partition", settings.partition),
        ("--account", settings.account),
        ("--tasks-per-node", settings.tasks_per_node),
    ):
        if value is not None:
            serve += [flag, str(value)]
    children.append(subprocess.Popen(serve, env=env, preexec_fn=die_with_parent))
    ui_app = _ui_app()
    ui_url = None
    if ui_app is None and not args.no_ui:
        print("easgd: the UI is not installed here; starting the service alone", flush=True)
    if ui_app is not None and not args.no_ui:
        ui_url = http_url(args.ui_host, args.ui_port)
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ui.server",
                    "--server.address",
                    args.ui_host,
                    "--server.port",
                    str(args.ui_port),
                ],
                env=env,
                preexec_fn=die_with_parent,
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
    for line in _store_lines(store, getattr(args, "db_url", None)):
        print(f"easgd: {line}", flush=True)
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
        p.add_argument(
            "--network-interface",
            help="across hosts: the interface the ranks talk over, named so on every host "
            "(default: $EASGD_NETWORK_INTERFACE, else horovodrun finds one)",
        )
        p.add_argument(
            "--ssh-port", help="across hosts: the hosts' sshd port (default: $EASGD_SSH_PORT or 22)"
        )
        p.add_argument(
            "--ssh-identity-file",
            help="across hosts: the private key that logs in without a password "
            "(default: $EASGD_SSH_IDENTITY_FILE, else ssh's own)",
        )
        p.add_argument(
            "--launcher",
            choices=("horovodrun", "slurm"),
            default="horovodrun",
            help="what starts a job's ranks: horovodrun here or on --hosts (default), or one "
            "Slurm batch job per attempt, horovodrun inside it on the nodes Slurm gives",
        )
        p.add_argument("--partition", help="--launcher slurm: the partition jobs go to")
        p.add_argument("--account", help="--launcher slurm: the account jobs are charged to")
        p.add_argument(
            "--tasks-per-node",
            type=int,
            help="--launcher slurm: ranks per node (default: as Slurm places them)",
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
