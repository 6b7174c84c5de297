"""Reading a job's log: shared by the API, the supervisor's failure messages and the UI, apart
from the module that starts and kills processes."""

from __future__ import annotations

import os
from pathlib import Path


def tail(path: Path | str | None, lines: int = 50) -> str:
    if not path or not Path(path).exists():
        return ""
    with Path(path).open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block = min(size, max(4096, lines * 400))
        f.seek(size - block)
        data = f.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:])
