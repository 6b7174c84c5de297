"""A launcher that is not horovodrun, as a new one would be written: one class.

It records what the supervisor asked of it, and one real short process stands in for the ranks:
it waits for a `go` file beside the job's log, prints a line in the log, and exits with the code
the configuration's tag `exit` names (saying `toy: broke: <tag reason>` first when not 0).
"""

from __future__ import annotations

import signal
import subprocess
import sys

from service import processes
from service.launchers import Attempt, Failure, Launched, Launcher, LaunchError

STAND_IN = """
import os, pathlib, sys, time
go, code, reason = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 60
while not go.exists() and time.time() < deadline:
    time.sleep(0.02)
print(f"toy: job {os.environ['EASGD_JOB_ID']} ran", flush=True)
if code:
    print(f"toy: broke: {reason}", flush=True)
sys.exit(code)
"""
BROKE = "toy: broke: "


class ToyLauncher(Launcher):
    def __init__(self) -> None:
        self.asked: list[tuple[Attempt, list[str], dict[str, str]]] = []

    def start(self, attempt: Attempt) -> Launched:
        tags = attempt.config.tags
        go = attempt.job_dir / "go"
        argv = [sys.executable, "-c", STAND_IN, str(go), tags.get("exit", "0"), tags.get("why", "")]
        env = self.environment(attempt)
        self.asked.append((attempt, argv, env))
        try:
            popen, started = processes.spawn(argv, env, attempt.log_path, attempt.job_dir)
        except OSError as exc:
            raise LaunchError(f"could not start the toy: {exc}") from None
        return Launched.of(attempt, popen.pid, started, popen)

    def alive(self, launched: Launched) -> bool:
        # It cannot find an attempt again after a restart: that one reads as ended (lost).
        return launched.process is not None and launched.process.poll() is None

    def exit_code(self, launched: Launched) -> int | None:
        return None if launched.process is None else launched.process.poll()

    def stop(self, launched: Launched, grace: float) -> int | None:
        if launched.process is None:
            return None
        launched.process.terminate()
        try:
            return launched.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            launched.process.kill()
            launched.process.wait()
            return -signal.SIGKILL

    def signal_ranks(self, launched: Launched, signum: int) -> int:
        if not self.alive(launched):
            return 0
        launched.process.send_signal(signum)
        return 1

    def failure(self, launched: Launched) -> Failure:
        text = launched.log_path.read_text() if launched.log_path else ""
        said = [line[len(BROKE) :] for line in text.splitlines() if line.startswith(BROKE)]
        return Failure(reason=said[-1] if said else None)
