"""A checkpoint asked for by a signal (SIGUSR1, what `easgd jobs checkpoint` and `scale` send).

Installed first thing in a rank (`python -m training`), before TensorFlow is imported: the
signal's default action would end a rank that is still starting. The training loop reads and
clears the request at a step boundary.
"""

from __future__ import annotations

import signal
import threading

checkpoint_asked = threading.Event()


def install() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda signum, frame: checkpoint_asked.set())


def take() -> bool:
    """Whether a checkpoint was asked for since the last call."""
    asked = checkpoint_asked.is_set()
    checkpoint_asked.clear()
    return asked
