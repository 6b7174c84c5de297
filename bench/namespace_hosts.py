"""Hosts for the multi-host tests and benchmarks: Linux network namespaces, each with its own
address and its own sshd, on one bridge whose links are rate-limited with tc.

They share this machine's filesystem and processes, as a cluster's hosts share a home
directory over NFS: the same paths, the same interpreter. horovodrun reaches them over ssh as it
reaches any remote host. Making them needs root, iproute2's `ip` and `tc`, and OpenSSH's server;
`unavailable()` says which is missing, for an explicit skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
RATE = "100mbit"


def unavailable() -> str | None:
    """Why namespace hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [t for t in ("ip", "tc", "ssh", "ssh-keygen") if shutil.which(t) is None]
    if not os.access(SSHD, os.X_OK):
        missing.append(SSHD)
    if missing:
        return f"missing {', '.join(missing)} (the test command installs openssh-server)"
    probe = f"ezprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _keygen(path: Path) -> None:
    """A fresh key pair at `path` (ssh-keygen would ask before overwriting one)."""
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class NamespaceHosts:
    """`addresses[i]` is host i; `interface` is the name of its link on every host and of the
    bridge here, so that one `--network-interface` serves the ranks and the rendezvous."""

    workdir: Path
    count: int = 2
    tag: str = field(default_factory=lambda: str(os.getpid() % 10000))
    # Each host's own hostname (a UTS namespace for what runs there), as a cluster's nodes have;
    # None: every host answers to this machine's name.
    names: list[str] | None = None
    namespaces: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    sshd: list[subprocess.Popen] = field(default_factory=list)

    @property
    def interface(self) -> str:
        return f"ezb{self.tag}"

    @property
    def key(self) -> Path:
        return self.workdir / "id_ed25519"

    def start(self) -> NamespaceHosts:
        self.workdir = self.workdir.resolve()  # sshd reads its files by absolute path
        self.workdir.mkdir(parents=True, exist_ok=True)
        subnet = f"10.213.{int(self.tag) % 250}"
        try:
            _ip("link", "add", self.interface, "type", "bridge")
            _ip("addr", "add", f"{subnet}.1/24", "dev", self.interface)
            _ip("link", "set", self.interface, "up")
            _keygen(self.key)
            (self.workdir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
            self.gateway = f"{subnet}.1"
            self.addresses = [f"{subnet}.{10 + i}" for i in range(1, self.count + 1)]
            for i, address in enumerate(self.addresses, 1):
                self._add_host(i, address)
            self._wait_for_sshd()
        except BaseException:
            self.close()
            raise
        return self

    def _add_host(self, i: int, address: str) -> None:
        ns, outside, inside = f"ez{self.tag}h{i}", f"ez{self.tag}o{i}", f"ez{self.tag}i{i}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        self._write_hosts_file(i)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.interface)
        _ip("link", "set", outside, "up")
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", inside, "name", self.interface, ns=ns)
        _ip("addr", "add", f"{address}/24", "dev", self.interface, ns=ns)
        _ip("link", "set", self.interface, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("route", "add", "default", "via", self.gateway, ns=ns)
        for where, dev in ((None, outside), (ns, self.interface)):  # both directions
            tc = ["tc", *(["-n", where] if where else []), "qdisc", "add", "dev", dev]
            subprocess.run(
                [*tc, "root", "tbf", "rate", RATE, "burst", "256kb", "latency", "50ms"],
                check=True,
                capture_output=True,
            )
        host_key = self.workdir / f"host{i}_key"
        _keygen(host_key)
        config = self.workdir / f"sshd{i}.conf"
        config.write_text(
            f"ListenAddress {address}\nHostKey {host_key}\nPidFile {self.workdir}/sshd{i}.pid\n"
            f"AuthorizedKeysFile {self.workdir}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPrintMotd no\nMaxStartups 100\n"
        )
        log = (self.workdir / f"sshd{i}.log").open("ab")
        self.sshd.append(
            subprocess.Popen(
                [*self.on_host(i), SSHD, "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def _write_hosts_file(self, i: int) -> None:
        """`ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts. Without names, this
        machine's name means each host's own address, as a cluster's DNS would have it: Horovod's
        Gloo needs that (its process-set contexts bind to the hostname's address, whatever the
        interface). With names, every host's name is its address, and this machine's the
        bridge's (where a controller on this machine listens). Written before anything starts
        there: the mount is made when a command starts."""
        lines = ["127.0.0.1 localhost"]
        if self.names:
            lines += [f"{a} {n}" for a, n in zip(self.addresses, self.names)]
            lines.append(f"{self.gateway} {socket.gethostname()}")
        else:
            lines.append(f"{self.addresses[i - 1]} {socket.gethostname()}")
        etc = Path("/etc/netns") / self.namespaces[i - 1]
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("\n".join(lines) + "\n")

    def on_host(self, i: int) -> list[str]:
        """The argv prefix that runs a command on host i (1-based): in its network namespace,
        and, with names, under its own hostname."""
        prefix = ["ip", "netns", "exec", self.namespaces[i - 1]]
        if not self.names:
            return prefix
        name = self.names[i - 1]
        return [*prefix, "unshare", "--uts", "sh", "-c", f'hostname {name} && exec "$@"', "sh"]

    def _wait_for_sshd(self, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        for address in self.addresses:
            while True:
                try:
                    socket.create_connection((address, 22), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        logs = [p.read_text() for p in self.workdir.glob("sshd*.log")]
                        raise RuntimeError(f"sshd on {address} did not start: {logs}") from None
                    time.sleep(0.2)

    def pids(self, i: int) -> list[int]:
        """The processes whose network is host i's (1-based), its sshd's listener excepted."""
        out = subprocess.run(
            ["ip", "netns", "pids", self.namespaces[i - 1]], capture_output=True, text=True
        ).stdout
        listener = self.sshd[i - 1].pid  # `ip netns exec` execs sshd: each connection forks
        return [int(p) for p in out.split() if int(p) != listener]

    def kill(self, i: int) -> list[int]:
        """kill -9 of everything running on host i but its sshd, as when its ranks are lost."""
        killed = []
        for pid in self.pids(i):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        return killed

    def close(self) -> None:
        for p in self.sshd:
            p.terminate()
        for p in self.sshd:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for i, ns in enumerate(self.namespaces, 1):
            for pid in subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True
            ).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
            subprocess.run(["ip", "link", "del", f"ez{self.tag}o{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.interface], capture_output=True)
        for address in self.addresses:  # what ssh learnt of these throwaway host keys
            subprocess.run(["ssh-keygen", "-R", address], capture_output=True)
