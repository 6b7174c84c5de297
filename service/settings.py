"""The service's own settings: where it listens, what capacity it hands out, who may call it."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from db.errors import EasgdError
from db.settings import home
from db.settings import runs_dir as store_runs_dir
from service.workdir import code_root
from training.schema.hosts import Hosts, local_slots, parse_hosts

DEFAULT_PORT = 8765
DEFAULT_UI_PORT = 8501
# Linux interface names (at most 15 characters), comma-separated as horovodrun takes them.
_INTERFACES = re.compile(r"[A-Za-z0-9_.-]{1,15}(,[A-Za-z0-9_.-]{1,15}){0,15}")


class SettingsError(EasgdError, ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_url(host: str, port: int) -> str:
    """http://HOST:PORT, with an IPv6 literal in brackets (and its zone's '%' escaped)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return f"http://{host}:{port}"
    if ip.version == 6:
        return f"http://[{bare.replace('%', '%25')}]:{port}"
    return f"http://{bare}:{port}"


def detect_gpus() -> list[str]:
    if "EASGD_GPUS" in os.environ:
        return [g for g in os.environ["EASGD_GPUS"].split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@dataclass
class ServiceSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    hosts: Hosts = field(default_factory=lambda: {"localhost": os.cpu_count() or 1})
    gpus: list[str] = field(default_factory=list)
    token: str | None = None
    db_url: str | None = None
    grace_seconds: float = 5.0
    poll_seconds: float = 0.5
    lease_seconds: float = 30.0
    data_dirs: list[Path] = field(default_factory=list)
    # Across hosts: what horovodrun and the service's reachability check pass on to ssh.
    network_interface: str | None = None
    ssh_port: int | None = None
    ssh_identity_file: str | None = None
    # What starts a job's ranks: horovodrun here or over ssh, or a Slurm batch job per attempt
    # (service/launchers/slurm.py), in this partition and account, so many tasks per node.
    launcher: str = "horovodrun"
    partition: str | None = None
    account: str | None = None
    tasks_per_node: int | None = None

    @classmethod
    def from_env(cls, **overrides) -> ServiceSettings:
        env = os.environ
        s = cls(
            host=env.get("EASGD_HOST", "127.0.0.1"),
            port=int(env.get("EASGD_PORT", DEFAULT_PORT)),
            token=env.get("EASGD_API_TOKEN") or None,
            db_url=env.get("EASGD_DB_URL") or None,
            gpus=detect_gpus(),
        )
        if env.get("EASGD_HOSTS"):
            s.hosts = parse_hosts(env["EASGD_HOSTS"], "EASGD_HOSTS")
        elif env.get("EASGD_SLOTS"):
            s.hosts = local_slots(env["EASGD_SLOTS"], "EASGD_SLOTS")
        dirs = env.get("EASGD_DATA_DIRS")
        s.data_dirs = (
            [Path(d).expanduser().resolve() for d in dirs.split(os.pathsep) if d]
            if dirs
            else [home() / "data", Path.cwd().resolve()]
        )
        s.network_interface = env.get("EASGD_NETWORK_INTERFACE") or None
        s.ssh_port = env.get("EASGD_SSH_PORT") or None  # type: ignore[assignment]
        s.ssh_identity_file = env.get("EASGD_SSH_IDENTITY_FILE") or None
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        s.network_interface = network_interface(
            s.network_interface, "--network-interface (EASGD_NETWORK_INTERFACE)"
        )
        s.ssh_port = ssh_port(s.ssh_port, "--ssh-port (EASGD_SSH_PORT)")
        s.ssh_identity_file = identity_file(
            s.ssh_identity_file, "--ssh-identity-file (EASGD_SSH_IDENTITY_FILE)"
        )
        return s

    @property
    def ssh_options(self) -> list[str]:
        """The ssh options that reach the hosts, for the service's own reachability check."""
        options = ["-p", str(self.ssh_port)] if self.ssh_port is not None else []
        return options + (["-i", self.ssh_identity_file] if self.ssh_identity_file else [])

    def check(self) -> None:
        """Refuse to listen beyond loopback without a token: every caller could run jobs."""
        if not is_loopback(self.host) and not self.token:
            raise SettingsError(
                f"--host {self.host} is not a loopback address: set EASGD_API_TOKEN so that "
                "requests must carry it (Authorization: Bearer TOKEN), or listen on 127.0.0.1"
            )

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def local_url(self) -> str:
        """Where a client on this machine reaches the service (not the wildcard address)."""
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
        return http_url(wildcard.get(self.host, self.host), self.port)

    @property
    def slots(self) -> int:
        return sum(self.hosts.values())

    @property
    def jobs_dir(self) -> Path:
        return home() / "jobs"

    @property
    def runs_dir(self) -> Path:
        return store_runs_dir()

    @property
    def code_dir(self) -> Path:
        """Uploaded working directories, by digest."""
        return code_root()


def network_interface(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not _INTERFACES.fullmatch(value):
        raise SettingsError(
            f"{what}: network interface names (letters, digits, _ . -; at most 15 characters "
            f"each), comma-separated, e.g. eth0 (received: {value[:80]!r})"
        )
    return value


def ssh_port(value: int | str | None, what: str) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise SettingsError(f"{what}: a port from 1 to 65535 (received: {text[:80]!r})")
    return int(text)


def identity_file(value: str | None, what: str) -> str | None:
    """An absolute path: horovodrun hands it to ssh from the job's own directory."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise SettingsError(
            f"{what}: not a readable file (received: {value[:200]!r}); give the private key "
            "that logs in to every host without a password"
        )
    return str(path.resolve())
