"""A real Slurm cluster for the tests: Debian's slurm-wlm with munge, a controller on this
machine and compute nodes that are network namespaces, each with its own address, hostname,
sshd and slurmd (bench/namespace_hosts.py), on one bridge.

    python -m tests.slurm_cluster start DIR [--nodes 3]   # prints `export SLURM_CONF=...`
    python -m tests.slurm_cluster stop DIR

The nodes share this machine's filesystem and interpreter, as a cluster's nodes share a home
directory; Slurm's commands (sbatch, squeue, scontrol, scancel) find the cluster by SLURM_CONF.
Making it needs root, iproute2, OpenSSH's server, slurm-wlm and munge; `unavailable()` says which
is missing, for an explicit skip.

`ip netns exec` mounts a fresh sysfs, without the cgroup hierarchies slurmd 22.05 looks for even
with proctrack/linuxproc: each node mounts its own (a cpu one and a named `systemd` one) in the
mount namespace its slurmd runs in.

Three nodes, so that a job of two one-task nodes can be relaunched without the node it lost.
The nodes reach one another over ssh as a cluster's do, with no option on the command line:
each node's `/etc/ssh/ssh_config` (mounted by `ip netns exec` from `/etc/netns/NODE/ssh`, so
for what its slurmd starts) names the cluster's key.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.namespace_hosts import NamespaceHosts
from bench.namespace_hosts import unavailable as no_namespaces

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "scancel")
CPUS = 2
PARTITION = "debug"
TAG = "7731"  # the bridge ezb7731 and the nodes' namespaces ez7731h1...
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
CGROUPS = (
    "mount -t tmpfs -o mode=755 none /sys/fs/cgroup"
    " && mkdir -p /sys/fs/cgroup/cpu /sys/fs/cgroup/systemd"
    " && mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu"
    " && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd"
)


def unavailable() -> str | None:
    """Why a test cluster cannot be made here, or None."""
    why = no_namespaces()
    if why:
        return why
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"missing {', '.join(missing)} (the test command installs slurm-wlm and munge)"
    return None


def node_names(count: int) -> list[str]:
    return [f"node{i}" for i in range(1, count + 1)]


def slurm_conf(workdir: Path, hosts: NamespaceHosts) -> str:
    """One partition of every node; no accounting (sacct says so: states come from squeue and
    scontrol, kept MinJobAge seconds after a job ends)."""
    nodes = "\n".join(
        f"NodeName={n} NodeAddr={a} CPUs={CPUS} State=UNKNOWN"
        for n, a in zip(hosts.names or [], hosts.addresses)
    )
    return f"""ClusterName=easgdtest
SlurmctldHost={socket.gethostname()}({hosts.gateway})
SlurmUser=root
AuthType=auth/munge
MailProg=/bin/true
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool/%n
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd-%n.pid
SlurmctldLogFile={workdir}/slurmctld.log
SlurmdLogFile={workdir}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=20
MinJobAge=600
KillWait=10
{nodes}
PartitionName={PARTITION} Nodes={",".join(hosts.names or [])} Default=YES MaxTime=60 State=UP
"""


def start_munge() -> None:
    """munged as the munge user, with a key of its own if the machine has none."""
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)


def ssh_config(hosts: NamespaceHosts) -> None:
    """Passwordless ssh between the nodes, as a batch script's horovodrun needs it."""
    for ns in hosts.namespaces:
        etc = Path("/etc/netns") / ns / "ssh"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "ssh_config").write_text(
            f"Host *\n    IdentityFile {hosts.key}\n    StrictHostKeyChecking no\n"
            "    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n"
        )


def start(workdir: Path, count: int = 3) -> dict:
    """The cluster, up and its nodes idle; returns what `stop` and the tests need."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for d in ("state", *(f"spool/{n}" for n in node_names(count))):
        (workdir / d).mkdir(parents=True, exist_ok=True)
    start_munge()
    hosts = NamespaceHosts(workdir / "hosts", count=count, tag=TAG, names=node_names(count))
    hosts.start()
    ssh_config(hosts)
    conf = workdir / "slurm.conf"
    conf.write_text(slurm_conf(workdir, hosts))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        subprocess.run(["slurmctld"], env=env, check=True, capture_output=True)
        for i, name in enumerate(hosts.names or [], 1):
            subprocess.run(
                [*hosts.on_host(i), "sh", "-c", f"{CGROUPS} && exec slurmd -N {name}"],
                env=env,
                check=True,
                capture_output=True,
            )
    except (OSError, subprocess.CalledProcessError) as exc:
        _stop_daemons(workdir, env)
        hosts.close()
        said = getattr(exc, "stderr", None) or b""
        raise RuntimeError(f"{exc}: {said.decode(errors='replace').strip()}") from None
    state = {
        "conf": str(conf),
        "nodes": hosts.names,
        "addresses": hosts.addresses,
        "namespaces": hosts.namespaces,
        "interface": hosts.interface,
        "gateway": hosts.gateway,
        "key": str(hosts.key),
    }
    (workdir / "cluster.json").write_text(json.dumps(state))
    wait_idle(env, count, workdir)
    return state


def wait_idle(env: dict, count: int, workdir: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T %D"], env=env, capture_output=True, text=True
        ).stdout.split()
        if out[:2] == ["idle", str(count)]:
            return
        time.sleep(0.5)
    said = [
        line
        for log in sorted(workdir.glob("slurm*.log"))
        for line in log.read_text(errors="replace").splitlines()[-40:]
        if "error" in line
    ]
    raise RuntimeError(
        f"the test cluster's nodes are not idle after {timeout:g} s (sinfo: {' '.join(out)}); "
        f"the daemons said: {' | '.join(said[-3:]) or 'nothing'}"
    )


def stop(workdir: Path) -> None:
    """Every daemon and namespace of the cluster, gone (munged stays: it is the machine's)."""
    workdir = workdir.resolve()
    found = workdir / "cluster.json"
    if not found.exists():
        return
    state = json.loads(found.read_text())
    _stop_daemons(workdir, {**os.environ, "SLURM_CONF": state["conf"]})
    hosts = NamespaceHosts(workdir / "hosts", count=len(state["nodes"]), tag=TAG)
    hosts.namespaces = state["namespaces"]
    hosts.addresses = state["addresses"]
    hosts.close()  # every process in each node's namespace, its sshd included
    found.unlink()


def sweep_leftovers() -> None:
    """What a start that died half-way left of the cluster's network (its names are fixed)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (line.split()[0] for line in listed.splitlines() if line.strip()):
        if ns.startswith(f"ez{TAG}h"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
    subprocess.run(["ip", "link", "del", f"ezb{TAG}"], capture_output=True)


def _stop_daemons(workdir: Path, env: dict) -> None:
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=30)
    for pid_file in workdir.glob("slurm*.pid"):
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.slurm_cluster")
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--nodes", type=int, default=3)
    args = ap.parse_args(argv)
    if args.action == "stop":
        stop(args.workdir)
        return 0
    why = unavailable()
    if why:
        print(f"test cluster: not made: {why}", file=sys.stderr)
        return 1
    stop(args.workdir)
    sweep_leftovers()
    state = start(args.workdir, args.nodes)
    print(f"export SLURM_CONF={state['conf']}")
    print(f"export EASGD_TEST_SLURM={args.workdir.resolve() / 'cluster.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
