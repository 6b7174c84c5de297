"""horovodrun, less the check it makes on every launch that Horovod was built with Gloo.

That check imports TensorFlow in a child process before any rank starts: about 3.5 s of every
job's start and of every restart, serial, before the ranks' own imports (bench/startup.py).
`make setup` checks the build once (`horovodrun --check-build` must show Gloo), and a Horovod
without Gloo would still fail, in the ranks' `hvd.init()`. Everything else is horovodrun's own.
"""

from __future__ import annotations

import sys


def main() -> int | None:
    from horovod.runner import launch

    launch.gloo_built = lambda verbose=False: True
    return launch.run_commandline()


if __name__ == "__main__":
    sys.exit(main())
