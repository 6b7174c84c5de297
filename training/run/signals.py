"""A checkpoint asked for by a signal (SIGUSR1, what `easgd jobs checkpoint` and `scale` send),
or by a request file in the run directory, which reaches rank 0 on another host (the service
signals only the ranks on its own).

Installed first thing in a rank (`python -m training`), before TensorFlow is imported: the
signal's default action would end a rank that is still starting. The training loop reads and
clears the request at a step boundary.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

REQUEST_FILE = "checkpoint.request"
_asked_at: list[float] = []  # when the signal last came (wall clock, as the file's time is)


def _on_signal(signum, frame) -> None:
    _asked_at[:] = [time.time()]


def install() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _on_signal)


def take(saved_at: float, run_dir: Path | None = None) -> bool:
    """Whether a checkpoint was asked for that the last one (completed at `saved_at`) did not
    serve: a signal, or (given the run directory, which only rank 0 passes) the request file,
    which this removes. A rank whose signal came just after the ranks agreed on a checkpoint
    is served by that checkpoint, and so does not ask for a second one."""
    asked = bool(_asked_at) and _asked_at[0] > saved_at
    _asked_at.clear()
    if run_dir is not None:
        request_file = run_dir / REQUEST_FILE
        try:
            made = request_file.stat().st_mtime
            request_file.unlink()
            asked = asked or made > saved_at
        except FileNotFoundError:
            pass
    return asked


def request(run_dir: Path) -> None:
    """Leave the request file for rank 0, wherever it runs (the run directory is shared)."""
    (run_dir / REQUEST_FILE).touch()
