"""A checkpoint on demand is asked for once and served once, by signal or by request file."""

from __future__ import annotations

import os
import signal
import time

from training.run import signals


def test_a_signal_asks_once_and_a_checkpoint_completed_after_it_serves_it():
    signals.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)
    assert signals.take(saved_at=0.0) is True
    assert signals.take(saved_at=0.0) is False  # taken
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)
    # The ranks agreed on a checkpoint that completed after this signal came: it is served.
    assert signals.take(saved_at=time.time()) is False


def test_the_request_file_reaches_rank_0_and_is_removed(tmp_path):
    signals.request(tmp_path)
    assert (tmp_path / signals.REQUEST_FILE).exists()
    assert signals.take(0.0) is False  # ranks other than 0 do not look at it
    assert signals.take(0.0, tmp_path) is True
    assert not (tmp_path / signals.REQUEST_FILE).exists()
    assert signals.take(0.0, tmp_path) is False
    signals.request(tmp_path)
    assert signals.take(time.time() + 1, tmp_path) is False  # a checkpoint since served it
    assert not (tmp_path / signals.REQUEST_FILE).exists()
