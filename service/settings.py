"""The service's own settings: where it listens, what capacity it hands out, who may call it."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from db.errors import EasgdError
from db.settings import home
from db.settings import runs_dir as store_runs_dir
from training.hosts import Hosts, local_slots, parse_hosts

DEFAULT_PORT = 8765
DEFAULT_UI_PORT = 8501


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
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        return s

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
